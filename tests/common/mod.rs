//! Helpers shared by the integration tests: Cassandra address and locking,
//! unique keyspaces and volumes, a `Mount` guard around the `cassfs` daemon,
//! running commands with a deadline, and thin libc wrappers (xattrs, ...).
//!
//! Every test binary that talks to Cassandra holds a SHARED flock on
//! [`LOCK_PATH`] for as long as it runs; `tests/failure.rs`, which stops the
//! shared Cassandra, takes it EXCLUSIVE, so it never runs while another test
//! process (of this or another `cargo test`) uses Cassandra.

#![allow(dead_code)]

use std::ffi::{CString, OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The daemon under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cassfs");
/// The lock that keeps `tests/failure.rs` (which stops Cassandra) apart from
/// every other test that uses Cassandra.
pub const LOCK_PATH: &str = "/tmp/cassfs-test-cassandra.lock";
/// How long a mount may take to appear in /proc/mounts.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `cassfs schema` may take on a busy 2-core machine.
pub const SCHEMA_TIMEOUT: Duration = Duration::from_secs(180);

/// The repository root (where `scripts/cassandra` lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Cassandra contact point for tests: `CASSFS_TEST_SERVER`, default
/// `127.0.0.1`.
pub fn cassandra_addr() -> String {
    std::env::var("CASSFS_TEST_SERVER")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "127.0.0.1".to_string())
}

// ---------------------------------------------------------------------------
// The Cassandra lock
// ---------------------------------------------------------------------------

/// (lock file, exclusive?) held by this process until it exits.
static CASSANDRA_LOCK: OnceLock<(File, bool)> = OnceLock::new();

fn take_lock(exclusive: bool) -> (File, bool) {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(LOCK_PATH)
        .unwrap_or_else(|e| panic!("cannot open the test lock {LOCK_PATH}: {e}"));
    let res = if exclusive {
        file.lock()
    } else {
        file.lock_shared()
    };
    res.unwrap_or_else(|e| panic!("cannot lock {LOCK_PATH} (exclusive={exclusive}): {e}"));
    (file, exclusive)
}

/// Takes the Cassandra lock SHARED for the rest of this process (idempotent).
/// If this process already holds it exclusive, that is kept.
pub fn cassandra_shared() {
    CASSANDRA_LOCK.get_or_init(|| take_lock(false));
}

/// Takes the Cassandra lock EXCLUSIVE for the rest of this process: waits
/// until no other test process uses Cassandra. Only for tests that stop it.
pub fn cassandra_exclusive() {
    let (_, exclusive) = CASSANDRA_LOCK.get_or_init(|| take_lock(true));
    assert!(
        *exclusive,
        "this process already holds the Cassandra lock shared; take it exclusive first"
    );
}

// ---------------------------------------------------------------------------
// Running commands with a deadline
// ---------------------------------------------------------------------------

