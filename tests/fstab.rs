//! `mount -t fuse.cassfs` and fstab with the real mount(8) and mount.fuse3:
//! the command returns once the volume is served (the daemon detached, in
//! its own session, holding none of the caller's pipes), `umount` stops it,
//! a real fstab file works with `mount -T`, `ro` is a read-only mount, and
//! an unknown option or an unreachable server fails with a one-line reason
//! and leaves nothing mounted or running. Also `systemd-analyze verify` of
//! the units in contrib/systemd.
//!
//! mount(8) runs `cassfs` from a fixed PATH, so these tests link the binary
//! under test as /usr/local/sbin/cassfs while they run (under a lock file,
//! removed afterwards).

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Where mount.fuse3 finds `cassfs` (first directory of mount(8)'s PATH).
const LINK: &str = "/usr/local/sbin/cassfs";
/// Serializes the tests (of every process) that own [`LINK`].
const LINK_LOCK: &str = "/tmp/cassfs-test-sbin.lock";
/// A mount command must return within this (the daemon connects first).
const MOUNT_LIMIT: Duration = Duration::from_secs(60);
/// The daemon must be gone this long after `umount`.
const EXIT_LIMIT: Duration = Duration::from_secs(20);

/// The binary under test reachable as `cassfs` from mount(8)'s PATH while
/// this lives; removed on drop.
struct LinkedBinary {
    _lock: File,
}

impl LinkedBinary {
    fn install() -> LinkedBinary {
        cassandra_shared();
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LINK_LOCK)
            .unwrap_or_else(|e| panic!("open {LINK_LOCK}: {e}"));
        lock.lock()
            .unwrap_or_else(|e| panic!("lock {LINK_LOCK}: {e}"));
        match fs::symlink_metadata(LINK) {
            // A link left by a test process that died (we hold the lock).
            Ok(m) if m.file_type().is_symlink() => {
                fs::remove_file(LINK).unwrap_or_else(|e| panic!("remove {LINK}: {e}"))
            }
            Ok(_) => panic!("{LINK} exists and is not a link: these tests need that name"),
            Err(_) => {}
        }
        std::os::unix::fs::symlink(BIN, LINK).unwrap_or_else(|e| panic!("link {LINK}: {e}"));
        LinkedBinary { _lock: lock }
    }
}

impl Drop for LinkedBinary {
    fn drop(&mut self) {
        let _ = fs::remove_file(LINK);
    }
}

/// A mount point for mount(8); dropping it unmounts and ends any daemon
/// still serving it.
struct HelperMount {
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl HelperMount {
    fn new() -> HelperMount {
        let tmp = tempfile::Builder::new()
            .prefix("cassfs-fstab-")
            .tempdir()
            .expect("tempdir");
        let dir = fs::canonicalize(tmp.path())
            .expect("canonicalize")
            .join("mnt");
        fs::create_dir(&dir).expect("mkdir mnt");
        HelperMount { dir, _tmp: tmp }
    }

    fn path(&self) -> &Path {
        &self.dir
    }

    fn dir_str(&self) -> &str {
        self.dir.to_str().expect("utf-8 path")
    }
}

impl Drop for HelperMount {
    fn drop(&mut self) {
        if is_mounted(&self.dir) {
            let _ = run_with_timeout(
                Command::new("umount").arg(&self.dir),
                Duration::from_secs(15),
            );
            force_unmount(&self.dir);
        }
        wait_until(Duration::from_secs(10), || daemons(&self.dir).is_empty());
        for pid in daemons(&self.dir) {
            // SAFETY: kill(2) of a daemon this test started (its binary and
            // its private mount point).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Pids of `cassfs` daemons (the binary under test) serving `dir`.
fn daemons(dir: &Path) -> Vec<libc::pid_t> {
    let want = dir.to_string_lossy().into_owned();
    let bin = fs::canonicalize(BIN).unwrap_or_else(|_| PathBuf::from(BIN));
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == bin))
        .filter(|pid| {
            let cmd = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmd.split(|&b| b == 0)
                .any(|a| String::from_utf8_lossy(a).contains(want.as_str()))
        })
        .collect()
}

/// What a mount(8) run did.
struct Ran {
    code: Option<i32>,
    stderr: String,
    elapsed: Duration,
    /// Whether stdout and stderr reached end-of-file within 10 s of the
    /// command's exit (a daemon keeping them would tie up the caller).
    pipes_closed: bool,
}

impl Ran {
    fn describe(&self) -> String {
        format!(
            "exit {:?} after {:?}, pipes closed: {}; stderr:\n{}",
            self.code, self.elapsed, self.pipes_closed, self.stderr
        )
    }

