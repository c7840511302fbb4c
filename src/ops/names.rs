//! Directory entries: creating, linking and removing names, and listing
//! directories (renames are in `rename.rs`).
//!
//! Whether a name exists is decided by Cassandra with one conditional write
//! (`Store::create_dentry`), never by a cache: a host with a stale view gets
//! EEXIST, it does not overwrite another host's name. A new inode's row is
//! written in the same round trip as its name (a name whose inode row is
//! not there yet reads as absent), and a name is removed before (or
//! atomically with) its inode, so a crash can leave an inode without a name
//! (a leak, found by scanning); a name without an inode only if the process
//! dies between sending the two writes of one round trip (`cassfs fsck
//! --repair` removes it).

use std::sync::Arc;

use super::{check_name, now_ns, side_by_side, Caller, Fs};
use crate::cache::Listing;
use crate::error::{FsError, FsResult};
use crate::store::{name_key, Change, Content, Dentry, Inode, Kind, SetOp, Usage, Write};

/// The most names one file may have (link(2) fails with EMLINK beyond).
pub const MAX_LINKS: u32 = 1000;
/// How often a plain O_CREAT tries again when the name it found taken is
/// gone when it looks (another host creating and removing it meanwhile).
const CREATE_TRIES: u32 = 4;
/// How long a plain O_CREAT waits before trying again when the name it
/// found names an inode it cannot read (yet).
const CREATE_WAIT: std::time::Duration = std::time::Duration::from_millis(20);
/// How often unlink and rmdir try again when the name they read was
/// replaced by another host before they could remove it.
const REMOVE_TRIES: u32 = 4;
/// How long an rmdir waits for another rmdir of the same directory.
const RMDIR_WAIT: std::time::Duration = std::time::Duration::from_millis(50);
/// The longest symlink target (Linux's PATH_MAX less the final NUL).
pub const SYMLINK_MAX: usize = 4095;

/// What becomes of an inode that loses a name.
pub(super) enum LinkGone {
    /// It was already gone.
    Missing,
    /// It loses this name; it is deleted after the write if Cassandra then
    /// records no name for it (a rename or link on another host keeps it).
    Unnamed(Inode),
}

