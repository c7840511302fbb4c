//! The fixed pool of worker threads that do all storage work.
//!
//! The FUSE adapter packages each request with its reply into a [`Job`] and
//! submits it under a routing key (the inode it is about). Each worker owns
//! one channel, and a key always goes to the same worker, so requests on one
//! inode run in the order the kernel sent them.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{unbounded, Sender};
use log::{error, warn};

use crate::ops::Fs;

/// A packaged request: runs on a worker and answers its own reply.
pub type Job = Box<dyn FnOnce(&Fs) + Send>;

pub struct Pool {
    fs: Arc<Fs>,
    senders: Vec<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    /// Starts `n` workers (at least one) serving `fs`.
    pub fn new(fs: Arc<Fs>, n: usize) -> std::io::Result<Pool> {
        let mut senders = Vec::new();
        let mut threads = Vec::new();
        let served = fs.clone();
        for id in 0..n.max(1) {
            let (tx, rx) = unbounded::<Job>();
            let fs = fs.clone();
            let t = std::thread::Builder::new()
                .name(format!("cassfs-worker-{id}"))
                .spawn(move || {
                    for job in rx {
                        // A panicking job drops its reply, which answers EIO.
                        let run = std::panic::AssertUnwindSafe(|| job(&fs));
                        if std::panic::catch_unwind(run).is_err() {
                            error!("worker {id}: a request panicked; it was answered EIO");
                        }
                    }
                })?;
            senders.push(tx);
            threads.push(t);
        }
        Ok(Pool {
            fs: served,
            senders,
            threads,
        })
    }

    /// The filesystem the workers serve, for the few requests the adapter
    /// answers in its own thread (memory only, never blocking).
    pub fn fs(&self) -> &Fs {
        &self.fs
    }

    /// Queues a job on the worker that owns `key`.
    pub fn submit(&self, key: u64, job: Job) {
        let i = (key % self.senders.len() as u64) as usize;
        if self.senders[i].send(job).is_err() {
            warn!("worker {i} is gone; request dropped (answered EIO)");
        }
    }

    /// Lets the workers finish what is queued, then joins them.
    pub fn shutdown(self) {
        drop(self.senders);
        for t in self.threads {
            if t.join().is_err() {
                error!("a worker thread panicked while shutting down");
            }
        }
    }
}