    /// The non-empty lines of stderr.
    fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

/// Runs `mount ARGS` with piped stdout/stderr, killing it at
/// [`MOUNT_LIMIT`].
fn mount(args: &[&str]) -> Ran {
    let start = Instant::now();
    let mut child = Command::new("mount")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mount");
    let (tx, rx) = mpsc::channel();
    for mut pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        });
    }
    let code = loop {
        match child.try_wait().expect("wait for mount") {
            Some(st) => break st.code(),
            None if start.elapsed() > MOUNT_LIMIT => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => thread::sleep(Duration::from_millis(20)),
        }
    };
    let elapsed = start.elapsed();
    let mut out = String::new();
    let mut closed = 0;
    for _ in 0..2 {
        if let Ok(text) = rx.recv_timeout(Duration::from_secs(10)) {
            out.push_str(&text);
            closed += 1;
        }
    }
    Ran {
        code,
        stderr: out,
        elapsed,
        pipes_closed: closed == 2,
    }
}

/// SOURCE naming `v` with its keyspace and the test Cassandra.
fn source(v: &Volume) -> String {
    format!(
        "{}:{}.{}@{}",
        v.keyspace,
        v.owner,
        v.environment,
        cassandra_addr()
    )
}

/// The mount options of `dir` in /proc/mounts.
fn mount_options(dir: &Path) -> Vec<String> {
    let text = fs::read_to_string("/proc/mounts").expect("read /proc/mounts");
    let want = dir.to_string_lossy();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() > 3 && f[1] == want).then(|| f[3].split(',').map(str::to_string).collect())
        })
        .next_back()
        .unwrap_or_default()
}

/// Field `n` (1-based, after the command name) of /proc/PID/stat.
fn stat_field(pid: libc::pid_t, n: usize) -> Option<i64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    rest.split(' ').nth(n - 3)?.parse().ok()
}

/// Asserts the mount command succeeded and the volume is served at once.
#[track_caller]
fn assert_mounted(r: &Ran, m: &HelperMount) {
    assert_eq!(r.code, Some(0), "mount failed: {}", r.describe());
    assert!(
        is_cassfs_mounted(m.path()),
        "mount returned 0 but {} is not mounted yet: {}",
        m.dir_str(),
        r.describe()
    );
    assert!(
        r.pipes_closed,
        "the daemon kept the caller's pipes: {}",
        r.describe()
    );
}

/// Unmounts with umount(8) and waits until the daemon is gone.
#[track_caller]
fn umount_and_wait(m: &HelperMount) {
    let r = run_with_timeout(
        Command::new("umount").arg(m.path()),
        Duration::from_secs(15),
    );
    assert!(r.success(), "umount: {}", r.describe());
    assert!(
        wait_until(EXIT_LIMIT, || daemons(m.path()).is_empty()),
        "the daemon still runs {EXIT_LIMIT:?} after umount"
    );
    assert!(!is_mounted(m.path()), "still mounted after umount");
}