/// One entry of a directory listing; `offset` is the cookie of the next one.
#[derive(Clone, Debug)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: Kind,
    pub name: Vec<u8>,
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

    /// Writes a new inode and creates its name conditionally, with the
    /// parent's times (and link count for a directory), in one round
    /// trip. When the name exists, the new inode is removed again and the
    /// existing entry (if it is still there) is returned as the error.
    pub(super) fn add_entry(
        &self,
        parent: &Inode,
        name: &[u8],
        inode: &Inode,
    ) -> FsResult<Result<(), Option<Dentry>>> {
        let d = Dentry {
            name: name.to_vec(),
            ino: inode.ino,
            kind: inode.kind,
        };
        let is_dir = inode.kind == Kind::Dir;
        let names = if is_dir {
            Vec::new()
        } else {
            vec![name_key(parent.ino, name)]
        };
        let mut touch = Change::times(inode.ctime_ns);
        if is_dir {
            touch = touch.with_subdirs(SetOp::Add(inode.ino));
        }
        // The new inode row counts in the volume's usage whatever the
        // name's outcome; taken out again below when the name was not made.
        let touch = vec![
            Write::Update(parent.ino, touch),
            Write::Usage(Usage::inode(inode)),
        ];
        let created = self
            .store
            .create_inode_named(parent.ino, &d, inode, names, touch);
        let created = match created {
            Ok(c) => c,
            Err(e) => {
                // Unknown outcome: the store wrote the inode's row again, so
                // that a name that was made resolves (if it was not made,
                // the row is a leak for gc, never a lost file).
                self.cache.forget_inode(parent.ino);
                return Err(e.into());
            }
        };
        let subdirs = i64::from(created && is_dir);
        self.dir_changed(parent.ino, inode.ctime_ns, subdirs);
        if !created {
            let mut undo = vec![
                Write::DeleteInode(inode.ino),
                Write::Usage(Usage::inode(inode).negated()),
            ];
            if is_dir {
                let c = Change::default().with_subdirs(SetOp::Remove(inode.ino));
                undo.push(Write::Update(parent.ino, c));
            }
            self.store.apply(undo)?;
            let existing = self.store.get_dentry(parent.ino, name)?;
            self.cache.put_dentry(parent.ino, name, existing.clone());
            // `None`: removed again meanwhile.
            return Ok(Err(existing));
        }
        self.counted(Usage::inode(inode));
        self.cache.put_inode(inode);
        self.cache.set_dentry(parent.ino, name, Some(d));
        if is_dir {
            // A new directory is known to be empty.
            self.cache.put_listing(inode.ino, Listing::new());
        }
        Ok(Ok(()))
    }

    /// Creates a new inode under a new name: EEXIST if the name exists.
    fn make(&self, parent: u64, name: &[u8], mut inode: Inode) -> FsResult<Inode> {
        let p = self.load_dir(parent)?;
        inode.parent = p.ino;
        // Not created, yet no such name: another host's create of it was
        // not settled yet (or it came and went); tried again a few times.
        for _ in 0..CREATE_TRIES {
            match self.add_entry(&p, name, &inode)? {
                Ok(()) => return Ok(inode),
                Err(Some(_)) => return Err(FsError::Exists),
                Err(None) => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
        // Still no such name: the directory is being removed.
        Err(FsError::NotFound)
    }

    /// A new inode to be named `name` in `parent`.
    pub(super) fn prepare(
        &self,
        parent: u64,
        name: &[u8],
        kind: Kind,
        mode: u32,
        caller: Caller,
    ) -> FsResult<Inode> {
        self.writable()?;
        check_name(name)?;
        let p = self.load_dir(parent)?;
        self.quota_allows_inode()?;
        self.new_inode(&p, kind, mode, caller)
    }

    pub fn mkdir(&self, parent: u64, name: &[u8], mode: u32, caller: Caller) -> FsResult<Inode> {
        let inode = self.prepare(parent, name, Kind::Dir, mode, caller)?;
        self.make(parent, name, inode)
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
        let mut inode = self.prepare(parent, name, kind, mode, caller)?;
        inode.rdev = rdev;
        self.make(parent, name, inode)
    }

    pub fn symlink(
        &self,
        parent: u64,
        name: &[u8],
        target: &[u8],
        caller: Caller,
    ) -> FsResult<Inode> {
        if target.is_empty() {
            return Err(FsError::NotFound);
        }
        if target.len() > SYMLINK_MAX {
            return Err(FsError::NameTooLong);
        }
        let mut inode = self.prepare(parent, name, Kind::Symlink, 0o777, caller)?;
        inode.target = target.to_vec();
        inode.size = target.len() as u64;
        self.make(parent, name, inode)
    }

    /// Creates a regular file and opens it. When the name exists (made by
    /// another host since this one looked): EEXIST with O_EXCL, else the
    /// existing file is opened, as open(2) without O_EXCL does.
    pub fn create(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: super::OpenFlags,
        caller: Caller,
    ) -> FsResult<(Inode, u64)> {
        if let Some(created) = self.create_deferred(parent, name, mode, flags, caller)? {
            return Ok(created);
        }
        // A name that another host creates and removes again while this
        // loop runs is tried a few times.
        for _ in 0..CREATE_TRIES {
            let inode = self.prepare(parent, name, Kind::File, mode, caller)?;
            let p = self.load_dir(parent)?;
            match self.add_entry(&p, name, &inode)? {
                Ok(()) => {
                    let fh = self.open_inode(inode.clone(), flags)?;
                    return Ok((inode, fh));
                }
                Err(_) if flags.exclusive => return Err(FsError::Exists),
                Err(None) => continue,
                Err(Some(e)) if e.kind == Kind::Dir => return Err(FsError::IsDir),
                Err(Some(e)) => match self.open(e.ino, flags) {
                    Ok(opened) => return Ok((self.getattr(e.ino)?, opened.fh)),
                    // Removed meanwhile, or its inode row is on its way.
                    Err(FsError::NotFound) => std::thread::sleep(CREATE_WAIT),
                    Err(err) => return Err(err),
                },
            }
        }
        // The name could not be made and is not there: the directory is
        // being removed (or the name keeps coming and going).
        Err(FsError::NotFound)
    }

    pub fn link(&self, ino: u64, newparent: u64, newname: &[u8]) -> FsResult<Inode> {
        self.writable()?;
        check_name(newname)?;
        self.settle(ino)?;
        let i = self.store.get_inode(ino)?.ok_or(FsError::NotFound)?;
        if i.kind == Kind::Dir {
            return Err(FsError::Perm);
        }
        if i.nlink >= MAX_LINKS {
            return Err(FsError::TooManyLinks);
        }
        let p = self.load_dir(newparent)?;
        let d = Dentry {
            name: newname.to_vec(),
            ino,
            kind: i.kind,
        };
        let now = now_ns();
        let key = name_key(p.ino, newname);
        // The inode's record of the name is a conditional write on the
        // inode (only while it exists), made side by side with the name's:
        // an unlink of its last name on another host is then either before
        // it (the new name is taken back: ENOENT) or sees it (and keeps the
        // inode). Side by side, a daemon killed between the two leaves at
        // most a link count one too high (`cassfs fsck --repair`).
        let writes = vec![Write::Update(newparent, Change::times(now))];
        let (alive, created) = side_by_side(
            || self.store.add_name_if_alive(ino, &key, now, i.kind),
            || self.store.create_dentry(newparent, &d, writes),
        );
        self.cache.forget_inode(ino);
        self.dir_changed(newparent, now, 0);
        let created = match created {
            Ok(c) => c,
            Err(e) => {
                if matches!(alive, Ok(true)) {
                    self.unrecord_name(ino, newparent, newname)?;
                }
                return Err(e.into());
            }
        };
        if !created {
            if matches!(alive, Ok(true)) {
                self.unrecord_name(ino, newparent, newname)?;
            }
            return match self.store.get_dentry(newparent, newname)? {
                Some(_) => Err(FsError::Exists),
                None => Err(FsError::NotFound), // the directory is being removed
            };
        }
        if !alive? {
            // Deleted by another host first: the new name must not point
            // at nothing.
            self.store
                .remove_dentry(newparent, newname, ino, Vec::new())?;
            return Err(FsError::NotFound);
        }
        // Another host that unlinked or renamed the new name as soon as it
        // appeared may have read the inode before its record of the name
        // landed, and removed the name from the record before this
        // (later) write added it. Checked now that the record is in: a
        // name that is gone already is taken back here; one removed from
        // now on is removed from the record after this write.
        if self.unrecord_name(ino, newparent, newname)? {
            self.cache.forget_dentry(newparent, newname);
            return self.getattr(ino);
        }
        self.cache.set_dentry(newparent, newname, Some(d));
        self.getattr(ino)
    }

    /// Takes back the record of name `parent`/`name` that `ino` wrote
    /// beside its conditional create of that name, unless the name does
    /// name `ino` now (made by this link, or by another host's link of the
    /// same name to the same inode: the record is theirs too). True if
    /// taken back.
    pub(super) fn unrecord_name(&self, ino: u64, parent: u64, name: &[u8]) -> FsResult<bool> {
        if self
            .store
            .get_dentry(parent, name)?
            .is_some_and(|d| d.ino == ino)
        {
            return Ok(false);
        }
        let c = Change::default().with_names(SetOp::Remove(name_key(parent, name)));
        self.store.apply(vec![Write::Update(ino, c)])?;
        Ok(true)
    }

    /// The current entry of a name, asking Cassandra (not the cache).
    pub(super) fn current_entry(&self, parent: u64, name: &[u8]) -> FsResult<Dentry> {
        check_name(name)?;
        let d = self.store.get_dentry(parent, name)?;
        self.cache.put_dentry(parent, name, d.clone());
        d.ok_or(FsError::NotFound)
    }

    pub fn unlink(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.writable()?;
        check_name(name)?;
        self.load_dir(parent)?;
        self.settle_name(parent, name)?;
        for _ in 0..REMOVE_TRIES {
            // The entry and its inode as Cassandra has them now (one round
            // trip when the cached entry still names the same inode).
            let guess = self.cache.dentry(parent, name).flatten().map(|d| d.ino);
            let (d, inode) = self.store.get_dentry_and_inode(parent, name, guess)?;
            self.cache.put_dentry(parent, name, d.clone());
            let d = d.ok_or(FsError::NotFound)?;
            if d.kind == Kind::Dir {
                return Err(FsError::IsDir);
            }
            let now = now_ns();
            // Removed only if it still names the inode read above; if
            // another host replaced it meanwhile, the new file is unlinked
            // on the next round (this unlink came after that change).
            // The parent's times go in the same round trip (also when the
            // name changed meanwhile: a directory's times may move on).
            let also = vec![
                self.removing(parent, name, d.ino, false),
                Write::Update(parent, Change::times(now)),
            ];
            if !self.store.remove_dentry(parent, name, d.ino, also)? {
                self.cache.forget_dentry(parent, name);
                continue;
            }
            self.cache.set_dentry(parent, name, None);
            self.dir_changed(parent, now, 0);
            return match inode {
                Some(i) => self.name_removed(i, name_key(parent, name), now),
                None => Ok(()),
            };
        }
        Err(FsError::Busy)
    }

    /// After unlink removed the name `key` of `i`: deletes the inode when
    /// that was its only name (decided by Cassandra) and it is not open
    /// here, else removes the name from its record.
    fn name_removed(&self, i: Inode, key: Vec<u8>, now: i64) -> FsResult<()> {
        let open = self.files.is_open(i.ino);
        let deleted = !open
            && self.delete_counted(Usage::inode(&i), i.nlink <= 1, |also| {
                self.store.delete_if_last_name(i.ino, &key, also)
            })?;
        if deleted {
            self.cache.forget_inode(i.ino);
            return self.drop_refs(&i);
        }
        let c = Change::ctime(now).with_names(SetOp::Remove(key));
        self.store.apply(vec![Write::Update(i.ino, c)])?;
        self.link_dropped(LinkGone::Unnamed(i))
    }

    /// One name (`parent`/`name`) of a non-directory goes: adds the write
    /// that removes it from the inode's names.
    pub(super) fn link_gone(
        &self,
        inode: Option<Inode>,
        parent: u64,
        name: &[u8],
        now: i64,
        writes: &mut Vec<Write>,
    ) -> LinkGone {
        let Some(i) = inode else {
            return LinkGone::Missing;
        };
        let c = Change::ctime(now).with_names(SetOp::Remove(name_key(parent, name)));
        writes.push(Write::Update(i.ino, c));
        LinkGone::Unnamed(i)
    }

    /// After the writes of [`Fs::link_gone`] were applied: an inode left
    /// with no name is deleted now (by a conditional delete: only if no
    /// name was added or moved to it meanwhile), or at its last close when
    /// it is open here.
    pub(super) fn link_dropped(&self, gone: LinkGone) -> FsResult<()> {
        let LinkGone::Unnamed(i) = gone else {
            return Ok(());
        };
        self.cache.forget_inode(i.ino);
        if self.files.is_open(i.ino) {
            let epoch = self.cache.inode_epoch();
            match self.store.get_inode(i.ino)? {
                None => return Ok(()),
                Some(now) if now.nlink > 0 => {
                    self.cache.put_inode_read(&now, epoch);
                    return Ok(());
                }
                Some(_) if self.files.mark_unlinked(i.ino) => {
                    self.session.hold(i.ino);
                    return Ok(());
                }
                Some(_) => {} // closed meanwhile: deleted here
            }
        }
        self.delete_if_unnamed(&i)
    }

    /// Deletes an inode if Cassandra records no name for it, with its block
    /// references.
    pub(super) fn delete_if_unnamed(&self, i: &Inode) -> FsResult<()> {
        let last = i.nlink <= 1;
        if self.delete_counted(Usage::inode(i), last, |also| {
            self.store.delete_if_unnamed(i.ino, also)
        })? {
            self.cache.forget_inode(i.ino);
            self.drop_refs(i)?;
        }
        self.session.unhold(i.ino);
        Ok(())
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

    pub fn rmdir(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        self.writable()?;
        if name == b"." {
            return Err(FsError::Invalid);
        }
        if name == b".." {
            return Err(FsError::NotEmpty);
        }
        self.load_dir(parent)?;
        for _ in 0..REMOVE_TRIES {
            let d = self.current_entry(parent, name)?;
            if d.kind != Kind::Dir {
                return Err(FsError::NotDir);
            }
            if !self.files.pending_in(d.ino).is_empty() {
                return Err(FsError::NotEmpty); // new files not committed yet
            }
            // Marked first, checked second: the sentinel makes every later
            // conditional write of an entry into it fail (cql/cassfs.cql).
            let now = now_ns();
            if !self.store.mark_removing(d.ino)? {
                // Another rmdir of it is under way: see how it ends.
                std::thread::sleep(RMDIR_WAIT);
                continue;
            }
            if self.store.dir_has_entries(d.ino)? {
                self.store.unmark_removing(d.ino)?;
                return Err(FsError::NotEmpty);
            }
            // Removed only if the name still names this directory.
            let record = vec![self.removing(parent, name, d.ino, true)];
            if !self.store.remove_dentry(parent, name, d.ino, record)? {
                self.store.unmark_removing(d.ino)?;
                self.cache.forget_dentry(parent, name);
                continue;
            }
            let touch = Change::times(now).with_subdirs(SetOp::Remove(d.ino));
            self.store
                .seal_removed(d.ino, vec![Write::Update(parent, touch)])?;
            // Unless another host moved it elsewhere meanwhile (then it
            // keeps its new name and this rmdir removed nothing of it).
            self.delete_counted(Usage::of(Kind::Dir, 0), true, |also| {
                self.store.delete_dir_if_under(d.ino, parent, also)
            })?;
            self.cache.set_dentry(parent, name, None);
            self.dir_changed(parent, now, -1);
            self.dir_removed(d.ino, now);
            return Ok(());
        }
        Err(FsError::Busy)
    }

    /// Forgets a removed directory; an open descriptor of it can still
    /// fstat it (with no links) while the cache keeps its attributes.
    pub(super) fn dir_removed(&self, ino: u64, now: i64) {
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
}
