//! Directory entries: creating, linking, removing and renaming names, and
//! listing directories.

use std::sync::Arc;

use super::{check_name, now_ns, Caller, Fs, ROOT};
use crate::cache::Listing;
use crate::error::{FsError, FsResult};
use crate::store::{Content, Dentry, Inode, Kind, Write};

/// What became of an inode that lost a name.
enum LinkGone {
    /// It was already gone.
    Missing,
    /// It keeps other names, or is open here (deleted at last close).
    Kept(Inode),
    /// It was deleted with its last name.
    Deleted(Inode),
}

/// One entry of a directory listing; `offset` is the cookie of the next one.
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: Kind,
    pub name: Vec<u8>,
}

/// Flags of rename(2) (renameat2).
#[derive(Clone, Copy, Debug, Default)]
pub struct RenameFlags {
    pub noreplace: bool,
    pub exchange: bool,
}

impl RenameFlags {
    pub fn from_bits(bits: u32) -> FsResult<RenameFlags> {
        let known = libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE;
        if bits & !known != 0 {
            // RENAME_WHITEOUT (overlay filesystems) is not supported.
            return Err(FsError::Invalid);
        }
        let f = RenameFlags {
            noreplace: bits & libc::RENAME_NOREPLACE != 0,
            exchange: bits & libc::RENAME_EXCHANGE != 0,
        };
        if f.noreplace && f.exchange {
            return Err(FsError::Invalid);
        }
        Ok(f)
    }
}

impl Fs {
    /// A new inode of `kind` under `parent`: ownership from the caller (the
    /// group from a set-group-ID parent), times now.
    fn new_inode(&self, parent: &Inode, kind: Kind, mode: u32, caller: Caller) -> FsResult<Inode> {
        let now = now_ns();
        let sgid_parent = parent.perm & 0o2000 != 0;
        let mut perm = mode & 0o7777;
        if kind == Kind::Dir && sgid_parent {
            perm |= 0o2000;
        }
        Ok(Inode {
            ino: self.alloc_ino()?,
            kind,
            perm,
            uid: caller.uid,
            gid: if sgid_parent { parent.gid } else { caller.gid },
            nlink: if kind == Kind::Dir { 2 } else { 1 },
            rdev: 0,
            size: 0,
            atime_ns: now,
            mtime_ns: now,
            ctime_ns: now,
            parent: parent.ino,
            version: rand::random::<i64>(),
            target: Vec::new(),
            content: Content::Inline(Arc::new(Vec::new())),
            xattrs: Default::default(),
        })
    }

    /// Fails with EEXIST when the name exists (as far as the caches, within
    /// `fcache_ttl`, or Cassandra know). An entry whose inode is missing is
    /// what an interrupted create leaves behind: its name may be reused.
    fn must_not_exist(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        check_name(name)?;
        match self.entry(parent, name)? {
            Some(d) if self.store.get_inode(d.ino)?.is_some() => Err(FsError::Exists),
            _ => Ok(()),
        }
    }

    /// Writes a new inode, its entry and the parent's times (and link count
    /// for a new directory), all in one round trip.
    fn add_entry(&self, mut parent: Inode, name: &[u8], inode: &Inode) -> FsResult<()> {
        let d = Dentry {
            name: name.to_vec(),
            ino: inode.ino,
            kind: inode.kind,
        };
        if inode.kind == Kind::Dir {
            parent.nlink += 1;
        }
        parent.mtime_ns = inode.ctime_ns;
        parent.ctime_ns = inode.ctime_ns;
        self.store.apply(vec![
            Write::PutInode(inode.clone()),
            Write::PutDentry(parent.ino, d.clone()),
            Write::UpdateAttrs(parent.clone()),
        ])?;
        self.cache.put_inode(inode);
        self.cache.put_inode(&parent);
        self.cache.set_dentry(parent.ino, name, Some(d));
        if inode.kind == Kind::Dir {
            // A new directory is known to be empty.
            self.cache.put_listing(inode.ino, Listing::new());
        }
        Ok(())
    }

    fn make(
        &self,
        parent: u64,
        name: &[u8],
        kind: Kind,
        mode: u32,
        caller: Caller,
    ) -> FsResult<Inode> {
        self.writable()?;
        let p = self.load_dir(parent)?;
        self.must_not_exist(parent, name)?;
        let inode = self.new_inode(&p, kind, mode, caller)?;
        self.add_entry(p, name, &inode)?;
        Ok(inode)
    }

