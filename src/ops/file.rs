//! Open files: reads, buffered writes and whole-file commits.
//!
//! Writes never go to Cassandra one by one. Each inode open on this host has
//! one [`FileState`]: the committed inode it started from (`base`) plus the
//! blocks changed since (`dirty` in memory, `staged` already uploaded when
//! too many were dirty, so a huge file is streamed, never held whole). At
//! flush, fsync or last close the state is *committed*: new blocks are
//! uploaded, then the inode row is rewritten with the new block list in one
//! write. Readers anywhere see the old content or the new, never a mix.
//!
//! A read-only mount's reads come without a handle (`read_unopened`): each
//! reads the inode's current content through a state made for that read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::{now_ns, Caller, Fs};
use crate::error::{FsError, FsResult};
use crate::store::{Content, Hash, Inode, Kind, Usage, Write, BLOCK_SIZE, HOLE, INLINE_MAX};

/// The largest file: 16 GiB (its block list, 32 bytes per MiB, stays a
/// 512 KiB column). Writes and truncates past it fail with EFBIG.
pub const MAX_FILE_SIZE: u64 = 16 << 30;
/// Dirty blocks kept in memory per file before they are uploaded.
const MAX_DIRTY_BLOCKS: usize = 16;
/// Blocks read ahead of a read: when a needed block, or the one half this
/// window ahead, is not cached, the missing blocks of the whole window are
/// fetched in parallel.
const READ_AHEAD: u64 = 32;
const BS: u64 = BLOCK_SIZE;
/// How long a read waits for a block the read-ahead is fetching.
const PREFETCH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A block to store: its hash and bytes.
type Upload = (Hash, Arc<Vec<u8>>);

/// The name a new file gets at its first commit, and who created it
/// (`deferred.rs`).
#[derive(Clone, Debug)]
pub(super) struct Pending {
    pub parent: u64,
    pub name: Vec<u8>,
    pub caller: Caller,
}

/// The result of an open.
#[derive(Clone, Copy, Debug)]
pub struct Opened {
    pub fh: u64,
    /// The kernel may keep the pages it cached (the content is unchanged).
    pub keep_cache: bool,
    /// The kernel may hold attributes (the size) of another version: they
    /// must be invalidated before it reads.
    pub attrs_stale: bool,
}

/// What an open asked for.
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenFlags {
    pub write: bool,
    pub append: bool,
    pub truncate: bool,
    /// O_EXCL (with O_CREAT): fail if the name exists.
    pub exclusive: bool,
}

impl OpenFlags {
    pub fn from_bits(flags: i32) -> OpenFlags {
        OpenFlags {
            write: flags & libc::O_ACCMODE != libc::O_RDONLY,
            append: flags & libc::O_APPEND != 0,
            truncate: flags & libc::O_TRUNC != 0,
            exclusive: flags & libc::O_EXCL != 0,
        }
    }
}

/// The local, uncommitted state of one open inode.
pub(super) struct FileState {
    pub(super) base: Inode,
    /// Bytes of `base`'s content still valid (less after a truncate).
    base_valid: u64,
    pub(super) size: u64,
    dirty: BTreeMap<u64, Vec<u8>>,
    staged: BTreeMap<u64, Hash>,
    /// Blocks referenced for this inode since `base` (by uploads, whose
    /// references are written before the blocks: see `upload`).
    pub(super) referenced: HashSet<Hash>,
    pub(super) changed: bool,
    /// A write was refused for the volume's quota: the next commit drops
    /// what is written since `base` instead (EDQUOT).
    pub(super) over_quota: bool,
    mtime_ns: i64,
    opens: u32,
    /// The name this new file gets at its first commit (`deferred.rs`).
    pub(super) pending: Option<Pending>,
    /// Dropped from the registry at its last close: an open that found it
    /// there just before takes the registry's next state instead.
    closed: bool,
}

impl FileState {
    /// The state of `base` with nothing written.
    fn new(base: Inode) -> FileState {
        FileState {
            base_valid: base.size,
            size: base.size,
            mtime_ns: base.mtime_ns,
            base,
            dirty: BTreeMap::new(),
            staged: BTreeMap::new(),
            referenced: HashSet::new(),
            changed: false,
            over_quota: false,
            opens: 0,
            pending: None,
            closed: false,
        }
    }
}

struct Handle {
    ino: u64,
    flags: OpenFlags,
}

/// The inodes open on this mount, and which of them lost their last name
/// while open (deleted at last close). One lock for both, so an unlink and
/// a last close racing each other agree on who deletes the inode.
#[derive(Default)]
struct Registry {
    states: HashMap<u64, Arc<Mutex<FileState>>>,
    unlinked: HashSet<u64>,
    /// Pending names (parent, name) of new files not committed yet, and
    /// those files' inodes as created (`deferred.rs`).
    pending: HashMap<(u64, Vec<u8>), u64>,
    pending_inodes: HashMap<u64, Inode>,
}

