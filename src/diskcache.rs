//! The on-disk block cache (`-cache_dir DIR`): owns the files under DIR, one
//! per content block at `DIR/<owner>/<2 hex>/<64 hex hash>`, their index (by
//! last use, bounded by `-cache_dir_size`), the thread that writes them and
//! the thread that scans DIR.
//!
//! Blocks are immutable and named by their SHA-256, so a cached block is
//! never stale; every read checks the content against the name, and a file
//! that does not match (torn, truncated, flipped) is deleted and reported as
//! a miss, never served. Writes go to a temporary file in the same directory
//! and are renamed into place, from a background thread fed by a bounded
//! channel (a write that finds it full is dropped). The index of what is on
//! disk is rebuilt by scanning DIR in the background at start and every
//! [`RESCAN`], so a large cache does not delay the mount and several daemons
//! sharing DIR learn of each other's files; each evicts the least recently
//! used files (by modification time, renewed on every hit) past the bound.
//! Nothing here fails a read or a write of the filesystem: disk errors are
//! logged and the caller falls back to Cassandra.

use std::collections::{BTreeSet, HashMap};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use log::{debug, warn};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::metrics;
use crate::store::{hex, Hash, BLOCK_SIZE};

/// Blocks waiting to be written; more are dropped (1 MiB each at most).
const QUEUE: usize = 64;
/// Threads that read and check the blocks of one request at once.
const READERS: usize = 4;
/// How often DIR is scanned again (files other daemons wrote or removed).
pub const RESCAN: Duration = Duration::from_secs(600);
/// No block is added while the filesystem under DIR has less than this
/// fraction free.
const MIN_FREE: f64 = 0.05;
/// Temporary files older than this are left by a daemon that died.
const STALE_TMP: Duration = Duration::from_secs(600);
/// Prefix of temporary files (never a valid block name).
const TMP_PREFIX: &str = ".tmp.";

/// Why a cache directory cannot be used (the mount then fails).
#[derive(Debug, thiserror::Error)]
#[error("cache directory {dir}: {reason}")]
pub struct DiskCacheError {
    dir: String,
    reason: String,
}

fn dir_error(dir: &Path, reason: impl std::fmt::Display) -> DiskCacheError {
    DiskCacheError {
        dir: dir.display().to_string(),
        reason: reason.to_string(),
    }
}

/// A block on disk: (owner, hash).
type Key = (i64, Hash);

/// What is on disk as far as this process knows, by last use.
#[derive(Default)]
struct Index {
    /// Key → (length, last use in ns since the epoch).
    entries: HashMap<Key, (u64, u64)>,
    by_use: BTreeSet<(u64, Key)>,
    bytes: u64,
}

impl Index {
    fn insert(&mut self, key: Key, len: u64, used: u64) {
        self.remove(&key);
        self.entries.insert(key, (len, used));
        self.by_use.insert((used, key));
        self.bytes += len;
        metrics::disk_cache_bytes(len as i64);
    }

    fn remove(&mut self, key: &Key) -> bool {
        let Some((len, used)) = self.entries.remove(key) else {
            return false;
        };
        self.by_use.remove(&(used, *key));
        self.bytes -= len;
        metrics::disk_cache_bytes(-(len as i64));
        true
    }

    fn touch(&mut self, key: Key, len: u64, now: u64) {
        let used = self.entries.get(&key).map_or(now, |(_, u)| now.max(*u));
        self.insert(key, len, used);
    }

    /// Takes the least recently used entries out until at most `max`
    /// bytes are left; returns them (their files are to be removed).
    fn evict(&mut self, max: u64) -> Vec<Key> {
        let mut out = Vec::new();
        while self.bytes > max {
            let Some(&(_, key)) = self.by_use.first() else {
                break;
            };
            self.remove(&key);
            out.push(key);
        }
        out
    }
}

/// State shared by the handles of one DIR and its two threads.
struct Core {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    /// Disk errors already warned about (each kind once).
    warned: Mutex<BTreeSet<String>>,
    /// Blocks queued or being written.
    pending: AtomicU64,
}

