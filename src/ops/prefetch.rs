//! Read-ahead in the background: a sequential reader asks for the blocks
//! after the ones it reads, and a thread of its own fetches them into the
//! block cache while the reader goes on with what is cached.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Sender};
use log::debug;
use parking_lot::{Condvar, Mutex};

use crate::cache::Cache;
use crate::store::{Hash, Store};

/// Blocks being fetched, and a signal when some arrive.
#[derive(Default)]
struct InFlight {
    hashes: Mutex<HashSet<Hash>>,
    arrived: Condvar,
}

#[derive(Clone)]
pub(super) struct Prefetcher {
    tx: Sender<Vec<Hash>>,
    inflight: Arc<InFlight>,
}

impl Prefetcher {
    pub(super) fn start(store: Arc<Store>, cache: Arc<Cache>) -> std::io::Result<Prefetcher> {
        let (tx, rx) = unbounded::<Vec<Hash>>();
        let inflight = Arc::new(InFlight::default());
        let shared = inflight.clone();
        std::thread::Builder::new()
            .name("cassfs-prefetch".into())
            .spawn(move || {
                for hashes in rx {
                    if let Err(e) = store.get_blocks(&hashes).map(|blocks| {
                        for (h, d) in hashes.iter().zip(blocks) {
                            cache.put_block(*h, d);
                        }
                    }) {
                        debug!("read-ahead failed: {e}");
                    }
                    let mut set = shared.hashes.lock();
                    for h in &hashes {
                        set.remove(h);
                    }
                    shared.arrived.notify_all();
                }
            })?;
        Ok(Prefetcher { tx, inflight })
    }

    /// Queues the blocks not already on their way.
    pub(super) fn request(&self, hashes: Vec<Hash>) {
        let mut set = self.inflight.hashes.lock();
        let new: Vec<Hash> = hashes.into_iter().filter(|h| set.insert(*h)).collect();
        drop(set);
        if !new.is_empty() && self.tx.send(new).is_err() {
            debug!("read-ahead thread is gone");
        }
    }

    /// Waits (at most `limit`) until none of `hashes` is being fetched.
    pub(super) fn wait(&self, hashes: &[Hash], limit: Duration) {
        let deadline = Instant::now() + limit;
        let mut set = self.inflight.hashes.lock();
        while hashes.iter().any(|h| set.contains(h)) {
            if self
                .inflight
                .arrived
                .wait_until(&mut set, deadline)
                .timed_out()
            {
                return;
            }
        }
    }
}