/// The open files of a mount.
#[derive(Default)]
pub(super) struct OpenFiles {
    registry: Mutex<Registry>,
    handles: Mutex<HashMap<u64, Handle>>,
    /// The content version whose pages the kernel may hold, per inode.
    page_versions: Mutex<HashMap<u64, i64>>,
}

impl OpenFiles {
    fn state(&self, ino: u64) -> Option<Arc<Mutex<FileState>>> {
        self.registry.lock().states.get(&ino).cloned()
    }

    /// Shows local, uncommitted size and mtime in `i`.
    pub(super) fn overlay(&self, i: &mut Inode) {
        if let Some(st) = self.state(i.ino) {
            show_local(&st.lock(), i);
        }
    }

    /// Records the pending name of the new file `i`, open here.
    pub(super) fn set_pending(&self, i: &Inode, p: Pending) {
        let mut r = self.registry.lock();
        r.pending.insert((p.parent, p.name.clone()), i.ino);
        r.pending_inodes.insert(i.ino, i.clone());
        if let Some(st) = r.states.get(&i.ino) {
            st.lock().pending = Some(p);
        }
    }

    pub(super) fn clear_pending(&self, ino: u64, p: &Pending) {
        let mut r = self.registry.lock();
        let key = (p.parent, p.name.clone());
        if r.pending.get(&key) == Some(&ino) {
            r.pending.remove(&key);
        }
        r.pending_inodes.remove(&ino);
    }

    /// The file a pending name in `parent` names.
    pub(super) fn pending_ino(&self, parent: u64, name: &[u8]) -> Option<u64> {
        let r = self.registry.lock();
        if r.pending.is_empty() {
            return None;
        }
        r.pending.get(&(parent, name.to_vec())).copied()
    }

    /// The pending names in `parent`, with their files.
    pub(super) fn pending_in(&self, parent: u64) -> Vec<(Vec<u8>, u64)> {
        let r = self.registry.lock();
        r.pending
            .iter()
            .filter(|((dir, _), _)| *dir == parent)
            .map(|((_, name), ino)| (name.clone(), *ino))
            .collect()
    }

    /// A file with a pending name, as created (its local size and times
    /// come from [`OpenFiles::overlay`]).
    pub(super) fn pending_inode(&self, ino: u64) -> Option<Inode> {
        let r = self.registry.lock();
        if r.pending_inodes.is_empty() {
            return None;
        }
        r.pending_inodes.get(&ino).cloned()
    }

    /// The state of a file with a pending name.
    pub(super) fn pending_state(&self, ino: u64) -> Option<Arc<Mutex<FileState>>> {
        let r = self.registry.lock();
        if !r.pending_inodes.contains_key(&ino) {
            return None;
        }
        r.states.get(&ino).cloned()
    }

    /// [`OpenFiles::overlay`] without waiting: false if the inode's state
    /// is busy (a commit under way).
    fn try_overlay(&self, i: &mut Inode) -> bool {
        let Some(st) = self.state(i.ino) else {
            return true;
        };
        let Some(st) = st.try_lock() else {
            return false;
        };
        show_local(&st, i);
        true
    }

    pub(super) fn set_mtime(&self, ino: u64, t: i64) {
        if let Some(st) = self.state(ino) {
            st.lock().mtime_ns = t;
        }
    }

    pub(super) fn is_open(&self, ino: u64) -> bool {
        self.registry.lock().states.contains_key(&ino)
    }

    /// Marks an open inode as having no name left, to be deleted at its
    /// last close; false if it is not open here (the caller deletes it).
    pub(super) fn mark_unlinked(&self, ino: u64) -> bool {
        let mut r = self.registry.lock();
        if r.states.contains_key(&ino) {
            r.unlinked.insert(ino);
            true
        } else {
            false
        }
    }

    fn is_unlinked(&self, ino: u64) -> bool {
        self.registry.lock().unlinked.contains(&ino)
    }

    /// Forgets an inode's state at its last close; true if it lost its
    /// last name while open (the caller deletes it).
    fn close_last(&self, ino: u64) -> bool {
        let mut r = self.registry.lock();
        r.states.remove(&ino);
        r.unlinked.remove(&ino)
    }

    /// Open handles, and bytes written and not yet committed (for metrics;
    /// files still busy, e.g. committing, after a moment are left out).
    fn sample(&self) -> crate::metrics::Sample {
        let open_files = self.handles.lock().len() as u64;
        let states: Vec<_> = self.registry.lock().states.values().cloned().collect();
        let until = std::time::Instant::now() + std::time::Duration::from_millis(200);
        let dirty_bytes = states
            .iter()
            .filter_map(|st| st.try_lock_until(until))
            .map(|st| st.dirty.values().map(|b| b.len() as u64).sum::<u64>())
            .sum();
        crate::metrics::Sample {
            open_files,
            dirty_bytes,
        }
    }

