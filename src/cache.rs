//! Local caches shared by the worker threads: inodes and directory entries
//! (trusted for `fcache_ttl`), and content blocks (immutable, kept until
//! evicted to stay within `cache_size` bytes).
//!
//! This module also owns the cache *policy* of a mount: how long the kernel
//! may keep names and attributes ([`Cache::kernel_ttl`]) and whether an open
//! may trust a cached inode without asking Cassandra
//! ([`Cache::current_inode`]). Both depend on whether the volume's change
//! feed is being followed (`crate::feed` reports each successful poll with
//! [`Cache::feed_polled`]): while it is, other mounts' changes are pushed
//! here within a second, so cached metadata is trusted until an event says
//! it changed; while it is not, the kernel keeps answers at most
//! [`UNFOLLOWED_KERNEL_TTL`] and opens check the version in Cassandra, so
//! staleness is bounded by `fcache_ttl`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::metrics::{self, CacheKind};
use crate::store::{now_ns, Content, Dentry, Hash, Inode};

/// At most this many inodes and entries are cached; beyond it, the oldest
/// half is dropped.
const MAX_ENTRIES: usize = 200_000;
/// A directory's listing is cached whole while it has at most this many
/// entries (about 1 MB); past it the directory is read by cursor.
pub const LISTING_MAX: usize = 10_000;

/// The change feed counts as followed while its last successful poll is at
/// most this old.
pub const FEED_TRUST: Duration = Duration::from_secs(2);

/// The longest the kernel keeps a name or attributes while the change feed
/// is not followed.
pub const UNFOLLOWED_KERNEL_TTL: Duration = Duration::from_secs(1);

/// (parent inode, name).
type DentryKey = (u64, Vec<u8>);
/// The entries of one directory by name.
pub type Listing = BTreeMap<Vec<u8>, Dentry>;

struct Timed<T> {
    value: T,
    at: Instant,
}

/// The metadata and content caches of one mount.
pub struct Cache {
    ttl: Duration,
    inodes: Mutex<Inodes>,
    /// (parent, name) → entry, or `None` for a name known not to exist.
    dentries: Mutex<HashMap<DentryKey, Timed<Option<Dentry>>>>,
    /// Complete directory listings, kept up to date with the changes this
    /// mount makes.
    listings: Mutex<HashMap<u64, Timed<Listing>>>,
    /// Directories found too large to be read whole.
    large_dirs: Mutex<HashMap<u64, Instant>>,
    blocks: Mutex<BlockCache>,
    /// Inline bytes held by cached inodes, bounded like blocks.
    inline_limit: usize,
    /// When the change feed was last read (ns since the epoch; 0: never).
    feed_ok_ns: AtomicI64,
    /// Counts the times a listing was forgotten or changed here, so that
    /// one read before is not cached after ([`Cache::put_listing_read`]).
    listing_forgets: AtomicU64,
}

impl Cache {
    pub fn new(ttl: Duration, cache_size: u64) -> Cache {
        let cap = usize::try_from(cache_size).unwrap_or(usize::MAX);
        Cache {
            ttl,
            inodes: Mutex::new(Inodes::default()),
            dentries: Mutex::new(HashMap::new()),
            listings: Mutex::new(HashMap::new()),
            large_dirs: Mutex::new(HashMap::new()),
            blocks: Mutex::new(BlockCache::new(cap / 4 * 3)),
            inline_limit: cap / 4,
            feed_ok_ns: AtomicI64::new(0),
            listing_forgets: AtomicU64::new(0),
        }
    }

    /// The change feed was read completely up to now (`crate::feed`).
    pub fn feed_polled(&self) {
        self.feed_ok_ns.store(now_ns(), Ordering::Relaxed);
    }

    /// The change feed could not be read: stop trusting cached metadata
    /// beyond its TTL at once.
    pub fn feed_lost(&self) {
        self.feed_ok_ns.store(0, Ordering::Relaxed);
    }

    /// Whether other mounts' changes reach this one through the feed now.
    pub fn feed_followed(&self) -> bool {
        let last = self.feed_ok_ns.load(Ordering::Relaxed);
        last > 0 && now_ns() - last < FEED_TRUST.as_nanos() as i64
    }

