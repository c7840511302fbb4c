//! Usage counters, `df` and quotas, on real mounts against the real
//! Cassandra (default flags):
//! - statvfs follows what is written and deleted (bytes and inodes), also
//!   on another mount of the volume;
//! - `cassfs quota set/get/rm` (text, `--json`, one-line errors), the quota
//!   as df's size, usage and quota in `cassfs status --json`;
//! - a byte quota refuses growth with EDQUOT and leaves each file its old
//!   content (or absent/empty), checked from a fresh mount; deletes and
//!   truncates are always allowed;
//! - an inode quota refuses creates (not links or renames);
//! - two mounts writing at once (threads started on a barrier) both stop at
//!   the quota, within the documented overshoot, and the counters are exact;
//! - `cassfs fsck --repair` corrects counters made wrong on purpose, and
//!   those a `kill -9` of a writing daemon left.
//! - `clone` gives the new volume its counters, `rm-volume` brings them to
//!   zero and removes the quota.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::*;

/// How long one operator command may take on a busy 2-core machine.
const CMD_LIMIT: Duration = Duration::from_secs(180);
/// How long a mount may take to see a change of its quota or of another
/// mount's usage (it reads them every second).
const SEEN: Duration = Duration::from_secs(20);
/// The overshoot allowed to two mounts writing at once (README "Quotas
/// and df": about what the other mounts write between two reads of the
/// counters near the quota; measured 0-1 MiB here).
const OVERSHOOT_MAX: u64 = 4 << 20;

/// `cassfs ARGS --server ... --keyspace K --timeout 60`.
fn cassfs(vol: &Volume, args: &[&str]) -> RunResult {
    let addr = cassandra_addr();
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .args(["--server", &addr, "--keyspace", &vol.keyspace])
        .args(["--timeout", "60"]);
    run_with_timeout(&mut cmd, CMD_LIMIT)
}

/// Runs a command with `--json` that must succeed; its JSON document.
#[track_caller]
fn cassfs_json(vol: &Volume, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let r = cassfs(vol, &all);
    assert!(r.success(), "cassfs {args:?}: {}", r.describe());
    serde_json::from_str(r.stdout.trim())
        .unwrap_or_else(|e| panic!("cassfs {args:?} --json: no JSON ({e}): {}", r.describe()))
}

/// Asserts that a command failed with one line on stderr naming `needle`.
#[track_caller]
fn assert_refused(r: &RunResult, needle: &str, what: &str) {
    assert!(
        !r.success() && r.status.is_some(),
        "{what}: {}",
        r.describe()
    );
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: not one line: {}", r.describe());
    assert!(lines[0].contains(needle), "{what}: {}", r.describe());
}

/// `OWNER.ENVIRONMENT`.
fn name(vol: &Volume) -> String {
    format!("{}.{}", vol.owner, vol.environment)
}

/// A number of a JSON document (`None`: null or absent).
fn num(doc: &Value, path: &[&str]) -> Option<u64> {
    path.iter().fold(doc, |v, p| &v[*p]).as_u64()
}

/// What df shows of a mount: (size in bytes, used bytes, inodes, used inodes).
fn df(dir: &Path) -> (u64, u64, u64, u64) {
    let s = statvfs(dir).unwrap_or_else(|e| panic!("statvfs {}: {e}", dir.display()));
    let bs = s.f_frsize as u64;
    (
        s.f_blocks as u64 * bs,
        (s.f_blocks - s.f_bfree) as u64 * bs,
        s.f_files as u64,
        (s.f_files - s.f_ffree) as u64,
    )
}

/// Waits until `f` holds for df of `dir`, or fails with what df shows.
#[track_caller]
fn wait_df(dir: &Path, what: &str, f: impl Fn((u64, u64, u64, u64)) -> bool) {
    let ok = wait_until(SEEN, || f(df(dir)));
    assert!(ok, "{what}: df of {} shows {:?}", dir.display(), df(dir));
}

/// Sets a quota with the command; its JSON document.
fn set_quota(vol: &Volume, limits: &[&str]) -> Value {
    let n = name(vol);
    let mut args = vec!["quota", "set", &n];
    args.extend_from_slice(limits);
    cassfs_json(vol, &args)
}

/// Bytes used within the rounding of df (to 4 KiB blocks, per volume).
fn near(used: u64, want: u64) -> bool {
    used >= want && used < want + 4096
}

