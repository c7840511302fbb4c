//! flock(2) and fcntl(2)/lockf(3) locks that hold across every mount of a
//! volume. This module owns the lock table in memory (per inode: what this
//! mount holds, what Cassandra last said every mount holds, the requests
//! parked until a lock is free, which handles took locks), the conditional
//! writes that change it (`store/locks.rs`), the lease that keeps this
//! mount's locks alive, and the thread that renews leases, retries parked
//! requests and answers EINTR to a waiter with a signal pending.
//!
//! Holders are (mount, lock owner): the kernel's owner ids are unique only
//! within one connection. Every lock is a POSIX byte range of an owner
//! (`ranges.rs`); flock arrives as a whole-file lock whose owner is the open
//! file (fuser does not pass `FUSE_LK_FLOCK` on), so flock and fcntl locks
//! of one file conflict, as on NFS.
//!
//! A request is granted by one conditional write of this mount's element
//! made on the map its conflict check read (`IF holders = ...`); a changed
//! map comes back with the refusal and the check runs again. A conflict
//! with a lock of this mount costs nothing; one with another mount's lock
//! is checked against a fresh SERIAL read first. A SETLKW that conflicts
//! is parked here (no worker waits) and tried again when this mount
//! releases a lock on the inode, when another mount's release arrives
//! through the change feed, and every [`RECHECK`] (missed events, expired
//! leases). Inodes never locked through this mount cost nothing: nothing
//! here is looked up on open, read, write or close of them.

mod ranges;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;

use crate::error::{FsError, FsResult};
use crate::store::{LockCells, Store, StoreError, Swap};

pub use ranges::{Lock, OFFSET_MAX};

/// Parked requests are tried again at least this often.
pub const RECHECK: Duration = Duration::from_secs(1);
/// Parked requests' callers are checked for pending signals this often.
const SIGNAL_CHECK: Duration = Duration::from_millis(150);
/// Conditional writes one request makes at most before it counts as a
/// conflict (other mounts keep changing the inode's locks).
const MAX_TRIES: usize = 16;

/// How a lock request is answered (the adapter's reply).
pub type Answer = Box<dyn FnOnce(FsResult<()>) + Send>;

/// What a grant does to the content this mount has open: the previous
/// holder may have committed on another host, and the new one must read
/// that (as NFS revalidates at a lock).
pub trait Refresh: Send + Sync {
    /// Brings the open handles of `ino` to its latest commit; true if the
    /// content changed.
    fn content(&self, ino: u64) -> bool;
    /// Drops the kernel's pages and attributes of `ino`. Never from a
    /// worker: the kernel may wait for a read queued behind it.
    fn pages(&self, ino: u64);
}

/// What the lock thread is told.
enum Note {
    /// Another mount released locks on this inode.
    Released(u64),
    /// A grant made on a worker whose content changed: drop the kernel's
    /// pages, then answer.
    Granted(u64, Answer),
    Stop,
}

/// A lock request as the kernel sends it.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    pub ino: u64,
    pub fh: u64,
    pub owner: u64,
    pub start: u64,
    pub end: u64,
    /// F_RDLCK, F_WRLCK or F_UNLCK.
    pub typ: i32,
    /// The lock's pid (the process).
    pub pid: u32,
    /// The calling thread (whose signals end a wait).
    pub tid: u32,
}

impl Request {
    fn lock(&self) -> FsResult<Lock> {
        let write = match self.typ {
            libc::F_RDLCK => false,
            libc::F_WRLCK => true,
            _ => return Err(FsError::Invalid),
        };
        if self.start > self.end {
            return Err(FsError::Invalid);
        }
        Ok(Lock {
            owner: self.owner,
            start: self.start,
            end: self.end.min(OFFSET_MAX),
            write,
            pid: self.pid,
        })
    }
}

/// A SETLKW waiting for its lock.
struct Waiter {
    want: Lock,
    fh: u64,
    tid: u32,
    answer: Answer,
}

/// The locks of one inode as this mount knows them.
#[derive(Default)]
struct InodeLocks {
    /// `holders` as last read or written.
    known: LockCells,
    /// This mount's locks (its element of `holders`).
    mine: Vec<Lock>,
    /// When this mount's element was last written (start of the write).
    written: Option<Instant>,
    /// The lease of this mount's element could not be renewed: its locks
    /// may be another mount's now.
    lost: bool,
    waiters: VecDeque<Waiter>,
    /// Lock owners that took locks through each handle.
    through: HashMap<u64, HashSet<u64>>,
}

