//! The filesystem core: POSIX operations on inodes, in plain Rust types.
//!
//! Nothing here knows about FUSE: the adapter (`crate::fuse`) turns kernel
//! requests into calls on [`Fs`] and its results into replies. Every
//! operation reads through the caches (`crate::cache`) and writes through to
//! Cassandra (`crate::store`); a failed write is an error, and the caches
//! only learn what Cassandra accepted.
//!
//! Submodules: `names` (entries: create, link, unlink), `listing` (open
//! directories and their offsets), `rename`,
//! `file` (open files: buffered writes and whole-file commits), `xattr`,
//! `prefetch` (blocks read ahead), `dirahead` (directories read ahead).
//!
//! Writes change only the columns they mean to change (`store::Change`);
//! nothing is written back from a cached copy of a row.

mod deferred;
mod dirahead;
mod file;
mod listing;
mod names;
mod prefetch;
mod quota;
mod rename;
mod xattr;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::cache::Cache;
use crate::error::{FsError, FsResult};
pub(crate) use crate::store::now_ns;
use crate::store::{Change, Dentry, Inode, Kind, Store, Write};

pub use file::{OpenFlags, Opened, MAX_FILE_SIZE};
pub use names::{DirEntry, MAX_LINKS, SYMLINK_MAX};
pub use rename::RenameFlags;
pub use xattr::XattrReply;
pub use xattr::XATTR_TOTAL_MAX;

/// Inode numbers reserved from Cassandra at a time.
const INO_BATCH: u64 = 1024;
/// The longest name Linux allows.
pub const NAME_MAX: usize = 255;
/// Root inode.
pub const ROOT: u64 = 1;

/// Settings of the core.
#[derive(Clone, Debug)]
pub struct FsConfig {
    pub fcache_ttl: Duration,
    pub cache_size: u64,
    pub read_only: bool,
    /// Where the volume is mounted (recorded in the session's row).
    pub mountpoint: String,
    /// How long this mount's locks outlive it (`crate::locks`).
    pub lock_lease: Duration,
}

/// Who is asking.
#[derive(Clone, Copy, Debug)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

/// A new time for `utimens`.
#[derive(Clone, Copy, Debug)]
pub enum SetTime {
    Now,
    At(SystemTime),
}

/// The changes of a `setattr`.
#[derive(Clone, Debug, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
}