    pub fn mkdir(&self, parent: u64, name: &[u8], mode: u32, caller: Caller) -> FsResult<Inode> {
        self.make(parent, name, Kind::Dir, mode, caller)
    }

    pub fn mknod(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        rdev: u32,
        caller: Caller,
    ) -> FsResult<Inode> {
        let kind = match mode & libc::S_IFMT {
            libc::S_IFREG | 0 => Kind::File,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFSOCK => Kind::Socket,
            libc::S_IFCHR => Kind::CharDev,
            libc::S_IFBLK => Kind::BlockDev,
            _ => return Err(FsError::Invalid),
        };
        self.writable()?;
        let p = self.load_dir(parent)?;
        self.must_not_exist(parent, name)?;
        let mut inode = self.new_inode(&p, kind, mode, caller)?;
        inode.rdev = rdev;
        self.add_entry(p, name, &inode)?;
        Ok(inode)
    }

    pub fn symlink(
        &self,
        parent: u64,
        name: &[u8],
        target: &[u8],
        caller: Caller,
    ) -> FsResult<Inode> {
        self.writable()?;
        if target.is_empty() {
            return Err(FsError::NotFound);
        }
        let p = self.load_dir(parent)?;
        self.must_not_exist(parent, name)?;
        let mut inode = self.new_inode(&p, Kind::Symlink, 0o777, caller)?;
        inode.target = target.to_vec();
        inode.size = target.len() as u64;
        self.add_entry(p, name, &inode)?;
        Ok(inode)
    }

    /// Creates a regular file and opens it.
    pub fn create(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: super::OpenFlags,
        caller: Caller,
    ) -> FsResult<(Inode, u64)> {
        let inode = self.make(parent, name, Kind::File, mode, caller)?;
        let fh = self.open_inode(inode.clone(), flags)?;
        Ok((inode, fh))
    }

    pub fn link(&self, ino: u64, newparent: u64, newname: &[u8]) -> FsResult<Inode> {
        self.writable()?;
        let mut i = self.load(ino)?;
        if i.kind == Kind::Dir {
            return Err(FsError::Perm);
        }
        if i.nlink >= u32::MAX / 2 {
            return Err(FsError::TooManyLinks);
        }
        let mut p = self.load_dir(newparent)?;
        self.must_not_exist(newparent, newname)?;
        let d = Dentry {
            name: newname.to_vec(),
            ino,
            kind: i.kind,
        };
        let now = now_ns();
        i.nlink += 1;
        i.ctime_ns = now;
        p.mtime_ns = now;
        p.ctime_ns = now;
        self.store.apply(vec![
            Write::PutDentry(newparent, d.clone()),
            Write::UpdateAttrs(i.clone()),
            Write::UpdateAttrs(p.clone()),
        ])?;
        self.cache.set_dentry(newparent, newname, Some(d));
        self.cache.put_inode(&i);
        self.cache.put_inode(&p);
        self.getattr(ino)
    }

    /// The current entry of a name, asking Cassandra (not the cache).
    fn current_entry(&self, parent: u64, name: &[u8]) -> FsResult<Dentry> {
        check_name(name)?;
        let d = self.store.get_dentry(parent, name)?;
        self.cache.put_dentry(parent, name, d.clone());
        d.ok_or(FsError::NotFound)
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.writable()?;
        check_name(name)?;
        let mut p = self.load_dir(parent)?;
        // The entry and its inode as Cassandra has them now (one round trip
        // when the cached entry still names the same inode).
        let guess = self.cache.dentry(parent, name).flatten().map(|d| d.ino);
        let (d, inode) = self.store.get_dentry_and_inode(parent, name, guess)?;
        self.cache.put_dentry(parent, name, d.clone());
        let d = d.ok_or(FsError::NotFound)?;
        if d.kind == Kind::Dir {
            return Err(FsError::IsDir);
        }
        let now = now_ns();
        p.mtime_ns = now;
        p.ctime_ns = now;
        let mut writes = vec![
            Write::DeleteDentry(parent, name.to_vec()),
            Write::UpdateAttrs(p.clone()),
        ];
        let gone = self.link_gone(inode, &mut writes);
        self.store.apply(writes)?;
        self.cache.set_dentry(parent, name, None);
        self.cache.put_inode(&p);
        self.link_dropped(gone)
    }