impl InodeLocks {
    fn idle(&self, lease: Duration) -> bool {
        self.mine.is_empty()
            && self.waiters.is_empty()
            && self.through.is_empty()
            && self.written.is_none_or(|w| w.elapsed() > lease)
    }

    fn holders(&self) -> Vec<(&str, Vec<Lock>)> {
        self.known
            .iter()
            .map(|(m, v)| (m.as_str(), ranges::decode(v)))
            .collect()
    }
}

/// What trying a lock came to.
enum Outcome {
    Granted,
    /// Held by another, or too contended to tell.
    Conflict,
}

/// The lock table of one mount.
pub struct Locks {
    store: Arc<Store>,
    /// This mount's session id: its element's key.
    mount: String,
    lease: Duration,
    inodes: Mutex<HashMap<u64, Arc<Mutex<InodeLocks>>>>,
    wake: Sender<Note>,
    woken: Mutex<Option<Receiver<Note>>>,
    thread: OnceLock<Mutex<Option<JoinHandle<()>>>>,
    refresh: OnceLock<Box<dyn Refresh>>,
}

impl Locks {
    pub fn new(store: Arc<Store>, mount: &str, lease: Duration) -> Locks {
        let (wake, woken) = unbounded();
        Locks {
            store,
            mount: mount.to_string(),
            lease,
            inodes: Mutex::new(HashMap::new()),
            wake,
            woken: Mutex::new(Some(woken)),
            thread: OnceLock::new(),
            refresh: OnceLock::new(),
        }
    }

    /// Sets what a grant does to open content (once, when mounted).
    pub fn refresh_with(&self, r: Box<dyn Refresh>) {
        let _ = self.refresh.set(r);
    }

    /// Answers a granted request, after bringing open content up to date
    /// when another mount locked the inode within the lease (its element,
    /// empty once released, is still there): its holder may have committed
    /// a moment ago. On a worker, a change goes through the lock thread.
    fn grant(&self, ino: u64, st: &InodeLocks, answer: Answer, on_worker: bool) {
        let others = st.known.keys().any(|m| *m != self.mount);
        let Some(r) = self.refresh.get().filter(|_| others) else {
            return answer(Ok(()));
        };
        if !r.content(ino) {
            return answer(Ok(()));
        }
        let threaded = self.thread.get().is_some_and(|t| t.lock().is_some());
        if on_worker && !threaded {
            answer(Ok(()));
        } else if on_worker {
            if let Err(e) = self.wake.send(Note::Granted(ino, answer)) {
                if let Note::Granted(_, answer) = e.into_inner() {
                    answer(Ok(()));
                }
            }
        } else {
            r.pages(ino);
            answer(Ok(()));
        }
    }

    /// Whether this mount holds or held locks on `ino` lately (closes of
    /// it must then be seen: FLUSH drops POSIX locks).
    pub fn used(&self, ino: u64) -> bool {
        self.inodes.lock().contains_key(&ino)
    }

    /// Another mount released locks on `ino`: parked requests on it are
    /// tried again (on the lock thread).
    pub fn wake(&self, ino: u64) {
        let _ = self.wake.send(Note::Released(ino));
    }

    fn entry(&self, ino: u64) -> Arc<Mutex<InodeLocks>> {
        self.inodes.lock().entry(ino).or_default().clone()
    }

    fn existing(&self, ino: u64) -> Option<Arc<Mutex<InodeLocks>>> {
        self.inodes.lock().get(&ino).cloned()
    }

    fn ttl(&self) -> i32 {
        self.lease.as_secs().max(1) as i32
    }

    /// How long after its write this mount's element surely lives: TTLs
    /// count whole seconds from the coordinator's, so up to one less.
    fn sure(&self) -> Duration {
        self.lease.saturating_sub(Duration::from_secs(1))
    }

    /// F_GETLK: the lock that would conflict with `r`, if any (pid 0 for
    /// a holder on another mount).
    pub fn getlk(self: &Arc<Self>, r: &Request) -> FsResult<Option<Lock>> {
        let want = r.lock()?;
        self.start_thread();
        let e = self.entry(r.ino);
        let mut st = e.lock();
        self.check_lease(r.ino, &mut st)?;
        let local = ranges::conflict(st.holders(), &self.mount, &want);
        let found = match local {
            Some((m, l)) if m == self.mount => Some((m, l)),
            _ => {
                st.known = self.store.lock_cells(r.ino)?;
                ranges::conflict(st.holders(), &self.mount, &want)
            }
        };
        Ok(found.map(|(m, l)| Lock {
            pid: if m == self.mount { l.pid } else { 0 },
            ..l
        }))
    }

