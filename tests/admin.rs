//! The operator commands (`cassfs status`, `volumes`, `gc`, `fsck`, `clone`,
//! `rm-volume`) against real volumes written through mounts (default
//! flags):
//!
//! - gc beside two live mounts whose writers create, rewrite (whole files,
//!   inline and block-stored, identical contents in several files) and
//!   delete files: nothing a writer closed is lost, deleted files stay
//!   gone, and once writers stop gc leaves exactly the blocks still used;
//! - gc reclaims overwritten and deleted content (`--dry-run` removes
//!   nothing), spares a file unlinked while open, removes unnamed inodes
//!   older than the grace period and spares younger ones;
//! - fsck finds each kind of damage planted with CQL, repairs what it can
//!   (the next fsck is clean, a fresh mount shows a consistent tree) and
//!   exits 4 on what it cannot repair;
//! - clone copies a whole tree without copying blocks, after which both
//!   environments change independently; it refuses non-empty, mounted and
//!   missing volumes;
//! - status lists live sessions; rm-volume refuses live volumes unless
//!   forced; volumes counts files, bytes and blocks shared by a clone.
//!
//! One keyspace for the file, one owner per test.

mod common;
#[path = "common/invariants.rs"]
mod invariants;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use scylla::value::CqlValue;
use serde_json::Value;

use common::*;
use invariants::{check_tree, write_file, Cql, Kind};

/// How long one operator command may take on a busy 2-core machine.
const CMD_LIMIT: Duration = Duration::from_secs(180);

/// The keyspace of this file, created on first use.
fn keyspace() -> String {
    static KS: OnceLock<String> = OnceLock::new();
    KS.get_or_init(|| fresh_keyspace("admin")).clone()
}

/// Taken around whatever scans the blocks table (gc, counting blocks):
/// Cassandra reads each block's data on such a scan, and two at once can
/// exhaust the heap of a small development node.
static SCANS: Mutex<()> = Mutex::new(());

fn scan_lock() -> MutexGuard<'static, ()> {
    SCANS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The number of blocks of `owner` (see [`SCANS`]).
fn blocks_of(ks: &str, owner: i64) -> usize {
    let _g = scan_lock();
    block_rows(ks, owner)
}

/// Runs `cassfs ARGS --server ... --keyspace ...`.
fn admin(args: &[&str]) -> RunResult {
    admin_in(&keyspace(), args)
}

/// Runs `cassfs ARGS --server ... --keyspace KS`; gc holds [`SCANS`].
fn admin_in(ks: &str, args: &[&str]) -> RunResult {
    let _g = (args.first() == Some(&"gc")).then(scan_lock);
    let addr = cassandra_addr();
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .args(["--server", &addr, "--keyspace", ks, "--timeout", "60"]);
    run_with_timeout(&mut cmd, CMD_LIMIT)
}

/// Runs an operator command with `--json`; its result and its document.
fn admin_json(args: &[&str]) -> (RunResult, Value) {
    admin_json_in(&keyspace(), args)
}

fn admin_json_in(ks: &str, args: &[&str]) -> (RunResult, Value) {
    let mut all = args.to_vec();
    all.push("--json");
    let r = admin_in(ks, &all);
    let line = r
        .stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .to_string();
    let doc = serde_json::from_str(&line).unwrap_or_else(|e| {
        panic!(
            "cassfs {args:?} --json printed no JSON document ({e}): {}",
            r.describe()
        )
    });
    (r, doc)
}

/// Runs an operator command that must succeed; its JSON document.
#[track_caller]
fn admin_ok(args: &[&str]) -> Value {
    let (r, doc) = admin_json(args);
    assert!(r.success(), "cassfs {args:?} failed: {}", r.describe());
    doc
}

/// A number of a JSON document; a missing or non-numeric field fails the
/// test (an absent count must not pass for 0).
#[track_caller]
fn num(doc: &Value, path: &[&str]) -> u64 {
    let mut v = doc;
    for p in path {
        v = &v[*p];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("no number at {path:?} in {doc}"))
}

/// A count in one of fsck's maps of counts by kind (`found`, `repaired`),
/// which leave out the kinds with none: the map must be there, a kind
/// missing from it is 0.
#[track_caller]
fn count(doc: &Value, map: &str, kind: &str) -> u64 {
    let m = doc[map]
        .as_object()
        .unwrap_or_else(|| panic!("no map {map:?} in {doc}"));
    m.get(kind).map_or(0, |v| {
        v.as_u64()
            .unwrap_or_else(|| panic!("{map}.{kind} is not a count in {doc}"))
    })
}

/// Asserts that a command failed with exactly one line on stderr containing
/// `needle`.
#[track_caller]
fn assert_refused(r: &RunResult, needle: &str, what: &str) {
    assert!(
        !r.success() && r.status.is_some(),
        "{what}: expected a failure: {}",
        r.describe()
    );
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected a one-line error: {}",
        r.describe()
    );
    assert!(
        lines[0].contains(needle),
        "{what}: the error does not mention {needle:?}: {}",
        r.describe()
    );
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Rows of a SELECT through the driver (blobs as bytes).
fn select(stmt: &str) -> Vec<Vec<Option<CqlValue>>> {
    let c = Cql::connect().unwrap_or_else(|e| panic!("CQL session: {e}"));
    c.select(stmt).unwrap_or_else(|e| panic!("{e}"))
}

fn blob(v: &Option<CqlValue>) -> Vec<u8> {
    match v {
        Some(CqlValue::Blob(b)) => b.clone(),
        _ => Vec::new(),
    }
}

fn big(v: &Option<CqlValue>) -> Option<i64> {
    match v {
        Some(CqlValue::BigInt(n)) => Some(*n),
        Some(CqlValue::Int(n)) => Some(i64::from(*n)),
        _ => None,
    }
}

fn hex(b: &[u8]) -> String {
    let mut s = String::from("0x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// The element of `inodes.names` for (parent, name).
fn name_key(parent: u64, name: &str) -> Vec<u8> {
    let mut k = parent.to_be_bytes().to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}

/// The inode number of a path of a mount.
fn ino_of(p: &Path) -> u64 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()))
        .ino()
}