    /// One name of a non-directory goes: adds the write that counts it
    /// down, or deletes the inode with its last name (unless it is open
    /// here: then at its last close).
    fn link_gone(&self, inode: Option<Inode>, writes: &mut Vec<Write>) -> LinkGone {
        let Some(mut i) = inode else {
            return LinkGone::Missing;
        };
        i.nlink = i.nlink.saturating_sub(1);
        i.ctime_ns = now_ns();
        if i.nlink > 0 || self.files.is_open(i.ino) {
            writes.push(Write::UpdateAttrs(i.clone()));
            return LinkGone::Kept(i);
        }
        writes.push(Write::DeleteInode(i.ino));
        LinkGone::Deleted(i)
    }

    /// After the writes of [`Fs::link_gone`] were applied.
    fn link_dropped(&self, gone: LinkGone) -> FsResult<()> {
        match gone {
            LinkGone::Missing => Ok(()),
            LinkGone::Kept(i) => {
                if i.nlink == 0 {
                    self.files.mark_unlinked(i.ino);
                }
                self.cache.put_inode(&i);
                Ok(())
            }
            LinkGone::Deleted(i) => {
                self.cache.forget_inode(i.ino);
                self.drop_refs(&i)
            }
        }
    }

    /// Removes the block references of a deleted inode.
    fn drop_refs(&self, i: &Inode) -> FsResult<()> {
        if let Content::Blocks(h) = &i.content {
            let mut refs: Vec<_> = h
                .iter()
                .copied()
                .filter(|h| *h != crate::store::HOLE)
                .collect();
            refs.sort();
            refs.dedup();
            self.store.change_refs(i.ino, &[], &refs)?;
        }
        Ok(())
    }

