//! The config file and `CASSFS_*` variables, on real mounts against the
//! real Cassandra: a file names the volume, a variable overrides the file, a
//! flag overrides the variable, operator commands take the keyspace from the
//! file, the files are searched in order, and bad keys, bad values and a
//! password in a readable file are one-line errors.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// Fast failures (no Cassandra, or a refused connection) come within this.
const FAST: Duration = Duration::from_secs(20);

/// Every `CASSFS_*` variable of this process except the tests' own: the
/// daemons under test run without them, so only what a test sets applies.
fn foreign_cassfs_vars() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with("CASSFS_") && !k.starts_with("CASSFS_TEST_"))
        .collect()
}

/// Writes `text` to `dir/name` with `mode`; its path.
fn write_config(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).expect("write the config file");
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod the config file");
    p
}

/// The YAML naming `v` (server, keyspace, owner, environment).
fn volume_yaml(v: &Volume) -> String {
    format!(
        "# a CassFS volume\nserver: {}\nkeyspace: {}\nowner: {}\nenvironment: {}\nentry_ttl: 5\n",
        cassandra_addr(),
        v.keyspace,
        v.owner,
        v.environment
    )
}

/// Mounts with `args` and the variables `set` (and no other CASSFS_*
/// variable of this process); panics with the daemon's output on failure.
fn mount_env(args: &[&str], set: &[(&str, &str)]) -> Mount {
    let remove = foreign_cassfs_vars();
    let remove: Vec<&str> = remove.iter().map(String::as_str).collect();
    Mount::try_new_env(args, set, &remove).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `cassfs ARGS` in `cwd` with `HOME` = `home` and the variables `set`.
fn run_in(cwd: &Path, home: &Path, args: &[&str], set: &[(&str, &str)]) -> RunResult {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(cwd).env("HOME", home);
    for k in foreign_cassfs_vars() {
        cmd.env_remove(k);
    }
    for (k, v) in set {
        cmd.env(k, v);
    }
    run_with_timeout(&mut cmd, FAST)
}

/// Asserts exit 2 (a bad setting) with one line on stderr; returns it.
#[track_caller]
fn one_line_error(r: &RunResult, what: &str) -> String {
    assert!(r.status.is_some(), "{what}: did not exit: {}", r.describe());
    assert_eq!(r.code(), Some(2), "{what}: {}", r.describe());
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: not one line: {}", r.describe());
    assert!(lines[0].starts_with("cassfs: "), "{what}: {}", r.describe());
    lines[0].to_string()
}

#[test]
fn file_then_variable_then_flag_choose_the_volume() {
    let a = Volume::unique("cfg-a");
    let b = Volume::unique("cfg-b");
    for (v, tag) in [(&a, b"volume a"), (&b, b"volume b")] {
        let m = v.mount(&[]);
        write_committed(&m.join("which"), tag).expect("write the marker");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir.path(), "cassfs.yaml", &volume_yaml(&a), 0o644);
    let cfg = cfg.to_str().expect("utf-8 path");
    let (b_owner, a_owner) = (b.owner.to_string(), a.owner.to_string());
    let b_vars = [
        ("CASSFS_OWNER", b_owner.as_str()),
        ("CASSFS_ENVIRONMENT", "cfg-b"),
    ];

    let m = mount_env(&["-config", cfg], &[]);
    assert_eq!(read(&m.join("which")), b"volume a", "the file's volume");
    drop(m);

    let m = mount_env(&["--config", cfg], &b_vars);
    assert_eq!(
        read(&m.join("which")),
        b"volume b",
        "variables over the file"
    );
    drop(m);

    let m = mount_env(
        &["--config", cfg, "-owner", &a_owner, "--environment=cfg-a"],
        &b_vars,
    );
    assert_eq!(read(&m.join("which")), b"volume a", "flags over variables");
    drop(m);

    // CASSFS_CONFIG names the file too, and variables alone name a volume.
    let m = mount_env(&[], &[("CASSFS_CONFIG", cfg)]);
    assert_eq!(read(&m.join("which")), b"volume a", "CASSFS_CONFIG");
    drop(m);
    let ks_vars = [
        ("CASSFS_SERVER", cassandra_addr()),
        ("CASSFS_KEYSPACE", b.keyspace.clone()),
        ("CASSFS_OWNER", b_owner.clone()),
        ("CASSFS_ENVIRONMENT", "cfg-b".into()),
        ("CASSFS_CONFIG", "/dev/null".into()),
    ];
    let ks_vars: Vec<(&str, &str)> = ks_vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let m = mount_env(&[], &ks_vars);
    assert_eq!(read(&m.join("which")), b"volume b", "variables alone");
}

#[test]
fn operator_commands_take_the_keyspace_but_not_the_volume_from_the_file() {
    let a = Volume::unique("cfg-op-a");
    let b = Volume::unique("cfg-op-b");
    for v in [&a, &b] {
        let m = v.mount(&[]);
        write_committed(&m.join("f"), b"x").expect("write");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    write_config(dir.path(), "cassfs.yaml", &volume_yaml(&a), 0o644);
    // ./cassfs.yaml is found in the working directory; its owner and
    // environment do not narrow `status`, which lists both volumes.
    let r = run_in(dir.path(), dir.path(), &["status", "--json"], &[]);
    assert!(r.success(), "status: {}", r.describe());
    for v in [&a, &b] {
        let owner = format!("\"owner\":{}", v.owner);
        assert!(
            r.stdout.replace(' ', "").contains(&owner),
            "status does not list owner {}: {}",
            v.owner,
            r.describe()
        );
    }
}

#[test]
fn config_files_are_searched_in_order() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let home = tempfile::tempdir().expect("tempdir");
    let empty = tempfile::tempdir().expect("tempdir");
    fs::create_dir(home.path().join(".cassfs")).expect("mkdir ~/.cassfs");
    let server = |port: u16| format!("server: 127.0.0.1:{port}\ntimeout: 3\n");
    write_config(cwd.path(), "cassfs.yaml", &server(11), 0o644);
    write_config(
        &home.path().join(".cassfs"),
        "cassfs.yaml",
        &server(12),
        0o644,
    );
    let explicit = write_config(empty.path(), "x.yaml", &server(13), 0o644);
    let cases = [
        (cwd.path(), vec!["status"], "127.0.0.1:11"),
        (empty.path(), vec!["status"], "127.0.0.1:12"),
        (
            cwd.path(),
            vec!["--config", explicit.to_str().expect("utf-8")],
            "127.0.0.1:13",
        ),
        (
            cwd.path(),
            vec!["status", "--server", "127.0.0.1:14"],
            "127.0.0.1:14",
        ),
    ];
    for (dir, mut args, want) in cases {
        if args[0] == "--config" {
            args.push("gc");
        }
        let r = run_in(dir, home.path(), &args, &[]);
        assert!(
            !r.success() && r.stderr.contains(want),
            "{args:?} in {}: expected a refusal naming {want}: {}",
            dir.display(),
            r.describe()
        );
    }
    let r = run_in(
        empty.path(),
        home.path(),
        &["status"],
        &[("CASSFS_SERVER", "127.0.0.1:15")],
    );
    assert!(
        r.stderr.contains("127.0.0.1:15"),
        "variable over file: {}",
        r.describe()
    );
}

#[test]
fn bad_keys_values_and_files_are_one_line_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let cases: Vec<(&str, &str, Vec<&str>)> = vec![
        (
            "keyspcae: cassfs\n",
            "bad-key.yaml",
            vec!["unknown key 'keyspcae'", "keyspace"],
        ),
        (
            "owner: seven\n",
            "bad-owner.yaml",
            vec!["invalid value 'seven' for owner"],
        ),
        (
            "workers: 0\n",
            "bad-workers.yaml",
            vec!["invalid value '0' for workers", "1..=1024"],
        ),
        ("entry_ttl: -1\n", "bad-ttl.yaml", vec!["entry_ttl"]),
        (
            "consistency: MOST\n",
            "bad-cl.yaml",
            vec!["consistency", "LOCAL_QUORUM"],
        ),
        ("owner: [1, 2]\n", "bad-list.yaml", vec!["line 1"]),
        ("owner:\n", "bad-empty.yaml", vec!["'owner' has no value"]),
        ("owner: 1\nowner: 2\n", "bad-twice.yaml", vec!["owner"]),
        ("{not yaml\n", "bad-yaml.yaml", vec!["line"]),
    ];
    for (text, name, wants) in cases {
        let p = write_config(d, name, text, 0o644);
        for args in [
            vec!["-config", p.to_str().expect("utf-8")],
            vec!["status", "--config", p.to_str().expect("utf-8")],
        ] {
            let r = run_in(d, d, &args, &[]);
            let line = one_line_error(&r, name);
            assert!(
                line.contains(p.to_str().expect("utf-8")),
                "{name}: no file name: {line}"
            );
            for want in &wants {
                assert!(line.contains(want), "{name}: {line} lacks {want:?}");
            }
        }
    }
    let missing = d.join("missing.yaml");
    let r = run_in(d, d, &["-config", missing.to_str().expect("utf-8")], &[]);
    let line = one_line_error(&r, "missing file");
    assert!(line.contains("missing.yaml"), "{line}");
    for (var, value, want) in [
        (
            "CASSFS_OWNER",
            "x",
            "CASSFS_OWNER: invalid value 'x' for owner",
        ),
        (
            "CASSFS_FEED_INTERVAL",
            "61",
            "CASSFS_FEED_INTERVAL: invalid value '61'",
        ),
        ("CASSFS_ALLOW_OTHER", "perhaps", "CASSFS_ALLOW_OTHER"),
    ] {
        let r = run_in(d, d, &["-config", "/dev/null"], &[(var, value)]);
        let line = one_line_error(&r, var);
        assert!(line.contains(want), "{var}: {line}");
    }
    // Variables that are not keys are not settings: no error for them.
    let r = run_in(
        d,
        d,
        &["status", "--config", "/dev/null", "--server", "127.0.0.1:1"],
        &[("CASSFS_NOT_A_KEY", "1"), ("CASSFS_CASSANDRA_HOME", "/x")],
    );
    assert!(r.stderr.contains("127.0.0.1:1"), "{}", r.describe());
}