    /// How long the kernel may keep an answer whose configured lifetime
    /// is `configured` (`entry_ttl`, `negative_ttl`).
    pub fn kernel_ttl(&self, configured: Duration) -> Duration {
        if self.feed_followed() {
            configured
        } else {
            configured.min(UNFOLLOWED_KERNEL_TTL)
        }
    }

    /// A cached inode an open may use without asking Cassandra for its
    /// version: only while the feed is followed (it would have dropped
    /// the copy had another mount changed the inode).
    pub fn current_inode(&self, ino: u64) -> Option<Inode> {
        if self.feed_followed() {
            self.inode(ino)
        } else {
            None
        }
    }

    /// Forgets every cached inode, entry and listing (not content blocks,
    /// which are immutable); returns what was forgotten, for the kernel.
    pub fn forget_metadata(&self) -> (Vec<(u64, Vec<u8>)>, Vec<u64>) {
        let forgotten = self.cached_metadata();
        self.inodes.lock().clear();
        self.dentries.lock().clear();
        self.forget_listings(|l| l.clear());
        self.large_dirs.lock().clear();
        forgotten
    }

    /// What is cached of metadata, without forgetting it (to tell the
    /// kernel to drop its copies while this mount keeps serving them).
    pub fn cached_metadata(&self) -> (Vec<(u64, Vec<u8>)>, Vec<u64>) {
        let inos: Vec<u64> = self.inodes.lock().map.keys().copied().collect();
        let mut entries: Vec<(u64, Vec<u8>)> = self.dentries.lock().keys().cloned().collect();
        for (dir, t) in self.listings.lock().iter() {
            entries.extend(t.value.keys().map(|name| (*dir, name.clone())));
        }
        (entries, inos)
    }

    fn fresh<T>(&self, t: &Timed<T>) -> bool {
        !self.ttl.is_zero() && t.at.elapsed() < self.ttl
    }

    /// A cached inode younger than the TTL.
    pub fn inode(&self, ino: u64) -> Option<Inode> {
        let map = self.inodes.lock();
        let got = map
            .map
            .get(&ino)
            .filter(|t| self.fresh(t))
            .map(|t| t.value.clone());
        metrics::cache_lookup(CacheKind::Inodes, got.is_some());
        got
    }

    /// A cached inode of any age (for serving while Cassandra is away).
    pub fn stale_inode(&self, ino: u64) -> Option<Inode> {
        self.inodes.lock().map.get(&ino).map(|t| t.value.clone())
    }

    pub fn put_inode(&self, inode: &Inode) {
        self.put_locked(&mut self.inodes.lock(), inode);
    }

    fn put_locked(&self, map: &mut Inodes, inode: &Inode) {
        if map.map.len() >= MAX_ENTRIES || map.bytes > self.inline_limit {
            map.evict_oldest_half();
        }
        map.insert(
            inode.ino,
            Timed {
                value: inode.clone(),
                at: Instant::now(),
            },
        );
    }

    /// Marks the start of a read of inodes from Cassandra, for
    /// [`Cache::put_inode_read`].
    pub fn inode_epoch(&self) -> u64 {
        self.inodes.lock().forgets
    }

    /// Caches a copy read from Cassandra after `epoch`, unless an inode was
    /// forgotten since: the change that made it forget may be newer than
    /// the copy (a concurrent unlink, rename or feed event), and caching
    /// the copy would bring back what it replaced. Then any cached copy of
    /// the inode goes too (it may be older still).
    pub fn put_inode_read(&self, inode: &Inode, epoch: u64) {
        let mut map = self.inodes.lock();
        if map.forgets == epoch {
            self.put_locked(&mut map, inode);
        } else {
            map.remove(inode.ino);
        }
    }

    pub fn forget_inode(&self, ino: u64) {
        self.inodes.lock().remove(ino);
    }

    /// A cached entry younger than the TTL: `Some(None)` is a known miss.
    pub fn dentry(&self, parent: u64, name: &[u8]) -> Option<Option<Dentry>> {
        let map = self.dentries.lock();
        if let Some(t) = map.get(&(parent, name.to_vec())).filter(|t| self.fresh(t)) {
            metrics::cache_lookup(CacheKind::Entries, true);
            return Some(t.value.clone());
        }
        drop(map);
        let got = self.listed(parent, name);
        metrics::cache_lookup(CacheKind::Entries, got.is_some());
        got
    }