    /// F_SETLK / F_SETLKW (`sleep`) and flock: answers at once, or parks
    /// the request until the lock is granted or its caller is signalled.
    pub fn setlk(self: &Arc<Self>, r: Request, sleep: bool, answer: Answer) {
        if r.typ == libc::F_UNLCK {
            return answer(self.release_owners(r.ino, &[r.owner], Some((r.start, r.end))));
        }
        let want = match r.lock() {
            Ok(w) => w,
            Err(e) => return answer(Err(e)),
        };
        self.start_thread();
        let e = self.entry(r.ino);
        let mut st = e.lock();
        if let Err(err) = self.check_lease(r.ino, &mut st) {
            return answer(Err(err));
        }
        let mut fresh = false;
        match self.acquire(r.ino, &mut st, &want, &mut fresh) {
            Ok(Outcome::Granted) => {
                st.through.entry(r.fh).or_default().insert(r.owner);
                self.grant(r.ino, &st, answer, true);
                // A downgrade may let others in.
                self.try_waiters(r.ino, &mut st, false, true);
            }
            Ok(Outcome::Conflict) if sleep => st.waiters.push_back(Waiter {
                want,
                fh: r.fh,
                tid: r.tid,
                answer,
            }),
            Ok(Outcome::Conflict) => answer(Err(FsError::WouldBlock)),
            Err(err) => answer(Err(err)),
        }
    }

    /// FLUSH (a close by `owner`'s process): its POSIX locks on `ino` go.
    pub fn flush(&self, ino: u64, owner: u64) -> FsResult<()> {
        if !self.used(ino) {
            return Ok(());
        }
        self.release_owners(ino, &[owner], None)
    }

    /// RELEASE of handle `fh`: the flock owner's locks go, and those of
    /// every owner that locked through the handle (OFD locks; POSIX locks
    /// whose close sent no FLUSH).
    pub fn release(&self, ino: u64, fh: u64, flock_owner: Option<u64>) -> FsResult<()> {
        let Some(e) = self.existing(ino) else {
            return Ok(());
        };
        let mut owners: Vec<u64> = {
            let mut st = e.lock();
            st.through.remove(&fh).into_iter().flatten().collect()
        };
        owners.extend(flock_owner);
        if owners.is_empty() {
            return Ok(());
        }
        self.release_owners(ino, &owners, None)
    }

    /// Releases `owners`' locks on `range` (all of them: `None`) and lets
    /// the waiters here and on other mounts try again.
    fn release_owners(&self, ino: u64, owners: &[u64], range: Option<(u64, u64)>) -> FsResult<()> {
        let Some(e) = self.existing(ino) else {
            return Ok(());
        };
        let mut st = e.lock();
        let mut next = st.mine.clone();
        let mut changed = false;
        for &o in owners {
            changed |= match range {
                Some((s, end)) => ranges::unlock(&mut next, o, s, end.min(OFFSET_MAX)),
                None => ranges::drop_owner(&mut next, o),
            };
        }
        if !changed {
            return Ok(());
        }
        if st.lost {
            // Nothing is written for a lost element: it expires.
            st.mine = next;
            st.lost = !st.mine.is_empty();
            return Ok(());
        }
        let res = self.write_mine(ino, &mut st, next.clone(), None);
        if let Err(err) = res {
            // The element keeps the released locks until it expires;
            // renewing it must not look like holding them.
            st.mine = next;
            st.lost = !st.mine.is_empty();
            return Err(err);
        }
        if let Err(err) = self.store.locks_released(&self.mount, vec![ino]) {
            log::debug!("cannot announce the release of locks on inode {ino}: {err}");
        }
        self.try_waiters(ino, &mut st, false, true);
        Ok(())
    }

    /// Fails with EIO if this mount's element of `ino` may have expired.
    fn check_lease(&self, ino: u64, st: &mut InodeLocks) -> FsResult<()> {
        let expired = !st.mine.is_empty() && st.written.is_some_and(|w| w.elapsed() > self.sure());
        if expired && !st.lost {
            self.lose(ino, st, "its lease was not renewed in time");
        }
        if st.lost {
            return Err(FsError::LockLost);
        }
        Ok(())
    }

    fn lose(&self, ino: u64, st: &mut InodeLocks, why: &str) {
        if !st.lost {
            log::warn!(
                "lost the locks on inode {ino} ({why}); lock calls on it fail with EIO \
                 until its holders release them"
            );
        }
        st.lost = true;
    }

