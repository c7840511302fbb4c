//! Reading directories ahead: a directory read whole (its listing and the
//! inodes of its entries, which carry the content of files up to 64 KiB)
//! and, in the background, the directories below it, so that a reader
//! walking a tree finds each next directory cached. The first block of
//! each larger file goes to the block read-ahead (`prefetch.rs`).
//!
//! Everything read here enters the caches through `put_inode_read` and
//! `put_listing_read`, so a change the feed (or this mount) made meanwhile
//! is never covered by an older copy.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use crossbeam_channel::{unbounded, Sender};
use log::debug;
use parking_lot::Mutex;

use super::prefetch::Prefetcher;
use super::PREFETCH_INODES_MAX;
use crate::cache::{Cache, Listing};
use crate::store::{Content, Hash, Kind, Store};

/// Levels below a directory read in the foreground that are read ahead.
const DEPTH: u32 = 2;
/// Directories waiting to be read ahead, at most (more are not queued).
const QUEUE_MAX: usize = 1024;

/// Reads a small directory whole into the caches: its listing, its inodes
/// when it has at most [`PREFETCH_INODES_MAX`] entries (else only `want`'s),
/// and asks `blocks` for the first block of each larger file. `None` for a
/// directory too large to read whole (marked so).
pub(super) fn read_whole(
    store: &Store,
    cache: &Cache,
    blocks: &Prefetcher,
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
    let mut first_blocks: Vec<Hash> = Vec::new();
    for i in store.get_inodes(&unknown)?.into_iter().flatten() {
        if let (Kind::File, Content::Blocks(h)) = (i.kind, &i.content) {
            first_blocks.extend(h.first().filter(|h| !cache.has_block(h)));
        }
        cache.put_inode_read(&i, inode_epoch);
    }
    blocks.request(first_blocks);
    let by_name: Listing = list.into_iter().map(|d| (d.name.clone(), d)).collect();
    cache.put_listing_read(dir, by_name.clone(), epoch);
    Ok(Some(by_name))
}

/// The background reader of directories below those read in the foreground.
pub(super) struct DirAhead {
    tx: Sender<(u64, u32)>,
    queued: Arc<Mutex<HashSet<u64>>>,
}

impl DirAhead {
    pub(super) fn start(
        store: Arc<Store>,
        cache: Arc<Cache>,
        blocks: Prefetcher,
    ) -> std::io::Result<DirAhead> {
        let (tx, rx) = unbounded::<(u64, u32)>();
        let queued: Arc<Mutex<HashSet<u64>>> = Arc::default();
        let shared = queued.clone();
        std::thread::Builder::new()
            .name("cassfs-dirahead".into())
            .spawn(move || {
                // Ends when the mount drops its sender.
                while let Ok(first) = rx.recv() {
                    let mut work = VecDeque::from([first]);
                    while let Some((dir, depth)) = work.pop_front() {
                        let listing = read_ahead(&store, &cache, &blocks, dir);
                        shared.lock().remove(&dir);
                        if let (Some(l), true) = (listing, depth > 1) {
                            work.extend(queue(&shared, &l).into_iter().map(|d| (d, depth - 1)));
                        }
                        work.extend(rx.try_iter());
                    }
                }
            })?;
        Ok(DirAhead { tx, queued })
    }

    /// Queues the subdirectories listed in `l` (just read in the foreground).
    pub(super) fn below(&self, l: &Listing) {
        for dir in queue(&self.queued, l) {
            if self.tx.send((dir, DEPTH)).is_err() {
                debug!("the read-ahead of directories is gone");
                return;
            }
        }
    }
}

/// The subdirectories in `l` not queued yet, now marked queued (as many as
/// [`QUEUE_MAX`] allows).
fn queue(queued: &Mutex<HashSet<u64>>, l: &Listing) -> Vec<u64> {
    let mut queued = queued.lock();
    let mut out = Vec::new();
    for d in l.values().filter(|d| d.kind == Kind::Dir) {
        if queued.len() >= QUEUE_MAX {
            break;
        }
        if queued.insert(d.ino) {
            out.push(d.ino);
        }
    }
    out
}

/// A directory's listing, from the cache or read whole (`None`: too large,
/// or the read failed: reading ahead is only a hint).
fn read_ahead(store: &Store, cache: &Cache, blocks: &Prefetcher, dir: u64) -> Option<Listing> {
    if let Some(l) = cache.listing(dir) {
        return Some(l.into_iter().map(|d| (d.name.clone(), d)).collect());
    }
    if cache.is_large_dir(dir) {
        return None;
    }
    read_whole(store, cache, blocks, dir, None).unwrap_or_else(|e| {
        debug!("reading directory {dir} ahead failed: {e}");
        None
    })
}