/// The block hashes of an inode row (in order, holes included).
fn inode_blocks(vol: &Volume, ino: u64) -> Vec<Vec<u8>> {
    let rows = select(&format!(
        "SELECT blocks FROM {}.inodes WHERE owner = {} AND environment = '{}' AND ino = {ino}",
        vol.keyspace, vol.owner, vol.environment
    ));
    let b = rows.first().map(|r| blob(&r[0])).unwrap_or_default();
    b.chunks(32).map(<[u8]>::to_vec).collect()
}

/// Whether the inode row exists with a kind.
fn inode_alive(vol: &Volume, ino: u64) -> bool {
    select(&format!(
        "SELECT kind FROM {}.inodes WHERE owner = {} AND environment = '{}' AND ino = {ino}",
        vol.keyspace, vol.owner, vol.environment
    ))
    .first()
    .is_some_and(|r| r[0].is_some())
}

/// Number of rows of `table` for the volume.
fn volume_row_count(vol: &Volume, table: &str) -> usize {
    select(&format!(
        "SELECT owner FROM {}.{table} WHERE owner = {} AND environment = '{}' ALLOW FILTERING",
        vol.keyspace, vol.owner, vol.environment
    ))
    .len()
}

/// The distinct stored blocks the live inodes of every environment of
/// `owner` use.
fn used_blocks(ks: &str, owner: i64) -> BTreeSet<Vec<u8>> {
    let mut out = BTreeSet::new();
    for r in select(&format!(
        "SELECT kind, blocks FROM {ks}.inodes WHERE owner = {owner} ALLOW FILTERING"
    )) {
        if r[0].is_none() {
            continue;
        }
        for h in blob(&r[1]).chunks(32) {
            if h.iter().any(|b| *b != 0) {
                out.insert(h.to_vec());
            }
        }
    }
    out
}

/// Plants an inode row with no name (a file) with the given ctime.
fn plant_unnamed(vol: &Volume, ino: u64, ctime_ns: i64) {
    cql(&format!(
        "INSERT INTO {}.inodes (owner, environment, ino, kind, mode, uid, gid, size, ctime_ns, \
         mtime_ns, atime_ns, parent, version) VALUES ({}, '{}', {ino}, 1, 420, 0, 0, 5, {ctime_ns}, \
         {ctime_ns}, {ctime_ns}, 1, 7)",
        vol.keyspace, vol.owner, vol.environment
    ));
}

fn scope(vol: &Volume) -> [String; 4] {
    [
        "--owner".into(),
        vol.owner.to_string(),
        "--environment".into(),
        vol.environment.clone(),
    ]
}

/// `fsck --owner O --environment E [extra]` with `--json`.
fn fsck(vol: &Volume, extra: &[&str]) -> (RunResult, Value) {
    let s = scope(vol);
    let mut args: Vec<&str> = vec!["fsck"];
    args.extend(s.iter().map(String::as_str));
    args.extend_from_slice(extra);
    admin_json_in(&vol.keyspace, &args)
}

/// Asserts that fsck of the volume is clean (exit 0, nothing found).
#[track_caller]
fn assert_fsck_clean(vol: &Volume, context: &str) {
    let (r, doc) = fsck(vol, &[]);
    assert_eq!(
        r.code(),
        Some(0),
        "{context}: fsck of ({}, {}) is not clean: {}",
        vol.owner,
        vol.environment,
        r.describe()
    );
    assert_eq!(num(&doc, &["problems"]), 0, "{context}: {doc}");
}

/// `gc --owner O [extra] --json`, which must succeed.
fn gc(owner: i64, extra: &[&str]) -> Value {
    let o = owner.to_string();
    let mut args = vec!["gc", "--owner", &o];
    args.extend_from_slice(extra);
    admin_ok(&args)
}

// ---------------------------------------------------------------------------
// 1. gc beside live writers
// ---------------------------------------------------------------------------

/// Contents several files share (block dedup across files and mounts).
const SHARED: [(u64, usize); 4] = [
    (0x5a1, 200_000),
    (0x5a2, 1_500_000),
    (0x5a3, 2 * 1024 * 1024 + 17),
    (0x5a4, 3 * 1024 * 1024),
];

/// Bytes of distinct block-stored content each writer writes at most
/// (then only shared contents and inline files): every scan of the blocks
/// table reads each block's data, so the table is kept small.
const UNIQUE_BUDGET: usize = 4 * 1024 * 1024;

/// What one writer thread left: path -> last content closed (seed, len), or
/// None when deleted; the errors it met; how many writes and deletes.
struct WriterResult {
    expected: BTreeMap<String, Option<(u64, usize)>>,
    errors: Vec<String>,
    writes: u64,
    deletes: u64,
}

fn writer(root: &Path, dir: String, seed: u64, stop: Arc<AtomicBool>) -> WriterResult {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut res = WriterResult {
        expected: BTreeMap::new(),
        errors: Vec::new(),
        writes: 0,
        deletes: 0,
    };
    let base = root.join(&dir);
    if let Err(e) = fs::create_dir(&base) {
        res.errors.push(format!("mkdir {dir}: {e}"));
        return res;
    }
    let mut n = 0u64;
    let mut unique_bytes = 0usize;
    while !stop.load(Ordering::Relaxed) && res.errors.len() < 5 {
        let name = format!("f{}", rng.gen_range(0..6));
        let rel = format!("{dir}/{name}");
        let path = base.join(&name);
        let exists = matches!(res.expected.get(&rel), Some(Some(_)));
        if exists && rng.gen_range(0..100) < 20 {
            match fs::remove_file(&path) {
                Ok(()) => {
                    res.expected.insert(rel, None);
                    res.deletes += 1;
                }
                Err(e) => res.errors.push(format!("unlink {rel}: {e}")),
            }
            continue;
        }
        let (cseed, len) = if rng.gen_range(0..100) < 40 {
            SHARED[rng.gen_range(0..SHARED.len())]
        } else {
            n += 1;
            let big = rng.gen_range(0..100) < 50 && unique_bytes < UNIQUE_BUDGET;
            let len = if big {
                rng.gen_range(65_537..1_200_000)
            } else {
                rng.gen_range(100..60_000)
            };
            if big {
                unique_bytes += len;
            }
            (seed.wrapping_mul(1_000_003).wrapping_add(n), len)
        };
        match write_file(&path, &pattern(cseed, len), false, false) {
            Ok(()) => {
                res.expected.insert(rel, Some((cseed, len)));
                res.writes += 1;
            }
            Err(e) => res
                .errors
                .push(format!("write {rel} ({len} bytes, seed {cseed:#x}): {e}")),
        }
    }
    res
}

