//! rename(2), with RENAME_NOREPLACE and RENAME_EXCHANGE.
//!
//! A rename is one logged batch: the entries, the moved inode's names or
//! parent, the parents' times and link counts, and a replaced target all
//! change together, even if this process dies right after sending it.
//! Moving a directory to another parent first takes the volume's mover
//! lease (a conditional write in Cassandra) and then checks the new parent's
//! ancestry in Cassandra, not in caches: two hosts cannot make a cycle.

use super::{check_name, now_ns, Fs, ROOT};
use crate::error::{FsError, FsResult};
use crate::store::{name_key, Change, Dentry, Kind, SetOp, Write};

/// Seconds after which the mover lease of a crashed holder expires.
const LEASE_TTL_SECS: i32 = 30;
/// How often, and how long in all, to try for the mover lease.
const LEASE_RETRY: std::time::Duration = std::time::Duration::from_millis(20);
const LEASE_TRIES: u32 = 500;
/// The deepest directory tree a cycle check walks.
const MAX_DEPTH: usize = 4096;

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

/// The mover lease, given back when dropped.
struct MoverLease<'a> {
    fs: &'a Fs,
}

impl Drop for MoverLease<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.fs.store.drop_mover(&self.fs.mount_id) {
            log::warn!("could not give back the directory mover lease ({e}); it expires in {LEASE_TTL_SECS} s");
        }
    }
}

/// The change of a non-directory's names: `from` goes, `to` comes.
fn renamed(ino: u64, from: Vec<u8>, to: Vec<u8>, now: i64) -> [Write; 2] {
    [
        Write::Update(ino, Change::ctime(now).with_names(SetOp::Remove(from))),
        Write::Update(ino, Change::default().with_names(SetOp::Add(to))),
    ]
}