/// Runs `a` on a thread of its own and `b` on this one, side by side (two
/// independent round trips to Cassandra in the time of one): both results.
fn side_by_side<A: Send, B>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B) -> (A, B) {
    std::thread::scope(|s| {
        let a = s.spawn(a);
        let b = b();
        match a.join() {
            Ok(a) => (a, b),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Whether `caller` may access `i` as `mask` (R_OK, W_OK, X_OK bits) by
/// its permission bits.
fn permits(i: &Inode, mask: i32, caller: Caller) -> bool {
    if mask == libc::F_OK || caller.uid == 0 {
        return true;
    }
    let bits = if caller.uid == i.uid {
        (i.perm >> 6) & 7
    } else if caller.gid == i.gid {
        (i.perm >> 3) & 7
    } else {
        i.perm & 7
    };
    (mask as u32) & 7 & !bits == 0
}

/// Filesystem statistics for statfs.
#[derive(Clone, Copy, Debug)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
}

/// One mounted volume.
pub struct Fs {
    store: Arc<Store>,
    cache: Arc<Cache>,
    prefetch: prefetch::Prefetcher,
    /// Reads the directories below those read whole (`dirahead.rs`).
    dirahead: dirahead::DirAhead,
    cfg: FsConfig,
    free_inos: Mutex<Range<u64>>,
    next_fh: AtomicU64,
    files: file::OpenFiles,
    outage: Outage,
    dirs: Mutex<HashMap<u64, listing::DirHandle>>,
    /// Where listings without a handle resume (read-only mounts).
    cursors: listing::Cursors,
    /// Names this mount in leases it takes (host, pid, a random number).
    mount_id: String,
    /// This mount's session and the inodes it holds (`crate::sessions`).
    session: Arc<crate::sessions::Session>,
    /// The volume's usage and quota (`quota.rs`).
    quota: quota::Quota,
    /// flock and fcntl locks held across mounts (`crate::locks`).
    locks: Arc<crate::locks::Locks>,
}

/// While Cassandra fails, reads are answered from the caches, however old,
/// when they hold the answer: sites keep serving what they have. Only what
/// is not cached fails (EIO); nothing is ever answered "empty" for an error.
#[derive(Default)]
struct Outage {
    last_failure: Mutex<Option<std::time::Instant>>,
}

/// After a failure, cached answers are used without asking Cassandra for
/// this long (so a site does not wait for a timeout on every request).
/// A directory read whole on a lookup miss also has its inodes read (in
/// parallel) when it has at most this many entries: a site reading its
/// files then pays one round trip per directory. A larger one (an uploads
/// directory) is read without them, so that a lookup's cost stays one
/// round trip whatever the directory's size.
const PREFETCH_INODES_MAX: usize = 256;

const OUTAGE_SHORTCUT: Duration = Duration::from_secs(5);

impl Outage {
    /// Runs a read; when it fails, or Cassandra failed a moment ago, answers
    /// from the cache (`stale`) if it can.
    fn read<T>(
        &self,
        fetch: impl FnOnce() -> crate::store::Result<Option<T>>,
        stale: impl Fn() -> Option<Option<T>>,
    ) -> FsResult<Option<T>> {
        if self.recent() {
            if let Some(v) = stale() {
                return Ok(v);
            }
        }
        match fetch() {
            Ok(v) => Ok(v),
            Err(e) => {
                *self.last_failure.lock() = Some(std::time::Instant::now());
                match stale() {
                    Some(v) => {
                        log::warn!("Cassandra read failed ({e}); serving a cached answer");
                        Ok(v)
                    }
                    None => Err(e.into()),
                }
            }
        }
    }

    /// Whether Cassandra failed within the last few seconds.
    fn recent(&self) -> bool {
        self.last_failure
            .lock()
            .is_some_and(|t| t.elapsed() < OUTAGE_SHORTCUT)
    }
}

fn time_ns(t: SetTime) -> i64 {
    match t {
        SetTime::Now => now_ns(),
        SetTime::At(t) => match t.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i64,
            Err(e) => -(e.duration().as_nanos() as i64),
        },
    }
}

/// What a [`Change`] of plain attributes does to a cached inode.
fn apply_change(i: &mut Inode, c: &Change) {
    if let Some(v) = c.mode {
        i.perm = v;
    }
    if let Some(v) = c.uid {
        i.uid = v;
    }
    if let Some(v) = c.gid {
        i.gid = v;
    }
    i.atime_ns = c.atime_ns.unwrap_or(i.atime_ns);
    i.mtime_ns = c.mtime_ns.unwrap_or(i.mtime_ns);
    i.ctime_ns = c.ctime_ns.unwrap_or(i.ctime_ns);
}

/// This mount's name in leases: host, pid and a random number.
fn mount_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!(
        "{}:{}:{:08x}",
        host.trim(),
        std::process::id(),
        rand::random::<u32>()
    )
}

pub(crate) fn check_name(name: &[u8]) -> FsResult<()> {
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(FsError::Invalid);
    }
    Ok(())
}