/// Checks every expected path on a mount: content of the last version
/// written, or gone. Returns the problems.
fn verify_expected(
    root: &Path,
    expected: &BTreeMap<String, Option<(u64, usize)>>,
    context: &str,
) -> Vec<String> {
    let mut bad = Vec::new();
    for (rel, want) in expected {
        let p = root.join(rel);
        match (want, fs::read(&p)) {
            (Some((seed, len)), Ok(data)) => {
                if data != pattern(*seed, *len) {
                    let off = data
                        .iter()
                        .zip(pattern(*seed, *len))
                        .position(|(a, b)| *a != b);
                    bad.push(format!(
                        "{context}: {rel}: {} bytes differ from the last write (seed {seed:#x}, \
                         {len} bytes; first difference at {off:?})",
                        data.len()
                    ));
                }
            }
            (Some((seed, len)), Err(e)) => bad.push(format!(
                "{context}: {rel}: cannot read the last write (seed {seed:#x}, {len} bytes): {e}"
            )),
            (None, Ok(data)) => bad.push(format!(
                "{context}: {rel} was deleted but reads {} bytes",
                data.len()
            )),
            (None, Err(e)) if errno(&e) == libc::ENOENT => {}
            (None, Err(e)) => bad.push(format!("{context}: {rel} (deleted): {e}")),
        }
    }
    bad
}