/// Asserts a failed mount: non-zero, one line naming `want`, nothing
/// mounted, no daemon left.
#[track_caller]
fn assert_refused(r: &Ran, m: &HelperMount, want: &str) {
    assert!(r.code.is_some(), "mount did not return: {}", r.describe());
    assert_ne!(r.code, Some(0), "mount succeeded: {}", r.describe());
    let lines = r.error_lines();
    assert_eq!(lines.len(), 1, "not one line: {}", r.describe());
    assert!(lines[0].contains(want), "{want:?} not in: {}", r.describe());
    assert!(
        !is_mounted(m.path()),
        "something is mounted: {}",
        r.describe()
    );
    assert!(
        wait_until(Duration::from_secs(5), || daemons(m.path()).is_empty()),
        "a daemon was left running: {}",
        r.describe()
    );
    assert!(r.pipes_closed, "pipes held: {}", r.describe());
}

#[test]
fn mount_t_fuse_cassfs_serves_the_volume_until_umount() {
    let _bin = LinkedBinary::install();
    let v = Volume::unique("fstab-t");
    let m = HelperMount::new();
    let opts = "allow_other,nodev,nosuid,noexec,entry_ttl=5,_netdev,nofail,\
                x-systemd.automount,comment=test,default_permissions";
    let r = mount(&["-t", "fuse.cassfs", &source(&v), m.dir_str(), "-o", opts]);
    assert_mounted(&r, &m);
    let opts = mount_options(m.path());
    for want in ["nodev", "nosuid", "noexec", "allow_other", "rw"] {
        assert!(opts.iter().any(|o| o == want), "{want} not in {opts:?}");
    }
    write_committed(&m.path().join("f"), b"via mount(8)").expect("write");
    assert_eq!(read(&m.path().join("f")), b"via mount(8)");

    let pids = daemons(m.path());
    assert_eq!(pids.len(), 1, "one daemon expected: {pids:?}");
    let pid = pids[0];
    assert_eq!(stat_field(pid, 6), Some(pid as i64), "not a session leader");
    let cwd = fs::read_link(format!("/proc/{pid}/cwd")).expect("daemon cwd");
    assert_eq!(cwd, Path::new("/"), "the daemon did not change to /");

    umount_and_wait(&m);
    let check = v.mount(&[]);
    assert_eq!(
        read(&check.join("f")),
        b"via mount(8)",
        "written to the volume"
    );
}

#[test]
fn fstab_line_mounts_with_mount_t_file() {
    let _bin = LinkedBinary::install();
    let v = Volume::unique("fstab-file");
    let m = HelperMount::new();
    let etc = tempfile::tempdir().expect("tempdir");
    let cfg = etc.path().join("cassfs.yaml");
    fs::write(
        &cfg,
        format!(
            "server: {}\nkeyspace: {}\nentry_ttl: 2\n",
            cassandra_addr(),
            v.keyspace
        ),
    )
    .expect("write config");
    let fstab = etc.path().join("fstab");
    fs::write(
        &fstab,
        format!(
            "# CassFS volume, keyspace and server from the config file\n\
             {}.{} {} fuse.cassfs _netdev,nofail,nodev,nosuid,allow_other,config={},\
             x-systemd.requires=network-online.target 0 0\n",
            v.owner,
            v.environment,
            m.dir_str(),
            cfg.display()
        ),
    )
    .expect("write fstab");
    let r = mount(&["-T", fstab.to_str().expect("utf-8"), m.dir_str()]);
    assert_mounted(&r, &m);
    let opts = mount_options(m.path());
    assert!(opts.iter().any(|o| o == "allow_other"), "{opts:?}");
    fs::create_dir(m.path().join("d")).expect("mkdir");
    write_committed(&m.path().join("d/f"), b"from fstab").expect("write");
    umount_and_wait(&m);
    let check = v.mount(&[]);
    assert_eq!(read(&check.join("d/f")), b"from fstab");
}