    /// Tries to take `want`: granted, or the lock in the way.
    fn acquire(
        &self,
        ino: u64,
        st: &mut InodeLocks,
        want: &Lock,
        fresh: &mut bool,
    ) -> FsResult<Outcome> {
        loop {
            match ranges::conflict(st.holders(), &self.mount, want) {
                Some((m, _)) if m != self.mount && !*fresh => {
                    st.known = self.store.lock_cells(ino)?;
                    *fresh = true;
                }
                Some(_) => return Ok(Outcome::Conflict),
                None => {
                    let mut next = st.mine.clone();
                    ranges::lock(&mut next, *want);
                    return match self.write_mine(ino, st, next, Some(want)) {
                        Ok(true) => Ok(Outcome::Granted),
                        Ok(false) => Ok(Outcome::Conflict),
                        Err(e) => Err(e),
                    };
                }
            }
        }
    }

    /// Makes this mount's element `next` by conditional writes on the map
    /// last seen. With `want`, stops (false) once another holder's lock
    /// conflicts with it; true when written.
    fn write_mine(
        &self,
        ino: u64,
        st: &mut InodeLocks,
        next: Vec<Lock>,
        want: Option<&Lock>,
    ) -> FsResult<bool> {
        let value = ranges::encode(&next);
        for _ in 0..MAX_TRIES {
            if let Some(w) = want {
                if ranges::conflict(st.holders(), &self.mount, w).is_some() {
                    return Ok(false);
                }
            }
            let started = Instant::now();
            let swap =
                self.store
                    .swap_lock_cell(ino, &self.mount, &value, self.ttl(), &st.known)?;
            let cells = match swap {
                Swap::Applied => None,
                Swap::Current(c) if c.get(&self.mount) == Some(&value) => Some(c),
                Swap::Current(c) => {
                    let had = ranges::encode(&st.mine);
                    if !st.mine.is_empty() && c.get(&self.mount) != Some(&had) {
                        self.lose(ino, st, "its element expired in Cassandra");
                        st.known = c;
                        return Err(FsError::LockLost);
                    }
                    st.known = c;
                    continue;
                }
            };
            // Written (or found written after an error).
            let mut known = cells.unwrap_or_else(|| st.known.clone());
            known.insert(self.mount.clone(), value);
            st.known = known;
            st.mine = next;
            st.written = Some(started);
            return Ok(true);
        }
        match want {
            Some(_) => Ok(false),
            None => Err(FsError::Store(StoreError::Request(format!(
                "the locks of inode {ino} change too often to update them"
            )))),
        }
    }

    /// Tries the parked requests of `ino` in order, answering those granted
    /// (`on_worker`: from a worker).
    fn try_waiters(&self, ino: u64, st: &mut InodeLocks, mut fresh: bool, on_worker: bool) {
        let mut i = 0;
        while i < st.waiters.len() && !st.lost {
            let want = st.waiters[i].want;
            match self.acquire(ino, st, &want, &mut fresh) {
                Ok(Outcome::Granted) => {
                    if let Some(w) = st.waiters.remove(i) {
                        st.through.entry(w.fh).or_default().insert(w.want.owner);
                        self.grant(ino, st, w.answer, on_worker);
                    }
                }
                Ok(Outcome::Conflict) => i += 1,
                Err(e) => {
                    // Never an error for a parked request: it waits on.
                    log::debug!("retrying a lock wait on inode {ino}: {e}");
                    i += 1;
                }
            }
        }
    }

    /// Releases every lock of this mount (unmount), best effort; parked
    /// requests are dropped (answered EIO).
    pub fn release_all(&self) {
        let all: Vec<(u64, Arc<Mutex<InodeLocks>>)> = self.inodes.lock().drain().collect();
        for (ino, e) in all {
            let mut st = e.lock();
            st.waiters.clear();
            if st.mine.is_empty() || st.lost {
                continue;
            }
            match self.write_mine(ino, &mut st, Vec::new(), None) {
                Ok(_) => {
                    let _ = self.store.locks_released(&self.mount, vec![ino]);
                }
                Err(e) => log::warn!("cannot release the locks on inode {ino} (they expire): {e}"),
            }
        }
        if let Some(t) = self.thread.get().and_then(|t| t.lock().take()) {
            let _ = self.wake.send(Note::Stop);
            let _ = t.join();
        }
    }