/// Two mounts of one volume, four writer threads, gc in a loop with grace
/// 2 s and 0 s: afterwards a fresh mount reads every last write, deleted
/// files are gone, and a last gc leaves exactly the blocks still used.
#[test]
fn gc_beside_live_writers() {
    // A keyspace of its own: each gc scans the whole blocks table.
    let gc_ks = fresh_keyspace("admin_gc");
    let vol = Volume::new(&gc_ks, 11, "live");
    let a = vol.mount(&[]);
    let b = vol.mount(&[]);
    let secs = env_u64("CASSFS_ADMIN_GC_SECS").unwrap_or(20);
    let stop = Arc::new(AtomicBool::new(false));
    let seed = env_u64("CASSFS_ADMIN_SEED").unwrap_or_else(unique_seed);
    eprintln!("gc_beside_live_writers: seed {seed} ({secs} s)");

    let mut writers = Vec::new();
    for t in 0..4u64 {
        let root = if t % 2 == 0 { a.path() } else { b.path() }.to_path_buf();
        let stop = stop.clone();
        let s = seed ^ (t + 1).wrapping_mul(0x9E37_79B9);
        writers.push(thread::spawn(move || {
            writer(&root, format!("w{t}"), s, stop)
        }));
    }
    let gc_stop = Arc::new(AtomicBool::new(false));
    let gc_thread = {
        let gc_stop = gc_stop.clone();
        let gc_ks = gc_ks.clone();
        thread::spawn(move || {
            let mut runs: Vec<(String, Result<Value, String>)> = Vec::new();
            let mut i = 0;
            while !gc_stop.load(Ordering::Relaxed) {
                let grace = if i % 3 == 2 { "0" } else { "2" };
                let r = admin_in(&gc_ks, &["gc", "--owner", "11", "--grace", grace, "--json"]);
                let doc = serde_json::from_str::<Value>(r.stdout.trim());
                let out = match (r.success(), doc) {
                    (true, Ok(doc)) => Ok(doc),
                    _ => Err(r.describe()),
                };
                let failed = out.is_err();
                runs.push((grace.to_string(), out));
                if failed {
                    // One failure fails the test; no need to load the
                    // server further.
                    break;
                }
                i += 1;
                thread::sleep(Duration::from_millis(300));
            }
            runs
        })
    };
    thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let mut expected = BTreeMap::new();
    let mut errors = Vec::new();
    let (mut writes, mut deletes) = (0, 0);
    for w in writers {
        let r = w.join().expect("a writer thread panicked");
        expected.extend(r.expected);
        errors.extend(r.errors);
        writes += r.writes;
        deletes += r.deletes;
    }
    gc_stop.store(true, Ordering::Relaxed);
    let runs = gc_thread.join().expect("the gc thread panicked");
    assert!(errors.is_empty(), "writers failed:\n{}", errors.join("\n"));
    let failed: Vec<&String> = runs.iter().filter_map(|(_, r)| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "gc runs failed: {failed:#?}");
    let removed_during: u64 = runs
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .map(|d| num(d, &["blocks"]))
        .sum();
    let by_grace = |g: &str| {
        runs.iter()
            .filter(|(x, _)| x == g)
            .filter_map(|(_, r)| r.as_ref().ok())
            .map(|d| num(d, &["blocks"]))
            .sum::<u64>()
    };
    eprintln!(
        "gc_beside_live_writers: {writes} writes, {deletes} deletes, {} gc runs removed {removed_during} \
         blocks ({} with grace 2 s, {} with grace 0)",
        runs.len(),
        by_grace("2"),
        by_grace("0")
    );
    assert!(writes >= 20, "too few writes to mean anything: {writes}");
    assert!(runs.len() >= 3, "too few gc runs: {}", runs.len());

    drop(a);
    drop(b);
    let c = vol.mount(&[]);
    let mut bad = verify_expected(c.path(), &expected, "after the writers");
    // No other name in the writers' directories.
    for t in 0..4 {
        let dir = format!("w{t}");
        for n in names(&c.join(&dir)) {
            let rel = format!("{dir}/{}", n.to_string_lossy());
            if !matches!(expected.get(&rel), Some(Some(_))) {
                bad.push(format!("unexpected name {rel}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "content lost or wrong beside gc (seed {seed}):\n{}",
        bad.join("\n")
    );
    check_tree(c.path(), "after the writers");
    drop(c);

    // Past the grace period, gc leaves exactly the blocks still used.
    thread::sleep(Duration::from_secs(3));
    let last = admin_in(&gc_ks, &["gc", "--owner", "11", "--grace", "2", "--json"]);
    assert!(last.success(), "the last gc: {}", last.describe());
    let last: Value = serde_json::from_str(last.stdout.trim()).expect("gc --json prints JSON");
    let total = removed_during + num(&last, &["blocks"]);
    assert!(
        total > 0,
        "no gc run removed a block after {writes} writes and {deletes} deletes: {last}"
    );
    let _g = scan_lock();
    let used = used_blocks(&vol.keyspace, vol.owner);
    let stored = block_rows(&vol.keyspace, vol.owner);
    drop(_g);
    assert_eq!(
        stored,
        used.len(),
        "after the last gc the owner's blocks are not exactly those in use: {last}"
    );
    let d = vol.mount(&[]);
    let bad = verify_expected(d.path(), &expected, "after the last gc");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    drop(d);
    assert_fsck_clean(&vol, "after gc beside live writers");
}

// ---------------------------------------------------------------------------
// 2. gc reclaims and spares
// ---------------------------------------------------------------------------

/// Overwritten and deleted content is reclaimed (`--dry-run` only counts
/// it); content still named, shared, or held open is spared; unnamed
/// inodes go once older than the grace period.
#[test]
fn gc_reclaims_and_spares() {
    let vol = Volume::new(&keyspace(), 21, "gc");
    let mb = 1024 * 1024;
    let m = vol.mount(&[]);
    write(&m.join("keep"), &pattern(0xa, 2 * mb));
    write(&m.join("over"), &pattern(0xb, 2 * mb));
    write(&m.join("over"), &pattern(0xc, 2 * mb));
    write(&m.join("del"), &pattern(0xd, mb + mb / 2));
    write(&m.join("dup1"), &pattern(0xe, mb + 1000));
    write(&m.join("dup2"), &pattern(0xe, mb + 1000));
    write(&m.join("small"), b"inline content");
    write(&m.join("held"), &pattern(0xf, 2 * mb));
    fs::remove_file(m.join("del")).expect("unlink del");
    fs::remove_file(m.join("dup1")).expect("unlink dup1");
    let held_ino = ino_of(&m.join("held"));
    let held = fs::File::open(m.join("held")).expect("open held");
    fs::remove_file(m.join("held")).expect("unlink held while open");
    // keep 2 + over (b) 2 + over (c) 2 + del 2 + dup 2 + held 2.
    let before = blocks_of(&vol.keyspace, vol.owner);
    assert_eq!(before, 12, "blocks stored after the writes");

    let dry = gc(21, &["--dry-run", "--grace", "0"]);
    assert_eq!(dry["dry_run"], Value::Bool(true), "{dry}");
    assert_eq!(
        num(&dry, &["blocks"]),
        4,
        "dry run: the overwritten and the deleted content's blocks: {dry}"
    );
    assert_eq!(
        blocks_of(&vol.keyspace, vol.owner),
        before,
        "a dry run removed blocks: {dry}"
    );

    let done = gc(21, &["--grace", "0"]);
    assert_eq!(num(&done, &["blocks"]), 4, "{done}");
    assert!(num(&done, &["spared_held"]) >= 1, "held inode: {done}");
    assert_eq!(blocks_of(&vol.keyspace, vol.owner), before - 4, "{done}");
    assert!(
        inode_alive(&vol, held_ino),
        "gc removed an inode held open: {done}"
    );
    assert_eq!(
        inode_blocks(&vol, held_ino).len(),
        2,
        "the held inode's blocks"
    );
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut &held, &mut got).expect("read the unlinked file");
    assert!(
        got == pattern(0xf, 2 * mb),
        "the file unlinked while open reads {} bytes of something else",
        got.len()
    );
    // A fresh mount reads what is still named from Cassandra.
    let fresh = vol.mount(&[]);
    assert!(read(&fresh.join("keep")) == pattern(0xa, 2 * mb), "keep");
    assert!(read(&fresh.join("over")) == pattern(0xc, 2 * mb), "over");
    assert!(read(&fresh.join("dup2")) == pattern(0xe, mb + 1000), "dup2");
    assert_eq!(read(&fresh.join("small")), b"inline content");
    drop(fresh);

    // The last close deletes the held inode; gc then takes its blocks.
    drop(held);
    assert!(
        wait_until(Duration::from_secs(30), || !inode_alive(&vol, held_ino)),
        "the inode unlinked while open is still there 30 s after its last close"
    );
    let after_close = gc(21, &["--grace", "0"]);
    assert_eq!(num(&after_close, &["blocks"]), 2, "{after_close}");
    assert_eq!(blocks_of(&vol.keyspace, vol.owner), before - 6);
    drop(m);

    // Unnamed inodes: an old one goes, a young one is spared.
    plant_unnamed(&vol, 900_001, 1);
    plant_unnamed(&vol, 900_002, now_ns());
    let r = gc(21, &["--grace", "60"]);
    assert!(num(&r, &["inodes"]) >= 1, "{r}");
    assert!(!inode_alive(&vol, 900_001), "old unnamed inode kept: {r}");
    assert!(
        inode_alive(&vol, 900_002),
        "unnamed inode younger than the grace removed: {r}"
    );
    let r = gc(21, &["--grace", "3600"]);
    assert!(num(&r, &["spared_young"]) >= 1, "{r}");
    assert!(
        inode_alive(&vol, 900_002),
        "young unnamed inode removed: {r}"
    );
    assert_eq!(num(&r, &["blocks"]), 0, "{r}");
}

// ---------------------------------------------------------------------------
// 3. fsck
// ---------------------------------------------------------------------------

/// A volume written through a mount, then unmounted: `d/` with `d/sub/`,
/// `f` (inline), `big` (2 MiB + 5), `d/g` and a hard link `d/g2` of `f`.
fn fsck_volume(owner: i64) -> Volume {
    let vol = Volume::new(&keyspace(), owner, "fsck");
    let m = vol.mount(&[]);
    fs::create_dir(m.join("d")).expect("mkdir d");
    fs::create_dir(m.join("d/sub")).expect("mkdir d/sub");
    write(&m.join("f"), b"small file");
    write(&m.join("big"), &pattern(owner as u64, 2 * 1024 * 1024 + 5));
    write(&m.join("d/g"), b"in d");
    fs::hard_link(m.join("f"), m.join("d/g2")).expect("link f d/g2");
    drop(m);
    assert_fsck_clean(&vol, "a volume just written");
    vol
}

/// The inode of an entry, read from the rows.
fn entry_ino(vol: &Volume, parent: u64, name: &str) -> u64 {
    let rows = select(&format!(
        "SELECT ino FROM {}.dir_entries WHERE owner = {} AND environment = '{}' AND parent = {parent} \
         AND gen = 0 AND name = {}",
        vol.keyspace,
        vol.owner,
        vol.environment,
        hex(name.as_bytes())
    ));
    rows.first()
        .and_then(|r| big(&r[0]))
        .unwrap_or_else(|| panic!("no entry {name:?} in directory {parent}")) as u64
}

/// Runs `fsck`, `fsck --repair --grace 0` and `fsck` again; asserts what
/// each finds and repairs, and that a fresh mount is consistent.
/// `repairable`: whether the damage is repaired (the last fsck exits 0)
/// or left (exit 4 throughout).
#[track_caller]
fn fsck_round(vol: &Volume, key: &str, repairable: bool) -> Value {
    let (r, found) = fsck(vol, &[]);
    let code = r.code();
    assert!(
        code == Some(4),
        "{key}: fsck without --repair must exit 4 on damage: {}",
        r.describe()
    );
    assert!(
        count(&found, "found", key) >= 1,
        "{key}: fsck did not count the damage: {found}"
    );
    assert_eq!(
        num(&found, &["fixed"]),
        0,
        "{key}: fsck repaired without --repair: {found}"
    );
    let (r, fixed) = fsck(vol, &["--repair", "--grace", "0"]);
    if repairable {
        assert_eq!(r.code(), Some(1), "{key}: fsck --repair: {}", r.describe());
        assert!(
            count(&fixed, "repaired", key) >= 1,
            "{key}: fsck --repair does not say it repaired it: {fixed}"
        );
        let (r, again) = fsck(vol, &[]);
        assert_eq!(
            r.code(),
            Some(0),
            "{key}: fsck after fsck --repair is not clean (repair said {fixed}): {}",
            r.describe()
        );
        assert_eq!(num(&again, &["problems"]), 0, "{again}");
    } else {
        assert_eq!(
            r.code(),
            Some(4),
            "{key}: fsck --repair of damage it cannot repair: {}",
            r.describe()
        );
        assert_eq!(
            count(&fixed, "repaired", key),
            0,
            "{key}: fsck claims to have repaired what it cannot: {fixed}"
        );
        let (r, again) = fsck(vol, &[]);
        assert_eq!(r.code(), Some(4), "{key}: {}", r.describe());
        assert!(count(&again, "found", key) >= 1, "{again}");
    }
    fixed
}

/// The tree of a fresh mount, every name resolving and link counts exact.
fn fresh_tree(vol: &Volume, context: &str) -> invariants::Tree {
    let m = vol.mount(&[]);
    let t = check_tree(m.path(), context);
    drop(m);
    t
}

#[test]
fn fsck_clean_volume_exits_0() {
    let vol = fsck_volume(30);
    let (r, doc) = fsck(&vol, &["--repair"]);
    assert_eq!(r.code(), Some(0), "{}", r.describe());
    assert_eq!(num(&doc, &["fixed"]), 0, "{doc}");
}

#[test]
fn fsck_dangling_name() {
    let vol = fsck_volume(31);
    cql(&format!(
        "INSERT INTO {}.dir_entries (owner, environment, parent, gen, name, ino, kind, moving_from) \
         VALUES ({}, 'fsck', 1, 0, {}, 777777, 1, 0x)",
        vol.keyspace,
        vol.owner,
        hex(b"ghost")
    ));
    // Before the repair, a mount reads the name as absent (what a create
    // killed between its name and its inode row leaves), and the name is
    // still taken.
    let m = vol.mount(&[]);
    let ghost = m.path().join("ghost");
    let err = std::fs::symlink_metadata(&ghost).expect_err("a dangling name has attributes");
    assert_eq!(
        err.raw_os_error(),
        Some(libc::ENOENT),
        "stat of a dangling name: {err}"
    );
    let err = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&ghost)
        .expect_err("an O_EXCL create over a dangling name succeeded");
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EEXIST),
        "O_EXCL over a dangling name: {err}"
    );
    drop(m);
    fsck_round(&vol, "dangling_names", true);
    let t = fresh_tree(&vol, "after repairing a dangling name");
    let m = vol.mount(&[]);
    std::fs::write(m.path().join("ghost"), b"back").expect("create after the repair");
    drop(m);
    assert!(
        !t.nodes.contains_key("ghost"),
        "the dangling name is still listed"
    );
    assert!(t.nodes.contains_key("big") && t.nodes.contains_key("d/g2"));
}