    /// Deletes an inode and its block references.
    pub(super) fn delete_inode(&self, i: &Inode) -> FsResult<()> {
        self.store.delete_inode(i.ino)?;
        self.cache.forget_inode(i.ino);
        self.drop_refs(i)
    }

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.writable()?;
        if name == b"." {
            return Err(FsError::Invalid);
        }
        if name == b".." {
            return Err(FsError::NotEmpty);
        }
        let mut p = self.load_dir(parent)?;
        let d = self.current_entry(parent, name)?;
        if d.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        if self.store.dir_has_entries(d.ino)? {
            return Err(FsError::NotEmpty);
        }
        let now = now_ns();
        p.nlink = p.nlink.saturating_sub(1).max(2);
        p.mtime_ns = now;
        p.ctime_ns = now;
        self.store.apply(vec![
            Write::DeleteDentry(parent, name.to_vec()),
            Write::DeleteInode(d.ino),
            Write::UpdateAttrs(p.clone()),
        ])?;
        self.cache.set_dentry(parent, name, None);
        self.dir_removed(d.ino, now);
        self.cache.put_inode(&p);
        Ok(())
    }

    /// Forgets a removed directory; an open descriptor of it can still
    /// fstat it (with no links) while the cache keeps its attributes.
    fn dir_removed(&self, ino: u64, now: i64) {
        self.cache.forget_listing(ino);
        match self.cache.stale_inode(ino) {
            Some(mut gone) => {
                gone.nlink = 0;
                gone.ctime_ns = now;
                self.cache.put_inode(&gone);
            }
            None => self.cache.forget_inode(ino),
        }
    }

    /// Fails with EINVAL when `dir` is `ancestor` or below it.
    fn not_below(&self, dir: u64, ancestor: u64) -> FsResult<()> {
        let mut cur = dir;
        for _ in 0..4096 {
            if cur == ancestor {
                return Err(FsError::Invalid);
            }
            if cur == ROOT {
                return Ok(());
            }
            cur = self.load(cur)?.parent;
        }
        Err(FsError::Invalid)
    }

    /// rename(2) with RENAME_NOREPLACE and RENAME_EXCHANGE. A constant
    /// number of writes, whatever the size of a renamed directory.
    pub fn rename(
        &self,
        parent: u64,
        name: &[u8],
        newparent: u64,
        newname: &[u8],
        flags: RenameFlags,
    ) -> FsResult<()> {
        self.writable()?;
        check_name(newname)?;
        self.load_dir(parent)?;
        self.load_dir(newparent)?;
        let src = self.current_entry(parent, name)?;
        // The target and its inode, in one round trip when the cache knows it.
        let guess = self
            .cache
            .dentry(newparent, newname)
            .flatten()
            .map(|d| d.ino);
        let (dst, dst_inode) = self.store.get_dentry_and_inode(newparent, newname, guess)?;
        if parent == newparent && name == newname {
            return Ok(());
        }
        if src.kind == Kind::Dir {
            self.not_below(newparent, src.ino)?;
        }
        if let Some(dst) = &dst {
            if flags.noreplace {
                return Err(FsError::Exists);
            }
            if dst.kind == Kind::Dir && !flags.exchange {
                self.not_below(parent, dst.ino)?;
            }
        }
        if flags.exchange {
            let dst = dst.ok_or(FsError::NotFound)?;
            if dst.kind == Kind::Dir {
                self.not_below(parent, dst.ino)?;
            }
            return self.exchange(parent, name, src, newparent, newname, dst);
        }
        if let Some(dst) = &dst {
            if dst.ino == src.ino {
                return Ok(()); // two names of one file: nothing to do
            }
            match (src.kind == Kind::Dir, dst.kind == Kind::Dir) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                (true, true) if self.store.dir_has_entries(dst.ino)? => {
                    return Err(FsError::NotEmpty)
                }
                _ => {}
            }
        }
        let moved = Dentry {
            name: newname.to_vec(),
            ..src.clone()
        };
        // The entries change first, in one logged batch: that is the rename.
        self.store
            .change_dentries(&[(parent, name)], &[(newparent, &moved)])?;
        self.cache.set_dentry(parent, name, None);
        self.cache.set_dentry(newparent, newname, Some(moved));
        // Then the attributes, all in one round trip.
        let now = now_ns();
        let mut writes = Vec::new();
        let mut replaced = None;
        let mut removed_dir = None;
        let moved_dir = src.kind == Kind::Dir && parent != newparent;
        // Subdirectories gained by the new parent (lost by the old one).
        let mut gained = i64::from(moved_dir);
        if let Some(dst) = dst {
            if dst.kind == Kind::Dir {
                writes.push(Write::DeleteInode(dst.ino));
                removed_dir = Some(dst.ino);
                gained -= 1;
            } else {
                replaced = Some(self.link_gone(dst_inode, &mut writes));
            }
        }
        let mut moved_inode = self.load(src.ino)?;
        moved_inode.ctime_ns = now;
        if moved_dir {
            moved_inode.parent = newparent;
        }
        writes.push(Write::UpdateAttrs(moved_inode.clone()));
        let mut dirs = vec![self.touched_dir(newparent, now, gained)?];
        if parent != newparent {
            dirs.push(self.touched_dir(parent, now, -i64::from(moved_dir))?);
        }
        writes.extend(dirs.iter().cloned().map(Write::UpdateAttrs));
        self.store.apply(writes)?;
        self.cache.put_inode(&moved_inode);
        for d in &dirs {
            self.cache.put_inode(d);
        }
        if let Some(ino) = removed_dir {
            self.dir_removed(ino, now);
        }
        match replaced {
            Some(gone) => self.link_dropped(gone),
            None => Ok(()),
        }
    }

    fn exchange(
        &self,
        parent: u64,
        name: &[u8],
        src: Dentry,
        newparent: u64,
        newname: &[u8],
        dst: Dentry,
    ) -> FsResult<()> {
        let a = Dentry {
            name: newname.to_vec(),
            ..src.clone()
        };
        let b = Dentry {
            name: name.to_vec(),
            ..dst.clone()
        };
        self.store
            .change_dentries(&[], &[(newparent, &a), (parent, &b)])?;
        self.cache.set_dentry(newparent, newname, Some(a));
        self.cache.set_dentry(parent, name, Some(b));
        let now = now_ns();
        for (d, new_parent) in [(&src, newparent), (&dst, parent)] {
            let mut i = self.load(d.ino)?;
            i.ctime_ns = now;
            if d.kind == Kind::Dir {
                i.parent = new_parent;
            }
            self.save_attrs(&i)?;
        }
        let dir_moves = i64::from(src.kind == Kind::Dir) - i64::from(dst.kind == Kind::Dir);
        if parent != newparent {
            self.touch_dir(parent, now, -dir_moves)?;
            self.touch_dir(newparent, now, dir_moves)?;
        } else {
            self.touch_dir(parent, now, 0)?;
        }
        Ok(())
    }

    /// A directory with new mtime/ctime and link count (not yet saved).
    fn touched_dir(&self, ino: u64, now: i64, nlink_delta: i64) -> FsResult<Inode> {
        let mut d = self.load_dir(ino)?;
        d.mtime_ns = now;
        d.ctime_ns = now;
        d.nlink = (i64::from(d.nlink) + nlink_delta).max(2) as u32;
        Ok(d)
    }

    /// Sets a directory's mtime/ctime and adjusts its link count.
    fn touch_dir(&self, ino: u64, now: i64, nlink_delta: i64) -> FsResult<()> {
        let d = self.touched_dir(ino, now, nlink_delta)?;
        self.save_attrs(&d)
    }

    /// Opens a directory: its listing is read once, so offsets stay stable
    /// while it is open. Also says whether the listing came from the local
    /// cache (unchanged as far as this mount knows: the kernel may keep its
    /// cached copy).
    pub fn opendir(&self, ino: u64) -> FsResult<(u64, bool)> {
        let dir = self.load_dir(ino)?;
        let mut list = vec![
            DirEntry {
                ino,
                kind: Kind::Dir,
                name: b".".to_vec(),
            },
            DirEntry {
                ino: dir.parent,
                kind: Kind::Dir,
                name: b"..".to_vec(),
            },
        ];
        let (entries, cached) = match self.cache.listing(ino) {
            Some(l) => (l, true),
            None => {
                let stale = || self.cache.stale_listing(ino).map(Some);
                let l = self
                    .outage
                    .read(|| self.store.list_dir(ino).map(Some), stale)?
                    .unwrap_or_default();
                let by_name = l.iter().map(|d| (d.name.clone(), d.clone())).collect();
                self.cache.put_listing(ino, by_name);
                (l, false)
            }
        };
        list.extend(entries.into_iter().map(|d| DirEntry {
            ino: d.ino,
            kind: d.kind,
            name: d.name,
        }));
        let fh = self.new_fh();
        self.dirs.lock().insert(fh, list);
        Ok((fh, cached))
    }

    /// Entries from `offset` on, each with the offset of the entry after it
    /// (offset i means "after the i-th entry").
    pub fn readdir(&self, fh: u64, offset: u64, max: usize) -> FsResult<Vec<(u64, DirEntry)>> {
        let dirs = self.dirs.lock();
        let list = dirs.get(&fh).ok_or(FsError::BadHandle)?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(list.len());
        Ok(list[start..]
            .iter()
            .take(max)
            .enumerate()
            .map(|(i, e)| ((start + i + 1) as u64, e.clone()))
            .collect())
    }

    /// Like readdir, with each entry's attributes (read in parallel).
    pub fn readdirplus(
        &self,
        fh: u64,
        offset: u64,
        max: usize,
    ) -> FsResult<Vec<(u64, DirEntry, Inode)>> {
        let entries = self.readdir(fh, offset, max)?;
        let mut attrs: Vec<Option<Inode>> = entries
            .iter()
            .map(|(_, e)| self.cache.inode(e.ino))
            .collect();
        let missing: Vec<u64> = entries
            .iter()
            .zip(&attrs)
            .filter(|(_, a)| a.is_none())
            .map(|((_, e), _)| e.ino)
            .collect();
        let mut fetched = self.store.get_inodes(&missing)?.into_iter();
        for a in attrs.iter_mut().filter(|a| a.is_none()) {
            if let Some(Some(i)) = fetched.next() {
                self.cache.put_inode(&i);
                *a = Some(i);
            }
        }
        let mut out = Vec::with_capacity(entries.len());
        for ((off, e), a) in entries.into_iter().zip(attrs) {
            // An entry whose inode vanished meanwhile is skipped.
            if let Some(mut i) = a {
                self.files.overlay(&mut i);
                out.push((off, e, i));
            }
        }
        Ok(out)
    }

    pub fn releasedir(&self, fh: u64) {
        self.dirs.lock().remove(&fh);
    }
}
