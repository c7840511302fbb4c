//! Following the volume's change feed: how a mount learns of other mounts'
//! changes within a second instead of when its caches expire.
//!
//! Every write call of the store also writes an event (`store/changes.rs`)
//! naming the entries and inodes it touched. This module owns the other
//! side: one thread per mount polls the feed's partitions of the last
//! seconds, skips its own events and those already applied, and for each
//! entry and inode named drops what the local caches hold and tells the
//! kernel ([`Kernel`]) to drop its copy. It never runs inside a FUSE
//! callback: kernel notifications are sent from this thread only.
//!
//! An event is written in the same round trip as its change, so it can be
//! read a moment before the change itself is readable (a conditional write
//! takes longer than the plain write of its event): each event is applied
//! again [`REAPPLY`] after it was first seen, so a reader that fetched the
//! old state in between does not keep it.
//!
//! When the feed cannot be read, the mount stops trusting its caches beyond
//! their TTL (`Cache::feed_lost`) and tells the kernel to forget what it
//! holds, but keeps serving its cached copies during an outage. When it can
//! read again it forgets every cached name and attribute and catches up.
//! A mount that could not read the feed for longer than half its retention
//! also starts clean.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;

use crate::cache::Cache;
use crate::store::{now_ns, Event, Store, FEED_RETENTION_SECS};

/// How far back a poll reads besides what the last poll covered, once a
/// second ([`WIDE_EVERY`]): an event that becomes readable later than this
/// after its time (or a writer whose clock is behind by more) is missed,
/// and the change shows only when caches expire.
pub const FEED_WINDOW: Duration = Duration::from_secs(1);

/// How far back the other polls read besides what the last one covered
/// (each row is read about twice rather than once per poll of the wide
/// window: a writing mount reads its own events too).
pub const NARROW_WINDOW: Duration = Duration::from_millis(100);

/// Every this many polls, one reads the wide window.
const WIDE_EVERY: u64 = 4;

/// After first seeing an event, it is applied again at these ages.
pub const REAPPLY: [Duration; 2] = [Duration::from_millis(300), Duration::from_secs(2)];

/// A gap without a successful poll longer than this: start clean.
const MAX_GAP_NS: i64 = FEED_RETENTION_SECS / 2 * 1_000_000_000;

/// Where invalidations go besides the local caches: the kernel's caches.
pub trait Kernel: Send + 'static {
    /// The kernel forgets a name (positive or negative entry).
    fn entry(&self, parent: u64, name: &[u8]);
    /// The kernel forgets an inode's attributes and cached pages.
    fn inode(&self, ino: u64);
}

/// A running follower; [`Feed::stop`] ends its thread (at once, or after
/// the read under way).
pub struct Feed {
    stop: crossbeam_channel::Sender<()>,
    thread: JoinHandle<()>,
}