    pub(super) fn commit_all(&self, fs: &Fs) -> FsResult<()> {
        let states: Vec<_> = {
            let r = self.registry.lock();
            r.states
                .iter()
                .filter(|(ino, _)| !r.unlinked.contains(ino))
                .map(|(_, st)| st.clone())
                .collect()
        };
        let mut result = Ok(());
        for st in states {
            if let Err(e) = fs.commit(&mut st.lock()) {
                result = Err(e);
            }
        }
        result
    }
}

/// Shows a state's local, uncommitted size and mtime in `i`.
fn show_local(st: &FileState, i: &mut Inode) {
    i.size = st.size;
    if st.changed {
        i.mtime_ns = st.mtime_ns;
        i.ctime_ns = i.ctime_ns.max(st.mtime_ns);
    }
}

fn sha256(data: &[u8]) -> Hash {
    let mut h = [0u8; 32];
    h.copy_from_slice(&Sha256::digest(data));
    h
}

/// Length of block `idx` in a file of `size` bytes.
fn block_len(size: u64, idx: u64) -> u64 {
    size.saturating_sub(idx * BS).min(BS)
}

/// Appends `data[from..to]`, padded with zeros to `to - from` bytes.
fn append_range(out: &mut Vec<u8>, data: &[u8], from: u64, to: u64) {
    let len = data.len() as u64;
    let (a, b) = (from.min(len), to.min(len));
    out.extend_from_slice(&data[a as usize..b as usize]);
    out.resize(out.len() + (to - from - (b - a)) as usize, 0);
}

/// Starts an open state from `fresh` if that is a newer commit and nothing
/// is written here; true if it did.
fn adopt(st: &mut FileState, fresh: Inode) -> bool {
    if st.changed || st.base.version == fresh.version {
        return false;
    }
    st.base_valid = fresh.size;
    st.size = fresh.size;
    st.mtime_ns = fresh.mtime_ns;
    st.staged.clear();
    st.dirty.clear();
    st.over_quota = false;
    st.base = fresh;
    true
}

impl Fs {
    /// Brings the handles open here on `ino` to its latest commit when
    /// nothing is written here (a lock was just granted: its previous
    /// holder may have committed on another host). True if the content
    /// changed: the kernel's pages of it are then stale.
    pub fn refresh_open(&self, ino: u64) -> FsResult<bool> {
        let Some(st) = self.files.state(ino) else {
            return Ok(false);
        };
        let fresh = self.load_current(ino, true)?;
        let version = fresh.version;
        if !adopt(&mut st.lock(), fresh) {
            return Ok(false);
        }
        self.files.page_versions.lock().insert(ino, version);
        Ok(true)
    }

    /// Attributes answered from memory, without waiting on anything (in the
    /// adapter's thread): the cached inode within its TTL, with local
    /// writes shown, as [`Fs::getattr`] answers. `None`: the worker answers.
    pub fn getattr_cached(&self, ino: u64) -> Option<Inode> {
        let mut i = self.cache.inode(ino)?;
        self.files.try_overlay(&mut i).then_some(i)
    }

    /// What the metrics sample of open files (see [`crate::metrics::Sample`]).
    pub fn open_files_sample(&self) -> crate::metrics::Sample {
        self.files.sample()
    }

    /// Opens an existing inode; returns the handle and whether the kernel
    /// may keep the pages it cached (the content is unchanged since).
    /// An open for reading uses the cached inode while the change feed
    /// vouches for it, else reads the version from Cassandra (and the row
    /// when it changed); an open for writing without O_TRUNC always does,
    /// so what it writes builds on the latest commit of any host.
    pub fn open(&self, ino: u64, flags: OpenFlags) -> FsResult<Opened> {
        // An inode gone since the kernel looked its path up (a file renamed
        // over it, or removed): ESTALE makes the kernel look the path up
        // again and open what is there now (or fail with ENOENT).
        let i = match self.load_current(ino, flags.write && !flags.truncate) {
            Err(FsError::NotFound) => return Err(FsError::Stale),
            other => other?,
        };
        match i.kind {
            Kind::Dir => return Err(FsError::IsDir),
            Kind::File => {}
            _ => return Err(FsError::NotSupported),
        }
        if flags.write || flags.truncate {
            self.writable()?;
        }
        let (version, parent) = (i.version, i.parent);
        let fh = self.open_inode(i, flags)?;
        Ok(self.opened(fh, ino, parent, version, flags))
    }

    /// The answer to an open of `ino` (of `version`, in `parent`) as
    /// handle `fh`: the kernel keeps its pages if they are of this version;
    /// a first open here starts the directory's read-ahead.
    fn opened(&self, fh: u64, ino: u64, parent: u64, version: i64, flags: OpenFlags) -> Opened {
        let had = self.files.page_versions.lock().insert(ino, version);
        if had.is_none() {
            self.dirahead
                .opened_in(parent, ino, &self.cache, &self.prefetch);
        }
        Opened {
            fh,
            keep_cache: !flags.truncate && had == Some(version),
            // Also on a first open here: the kernel may hold attributes
            // from a lookup made before the content changed.
            attrs_stale: had != Some(version),
        }
    }