#[test]
fn fsck_unnamed_inode() {
    let vol = fsck_volume(32);
    plant_unnamed(&vol, 888_888, 1);
    fsck_round(&vol, "unnamed_inodes", true);
    assert!(
        !inode_alive(&vol, 888_888),
        "the unnamed inode is still there"
    );
    fresh_tree(&vol, "after repairing an unnamed inode");
}

#[test]
fn fsck_link_counts() {
    let vol = fsck_volume(33);
    let f = entry_ino(&vol, 1, "f");
    let d = entry_ino(&vol, 1, "d");
    let k = &vol.keyspace;
    let o = vol.owner;
    // f loses its name "f" from its record and gains a bogus one; the root
    // records a subdirectory it has not, d loses "sub".
    let sub = entry_ino(&vol, d, "sub");
    cql(&format!(
        "UPDATE {k}.inodes SET names = names - {{{}}} WHERE owner = {o} AND environment = 'fsck' AND ino = {f}",
        hex(&name_key(1, "f"))
    ));
    cql(&format!(
        "UPDATE {k}.inodes SET names = names + {{{}}} WHERE owner = {o} AND environment = 'fsck' AND ino = {f}",
        hex(&name_key(d, "bogus"))
    ));
    cql(&format!(
        "UPDATE {k}.inodes SET subdirs = subdirs + {{424242}} WHERE owner = {o} AND environment = 'fsck' AND ino = 1"
    ));
    cql(&format!(
        "UPDATE {k}.inodes SET subdirs = subdirs - {{{sub}}} WHERE owner = {o} AND environment = 'fsck' AND ino = {d}"
    ));
    let fixed = fsck_round(&vol, "link_counts", true);
    assert!(count(&fixed, "repaired", "link_counts") >= 3, "{fixed}");
    let t = fresh_tree(&vol, "after repairing link counts");
    assert_eq!(t.nodes["f"].nlink, 2, "f and d/g2");
    assert_eq!(t.nodes["d"].nlink, 3, "d has one subdirectory");
    assert_eq!(t.root.as_ref().map(|r| r.nlink), Some(3), "root has d only");
}