#[test]
fn df_follows_what_is_written_and_deleted() {
    let vol = Volume::unique("df");
    let m = vol.mount(&[]);
    let (size, used0, inodes, iused0) = df(m.path());
    assert!(size > 1 << 40 && inodes > 1 << 30, "no quota: a large size");
    assert_eq!((used0, iused0), (0, 1), "a new volume holds its root only");
    fs::create_dir(m.join("d")).expect("mkdir");
    let sizes = [10usize, 70_000, 2_500_000];
    for (i, n) in sizes.iter().enumerate() {
        write(&m.join(format!("d/f{i}")), &pattern(i as u64, *n));
    }
    std::os::unix::fs::symlink("d/f0", m.join("l")).expect("symlink");
    let bytes: u64 = sizes.iter().map(|n| *n as u64).sum();
    let (_, used, _, iused) = df(m.path());
    assert!(near(used, bytes), "df used {used}, written {bytes}");
    assert_eq!(iused, 6, "root, d, three files, a symlink");
    // Another mount of the volume reads the same counters.
    let other = vol.mount(&[]);
    wait_df(other.path(), "another mount", |(_, u, _, i)| {
        near(u, bytes) && i == 6
    });
    // Overwrites count their change of size.
    write(&m.join("d/f2"), &pattern(9, 1_000_000));
    let bytes = bytes - 1_500_000;
    assert!(near(df(m.path()).1, bytes), "{:?}", df(m.path()));
    for i in 0..3 {
        fs::remove_file(m.join(format!("d/f{i}"))).expect("unlink");
    }
    fs::remove_file(m.join("l")).expect("unlink symlink");
    fs::remove_dir(m.join("d")).expect("rmdir");
    assert_eq!(df(m.path()).1, 0, "deletes give the bytes back");
    assert_eq!(df(m.path()).3, 1, "deletes give the inodes back");
    wait_df(
        other.path(),
        "another mount after deletes",
        |(_, u, _, i)| u == 0 && i == 1,
    );
}

#[test]
fn quota_command_and_df_size() {
    let vol = Volume::unique("q");
    let m = vol.mount(&[]);
    write(&m.join("f"), &pattern(1, 100_000));
    let doc = set_quota(&vol, &["--bytes", "10M", "--inodes", "50"]);
    assert_eq!(num(&doc, &["quota", "max_bytes"]), Some(10 << 20), "{doc}");
    assert_eq!(num(&doc, &["quota", "max_inodes"]), Some(50), "{doc}");
    assert_eq!(num(&doc, &["usage", "bytes"]), Some(100_000), "{doc}");
    assert_eq!(num(&doc, &["usage", "inodes"]), Some(2), "{doc}");
    wait_df(m.path(), "the quota as df's size", |(s, _, i, _)| {
        s == 10 << 20 && i == 50
    });
    let (_, used, _, iused) = df(m.path());
    assert!(near(used, 100_000) && iused == 2, "{:?}", df(m.path()));

    let n = name(&vol);
    let got = cassfs_json(&vol, &["quota", "get", &n]);
    assert_eq!(got["quota"], doc["quota"], "get: {got}");
    let text = cassfs(&vol, &["quota", "get", &n]);
    assert!(
        text.success() && text.stdout.contains("10.0 MiB") && text.stdout.contains("of 50 inodes"),
        "{}",
        text.describe()
    );
    let o = vol.owner.to_string();
    let st = cassfs_json(&vol, &["status", "--owner", &o]);
    let v = &st["volumes"][0];
    assert_eq!(num(v, &["quota", "max_bytes"]), Some(10 << 20), "{st}");
    assert_eq!(num(v, &["usage", "bytes"]), Some(100_000), "{st}");
    assert!(
        num(v, &["created_ns"]).is_some(),
        "numbers stay numbers: {st}"
    );
    let text = cassfs(&vol, &["status", "--owner", &o]);
    assert!(
        text.stdout.contains(" ago (20") && text.stdout.contains("Z)"),
        "status shows ages and UTC times: {}",
        text.describe()
    );

    // One limit changed, the other left; `none` removes one.
    let doc = set_quota(&vol, &["--inodes", "none"]);
    assert_eq!(num(&doc, &["quota", "max_bytes"]), Some(10 << 20), "{doc}");
    assert_eq!(doc["quota"]["max_inodes"], Value::Null, "{doc}");
    let rm = cassfs_json(&vol, &["quota", "rm", &n]);
    assert_eq!(rm["removed"], Value::Bool(true), "{rm}");
    let got = cassfs_json(&vol, &["quota", "get", &n]);
    assert_eq!(got["quota"]["max_bytes"], Value::Null, "{got}");
    wait_df(m.path(), "no quota", |(s, _, _, _)| s > 1 << 40);

    // Hostile input: one line, nothing changed.
    let r = cassfs(&vol, &["quota", "set", &n]);
    assert_refused(&r, "--bytes", "set without a limit");
    let ghost = format!("{}.nowhere", vol.owner);
    let r = cassfs(&vol, &["quota", "set", &ghost, "--bytes", "1G"]);
    assert_refused(&r, "no volume", "set on a volume that does not exist");
    for (bad, needle) in [("0", "at least 1"), ("12Q", "not a size"), ("-1", "")] {
        let r = cassfs(&vol, &["quota", "set", &n, "--bytes", bad]);
        assert_eq!(r.code(), Some(2), "--bytes {bad}: {}", r.describe());
        assert!(r.stderr.contains(needle), "{}", r.describe());
    }
    let r = cassfs(&vol, &["quota", "get", "seven.prod"]);
    assert_eq!(r.code(), Some(2), "{}", r.describe());
    assert!(r.stderr.contains("OWNER.ENVIRONMENT"), "{}", r.describe());
    let got = cassfs_json(&vol, &["quota", "get", &n]);
    assert_eq!(got["quota"]["max_bytes"], Value::Null, "{got}");
}