    /// An open for reading answered from memory, without waiting on
    /// anything (the adapter calls it in its own thread), when the change
    /// feed vouches for the cached inode: the same answer as [`Fs::open`]
    /// gives then. `None`: the open goes to the worker as usual (not
    /// cached, for writing, or the inode's state busy or of another
    /// version: the worker settles those in order).
    pub fn open_cached(&self, ino: u64, flags: OpenFlags) -> Option<Opened> {
        if flags.write || flags.truncate {
            return None;
        }
        let i = self
            .cache
            .current_inode(ino)
            .filter(|i| i.kind == Kind::File)?;
        let (version, parent) = (i.version, i.parent);
        let fh = self.new_fh();
        let mut r = self.files.registry.lock();
        match r.states.get(&ino) {
            Some(st) => {
                let mut st = st.try_lock().filter(|st| st.base.version == version)?;
                st.opens += 1;
            }
            None => {
                let mut st = FileState::new(i);
                st.opens = 1;
                r.states.insert(ino, Arc::new(Mutex::new(st)));
            }
        }
        self.files.handles.lock().insert(fh, Handle { ino, flags });
        drop(r);
        Some(self.opened(fh, ino, parent, version, flags))
    }

    /// A release answered from memory (in the adapter's thread): when the
    /// handle's inode stays open through other handles, or when nothing is
    /// left to commit and its last name is not gone. False: the worker
    /// releases it. The kernel sends RELEASE after every request on the
    /// handle was answered (its FLUSH included), so nothing of it is queued.
    pub fn release_clean(&self, fh: u64) -> bool {
        let Some(ino) = self.files.handles.lock().get(&fh).map(|h| h.ino) else {
            return false;
        };
        let mut r = self.files.registry.lock();
        let unlinked = r.unlinked.contains(&ino);
        let Some(st) = r.states.get(&ino).cloned() else {
            return false;
        };
        let Some(mut st) = st.try_lock() else {
            return false;
        };
        if st.opens > 1 {
            st.opens -= 1;
        } else if st.changed || st.over_quota || unlinked || st.pending.is_some() {
            return false;
        } else {
            st.opens = 0;
            st.closed = true;
            r.states.remove(&ino);
        }
        self.files.handles.lock().remove(&fh);
        true
    }

    /// Registers a handle on `i`, sharing the inode's state with other
    /// handles open on this host.
    pub(super) fn open_inode(&self, i: Inode, flags: OpenFlags) -> FsResult<u64> {
        let ino = i.ino;
        loop {
            let st = {
                let mut r = self.files.registry.lock();
                r.states
                    .entry(ino)
                    .or_insert_with(|| Arc::new(Mutex::new(FileState::new(i.clone()))))
                    .clone()
            };
            let mut st = st.lock();
            // Closed meanwhile (a release answered in the adapter's thread
            // dropped it from the registry): take the registry's new one.
            if !st.closed {
                return self.open_state(&mut st, i, flags);
            }
        }
    }

    /// Adds a handle to an inode's state (locked by the caller).
    fn open_state(&self, st: &mut FileState, fresh: Inode, flags: OpenFlags) -> FsResult<u64> {
        let ino = fresh.ino;
        // Committed elsewhere since the other handles here opened it?
        adopt(st, fresh);
        st.opens += 1;
        if flags.truncate {
            self.truncate_state(st, 0)?;
        }
        let fh = self.new_fh();
        self.files.handles.lock().insert(fh, Handle { ino, flags });
        Ok(fh)
    }

    fn handle(&self, fh: u64) -> FsResult<(u64, OpenFlags, Arc<Mutex<FileState>>)> {
        let (ino, flags) = {
            let handles = self.files.handles.lock();
            let h = handles.get(&fh).ok_or(FsError::BadHandle)?;
            (h.ino, h.flags)
        };
        let st = self.files.state(ino).ok_or(FsError::BadHandle)?;
        Ok((ino, flags, st))
    }

    /// Blocks by hash, from the cache or (in parallel) from Cassandra.
    fn fetch(&self, hashes: &[Hash]) -> FsResult<HashMap<Hash, Arc<Vec<u8>>>> {
        let mut got = HashMap::new();
        let mut missing = Vec::new();
        for h in hashes {
            if *h == HOLE || got.contains_key(h) {
                continue;
            }
            match self.cache.block(h) {
                Some(d) => {
                    got.insert(*h, d);
                }
                None => missing.push(*h),
            }
        }
        missing.sort();
        missing.dedup();
        for (h, d) in missing.iter().zip(self.store.get_blocks(&missing)?) {
            self.cache.put_block(*h, d.clone());
            got.insert(*h, d);
        }
        Ok(got)
    }