impl Feed {
    pub fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

/// An event seen, and when it is due to be applied again.
struct Seen {
    event: Event,
    first: Instant,
    reapplied: usize,
}

/// The follower of one mount's feed.
struct Follower {
    store: Arc<Store>,
    cache: Arc<Cache>,
    kernel: Box<dyn Kernel>,
    origin: String,
    /// Start of the last successful poll (ns since the epoch).
    cursor: i64,
    /// Events of other mounts seen recently, by id.
    seen: HashMap<i64, Seen>,
    /// A poll failed since the last successful one.
    failed: bool,
    /// Polls made.
    polls: u64,
    /// Time between two polls.
    interval: Duration,
    /// Told of each inode whose locks another mount released.
    unlocked: Box<dyn Fn(u64) + Send>,
}

/// Starts following the feed every `interval`.
pub fn follow(
    store: Arc<Store>,
    cache: Arc<Cache>,
    kernel: Box<dyn Kernel>,
    origin: String,
    interval: Duration,
    unlocked: Box<dyn Fn(u64) + Send>,
) -> std::io::Result<Feed> {
    let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
    let mut f = Follower {
        store,
        cache,
        kernel,
        origin,
        cursor: now_ns(),
        seen: HashMap::new(),
        failed: false,
        polls: 0,
        interval,
        unlocked,
    };
    let thread = std::thread::Builder::new()
        .name("cassfs-feed".into())
        .spawn(move || {
            // Polls until the sender is dropped.
            loop {
                f.poll();
                if stopped.recv_timeout(interval) != Err(RecvTimeoutError::Timeout) {
                    break;
                }
            }
        })?;
    Ok(Feed { stop, thread })
}

impl Follower {
    fn poll(&mut self) {
        let started = now_ns();
        if started - self.cursor > MAX_GAP_NS {
            // Too long without the feed: its rows of the gap may be gone.
            log::info!("the change feed was not read for too long; starting clean");
            self.forget_everything();
            self.cursor = started;
        }
        self.polls += 1;
        let back = if self.polls.is_multiple_of(WIDE_EVERY) {
            FEED_WINDOW
        } else {
            NARROW_WINDOW
        };
        let from = self.cursor - back.as_nanos() as i64;
        let mut events = Vec::new();
        for bucket in Event::bucket(from)..=Event::bucket(started) {
            match self.store.read_changes(bucket, from) {
                Ok(rows) => events.extend(rows),
                Err(e) => return self.lost(&e.to_string()),
            }
        }
        if self.failed {
            log::info!("following the change feed again");
            self.forget_everything();
            self.failed = false;
        }
        let now = Instant::now();
        for e in events {
            if e.origin == self.origin || self.seen.contains_key(&e.id) {
                continue;
            }
            self.apply(&e);
            let seen = Seen {
                event: e,
                first: now,
                reapplied: 0,
            };
            self.seen.insert(seen.event.id, seen);
        }
        self.reapply(now);
        self.cursor = started;
        self.cache.feed_polled();
    }

    /// Applies events again at the ages of [`REAPPLY`]; forgets events
    /// older than the window and done.
    fn reapply(&mut self, now: Instant) {
        let mut due = Vec::new();
        for s in self.seen.values_mut() {
            let age = now.duration_since(s.first);
            if s.reapplied < REAPPLY.len() && age >= REAPPLY[s.reapplied] {
                s.reapplied += 1;
                due.push(s.event.clone());
            }
        }
        for e in &due {
            self.apply(e);
        }
        // Longer than any later poll can read it again.
        let keep = self.interval * 2 + FEED_WINDOW + REAPPLY[REAPPLY.len() - 1];
        self.seen
            .retain(|_, s| s.reapplied < REAPPLY.len() || now.duration_since(s.first) < keep);
    }

    /// The feed cannot be read: caches are no longer trusted beyond their
    /// TTL, and the kernel drops what it holds (it asks again, and this
    /// mount answers from its caches or with EIO, as in any outage).
    fn lost(&mut self, why: &str) {
        self.cache.feed_lost();
        if self.failed {
            return;
        }
        log::warn!("cannot follow the change feed ({why}); caches now expire by their TTL");
        self.failed = true;
        let (entries, inos) = self.cache.cached_metadata();
        self.tell_kernel(&entries, &inos);
    }

    /// Drops what the caches hold of an event's entries and inodes; tells
    /// the lock table of released locks.
    fn apply(&self, e: &Event) {
        e.unlocked.iter().for_each(|&ino| (self.unlocked)(ino));
        for (parent, name) in e.entries() {
            self.cache.forget_dentry(parent, name);
            self.kernel.entry(parent, name);
        }
        for &ino in &e.inos {
            // A commit whose version this mount holds already (it read
            // the inode after the commit): its copy is current.
            let version = e.versions.iter().find(|(i, _)| *i == ino).map(|(_, v)| *v);
            let current =
                version.is_some() && self.cache.stale_inode(ino).map(|i| i.version) == version;
            if !current {
                self.cache.forget_inode(ino);
            }
            self.cache.forget_listing(ino);
            self.kernel.inode(ino);
        }
    }

    /// Forgets every cached name and attribute, here and in the kernel.
    fn forget_everything(&self) {
        let (entries, inos) = self.cache.forget_metadata();
        self.tell_kernel(&entries, &inos);
    }

    fn tell_kernel(&self, entries: &[(u64, Vec<u8>)], inos: &[u64]) {
        for (parent, name) in entries {
            self.kernel.entry(*parent, name);
        }
        for &ino in inos {
            self.kernel.inode(ino);
        }
    }
}