/// What a command run with [`run_with_timeout`] did.
#[derive(Debug)]
pub struct RunResult {
    /// `None` when it was killed at the deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl RunResult {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }
    /// A description for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "status {:?} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

fn drain<R: Read + Send + 'static>(r: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs `cmd` (stdin null, stdout/stderr captured), killing it at `limit`.
pub fn run_with_timeout(cmd: &mut Command, limit: Duration) -> RunResult {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if start.elapsed() >= limit => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    let elapsed = start.elapsed();
    RunResult {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed,
    }
}

/// Runs the `cassfs` binary with `args`, killing it at `limit`. If it
/// mounted something on `mountpoint` before being killed, that is undone.
pub fn run_cassfs(args: &[&OsStr], limit: Duration, mountpoint: Option<&Path>) -> RunResult {
    let res = run_with_timeout(Command::new(BIN).args(args), limit);
    if let Some(dir) = mountpoint {
        force_unmount(dir);
    }
    res
}

// ---------------------------------------------------------------------------
// Cassandra: scripts/cassandra, keyspaces, volumes
// ---------------------------------------------------------------------------

/// Runs `scripts/cassandra ARGS` with a deadline.
pub fn cassandra_script(args: &[&str], limit: Duration) -> RunResult {
    run_with_timeout(
        Command::new(repo_root().join("scripts/cassandra"))
            .args(args)
            .current_dir(repo_root()),
        limit,
    )
}

/// Runs one CQL statement through `scripts/cassandra cql`; returns the
/// printed rows (first line: the column names). Panics on failure.
pub fn cql(stmt: &str) -> String {
    let r = cassandra_script(&["cql", stmt], Duration::from_secs(60));
    assert!(r.success(), "cql {stmt:?} failed: {}", r.describe());
    r.stdout
}

/// The data rows `cql(stmt)` prints (header line dropped).
pub fn cql_rows(stmt: &str) -> Vec<String> {
    cql(stmt)
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Number of rows in `K.blocks` for `owner` (blocks are shared by all the
/// environments of one owner).
pub fn block_rows(keyspace: &str, owner: i64) -> usize {
    cql_rows(&format!(
        "SELECT hash FROM {keyspace}.blocks WHERE owner = {owner} ALLOW FILTERING"
    ))
    .len()
}

static KEYSPACE_COUNTER: AtomicU64 = AtomicU64::new(0);
static CLEANUP: Once = Once::new();

/// Drops test keyspaces (`cfst_..._PID_N_T`) left by test processes that are
/// gone, so repeated runs on a long-lived Cassandra do not pile up tables.
/// Best effort: errors are ignored.
fn drop_stale_keyspaces() {
    let r = cassandra_script(
        &["cql", "SELECT keyspace_name FROM system_schema.keyspaces"],
        Duration::from_secs(30),
    );
    if !r.success() {
        return;
    }
    let mut dropped = 0;
    for name in r.stdout.lines().map(str::trim) {
        if !name.starts_with("cfst_") || dropped >= 30 {
            continue;
        }
        let parts: Vec<&str> = name.split('_').collect();
        if parts.len() < 4 {
            continue;
        }
        let Ok(pid) = parts[parts.len() - 3].parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = cassandra_script(
            &["cql", &format!("DROP KEYSPACE IF EXISTS {name}")],
            Duration::from_secs(60),
        );
        dropped += 1;
    }
}

/// A keyspace name never used before: `cfst_<prefix>_<pid>_<n>_<time>`
/// (letters, digits, underscores; at most 48 characters).
pub fn unique_keyspace_name(prefix: &str) -> String {
    let mut p: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    p.truncate(14);
    let n = KEYSPACE_COUNTER.fetch_add(1, Ordering::SeqCst);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() % 100_000)
        .unwrap_or(0);
    let name = format!("cfst_{p}_{}_{n}_{t}", std::process::id());
    assert!(name.len() <= 48, "keyspace name too long: {name}");
    name
}

/// Creates a fresh keyspace with `cassfs schema` and returns its name.
pub fn fresh_keyspace(prefix: &str) -> String {
    cassandra_shared();
    CLEANUP.call_once(drop_stale_keyspaces);
    let ks = unique_keyspace_name(prefix);
    apply_schema(&ks);
    ks
}

/// Runs `cassfs schema --server ADDR --keyspace KS`, asserting success.
pub fn apply_schema(ks: &str) {
    let r = run_with_timeout(
        Command::new(BIN).args(["schema", "--server", &cassandra_addr(), "--keyspace", ks]),
        SCHEMA_TIMEOUT,
    );
    assert!(
        r.success(),
        "cassfs schema --keyspace {ks} failed: {}",
        r.describe()
    );
}

/// One keyspace per test process, created on first use; tests then isolate
/// themselves with a unique volume (see [`Volume::unique`]).
pub fn shared_keyspace() -> String {
    static KS: Mutex<Option<String>> = Mutex::new(None);
    let mut g = KS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(ks) = g.as_ref() {
        return ks.clone();
    }
    let ks = fresh_keyspace("shared");
    *g = Some(ks.clone());
    ks
}

static OWNER_COUNTER: AtomicU64 = AtomicU64::new(1);

/// One volume: (keyspace, owner, environment).
#[derive(Clone, Debug)]
pub struct Volume {
    pub keyspace: String,
    pub owner: i64,
    pub environment: String,
}

impl Volume {
    pub fn new(keyspace: &str, owner: i64, environment: &str) -> Volume {
        Volume {
            keyspace: keyspace.to_string(),
            owner,
            environment: environment.to_string(),
        }
    }

    /// A volume no other test uses: the process's shared keyspace and an
    /// owner number unique in this process.
    pub fn unique(environment: &str) -> Volume {
        let ks = shared_keyspace();
        let owner = OWNER_COUNTER.fetch_add(1, Ordering::SeqCst) as i64 + 100;
        Volume::new(&ks, owner, environment)
    }

    /// `--server --keyspace --owner --environment`.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--server".into(),
            cassandra_addr(),
            "--keyspace".into(),
            self.keyspace.clone(),
            "--owner".into(),
            self.owner.to_string(),
            "--environment".into(),
            self.environment.clone(),
        ]
    }

