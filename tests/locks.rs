//! flock and fcntl locks across two mounts of one volume (two daemons =
//! two hosts), at the default flags. The lockers are child processes (a
//! small Python helper, and flock(1)) acting at the same time: a lock held
//! through mount A keeps mount B's processes out until A lets go, a waiter
//! on B is granted soon after, a dead host's locks expire, a waiter that is
//! signalled returns, and two processes on one mount still behave as the
//! kernel's own locks do.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

/// The default `-lock_lease`: the bound on how long a dead host's lock
/// stays (plus the re-check below).
const LEASE: Duration = Duration::from_secs(5);
/// How long a change may take on two slow cores (generous).
const SLOW: Duration = Duration::from_secs(20);

/// The locker. `MODE PATH KIND [START LEN]`; KIND is `flock`, `flock_sh`
/// (flock(2)), `wr`, `rd` (lockf(3): F_SETLK/F_SETLKW on START..START+LEN).
/// Modes:
///   hold     take it (waiting), print `locked TIME`, hold until stdin closes
///   try      take it without waiting: print `ok` (then release), `busy`, or
///            `errno N` for another error
///   getlk    print F_GETLK's answer for a write lock: `TYPE PID START LEN`
///   upgrade  take a read lock, print `locked`, on a stdin line try a write
///            lock without waiting and print `ok`/`busy`, hold until EOF
///   closeother  lock through one descriptor, print `locked`; on a stdin line
///            open and close a second descriptor, print `closed`; hold to EOF
///   ofd      take an OFD write lock on the range, print `locked`; on a stdin
///            line close the descriptor, print `closed`; live on until EOF
///   rw       take it (waiting), print `locked` and the file's content; on a
///            stdin line make that line the content, close, print `done`
///   count N  N times: open, take it (waiting), add 1 to the number the file
///            holds, close; then print `done`
///   loop N   take and release it N times, print the mean seconds per pair
const HELPER: &str = r#"
import errno, fcntl, os, struct, sys, time
mode, path, kind = sys.argv[1], sys.argv[2], sys.argv[3]
start = int(sys.argv[4]) if len(sys.argv) > 4 else 0
length = int(sys.argv[5]) if len(sys.argv) > 5 else 0
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
def take(fd, kind, block):
    nb = 0 if block else fcntl.LOCK_NB
    if kind == 'flock':
        fcntl.flock(fd, fcntl.LOCK_EX | nb)
    elif kind == 'flock_sh':
        fcntl.flock(fd, fcntl.LOCK_SH | nb)
    elif kind == 'wr':
        fcntl.lockf(fd, fcntl.LOCK_EX | nb, length, start)
    elif kind == 'rd':
        fcntl.lockf(fd, fcntl.LOCK_SH | nb, length, start)
def attempt(fd, kind):
    try:
        take(fd, kind, False)
        return 'ok'
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return 'busy'
        return 'errno %d' % e.errno
def say(*a):
    print(*a, flush=True)
if mode == 'hold':
    take(fd, kind, True)
    say('locked', repr(time.time()))
    sys.stdin.read()
elif mode == 'try':
    say(attempt(fd, kind))
elif mode == 'getlk':
    req = struct.pack('hhqqi4x', fcntl.F_WRLCK, 0, start, length, 0)
    t, _, s, l, pid = struct.unpack('hhqqi4x', fcntl.fcntl(fd, fcntl.F_GETLK, req))
    say(t, pid, s, l)
elif mode == 'upgrade':
    take(fd, 'rd', True)
    say('locked')
    sys.stdin.readline()
    say(attempt(fd, 'wr'))
    sys.stdin.read()
elif mode == 'closeother':
    take(fd, kind, True)
    say('locked')
    sys.stdin.readline()
    os.close(os.open(path, os.O_RDONLY))
    say('closed')
    sys.stdin.read()