#[test]
fn byte_quota_refuses_growth_and_keeps_old_content() {
    let vol = Volume::unique("qb");
    let m = vol.mount(&[]);
    let a = m.join("a");
    write_committed(&a, &pattern(1, 1_000_000)).expect("write a");
    set_quota(&vol, &["--bytes", "2M"]);
    wait_df(m.path(), "the quota", |(s, ..)| s == 2 << 20);

    // A new file that does not fit: EDQUOT; nothing of it stays.
    let b = m.join("b");
    assert_errno(
        write_committed(&b, &pattern(2, 1_500_000)),
        libc::EDQUOT,
        "a new file past the quota",
    );
    // An overwrite that would grow past the quota: the old content stays.
    assert_errno(
        write_committed(&a, &pattern(3, 3_000_000)),
        libc::EDQUOT,
        "an overwrite past the quota",
    );
    assert_eq!(read(&a), pattern(1, 1_000_000), "a lost its old content");
    // What fits is written.
    write_committed(&m.join("c"), &pattern(4, 500_000)).expect("a file that fits");
    let fresh = vol.mount(&[]);
    assert_eq!(read(&fresh.join("a")), pattern(1, 1_000_000));
    assert_eq!(read(&fresh.join("c")), pattern(4, 500_000));
    match fs::read(fresh.join("b")) {
        Ok(data) => assert!(data.is_empty(), "b holds {} bytes", data.len()),
        Err(e) => assert_eq!(errno(&e), libc::ENOENT, "{e}"),
    }
    drop(fresh);

    // Over the quota (lowered under the usage), shrinking is allowed.
    set_quota(&vol, &["--bytes", "100K"]);
    wait_df(m.path(), "the lower quota", |(s, ..)| s == 100 << 10);
    assert_errno(
        fs::OpenOptions::new()
            .append(true)
            .open(&a)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"more")),
        libc::EDQUOT,
        "an append over the quota",
    );
    fs::OpenOptions::new()
        .write(true)
        .open(&a)
        .and_then(|f| f.set_len(10_000))
        .expect("truncate over the quota");
    fs::remove_file(m.join("c")).expect("unlink over the quota");
    assert!(near(df(m.path()).1, 10_000), "{:?}", df(m.path()));
    write_committed(&m.join("d"), &pattern(5, 50_000)).expect("room again");
    let fresh = vol.mount(&[]);
    assert_eq!(read(&fresh.join("a")), pattern(1, 10_000));
    assert_eq!(read(&fresh.join("d")), pattern(5, 50_000));
}

#[test]
fn inode_quota_refuses_creates() {
    let vol = Volume::unique("qi");
    let m = vol.mount(&[]);
    fs::create_dir(m.join("d")).expect("mkdir");
    set_quota(&vol, &["--inodes", "5"]);
    wait_df(m.path(), "the inode quota", |(_, _, i, _)| i == 5);
    write(&m.join("f1"), b"1");
    write(&m.join("d/f2"), b"2");
    std::os::unix::fs::symlink("f1", m.join("s")).expect("the fifth inode");
    assert_errno(
        fs::write(m.join("f3"), b"3"),
        libc::EDQUOT,
        "create past the quota",
    );
    assert_errno(
        fs::create_dir(m.join("e")),
        libc::EDQUOT,
        "mkdir past the quota",
    );
    assert_errno(
        std::os::unix::fs::symlink("f1", m.join("s2")),
        libc::EDQUOT,
        "symlink past the quota",
    );
    // No new inode: allowed.
    fs::hard_link(m.join("f1"), m.join("d/f1b")).expect("link at the quota");
    fs::rename(m.join("d/f2"), m.join("f2")).expect("rename at the quota");
    write(&m.join("f1"), b"rewritten");
    fs::remove_file(m.join("s")).expect("unlink");
    write(&m.join("f3"), b"3");
    let fresh = vol.mount(&[]);
    assert_eq!(read(&fresh.join("f3")), b"3");
    assert_eq!(read(&fresh.join("d/f1b")), b"rewritten");
    assert!(!fresh.join("e").exists() && !fresh.join("s2").exists());
    assert_eq!(df(fresh.path()).3, 5);
}

