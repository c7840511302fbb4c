//! Directories under churn: temporary files created and deleted in one
//! directory by two mounts at once (at the default flags), and directories
//! with many live entries, must stay listable from a fresh mount.
//!
//! CI cannot afford the hundred thousand cycles that reach Cassandra's
//! default `tombstone_failure_threshold`, so these tests lower the node's
//! thresholds for their duration (`scripts/cassandra tombstones`) and put
//! them back when done, also when a test fails. The tests of this binary
//! run one at a time (the thresholds are the node's).

mod common;
#[path = "common/invariants.rs"]
mod invariants;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use invariants::{check_rows, check_tree};

/// Tombstones a read may meet before Cassandra fails it, during these tests.
const FAIL_AT: u32 = 1500;
/// Cycles each of the two mounts runs.
const CYCLES: usize = 1500;
/// Every KEEP-th file of a churning mount is kept.
const KEEP: usize = 100;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Lowers the node's tombstone thresholds until dropped.
struct Thresholds;

impl Thresholds {
    fn lower(warn: u32, fail: u32) -> Thresholds {
        set_thresholds(warn, fail);
        Thresholds
    }
}

impl Drop for Thresholds {
    fn drop(&mut self) {
        set_thresholds(1000, 100_000);
    }
}

fn set_thresholds(warn: u32, fail: u32) {
    let (w, f) = (warn.to_string(), fail.to_string());
    let r = cassandra_script(&["tombstones", &w, &f], Duration::from_secs(120));
    assert!(
        r.success(),
        "scripts/cassandra tombstones: {}",
        r.describe()
    );
}

fn names(dir: &Path) -> std::io::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for e in fs::read_dir(dir)? {
        out.insert(e?.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}

/// Creates and deletes `cycles` small files in `dir`, keeping every
/// [`KEEP`]-th; returns the names kept.
fn churn(dir: &Path, tag: &str, cycles: usize) -> BTreeSet<String> {
    let mut kept = BTreeSet::new();
    for i in 0..cycles {
        let name = format!("{tag}-{i}.tmp");
        let p = dir.join(&name);
        fs::write(&p, format!("<?php return {i};"))
            .unwrap_or_else(|e| panic!("{tag}: write {name} (cycle {i}): {e}"));
        if i % KEEP == KEEP - 1 {
            kept.insert(name);
        } else {
            fs::remove_file(&p).unwrap_or_else(|e| panic!("{tag}: unlink {name} (cycle {i}): {e}"));
        }
    }
    kept
}

#[test]
fn a_directory_churned_by_two_mounts_lists_from_a_fresh_mount() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    cassandra_shared();
    let vol = Volume::unique("churn");
    let a = vol.mount(&[]);
    let b = vol.mount(&[]);
    fs::create_dir(a.join("cache")).expect("mkdir cache");
    fs::write(a.join("cache/keep.php"), b"<?php").expect("write keep.php");
    let low = Thresholds::lower(100, FAIL_AT);

    let started = Instant::now();
    let (da, db) = (a.join("cache"), b.join("cache"));
    let ta = thread::spawn(move || churn(&da, "a", CYCLES));
    let tb = thread::spawn(move || churn(&db, "b", CYCLES));
    let mut want: BTreeSet<String> = ta.join().expect("mount a's churn");
    want.extend(tb.join().expect("mount b's churn"));
    want.insert("keep.php".into());
    eprintln!(
        "{} create+unlink cycles on two mounts in {:?}",
        2 * CYCLES,
        started.elapsed()
    );

    // A fresh mount lists exactly the live entries, quickly.
    let c = vol.mount(&[]);
    let t = Instant::now();
    let listed = names(&c.join("cache")).expect("a fresh mount lists the churned directory");
    let took = t.elapsed();
    assert_eq!(
        listed, want,
        "fresh mount's listing of the churned directory"
    );
    assert!(
        took < Duration::from_secs(5),
        "listing {} live entries took {took:?}",
        want.len()
    );
    // Every kept file reads back, and new names can still be made there.
    for n in &want {
        fs::read(c.join("cache").join(n)).unwrap_or_else(|e| panic!("read {n}: {e}"));
    }
    fs::write(c.join("cache/after.php"), b"x").expect("create after the churn");
    want.insert("after.php".into());
    // The churning mounts converge on the same listing (change feed).
    for (m, which) in [(&a, "a"), (&b, "b")] {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = names(&m.join("cache")).expect("list on a churning mount");
            if got == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "mount {which} lists {got:?}, want {want:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
    drop(c);
    // The checks below scan whole tables (every volume's tombstones).
    drop(low);
    check_tree(a.path(), "after churn");
    check_rows(&vol.keyspace, vol.owner, &vol.environment, "after churn");
}

#[test]
fn a_directory_with_more_live_entries_than_the_threshold_lists() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    cassandra_shared();
    let vol = Volume::unique("bigdir");
    let a = vol.mount(&[]);
    let dir = a.join("many");
    fs::create_dir(&dir).expect("mkdir many");
    let n = FAIL_AT as usize + 500;
    let mut want = BTreeSet::new();
    for i in 0..n {
        let name = format!("f{i:05}");
        fs::write(dir.join(&name), b"").expect("create");
        want.insert(name);
    }
    // Renames into the directory leave no tombstones behind on live entries.
    for i in 0..200 {
        let from = dir.join(format!("f{i:05}"));
        let to = dir.join(format!("r{i:05}"));
        fs::rename(&from, &to).expect("rename");
        want.remove(&format!("f{i:05}"));
        want.insert(format!("r{i:05}"));
    }
    let _low = Thresholds::lower(100, FAIL_AT);
    let b = vol.mount(&[]);
    let listed = names(&b.join("many")).expect("a fresh mount lists the big directory");
    assert_eq!(listed.len(), want.len());
    assert_eq!(listed, want);

    // Listed page by page while the other mount adds and removes entries:
    // no entry twice, and every entry nobody touched exactly once.
    let (adder, dir_a) = (
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
        a.join("many"),
    );
    let go = adder.clone();
    let churner = thread::spawn(move || {
        let mut touched = BTreeSet::new();
        let mut i = 0;
        while go.load(std::sync::atomic::Ordering::SeqCst) {
            let new = format!("m{i:05}");
            fs::write(dir_a.join(&new), b"").expect("add during listing");
            let old = format!("f{:05}", 1000 + i);
            fs::remove_file(dir_a.join(&old)).expect("remove during listing");
            touched.insert(new);
            touched.insert(old);
            i += 1;
        }
        touched
    });
    let mut seen = Vec::new();
    for (n, e) in fs::read_dir(b.join("many")).expect("opendir").enumerate() {
        seen.push(
            e.expect("readdir")
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
        if n % 200 == 0 {
            thread::sleep(Duration::from_millis(50));
        }
    }
    adder.store(false, std::sync::atomic::Ordering::SeqCst);
    let touched = churner.join().expect("the other mount");
    assert!(
        !touched.is_empty(),
        "the other mount changed nothing during the listing"
    );
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "an entry listed twice");
    for n in want.difference(&touched) {
        assert!(
            unique.contains(n),
            "{n} (untouched) missing from the listing"
        );
    }
}