    /// Mounts this volume on a fresh directory with `extra` options.
    pub fn mount(&self, extra: &[&str]) -> Mount {
        let mut args = self.args();
        args.extend(extra.iter().map(|s| s.to_string()));
        Mount::new(&args)
    }

    /// Mounts with all caches off (ttls 0): what sharing tests need.
    pub fn mount_uncached(&self, extra: &[&str]) -> Mount {
        let mut all = vec![
            "--fcache_ttl",
            "0",
            "--entry_ttl",
            "0",
            "--negative_ttl",
            "0",
        ];
        all.extend_from_slice(extra);
        self.mount(&all)
    }
}

// ---------------------------------------------------------------------------
// /proc/mounts
// ---------------------------------------------------------------------------

fn unescape_mount_field(b: &[u8]) -> Vec<u8> {
    // /proc/mounts writes space, tab, newline and backslash as \ooo.
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).ok();
            if let Some(v) = oct.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The fstype of the mount at `dir` (the last one if stacked), if any.
pub fn mount_fstype(dir: &Path) -> Option<String> {
    let text = fs::read("/proc/mounts").expect("read /proc/mounts");
    let want = dir.as_os_str().as_bytes();
    text.split(|&c| c == b'\n')
        .filter_map(|l| {
            let mut f = l.split(|&c| c == b' ');
            let _src = f.next()?;
            let mnt = f.next()?;
            let fstype = f.next()?;
            (unescape_mount_field(mnt) == want)
                .then(|| String::from_utf8_lossy(fstype).into_owned())
        })
        .next_back()
}

/// Whether `dir` is a mounted FUSE volume (our private directories hold
/// nothing else). The contract says the type reads `fuse.cassfs`; a mount
/// made directly by root without the subtype reads `fuse`: that is still
/// accepted here, and `tests/cli.rs` checks the exact type on its own.
pub fn is_cassfs_mounted(dir: &Path) -> bool {
    matches!(
        mount_fstype(dir).as_deref(),
        Some("fuse.cassfs") | Some("fuse")
    )
}

/// Whether anything is mounted on `dir`.
pub fn is_mounted(dir: &Path) -> bool {
    mount_fstype(dir).is_some()
}

pub fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// Unmounts whatever is on `dir`: `fusermount3 -u`, then `fusermount3 -uz`,
/// then umount2(MNT_DETACH). Returns whether `dir` is free afterwards.
/// Aborts the FUSE connection of the mount on `dir`: every request waiting
/// for its daemon fails at once. `umount2(MNT_FORCE)` aborts a FUSE
/// connection before it finds the mount busy; the fusectl file system is
/// the other way, when it is mounted (found through /proc/self/mountinfo,
/// so nothing here waits for the daemon).
pub fn abort_connection(dir: &Path) -> bool {
    let c = c_path(dir);
    // SAFETY: a valid NUL-terminated path; EBUSY is expected and ignored.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_FORCE) };
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = dir.to_string_lossy();
    let dev = info.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() > 4 && f[4] == want).then(|| f[2].to_string())
    });
    let Some(minor) = dev.and_then(|d| d.split(':').nth(1).map(str::to_string)) else {
        return false;
    };
    fs::write(format!("/sys/fs/fuse/connections/{minor}/abort"), b"1").is_ok()
}