    /// Starts the lock thread on first use.
    fn start_thread(self: &Arc<Self>) {
        self.thread.get_or_init(|| {
            let Some(rx) = self.woken.lock().take() else {
                return Mutex::new(None);
            };
            let me = Arc::downgrade(self);
            let t = std::thread::Builder::new()
                .name("cassfs-locks".into())
                .spawn(move || run(me, rx));
            match t {
                Ok(t) => Mutex::new(Some(t)),
                Err(e) => {
                    log::error!(
                        "cannot start the lock thread: {e}; lock waits end at a release here"
                    );
                    Mutex::new(None)
                }
            }
        });
    }

    /// Renews this mount's elements due for it; marks lost those that
    /// cannot be.
    fn renew(&self) {
        for (ino, e) in self.snapshot() {
            let mut st = e.lock();
            let due = st.written.is_none_or(|w| w.elapsed() >= self.lease / 4);
            if st.mine.is_empty() || st.lost || !due {
                continue;
            }
            let value = ranges::encode(&st.mine);
            let started = Instant::now();
            match self
                .store
                .renew_lock_cell(ino, &self.mount, &value, self.ttl())
            {
                Ok(true) => st.written = Some(started),
                Ok(false) => self.lose(ino, &mut st, "its element expired in Cassandra"),
                Err(err) => {
                    if st.written.is_none_or(|w| w.elapsed() > self.sure()) {
                        self.lose(ino, &mut st, &format!("cannot renew its lease: {err}"));
                    } else {
                        log::warn!("cannot renew the lease of the locks on inode {ino}: {err}");
                    }
                }
            }
        }
    }

    fn snapshot(&self) -> Vec<(u64, Arc<Mutex<InodeLocks>>)> {
        self.inodes
            .lock()
            .iter()
            .map(|(i, e)| (*i, e.clone()))
            .collect()
    }

    /// Tries the parked requests of `ino` again with a fresh read.
    fn retry(&self, ino: u64) {
        if let Some(e) = self.existing(ino) {
            let mut st = e.lock();
            if !st.waiters.is_empty() {
                self.try_waiters(ino, &mut st, false, false);
            }
        }
    }

    /// Answers EINTR to parked requests whose caller has a signal pending.
    fn interrupt_signalled(&self) {
        for (_, e) in self.snapshot() {
            let mut st = e.lock();
            let mut i = 0;
            while i < st.waiters.len() {
                if signal_pending(st.waiters[i].tid) {
                    if let Some(w) = st.waiters.remove(i) {
                        (w.answer)(Err(FsError::Interrupted));
                    }
                } else {
                    i += 1;
                }
            }
        }
    }

    /// Forgets inodes this mount no longer locks.
    fn forget_idle(&self) {
        let lease = self.lease;
        self.inodes.lock().retain(|_, e| match e.try_lock() {
            Some(st) => !st.idle(lease),
            None => true,
        });
    }
}

/// The lock thread: retries parked requests when woken (a release seen in
/// the change feed) and every [`RECHECK`], checks their callers' signals,
/// renews leases. Ends when the table is dropped or released.
fn run(locks: Weak<Locks>, woken: Receiver<Note>) {
    let mut last_recheck = Instant::now();
    loop {
        let got = match woken.recv_timeout(SIGNAL_CHECK) {
            Ok(note) => Some(note),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let Some(l) = locks.upgrade() else { return };
        let mut inos = HashSet::new();
        for note in got.into_iter().chain(woken.try_iter()) {
            match note {
                Note::Stop => return,
                Note::Released(ino) => {
                    inos.insert(ino);
                }
                Note::Granted(ino, answer) => {
                    if let Some(r) = l.refresh.get() {
                        r.pages(ino);
                    }
                    answer(Ok(()));
                }
            }
        }
        inos.iter().for_each(|&i| l.retry(i));
        l.interrupt_signalled();
        if last_recheck.elapsed() >= RECHECK.min(l.lease / 4) {
            last_recheck = Instant::now();
            l.renew();
            for (ino, _) in l.snapshot() {
                l.retry(ino);
            }
            l.forget_idle();
        }
    }
}

/// Whether thread `tid` has a signal pending that it neither blocks nor
/// ignores (or is gone): its wait must end so that the kernel can deliver
/// it (the kernel restarts the call if the handler asks for it).
fn signal_pending(tid: u32) -> bool {
    if tid == 0 {
        return false;
    }
    let Ok(s) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        return true;
    };
    let mask = |key: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    let pending = mask("SigPnd:") | mask("ShdPnd:");
    pending & !(mask("SigBlk:") | mask("SigIgn:")) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_without_signals_has_none_pending() {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        assert!(!signal_pending(tid));
        assert!(signal_pending(u32::MAX - 1), "a thread that is gone");
    }
}