elif mode == 'ofd':
    req = struct.pack('hhqqi4x', fcntl.F_WRLCK, 0, start, length, 0)
    fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, req)
    say('locked')
    sys.stdin.readline()
    os.close(fd)
    say('closed')
    sys.stdin.read()
elif mode == 'rw':
    take(fd, kind, True)
    say('locked')
    say(os.pread(fd, 4096, 0).decode())
    new = sys.stdin.readline().strip()
    os.ftruncate(fd, 0)
    os.pwrite(fd, new.encode(), 0)
    os.close(fd)
    say('done')
elif mode == 'count':
    os.close(fd)
    for _ in range(int(sys.argv[6])):
        f = os.open(path, os.O_RDWR)
        take(f, kind, True)
        v = int(os.pread(f, 64, 0).decode() or '0')
        os.ftruncate(f, 0)
        os.pwrite(f, str(v + 1).encode(), 0)
        os.close(f)
    say('done')
elif mode == 'loop':
    n = int(sys.argv[6])
    t0 = time.time()
    for _ in range(n):
        take(fd, kind, True)
        fcntl.flock(fd, fcntl.LOCK_UN) if kind.startswith('flock') else fcntl.lockf(fd, fcntl.LOCK_UN, length, start)
    say(repr((time.time() - t0) / n))
"#;

/// The helper script, written once per test process.
fn helper_path() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("cassfs-locker-")
            .tempdir()
            .expect("temp dir")
            .keep();
        let p = dir.join("locker.py");
        fs::write(&p, HELPER).expect("write the helper");
        p
    })
    .clone()
}

/// A running locker: its stdin, its output lines, killed (by pid) on drop.
struct Locker {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    what: String,
}

impl Locker {
    fn start(mode: &str, path: &Path, kind: &str, range: (u64, u64), extra: &[&str]) -> Locker {
        let mut child = Command::new("python3")
            .arg(helper_path())
            .arg(mode)
            .arg(path)
            .arg(kind)
            .arg(range.0.to_string())
            .arg(range.1.to_string())
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Locker {
            stdin: child.stdin.take(),
            child,
            lines,
            what: format!("{mode} {kind} {range:?} on {}", path.display()),
        }
    }

    /// The next line it prints, or a panic after `limit`.
    fn line(&self, limit: Duration) -> String {
        self.lines
            .recv_timeout(limit)
            .unwrap_or_else(|e| panic!("{}: no output within {limit:?} ({e})", self.what))
    }

    /// The next line, if one comes within `limit`.
    fn line_within(&self, limit: Duration) -> Option<String> {
        self.lines.recv_timeout(limit).ok()
    }

    fn send(&mut self, s: &str) {
        let w = self.stdin.as_mut().expect("stdin open");
        writeln!(w, "{s}").expect("write to the locker");
        w.flush().expect("flush the locker's stdin");
    }

    /// Closes its stdin (a holder then closes its file and exits).
    fn finish(&mut self) {
        self.stdin.take();
    }

    /// Waits up to `limit` for it to exit; true if it did.
    fn exited(&mut self, limit: Duration) -> bool {
        wait_until(limit, || matches!(self.child.try_wait(), Ok(Some(_))))
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own unreaped child.
        let r = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(r, 0, "kill {}", self.child.id());
    }
}

impl Drop for Locker {
    fn drop(&mut self) {
        self.stdin.take();
        if !self.exited(Duration::from_secs(2)) {
            let _ = self.child.kill();
            self.exited(Duration::from_secs(10));
        }
    }
}

/// Runs one non-blocking attempt: "ok" or "busy".
fn attempt(path: &Path, kind: &str, range: (u64, u64)) -> String {
    let l = Locker::start("try", path, kind, range, &[]);
    l.line(SLOW)
}

/// Two mounts of a fresh volume at the default flags, and a file both see.
fn two_hosts(name: &str) -> (Mount, Mount, PathBuf, PathBuf) {
    let (_, a, b, pa, pb) = two_hosts_of(name);
    (a, b, pa, pb)
}