#[test]
fn fsck_entry_kind() {
    let vol = fsck_volume(34);
    // The entry of file `f` says directory.
    cql(&format!(
        "UPDATE {}.dir_entries SET kind = 2 WHERE owner = {} AND environment = 'fsck' AND parent = 1 \
         AND gen = 0 AND name = {}",
        vol.keyspace,
        vol.owner,
        hex(b"f")
    ));
    fsck_round(&vol, "entry_kinds", true);
    let t = fresh_tree(&vol, "after repairing an entry kind");
    assert_eq!(t.nodes["f"].kind, Kind::File);
    assert_eq!(t.root.as_ref().map(|r| r.nlink), Some(3), "root has d only");
}

#[test]
fn fsck_missing_block() {
    let vol = fsck_volume(35);
    let big_ino = entry_ino(&vol, 1, "big");
    let blocks = inode_blocks(&vol, big_ino);
    assert_eq!(blocks.len(), 3, "2 MiB + 5 bytes is 3 blocks");
    cql(&format!(
        "DELETE FROM {}.blocks WHERE owner = {} AND hash = {}",
        vol.keyspace,
        vol.owner,
        hex(&blocks[1])
    ));
    fsck_round(&vol, "missing_blocks", false);
    // The rest of the volume still reads.
    let m = vol.mount(&[]);
    assert_eq!(read(&m.join("f")), b"small file");
    assert!(
        fs::read(m.join("big")).is_err(),
        "a file with a missing block reads without an error"
    );
}

#[test]
fn fsck_missing_ref() {
    let vol = fsck_volume(36);
    let big_ino = entry_ino(&vol, 1, "big");
    let blocks = inode_blocks(&vol, big_ino);
    cql(&format!(
        "DELETE FROM {}.block_refs WHERE owner = {} AND hash = {} AND environment = 'fsck' AND ino = {big_ino}",
        vol.keyspace,
        vol.owner,
        hex(&blocks[0])
    ));
    fsck_round(&vol, "missing_refs", true);
    // With its reference back, gc keeps the block.
    let r = gc(vol.owner, &["--grace", "0"]);
    assert_eq!(num(&r, &["blocks"]), 0, "{r}");
    let m = vol.mount(&[]);
    assert!(read(&m.join("big")) == pattern(36, 2 * 1024 * 1024 + 5));
}

#[test]
fn fsck_directory_cycle() {
    let vol = fsck_volume(37);
    let m = vol.mount(&[]);
    fs::create_dir(m.join("p")).expect("mkdir p");
    fs::create_dir(m.join("q")).expect("mkdir q");
    write(&m.join("p/in-p"), b"lost");
    drop(m);
    let p = entry_ino(&vol, 1, "p");
    let q = entry_ino(&vol, 1, "q");
    let (k, o) = (&vol.keyspace, vol.owner);
    let entry = |parent: u64, name: &str, ino: u64| {
        cql(&format!(
            "INSERT INTO {k}.dir_entries (owner, environment, parent, gen, name, ino, kind, moving_from) \
             VALUES ({o}, 'fsck', {parent}, 0, {}, {ino}, 2, 0x)",
            hex(name.as_bytes())
        ))
    };
    entry(p, "q", q);
    entry(q, "p", p);
    for n in ["p", "q"] {
        cql(&format!(
            "DELETE FROM {k}.dir_entries WHERE owner = {o} AND environment = 'fsck' AND parent = 1 \
             AND gen = 0 AND name = {}",
            hex(n.as_bytes())
        ));
    }
    let fixed = fsck_round(&vol, "unreachable_dirs", false);
    assert!(count(&fixed, "found", "unreachable_dirs") >= 2, "{fixed}");
    let t = fresh_tree(&vol, "beside a directory cycle");
    assert!(!t.nodes.contains_key("p") && !t.nodes.contains_key("q"));
    assert_eq!(t.root.as_ref().map(|r| r.nlink), Some(3), "root has d only");
}

#[test]
fn fsck_unknown_volume() {
    let vol = fsck_volume(38);
    let ghost = Volume::new(&vol.keyspace, vol.owner, "ghost");
    plant_unnamed(&ghost, 1, 1);
    let o = vol.owner.to_string();
    let (r, doc) = admin_json(&["fsck", "--owner", &o]);
    assert_eq!(r.code(), Some(4), "{}", r.describe());
    assert!(count(&doc, "found", "unknown_volumes") >= 1, "{doc}");
    let (r, doc) = admin_json(&["fsck", "--owner", &o, "--repair", "--grace", "0"]);
    assert_eq!(r.code(), Some(4), "{}", r.describe());
    assert_eq!(count(&doc, "repaired", "unknown_volumes"), 0, "{doc}");
    // rm-volume removes the rows of the volume without a volume row.
    admin_ok(&["rm-volume", "--owner", &o, "--environment", "ghost"]);
    assert_eq!(volume_row_count(&ghost, "inodes"), 0);
    let (r, doc) = admin_json(&["fsck", "--owner", &o]);
    assert_eq!(r.code(), Some(0), "{doc} {}", r.describe());
    fresh_tree(&vol, "beside a removed unknown volume");
}