/// One writer: 256 KiB files into `dir` until the quota refuses one;
/// (files committed, files refused).
fn fill(dir: &Path, seed: u64, barrier: &Barrier) -> (Vec<String>, Vec<String>) {
    fs::create_dir(dir).expect("mkdir");
    barrier.wait();
    let (mut done, mut refused) = (Vec::new(), Vec::new());
    let start = Instant::now();
    for n in 0.. {
        let name = format!("f{n}");
        match write_committed(&dir.join(&name), &pattern(seed + n, 256 << 10)) {
            Ok(()) => done.push(name),
            Err(e) if errno(&e) == libc::EDQUOT => {
                refused.push(name);
                break;
            }
            Err(e) => panic!("{}: {e}", dir.display()),
        }
        assert!(start.elapsed() < Duration::from_secs(300), "never refused");
    }
    (done, refused)
}

#[test]
fn two_mounts_stop_at_the_quota() {
    let vol = Volume::unique("q2");
    let a = vol.mount(&[]);
    let b = vol.mount(&[]);
    let quota: u64 = 24 << 20;
    set_quota(&vol, &["--bytes", "24M"]);
    for m in [&a, &b] {
        wait_df(m.path(), "the quota", |(s, ..)| s == quota);
    }
    let barrier = Arc::new(Barrier::new(2));
    let seed = unique_seed();
    let writers: Vec<_> = [a.join("a"), b.join("b")]
        .into_iter()
        .enumerate()
        .map(|(i, dir)| {
            let barrier = barrier.clone();
            let s = seed.wrapping_add(i as u64 * 1_000_000);
            thread::spawn(move || {
                let r = fill(&dir, s, &barrier);
                (dir, s, r)
            })
        })
        .collect();
    let results: Vec<_> = writers
        .into_iter()
        .map(|w| w.join().expect("a writer panicked"))
        .collect();
    drop(a);
    drop(b);
    let fresh = vol.mount(&[]);
    let mut total = 0u64;
    for (dir, seed, (done, refused)) in &results {
        let sub = fresh.join(dir.file_name().expect("a directory name"));
        for (n, name) in done.iter().enumerate() {
            let want = pattern(seed + n as u64, 256 << 10);
            assert!(read(&sub.join(name)) == want, "{name}: not its content");
            total += want.len() as u64;
        }
        for name in refused {
            match fs::read(sub.join(name)) {
                Ok(data) => assert!(data.is_empty(), "{name}: {} bytes", data.len()),
                Err(e) => assert_eq!(errno(&e), libc::ENOENT, "{name}: {e}"),
            }
        }
    }
    let over = total.saturating_sub(quota);
    eprintln!(
        "two_mounts_stop_at_the_quota: {} + {} files of 256 KiB committed, {total} bytes \
         for a quota of {quota}: overshoot {over} bytes",
        results[0].2 .0.len(),
        results[1].2 .0.len()
    );
    assert!(total + (256 << 10) > quota, "stopped early: {total}");
    assert!(over <= OVERSHOOT_MAX, "overshoot {over} > {OVERSHOOT_MAX}");
    let got = cassfs_json(&vol, &["quota", "get", &name(&vol)]);
    assert_eq!(num(&got, &["usage", "bytes"]), Some(total), "{got}");
}

/// `fsck` of the volume with `extra`, `--json`; (exit code, document).
fn fsck(vol: &Volume, extra: &[&str]) -> (Option<i32>, Value) {
    let o = vol.owner.to_string();
    let mut args = vec!["fsck", "--owner", &o, "--environment", &vol.environment];
    args.extend_from_slice(extra);
    args.push("--json");
    let r = cassfs(vol, &args);
    let doc = serde_json::from_str(r.stdout.trim())
        .unwrap_or_else(|e| panic!("fsck --json ({e}): {}", r.describe()));
    (r.code(), doc)
}