    pub fn put_dentry(&self, parent: u64, name: &[u8], d: Option<Dentry>) {
        let mut map = self.dentries.lock();
        if map.len() >= MAX_ENTRIES {
            evict_oldest_half(&mut map);
        }
        map.insert(
            (parent, name.to_vec()),
            Timed {
                value: d,
                at: Instant::now(),
            },
        );
    }

    /// Forgets what is cached of a name, in the entry cache and the
    /// directory's listing (found to be out of date).
    pub fn forget_dentry(&self, parent: u64, name: &[u8]) {
        self.dentries.lock().remove(&(parent, name.to_vec()));
        self.forget_listings(|l| {
            l.remove(&parent);
        });
    }

    /// Drops listings (`f`), counted for [`Cache::put_listing_read`].
    fn forget_listings(&self, f: impl FnOnce(&mut HashMap<u64, Timed<Listing>>)) {
        let mut map = self.listings.lock();
        self.listing_forgets.fetch_add(1, Ordering::Relaxed);
        f(&mut map);
    }

    /// Applies a change this mount made to a cached inode, keeping its age
    /// (so a copy is never trusted longer than the TTL).
    /// A copy of any inode being read meanwhile (a directory read ahead,
    /// not ordered with this change) is then not cached: it may predate it.
    pub fn update_inode(&self, ino: u64, f: impl FnOnce(&mut Inode)) {
        let mut map = self.inodes.lock();
        map.forgets += 1;
        if let Some(t) = map.map.get_mut(&ino) {
            let before = content_bytes(&t.value);
            f(&mut t.value);
            let after = content_bytes(&t.value);
            map.bytes = (map.bytes + after).saturating_sub(before);
        }
    }

    /// Records a change this mount made to an entry, in the entry cache and
    /// in the directory's cached listing.
    /// A listing being read meanwhile is then not cached (it may predate
    /// the change).
    pub fn set_dentry(&self, parent: u64, name: &[u8], d: Option<Dentry>) {
        self.put_dentry(parent, name, d.clone());
        let mut map = self.listings.lock();
        self.listing_forgets.fetch_add(1, Ordering::Relaxed);
        let Some(t) = map.get_mut(&parent) else {
            return;
        };
        match d {
            Some(d) => t.value.insert(name.to_vec(), d),
            None => t.value.remove(name),
        };
        // A listing is kept whole only up to LISTING_MAX entries (a larger
        // directory is read a page at a time), and only while fresh.
        let large = t.value.len() > LISTING_MAX;
        if large || !self.fresh(t) {
            map.remove(&parent);
            drop(map);
            if large {
                self.mark_large_dir(parent);
            }
        }
    }

    /// What a fresh cached listing says of a name: `Some(None)` when the
    /// listing is fresh and lacks it, `None` when there is no fresh listing.
    pub fn listed(&self, parent: u64, name: &[u8]) -> Option<Option<Dentry>> {
        let map = self.listings.lock();
        let t = map.get(&parent).filter(|t| self.fresh(t))?;
        Some(t.value.get(name).cloned())
    }

    /// The entries of a fresh cached listing, in name order.
    pub fn listing(&self, dir: u64) -> Option<Vec<Dentry>> {
        let map = self.listings.lock();
        map.get(&dir)
            .filter(|t| self.fresh(t))
            .map(|t| t.value.values().cloned().collect())
    }

    /// A cached entry of any age (for serving while Cassandra is away).
    pub fn stale_dentry(&self, parent: u64, name: &[u8]) -> Option<Option<Dentry>> {
        if let Some(t) = self.dentries.lock().get(&(parent, name.to_vec())) {
            return Some(t.value.clone());
        }
        let map = self.listings.lock();
        map.get(&parent).map(|t| t.value.get(name).cloned())
    }

    /// A cached listing of any age (for serving while Cassandra is away).
    pub fn stale_listing(&self, dir: u64) -> Option<Vec<Dentry>> {
        let map = self.listings.lock();
        map.get(&dir).map(|t| t.value.values().cloned().collect())
    }

    /// Whether `dir` was found too large to read whole, within the TTL.
    pub fn is_large_dir(&self, dir: u64) -> bool {
        let map = self.large_dirs.lock();
        map.get(&dir)
            .is_some_and(|at| !self.ttl.is_zero() && at.elapsed() < self.ttl)
    }

    pub fn mark_large_dir(&self, dir: u64) {
        let mut map = self.large_dirs.lock();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(dir, Instant::now());
    }

