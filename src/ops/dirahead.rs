//! Reading directories ahead: a directory read whole (its listing and the
//! inodes of its entries, which carry the content of files up to 64 KiB)
//! and, in the background, the directories below it, so that a reader
//! walking a tree finds each next directory cached. When a file of a
//! directory is first opened, the first block of each larger file there
//! goes to the block read-ahead (`prefetch.rs`): a directory only looked
//! at (`stat`, `ls`) costs no content.
//!
//! Everything read here enters the caches through `put_inode_read` and
//! `put_listing_read`, so a change the feed (or this mount) made meanwhile
//! is never covered by an older copy.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::debug;
use parking_lot::{Condvar, Mutex};

use super::prefetch::Prefetcher;
use super::PREFETCH_INODES_MAX;
use crate::cache::{Cache, Listing};
use crate::store::{Content, Dentry, Kind, Store, HOLE};

/// Levels below a directory read in the foreground that are read ahead.
const DEPTH: u32 = 3;
/// Directories waiting to be read ahead, at most (more are not queued).
const QUEUE_MAX: usize = 1024;
/// Directories remembered as having had a file opened (then forgotten).
const OPENED_MAX: usize = 16_384;

/// Reads a small directory whole into the caches: its listing, and its
/// inodes when it has at most [`PREFETCH_INODES_MAX`] entries (else only
/// `want`'s). `None` for a directory too large to read whole (marked so).
pub(super) fn read_whole(
    store: &Store,
    cache: &Cache,
    dir: u64,
    want: Option<&[u8]>,
) -> crate::store::Result<Option<Listing>> {
    let epoch = cache.listing_epoch();
    let Some(list) = store.list_small_dir(dir)? else {
        cache.mark_large_dir(dir);
        return Ok(None);
    };
    let all = list.len() <= PREFETCH_INODES_MAX;
    let unknown: Vec<u64> = list
        .iter()
        .filter(|d| all || want == Some(d.name.as_slice()))
        .filter(|d| cache.inode(d.ino).is_none())
        .map(|d| d.ino)
        .collect();
    let inode_epoch = cache.inode_epoch();
    for i in store.get_inodes(&unknown)?.into_iter().flatten() {
        cache.put_inode_read(&i, inode_epoch);
    }
    let by_name: Listing = list.into_iter().map(|d| (d.name.clone(), d)).collect();
    cache.put_listing_read(dir, by_name.clone(), epoch);
    Ok(Some(by_name))
}

/// The background readers of directories below those read in the
/// foreground ([`THREADS`] of them, each reading one directory at a time).
/// The directories wait on a stack, the first by name on top, so the
/// readers go depth first in name order, as a walk of the tree does.
pub(super) struct DirAhead {
    shared: Arc<Shared>,
}

/// Threads reading directories ahead.
const THREADS: usize = 4;
/// How long a lookup waits for a directory a thread is reading.
const WAIT: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Shared {
    state: Mutex<Queue>,
    /// Signalled when a directory is queued, or at the end.
    work: Condvar,
    /// Signalled when a thread finishes a directory.
    done: Condvar,
}

/// Directories queued (with the levels below them still to read) and
/// being read.
#[derive(Default)]
struct Queue {
    stack: Vec<(u64, u32)>,
    queued: HashSet<u64>,
    reading: HashSet<u64>,
    /// Directories whose larger files' first blocks were asked for.
    opened: HashSet<u64>,
    stop: bool,
}

impl DirAhead {
    pub(super) fn start(store: Arc<Store>, cache: Arc<Cache>) -> std::io::Result<DirAhead> {
        let shared: Arc<Shared> = Arc::default();
        for n in 0..THREADS {
            let shared = shared.clone();
            let (store, cache) = (store.clone(), cache.clone());
            std::thread::Builder::new()
                .name(format!("cassfs-dirahead-{n}"))
                .spawn(move || {
                    while let Some((dir, depth)) = shared.next() {
                        let listing = read_ahead(&store, &cache, dir);
                        shared.finish(dir);
                        if let (Some(l), true) = (listing, depth > 1) {
                            shared.push(&l, depth - 1);
                        }
                    }
                })?;
        }
        Ok(DirAhead { shared })
    }

    /// Queues the subdirectories listed in `l` (just read in the foreground).
    pub(super) fn below(&self, l: &Listing) {
        self.shared.push(l, DEPTH);
    }

    /// The first time a file of `dir` (other than `ino`) is opened here:
    /// asks `blocks` for the first block of each larger file of the
    /// directory that is not cached (a site reading one file of a directory
    /// reads the others next).
    pub(super) fn opened_in(&self, dir: u64, ino: u64, cache: &Cache, blocks: &Prefetcher) {
        {
            let mut state = self.shared.state.lock();
            if state.opened.len() >= OPENED_MAX {
                state.opened.clear();
            }
            if !state.opened.insert(dir) {
                return;
            }
        }
        let Some(list) = cache.listing(dir) else {
            return;
        };
        let first = |d: &Dentry| match cache.inode(d.ino)?.content {
            Content::Blocks(h) => h.first().copied(),
            Content::Inline(_) => None,
        };
        let hashes = list
            .iter()
            .filter(|d| d.kind == Kind::File && d.ino != ino)
            .filter_map(first)
            .filter(|h| *h != HOLE && !cache.has_block(h))
            .collect();
        blocks.request(hashes);
    }

    /// Waits (at most [`WAIT`]) while a thread reads `dir`, so that a
    /// lookup there does not read it a second time.
    pub(super) fn wait_for(&self, dir: u64) {
        let deadline = Instant::now() + WAIT;
        let mut state = self.shared.state.lock();
        while state.reading.contains(&dir) {
            if self
                .shared
                .done
                .wait_until(&mut state, deadline)
                .timed_out()
            {
                return;
            }
        }
    }
}

impl Drop for DirAhead {
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.work.notify_all();
    }
}

impl Shared {
    /// The next directory to read, now marked as being read (`None`: stop).
    fn next(&self) -> Option<(u64, u32)> {
        let mut state = self.state.lock();
        loop {
            if state.stop {
                return None;
            }
            if let Some((dir, depth)) = state.stack.pop() {
                state.queued.remove(&dir);
                state.reading.insert(dir);
                return Some((dir, depth));
            }
            self.work.wait(&mut state);
        }
    }

    fn finish(&self, dir: u64) {
        self.state.lock().reading.remove(&dir);
        self.done.notify_all();
    }

    /// Queues the subdirectories in `l` neither queued nor being read (as
    /// many as [`QUEUE_MAX`] allows), the first by name on top.
    fn push(&self, l: &Listing, depth: u32) {
        let mut state = self.state.lock();
        for d in l.values().rev().filter(|d| d.kind == Kind::Dir) {
            if state.queued.len() >= QUEUE_MAX {
                break;
            }
            if !state.reading.contains(&d.ino) && state.queued.insert(d.ino) {
                state.stack.push((d.ino, depth));
            }
        }
        drop(state);
        self.work.notify_all();
    }
}

/// A directory's listing, from the cache or read whole (`None`: too large,
/// or the read failed: reading ahead is only a hint).
fn read_ahead(store: &Store, cache: &Cache, dir: u64) -> Option<Listing> {
    if let Some(l) = cache.listing(dir) {
        return Some(l.into_iter().map(|d| (d.name.clone(), d)).collect());
    }
    if cache.is_large_dir(dir) {
        return None;
    }
    read_whole(store, cache, dir, None).unwrap_or_else(|e| {
        debug!("reading directory {dir} ahead failed: {e}");
        None
    })
}