/// One DIR's cache in this process: the core and the threads' channels
/// (dropped with the last handle, which ends the threads).
struct Shared {
    core: Arc<Core>,
    writes: Sender<(i64, Hash, Arc<Vec<u8>>)>,
    _stop: Sender<()>,
}

/// A handle on the cache for one owner's blocks.
#[derive(Clone)]
pub struct DiskCache {
    shared: Arc<Shared>,
    owner: i64,
}

/// The caches open in this process, by canonical DIR: the volumes of one
/// process (`cassfs docker`) share one index and one pair of threads.
static OPEN: Mutex<Vec<(PathBuf, Weak<Shared>)>> = Mutex::new(Vec::new());

/// Now in ns since the epoch, as the index counts time.
fn now_ns() -> u64 {
    crate::store::now_ns().max(0) as u64
}

fn mtime_ns(m: &std::fs::Metadata) -> u64 {
    m.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Creates `dir` (and missing parents) with mode 0700.
fn make_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// The hash a block file's name stands for.
fn parse_hash(name: &str) -> Option<Hash> {
    if name.len() != 64 {
        return None;
    }
    let mut h = [0u8; 32];
    for (i, b) in h.iter_mut().enumerate() {
        *b = u8::from_str_radix(name.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    // Only the lower-case spelling is ours.
    (hex(&h) == name).then_some(h)
}

impl DiskCache {
    /// Opens (creating it, mode 0700) the cache in `dir` for `owner`,
    /// holding at most `max_bytes` of blocks; fails if the directory cannot
    /// be created or written. The index is built in the background.
    pub fn open(dir: &Path, owner: i64, max_bytes: u64) -> Result<DiskCache, DiskCacheError> {
        make_dir(dir).map_err(|e| dir_error(dir, e))?;
        let canonical = std::fs::canonicalize(dir).map_err(|e| dir_error(dir, e))?;
        let shared = {
            let mut open = OPEN.lock();
            open.retain(|(_, w)| w.strong_count() > 0);
            let known = open.iter().find(|(p, _)| *p == canonical);
            match known.and_then(|(_, w)| w.upgrade()) {
                Some(s) => s,
                None => {
                    let s = start(canonical.clone(), max_bytes).map_err(|e| dir_error(dir, e))?;
                    let s = Arc::new(s);
                    open.push((canonical, Arc::downgrade(&s)));
                    s
                }
            }
        };
        let owner_dir = shared.core.owner_dir(owner);
        make_dir(&owner_dir).map_err(|e| dir_error(&owner_dir, e))?;
        tighten(&owner_dir);
        probe(&owner_dir).map_err(|e| dir_error(&owner_dir, e))?;
        Ok(DiskCache { shared, owner })
    }

    /// The block named `hash`, if a file holds exactly its content.
    pub fn get(&self, hash: &Hash) -> Option<Vec<u8>> {
        let got = self.shared.core.read(self.owner, hash);
        metrics::disk_cache_lookup(got.is_some());
        got
    }

    /// The blocks of `hashes`, in order, as [`DiskCache::get`] finds them;
    /// several are read (and checked) by up to [`READERS`] threads at once.
    pub fn get_many(&self, hashes: &[Hash]) -> Vec<Option<Vec<u8>>> {
        if hashes.len() < 2 {
            return hashes.iter().map(|h| self.get(h)).collect();
        }
        let per = hashes.len().div_ceil(READERS);
        let read = |part: &[Hash]| part.iter().map(|h| self.get(h)).collect::<Vec<_>>();
        std::thread::scope(|s| {
            let parts: Vec<_> = hashes
                .chunks(per)
                .map(|part| {
                    let t = std::thread::Builder::new().spawn_scoped(s, move || read(part));
                    (part, t)
                })
                .collect();
            let mut out = Vec::with_capacity(hashes.len());
            for (part, t) in parts {
                out.extend(match t {
                    // A reader that panicked counts as misses.
                    Ok(t) => t.join().unwrap_or_else(|_| vec![None; part.len()]),
                    // No thread to be had: read here.
                    Err(_) => read(part),
                });
            }
            out
        })
    }

    /// Queues a block to be written (dropped if the queue is full or the
    /// block is known to be there).
    pub fn put(&self, hash: &Hash, data: &Arc<Vec<u8>>) {
        let key = (self.owner, *hash);
        if data.is_empty() || self.shared.core.index.lock().entries.contains_key(&key) {
            return;
        }
        let pending = &self.shared.core.pending;
        pending.fetch_add(1, Ordering::SeqCst);
        let sent = self
            .shared
            .writes
            .try_send((self.owner, *hash, data.clone()));
        if let Err(e) = sent {
            pending.fetch_sub(1, Ordering::SeqCst);
            match e {
                TrySendError::Full(_) => debug!("disk cache: queue full, block not cached"),
                TrySendError::Disconnected(_) => debug!("disk cache: writer is gone"),
            }
        }
    }
}

/// Waits (at most `limit`) until every block queued in this process is
/// written: a daemon about to exit keeps what it fetched and committed last.
pub fn drain(limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    let cores: Vec<Arc<Core>> = OPEN
        .lock()
        .iter()
        .filter_map(|(_, w)| w.upgrade())
        .map(|s| s.core.clone())
        .collect();
    while cores.iter().any(|c| c.pending.load(Ordering::SeqCst) > 0) {
        if std::time::Instant::now() >= deadline {
            warn!("disk cache: exiting with blocks not yet written");
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Makes a directory private (0700) if it was created with a looser mode
/// (by hand, or another umask); best effort.
fn tighten(dir: &Path) {
    if let Ok(m) = std::fs::metadata(dir) {
        if m.permissions().mode() & 0o077 != 0 {
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
    }
}

/// Creates and removes a file in `dir`: is it writable?
fn probe(dir: &Path) -> std::io::Result<()> {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let p = dir.join(format!("{TMP_PREFIX}probe.{}.{n}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&p)?;
    std::fs::remove_file(&p)
}

/// Starts the writer and scanner threads of a cache directory.
fn start(dir: PathBuf, max_bytes: u64) -> std::io::Result<Shared> {
    let core = Arc::new(Core {
        dir,
        max_bytes,
        index: Mutex::new(Index::default()),
        warned: Mutex::new(BTreeSet::new()),
        pending: AtomicU64::new(0),
    });
    let (writes, queue) = bounded(QUEUE);
    let (stop, stopped) = bounded::<()>(0);
    let c = core.clone();
    std::thread::Builder::new()
        .name("cassfs-diskcache-w".into())
        .spawn(move || c.write_all(queue))?;
    let c = core.clone();
    std::thread::Builder::new()
        .name("cassfs-diskcache-s".into())
        .spawn(move || c.scan_every(stopped))?;
    Ok(Shared {
        core,
        writes,
        _stop: stop,
    })
}

impl Core {
    fn owner_dir(&self, owner: i64) -> PathBuf {
        self.dir.join(owner.to_string())
    }

    fn path(&self, owner: i64, hash: &Hash) -> PathBuf {
        let name = hex(hash);
        self.owner_dir(owner).join(&name[..2]).join(name)
    }

    /// Logs a disk error as a warning the first time its kind is seen (so
    /// a broken disk does not flood the log), at debug level afterwards.
    fn disk_error(&self, what: &str, path: &Path, e: &std::io::Error) {
        let kind = format!("{what}: {}", e.kind());
        if self.warned.lock().insert(kind) {
            warn!(
                "disk cache: {what} {}: {e} (blocks come from Cassandra)",
                path.display()
            );
        } else {
            debug!("disk cache: {what} {}: {e}", path.display());
        }
    }

    fn read(&self, owner: i64, hash: &Hash) -> Option<Vec<u8>> {
        let key = (owner, *hash);
        let path = self.path(owner, hash);
        let mut data = Vec::new();
        let opened = File::open(&path).and_then(|mut f| {
            // At most one block and one byte: anything longer is not it.
            (&mut f).take(BLOCK_SIZE + 1).read_to_end(&mut data)?;
            Ok(f)
        });
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                self.index.lock().remove(&key);
                if e.kind() != ErrorKind::NotFound {
                    self.disk_error("cannot read", &path, &e);
                }
                return None;
            }
        };
        if Sha256::digest(&data).as_slice() != hash.as_slice() {
            warn!(
                "disk cache: {} does not hold the block it names ({} bytes); removed",
                path.display(),
                data.len()
            );
            metrics::disk_cache_corrupt();
            self.index.lock().remove(&key);
            if let Err(e) = std::fs::remove_file(&path) {
                self.disk_error("cannot remove", &path, &e);
            }
            return None;
        }
        // The file's time is its last use, for the next scan (here or in
        // another daemon sharing the directory).
        let _ = file.set_modified(SystemTime::now());
        self.index.lock().touch(key, data.len() as u64, now_ns());
        Some(data)
    }

    /// The writer thread: writes queued blocks until every handle is gone.
    fn write_all(&self, queue: Receiver<(i64, Hash, Arc<Vec<u8>>)>) {
        for (owner, hash, data) in queue {
            self.write_one(owner, hash, &data);
            self.pending.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Writes one block unless it is there already or the disk is full.
    fn write_one(&self, owner: i64, hash: Hash, data: &[u8]) {
        if self.index.lock().entries.contains_key(&(owner, hash)) || !self.has_room() {
            return;
        }
        let path = self.path(owner, &hash);
        // Written by another daemon since the last scan: now known.
        let there = std::fs::metadata(&path).is_ok_and(|m| m.len() == data.len() as u64);
        if !there {
            if let Err(e) = self.write_file(&path, data) {
                return self.disk_error("cannot write", &path, &e);
            }
        }
        let mut index = self.index.lock();
        index.touch((owner, hash), data.len() as u64, now_ns());
        let victims = index.evict(self.max_bytes);
        drop(index);
        self.remove_files(&victims);
    }

    /// Writes a block to a temporary file beside `path` and renames it
    /// into place (a torn file is caught by the hash when read).
    fn write_file(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
        static N: AtomicU64 = AtomicU64::new(0);
        let Some(dir) = path.parent() else {
            return Err(std::io::Error::other("no parent directory"));
        };
        make_dir(dir)?;
        let n = N.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("{TMP_PREFIX}{}.{n}", std::process::id()));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(data))
            .and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// Whether the filesystem under DIR has at least [`MIN_FREE`] free.
    fn has_room(&self) -> bool {
        match free_fraction(&self.dir) {
            Ok(f) if f >= MIN_FREE => true,
            Ok(f) => {
                debug!(
                    "disk cache: {} is {:.1}% free; block not cached",
                    self.dir.display(),
                    f * 100.0
                );
                false
            }
            Err(e) => {
                self.disk_error("cannot statvfs", &self.dir, &e);
                false
            }
        }
    }

    fn remove_files(&self, victims: &[Key]) {
        for (owner, hash) in victims {
            let path = self.path(*owner, hash);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => self.disk_error("cannot remove", &path, &e),
            }
        }
    }

    /// The scanner thread: scans at once, then every [`RESCAN`] until
    /// every handle is gone.
    fn scan_every(&self, stopped: Receiver<()>) {
        for round in 0.. {
            let started = now_ns();
            let found = self.scan();
            let n = found.len();
            let victims = self.merge(found, started);
            self.remove_files(&victims);
            let level = if round == 0 {
                log::Level::Info
            } else {
                log::Level::Debug
            };
            log::log!(
                level,
                "disk cache {}: {n} blocks found, {} bytes indexed, {} evicted",
                self.dir.display(),
                self.index.lock().bytes,
                victims.len()
            );
            match stopped.recv_timeout(RESCAN) {
                Err(RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        }
    }

    /// Every block file under DIR: (key, length, mtime); removes
    /// temporary files left by a daemon that died.
    fn scan(&self) -> Vec<(Key, u64, u64)> {
        let mut found = Vec::new();
        for owner_entry in read_dir(&self.dir) {
            let owner = owner_entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i64>().ok());
            let Some(owner) = owner else {
                continue;
            };
            for sub in read_dir(&owner_entry.path()) {
                let prefix = sub.file_name().to_string_lossy().into_owned();
                if prefix.len() != 2 {
                    continue;
                }
                for f in read_dir(&sub.path()) {
                    let name = f.file_name().to_string_lossy().into_owned();
                    let Ok(meta) = f.metadata() else {
                        continue;
                    };
                    if name.starts_with(TMP_PREFIX) {
                        let age = now_ns().saturating_sub(mtime_ns(&meta));
                        if age > STALE_TMP.as_nanos() as u64 {
                            let _ = std::fs::remove_file(f.path());
                        }
                        continue;
                    }
                    match parse_hash(&name) {
                        Some(h) if name.starts_with(&prefix) && meta.is_file() => {
                            found.push(((owner, h), meta.len(), mtime_ns(&meta)))
                        }
                        _ => {}
                    }
                }
            }
        }
        found
    }

    /// Brings the index in line with a scan begun at `started`: files found
    /// are known (last used at the later of their mtime and what the index
    /// says), entries not found and not used since `started` are gone.
    /// Returns what is evicted to stay within the bound.
    fn merge(&self, found: Vec<(Key, u64, u64)>, started: u64) -> Vec<Key> {
        let mut index = self.index.lock();
        let seen: std::collections::HashSet<Key> = found.iter().map(|(k, _, _)| *k).collect();
        let gone: Vec<Key> = index
            .entries
            .iter()
            .filter(|(k, (_, used))| *used < started && !seen.contains(k))
            .map(|(k, _)| *k)
            .collect();
        for k in &gone {
            index.remove(k);
        }
        for (key, len, mtime) in found {
            index.touch(key, len, mtime);
        }
        index.evict(self.max_bytes)
    }
}

/// The entries of a directory (none if it cannot be read).
fn read_dir(dir: &Path) -> impl Iterator<Item = std::fs::DirEntry> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
}

/// The fraction of the filesystem under `dir` free to unprivileged users.
fn free_fraction(dir: &Path) -> std::io::Result<f64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("path holds a NUL byte"))?;
    // SAFETY: statvfs is plain data; zeroed is a valid initial value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a valid out pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if st.f_blocks == 0 {
        return Ok(1.0);
    }
    Ok(st.f_bavail as f64 / st.f_blocks as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_evicts_least_recently_used_first() {
        let mut i = Index::default();
        i.insert((1, [1; 32]), 4, 10);
        i.insert((1, [2; 32]), 4, 20);
        i.insert((2, [3; 32]), 4, 30);
        i.touch((1, [1; 32]), 4, 40);
        assert_eq!(i.bytes, 12);
        assert_eq!(i.evict(8), vec![(1, [2; 32])]);
        assert_eq!(i.evict(4), vec![(2, [3; 32])]);
        assert_eq!(i.bytes, 4);
        assert!(i.remove(&(1, [1; 32])));
        assert!(!i.remove(&(1, [1; 32])));
        assert_eq!((i.bytes, i.by_use.len()), (0, 0));
    }

    #[test]
    fn only_lower_case_hex_names_are_blocks() {
        let h = [0xab; 32];
        assert_eq!(parse_hash(&hex(&h)), Some(h));
        assert_eq!(parse_hash(&hex(&h).to_uppercase()), None);
        assert_eq!(parse_hash("abc"), None);
        assert_eq!(parse_hash(&format!("{}zz", &hex(&h)[..62])), None);
    }

    #[test]
    fn blocks_round_trip_and_bad_files_are_never_served() {
        let dir = tempfile::tempdir().expect("temp dir");
        let c = DiskCache::open(dir.path(), 7, 1 << 30).expect("open");
        let data = Arc::new(vec![5u8; 1000]);
        let h: Hash = Sha256::digest(data.as_slice()).into();
        c.put(&h, &data);
        let path = c.shared.core.path(7, &h);
        assert!(wait(|| path.exists()), "written in the background");
        assert_eq!(c.get(&h).as_deref(), Some(data.as_slice()));
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dmode = std::fs::metadata(dir.path().join("7")).expect("stat");
        assert_eq!(dmode.permissions().mode() & 0o777, 0o700);
        std::fs::write(&path, &data[..999]).expect("truncate");
        assert_eq!(c.get(&h), None, "a short file is a miss");
        assert!(!path.exists(), "and is removed");
    }

    fn wait(f: impl Fn() -> bool) -> bool {
        for _ in 0..200 {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }
}
