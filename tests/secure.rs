//! Login and TLS against a real Cassandra node that requires them: a mount
//! as a role with rights on its keyspace only, the password kept out of the
//! command line and the logs, one-line errors for every way the login or
//! the TLS handshake can fail, and an operator command over TLS + login.
//!
//! The nodes are started by this binary with `scripts/cassandra`, once:
//!   * 127.0.0.4, home `target/cassandra-secure`: `--auth --tls` (CQL only
//!     over TLS, client certificates optional);
//!   * 127.0.0.5, home `target/cassandra-mtls`: `--auth --mtls` (a client
//!     certificate signed by the node's CA is required), started only by
//!     the tests that need it.
//!
//! A Rust test binary cannot stop them when it ends, so they are left
//! running: the start is idempotent (it returns at once while the node
//! answers), so the next run reuses them. A node found running with other
//! security options than wanted (its `$home/security` record) is stopped
//! and started again with the right ones. `scripts/cassandra stop` with the
//! same `CASSFS_CASSANDRA_HOME` and `CASSFS_CASSANDRA_ADDR` stops one.
//!
//! Each run makes its own keyspace (`cfsec_<pid>_<time>`) and roles
//! (`cfsec_rw_<pid>`, `cfsec_none_<pid>`) with a fresh password; those of
//! runs whose process is gone are dropped first.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

/// The superuser of a node started with `--auth`.
const SUPERUSER: &str = "cassandra";
const SUPERUSER_PASSWORD: &str = "cassandra";
/// How long a node may take to start on a loaded 2-core machine.
const NODE_START: Duration = Duration::from_secs(300);
/// A failed mount or command must have given up within this (the connect
/// timeout is 8 s; the rest is a loaded machine's margin).
const FAIL_WITHIN: Duration = Duration::from_secs(45);
/// The deadline after which a command that should fail is killed.
const FAIL_LIMIT: Duration = Duration::from_secs(90);
/// When a TLS handshake is refused, the driver reports either the TLS
/// alert (one line) or, depending on which of its tasks sees the closed
/// connection first, a broken channel in three lines that names no cause;
/// the daemon prints that text as it is. While that holds, the failures
/// accept it (see [`expect_failure`]); set this to false once every error
/// is one line.
const TOLERATE_BROKEN_CHANNEL: bool = false;
const BROKEN_CHANNEL: &str = "Failed to send/receive data needed to perform a request";

/// One node started by this binary.
struct Node {
    home: PathBuf,
    addr: &'static str,
    /// `--tls` or `--mtls` (both with `--auth`).
    mode: &'static str,
}

impl Node {
    fn tls(&self, file: &str) -> String {
        self.home.join("tls").join(file).display().to_string()
    }

    /// `scripts/cassandra ARGS` against this node.
    fn script(&self, args: &[&str], limit: Duration) -> RunResult {
        run_with_timeout(
            Command::new(repo_root().join("scripts/cassandra"))
                .args(args)
                .current_dir(repo_root())
                .env("CASSFS_CASSANDRA_HOME", &self.home)
                .env("CASSFS_CASSANDRA_ADDR", self.addr)
                .env_remove("CASSFS_CASSANDRA_USER")
                .env_remove("CASSFS_CASSANDRA_PASSWORD")
                .env_remove("CASSFS_CASSANDRA_AUTH")
                .env_remove("CASSFS_CASSANDRA_TLS")
                .env_remove("CASSFS_CASSANDRA_MTLS"),
            limit,
        )
    }

    /// One CQL statement as the superuser (over the node's TLS); the rows.
    fn cql(&self, stmt: &str) -> String {
        let r = self.script(&["cql", stmt], Duration::from_secs(90));
        assert!(
            r.success(),
            "cql {stmt:?} on {} failed: {}",
            self.addr,
            r.describe()
        );
        r.stdout
    }

    /// Stops the node (best effort: the binary is ending).
    fn stop(&self) {
        let r = self.script(&["stop"], Duration::from_secs(120));
        if !r.success() {
            eprintln!("secure: stopping {} failed: {}", self.addr, r.describe());
        }
    }