    /// The stored block (hash) that holds block `idx`, if any.
    fn block_hash(st: &FileState, idx: u64) -> Option<Hash> {
        if let Some(h) = st.staged.get(&idx) {
            return Some(*h);
        }
        if idx * BS >= st.base_valid {
            return None;
        }
        match &st.base.content {
            Content::Blocks(h) => h.get(idx as usize).copied().filter(|h| *h != HOLE),
            Content::Inline(_) => None,
        }
    }

    /// Appends bytes `[from, to)` of block `idx` of the current content.
    fn read_block(
        &self,
        st: &FileState,
        idx: u64,
        from: u64,
        to: u64,
        out: &mut Vec<u8>,
    ) -> FsResult<()> {
        if let Some(buf) = st.dirty.get(&idx) {
            append_range(out, buf, from, to);
            return Ok(());
        }
        if let Some(h) = Self::block_hash(st, idx) {
            let blocks = self.fetch(&[h])?;
            let data = blocks.get(&h).ok_or(FsError::Invalid)?;
            // Base bytes past a truncation point read as zeros.
            let valid = if st.staged.contains_key(&idx) {
                data.len() as u64
            } else {
                (data.len() as u64).min(st.base_valid - idx * BS)
            };
            append_range(out, &data[..valid as usize], from, to);
            return Ok(());
        }
        match &st.base.content {
            Content::Inline(d) if idx == 0 => {
                let valid = (d.len() as u64).min(st.base_valid);
                append_range(out, &d[..valid as usize], from, to)
            }
            _ => append_range(out, &[], from, to),
        }
        Ok(())
    }

    pub fn read(&self, fh: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let (_, _, st) = self.handle(fh)?;
        let st = st.lock();
        self.read_state(&st, offset, size)
    }

    /// A read answered from memory, without waiting on anything (in the
    /// adapter's thread): when the handle's state is free and every byte
    /// asked for is in memory (written here, inline, or in cached blocks).
    /// `None`: the worker reads.
    pub fn read_cached(&self, fh: u64, offset: u64, size: u32) -> Option<Vec<u8>> {
        let (_, _, st) = self.handle(fh).ok()?;
        let st = st.try_lock()?;
        let end = offset.saturating_add(u64::from(size)).min(st.size);
        if offset < end {
            let in_memory = |idx: u64| {
                st.dirty.contains_key(&idx)
                    || Self::block_hash(&st, idx).is_none_or(|h| self.cache.has_block(&h))
            };
            if !(offset / BS..=(end - 1) / BS).all(in_memory) {
                return None;
            }
        }
        self.read_state(&st, offset, size).ok()
    }

    /// A read without a handle (a read-only mount, whose kernel opens
    /// nothing): the inode's content as it is now, from the cached copy
    /// while the change feed vouches for it, else from the version
    /// Cassandra has. The state read from is made for this one read.
    pub fn read_unopened(&self, ino: u64, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        if let Some(st) = self.files.state(ino) {
            return self.read_state(&st.lock(), offset, size);
        }
        let i = self.load_current(ino, false)?;
        match i.kind {
            Kind::File => self.read_state(&FileState::new(i), offset, size),
            Kind::Dir => Err(FsError::IsDir),
            _ => Err(FsError::Invalid),
        }
    }

    /// Bytes `[offset, offset + size)` of a state's content, fetching the
    /// blocks it needs and requesting those ahead of it.
    fn read_state(&self, st: &FileState, offset: u64, size: u32) -> FsResult<Vec<u8>> {
        let end = offset.saturating_add(u64::from(size)).min(st.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let (first, last) = (offset / BS, (end - 1) / BS);
        let missing = |i: u64| -> Option<Hash> {
            if i * BS >= st.size || st.dirty.contains_key(&i) {
                return None;
            }
            Self::block_hash(st, i).filter(|h| !self.cache.has_block(h))
        };
        let needed: Vec<Hash> = (first..=last).filter_map(missing).collect();
        if !needed.is_empty() || missing(last + READ_AHEAD / 2).is_some() {
            let ahead: Vec<Hash> = (last + 1..=last + READ_AHEAD).filter_map(missing).collect();
            self.prefetch.request(ahead);
        }
        if !needed.is_empty() {
            // Blocks already on their way are waited for, not fetched twice.
            self.prefetch.wait(&needed, PREFETCH_WAIT);
            let still: Vec<Hash> = needed
                .into_iter()
                .filter(|h| !self.cache.has_block(h))
                .collect();
            self.fetch(&still)?;
        }
        let mut out = Vec::with_capacity((end - offset) as usize);
        for idx in first..=last {
            let from = offset.max(idx * BS) - idx * BS;
            let to = end.min((idx + 1) * BS) - idx * BS;
            self.read_block(st, idx, from, to, &mut out)?;
        }
        Ok(out)
    }

    pub fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        self.writable()?;
        let (_, flags, st) = self.handle(fh)?;
        if !flags.write {
            return Err(FsError::BadHandle);
        }
        let mut st = st.lock();
        let offset = if flags.append { st.size } else { offset };
        let end = offset
            .checked_add(data.len() as u64)
            .filter(|e| *e <= MAX_FILE_SIZE)
            .ok_or(FsError::TooBig)?;
        if end > st.size {
            // What the commit would add to the volume, checked before
            // anything is buffered.
            if let Err(e) = self.quota_allows_bytes(end.saturating_sub(st.base.size)) {
                st.over_quota = true;
                return Err(e);
            }
        }
        let mut pos = offset;
        let mut last = 0;
        while pos < end {
            let idx = pos / BS;
            let from = (pos - idx * BS) as usize;
            let to = ((end - idx * BS).min(BS)) as usize;
            if !st.dirty.contains_key(&idx) {
                let mut buf = Vec::with_capacity(BS as usize);
                let cur = block_len(st.size, idx);
                self.read_block(&st, idx, 0, cur, &mut buf)?;
                st.dirty.insert(idx, buf);
            }
            let src = &data[(pos - offset) as usize..(pos - offset) as usize + (to - from)];
            if let Some(buf) = st.dirty.get_mut(&idx) {
                if buf.len() < to {
                    buf.resize(to, 0);
                }
                buf[from..to].copy_from_slice(src);
            }
            pos = idx * BS + to as u64;
            last = idx;
        }
        st.size = st.size.max(end);
        st.changed = true;
        st.mtime_ns = now_ns();
        if st.dirty.len() > MAX_DIRTY_BLOCKS {
            self.stage(&mut st, last)?;
        }
        Ok(data.len() as u32)
    }

