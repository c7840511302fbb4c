//! A mount's session: its row in `sessions` (host, pid, mount point,
//! version, start time, heartbeat), renewed by a heartbeat thread and
//! removed at a clean unmount, and the inodes it holds (`holds`: unlinked
//! while open here, so `cassfs gc` must not delete them). The rows carry a
//! TTL that each heartbeat renews: those of a mount that died expire, and
//! with them its holds.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};
use log::warn;
use parking_lot::Mutex;

use crate::store::{now_ns, SessionInfo, Store};

/// Time between two heartbeats.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// Seconds a session's rows live without a heartbeat.
pub const SESSION_TTL: i32 = 60;

pub struct Session {
    store: Arc<Store>,
    info: Mutex<SessionInfo>,
    held: Mutex<HashSet<u64>>,
}

impl Session {
    pub fn new(store: Arc<Store>, id: &str, mountpoint: &str) -> Session {
        let now = now_ns();
        let host = hostname();
        Session {
            store,
            info: Mutex::new(SessionInfo {
                id: id.to_string(),
                host,
                pid: std::process::id() as i32,
                mountpoint: mountpoint.to_string(),
                version: crate::version::VERSION.to_string(),
                started_ns: now,
                heartbeat_ns: now,
            }),
            held: Mutex::new(HashSet::new()),
        }
    }

    pub fn id(&self) -> String {
        self.info.lock().id.clone()
    }

    /// Writes the session's rows again with a fresh heartbeat.
    pub fn renew(&self) -> crate::store::Result<()> {
        let info = {
            let mut i = self.info.lock();
            i.heartbeat_ns = now_ns();
            i.clone()
        };
        let held: Vec<u64> = self.held.lock().iter().copied().collect();
        self.store.renew_session(&info, &held, SESSION_TTL)?;
        crate::metrics::heartbeat_done();
        Ok(())
    }

    /// Keeps `ino` from `cassfs gc` while this session lives (an inode
    /// unlinked while open here). Best effort: a failure is logged, and gc
    /// still spares inodes changed within its grace period.
    pub fn hold(&self, ino: u64) {
        self.held.lock().insert(ino);
        if let Err(e) = self.store.hold(&self.id(), ino, SESSION_TTL) {
            warn!("cannot record that inode {ino} is held open: {e}");
        }
    }

    /// Drops the hold on `ino` (it was deleted at its last close).
    pub fn unhold(&self, ino: u64) {
        if !self.held.lock().remove(&ino) {
            return;
        }
        if let Err(e) = self.store.unhold(&self.id(), ino) {
            log::debug!("cannot drop the hold on inode {ino} (it expires): {e}");
        }
    }

    /// Starts the heartbeat: the session row is written now (an error if
    /// Cassandra refuses it), then renewed every [`HEARTBEAT`].
    pub fn start(self: &Arc<Self>) -> Result<Heartbeat, String> {
        self.renew()
            .map_err(|e| format!("cannot register the session: {e}"))?;
        let (stop_tx, stop_rx) = bounded::<()>(1);
        let me = self.clone();
        let thread = std::thread::Builder::new()
            .name("cassfs-session".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stop_rx.recv_timeout(HEARTBEAT)
                {
                    if let Err(e) = me.renew() {
                        warn!("session heartbeat failed: {e}");
                    }
                }
            })
            .map_err(|e| format!("cannot start the session thread: {e}"))?;
        Ok(Heartbeat {
            session: self.clone(),
            stop: stop_tx,
            thread: Some(thread),
        })
    }
}

/// The running heartbeat; [`Heartbeat::end`] stops it and removes the
/// session's row.
pub struct Heartbeat {
    session: Arc<Session>,
    stop: Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    pub fn end(mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let s = &self.session;
        if let Err(e) = s.store.end_session(&s.id()) {
            warn!("cannot remove the session's row (it expires in {SESSION_TTL} s): {e}");
        }
    }
}

/// This host's name (empty if unknown).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