    pub fn forget_listing(&self, dir: u64) {
        self.forget_listings(|l| {
            l.remove(&dir);
        });
    }

    /// Marks the start of a read of a listing from Cassandra, for
    /// [`Cache::put_listing_read`].
    pub fn listing_epoch(&self) -> u64 {
        self.listing_forgets.load(Ordering::Relaxed)
    }

    /// Caches a listing read from Cassandra after `epoch`, unless a
    /// listing was forgotten since (the change that made it forget may be
    /// newer than the copy: a feed event, another mount's unlink).
    pub fn put_listing_read(&self, dir: u64, list: Listing, epoch: u64) {
        let map = self.listings.lock();
        if self.listing_forgets.load(Ordering::Relaxed) == epoch {
            self.put_listing_locked(map, dir, list);
        }
    }

    pub fn put_listing(&self, dir: u64, list: Listing) {
        self.put_listing_locked(self.listings.lock(), dir, list);
    }

    fn put_listing_locked(
        &self,
        mut map: parking_lot::MutexGuard<'_, HashMap<u64, Timed<Listing>>>,
        dir: u64,
        list: Listing,
    ) {
        let total: usize = map.values().map(|t| t.value.len()).sum();
        if total + list.len() > MAX_ENTRIES {
            evict_oldest_half(&mut map);
        }
        map.insert(
            dir,
            Timed {
                value: list,
                at: Instant::now(),
            },
        );
    }

    pub fn block(&self, hash: &Hash) -> Option<Arc<Vec<u8>>> {
        let got = self.blocks.lock().get(hash);
        metrics::cache_lookup(CacheKind::Blocks, got.is_some());
        got
    }

    pub fn has_block(&self, hash: &Hash) -> bool {
        self.blocks.lock().map.contains_key(hash)
    }

    pub fn put_block(&self, hash: Hash, data: Arc<Vec<u8>>) {
        self.blocks.lock().put(hash, data);
    }
}

/// Cached inodes and the bytes of content they hold (inline data, block
/// lists), kept as a running total so that a bound costs nothing to check.
#[derive(Default)]
struct Inodes {
    map: HashMap<u64, Timed<Inode>>,
    bytes: usize,
    /// Counts the times inodes were forgotten or changed here, so that a
    /// copy read before one of them is not cached after it
    /// ([`Cache::put_inode_read`]).
    forgets: u64,
}

fn content_bytes(i: &Inode) -> usize {
    match &i.content {
        Content::Inline(d) => d.len(),
        Content::Blocks(h) => h.len() * 32,
    }
}

impl Inodes {
    fn insert(&mut self, ino: u64, t: Timed<Inode>) {
        self.bytes += content_bytes(&t.value);
        if let Some(old) = self.map.insert(ino, t) {
            self.bytes = self.bytes.saturating_sub(content_bytes(&old.value));
        }
    }

    fn remove(&mut self, ino: u64) {
        self.forgets += 1;
        if let Some(old) = self.map.remove(&ino) {
            self.bytes = self.bytes.saturating_sub(content_bytes(&old.value));
        }
    }

    fn clear(&mut self) {
        self.forgets += 1;
        self.map.clear();
        self.bytes = 0;
    }

    fn evict_oldest_half(&mut self) {
        evict_oldest_half(&mut self.map);
        self.bytes = self.map.values().map(|t| content_bytes(&t.value)).sum();
    }
}

fn evict_oldest_half<K: Clone + Eq + std::hash::Hash, V>(map: &mut HashMap<K, Timed<V>>) {
    let mut ages: Vec<(Instant, K)> = map.iter().map(|(k, t)| (t.at, k.clone())).collect();
    ages.sort_by_key(|(at, _)| *at);
    for (_, k) in ages.into_iter().take(map.len() / 2 + 1) {
        map.remove(&k);
    }
}

/// Blocks by hash, least recently used evicted first.
struct BlockCache {
    cap: usize,
    used: usize,
    tick: u64,
    map: HashMap<Hash, (Arc<Vec<u8>>, u64)>,
}

impl BlockCache {
    fn new(cap: usize) -> BlockCache {
        BlockCache {
            cap,
            used: 0,
            tick: 0,
            map: HashMap::new(),
        }
    }

    fn get(&mut self, h: &Hash) -> Option<Arc<Vec<u8>>> {
        self.tick += 1;
        let tick = self.tick;
        self.map.get_mut(h).map(|(d, t)| {
            *t = tick;
            d.clone()
        })
    }

