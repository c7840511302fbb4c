//! A real three-node Cassandra cluster (`scripts/cassandra --nodes 3`, CQL on
//! 127.0.0.1..3:9043) under mounted volumes of a replication factor 3
//! keyspace, at the default consistency (LOCAL_QUORUM, LOCAL_SERIAL):
//!
//! - a node killed (SIGKILL) in the middle of a workload, the mounts' only
//!   contact point included: no call fails, none takes much longer than the
//!   request timeout, everything written reads back from a fresh mount, and
//!   the node coming back is picked up without a remount;
//! - another node killed while two mounts race to create the same names
//!   (`mkdir`, `O_CREAT|O_EXCL`): each name is created exactly once and every
//!   new inode number is distinct;
//! - every node down: calls fail with EIO within the timeout, the daemon
//!   stays up, and the same mount works again once the nodes are back.
//!
//! The cluster is started once per test binary; the tests run one at a time
//! (they kill nodes), and the last of them stops the cluster
//! (`CASSFS_KEEP_CLUSTER=1` keeps it running). The single development node
//! on 127.0.0.1:9042 is not touched.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::IntoRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Contact points of the cluster nodes.
const NODE1: &str = "127.0.0.1:9043";
const NODE2: &str = "127.0.0.2:9043";
const NODE3: &str = "127.0.0.3:9043";
/// The daemon's default request timeout (`-timeout`), in seconds.
const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// The longest any call may take while a node dies: the request timeout
/// plus a margin for the kernel, the daemon and a loaded machine.
const CALL_LIMIT: Duration = Duration::from_secs(DEFAULT_TIMEOUT_SECS + 10);
/// The number of tests in this binary: the last one to finish stops the
/// cluster.
const TESTS: usize = 3;

// ---------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------

/// Serializes the tests of this binary (they kill and start nodes).
static SERIAL: Mutex<()> = Mutex::new(());
/// The RF 3 keyspace, created once the cluster is up.
static KEYSPACE: OnceLock<String> = OnceLock::new();
/// Tests finished so far.
static FINISHED: AtomicUsize = AtomicUsize::new(0);

/// `scripts/cassandra --nodes 3 ARGS` with a deadline.
fn script(args: &[&str], limit_secs: u64) -> RunResult {
    let mut all = vec!["--nodes", "3"];
    all.extend_from_slice(args);
    cassandra_script(&all, Duration::from_secs(limit_secs))
}

/// Like [`script`], panicking on failure; returns how long it took.
fn must(args: &[&str], limit_secs: u64) -> Duration {
    let r = script(args, limit_secs);
    assert!(
        r.success(),
        "scripts/cassandra --nodes 3 {args:?}: {}",
        r.describe()
    );
    eprintln!("cluster: {args:?} took {:.1?}", r.elapsed);
    r.elapsed
}

fn kill_node(i: u32) -> Duration {
    must(&["kill", &i.to_string()], 120)
}

fn start_node(i: u32) -> Duration {
    must(&["start", &i.to_string()], 300)
}

/// Starts every node that is not up (the whole cluster the first time).
fn ensure_cluster_up() {
    if script(&["status"], 60).success() {
        return;
    }
    must(&["--dcs", "1", "start"], 420);
}

/// The cluster for one test: holds the serial lock; the last test to drop
/// it stops the cluster.
struct Cluster {
    keyspace: String,
    _serial: MutexGuard<'static, ()>,
}

fn cluster() -> Cluster {
    let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // A previous test may have failed with nodes down.
    ensure_cluster_up();
    let keyspace = KEYSPACE
        .get_or_init(|| {
            let ks = unique_keyspace_name("cluster");
            let servers = [NODE1, NODE2, NODE3].join(",");
            let r = run_with_timeout(
                std::process::Command::new(BIN).args([
                    "schema",
                    "--server",
                    &servers,
                    "--keyspace",
                    &ks,
                    "--replication-factor",
                    "3",
                ]),
                SCHEMA_TIMEOUT,
            );
            assert!(r.success(), "cassfs schema {ks}: {}", r.describe());
            ks
        })
        .clone();
    Cluster {
        keyspace,
        _serial: serial,
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if thread::panicking() {
            // Leave no node down for the next test.
            ensure_cluster_up();
        }
        let done = FINISHED.fetch_add(1, Ordering::SeqCst) + 1;
        if done == TESTS && std::env::var_os("CASSFS_KEEP_CLUSTER").is_none() {
            let r = script(&["stop"], 180);
            eprintln!(
                "cluster: stopped after the last test ({})",
                if r.success() { "ok" } else { "failed" }
            );
        }
    }
}