impl Fs {
    /// Takes the volume's lease for moving directories between parents.
    fn mover_lease(&self) -> FsResult<MoverLease<'_>> {
        for _ in 0..LEASE_TRIES {
            if self.store.take_mover(&self.mount_id, LEASE_TTL_SECS)? {
                return Ok(MoverLease { fs: self });
            }
            std::thread::sleep(LEASE_RETRY);
        }
        Err(FsError::Busy)
    }

    /// Fails with EINVAL when `dir` is `ancestor` or below it, walking the
    /// parents as Cassandra has them.
    fn not_below(&self, dir: u64, ancestor: u64) -> FsResult<()> {
        let mut cur = dir;
        for _ in 0..MAX_DEPTH {
            if cur == ancestor {
                return Err(FsError::Invalid);
            }
            if cur == ROOT {
                return Ok(());
            }
            let epoch = self.cache.inode_epoch();
            let i = self.store.get_inode(cur)?.ok_or(FsError::NotFound)?;
            self.cache.put_inode_read(&i, epoch);
            cur = i.parent;
        }
        Err(FsError::Invalid)
    }

    /// The changes of the moved inode `d`, now `newparent`/`newname`.
    fn moved_writes(
        &self,
        d: &Dentry,
        from: (u64, &[u8]),
        to: (u64, &[u8]),
        now: i64,
    ) -> Vec<Write> {
        if d.kind == Kind::Dir {
            let mut c = Change::ctime(now);
            if from.0 != to.0 {
                c.parent = Some(to.0);
            }
            return vec![Write::Update(d.ino, c)];
        }
        renamed(d.ino, name_key(from.0, from.1), name_key(to.0, to.1), now).to_vec()
    }

    /// Times of the parents, and their link counts when a directory moves
    /// from one to the other (`moved_dir`).
    fn parent_writes(&self, from: u64, to: u64, moved_dir: Option<u64>, now: i64) -> Vec<Write> {
        if from == to {
            return vec![Write::Update(from, Change::times(now))];
        }
        let (mut a, mut b) = (Change::times(now), Change::times(now));
        if let Some(ino) = moved_dir {
            a = a.with_subdirs(SetOp::Remove(ino));
            b = b.with_subdirs(SetOp::Add(ino));
        }
        vec![Write::Update(from, a), Write::Update(to, b)]
    }

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
        self.settle_name(parent, name)?;
        self.settle_name(newparent, newname)?;
        let mut src = self.current_entry(parent, name)?;
        if parent == newparent && name == newname {
            return Ok(());
        }
        // Renames of directories are serialized by the volume's lease (a
        // directory must never end up with two names); the source is read
        // again once it is held.
        let _lease = if src.kind == Kind::Dir || flags.exchange {
            let lease = self.mover_lease()?;
            src = self.current_entry(parent, name)?;
            Some(lease)
        } else {
            None
        };
        // The target and its inode, in one round trip when the cache knows it.
        let guess = self
            .cache
            .dentry(newparent, newname)
            .flatten()
            .map(|d| d.ino);
        let (dst, dst_inode) = self.store.get_dentry_and_inode(newparent, newname, guess)?;
        if src.kind == Kind::Dir && parent != newparent {
            self.not_below(newparent, src.ino)?;
        }
        if flags.exchange {
            let dst = dst.ok_or(FsError::NotFound)?;
            if dst.kind == Kind::Dir && parent != newparent {
                self.not_below(parent, dst.ino)?;
            }
            return self.exchange((parent, name, src), (newparent, newname, dst));
        }
        if let Some(dst) = &dst {
            if flags.noreplace {
                return Err(FsError::Exists);
            }
            if dst.ino == src.ino {
                return Ok(()); // two names of one file: nothing to do
            }
            match (src.kind == Kind::Dir, dst.kind == Kind::Dir) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                (true, true) => {
                    // Replacing a directory removes it: like rmdir, its
                    // sentinel is set before it is checked to be empty.
                    if !self.store.mark_removing(dst.ino)? {
                        return Err(FsError::Busy);
                    }
                    if self.store.dir_has_entries(dst.ino)? {
                        self.store.unmark_removing(dst.ino)?;
                        return Err(FsError::NotEmpty);
                    }
                }
                _ => {}
            }
        }
        let moved = Dentry {
            name: newname.to_vec(),
            ..src.clone()
        };
        let now = now_ns();
        let mut writes = vec![Write::DeleteDentry(parent, name.to_vec(), src.ino)];
        let journal_id = rand::random::<i64>();
        // The new name is made (or, over an existing name, replaced) by a
        // conditional write: a name another host made or replaced meanwhile
        // is never overwritten unseen (the rename starts again). It records
        // the source until the batch clears it, journaled in the same round
        // trip: a rename interrupted in between is finished by the next
        // reader of the name or the next mount (store/moves.rs).
        // The file's names change in the batch, not beside the conditional
        // write: the journal row goes first (`Store::conditional_entry`),
        // and a process killed before the new name lands must leave the
        // inode's names as they were.
        let from = Some(name_key(parent, name));
        let also = vec![Write::Journal(journal_id, newparent, newname.to_vec())];
        let placed = match &dst {
            None => self
                .store
                .create_dentry_from(newparent, &moved, from, also)?,
            Some(old) => self
                .store
                .replace_dentry_from(newparent, &moved, old.ino, from, also)?,
        };
        if !placed {
            self.store.apply(vec![Write::Unjournal(journal_id)])?;
            if let Some(d) = dst.as_ref().filter(|d| d.kind == Kind::Dir) {
                self.store.unmark_removing(d.ino)?;
            }
            self.cache.forget_dentry(newparent, newname);
            let now_there = self.store.get_dentry(newparent, newname)?;
            if flags.noreplace && now_there.is_some() {
                return Err(FsError::Exists);
            }
            if now_there.is_none() {
                return Err(FsError::NotFound); // the new parent is being removed
            }
            // Made or replaced by another host since it was read: again.
            drop(_lease);
            return self.rename(parent, name, newparent, newname, flags);
        }
        writes.push(Write::ClearMoving(newparent, newname.to_vec()));
        writes.push(Write::Unjournal(journal_id));
        writes.extend(self.moved_writes(&src, (parent, name), (newparent, newname), now));
        let moved_dir = (src.kind == Kind::Dir).then_some(src.ino);
        writes.extend(self.parent_writes(parent, newparent, moved_dir, now));
        let mut replaced = None;
        let mut removed_dir = None;
        if let Some(dst) = dst {
            if dst.kind == Kind::Dir {
                let c = Change::default().with_subdirs(SetOp::Remove(dst.ino));
                writes.push(Write::Update(newparent, c));
                removed_dir = Some(dst.ino);
            } else {
                replaced = Some(self.link_gone(dst_inode, newparent, newname, now, &mut writes));
            }
        }
        self.store.apply_atomic(writes, true)?;
        self.cache.set_dentry(parent, name, None);
        self.cache
            .set_dentry(newparent, newname, Some(moved.clone()));
        if let Some(ino) = removed_dir {
            self.store.seal_removed(ino, Vec::new())?;
            let dir = crate::store::Usage::of(Kind::Dir, 0);
            self.delete_counted(dir, true, |also| {
                self.store.delete_dir_if_under(ino, newparent, also)
            })?;
        }
        self.cache.forget_inode(src.ino);
        let moved_out = i64::from(moved_dir.is_some() && parent != newparent);
        self.dir_changed(parent, now, -moved_out);
        self.dir_changed(newparent, now, moved_out - i64::from(removed_dir.is_some()));
        if let Some(ino) = removed_dir {
            self.dir_removed(ino, now);
        }
        if let Some(gone) = replaced {
            self.link_dropped(gone)?;
        }
        self.moved_still_exists(newparent, &moved, moved_out == 1)?;
        Ok(())
    }

    /// After a rename's batch: if another host deleted the moved inode
    /// meanwhile (its unlink or rmdir read the old name before this rename
    /// moved it), the new name must not point at nothing: it is removed
    /// again and the rename fails with ENOENT.
    fn moved_still_exists(&self, newparent: u64, moved: &Dentry, subdir: bool) -> FsResult<()> {
        if self.store.get_version(moved.ino)?.is_some() {
            return Ok(());
        }
        let mut undo = vec![Write::DeleteDentry(
            newparent,
            moved.name.clone(),
            moved.ino,
        )];
        if subdir {
            let c = Change::default().with_subdirs(SetOp::Remove(moved.ino));
            undo.push(Write::Update(newparent, c));
        }
        self.store.apply_atomic(undo, false)?;
        self.cache.set_dentry(newparent, &moved.name, None);
        Err(FsError::NotFound)
    }

    /// RENAME_EXCHANGE: the two names swap inodes.
    fn exchange(&self, a: (u64, &[u8], Dentry), b: (u64, &[u8], Dentry)) -> FsResult<()> {
        let (parent, name, src) = a;
        let (newparent, newname, dst) = b;
        if src.ino == dst.ino {
            return Ok(());
        }
        let now = now_ns();
        let at_b = Dentry {
            name: newname.to_vec(),
            ..src.clone()
        };
        let at_a = Dentry {
            name: name.to_vec(),
            ..dst.clone()
        };
        let mut writes = vec![
            Write::PutDentry(newparent, at_b.clone()),
            Write::PutDentry(parent, at_a.clone()),
        ];
        writes.extend(self.moved_writes(&src, (parent, name), (newparent, newname), now));
        writes.extend(self.moved_writes(&dst, (newparent, newname), (parent, name), now));
        writes.extend(self.parent_writes(parent, newparent, None, now));
        if parent != newparent {
            for (d, from, to) in [(&src, parent, newparent), (&dst, newparent, parent)] {
                if d.kind == Kind::Dir {
                    let out = Change::default().with_subdirs(SetOp::Remove(d.ino));
                    let into = Change::default().with_subdirs(SetOp::Add(d.ino));
                    writes.push(Write::Update(from, out));
                    writes.push(Write::Update(to, into));
                }
            }
        }
        self.store.apply_atomic(writes, false)?;
        self.cache.set_dentry(newparent, newname, Some(at_b));
        self.cache.set_dentry(parent, name, Some(at_a));
        for ino in [src.ino, dst.ino, parent, newparent] {
            self.cache.forget_inode(ino);
        }
        Ok(())
    }
}