pub fn force_unmount(dir: &Path) -> bool {
    for args in [&["-u"][..], &["-uz"][..]] {
        if !is_mounted(dir) {
            return true;
        }
        let _ = run_with_timeout(
            Command::new("fusermount3").args(args).arg(dir),
            Duration::from_secs(10),
        );
    }
    if is_mounted(dir) {
        let c = c_path(dir);
        // SAFETY: a valid NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
    !is_mounted(dir)
}

// ---------------------------------------------------------------------------
// The Mount guard
// ---------------------------------------------------------------------------

/// A running `cassfs` daemon with its volume mounted on a private directory.
/// Dropping it unmounts (also while a test panics) and reaps the daemon.
pub struct Mount {
    child: Option<Child>,
    status: Option<ExitStatus>,
    dir: PathBuf,
    owns_dir: bool,
    log: PathBuf,
    _logdir: tempfile::TempDir,
}

fn new_mountpoint() -> PathBuf {
    let d = tempfile::Builder::new()
        .prefix("cassfs-mnt-")
        .tempdir()
        .expect("create a temporary mount point");
    let p = d.keep();
    fs::canonicalize(&p).expect("canonicalize the mount point")
}

impl Mount {
    /// Mounts with `args` (without `--mount`) on a fresh directory; panics
    /// with the daemon's output if it does not mount.
    pub fn new<S: AsRef<OsStr>>(args: &[S]) -> Mount {
        Mount::try_new(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`Mount::new`] but returns the failure.
    pub fn try_new<S: AsRef<OsStr>>(args: &[S]) -> Result<Mount, String> {
        let dir = new_mountpoint();
        let mut all: Vec<OsString> = vec!["--mount".into(), dir.clone().into()];
        all.extend(args.iter().map(|a| a.as_ref().to_os_string()));
        Mount::spawn(dir, true, &all)
    }

    /// Runs `cassfs ARGS` verbatim (ARGS name the mount point `dir` in
    /// whatever style) and waits until `dir` is mounted.
    pub fn spawn_raw<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> Result<Mount, String> {
        let all: Vec<OsString> = args.iter().map(|a| a.as_ref().to_os_string()).collect();
        Mount::spawn(dir.to_path_buf(), true, &all)
    }

    /// A fresh, empty directory for [`Mount::spawn_raw`] (removed when the
    /// mount built on it is dropped).
    pub fn fresh_dir() -> PathBuf {
        new_mountpoint()
    }

    fn spawn(dir: PathBuf, owns_dir: bool, args: &[OsString]) -> Result<Mount, String> {
        cassandra_shared();
        let logdir = tempfile::Builder::new()
            .prefix("cassfs-log-")
            .tempdir()
            .expect("create a log directory");
        let log = logdir.path().join("cassfs.log");
        let out = File::create(&log).expect("create the daemon log");
        let err = out.try_clone().expect("clone the daemon log handle");
        let child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot spawn {BIN}: {e}"))?;
        let mut m = Mount {
            child: Some(child),
            status: None,
            dir,
            owns_dir,
            log,
            _logdir: logdir,
        };
        let start = Instant::now();
        loop {
            let child = m.child.as_mut().expect("child present");
            match child.try_wait() {
                Ok(Some(st)) => {
                    m.status = Some(st);
                    m.child = None;
                    return Err(format!(
                        "cassfs {:?} exited with {st} before mounting; output:\n{}",
                        args,
                        m.output()
                    ));
                }
                Ok(None) => {}
                Err(e) => return Err(format!("waiting for cassfs: {e}")),
            }
            if is_cassfs_mounted(&m.dir) {
                return Ok(m);
            }
            if start.elapsed() > MOUNT_TIMEOUT {
                return Err(format!(
                    "cassfs {:?} did not mount {} within {:?}; output:\n{}",
                    args,
                    m.dir.display(),
                    MOUNT_TIMEOUT,
                    m.output()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `path().join(p)`.
    pub fn join<P: AsRef<Path>>(&self, p: P) -> PathBuf {
        self.dir.join(p)
    }

    /// The daemon's pid (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// What the daemon printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Whether the daemon process is still running.
    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(c) => match c.try_wait() {
                Ok(Some(st)) => {
                    self.status = Some(st);
                    self.child = None;
                    false
                }
                Ok(None) => true,
                Err(_) => false,
            },
        }
    }

    /// Whether the volume is still mounted on `path()`.
    pub fn is_mounted(&self) -> bool {
        is_cassfs_mounted(&self.dir)
    }

    /// Waits up to `limit` for the daemon to exit.
    fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if !self.is_alive() {
                return self.status;
            }
            if start.elapsed() >= limit {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the daemon with SIGKILL and reaps it.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            if let Ok(st) = c.wait() {
                self.status = Some(st);
            }
        }
    }

    /// Sends `sig` to the daemon and waits (up to 20 s) for it to exit;
    /// returns its exit status. Panics (after killing it) if it does not
    /// exit. The mount point is left as the daemon left it, so the caller can
    /// check it is gone.
    pub fn stop_with_signal(&mut self, sig: libc::c_int) -> ExitStatus {
        let pid = self.pid().expect("the daemon is not running") as libc::pid_t;
        // SAFETY: plain kill(2) on our own child's pid (not yet reaped).
        let r = unsafe { libc::kill(pid, sig) };
        assert_eq!(r, 0, "kill({pid}, {sig}): {}", io::Error::last_os_error());
        if sig == libc::SIGKILL {
            if let Some(st) = self.wait_exit(Duration::from_secs(5)) {
                return st;
            }
            // A thread killed while the kernel made it wait for a directory
            // that a request to this (now dead) daemon holds (a cache
            // invalidation) keeps the process from exiting until the FUSE
            // connection is aborted, as an operator would (README).
            eprintln!("cassfs {pid} did not exit 5 s after SIGKILL: aborting its connection");
            abort_connection(self.path());
        }
        match self.wait_exit(Duration::from_secs(20)) {
            Some(st) => st,
            None => {
                self.kill();
                panic!(
                    "cassfs did not exit within 20 s of signal {sig}; output:\n{}",
                    self.output()
                );
            }
        }
    }

    /// Unmounts with `fusermount3 -u` and returns the daemon's exit status
    /// (panics if it does not exit within 20 s).
    pub fn unmount(&mut self) -> ExitStatus {
        if !self.is_alive() {
            return self.status.expect("daemon status known");
        }
        let r = run_with_timeout(
            Command::new("fusermount3").arg("-u").arg(&self.dir),
            Duration::from_secs(15),
        );
        assert!(
            r.success(),
            "fusermount3 -u {} failed: {}",
            self.dir.display(),
            r.describe()
        );
        match self.wait_exit(Duration::from_secs(20)) {
            Some(st) => st,
            None => {
                self.kill();
                panic!(
                    "cassfs did not exit within 20 s of fusermount3 -u; output:\n{}",
                    self.output()
                );
            }
        }
    }

    /// Reads the virtual xattr `user.cassfs.statements` on the root: the
    /// number of CQL statements this daemon executed so far.
    pub fn statements(&self) -> u64 {
        let v = getxattr(&self.dir, "user.cassfs.statements")
            .expect("getxattr user.cassfs.statements on the mount root");
        let s = String::from_utf8(v).expect("statement count is ASCII");
        s.trim()
            .parse()
            .unwrap_or_else(|e| panic!("statement count {s:?} is not a number: {e}"))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.is_alive() && is_mounted(&self.dir) {
            let _ = run_with_timeout(
                Command::new("fusermount3").arg("-u").arg(&self.dir),
                Duration::from_secs(10),
            );
            if self.wait_exit(Duration::from_secs(10)).is_none() {
                // Busy or stuck: detach lazily, then give it a moment more.
                force_unmount(&self.dir);
                if self.wait_exit(Duration::from_secs(10)).is_none() {
                    self.kill();
                }
            }
        } else if self.is_alive() {
            // Running but not mounted: ask it to stop, then insist.
            if let Some(pid) = self.pid() {
                // SAFETY: kill(2) on our own unreaped child.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            }
            if self.wait_exit(Duration::from_secs(10)).is_none() {
                self.kill();
            }
        }
        let free = force_unmount(&self.dir);
        if free && self.owns_dir {
            // Never recursive: if anything were still mounted, it is not removed.
            let _ = fs::remove_dir(&self.dir);
        }
        if std::thread::panicking() {
            eprintln!(
                "--- cassfs output for {} ---\n{}",
                self.dir.display(),
                self.output()
            );
        }
    }
}

/// Writes a whole file and fsyncs it, so that a failed commit is an error
/// (`fs::write` drops the file and with it the error close(2) returns).
pub fn write_committed(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut f = File::create(path)?;
    f.write_all(data)?;
    f.sync_all()
}

// ---------------------------------------------------------------------------
// libc wrappers
// ---------------------------------------------------------------------------

fn c_str(s: &str) -> CString {
    CString::new(s).expect("string without NUL")
}

pub fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// getxattr(2) (follows symlinks).
pub fn getxattr(path: &Path, name: &str) -> io::Result<Vec<u8>> {
    let p = c_path(path);
    let n = c_str(name);
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: valid C strings; buf is writable for buf.len() bytes.
    let r = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

/// setxattr(2) with `flags` (0, XATTR_CREATE or XATTR_REPLACE).
pub fn setxattr(path: &Path, name: &str, value: &[u8], flags: libc::c_int) -> io::Result<()> {
    let p = c_path(path);
    let n = c_str(name);
    // SAFETY: valid C strings; value is readable for value.len() bytes.
    check(unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            flags,
        )
    })
}

/// listxattr(2): the names.
pub fn listxattr(path: &Path) -> io::Result<Vec<OsString>> {
    let p = c_path(path);
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: valid C string; buf is writable for buf.len() bytes.
    let r = unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    Ok(buf
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| OsString::from_vec(s.to_vec()))
        .collect())
}

/// removexattr(2).
pub fn removexattr(path: &Path, name: &str) -> io::Result<()> {
    let p = c_path(path);
    let n = c_str(name);
    // SAFETY: valid C strings.
    check(unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) })
}

/// renameat2(2) with `flags` (RENAME_NOREPLACE, RENAME_EXCHANGE).
pub fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> io::Result<()> {
    let f = c_path(from);
    let t = c_path(to);
    // SAFETY: valid C strings; AT_FDCWD with absolute or cwd-relative paths.
    check(unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            flags,
        )
    })
}