    /// Starts the node unless it answers with the wanted options already.
    fn start(&self) {
        let want = format!(
            "auth=1\ntls=1\nmtls={}\n",
            if self.mode == "--mtls" { 1 } else { 0 }
        );
        let record = fs::read_to_string(self.home.join("security")).unwrap_or_default();
        if !record.is_empty() && record != want {
            // Started (or left) with other options: start's "already
            // running" would keep them.
            let r = self.script(&["stop"], Duration::from_secs(120));
            assert!(r.success(), "stop {}: {}", self.addr, r.describe());
        }
        let t = Instant::now();
        let r = self.script(
            &["--auth", self.mode, "start"],
            NODE_START + Duration::from_secs(60),
        );
        assert!(
            r.success(),
            "scripts/cassandra --auth {} start on {} failed: {}",
            self.mode,
            self.addr,
            r.describe()
        );
        eprintln!(
            "secure: node {} ({}) ready after {:?}",
            self.addr,
            self.mode,
            t.elapsed()
        );
    }

    /// Drops the keyspaces and roles of earlier runs whose process is gone.
    fn drop_stale(&self) {
        let mine = std::process::id();
        let dead = |name: &str| {
            name.split('_')
                .find_map(|p| p.parse::<u32>().ok())
                .is_some_and(|pid| pid != mine && !Path::new(&format!("/proc/{pid}")).exists())
        };
        let ks = self.cql("SELECT keyspace_name FROM system_schema.keyspaces");
        for name in ks.lines().skip(1).map(str::trim) {
            if name.starts_with("cfsec_") && dead(name) {
                self.cql(&format!("DROP KEYSPACE IF EXISTS {name}"));
            }
        }
        let roles = self.cql("LIST ROLES");
        for line in roles.lines().skip(1) {
            let name = line.split('|').next().unwrap_or("").trim();
            if name.starts_with("cfsec_") && dead(name) {
                self.cql(&format!("DROP ROLE IF EXISTS {name}"));
            }
        }
    }

    /// Connection flags of the superuser (password from the environment).
    fn super_flags(&self) -> Vec<String> {
        let mut v = vec![
            "--username".to_string(),
            SUPERUSER.into(),
            "--tls".into(),
            "--tls_ca".into(),
            self.tls("ca.crt"),
        ];
        if self.mode == "--mtls" {
            v.extend(self.client_cert("client"));
        }
        v
    }

    /// `--tls_cert`/`--tls_key` of `$home/tls/NAME.crt` and `NAME.key`.
    fn client_cert(&self, name: &str) -> Vec<String> {
        vec![
            "--tls_cert".into(),
            self.tls(&format!("{name}.crt")),
            "--tls_key".into(),
            self.tls(&format!("{name}.key")),
        ]
    }
}

/// What this run set up on a node: its keyspace, a role with SELECT and
/// MODIFY on that keyspace only, and a role with LOGIN and no grant.
struct Setup {
    node: Node,
    keyspace: String,
    role: String,
    password: String,
    /// The password of `role`, mode 0600 (its first line).
    password_file: PathBuf,
    bare_role: String,
    bare_password: String,
    _dir: tempfile::TempDir,
}

/// A password no other text contains.
fn fresh_password(tag: &str) -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("Pw{tag}x{}x{n:x}Qz", std::process::id())
}