    /// Uploads dirty blocks (all but `keep`) so memory stays bounded.
    fn stage(&self, st: &mut FileState, keep: u64) -> FsResult<()> {
        // Uploaded blocks are referenced by their file: it must exist.
        self.claim_empty(st)?;
        let idxs: Vec<u64> = st.dirty.keys().copied().filter(|i| *i != keep).collect();
        let mut uploads = Vec::new();
        let mut hashes = Vec::new();
        for idx in idxs {
            if let Some(buf) = st.dirty.remove(&idx) {
                let (h, up) = self.prepare_block(buf);
                hashes.push((idx, h));
                uploads.extend(up);
            }
        }
        self.upload(st, uploads)?;
        st.staged.extend(hashes);
        Ok(())
    }

    /// The hash of a block and, unless it is a hole or already known to
    /// be stored, the upload it needs.
    fn prepare_block(&self, buf: Vec<u8>) -> (Hash, Option<Upload>) {
        if buf.iter().all(|b| *b == 0) {
            return (HOLE, None);
        }
        let h = sha256(&buf);
        if self.cache.has_block(&h) {
            return (h, None);
        }
        (h, Some((h, Arc::new(buf))))
    }

    /// Uploads blocks, writing their references first: a block that a
    /// commit is about to use always has a reference, so `cassfs gc` never
    /// takes it away (src/admin/gc.rs).
    fn upload(&self, st: &mut FileState, uploads: Vec<Upload>) -> FsResult<()> {
        if uploads.is_empty() {
            return Ok(());
        }
        let mut refs: Vec<Hash> = uploads
            .iter()
            .map(|(h, _)| *h)
            .filter(|h| !st.referenced.contains(h))
            .collect();
        refs.sort();
        refs.dedup();
        self.store.change_refs(st.base.ino, &refs, &[])?;
        st.referenced.extend(refs);
        self.store.put_blocks(uploads.clone())?;
        for (h, d) in uploads {
            self.cache.put_block(h, d);
        }
        Ok(())
    }

    /// References blocks the new content uses that no upload of this state
    /// referenced (found in the cache, not uploaded), then makes sure they
    /// still exist: `cassfs gc` may have deleted an unreferenced block the
    /// cache still held. One that is gone is uploaded again from the cache.
    fn reference_reused(&self, st: &mut FileState, added: &[Hash]) -> FsResult<()> {
        let reused: Vec<Hash> = added
            .iter()
            .filter(|h| !st.referenced.contains(*h))
            .copied()
            .collect();
        if reused.is_empty() {
            return Ok(());
        }
        self.store.change_refs(st.base.ino, &reused, &[])?;
        st.referenced.extend(reused.iter().copied());
        let mut again = Vec::new();
        for h in self.store.missing_blocks(&reused)? {
            let gone = || crate::store::StoreError::Corrupt {
                table: "blocks",
                reason: "a block removed by gc left the cache too".into(),
            };
            again.push((h, self.cache.block(&h).ok_or_else(gone)?));
        }
        if !again.is_empty() {
            self.store.put_blocks(again)?;
        }
        Ok(())
    }