// ---------------------------------------------------------------------------
// 4. clone
// ---------------------------------------------------------------------------

/// Everything compared between two environments: per path (kind, perm,
/// size, link count, content or symlink target, xattr user.tag).
type Shape = BTreeMap<String, (String, u32, u64, u64, Vec<u8>, Option<Vec<u8>>)>;

fn shape(root: &Path, context: &str) -> Shape {
    let t = check_tree(root, context);
    let mut out = Shape::new();
    for (p, n) in &t.nodes {
        let full = root.join(p);
        let body = match n.kind {
            Kind::File => t.files.get(p).cloned().unwrap_or_default(),
            Kind::Symlink => fs::read_link(&full)
                .map(|l| l.into_os_string().into_encoded_bytes())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        let tag = if n.kind == Kind::Symlink {
            None
        } else {
            getxattr(&full, "user.tag").ok()
        };
        out.insert(
            p.clone(),
            (format!("{:?}", n.kind), n.perm, n.size, n.nlink, body, tag),
        );
    }
    out
}

#[test]
fn clone_copies_the_tree_not_the_blocks() {
    let ks = keyspace();
    let owner = 41;
    let dev = Volume::new(&ks, owner, "dev");
    let prod = Volume::new(&ks, owner, "prod");
    let mb = 1024 * 1024;
    let m = dev.mount(&[]);
    fs::create_dir(m.join("app")).expect("mkdir app");
    fs::create_dir(m.join("app/lib")).expect("mkdir app/lib");
    fs::create_dir(m.join("empty")).expect("mkdir empty");
    write(&m.join("app/index.php"), b"<?php echo 1;");
    write(&m.join("app/lib/big.bin"), &pattern(0x41, 2 * mb + 99));
    write(&m.join("app/lib/mid.bin"), &pattern(0x42, 100_000));
    write(&m.join("conf"), b"key=value\n");
    write(&m.join("huge"), &pattern(0x43, 3 * mb));
    std::os::unix::fs::symlink("app/index.php", m.join("link")).expect("symlink");
    fs::hard_link(m.join("conf"), m.join("app/conf-link")).expect("hard link");
    fs::set_permissions(m.join("conf"), fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::set_permissions(m.join("app/lib"), fs::Permissions::from_mode(0o750)).expect("chmod");
    fs::set_permissions(m.join("huge"), fs::Permissions::from_mode(0o755)).expect("chmod");
    setxattr(&m.join("conf"), "user.tag", b"secret", 0).expect("setxattr conf");
    setxattr(&m.join("app"), "user.tag", b"dir tag", 0).expect("setxattr app");
    let dev_shape = shape(m.path(), "dev before the clone");
    drop(m);
    let blocks_before = blocks_of(&ks, owner);
    assert!(blocks_before >= 7, "blocks of dev: {blocks_before}");

    let o = owner.to_string();
    let doc = admin_ok(&["clone", "--owner", &o, "--from", "dev", "--to", "prod"]);
    assert_eq!(
        blocks_of(&ks, owner),
        blocks_before,
        "clone copied blocks: {doc}"
    );
    assert_fsck_clean(&dev, "dev after the clone");
    assert_fsck_clean(&prod, "prod after the clone");

    let d = dev.mount(&[]);
    let p = prod.mount(&[]);
    let prod_shape = shape(p.path(), "prod after the clone");
    assert_eq!(
        prod_shape, dev_shape,
        "prod differs from the dev it was cloned from"
    );
    let pi = fs::symlink_metadata(p.join("conf")).expect("stat conf");
    let li = fs::symlink_metadata(p.join("app/conf-link")).expect("stat conf-link");
    assert_eq!(pi.ino(), li.ino(), "the hard link is one inode in prod");

    // Independent changes on each side.
    write(&p.join("app/index.php"), b"<?php echo 'prod';");
    fs::remove_file(p.join("huge")).expect("rm huge in prod");
    write(&p.join("conf"), b"key=prod\n");
    write(&d.join("new-in-dev"), &pattern(0x44, 70_000));
    drop(d);
    drop(p);
    let d = dev.mount(&[]);
    let p = prod.mount(&[]);
    assert_eq!(read(&d.join("app/index.php")), b"<?php echo 1;");
    assert!(read(&d.join("huge")) == pattern(0x43, 3 * mb), "dev's huge");
    assert_eq!(read(&d.join("conf")), b"key=value\n");
    assert_eq!(read(&d.join("app/conf-link")), b"key=value\n");
    assert!(read(&d.join("new-in-dev")) == pattern(0x44, 70_000));
    assert_eq!(read(&p.join("app/index.php")), b"<?php echo 'prod';");
    assert_errno(fs::metadata(p.join("huge")), libc::ENOENT, "huge in prod");
    assert_errno(
        fs::metadata(p.join("new-in-dev")),
        libc::ENOENT,
        "dev's new file in prod",
    );
    assert_eq!(
        read(&p.join("app/conf-link")),
        b"key=prod\n",
        "prod's hard link"
    );
    // gc keeps what either side still uses.
    drop(d);
    drop(p);
    gc(owner, &["--grace", "0"]);
    let d = dev.mount(&[]);
    assert!(
        read(&d.join("huge")) == pattern(0x43, 3 * mb),
        "dev's huge after gc"
    );
    assert!(read(&d.join("app/lib/big.bin")) == pattern(0x41, 2 * mb + 99));

    // Refusals: a non-empty target, a mounted target, a missing source.
    let r = admin(&["clone", "--owner", &o, "--from", "dev", "--to", "prod"]);
    assert_refused(&r, "--force", "clone onto a non-empty volume");
    let p = prod.mount(&[]);
    let r = admin(&[
        "clone", "--owner", &o, "--from", "dev", "--to", "prod", "--force",
    ]);
    assert_refused(&r, "mounted", "clone onto a mounted volume");
    assert_eq!(
        read(&p.join("conf")),
        b"key=prod\n",
        "a refused clone changed prod"
    );
    drop(p);
    let r = admin(&["clone", "--owner", &o, "--from", "nosuch", "--to", "other"]);
    assert_refused(&r, "nosuch", "clone of a missing volume");

    // --force replaces the target with dev as it is now.
    let dev_now = shape(d.path(), "dev now");
    drop(d);
    admin_ok(&[
        "clone", "--owner", &o, "--from", "dev", "--to", "prod", "--force",
    ]);
    let p = prod.mount(&[]);
    assert_eq!(shape(p.path(), "prod after clone --force"), dev_now);
    drop(p);
    assert_fsck_clean(&prod, "prod after clone --force");
}

// ---------------------------------------------------------------------------
// 5. status, rm-volume, volumes
// ---------------------------------------------------------------------------

/// The volume's entry in `status --json`.
fn status_of(vol: &Volume) -> Option<Value> {
    let o = vol.owner.to_string();
    let doc = admin_ok(&["status", "--owner", &o]);
    doc["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["environment"] == Value::String(vol.environment.clone()))
        .cloned()
}

/// The volume's entry in `volumes --json`.
fn usage_of(vol: &Volume) -> Option<Value> {
    let o = vol.owner.to_string();
    let doc = admin_ok(&["volumes", "--owner", &o]);
    doc["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["environment"] == Value::String(vol.environment.clone()))
        .cloned()
}

#[test]
fn status_lists_live_sessions() {
    let vol = Volume::new(&keyspace(), 51, "st");
    let mut m = vol.mount(&[]);
    let st = status_of(&vol).expect("status lists the mounted volume");
    let sessions = st["sessions"].as_array().cloned().unwrap_or_default();
    assert_eq!(sessions.len(), 1, "one live session: {st}");
    let pid = m.pid().expect("the daemon runs");
    assert_eq!(sessions[0]["pid"].as_u64(), Some(u64::from(pid)), "{st}");
    assert_eq!(
        sessions[0]["mountpoint"].as_str(),
        Some(m.path().to_string_lossy().as_ref()),
        "{st}"
    );
    let st2 = m.unmount();
    assert!(st2.success(), "daemon exit: {st2}");
    let st = status_of(&vol).expect("status lists the unmounted volume");
    assert_eq!(
        st["sessions"].as_array().map(Vec::len),
        Some(0),
        "the session of a clean unmount is gone: {st}"
    );
}

#[test]
fn rm_volume_refuses_live_volumes() {
    let vol = Volume::new(&keyspace(), 52, "rm");
    let o = vol.owner.to_string();
    let mut m = vol.mount(&[]);
    fs::create_dir(m.join("d")).expect("mkdir");
    write(&m.join("d/f"), &pattern(1, 200_000));
    let r = admin(&["rm-volume", "--owner", &o, "--environment", "rm"]);
    assert_refused(&r, "session", "rm-volume of a mounted volume");
    assert_eq!(
        read(&m.join("d/f")),
        pattern(1, 200_000),
        "a refused rm-volume changed files"
    );
    assert!(m.unmount().success());
    admin_ok(&["rm-volume", "--owner", &o, "--environment", "rm"]);
    assert!(
        usage_of(&vol).is_none(),
        "volumes still lists a removed volume"
    );
    assert!(
        status_of(&vol).is_none(),
        "status still lists a removed volume"
    );
    assert_eq!(volume_row_count(&vol, "inodes"), 0, "inode rows left");
    assert_eq!(volume_row_count(&vol, "dir_entries"), 0, "entries left");
    assert_eq!(volume_row_count(&vol, "volumes"), 0, "volume row left");
    // Its blocks are garbage now.
    let r = gc(vol.owner, &["--grace", "0"]);
    assert_eq!(num(&r, &["blocks"]), 1, "{r}");

    // --force removes a volume that is mounted.
    let forced = Volume::new(&keyspace(), 52, "forced");
    let m = forced.mount(&[]);
    write(&m.join("x"), b"x");
    admin_ok(&[
        "rm-volume",
        "--owner",
        &o,
        "--environment",
        "forced",
        "--force",
    ]);
    assert!(
        usage_of(&forced).is_none(),
        "volumes lists a force-removed volume"
    );
    assert_eq!(volume_row_count(&forced, "inodes"), 0);
    drop(m);
}

#[test]
fn volumes_counts_and_shared_bytes() {
    let ks = keyspace();
    let a = Volume::new(&ks, 53, "a");
    let m = a.mount(&[]);
    fs::create_dir(m.join("d1")).expect("mkdir");
    fs::create_dir(m.join("d1/d2")).expect("mkdir");
    let sizes = [10usize, 70_000, 2 * 1024 * 1024 + 5];
    for (i, n) in sizes.iter().enumerate() {
        write(&m.join(format!("d1/f{i}")), &pattern(i as u64, *n));
    }
    drop(m);
    let u = usage_of(&a).expect("volumes lists a");
    assert_eq!(num(&u, &["files"]), 3, "{u}");
    // d1, d2 and the root.
    assert_eq!(num(&u, &["directories"]), 3, "{u}");
    let logical: u64 = sizes.iter().map(|s| *s as u64).sum();
    assert_eq!(num(&u, &["logical_bytes"]), logical, "{u}");
    assert_eq!(num(&u, &["block_bytes"]), logical - 10, "{u}");
    assert_eq!(num(&u, &["shared_bytes"]), 0, "nothing shared yet: {u}");

    admin_ok(&["clone", "--owner", "53", "--from", "a", "--to", "b"]);
    let b = Volume::new(&ks, 53, "b");
    let ua = usage_of(&a).expect("volumes lists a");
    let ub = usage_of(&b).expect("volumes lists b");
    assert_eq!(num(&ua, &["shared_bytes"]), logical - 10, "{ua}");
    assert_eq!(num(&ub, &["shared_bytes"]), logical - 10, "{ub}");
    assert_eq!(num(&ub, &["files"]), 3, "{ub}");
    assert_eq!(num(&ub, &["logical_bytes"]), logical, "{ub}");
    let seen: HashSet<u64> = [num(&ua, &["files"]), num(&ub, &["files"])].into();
    assert_eq!(seen.len(), 1);
}