impl Cluster {
    /// Mounts volume (keyspace, `owner`, "prod") with the given contact
    /// points and extra flags (otherwise the defaults).
    fn mount(&self, owner: i64, servers: &[&str], extra: &[&str]) -> Mount {
        let mut args: Vec<String> = vec![
            "--server".into(),
            servers.join(","),
            "--keyspace".into(),
            self.keyspace.clone(),
            "--owner".into(),
            owner.to_string(),
            "--environment".into(),
            "prod".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Mount::new(&args)
    }
}

// ---------------------------------------------------------------------------
// Timed calls
// ---------------------------------------------------------------------------

/// One call of a workload: what, when (since the test's start), how long,
/// and its error if it failed.
#[derive(Clone, Debug)]
struct Call {
    op: &'static str,
    path: PathBuf,
    at: Duration,
    took: Duration,
    err: Option<String>,
}

/// The calls of one worker.
struct Log {
    t0: Instant,
    calls: Vec<Call>,
}

impl Log {
    fn new(t0: Instant) -> Log {
        Log {
            t0,
            calls: Vec::new(),
        }
    }

    /// Runs `f`, recording it; returns its result.
    fn call<T>(
        &mut self,
        op: &'static str,
        path: &Path,
        f: impl FnOnce() -> io::Result<T>,
    ) -> io::Result<T> {
        let start = Instant::now();
        let r = f();
        self.calls.push(Call {
            op,
            path: path.to_path_buf(),
            at: start - self.t0,
            took: start.elapsed(),
            err: r.as_ref().err().map(|e| e.to_string()),
        });
        r
    }