    fn truncate_state(&self, st: &mut FileState, size: u64) -> FsResult<()> {
        if size < st.size {
            let cut = size.div_ceil(BS);
            st.dirty.retain(|i, _| *i < cut);
            st.staged.retain(|i, _| *i < cut);
            if !size.is_multiple_of(BS) {
                let idx = size / BS;
                let mut buf = Vec::with_capacity(BS as usize);
                self.read_block(st, idx, 0, size - idx * BS, &mut buf)?;
                st.staged.remove(&idx);
                st.dirty.insert(idx, buf);
            }
            st.base_valid = st.base_valid.min(size);
        }
        st.size = size;
        st.changed = true;
        st.mtime_ns = now_ns();
        Ok(())
    }

    /// truncate(2)/ftruncate(2): applied to the open state, or committed at
    /// once when the file is not open here.
    pub(super) fn truncate(&self, ino: u64, size: u64) -> FsResult<()> {
        if size > MAX_FILE_SIZE {
            return Err(FsError::TooBig);
        }
        if let Some(st) = self.files.state(ino) {
            let mut st = st.lock();
            if size > st.size {
                self.quota_allows_bytes(size.saturating_sub(st.base.size))?;
            }
            return self.truncate_state(&mut st, size);
        }
        let i = self.load_current(ino, size > 0)?;
        match i.kind {
            Kind::File => {}
            Kind::Dir => return Err(FsError::IsDir),
            _ => return Err(FsError::Invalid),
        }
        let fh = self.open_inode(i, OpenFlags::default())?;
        let result = (|| {
            let (_, _, st) = self.handle(fh)?;
            let mut st = st.lock();
            self.truncate_state(&mut st, size)?;
            self.commit(&mut st)
        })();
        self.release(fh)?;
        result
    }

    /// Writes the state's content to Cassandra: blocks, references, then the
    /// inode row in a single write.
    pub(super) fn commit(&self, st: &mut FileState) -> FsResult<()> {
        if let Some(p) = st.pending.clone() {
            return self.commit_new(st, &p);
        }
        if !st.changed {
            st.over_quota = false; // refused before anything was written
            return Ok(());
        }
        let grown = st.size as i64 - st.base.size as i64;
        if st.over_quota || self.quota_allows_bytes(grown.max(0) as u64).is_err() {
            self.drop_changes(st);
            return Err(FsError::Quota);
        }
        let inode = self.next_version(st)?;
        let old = block_set(&st.base.content);
        let removed: Vec<Hash> = old
            .difference(&block_set(&inode.content))
            .copied()
            .collect();
        let mut writes = vec![Write::Commit(inode.clone())];
        if grown != 0 {
            writes.push(Write::Usage(Usage::bytes(grown)));
        }
        self.store.apply(writes)?;
        self.counted(Usage::bytes(grown));
        self.committed(st, inode, &removed)
    }

    /// The inode the state commits as: its content (new blocks uploaded
    /// and every block it uses referenced), size, times and a new version.
    pub(super) fn next_version(&self, st: &mut FileState) -> FsResult<Inode> {
        let content = if st.size <= INLINE_MAX {
            let mut data = Vec::with_capacity(st.size as usize);
            if st.size > 0 {
                self.read_block(st, 0, 0, st.size, &mut data)?;
            }
            Content::Inline(Arc::new(data))
        } else {
            Content::Blocks(Arc::new(self.commit_blocks(st)?))
        };
        let old = block_set(&st.base.content);
        let added: Vec<Hash> = block_set(&content).difference(&old).copied().collect();
        self.reference_reused(st, &added)?;
        let mut inode = st.base.clone();
        inode.size = st.size;
        inode.content = content;
        inode.version = rand::random::<i64>();
        inode.mtime_ns = st.mtime_ns;
        inode.ctime_ns = now_ns().max(st.mtime_ns);
        Ok(inode)
    }

    /// After `inode` was written: the caches updated, the blocks it no
    /// longer uses (`removed`) unreferenced, the state based on it.
    pub(super) fn committed(
        &self,
        st: &mut FileState,
        inode: Inode,
        removed: &[Hash],
    ) -> FsResult<()> {
        // Only the content and times changed: the cached copy (if any) is
        // updated in place, so that a change another request made to the
        // rest of the inode meanwhile (its names, by an unlink) stays.
        self.cache.update_inode(inode.ino, |c| {
            c.size = inode.size;
            c.content = inode.content.clone();
            c.version = inode.version;
            c.mtime_ns = inode.mtime_ns;
            c.ctime_ns = inode.ctime_ns;
        });
        self.files.page_versions.lock().remove(&inode.ino);
        if !removed.is_empty() {
            self.store.change_refs(inode.ino, &[], removed)?;
        }
        st.base = inode;
        st.base_valid = st.size;
        st.dirty.clear();
        st.staged.clear();
        st.referenced.clear();
        st.changed = false;
        Ok(())
    }