/// [`two_hosts`], and their volume.
fn two_hosts_of(name: &str) -> (Volume, Mount, Mount, PathBuf, PathBuf) {
    let vol = Volume::unique("prod");
    let a = vol.mount(&[]);
    let b = vol.mount(&[]);
    let pa = a.join(name);
    fs::write(&pa, b"lock file").expect("create the lock file on A");
    let pb = b.join(name);
    assert!(
        wait_until(SLOW, || pb.exists()),
        "B never saw {}",
        pb.display()
    );
    (vol, a, b, pa, pb)
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The time a `hold` locker printed with `locked`.
fn locked_at(line: &str) -> f64 {
    let t = line
        .strip_prefix("locked ")
        .unwrap_or_else(|| panic!("{line:?}"));
    t.parse().unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

const WHOLE: (u64, u64) = (0, 0);

#[test]
fn flock_holds_across_hosts_and_hands_over() {
    let (_a, _b, pa, pb) = two_hosts("flock");
    let mut holder = Locker::start("hold", &pa, "flock", WHOLE, &[]);
    holder.line(SLOW);
    // flock(1) -n on B fails while A holds it.
    let busy = run_with_timeout(Command::new("flock").arg("-n").arg(&pb).arg("true"), SLOW);
    assert_eq!(busy.code(), Some(1), "flock -n on B: {}", busy.describe());
    assert_eq!(attempt(&pb, "flock", WHOLE), "busy");
    // A blocking flock on B waits...
    let mut waiter = Locker::start("hold", &pb, "flock", WHOLE, &[]);
    assert_eq!(
        waiter.line_within(Duration::from_secs(2)),
        None,
        "B was granted the lock A holds"
    );
    // ... and is granted soon after A releases.
    let released = now_secs();
    holder.finish();
    let granted = locked_at(&waiter.line(SLOW));
    let handoff = granted - released;
    eprintln!("flock hand-off A -> B: {handoff:.3} s");
    assert!(handoff < 5.0, "hand-off took {handoff:.3} s");
    // Now A is kept out, and after B lets go, flock -n on A succeeds.
    assert_eq!(attempt(&pa, "flock", WHOLE), "busy");
    waiter.finish();
    assert!(waiter.exited(SLOW));
    assert!(
        wait_until(SLOW, || {
            let r = run_with_timeout(Command::new("flock").arg("-n").arg(&pa).arg("true"), SLOW);
            r.success()
        }),
        "flock -n on A never succeeded after B released"
    );
}

#[test]
fn byte_ranges_conflict_only_where_they_overlap() {
    let (_a, _b, pa, pb) = two_hosts("ranges");
    let a = Locker::start("hold", &pa, "wr", (0, 100), &[]);
    a.line(SLOW);
    let b = Locker::start("hold", &pb, "wr", (100, 100), &[]);
    b.line(SLOW);
    assert_eq!(
        attempt(&pb, "wr", (50, 100)),
        "busy",
        "overlapping write locks"
    );
    assert_eq!(
        attempt(&pb, "rd", (99, 1)),
        "busy",
        "a read lock on A's range"
    );
    assert_eq!(attempt(&pa, "wr", (200, 10)), "ok", "a free range");
    // F_GETLK on B names A's lock, with pid 0 (another host).
    let g = Locker::start("getlk", &pb, "wr", (50, 10), &[]);
    let line = g.line(SLOW);
    let f: Vec<i64> = line
        .split_whitespace()
        .map(|x| x.parse().expect("number"))
        .collect();
    assert_eq!(
        f,
        vec![libc::F_WRLCK as i64, 0, 0, 100],
        "F_GETLK said {line:?}"
    );
    // flock and fcntl locks of one file conflict (as on NFS).
    assert_eq!(attempt(&pb, "flock", WHOLE), "busy", "flock against fcntl");
    drop(a);
    assert!(
        wait_until(SLOW, || attempt(&pb, "wr", (0, 100)) == "ok"),
        "A's range never became free"
    );
}

#[test]
fn processes_on_one_host_keep_posix_semantics() {
    let (_a, _b, pa, pb) = two_hosts("local");
    // Two processes on A conflict; F_GETLK names the holder's pid.
    let mut up = Locker::start("upgrade", &pa, "rd", WHOLE, &[]);
    up.line(SLOW);
    assert_eq!(attempt(&pa, "rd", WHOLE), "ok", "two readers");
    assert_eq!(
        attempt(&pa, "wr", (5, 5)),
        "busy",
        "a writer against a reader"
    );
    let g = Locker::start("getlk", &pa, "wr", (5, 5), &[]);
    let line = g.line(SLOW);
    let pid = up.child.id().to_string();
    assert_eq!(line.split_whitespace().nth(1), Some(pid.as_str()), "{line}");
    // Re-locking upgrades the process's own read lock to a write lock.
    up.send("go");
    assert_eq!(up.line(SLOW), "ok", "upgrade");
    assert_eq!(
        attempt(&pa, "rd", WHOLE),
        "busy",
        "a reader against the upgrade"
    );
    assert_eq!(attempt(&pb, "rd", WHOLE), "busy", "so on B");
    up.finish();
    assert!(up.exited(SLOW));
    assert!(wait_until(SLOW, || attempt(&pb, "wr", WHOLE) == "ok"));
    // Closing any descriptor of the file drops the process's POSIX locks.
    let mut c = Locker::start("closeother", &pa, "wr", WHOLE, &[]);
    c.line(SLOW);
    assert_eq!(attempt(&pa, "wr", WHOLE), "busy");
    c.send("go");
    assert_eq!(c.line(SLOW), "closed");
    assert_eq!(attempt(&pa, "wr", WHOLE), "ok", "the lock outlived a close");
    assert_eq!(attempt(&pb, "wr", WHOLE), "ok", "B still sees it");
}

#[test]
fn a_dead_hosts_locks_expire() {
    let (mut a, _b, pa, pb) = two_hosts("dead");
    let holder = Locker::start("hold", &pa, "flock", WHOLE, &[]);
    holder.line(SLOW);
    let waiter = Locker::start("hold", &pb, "flock", WHOLE, &[]);
    assert_eq!(waiter.line_within(Duration::from_secs(1)), None);
    let killed = now_secs();
    a.stop_with_signal(libc::SIGKILL);
    let granted = locked_at(&waiter.line(LEASE + SLOW));
    let after = granted - killed;
    eprintln!("a dead host's lock went to B {after:.3} s after the kill");
    assert!(
        after < LEASE.as_secs_f64() + 2.0 + 5.0,
        "{after:.3} s: more than the lease + 2 s (+5 s margin)"
    );
    drop(holder);
}

#[test]
fn a_signalled_waiter_returns_without_the_lock() {
    let (_a, _b, pa, pb) = two_hosts("signal");
    let holder = Locker::start("hold", &pa, "flock", WHOLE, &[]);
    holder.line(SLOW);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let mut w = Locker::start("hold", &pb, "flock", WHOLE, &[]);
        assert_eq!(w.line_within(Duration::from_secs(1)), None);
        let t = Instant::now();
        w.signal(sig);
        assert!(
            w.exited(SLOW),
            "a waiter got signal {sig} and did not return"
        );
        eprintln!("waiter ended {:?} after signal {sig}", t.elapsed());
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
    drop(holder);
    // Nobody holds it now: neither the holder nor the signalled waiters.
    assert!(
        wait_until(SLOW, || attempt(&pb, "flock", WHOLE) == "ok"),
        "the lock stayed taken after its holder and waiters went"
    );
}

#[test]
fn measure_lock_costs() {
    let (a, _b, pa, pb) = two_hosts("bench");
    let n = 200;
    let before = a.statements();
    let l = Locker::start("loop", &pa, "flock", WHOLE, &[&n.to_string()]);
    let mean: f64 = l.line(Duration::from_secs(120)).parse().expect("mean");
    let per = (a.statements() - before) as f64 / n as f64;
    eprintln!(
        "uncontended flock + unlock: {:.3} ms mean over {n}, {per:.2} CQL statements each",
        mean * 1e3
    );
    assert!(per < 4.0, "{per} statements per lock and unlock");
    let mut handoffs = Vec::new();
    for _ in 0..5 {
        let mut h = Locker::start("hold", &pa, "flock", WHOLE, &[]);
        h.line(SLOW);
        let mut w = Locker::start("hold", &pb, "flock", WHOLE, &[]);
        assert_eq!(
            w.line_within(Duration::from_millis(500)),
            None,
            "granted while held"
        );
        let released = now_secs();
        h.finish();
        handoffs.push(locked_at(&w.line(SLOW)) - released);
        w.finish();
        assert!(w.exited(SLOW) && h.exited(SLOW));
        thread::sleep(Duration::from_millis(300));
    }
    let mean_h = handoffs.iter().sum::<f64>() / handoffs.len() as f64;
    eprintln!("hand-off A -> B: mean {mean_h:.3} s, each {handoffs:.3?}");
    assert!(mean_h < 2.0, "hand-off {mean_h:.3} s");
}

#[test]
fn ofd_locks_go_with_their_open_file() {
    let (_a, _b, pa, pb) = two_hosts("ofd");
    let mut o = Locker::start("ofd", &pa, "wr", (0, 10), &[]);
    o.line(SLOW);
    assert_eq!(attempt(&pb, "wr", (5, 1)), "busy", "B against an OFD lock");
    assert_eq!(attempt(&pb, "wr", (10, 10)), "ok", "past its range");
    // The process lives on; closing the open file (RELEASE) frees it.
    o.send("go");
    assert_eq!(o.line(SLOW), "closed");
    assert!(
        wait_until(SLOW, || attempt(&pb, "wr", (5, 1)) == "ok"),
        "the OFD lock outlived its open file"
    );
}

#[test]
fn bad_lock_leases_are_one_line_errors() {
    for bad in ["2", "0", "3601", "abc", "2.5", "-3"] {
        let dir = Mount::fresh_dir();
        let r = run_cassfs(
            &[
                "--mount".as_ref(),
                dir.as_os_str(),
                "-lock_lease".as_ref(),
                bad.as_ref(),
            ],
            SLOW,
            Some(&dir),
        );
        let _ = fs::remove_dir(&dir);
        assert_eq!(r.code(), Some(2), "-lock_lease {bad}: {}", r.describe());
        let err = r.stderr.trim();
        assert_eq!(err.lines().count(), 1, "-lock_lease {bad}: {err}");
        assert!(err.contains("lock_lease"), "-lock_lease {bad}: {err}");
    }
}

#[test]
fn a_stopped_mount_releases_its_locks() {
    // A long lease on A: B gets the lock because A released it, not
    // because it expired.
    let vol = Volume::unique("prod");
    let mut a = vol.mount(&["-lock_lease", "120"]);
    let b = vol.mount(&[]);
    let pa = a.join("stop");
    fs::write(&pa, b"x").expect("create on A");
    let pb = b.join("stop");
    assert!(wait_until(SLOW, || pb.exists()), "B never saw the file");
    let holder = Locker::start("hold", &pa, "flock", WHOLE, &[]);
    holder.line(SLOW);
    let waiter = Locker::start("hold", &pb, "flock", WHOLE, &[]);
    assert_eq!(waiter.line_within(Duration::from_secs(1)), None);
    let t = Instant::now();
    // The holder keeps its file open: the daemon detaches the mount and
    // leaves after its 3 s grace.
    a.stop_with_signal(libc::SIGTERM);
    waiter.line(Duration::from_secs(30));
    eprintln!("B got the lock {:?} after SIGTERM to A", t.elapsed());
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    drop(holder);
}

#[test]
fn a_lock_holder_reads_what_the_previous_holder_wrote() {
    // PHP's session files: open, flock, read, write, close.
    let (_a, _b, pa, pb) = two_hosts("session");
    let mut la = Locker::start("rw", &pa, "flock", WHOLE, &[]);
    assert_eq!(la.line(SLOW), "locked");
    assert_eq!(la.line(SLOW), "lock file");
    // B opens it while A holds it, and waits.
    let mut lb = Locker::start("rw", &pb, "flock", WHOLE, &[]);
    assert_eq!(lb.line_within(Duration::from_secs(1)), None);
    // Another process on B reads it meanwhile: B's kernel caches it.
    assert_eq!(fs::read(&pb).expect("read on B"), b"lock file");
    la.send("written by A");
    assert_eq!(la.line(SLOW), "done");
    assert_eq!(lb.line(SLOW), "locked");
    assert_eq!(
        lb.line(SLOW),
        "written by A",
        "B read the content from before its lock"
    );
    lb.send("written by B, longer than A's");
    assert_eq!(lb.line(SLOW), "done");
    let mut again = Locker::start("rw", &pa, "flock", WHOLE, &[]);
    assert_eq!(again.line(SLOW), "locked");
    assert_eq!(again.line(SLOW), "written by B, longer than A's");
    again.send("end");
    assert_eq!(again.line(SLOW), "done");
}

#[test]
fn increments_under_locks_on_two_hosts_are_never_lost() {
    // Six processes, three per host, flock and fcntl mixed (they conflict
    // with each other here), each adding 1 to a counter file 15 times
    // under its lock: every increment must read the previous one.
    let (vol, _a, _b, pa, pb) = two_hosts_of("counter");
    fs::write(&pa, b"0").expect("reset the counter");
    assert!(wait_until(SLOW, || fs::read(&pb).ok().as_deref() == Some(&b"0"[..])));
    let n = 15;
    let count = n.to_string();
    let lockers: Vec<Locker> = [(&pa, "flock"), (&pa, "flock"), (&pa, "wr"), (&pb, "flock")]
        .into_iter()
        .chain([(&pb, "wr"), (&pb, "wr")])
        .map(|(p, kind)| Locker::start("count", p, kind, WHOLE, &[&count]))
        .collect();
    let t = Instant::now();
    for l in &lockers {
        assert_eq!(l.line(Duration::from_secs(300)), "done");
    }
    eprintln!("{} locked increments in {:?}", 6 * n, t.elapsed());
    let c = vol.mount(&[]);
    let got = fs::read_to_string(c.join("counter")).expect("read the counter");
    assert_eq!(got, (6 * n).to_string(), "increments were lost");
}

#[test]
fn a_mount_that_lost_its_lease_fails_lock_calls_with_eio() {
    use std::os::unix::fs::MetadataExt;
    let (vol, a, _b, pa, pb) = two_hosts_of("lost");
    let mut up = Locker::start("upgrade", &pa, "rd", WHOLE, &[]);
    up.line(SLOW);
    assert_eq!(attempt(&pb, "wr", WHOLE), "busy");
    // The lease is gone from Cassandra (as when A could not renew it in
    // time): A must notice and stop vouching for the lock.
    let ino = fs::metadata(&pa).expect("stat on A").ino();
    cql(&format!(
        "DELETE FROM {}.locks WHERE owner = {} AND environment = '{}' AND ino = {ino} IF EXISTS",
        vol.keyspace, vol.owner, vol.environment
    ));
    assert!(
        wait_until(SLOW, || a.output().contains("lost the locks on inode")),
        "A never logged the loss:\n{}",
        a.output()
    );
    up.send("go");
    assert_eq!(
        up.line(SLOW),
        format!("errno {}", libc::EIO),
        "a lock call on A"
    );
    assert_eq!(attempt(&pb, "wr", WHOLE), "ok", "B may take it");
    // Once A's process let go, locks work on A again.
    up.finish();
    assert!(up.exited(SLOW));
    assert!(wait_until(SLOW, || attempt(&pa, "wr", WHOLE) == "ok"));
}
