//! The command line: usage errors, `schema` against an unreachable server,
//! `--version`, bad mount inputs failing fast, and Go-style flags.

mod common;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::time::Duration;

use common::*;

/// Fast failures must come within this.
const FAST: Duration = Duration::from_secs(10);
/// A little slack for process start on a loaded machine.
const SLACK: Duration = Duration::from_secs(2);

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn run(args: &[OsString], mountpoint: Option<&std::path::Path>) -> RunResult {
    let refs: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    run_cassfs(&refs, FAST + SLACK + SLACK, mountpoint)
}

/// Asserts a fast, non-zero exit with a one-line message on stderr; returns
/// the message.
#[track_caller]
fn assert_fails_fast(r: &RunResult, what: &str) -> String {
    assert!(
        r.status.is_some(),
        "{what}: cassfs did not exit within {:?}: {}",
        FAST + SLACK + SLACK,
        r.describe()
    );
    assert!(
        r.elapsed <= FAST + SLACK,
        "{what}: took {:?} (more than {FAST:?}): {}",
        r.elapsed,
        r.describe()
    );
    assert!(!r.success(), "{what}: exit status 0: {}", r.describe());
    let msg = r.stderr.trim().to_string();
    assert!(
        !msg.is_empty(),
        "{what}: nothing on stderr: {}",
        r.describe()
    );
    assert_eq!(
        msg.lines().filter(|l| !l.trim().is_empty()).count(),
        1,
        "{what}: the message is not one line: {}",
        r.describe()
    );
    msg
}

#[test]
fn unknown_flag_exits_2_with_usage() {
    for flag in ["--no-such-flag", "-bogus=1"] {
        let r = run(&os(&[flag]), None);
        assert_eq!(r.code(), Some(2), "{flag}: {}", r.describe());
        assert!(
            r.stderr.to_lowercase().contains("usage"),
            "{flag}: no usage on stderr: {}",
            r.describe()
        );
    }
}

#[test]
fn schema_against_unreachable_server_fails_fast_naming_it() {
    let r = run(
        &os(&[
            "schema",
            "--server",
            "127.0.0.1:1",
            "--keyspace",
            "cfst_never_created",
        ]),
        None,
    );
    assert!(r.status.is_some(), "did not exit: {}", r.describe());
    assert!(r.elapsed <= FAST + SLACK, "too slow: {}", r.describe());
    assert!(!r.success(), "exit 0: {}", r.describe());
    assert!(
        r.stderr.contains("127.0.0.1:1"),
        "stderr does not name the address: {}",
        r.describe()
    );
}

/// Whether `s` contains a run of at least 7 hexadecimal digits (a git
/// revision, full or abbreviated).
fn has_git_revision(s: &str) -> bool {
    s.split(|c: char| !c.is_ascii_hexdigit())
        .any(|w| w.len() >= 7 && w.len() <= 40)
}

#[test]
fn version_names_a_git_revision() {
    let r = run(&os(&["--version"]), None);
    assert!(r.success(), "--version failed: {}", r.describe());
    let text = format!("{}{}", r.stdout, r.stderr);
    assert!(
        has_git_revision(&text),
        "--version shows no git revision: {}",
        r.describe()
    );
    assert!(!has_git_revision("cassfs 0.1.0"), "the helper itself");
}

#[test]
fn mount_point_missing_fails_fast() {
    let ks = shared_keyspace();
    let missing = std::env::temp_dir().join(format!("cassfs-missing-{}", unique_seed()));
    let r = run(&mount_args_with(&ks, &missing, &[]), Some(&missing));
    let msg = assert_fails_fast(&r, "missing mount point");
    assert!(
        msg.contains(missing.to_str().expect("utf-8")),
        "the message does not name the mount point: {msg}"
    );
}

#[test]
fn mount_point_that_is_a_file_fails_fast() {
    let ks = shared_keyspace();
    let file = tempfile::NamedTempFile::new().expect("create a temp file");
    let path = file.path().to_str().expect("utf-8 temp path").to_string();
    let r = run(&mount_args_with(&ks, file.path(), &[]), Some(file.path()));
    let msg = assert_fails_fast(&r, "file as mount point");
    assert!(
        msg.contains(&path),
        "the message does not name the mount point: {msg}"
    );
}

