//! New files whose name waits for their first commit.
//!
//! `open(O_CREAT|O_TRUNC)` without O_EXCL of a regular file under a name
//! this mount has just found absent, while the mount follows the change
//! feed and Cassandra answers, writes nothing to Cassandra: the file
//! lives in its `FileState` with a *pending* name, which this mount's
//! lookups, getattrs, opens and listings see. Its first commit (flush,
//! fsync, last close) writes the name, the inode row and the content in one
//! round trip (`add_entry`: the conditional name and the inode row side by
//! side), instead of a conditional create at open and a commit at close.
//!
//! O_TRUNC discards whatever the name held, so everything from the open to
//! the commit is equivalent to replacing the file's content at the commit.
//! If another host made the name meanwhile, the commit writes this content
//! into that file instead (after the write permission check the open would
//! have made), as an open that found it would have; a directory made there
//! meanwhile fails the commit with EISDIR. O_EXCL creates, creates without
//! O_TRUNC and every other kind of inode still claim their name at once.
//!
//! Other hosts see the file from its first commit on. Any other change of a
//! pending file (a rename, link, unlink, attribute or xattr change, or
//! staging a large file's blocks) first claims the name with the file
//! still empty, as a create that claimed it at once would have. A crash
//! before the first commit leaves nothing: the file was never made.

use super::file::{FileState, Pending};
use super::{Caller, Fs, OpenFlags};
use crate::error::{FsError, FsResult};
use crate::store::{Dentry, Inode, Kind};

/// How often a pending name's claim is tried when the name it found taken
/// is gone when it looks (another host creating and removing it).
const CLAIM_TRIES: u32 = 4;
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// What claiming a pending name did.
enum Claimed {
    /// The name now names this file.
    Made,
    /// Another host had made it: the state now builds on that file.
    Adopted,
}

impl Fs {
    /// create(2) deferred until the first commit, when it may be (see the
    /// module's comment); `None` when the create must claim its name now.
    pub(super) fn create_deferred(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: OpenFlags,
        caller: Caller,
    ) -> FsResult<Option<(Inode, u64)>> {
        if flags.exclusive
            || !flags.truncate
            || !matches!(self.cache.dentry(parent, name), Some(None))
        {
            return Ok(None);
        }
        // Only while Cassandra answers (the feed was read lately, no recent
        // failure): during an outage the create fails at open, as it did,
        // rather than at a close that many programs never check.
        if !self.cache.feed_followed() || self.outage.recent() {
            return Ok(None);
        }
        let inode = self.prepare(parent, name, Kind::File, mode, caller)?;
        let pending = Pending {
            parent,
            name: name.to_vec(),
            caller,
        };
        let fh = self.open_inode(inode.clone(), flags)?;
        self.files.set_pending(&inode, pending);
        Ok(Some((inode, fh)))
    }

    /// The entry of a pending name, if `name` in `parent` is one.
    pub(super) fn pending_entry(&self, parent: u64, name: &[u8]) -> Option<Dentry> {
        let ino = self.files.pending_ino(parent, name)?;
        Some(Dentry {
            name: name.to_vec(),
            ino,
            kind: Kind::File,
        })
    }

    /// Claims the pending name of the file open as `ino` (if it has one),
    /// before a change that needs it in Cassandra.
    pub(super) fn settle(&self, ino: u64) -> FsResult<()> {
        match self.files.pending_state(ino) {
            Some(st) => self.claim_empty(&mut st.lock()),
            None => Ok(()),
        }
    }

    /// [`Fs::settle`] for the file a name in `parent` names, if pending.
    pub(super) fn settle_name(&self, parent: u64, name: &[u8]) -> FsResult<()> {
        match self.files.pending_ino(parent, name) {
            Some(ino) => self.settle(ino),
            None => Ok(()),
        }
    }

    /// Claims the state's pending name for the file as committed so far
    /// (empty), leaving what was written to its next commit.
    pub(super) fn claim_empty(&self, st: &mut FileState) -> FsResult<()> {
        let Some(p) = st.pending.clone() else {
            return Ok(());
        };
        let base = st.base.clone();
        self.claim(st, &p, &base).map(|_| ())
    }

    /// The first commit of a pending file: its name, inode row and content
    /// in one round trip (or, when another host made the name meanwhile,
    /// a commit into that file).
    pub(super) fn commit_new(&self, st: &mut FileState, p: &Pending) -> FsResult<()> {
        let refused = st.over_quota || self.quota_allows_bytes(st.size).is_err();
        if refused {
            // As for any commit past the quota: what was written is dropped
            // (the file itself was created).
            self.drop_changes(st);
        }
        let inode = self.next_version(st)?;
        match self.claim(st, p, &inode)? {
            Claimed::Made => self.committed(st, inode, &[])?,
            Claimed::Adopted => self.commit(st)?,
        }
        if refused {
            return Err(FsError::Quota);
        }
        Ok(())
    }

    /// Creates the pending name `p` for `inode` (the state's file as it is
    /// to be written), or adopts the file another host made under it.
    fn claim(&self, st: &mut FileState, p: &Pending, inode: &Inode) -> FsResult<Claimed> {
        for _ in 0..CLAIM_TRIES {
            let parent = self.load_dir(p.parent)?;
            match self.add_entry(&parent, &p.name, inode)? {
                Ok(()) => {
                    self.files.clear_pending(inode.ino, p);
                    st.pending = None;
                    return Ok(Claimed::Made);
                }
                Err(Some(e)) if e.kind == Kind::File => {
                    if self.adopt(st, p, e.ino)? {
                        return Ok(Claimed::Adopted);
                    }
                }
                Err(Some(e)) if e.kind == Kind::Dir => return Err(FsError::IsDir),
                Err(Some(_)) => return Err(FsError::Exists),
                Err(None) => {}
            }
            std::thread::sleep(CLAIM_WAIT);
        }
        Err(FsError::NotFound)
    }

    /// Makes the state build on `ino`, the file another host made under
    /// the pending name, as an O_TRUNC open of it would: false when that
    /// file is gone again.
    fn adopt(&self, st: &mut FileState, p: &Pending, ino: u64) -> FsResult<bool> {
        let Some(target) = self.store.get_inode(ino)? else {
            return Ok(false);
        };
        if !super::permits(&target, libc::W_OK, p.caller) {
            return Err(FsError::Access);
        }
        log::info!(
            "{:?} was made by another host before this one's first commit: writing into it",
            String::from_utf8_lossy(&p.name)
        );
        self.files.clear_pending(st.base.ino, p);
        st.pending = None;
        st.base = target;
        // Blocks uploaded so far are referenced for the file that was never
        // named: the commit references them again for this one.
        st.referenced.clear();
        st.changed = true;
        Ok(true)
    }

    /// Forgets a pending name whose file is closed without ever being
    /// committed (its commit failed).
    pub(super) fn abandon(&self, st: &mut FileState) {
        if let Some(p) = st.pending.take() {
            self.files.clear_pending(st.base.ino, &p);
            self.cache.forget_dentry(p.parent, &p.name);
        }
    }
}