impl Fs {
    /// Opens the volume, creating it (and its root) on first mount.
    pub fn new(mut store: Store, cfg: FsConfig, root_owner: Caller) -> FsResult<Fs> {
        let mount_id = mount_id();
        store.publish_changes_as(&mount_id);
        store.ensure_volume(root_owner.uid, root_owner.gid)?;
        let finished = store.finish_renames()?;
        if finished > 0 {
            log::info!("finished {finished} rename(s) left half-done by an earlier process");
        }
        let settled = store.finish_removals()?;
        if settled > 0 {
            log::debug!("settled the link counts of {settled} removal(s)");
        }
        let quota = quota::Quota::load(&store)?;
        let store = Arc::new(store);
        let cache = Arc::new(Cache::new(cfg.fcache_ttl, cfg.cache_size));
        let session = crate::sessions::Session::new(store.clone(), &mount_id, &cfg.mountpoint);
        let locks = crate::locks::Locks::new(store.clone(), &mount_id, cfg.lock_lease);
        let thread_failed =
            |e: std::io::Error| FsError::Store(crate::store::StoreError::Request(e.to_string()));
        let prefetch =
            prefetch::Prefetcher::start(store.clone(), cache.clone()).map_err(thread_failed)?;
        let dirahead =
            dirahead::DirAhead::start(store.clone(), cache.clone()).map_err(thread_failed)?;
        Ok(Fs {
            locks: Arc::new(locks),
            session: Arc::new(session),
            prefetch,
            dirahead,
            store,
            cache,
            cfg,
            free_inos: Mutex::new(0..0),
            next_fh: AtomicU64::new(1),
            files: file::OpenFiles::default(),
            outage: Outage::default(),
            dirs: Mutex::new(HashMap::new()),
            cursors: listing::Cursors::default(),
            mount_id,
            quota,
        })
    }

    pub fn statement_count(&self) -> u64 {
        self.store.statement_count()
    }

    /// The record of a removal this worker is making (`store/removals.rs`),
    /// written beside its conditional write.
    fn removing(&self, parent: u64, name: &[u8], ino: u64, dir: bool) -> Write {
        let holder = format!("{}:{:?}", self.mount_id, std::thread::current().id());
        Write::Removing(holder, parent, name.to_vec(), ino, dir)
    }

    /// How long the kernel may keep an answer configured to live
    /// `configured` (the cache policy decides: `crate::cache`).
    pub fn kernel_ttl(&self, configured: Duration) -> Duration {
        self.cache.kernel_ttl(configured)
    }

    /// Follows the volume's change feed on a thread of its own, telling
    /// `kernel` what to forget (`crate::feed`).
    pub fn follow_feed(
        &self,
        kernel: Box<dyn crate::feed::Kernel>,
        interval: Duration,
    ) -> std::io::Result<crate::feed::Feed> {
        let (store, cache) = (self.store.clone(), self.cache.clone());
        let locks = Arc::downgrade(&self.locks);
        let unlocked = Box::new(move |ino| {
            if let Some(l) = locks.upgrade() {
                l.wake(ino)
            }
        });
        let origin = self.mount_id.clone();
        crate::feed::follow(store, cache, kernel, origin, interval, unlocked)
    }

    /// The mount's flock and fcntl locks.
    pub fn locks(&self) -> &Arc<crate::locks::Locks> {
        &self.locks
    }

    /// Registers this mount's session and keeps it alive until
    /// [`Heartbeat::end`](crate::sessions::Heartbeat::end).
    pub fn start_session(&self) -> Result<crate::sessions::Heartbeat, String> {
        self.session.start()
    }