/// statvfs(3).
pub fn statvfs(path: &Path) -> io::Result<libc::statvfs> {
    let p = c_path(path);
    // SAFETY: statvfs is plain data; zeroed is a valid initial value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and a valid out pointer.
    check(unsafe { libc::statvfs(p.as_ptr(), &mut st) })?;
    Ok(st)
}

/// utimensat(2) setting atime and mtime (seconds, nanoseconds).
pub fn set_times(path: &Path, atime: (i64, i64), mtime: (i64, i64)) -> io::Result<()> {
    let p = c_path(path);
    let ts = [
        libc::timespec {
            tv_sec: atime.0 as libc::time_t,
            tv_nsec: atime.1 as _,
        },
        libc::timespec {
            tv_sec: mtime.0 as libc::time_t,
            tv_nsec: mtime.1 as _,
        },
    ];
    // SAFETY: valid C string and a two-element timespec array.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), ts.as_ptr(), 0) })
}

/// The raw OS error number of an io::Error (for assertions).
pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

/// Asserts that `r` failed with `expected` errno.
#[track_caller]
pub fn assert_errno<T: std::fmt::Debug>(r: io::Result<T>, expected: i32, what: &str) {
    match r {
        Ok(v) => panic!(
            "{what}: expected errno {expected} ({}), got success {v:?}",
            io::Error::from_raw_os_error(expected)
        ),
        Err(e) => assert_eq!(
            errno(&e),
            expected,
            "{what}: expected errno {expected} ({}), got {e}",
            io::Error::from_raw_os_error(expected)
        ),
    }
}