#[test]
fn a_password_is_taken_only_from_a_private_file() {
    let v = Volume::unique("cfg-pw");
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = format!("pw-{}-secret", unique_seed());
    let text = format!(
        "{}username: cassfs_user\npassword: {secret}\ndebug: true\n",
        volume_yaml(&v)
    );
    let open = write_config(dir.path(), "open.yaml", &text, 0o644);
    let r = run_in(
        dir.path(),
        dir.path(),
        &["-config", open.to_str().expect("utf-8")],
        &[],
    );
    let line = one_line_error(&r, "group-readable file with a password");
    assert!(
        line.contains("chmod 600") && line.contains("open.yaml"),
        "{line}"
    );
    assert!(
        !line.contains(&secret),
        "the message shows the password: {line}"
    );

    // Private: accepted (the local node does not ask for a login), and the
    // password shows neither in the command line nor in the debug log.
    let private = write_config(dir.path(), "private.yaml", &text, 0o600);
    let m = mount_env(&["-config", private.to_str().expect("utf-8")], &[]);
    write_committed(&m.join("f"), b"with a login").expect("write");
    assert_eq!(read(&m.join("f")), b"with a login");
    let pid = m.pid().expect("daemon pid");
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).expect("read cmdline");
    assert!(!String::from_utf8_lossy(&cmdline).contains(&secret));
    let log = m.output();
    assert!(
        log.contains("[DEBUG]"),
        "debug: true in the file did not apply: {log}"
    );
    assert!(!log.contains(&secret), "the log shows the password: {log}");
}