    /// Records a failure found by checking a result (not an errno).
    fn fail(&mut self, op: &'static str, path: &Path, what: String) {
        self.calls.push(Call {
            op,
            path: path.to_path_buf(),
            at: self.t0.elapsed(),
            took: Duration::ZERO,
            err: Some(what),
        });
    }
}

/// close(2) of `f`, returning its error (the daemon reports a failed flush
/// there, which dropping a `File` would hide).
fn close_checked(f: File) -> io::Result<()> {
    let fd = f.into_raw_fd();
    // SAFETY: we own fd (taken from the File) and close it once.
    check(unsafe { libc::close(fd) })
}

/// Writes a whole file (create or truncate), checking close.
fn write_whole(p: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = File::create(p)?;
    f.write_all(data)?;
    close_checked(f)
}

/// Creates `p` with O_CREAT|O_EXCL and writes `data`, checking close.
fn create_excl(p: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(p)?;
    f.write_all(data)?;
    close_checked(f)
}

/// Runs `f` on a thread; its result and duration, or None if it had not
/// answered after `limit` (the thread is then left blocked).
fn bounded<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<(T, Duration)> {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    thread::spawn(move || {
        let r = f();
        let _ = tx.send((r, start.elapsed()));
    });
    rx.recv_timeout(limit).ok()
}

/// The slowest call of `calls`, and the slowest of those running at some
/// point of `window` (times since the test's start).
fn slowest(calls: &[Call], window: (Duration, Duration)) -> (Option<&Call>, Option<&Call>) {
    let all = calls.iter().max_by_key(|c| c.took);
    let during = calls
        .iter()
        .filter(|c| c.at <= window.1 && c.at + c.took >= window.0)
        .max_by_key(|c| c.took);
    (all, during)
}

fn show(c: Option<&Call>) -> String {
    match c {
        None => "none".into(),
        Some(c) => format!(
            "{} {} took {:.3?} (started at {:.1?})",
            c.op,
            c.path.display(),
            c.took,
            c.at
        ),
    }
}

// ---------------------------------------------------------------------------
// Test 1: the contact point killed mid-workload
// ---------------------------------------------------------------------------

/// What one worker of the workload leaves: files (name -> last content) and
/// directories in its own directory, and its calls.
struct Worker {
    dir: String,
    files: BTreeMap<String, Vec<u8>>,
    dirs: BTreeSet<String>,
    log: Log,
}

/// Creates (write to a temporary name, rename into place), reads back,
/// makes directories, unlinks and overwrites files in `root/dir` until
/// `stop`.
fn workload(root: PathBuf, dir: String, seed: u64, t0: Instant, stop: Arc<AtomicBool>) -> Worker {
    let mut w = Worker {
        dir: dir.clone(),
        files: BTreeMap::new(),
        dirs: BTreeSet::new(),
        log: Log::new(t0),
    };
    let base = root.join(&dir);
    let mut i: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        let data = pattern(seed ^ i, 512 + ((i as usize * 7919) % 24_000));
        let tmp = base.join(format!("tmp{i}"));
        let name = format!("f{i}");
        let fin = base.join(&name);
        if w.log
            .call("write", &tmp, || write_whole(&tmp, &data))
            .is_ok()
            && w.log
                .call("rename", &fin, || fs::rename(&tmp, &fin))
                .is_ok()
        {
            w.files.insert(name.clone(), data.clone());
            if let Ok(got) = w.log.call("read", &fin, || fs::read(&fin)) {
                if got != data {
                    w.log.fail("read", &fin, "content differs".into());
                }
            }
        }
        if i.is_multiple_of(3) {
            let d = format!("d{i}");
            let p = base.join(&d);
            if w.log.call("mkdir", &p, || fs::create_dir(&p)).is_ok() {
                w.dirs.insert(d);
            }
        }
        if i % 4 == 3 {
            let victim = format!("f{}", i - 2);
            if w.files.contains_key(&victim) {
                let p = base.join(&victim);
                if w.log.call("unlink", &p, || fs::remove_file(&p)).is_ok() {
                    w.files.remove(&victim);
                }
            }
        }
        if i % 5 == 4 {
            let target = format!("f{}", i - 1);
            if w.files.contains_key(&target) {
                let p = base.join(&target);
                let new = pattern(!seed ^ i, 300 + (i as usize % 9000));
                if w.log
                    .call("overwrite", &p, || write_whole(&p, &new))
                    .is_ok()
                {
                    w.files.insert(target, new.clone());
                    if let Ok(got) = w.log.call("read", &p, || fs::read(&p)) {
                        if got != new {
                            w.log.fail("read", &p, "overwritten content differs".into());
                        }
                    }
                }
            }
        }
        i += 1;
    }
    w
}

/// Differences between what the workers left and what `root` holds.
fn verify(root: &Path, workers: &[Worker]) -> Vec<String> {
    let mut bad = Vec::new();
    for w in workers {
        let base = root.join(&w.dir);
        let listed: BTreeSet<String> = match fs::read_dir(&base) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(e) => {
                bad.push(format!("readdir {}: {e}", base.display()));
                continue;
            }
        };
        let want: BTreeSet<String> = w.files.keys().chain(w.dirs.iter()).cloned().collect();
        if listed != want {
            bad.push(format!(
                "{}: extra {:?}, missing {:?}",
                w.dir,
                listed.difference(&want).collect::<Vec<_>>(),
                want.difference(&listed).collect::<Vec<_>>()
            ));
        }
        for (name, data) in &w.files {
            let p = base.join(name);
            match fs::read(&p) {
                Ok(got) if &got == data => {}
                Ok(got) => bad.push(format!(
                    "{}: {} bytes, want {} (last content)",
                    p.display(),
                    got.len(),
                    data.len()
                )),
                Err(e) => bad.push(format!("read {}: {e}", p.display())),
            }
        }
        for d in &w.dirs {
            match fs::metadata(base.join(d)) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => bad.push(format!("{}/{d} is not a directory", w.dir)),
                Err(e) => bad.push(format!("stat {}/{d}: {e}", w.dir)),
            }
        }
    }
    bad
}