// ---------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------

/// Deterministic pseudo-random bytes (xorshift64*), distinct per `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A seed nobody else in this process (or a recent run) uses.
pub fn unique_seed() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ ((std::process::id() as u64) << 40)
        ^ N.fetch_add(1, Ordering::SeqCst).wrapping_mul(0x1234_5677)
}

/// Polls `f` until it returns true or `limit` passes; returns the last value.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if f() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `f` every 20 ms until it returns true, failing the test with
/// `what` if `limit` passes first: how long it took.
#[track_caller]
pub fn seen_within(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if f() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "not seen within {limit:?}: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Reads a whole file, panicking with the path on error.
pub fn read(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Writes a whole file, panicking with the path on error.
pub fn write(p: &Path, data: &[u8]) {
    fs::write(p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()))
}

/// The names in a directory.
pub fn names(dir: &Path) -> std::collections::BTreeSet<OsString> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").file_name())
        .collect()
}

// ---------------------------------------------------------------------------
// Small helpers of the multi-host, hostile-input, stress and crash tests
// ---------------------------------------------------------------------------

/// Asserts that `r` failed with one of `allowed`.
pub fn assert_errno_in<T: std::fmt::Debug>(r: io::Result<T>, allowed: &[i32], what: &str) {
    match r {
        Ok(v) => panic!("{what}: expected one of errno {allowed:?}, got success {v:?}"),
        Err(e) => assert!(
            allowed.contains(&errno(&e)),
            "{what}: expected one of errno {allowed:?}, got {e}"
        ),
    }
}