    fn new_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    fn writable(&self) -> FsResult<()> {
        if self.cfg.read_only {
            Err(FsError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// A fresh inode number, unique across every mount of the volume.
    fn alloc_ino(&self) -> FsResult<u64> {
        let mut free = self.free_inos.lock();
        if free.is_empty() {
            *free = self.store.reserve_inodes(INO_BATCH)?;
        }
        let ino = free.start;
        free.start += 1;
        Ok(ino)
    }

    /// The inode as committed (cache within the TTL, else Cassandra).
    fn load(&self, ino: u64) -> FsResult<Inode> {
        if let Some(i) = self.files.pending_inode(ino) {
            return Ok(i);
        }
        if let Some(i) = self.cache.inode(ino) {
            return Ok(i);
        }
        let stale = || self.cache.stale_inode(ino).map(Some);
        let epoch = self.cache.inode_epoch();
        match self.outage.read(|| self.store.get_inode(ino), stale)? {
            Some(i) => {
                self.cache.put_inode_read(&i, epoch);
                Ok(i)
            }
            None => {
                self.cache.forget_inode(ino);
                Err(FsError::NotFound)
            }
        }
    }

    fn load_dir(&self, ino: u64) -> FsResult<Inode> {
        let i = self.load(ino)?;
        if i.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        if i.nlink == 0 {
            return Err(FsError::NotFound); // removed, still open somewhere
        }
        Ok(i)
    }

    /// The inode as Cassandra has it now, reusing the cached copy when its
    /// content version is current (a small read instead of the whole row).
    /// To read it, a cached copy the change feed vouches for is used as it
    /// is; content about to be changed in part (`to_modify`) is always
    /// checked, so it never builds on an older commit than Cassandra's.
    fn load_current(&self, ino: u64, to_modify: bool) -> FsResult<Inode> {
        if let Some(i) = self.files.pending_inode(ino) {
            return Ok(i);
        }
        if !to_modify {
            if let Some(i) = self.cache.current_inode(ino) {
                return Ok(i);
            }
        }
        let cached = self.cache.stale_inode(ino);
        let stale = || cached.clone().map(|i| Some(i.version));
        match self.outage.read(|| self.store.get_version(ino), stale)? {
            None => {
                self.cache.forget_inode(ino);
                Err(FsError::NotFound)
            }
            Some(v) => match cached {
                Some(i) if i.version == v => Ok(i),
                _ => {
                    self.cache.forget_inode(ino);
                    self.load(ino)
                }
            },
        }
    }

    /// Records in the cache that this mount changed a directory's entries
    /// (its times, and its link count by `subdirs`).
    fn dir_changed(&self, dir: u64, now: i64, subdirs: i64) {
        self.cache.update_inode(dir, |d| {
            d.mtime_ns = now;
            d.ctime_ns = now;
            d.nlink = (i64::from(d.nlink) + subdirs).max(2) as u32;
        });
    }

    /// The attributes the kernel should see: the committed inode with the
    /// size and times of local, not yet committed writes.
    pub fn getattr(&self, ino: u64) -> FsResult<Inode> {
        let mut i = self.load(ino)?;
        self.files.overlay(&mut i);
        Ok(i)
    }

    pub fn lookup(&self, parent: u64, name: &[u8]) -> FsResult<Inode> {
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        let d = self.entry(parent, name)?.ok_or(FsError::NotFound)?;
        self.getattr(d.ino)
    }

    /// A lookup answered from memory, without waiting on anything (in the
    /// adapter's thread): a cached entry (or known miss) whose inode is
    /// cached, as [`Fs::lookup`] answers. `None`: the worker looks it up.
    pub fn lookup_cached(&self, parent: u64, name: &[u8]) -> Option<FsResult<Inode>> {
        if name.len() > NAME_MAX || self.files.pending_ino(parent, name).is_some() {
            return None; // a new file not committed yet: `entry` knows it
        }
        match self.cache.dentry(parent, name)? {
            Some(d) => self.getattr_cached(d.ino).map(Ok),
            None => Some(Err(FsError::NotFound)),
        }
    }

    /// A directory entry (cache within the TTL, else Cassandra).
    fn entry(&self, parent: u64, name: &[u8]) -> FsResult<Option<Dentry>> {
        if let Some(d) = self.pending_entry(parent, name) {
            return Ok(Some(d));
        }
        if let Some(d) = self.cache.dentry(parent, name) {
            return Ok(d);
        }
        if !self.cfg.fcache_ttl.is_zero() && !self.outage.recent() {
            if let Ok(Some(d)) = self.read_small_dir(parent, name) {
                return Ok(d);
            }
        }
        let stale = || self.cache.stale_dentry(parent, name);
        let d = self
            .outage
            .read(|| self.store.get_dentry(parent, name), stale)?;
        if d.is_none() {
            // A missing name in something that is not a directory is ENOTDIR.
            self.load_dir(parent)?;
        }
        self.cache.put_dentry(parent, name, d.clone());
        Ok(d)
    }

    /// On a miss in a directory whose listing is not cached: reads the
    /// whole directory if it is small — its listing in one request, its
    /// inodes in parallel (up to [`PREFETCH_INODES_MAX`] entries) — so that
    /// the next lookups there (a site reading its files) are answered
    /// locally, and the directories below it in the background
    /// (`dirahead.rs`). `None` for a large directory.
    fn read_small_dir(&self, parent: u64, name: &[u8]) -> FsResult<Option<Option<Dentry>>> {
        self.dirahead.wait_for(parent);
        if let Some(d) = self.cache.dentry(parent, name) {
            return Ok(Some(d));
        }
        if self.cache.is_large_dir(parent) {
            return Ok(None);
        }
        let read = dirahead::read_whole(&self.store, &self.cache, parent, Some(name));
        let Some(by_name) = read? else {
            return Ok(None);
        };
        let found = by_name.get(name).cloned();
        if found.is_none() {
            // A missing name in something that is not a directory is ENOTDIR.
            if let Err(e) = self.load_dir(parent) {
                self.cache.forget_listing(parent);
                return Err(e);
            }
        }
        self.dirahead.below(&by_name);
        Ok(Some(found))
    }

    pub fn setattr(&self, ino: u64, set: &SetAttr) -> FsResult<Inode> {
        self.writable()?;
        let attrs = [set.mode, set.uid, set.gid].iter().any(Option::is_some);
        if attrs || set.atime.is_some() || set.mtime.is_some() {
            // Written to the inode's row: a new file's must exist first, and
            // a directory's new files must be made first (their creation
            // sets its times, which this may set again).
            self.settle(ino)?;
            for (_, child) in self.files.pending_in(ino) {
                self.settle(child)?;
            }
        }
        if let Some(size) = set.size {
            self.truncate(ino, size)?;
        }
        let i = self.load(ino)?;
        let mut c = Change {
            mode: set.mode.map(|m| m & 0o7777),
            uid: set.uid,
            gid: set.gid,
            atime_ns: set.atime.map(time_ns),
            mtime_ns: set.mtime.map(time_ns),
            ..Change::default()
        };
        if (set.uid.is_some() || set.gid.is_some()) && i.kind != Kind::Dir {
            // chown clears set-user-ID and set-group-ID on files.
            let perm = c.mode.unwrap_or(i.perm);
            if perm & 0o6000 != 0 {
                c.mode = Some(perm & !0o6000);
            }
        }
        if c.is_empty() {
            return self.getattr(ino);
        }
        c.ctime_ns = Some(now_ns());
        if let Some(t) = c.mtime_ns {
            self.files.set_mtime(ino, t);
        }
        self.store.apply(vec![Write::Update(ino, c.clone())])?;
        self.cache.update_inode(ino, |i| apply_change(i, &c));
        self.getattr(ino)
    }

    pub fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        let i = self.load(ino)?;
        if i.kind != Kind::Symlink {
            return Err(FsError::Invalid);
        }
        Ok(i.target)
    }

    /// access(2): existence, then the permission bits for `caller`.
    pub fn access(&self, ino: u64, mask: i32, caller: Caller) -> FsResult<()> {
        let i = self.load(ino)?;
        if mask & libc::W_OK != 0 && self.cfg.read_only {
            return Err(FsError::ReadOnly);
        }
        if !permits(&i, mask, caller) {
            return Err(FsError::Access);
        }
        Ok(())
    }

    /// Commits every open file with pending writes (at unmount).
    pub fn flush_all(&self) -> FsResult<()> {
        self.files.commit_all(self)
    }
}