fn set_up(node: Node) -> Setup {
    node.start();
    node.drop_stale();
    let pid = std::process::id();
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() % 100_000)
        .unwrap_or(0);
    let keyspace = format!("cfsec_{pid}_{t}");

    // The schema, made by the superuser over TLS (password from the
    // environment).
    let mut args: Vec<String> = vec![
        "schema".into(),
        "--server".into(),
        node.addr.into(),
        "--keyspace".into(),
        keyspace.clone(),
    ];
    args.extend(node.super_flags());
    let r = run_with_timeout(
        Command::new(BIN)
            .args(&args)
            .env("CASSFS_PASSWORD", SUPERUSER_PASSWORD),
        SCHEMA_TIMEOUT,
    );
    assert!(
        r.success(),
        "cassfs schema as the superuser over TLS on {} failed: {}",
        node.addr,
        r.describe()
    );

    let role = format!("cfsec_rw_{pid}");
    let password = fresh_password("rw");
    let bare_role = format!("cfsec_none_{pid}");
    let bare_password = fresh_password("none");
    for (r, p) in [(&role, &password), (&bare_role, &bare_password)] {
        node.cql(&format!("DROP ROLE IF EXISTS {r}"));
        node.cql(&format!(
            "CREATE ROLE {r} WITH PASSWORD = '{p}' AND LOGIN = true"
        ));
    }
    // The rights a mount and the operator commands need (README): nothing
    // beyond the CassFS keyspace (every role reads the system tables).
    node.cql(&format!("GRANT SELECT ON KEYSPACE {keyspace} TO {role}"));
    node.cql(&format!("GRANT MODIFY ON KEYSPACE {keyspace} TO {role}"));

    let dir = tempfile::Builder::new()
        .prefix("cassfs-secure-")
        .tempdir()
        .expect("temporary directory");
    let password_file = dir.path().join("password");
    // The first line is the password; what follows is ignored.
    fs::write(&password_file, format!("{password}\nnot the password\n"))
        .expect("write the password file");
    fs::set_permissions(&password_file, fs::Permissions::from_mode(0o600))
        .expect("chmod the password file");
    Setup {
        node,
        keyspace,
        role,
        password,
        password_file,
        bare_role,
        bare_password,
        _dir: dir,
    }
}

/// The `--auth --tls` node (client certificates optional), set up once.
fn tls_node() -> &'static Setup {
    TLS_NODE.get_or_init(|| {
        set_up(Node {
            home: repo_root().join("target/cassandra-secure"),
            addr: "127.0.0.4",
            mode: "--tls",
        })
    })
}

/// The `--auth --mtls` node (a client certificate required), set up once.
fn mtls_node() -> &'static Setup {
    MTLS_NODE.get_or_init(|| {
        set_up(Node {
            home: repo_root().join("target/cassandra-mtls"),
            addr: "127.0.0.5",
            mode: "--mtls",
        })
    })
}

/// Tests of this file not finished yet: the last to finish (pass or fail)
/// stops the nodes, so the test binaries after this one do not share the
/// machine with them. (A filtered run leaves them running; a later start
/// reuses them.)
static UNFINISHED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(5);
static TLS_NODE: OnceLock<Setup> = OnceLock::new();
static MTLS_NODE: OnceLock<Setup> = OnceLock::new();

struct TestEnd;

impl Drop for TestEnd {
    fn drop(&mut self) {
        if UNFINISHED.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) != 1 {
            return;
        }
        for s in [TLS_NODE.get(), MTLS_NODE.get()].into_iter().flatten() {
            s.node.stop();
        }
    }
}

static OWNER: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(1);