#[test]
fn fsck_repairs_wrong_counters() {
    let vol = Volume::unique("qf");
    let m = vol.mount(&[]);
    fs::create_dir(m.join("d")).expect("mkdir");
    write(&m.join("d/f"), &pattern(1, 300_000));
    drop(m);
    assert_eq!(fsck(&vol, &[]).0, Some(0), "counters kept by the mount");
    cql(&format!(
        "UPDATE {}.usage SET bytes = bytes + 777, inodes = inodes - 3 \
         WHERE owner = {} AND environment = '{}'",
        vol.keyspace, vol.owner, vol.environment
    ));
    let (code, doc) = fsck(&vol, &[]);
    assert_eq!(code, Some(4), "{doc}");
    assert_eq!(num(&doc, &["found", "usage_counters"]), Some(1), "{doc}");
    let (code, doc) = fsck(&vol, &["--repair"]);
    assert_eq!(code, Some(1), "{doc}");
    assert_eq!(num(&doc, &["repaired", "usage_counters"]), Some(1), "{doc}");
    assert_eq!(fsck(&vol, &[]).0, Some(0), "clean after the repair");
    let got = cassfs_json(&vol, &["quota", "get", &name(&vol)]);
    assert_eq!(num(&got, &["usage", "bytes"]), Some(300_000), "{got}");
    assert_eq!(num(&got, &["usage", "inodes"]), Some(3), "{got}");
}

#[test]
fn counters_after_kill_9_mid_write() {
    let vol = Volume::unique("qk");
    let mut m = vol.mount(&[]);
    let root = m.path().to_path_buf();
    let writer = thread::spawn(move || {
        let mut n = 0u64;
        loop {
            let p = root.join(format!("f{}", n % 7));
            let len = 1000 + (n as usize * 7919) % 1_500_000;
            if n % 5 == 4 {
                if fs::remove_file(&p).is_err() && !root.exists() {
                    return n;
                }
            } else if write_committed(&p, &pattern(n, len)).is_err() {
                return n;
            }
            n += 1;
        }
    });
    thread::sleep(Duration::from_millis(2500));
    m.stop_with_signal(libc::SIGKILL);
    assert!(force_unmount(m.path()), "cannot unmount the dead mount");
    let ops = writer.join().expect("the writer panicked");
    drop(m);
    let (_, doc) = fsck(&vol, &[]);
    let details: Vec<&Value> = doc["details"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d.as_str().is_some_and(|s| s.contains("usage counters")))
        .collect();
    eprintln!("counters_after_kill_9_mid_write: after {ops} operations: {details:?}");
    fsck(&vol, &["--repair", "--grace", "0"]);
    let (code, doc) = fsck(&vol, &[]);
    assert_eq!(num(&doc, &["found", "usage_counters"]), None, "{doc}");
    eprintln!("counters_after_kill_9_mid_write: fsck after the repair exits {code:?}");
}

#[test]
fn clone_and_rm_volume_keep_the_counters() {
    let src = Volume::unique("qc");
    let m = src.mount(&[]);
    fs::create_dir(m.join("d")).expect("mkdir");
    write(&m.join("d/f"), &pattern(1, 200_000));
    write(&m.join("g"), b"small");
    drop(m);
    let o = src.owner.to_string();
    let r = cassfs(
        &src,
        &["clone", "--owner", &o, "--from", "qc", "--to", "qc2"],
    );
    assert!(r.success(), "clone: {}", r.describe());
    let dst = Volume::new(&src.keyspace, src.owner, "qc2");
    let got = cassfs_json(&dst, &["quota", "get", &name(&dst)]);
    assert_eq!(num(&got, &["usage", "bytes"]), Some(200_005), "{got}");
    assert_eq!(num(&got, &["usage", "inodes"]), Some(4), "{got}");
    set_quota(&dst, &["--bytes", "1G"]);
    let r = cassfs(&dst, &["rm-volume", "--owner", &o, "--environment", "qc2"]);
    assert!(r.success(), "rm-volume: {}", r.describe());
    let rows = cql_rows(&format!(
        "SELECT bytes, inodes FROM {}.usage WHERE owner = {o} AND environment = 'qc2'",
        dst.keyspace
    ));
    assert!(
        rows.iter().all(|r| r.replace(' ', "") == "0|0"),
        "counters of a removed volume: {rows:?}"
    );
    // Mounted again, it is a new volume: its root, no quota.
    let m = dst.mount(&[]);
    let (size, used, _, iused) = df(m.path());
    assert!(
        size > 1 << 40 && used == 0 && iused == 1,
        "{:?}",
        df(m.path())
    );
}