#[test]
fn ro_is_a_read_only_mount() {
    let _bin = LinkedBinary::install();
    let v = Volume::unique("fstab-ro");
    {
        let rw = v.mount(&[]);
        write_committed(&rw.join("f"), b"before").expect("write");
    }
    let m = HelperMount::new();
    let r = mount(&["-t", "fuse.cassfs", &source(&v), m.dir_str(), "-o", "ro"]);
    assert_mounted(&r, &m);
    assert!(mount_options(m.path()).iter().any(|o| o == "ro"), "not ro");
    assert_eq!(read(&m.path().join("f")), b"before");
    assert_errno(
        OpenOptions::new().write(true).open(m.path().join("f")),
        libc::EROFS,
        "open for writing",
    );
    assert_errno(File::create(m.path().join("new")), libc::EROFS, "create");
    assert_errno(fs::create_dir(m.path().join("d")), libc::EROFS, "mkdir");
    assert_errno(fs::remove_file(m.path().join("f")), libc::EROFS, "unlink");
    umount_and_wait(&m);
}

#[test]
fn unknown_option_or_bad_source_fails_and_mounts_nothing() {
    let _bin = LinkedBinary::install();
    let v = Volume::unique("fstab-bad");
    let m = HelperMount::new();
    let src = source(&v);
    let cases = [
        (
            src.as_str(),
            "allow_other,no_such_option",
            "unknown mount option 'no_such_option'",
        ),
        (src.as_str(), "owner=3", "already given"),
        (src.as_str(), "sync", "'sync'"),
        (src.as_str(), "workers=0", "workers"),
        ("7", "rw", "SOURCE '7'"),
        ("x.prod", "rw", "owner 'x'"),
    ];
    for (source, opts, want) in cases {
        let r = mount(&["-t", "fuse.cassfs", source, m.dir_str(), "-o", opts]);
        assert_refused(&r, &m, want);
    }
}

#[test]
fn unreachable_server_fails_and_mounts_nothing() {
    let _bin = LinkedBinary::install();
    let m = HelperMount::new();
    let r = mount(&[
        "-t",
        "fuse.cassfs",
        "cassfs:1.prod@127.0.0.1:1",
        m.dir_str(),
        "-o",
        "timeout=5",
    ]);
    assert_refused(&r, &m, "127.0.0.1:1");
    assert!(
        r.elapsed < Duration::from_secs(30),
        "too slow: {}",
        r.describe()
    );
    let missing = m.path().join("missing");
    let v = Volume::unique("fstab-missing");
    let r = Command::new("mount")
        .args(["-t", "fuse.cassfs", &source(&v)])
        .arg(&missing)
        .output()
        .expect("run mount");
    assert!(!r.status.success(), "mounted on a missing directory");
    assert!(daemons(&missing).is_empty());
}

/// Copies the units with their ExecStart pointing at the binary under test
/// and runs `systemd-analyze verify` on them (when it exists).
#[test]
fn systemd_units_verify() {
    let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(analyze) = analyze else {
        eprintln!("systemd_units_verify: skipped, systemd-analyze is not installed");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut units = Vec::new();
    for name in ["cassfs@.service", "cassfs-docker.service"] {
        let text = fs::read_to_string(repo_root().join("contrib/systemd").join(name))
            .unwrap_or_else(|e| panic!("read contrib/systemd/{name}: {e}"));
        assert!(
            text.contains("ExecStart=/usr/local/bin/cassfs "),
            "{name}: ExecStart"
        );
        for banned in [
            "PrivateMounts",
            "PrivateTmp",
            "ProtectSystem",
            "ProtectHome",
        ] {
            assert!(
                !text.contains(&format!("{banned}=")),
                "{name} sets {banned}"
            );
        }
        let path = dir.path().join(name);
        fs::write(&path, text.replace("/usr/local/bin/cassfs", BIN)).expect("write unit");
        units.push(path);
    }
    let r = run_with_timeout(
        Command::new(analyze).arg("verify").args(&units),
        Duration::from_secs(60),
    );
    assert!(r.success(), "systemd-analyze verify: {}", r.describe());
    assert!(r.stderr.trim().is_empty(), "warnings: {}", r.describe());
}