fn next_owner() -> i64 {
    OWNER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

impl Setup {
    /// `--server --keyspace --owner --environment` of one volume.
    fn volume(&self, owner: i64) -> Vec<String> {
        vec![
            "--server".into(),
            self.node.addr.into(),
            "--keyspace".into(),
            self.keyspace.clone(),
            "--owner".into(),
            owner.to_string(),
            "--environment".into(),
            "sec".into(),
        ]
    }

    /// The limited role with its password file, over TLS verified by the
    /// node's CA (and the node's client certificate on the mTLS node).
    fn role_flags(&self) -> Vec<String> {
        let mut v = vec![
            "--username".to_string(),
            self.role.clone(),
            "--password_file".into(),
            self.password_file.display().to_string(),
        ];
        v.extend(self.tls_flags());
        v
    }

    fn tls_flags(&self) -> Vec<String> {
        let mut v = vec![
            "--tls".to_string(),
            "--tls_ca".into(),
            self.node.tls("ca.crt"),
        ];
        if self.node.mode == "--mtls" {
            v.extend(self.node.client_cert("client"));
        }
        v
    }

    /// Every password this run knows (none may be printed).
    fn secrets(&self) -> [&str; 2] {
        [&self.password, &self.bare_password]
    }
}

/// Mounts one volume; the daemon gets `CASSFS_PASSWORD=env_password`
/// (or no such variable).
fn mount(args: &[String], env_password: Option<&str>) -> Mount {
    let env: Vec<(&str, &str)> = env_password
        .map(|p| vec![("CASSFS_PASSWORD", p)])
        .unwrap_or_default();
    Mount::try_new_env(args, &env, &["CASSFS_PASSWORD"]).unwrap_or_else(|e| panic!("{e}"))
}

/// Asserts that `text` (named `what`) holds none of this run's passwords.
fn assert_no_secret(s: &Setup, what: &str, text: &str) {
    for p in s.secrets() {
        assert!(!text.contains(p), "{what} shows a password:\n{text}");
    }
}

/// The command line of process `pid`, arguments joined by spaces.
fn cmdline(pid: u32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/cmdline: {e}"));
    String::from_utf8_lossy(&raw).replace('\0', " ")
}

/// Runs `cassfs ARGS` (a mount on a fresh directory when ARGS start with a
/// flag, else a subcommand) that must fail: non-zero exit on its own within [`FAIL_WITHIN`],
/// nothing on stdout, one line on stderr starting `cassfs:` and naming one
/// of `words` (case-insensitive), no password in it, nothing left mounted.
/// Returns that line.
fn expect_failure(
    s: &Setup,
    what: &str,
    args: &[String],
    env_password: Option<&str>,
    words: &[&str],
) -> String {
    let dir = tempfile::Builder::new()
        .prefix("cassfs-secure-mnt-")
        .tempdir()
        .expect("temporary mount point");
    let mut all: Vec<String> = Vec::new();
    if args.first().is_none_or(|a| a.starts_with('-')) {
        all.extend(["--mount".into(), dir.path().display().to_string()]);
    }
    all.extend(args.iter().cloned());
    let mut cmd = Command::new(BIN);
    cmd.args(&all).env_remove("CASSFS_PASSWORD");
    if let Some(p) = env_password {
        cmd.env("CASSFS_PASSWORD", p);
    }
    let r = run_with_timeout(&mut cmd, FAIL_LIMIT);
    let mounted = is_mounted(dir.path());
    force_unmount(dir.path());
    assert!(
        !mounted,
        "{what}: something was left mounted: {}",
        r.describe()
    );
    assert!(
        r.status.is_some(),
        "{what}: still running after {FAIL_LIMIT:?}: {}",
        r.describe()
    );
    assert!(!r.success(), "{what}: succeeded: {}", r.describe());
    assert!(
        r.elapsed <= FAIL_WITHIN,
        "{what}: took {:?} to fail: {}",
        r.elapsed,
        r.describe()
    );
    assert!(
        r.stdout.trim().is_empty(),
        "{what}: stdout: {}",
        r.describe()
    );
    let mut err = r.stderr.trim_end();
    if TOLERATE_BROKEN_CHANNEL && err.contains(BROKEN_CHANNEL) {
        // The known multi-line driver text: only its first line is judged,
        // and the cause it lost cannot be asked for.
        eprintln!("secure: {what}: KNOWN BUG, multi-line error without its cause:\n{err}");
        assert_no_secret(s, what, err);
        err = err.lines().next().unwrap_or("");
        assert!(err.starts_with("cassfs: "), "{what}: {}", r.describe());
        return err.to_string();
    }
    assert_eq!(
        err.lines().count(),
        1,
        "{what}: the error is not one line: {}",
        r.describe()
    );
    assert!(err.starts_with("cassfs: "), "{what}: {}", r.describe());
    let lower = err.to_lowercase();
    assert!(
        words.iter().any(|w| lower.contains(&w.to_lowercase())),
        "{what}: the error names none of {words:?}: {err}"
    );
    assert_no_secret(s, what, err);
    eprintln!("secure: {what}: {:?}: {err}", r.elapsed);
    err.to_string()
}

/// Writes a few files and a directory on `m`; returns what was written.
fn write_tree(m: &Mount, seed: u64) -> Vec<(PathBuf, Vec<u8>)> {
    fs::create_dir(m.join("dir")).expect("mkdir");
    let files = vec![
        (
            PathBuf::from("small.txt"),
            b"over TLS, as a limited role\n".to_vec(),
        ),
        (PathBuf::from("dir/big.bin"), pattern(seed, 300_000)),
    ];
    for (p, data) in &files {
        write(&m.join(p), data);
    }
    files
}

fn check_tree(m: &Mount, files: &[(PathBuf, Vec<u8>)]) {
    for (p, data) in files {
        assert!(read(&m.join(p)) == *data, "{} differs", p.display());
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// A role with SELECT and MODIFY on the CassFS keyspace only mounts over
/// TLS with its password from a file, writes, reads back; a remount with
/// the password from the environment reads the same data.
#[test]
fn limited_role_mounts_over_tls_and_remount_reads_back() {
    let _end = TestEnd;
    let s = tls_node();
    let owner = next_owner();
    let mut args = s.volume(owner);
    args.extend(s.role_flags());
    let mut m = mount(&args, None);
    assert!(m.is_mounted());
    let files = write_tree(&m, unique_seed());
    check_tree(&m, &files);
    assert!(m.unmount().success(), "unmount: {}", m.output());
    drop(m);

    // Remount: the password from CASSFS_PASSWORD this time.
    let mut args = s.volume(owner);
    args.extend([
        "--username".to_string(),
        s.role.clone(),
        "--tls".into(),
        "--tls_ca".into(),
        s.node.tls("ca.crt"),
    ]);
    let mut m = mount(&args, Some(&s.password));
    check_tree(&m, &files);
    let listed = names(&m.join("dir"));
    assert_eq!(listed.len(), 1, "dir holds {listed:?}");
    // Still writable by this role after a remount.
    write(&m.join("again"), b"again");
    assert_eq!(read(&m.join("again")), b"again");
    assert!(m.unmount().success(), "unmount: {}", m.output());
}

/// The password shows neither on the daemon's command line (what `ps`
/// prints) nor in its output with `-debug`, from a file or the environment.
#[test]
fn password_stays_out_of_command_line_and_log() {
    let _end = TestEnd;
    let s = tls_node();
    for from_file in [true, false] {
        let how = if from_file {
            "password file"
        } else {
            "CASSFS_PASSWORD"
        };
        let mut args = s.volume(next_owner());
        args.push("-debug".into());
        args.extend(["-username".to_string(), s.role.clone()]);
        if from_file {
            args.extend([
                "-password_file".to_string(),
                s.password_file.display().to_string(),
            ]);
        }
        args.extend(["-tls".to_string(), "-tls_ca".into(), s.node.tls("ca.crt")]);
        let mut m = mount(&args, (!from_file).then_some(s.password.as_str()));
        let pid = m.pid().expect("daemon running");
        let line = cmdline(pid);
        assert!(line.contains(&s.role), "{how}: cmdline {line:?}");
        assert_no_secret(s, &format!("{how}: /proc/{pid}/cmdline"), &line);
        // Some traffic, including failures -debug logs.
        write(&m.join("f"), b"data");
        assert_eq!(read(&m.join("f")), b"data");
        assert!(fs::metadata(m.join("missing")).is_err());
        assert!(fs::create_dir(m.join("f")).is_err());
        assert!(m.unmount().success(), "{how}: unmount: {}", m.output());
        let out = m.output();
        assert!(out.contains("DEBUG"), "{how}: no debug output: {out}");
        assert_no_secret(s, &format!("{how}: the daemon's output"), &out);
    }
}

/// Login and TLS failures against the `--auth --tls` node: one line each,
/// quickly, nothing mounted, no password printed.
#[test]
fn login_and_tls_failures_are_one_line() {
    let _end = TestEnd;
    let s = tls_node();
    let vol = s.volume(next_owner());
    let with = |extra: &[String]| [vol.clone(), extra.to_vec()].concat();
    let ca = s.node.tls("ca.crt");
    let tls = vec!["--tls".to_string(), "--tls_ca".into(), ca.clone()];
    let user = |r: &str| vec!["--username".to_string(), r.to_string()];
    let dir = tempfile::tempdir().expect("temporary directory");
    let wrong_file = dir.path().join("wrong");
    let wrong = fresh_password("wrong");
    fs::write(&wrong_file, format!("{wrong}\n")).expect("write");
    let pwfile = |p: &Path| vec!["--password_file".to_string(), p.display().to_string()];

    let err = expect_failure(
        s,
        "wrong password",
        &with(&[user(&s.role), pwfile(&wrong_file), tls.clone()].concat()),
        None,
        &["authentication failed", "bad credentials"],
    );
    assert!(
        !err.contains(&wrong),
        "the wrong password is printed: {err}"
    );
    expect_failure(
        s,
        "wrong password from CASSFS_PASSWORD",
        &with(&[user(&s.role), tls.clone()].concat()),
        Some(&wrong),
        &["authentication failed", "bad credentials"],
    );
    expect_failure(
        s,
        "-username without a password",
        &with(&[user(&s.role), tls.clone()].concat()),
        None,
        &["CASSFS_PASSWORD"],
    );
    expect_failure(
        s,
        "a missing password file",
        &with(
            &[
                user(&s.role),
                pwfile(&dir.path().join("absent")),
                tls.clone(),
            ]
            .concat(),
        ),
        None,
        &["password file"],
    );
    expect_failure(
        s,
        "no login on an --auth node",
        &with(&tls),
        None,
        &["authentication"],
    );
    // The node speaks only TLS: it drops a plain connection, which the
    // driver reports as a reset; the error at least names the node.
    expect_failure(
        s,
        "no -tls on a TLS-only node",
        &with(&[user(&s.role), pwfile(&s.password_file)].concat()),
        None,
        &["127.0.0.4"],
    );
    expect_failure(
        s,
        "-tls_ca of another CA",
        &with(
            &[
                user(&s.role),
                pwfile(&s.password_file),
                vec![
                    "--tls".into(),
                    "--tls_ca".into(),
                    s.node.tls("other-ca.crt"),
                ],
            ]
            .concat(),
        ),
        None,
        &["certificate verify failed"],
    );
    let absent_ca = dir.path().join("no-such-ca.crt").display().to_string();
    let err = expect_failure(
        s,
        "a missing -tls_ca file",
        &with(
            &[
                user(&s.role),
                pwfile(&s.password_file),
                vec!["--tls".into(), "--tls_ca".into(), absent_ca.clone()],
            ]
            .concat(),
        ),
        None,
        &["TLS CA file"],
    );
    assert!(err.contains(&absent_ca), "the CA file is not named: {err}");
    expect_failure(
        s,
        "-tls_ca without -tls",
        &with(
            &[
                user(&s.role),
                pwfile(&s.password_file),
                vec!["--tls_ca".into(), ca],
            ]
            .concat(),
        ),
        None,
        &["need -tls"],
    );
    // A role that may log in but has no right on the keyspace.
    let err = expect_failure(
        s,
        "a role without grants",
        &with(&[user(&s.bare_role), tls.clone()].concat()),
        Some(&s.bare_password),
        &["permission"],
    );
    assert!(err.contains(&s.bare_role), "the role is not named: {err}");
    // An operator command fails the same way.
    let mut status = vec![
        "status".to_string(),
        "--server".into(),
        s.node.addr.into(),
        "--keyspace".into(),
        s.keyspace.clone(),
    ];
    status.extend([user(&s.role), pwfile(&wrong_file), tls].concat());
    expect_failure(
        s,
        "status with a wrong password",
        &status,
        None,
        &["authentication failed", "bad credentials"],
    );
}

/// Against the `--auth --mtls` node: the CA's client certificate mounts;
/// none, an expired one, one of another CA, or a key of another
/// certificate fail in one line.
#[test]
fn mutual_tls_needs_a_valid_client_certificate() {
    let _end = TestEnd;
    let s = mtls_node();
    let owner = next_owner();
    let mut args = s.volume(owner);
    args.extend(s.role_flags());
    let mut m = mount(&args, None);
    let files = write_tree(&m, unique_seed());
    check_tree(&m, &files);
    assert!(m.unmount().success(), "unmount: {}", m.output());
    drop(m);

    let base = [
        s.volume(owner),
        vec![
            "--username".into(),
            s.role.clone(),
            "--password_file".into(),
            s.password_file.display().to_string(),
            "--tls".into(),
            "--tls_ca".into(),
            s.node.tls("ca.crt"),
        ],
    ]
    .concat();
    let with = |extra: &[String]| [base.clone(), extra.to_vec()].concat();
    expect_failure(
        s,
        "no client certificate",
        &base,
        None,
        &["certificate required"],
    );
    expect_failure(
        s,
        "an expired client certificate",
        &with(&s.node.client_cert("expired")),
        None,
        &["certificate expired"],
    );
    // The node's answer to a certificate of an unknown CA is a bare TLS
    // alert ("internal error"): the line names TLS at least.
    expect_failure(
        s,
        "a client certificate of another CA",
        &with(&s.node.client_cert("other-client")),
        None,
        &["SSL", "TLS", "certificate"],
    );
    expect_failure(
        s,
        "a key that is not the certificate's",
        &with(&[
            "--tls_cert".to_string(),
            s.node.tls("client.crt"),
            "--tls_key".into(),
            s.node.tls("other-client.key"),
        ]),
        None,
        &["TLS key"],
    );
    expect_failure(
        s,
        "-tls_cert without -tls_key",
        &with(&["--tls_cert".to_string(), s.node.tls("client.crt")]),
        None,
        &["needs its key"],
    );
}

/// `cassfs status --json` and `volumes --json` over TLS as the limited
/// role (password from a file) see a live mount of that role.
#[test]
fn operator_commands_over_tls_as_limited_role() {
    let _end = TestEnd;
    let s = tls_node();
    let owner = next_owner();
    let mut args = s.volume(owner);
    args.extend(s.role_flags());
    let mut m = mount(&args, None);
    write(&m.join("f"), &pattern(unique_seed(), 10_000));
    let pid = m.pid().expect("daemon running");

    let run = |cmd: &str| -> Value {
        let mut a = vec![
            cmd.to_string(),
            "--json".into(),
            "--server".into(),
            s.node.addr.into(),
            "--keyspace".into(),
            s.keyspace.clone(),
            "--owner".into(),
            owner.to_string(),
        ];
        a.extend(s.role_flags());
        let r = run_with_timeout(
            Command::new(BIN).args(&a).env_remove("CASSFS_PASSWORD"),
            Duration::from_secs(120),
        );
        assert!(r.success(), "cassfs {cmd}: {}", r.describe());
        assert_no_secret(s, cmd, &format!("{}{}", r.stdout, r.stderr));
        serde_json::from_str(r.stdout.trim())
            .unwrap_or_else(|e| panic!("cassfs {cmd}: not JSON ({e}): {}", r.describe()))
    };

    let doc = run("status");
    let vols = doc["volumes"].as_array().expect("volumes array");
    let v = vols
        .iter()
        .find(|v| v["owner"] == owner && v["environment"] == "sec")
        .unwrap_or_else(|| panic!("the volume is not listed: {doc}"));
    let sessions = v["sessions"].as_array().expect("sessions array");
    assert!(
        sessions.iter().any(|x| x["pid"] == pid),
        "the mount (pid {pid}) has no live session: {doc}"
    );

    let doc = run("volumes");
    let v = doc["volumes"]
        .as_array()
        .expect("volumes array")
        .iter()
        .find(|v| v["owner"] == owner)
        .unwrap_or_else(|| panic!("the volume is not listed: {doc}"))
        .clone();
    assert!(v["files"].as_u64() >= Some(1), "files: {doc}");
    assert!(m.unmount().success(), "unmount: {}", m.output());
}