/// The common arguments for a mount that would succeed but for `bad`.
fn mount_args_with(ks: &str, dir: &std::path::Path, bad: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--mount".into(), dir.as_os_str().to_os_string()];
    args.extend(os(&[
        "--server",
        &cassandra_addr(),
        "--keyspace",
        ks,
        "--environment",
        "cli",
    ]));
    if !bad.iter().any(|b| b.starts_with("--owner")) {
        args.extend(os(&["--owner", "1"]));
    }
    args.extend(os(bad));
    args
}

#[test]
fn negative_ttl_fails_fast() {
    let ks = shared_keyspace();
    for bad in [
        &["--entry_ttl=-1"][..],
        &["--negative_ttl=-0.5"][..],
        &["--fcache_ttl=-3"][..],
    ] {
        let dir = Mount::fresh_dir();
        let r = run(&mount_args_with(&ks, &dir, bad), Some(&dir));
        let _ = fs::remove_dir(&dir);
        assert_fails_fast(&r, &format!("{bad:?}"));
    }
}

#[test]
fn non_integer_owner_fails_fast() {
    let ks = shared_keyspace();
    let dir = Mount::fresh_dir();
    let r = run(&mount_args_with(&ks, &dir, &["--owner", "abc"]), Some(&dir));
    let _ = fs::remove_dir(&dir);
    let msg = assert_fails_fast(&r, "--owner abc");
    assert!(
        msg.contains("abc") || msg.to_lowercase().contains("owner"),
        "the message names neither the flag nor the value: {msg}"
    );
}

#[test]
fn keyspace_without_schema_fails_fast() {
    cassandra_shared();
    let ks = unique_keyspace_name("noschema");
    let dir = Mount::fresh_dir();
    let r = run(&mount_args_with(&ks, &dir, &[]), Some(&dir));
    let _ = fs::remove_dir(&dir);
    let msg = assert_fails_fast(&r, "keyspace without schema");
    assert!(
        msg.contains(&ks),
        "the message does not name the keyspace: {msg}"
    );
}

#[test]
fn unreachable_cassandra_fails_fast_on_mount() {
    let dir = Mount::fresh_dir();
    let mut args: Vec<OsString> = vec!["--mount".into(), dir.as_os_str().to_os_string()];
    args.extend(os(&[
        "--server",
        "127.0.0.1:1",
        "--keyspace",
        "cfst_whatever",
        "--owner",
        "1",
    ]));
    let r = run(&args, Some(&dir));
    let _ = fs::remove_dir(&dir);
    let msg = assert_fails_fast(&r, "unreachable Cassandra");
    assert!(
        msg.contains("127.0.0.1:1"),
        "the message does not name the address: {msg}"
    );
}

#[test]
fn go_style_flags_mount() {
    let ks = shared_keyspace();
    let dir = Mount::fresh_dir();
    let server = format!("-server={}", cassandra_addr());
    let args: Vec<OsString> = vec![
        "-mount".into(),
        dir.as_os_str().to_os_string(),
        "-keyspace".into(),
        ks.clone().into(),
        "-owner=3".into(),
        server.into(),
        "-environment".into(),
        "gostyle".into(),
        "-entry_ttl=0.5".into(),
    ];
    let m = Mount::spawn_raw(&dir, &args).unwrap_or_else(|e| panic!("Go-style mount: {e}"));
    let f = m.join("hello.txt");
    fs::write(&f, b"go style\n").expect("write through the Go-style mount");
    assert_eq!(
        fs::read(&f).expect("read back"),
        b"go style\n",
        "content read back"
    );
}

#[test]
fn gnu_equals_style_flags_mount() {
    let ks = shared_keyspace();
    let dir = Mount::fresh_dir();
    let args: Vec<OsString> = vec![
        format!("--mount={}", dir.display()).into(),
        format!("--keyspace={ks}").into(),
        "--owner=4".into(),
        format!("--server={}", cassandra_addr()).into(),
        "--environment=gnustyle".into(),
        "--workers=3".into(),
        "--consistency=ONE".into(),
        "--timeout=5".into(),
        "--cache_size=1048576".into(),
    ];
    let m = Mount::spawn_raw(&dir, &args).unwrap_or_else(|e| panic!("GNU-style mount: {e}"));
    fs::create_dir(m.join("d")).expect("mkdir through the GNU-style mount");
    assert!(m.join("d").is_dir(), "the new directory is a directory");
}

#[test]
fn mount_shows_fstype_fuse_cassfs() {
    let m = Volume::unique("fstype").mount(&[]);
    assert_eq!(
        mount_fstype(m.path()).as_deref(),
        Some("fuse.cassfs"),
        "the fstype column of /proc/mounts for {}",
        m.path().display()
    );
}