    fn put(&mut self, h: Hash, data: Arc<Vec<u8>>) {
        if data.len() > self.cap || self.map.contains_key(&h) {
            return;
        }
        while self.used + data.len() > self.cap {
            let Some(victim) = self
                .map
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some((d, _)) = self.map.remove(&victim) {
                self.used -= d.len();
            }
        }
        self.tick += 1;
        self.used += data.len();
        self.map.insert(h, (data, self.tick));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_cache_stays_within_capacity_and_evicts_lru() {
        let mut c = BlockCache::new(10);
        c.put([1; 32], Arc::new(vec![0; 4]));
        c.put([2; 32], Arc::new(vec![0; 4]));
        assert!(c.get(&[1; 32]).is_some());
        c.put([3; 32], Arc::new(vec![0; 4]));
        assert!(c.used <= 10);
        assert!(c.get(&[2; 32]).is_none(), "least recently used goes first");
        assert!(c.get(&[1; 32]).is_some());
        c.put([4; 32], Arc::new(vec![0; 11]));
        assert!(c.get(&[4; 32]).is_none(), "larger than the cache: not kept");
    }

    fn file(ino: u64, inline: usize) -> Inode {
        Inode {
            ino,
            kind: crate::store::Kind::File,
            perm: 0o644,
            uid: 0,
            gid: 0,
            nlink: 1,
            rdev: 0,
            size: inline as u64,
            atime_ns: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            parent: 1,
            version: 0,
            target: Vec::new(),
            content: Content::Inline(Arc::new(vec![0; inline])),
            xattrs: BTreeMap::new(),
        }
    }

    #[test]
    fn a_copy_read_before_a_forget_is_not_cached() {
        let c = Cache::new(Duration::from_secs(60), 1 << 20);
        let mut old = file(7, 0);
        c.put_inode(&old);
        let epoch = c.inode_epoch();
        c.forget_inode(9); // a concurrent change elsewhere
        old.nlink = 0;
        c.put_inode_read(&old, epoch);
        assert!(c.stale_inode(7).is_none(), "older copy dropped, not cached");
        let epoch = c.inode_epoch();
        c.put_inode_read(&old, epoch);
        assert_eq!(c.inode(7).map(|i| i.nlink), Some(0));
    }

    #[test]
    fn cached_inodes_count_their_bytes_and_stay_within_the_limit() {
        let c = Cache::new(Duration::from_secs(60), 4000); // inline limit 1000
        c.put_inode(&file(1, 300));
        c.put_inode(&file(2, 300));
        c.put_inode(&file(1, 100)); // replaced: 300 + 100
        assert_eq!(c.inodes.lock().bytes, 400);
        c.update_inode(2, |i| i.content = Content::Inline(Arc::new(vec![0; 50])));
        assert_eq!(c.inodes.lock().bytes, 150);
        c.forget_inode(1);
        assert_eq!(c.inodes.lock().bytes, 50);
        for ino in 10..30 {
            c.put_inode(&file(ino, 200));
        }
        let m = c.inodes.lock();
        assert!(m.bytes <= 1000 + 200, "{} bytes cached", m.bytes);
        assert_eq!(
            m.bytes,
            m.map
                .values()
                .map(|t| content_bytes(&t.value))
                .sum::<usize>()
        );
    }

    #[test]
    fn a_listing_grown_past_its_bound_is_dropped() {
        let c = Cache::new(Duration::from_secs(60), 1 << 20);
        c.put_listing(5, Listing::new());
        for i in 0..=LISTING_MAX {
            let name = format!("f{i}").into_bytes();
            let d = Dentry {
                name: name.clone(),
                ino: 100 + i as u64,
                kind: crate::store::Kind::File,
            };
            c.set_dentry(5, &name, Some(d));
        }
        assert!(c.listing(5).is_none());
        assert!(c.is_large_dir(5));
    }

    #[test]
    fn ttl_zero_trusts_nothing() {
        let c = Cache::new(Duration::ZERO, 1 << 20);
        c.put_dentry(1, b"a", None);
        assert_eq!(c.dentry(1, b"a"), None);
        let c = Cache::new(Duration::from_secs(60), 1 << 20);
        c.put_dentry(1, b"a", None);
        assert_eq!(c.dentry(1, b"a"), Some(None));
    }
}