/// A number from the environment (`None` when unset or empty).
pub fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    if v.is_empty() {
        return None;
    }
    Some(
        v.parse()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}")),
    )
}

// ---------------------------------------------------------------------------
// Mounts with their own environment (tests/secure.rs)
// ---------------------------------------------------------------------------

impl Mount {
    /// Like [`Mount::try_new`], but the daemon's environment first loses
    /// the variables `remove`, then gets `set` (e.g. a password variable).
    pub fn try_new_env<S: AsRef<OsStr>>(
        args: &[S],
        set: &[(&str, &str)],
        remove: &[&str],
    ) -> Result<Mount, String> {
        cassandra_shared();
        let dir = new_mountpoint();
        let mut all: Vec<OsString> = vec!["--mount".into(), dir.clone().into()];
        all.extend(args.iter().map(|a| a.as_ref().to_os_string()));
        let logdir = tempfile::Builder::new()
            .prefix("cassfs-log-")
            .tempdir()
            .expect("create a log directory");
        let log = logdir.path().join("cassfs.log");
        let out = File::create(&log).expect("create the daemon log");
        let err = out.try_clone().expect("clone the daemon log handle");
        let mut cmd = Command::new(BIN);
        cmd.args(&all).stdin(Stdio::null()).stdout(out).stderr(err);
        for name in remove {
            cmd.env_remove(name);
        }
        for (name, value) in set {
            cmd.env(name, value);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot spawn {BIN}: {e}"))?;
        let mut m = Mount {
            child: Some(child),
            status: None,
            dir,
            owns_dir: true,
            log,
            _logdir: logdir,
        };
        let start = Instant::now();
        loop {
            if !m.is_alive() {
                return Err(format!(
                    "cassfs {all:?} exited with {:?} before mounting; output:\n{}",
                    m.status,
                    m.output()
                ));
            }
            if is_cassfs_mounted(&m.dir) {
                return Ok(m);
            }
            if start.elapsed() > MOUNT_TIMEOUT {
                return Err(format!(
                    "cassfs {all:?} did not mount {} within {MOUNT_TIMEOUT:?}; output:\n{}",
                    m.dir.display(),
                    m.output()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}