/// A few operations that must all succeed on a mount: write, rename, read,
/// mkdir, unlink in `root/dir`.
fn sanity(root: &Path, dir: &str, seed: u64) {
    let base = root.join(dir);
    fs::create_dir_all(&base).unwrap_or_else(|e| panic!("mkdir {}: {e}", base.display()));
    for i in 0..3u64 {
        let data = pattern(seed + i, 2000 + i as usize * 1000);
        let tmp = base.join(format!("t{i}"));
        let fin = base.join(format!("s{i}"));
        write_whole(&tmp, &data).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
        fs::rename(&tmp, &fin).unwrap_or_else(|e| panic!("rename to {}: {e}", fin.display()));
        assert_eq!(read(&fin), data, "{} reads back", fin.display());
    }
    let d = base.join("sub");
    fs::create_dir(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
    fs::remove_file(base.join("s0")).unwrap_or_else(|e| panic!("unlink s0 in {dir}: {e}"));
}

#[test]
fn contact_point_killed_mid_workload() {
    let c = cluster();
    let owner = 1;
    let a = c.mount(owner, &[NODE1], &[]);
    let b = c.mount(owner, &[NODE1], &[]);
    let seed = unique_seed();
    let names = ["a0", "a1", "b0", "b1"];
    for n in &names[..2] {
        fs::create_dir(a.join(n)).expect("mkdir on mount a");
    }
    for n in &names[2..] {
        fs::create_dir(b.join(n)).expect("mkdir on mount b");
    }

    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for (k, n) in names.iter().enumerate() {
        let root = if k < 2 { a.path() } else { b.path() }.to_path_buf();
        let stop = stop.clone();
        let dir = n.to_string();
        let s = seed.wrapping_add(k as u64 * 1_000_003);
        handles.push(thread::spawn(move || workload(root, dir, s, t0, stop)));
    }
    thread::sleep(Duration::from_secs(6));
    let kill_at = t0.elapsed();
    kill_node(1);
    let killed_at = t0.elapsed();
    thread::sleep(Duration::from_secs(18));
    stop.store(true, Ordering::SeqCst);
    let workers: Vec<Worker> = handles
        .into_iter()
        .map(|h| h.join().expect("worker thread"))
        .collect();

    let calls: Vec<Call> = workers
        .iter()
        .flat_map(|w| w.log.calls.iter().cloned())
        .collect();
    let failures: Vec<&Call> = calls.iter().filter(|c| c.err.is_some()).collect();
    // The kill itself and the seconds the driver and the other nodes take
    // to notice (gossip convicts a dead node after several seconds).
    let window = (kill_at, killed_at + Duration::from_secs(10));
    let (max_all, max_kill) = slowest(&calls, window);
    let mut per_op: BTreeMap<&str, (usize, Duration)> = BTreeMap::new();
    for c in &calls {
        let e = per_op.entry(c.op).or_default();
        e.0 += 1;
        e.1 = e.1.max(c.took);
    }
    eprintln!(
        "kill node 1 (the contact point): {} calls, {} failed; node 1 killed between {kill_at:.1?} and {killed_at:.1?}",
        calls.len(),
        failures.len()
    );
    eprintln!("  per operation (count, max latency): {per_op:?}");
    eprintln!("  LONGEST CALL during the node kill: {}", show(max_kill));
    eprintln!("  longest call overall: {}", show(max_all));
    for f in failures.iter().take(20) {
        eprintln!(
            "  FAILED {} {} at {:.1?} after {:.3?}: {}",
            f.op,
            f.path.display(),
            f.at,
            f.took,
            f.err.as_deref().unwrap_or("")
        );
    }
    assert!(
        calls.iter().filter(|c| c.at > killed_at).count() >= 8,
        "the workload went on after the kill"
    );

    // What is stored, through a fresh mount (node 1 is still down).
    let fresh = c.mount(owner, &[NODE1, NODE2, NODE3], &[]);
    let mismatches = verify(fresh.path(), &workers);
    for m in mismatches.iter().take(20) {
        eprintln!("  STORED STATE: {m}");
    }
    drop(fresh);

    // Node 1 back: the running mounts go on, and a mount whose only contact
    // point is node 1 works again.
    start_node(1);
    sanity(a.path(), "after_a", seed ^ 1);
    sanity(b.path(), "after_b", seed ^ 2);
    let again = c.mount(owner, &[NODE1], &[]);
    sanity(again.path(), "after_new", seed ^ 3);
    let left_off = verify(again.path(), &workers);
    let mut a = a;
    let mut b = b;
    assert!(a.is_alive() && b.is_alive(), "the daemons stay up");
    // The outage's results, checked last so the restart above is exercised
    // whatever they are.
    assert!(
        failures.is_empty(),
        "{} of {} calls failed while node 1 died; first: {:?}\n--- mount a ---\n{}\n--- mount b ---\n{}",
        failures.len(),
        calls.len(),
        failures.first(),
        a.output(),
        b.output()
    );
    let max = max_all.map(|c| c.took).unwrap_or_default();
    assert!(
        max < CALL_LIMIT,
        "a call took {max:?} (limit {CALL_LIMIT:?}): {}",
        show(max_all)
    );
    assert!(
        mismatches.is_empty(),
        "a fresh mount does not see what was written: {mismatches:?}"
    );

    assert!(
        left_off.is_empty(),
        "a mount through node 1 after its restart: {left_off:?}"
    );
}

// ---------------------------------------------------------------------------
// Test 2: conditional creation and inode allocation while a node dies
// ---------------------------------------------------------------------------

#[test]
fn racing_creates_while_a_replica_dies() {
    let c = cluster();
    let owner = 2;
    let a = c.mount(owner, &[NODE1], &[]);
    let b = c.mount(owner, &[NODE1], &[]);
    // A node started again by the previous test can still fail the first
    // conditional writes (Paxos timeouts) for a moment: the race starts once
    // each mount has made one, so what is measured is the node dying here.
    for (k, m) in [&a, &b].into_iter().enumerate() {
        let mut tries = 0;
        let settled = wait_until(Duration::from_secs(60), || {
            tries += 1;
            fs::create_dir(m.path().join(format!("settle-{k}-{tries}"))).is_ok()
        });
        assert!(
            settled,
            "mount {k}: no conditional write succeeded within 60 s"
        );
    }
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let go = Arc::new(AtomicBool::new(true));
    let barrier = Arc::new(Barrier::new(2));
    // Per mount: name index -> result (Ok or errno) and the calls.
    let mut handles = Vec::new();
    for (k, root) in [a.path().to_path_buf(), b.path().to_path_buf()]
        .into_iter()
        .enumerate()
    {
        let (stop, go, barrier) = (stop.clone(), go.clone(), barrier.clone());
        handles.push(thread::spawn(move || {
            let mut log = Log::new(t0);
            let mut results: Vec<Result<(), i32>> = Vec::new();
            let mut i = 0usize;
            loop {
                // Both threads agree on stopping, then try name i together.
                if barrier.wait().is_leader() {
                    go.store(!stop.load(Ordering::SeqCst), Ordering::SeqCst);
                }
                barrier.wait();
                if !go.load(Ordering::SeqCst) {
                    break;
                }
                let p = root.join(format!("n{i}"));
                let r = if i.is_multiple_of(2) {
                    log.call("mkdir", &p, || fs::create_dir(&p))
                } else {
                    let body = format!("mount{k}");
                    log.call("create_excl", &p, || create_excl(&p, body.as_bytes()))
                };
                results.push(r.map_err(|e| errno(&e)));
                i += 1;
            }
            (results, log)
        }));
    }
    thread::sleep(Duration::from_secs(4));
    let kill_at = t0.elapsed();
    kill_node(3);
    let killed_at = t0.elapsed();
    thread::sleep(Duration::from_secs(15));
    stop.store(true, Ordering::SeqCst);
    let out: Vec<(Vec<Result<(), i32>>, Log)> = handles
        .into_iter()
        .map(|h| h.join().expect("create thread"))
        .collect();
    let n = out[0].0.len();
    assert_eq!(n, out[1].0.len(), "both mounts tried the same names");
    let calls: Vec<Call> = out.iter().flat_map(|o| o.1.calls.clone()).collect();
    let (max_all, max_kill) = slowest(&calls, (kill_at, killed_at + Duration::from_secs(10)));
    let mut bad = Vec::new();
    let mut winner = Vec::with_capacity(n);
    for i in 0..n {
        let (ra, rb) = (out[0].0[i], out[1].0[i]);
        match (ra, rb) {
            (Ok(()), Err(libc::EEXIST)) => winner.push(0),
            (Err(libc::EEXIST), Ok(())) => winner.push(1),
            _ => {
                winner.push(usize::MAX);
                bad.push(format!("n{i}: mount a {ra:?}, mount b {rb:?}"));
            }
        }
    }
    eprintln!(
        "kill node 3 during racing creates: {n} names, {} calls, node 3 killed between {kill_at:.1?} and {killed_at:.1?}; wins a/b: {}/{}",
        calls.len(),
        winner.iter().filter(|&&w| w == 0).count(),
        winner.iter().filter(|&&w| w == 1).count()
    );
    eprintln!("  LONGEST CALL during the node kill: {}", show(max_kill));
    eprintln!("  longest call overall: {}", show(max_all));
    for x in bad.iter().take(20) {
        eprintln!("  NOT CREATED EXACTLY ONCE: {x}");
    }
    assert!(n >= 10, "only {n} names were tried");
    assert!(
        calls.iter().any(|c| c.at > killed_at),
        "the creates went on after the kill"
    );

    // Inode numbers and kinds through a fresh mount (node 3 still down).
    let fresh = c.mount(owner, &[NODE1, NODE2], &[]);
    let mut inos: HashMap<u64, String> = HashMap::new();
    for (i, &won) in winner.iter().enumerate() {
        let name = format!("n{i}");
        let p = fresh.join(&name);
        match fs::symlink_metadata(&p) {
            Ok(m) => {
                if m.is_dir() != (i % 2 == 0) {
                    bad.push(format!("{name}: wrong kind {:?}", m.file_type()));
                }
                if let Some(other) = inos.insert(m.ino(), name.clone()) {
                    bad.push(format!("{name} and {other} share inode {}", m.ino()));
                }
                if won == usize::MAX {
                    let body = fs::read(&p).map(|b| String::from_utf8_lossy(&b).into_owned());
                    bad.push(format!(
                        "n{i} (no single winner) exists afterwards: {}, content {body:?}",
                        if m.is_dir() { "directory" } else { "file" }
                    ));
                } else if i % 2 == 1 {
                    let want = format!("mount{won}");
                    match fs::read(&p) {
                        Ok(got) if got == want.as_bytes() => {}
                        Ok(got) => bad.push(format!(
                            "{name}: holds {:?}, the creator was {want}",
                            String::from_utf8_lossy(&got)
                        )),
                        Err(e) => bad.push(format!("read {name}: {e}")),
                    }
                }
            }
            Err(e) => bad.push(format!("stat {name}: {e}")),
        }
    }
    let listed = names(fresh.path())
        .iter()
        .filter(|x| !x.to_string_lossy().starts_with("settle-"))
        .count();
    if listed != n {
        bad.push(format!("the root lists {listed} names, {n} were created"));
    }
    drop(fresh);
    start_node(3);
    sanity(a.path(), "after_a", 77);
    sanity(b.path(), "after_b", 78);
    assert!(
        max_all.map(|c| c.took).unwrap_or_default() < CALL_LIMIT,
        "a create took too long: {}",
        show(max_all)
    );
    assert!(
        bad.is_empty(),
        "{} problems: {bad:?}\n--- mount a ---\n{}\n--- mount b ---\n{}",
        bad.len(),
        a.output(),
        b.output()
    );
}

// ---------------------------------------------------------------------------
// Test 3: every node down, then back
// ---------------------------------------------------------------------------

/// One call made with every node down, on the mount's root.
type Probe = Box<dyn FnOnce(PathBuf) -> io::Result<()> + Send>;

#[test]
fn all_nodes_down_then_back() {
    let c = cluster();
    let owner = 3;
    const TIMEOUT: u64 = 5;
    let limit = Duration::from_secs(TIMEOUT + 10);
    let t = TIMEOUT.to_string();
    let all = [NODE1, NODE2, NODE3];
    // Another mount makes `x1/x2/x3/pre/`: the mount under test never
    // looked there, and it lies four levels below the root, deeper than the
    // directories read ahead of the root's lookups (three levels), so
    // nothing under it can come from its caches (names it made, listed or
    // read ahead may be answered from them within fcache_ttl, by design).
    let old = pattern(unique_seed(), 70_000);
    const PRE: &str = "x1/x2/x3/pre";
    {
        let setup = c.mount(owner, &all, &[]);
        fs::create_dir_all(setup.join(PRE).join("sub")).expect("mkdir pre/sub");
        write_whole(&setup.join(PRE).join("old"), &old).expect("write pre/old");
    }
    let mut m = c.mount(owner, &all, &["--timeout", &t]);
    let mine = pattern(unique_seed(), 30_000);
    write_whole(&m.join("mine"), &mine).expect("write before the outage");

    for i in 1..=3 {
        kill_node(i);
    }
    let mut took = Vec::new();
    let probes: Vec<(&str, Probe)> = vec![
        (
            "stat pre/never_seen",
            Box::new(|r: PathBuf| fs::metadata(r.join(PRE).join("never_seen")).map(|_| ())),
        ),
        (
            "create pre/down_file",
            Box::new(|r: PathBuf| write_whole(&r.join(PRE).join("down_file"), b"x")),
        ),
        (
            "mkdir pre/sub/down_dir",
            Box::new(|r: PathBuf| fs::create_dir(r.join(PRE).join("sub/down_dir"))),
        ),
        (
            "read pre/old",
            Box::new(|r: PathBuf| fs::read(r.join(PRE).join("old")).map(|_| ())),
        ),
    ];
    for (what, f) in probes {
        let root = m.path().to_path_buf();
        let Some((res, d)) = bounded(limit * 3, move || f(root)) else {
            panic!(
                "{what}: no answer within {:?} with every node down; output:\n{}",
                limit * 3,
                m.output()
            );
        };
        eprintln!("all nodes down: {what} -> {res:?} after {d:.3?}");
        match res {
            Ok(()) => panic!("{what}: succeeded with every node down"),
            Err(e) => assert_eq!(
                e.raw_os_error(),
                Some(libc::EIO),
                "{what}: expected EIO with every node down, got {e}"
            ),
        }
        assert!(d < limit, "{what}: EIO after {d:?}, limit {limit:?}");
        took.push(d);
    }
    eprintln!(
        "  LONGEST CALL with every node down: {:.3?}",
        took.iter().max().copied().unwrap_or_default()
    );
    assert!(m.is_alive(), "the daemon stays up; output:\n{}", m.output());
    assert!(m.is_mounted(), "the volume stays mounted");

    must(&["--dcs", "1", "start"], 420);
    // The driver reconnects on its own schedule: the first write may have to
    // wait for it, then everything works.
    let back = Instant::now();
    let p = m.join("after");
    let mut last = None;
    let ok = wait_until(Duration::from_secs(90), || {
        match write_whole(&p, b"after") {
            Ok(()) => true,
            Err(e) => {
                last = Some(e.to_string());
                false
            }
        }
    });
    assert!(
        ok,
        "no write succeeded within 90 s of the cluster's return (last error {last:?}); output:\n{}",
        m.output()
    );
    eprintln!(
        "  first write after the restart succeeded {:.1?} after the cluster answered",
        back.elapsed()
    );
    assert_eq!(read(&p), b"after");
    assert_eq!(read(&m.join("mine")), mine, "written before the outage");
    assert_eq!(
        read(&m.join(PRE).join("old")),
        old,
        "written by another mount before"
    );
    sanity(m.path(), &format!("{PRE}/sub/back"), 99);
    let down_file = m.join(PRE).join("down_file");
    write_whole(&down_file, b"now").expect("create a name that failed before");
    assert_eq!(read(&down_file), b"now");
    fs::create_dir(m.join(PRE).join("sub/down_dir")).expect("mkdir that failed before");
    assert!(m.is_alive(), "the daemon is still the same process");
}