    /// Forgets what was written since the last commit: the file is its
    /// committed content again (a commit refused for the quota).
    pub(super) fn drop_changes(&self, st: &mut FileState) {
        st.size = st.base.size;
        st.base_valid = st.base.size;
        st.mtime_ns = st.base.mtime_ns;
        st.dirty.clear();
        st.staged.clear();
        st.referenced.clear();
        st.changed = false;
        st.over_quota = false;
        self.files.page_versions.lock().remove(&st.base.ino);
    }

    /// The block list of the state, uploading what is new.
    fn commit_blocks(&self, st: &mut FileState) -> FsResult<Vec<Hash>> {
        let n = st.size.div_ceil(BS);
        let mut hashes = Vec::with_capacity(n as usize);
        let mut uploads = Vec::new();
        for idx in 0..n {
            let want = block_len(st.size, idx);
            if let Some(h) = self.reusable_block(st, idx, want) {
                hashes.push(h);
                continue;
            }
            if Self::is_hole(st, idx) {
                hashes.push(HOLE);
                continue;
            }
            let mut buf = Vec::with_capacity(want as usize);
            self.read_block(st, idx, 0, want, &mut buf)?;
            let (h, up) = self.prepare_block(buf);
            hashes.push(h);
            uploads.extend(up);
            if uploads.len() >= MAX_DIRTY_BLOCKS {
                self.upload(st, std::mem::take(&mut uploads))?;
            }
        }
        self.upload(st, uploads)?;
        Ok(hashes)
    }

    /// Whether block `idx` holds nothing but zeros without reading it (no
    /// write touched it and the base has no bytes there).
    fn is_hole(st: &FileState, idx: u64) -> bool {
        if st.dirty.contains_key(&idx) || Self::block_hash(st, idx).is_some() {
            return false;
        }
        !matches!(&st.base.content, Content::Inline(d) if idx == 0 && !d.is_empty())
    }

    /// A stored block that already holds block `idx` exactly (`want` bytes).
    fn reusable_block(&self, st: &FileState, idx: u64, want: u64) -> Option<Hash> {
        if st.dirty.contains_key(&idx) {
            return None;
        }
        if let Some(h) = st.staged.get(&idx) {
            return (want == BS).then_some(*h);
        }
        let Content::Blocks(base) = &st.base.content else {
            return None;
        };
        let stored = block_len(st.base.size, idx);
        let valid = block_len(st.base_valid, idx);
        let h = *base.get(idx as usize)?;
        (stored == want && valid == want).then_some(h)
    }

    pub fn flush(&self, fh: u64) -> FsResult<()> {
        let (ino, _, st) = self.handle(fh)?;
        let mut st = st.lock();
        if self.files.is_unlinked(ino) {
            return Ok(());
        }
        self.commit(&mut st)
    }

    pub fn fsync(&self, fh: u64) -> FsResult<()> {
        self.flush(fh)
    }

    /// Closes a handle; the last close of an inode commits what is left and
    /// deletes the inode if its last name went while it was open.
    pub fn release(&self, fh: u64) -> FsResult<()> {
        let (ino, _, st) = self.handle(fh)?;
        self.files.handles.lock().remove(&fh);
        let mut st = st.lock();
        st.opens = st.opens.saturating_sub(1);
        if st.opens > 0 {
            return Ok(());
        }
        let mut result = if self.files.is_unlinked(ino) {
            Ok(())
        } else {
            self.commit(&mut st)
        };
        // A new file whose first commit failed was never made.
        self.abandon(&mut st);
        // An unlink that raced this close either saw the inode open (and
        // left its deletion to this close) or not (and deleted it).
        st.closed = true;
        if self.files.close_last(ino) {
            let mut base = st.base.clone();
            if let Content::Blocks(h) = &mut base.content {
                let mut all: Vec<Hash> = h.as_ref().clone();
                all.extend(st.staged.values());
                *h = Arc::new(all);
            }
            result = self.delete_if_unnamed(&base);
        }
        result
    }
}

fn block_set(c: &Content) -> HashSet<Hash> {
    match c {
        Content::Blocks(h) => h.iter().copied().filter(|h| *h != HOLE).collect(),
        Content::Inline(_) => HashSet::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_range_pads_with_zeros() {
        let mut out = Vec::new();
        append_range(&mut out, b"abc", 1, 5);
        assert_eq!(out, b"bc\0\0");
        out.clear();
        append_range(&mut out, b"abc", 4, 6);
        assert_eq!(out, b"\0\0");
        out.clear();
        append_range(&mut out, b"", 131072, 131075);
        assert_eq!(out, b"\0\0\0");
    }

    #[test]
    fn block_len_covers_short_last_block() {
        assert_eq!(block_len(BS + 10, 0), BS);
        assert_eq!(block_len(BS + 10, 1), 10);
        assert_eq!(block_len(BS + 10, 2), 0);
    }

    #[test]
    fn open_flags_decode() {
        let f = OpenFlags::from_bits(libc::O_WRONLY | libc::O_APPEND);
        assert!(f.write && f.append && !f.truncate);
        assert!(!OpenFlags::from_bits(libc::O_RDONLY).write);
    }
}
