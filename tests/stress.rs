//! Concurrent two-host stress: two mounts A and B of one volume (default
//! flags), two threads on each acting at the same time for a bounded time
//! (`CASSFS_STRESS_SECS`, default 25) on a small overlapping name space
//! (directories d0..d3, files f0..f7, at depth ≤ 2): whole-file writes in
//! place (inline and block-stored sizes), O_EXCL creates, mkdir, renames of
//! files (over files, across directories) and of directories (new name, into
//! another directory, up), unlink, rmdir, chmod, PHP-style replace (write a
//! temporary file, rename it over), hard links, reads, listings.
//!
//! Races give ENOENT, ESTALE, and per operation EEXIST (O_EXCL, mkdir,
//! link), ENOTEMPTY (rmdir, directory renames), EINVAL (a directory into
//! itself), EBUSY (a directory moved to another parent waits for the
//! volume's mover lease, then gives up: documented): accepted. Any other
//! error (EIO above all, EEXIST from a plain O_CREAT) fails the test, and so does a
//! daemon that dies. A read during the run must be empty, a complete version
//! or a prefix of one (the writing host sees uncommitted writes), never a mix.
//!
//! Each thread also owns a private directory (`priv-A0`, ...) that only it
//! changes, with a model of what it holds: there every result must be the
//! one the model predicts.
//!
//! Afterwards both mounts are unmounted (the daemons must exit 0) and a
//! fresh third mount is checked, every problem collected before failing:
//! the tree (every listed name resolves, no directory reached twice, link
//! counts exact — the README promises exact counts across hosts — sizes
//! match contents), the rows (every entry names a live inode of its kind,
//! directories' `parent` columns and the link-count sets agree with the
//! entries), every shared file holds one complete version some shared
//! writer wrote (a `.tmp-` file may also be empty), no name outside the
//! workload's, and every private directory equals its model exactly
//! (nothing a writer was told succeeded is missing, contents are the last
//! versions written). `CASSFS_STRESS_SEED` replays a seed (the schedule of
//! threads is not replayed, so a race may not recur).

mod common;
#[path = "common/invariants.rs"]
mod invariants;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::*;
use invariants::*;

/// The errors races between writers legitimately give each kind of
/// operation on the shared names (d* are always directories, f* never).
/// ENOENT: a name or a parent went away; ESTALE: the kernel's name cache
/// was out of date; ELOOP: the kernel met a directory under a name it cached
/// before another host moved it (README, known limits). A plain `O_CREAT` (`write`) never gives EEXIST: the
/// README says it opens the file another host created.
fn race_errnos(kind: &str) -> &'static [i32] {
    use libc::{EBUSY, EEXIST, EINVAL, ELOOP, ENOENT, ENOTEMPTY, ESTALE};
    match kind {
        "excl" | "mkdir" | "link" => &[ENOENT, ESTALE, ELOOP, EEXIST],
        "rmdir" => &[ENOENT, ESTALE, ELOOP, ENOTEMPTY],
        // Into itself (EINVAL), over a non-empty directory (ENOTEMPTY, or
        // EEXIST which POSIX allows too); every directory rename waits for
        // the volume's mover lease, then EBUSY (documented).
        "rename-dir" | "move-dir" => &[ENOENT, ESTALE, ELOOP, EINVAL, ENOTEMPTY, EEXIST, EBUSY],
        _ => &[ENOENT, ESTALE, ELOOP],
    }
}

/// Largest version written (some are block-stored, a few span blocks).
const MAX_BIG: usize = 1_500_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every version any writer started to write (whether or not it committed).
type Registry = Arc<Mutex<BTreeSet<VersionKey>>>;

/// What one writer thread did.
#[derive(Default)]
struct Report {
    writer: String,
    /// op kind -> (successes, errno -> count)
    stats: BTreeMap<&'static str, (u64, BTreeMap<i32, u64>)>,
    failures: Vec<String>,
    /// The private directory's model (None: it went wrong, see failures).
    model: Option<Model>,
    private_ops: u64,
    /// Private directory moves refused with EBUSY (mover lease held).
    private_busy: u64,
}

impl Report {
    fn count(&mut self, kind: &'static str, r: &io::Result<()>) {
        let e = self.stats.entry(kind).or_default();
        match r {
            Ok(()) => e.0 += 1,
            Err(err) => *e.1.entry(err.raw_os_error().unwrap_or(-1)).or_default() += 1,
        }
    }
}

struct Ctx {
    root: PathBuf,
    writer: String,
    seed: u64,
    registry: Registry,
    /// Held by in-place writes of shared names on this host: two threads
    /// of one host writing one file at once would interleave their writes
    /// (POSIX allows the mix); across hosts whole-file commits apply.
    host_write: Arc<Mutex<()>>,
    deadline: Instant,
}

fn pick<'a>(rng: &mut StdRng, v: &[&'a str]) -> &'a str {
    v[rng.gen_range(0..v.len())]
}

/// A shared directory path at depth 1 or 2.
fn shared_dir(rng: &mut StdRng) -> String {
    if rng.gen_bool(0.6) {
        pick(rng, &DIR_NAMES).to_string()
    } else {
        format!("{}/{}", pick(rng, &DIR_NAMES), pick(rng, &DIR_NAMES))
    }
}

/// A shared file path: in the root, a directory or a subdirectory.
fn shared_file(rng: &mut StdRng) -> String {
    let f = pick(rng, &FILE_NAMES);
    match rng.gen_range(0..10) {
        0..=2 => f.to_string(),
        3..=6 => format!("{}/{f}", pick(rng, &DIR_NAMES)),
        _ => format!("{}/{}/{f}", pick(rng, &DIR_NAMES), pick(rng, &DIR_NAMES)),
    }
}

fn parent_of(p: &str) -> &str {
    p.rfind('/').map_or("", |i| &p[..i])
}

fn new_version(c: &Ctx, seq: &mut u64, rng: &mut StdRng) -> (VersionKey, Vec<u8>) {
    *seq += 1;
    let k = VersionKey {
        writer: c.writer.clone(),
        seq: *seq,
    };
    lock(&c.registry).insert(k.clone());
    let data = version_bytes(&k.writer, k.seq, pick_size(rng, MAX_BIG));
    (k, data)
}

/// One random operation on the shared names. Returns its kind, what it
/// did (for messages) and its result; a read or listing that finds
/// something impossible returns it as `Err(description)` in the last slot.
fn shared_op(
    c: &Ctx,
    rng: &mut StdRng,
    seq: &mut u64,
) -> (&'static str, String, io::Result<()>, Option<String>) {
    let p = |s: &str| c.root.join(s);
    match rng.gen_range(0..100) {
        0..=15 => {
            let f = shared_file(rng);
            let (k, data) = new_version(c, seq, rng);
            let fsync = rng.gen_bool(0.2);
            let _g = lock(&c.host_write);
            let r = write_file(&p(&f), &data, false, fsync);
            ("write", format!("write {f} = {k}"), r, None)
        }
        16..=23 => {
            let f = shared_file(rng);
            let (k, data) = new_version(c, seq, rng);
            let _g = lock(&c.host_write);
            let r = write_file(&p(&f), &data, true, false);
            ("excl", format!("create O_EXCL {f} = {k}"), r, None)
        }
        24..=33 => {
            let d = shared_dir(rng);
            let r = fs::DirBuilder::new().mode(0o755).create(p(&d));
            ("mkdir", format!("mkdir {d}"), r, None)
        }
        34..=42 => {
            let a = shared_file(rng);
            let b = shared_file(rng);
            let r = fs::rename(p(&a), p(&b));
            ("rename-file", format!("rename {a} -> {b}"), r, None)
        }
        43..=50 => {
            let (x, y, z) = (
                pick(rng, &DIR_NAMES),
                pick(rng, &DIR_NAMES),
                pick(rng, &DIR_NAMES),
            );
            let (a, b) = match rng.gen_range(0..4) {
                0 => (x.to_string(), y.to_string()),
                1 => (x.to_string(), format!("{z}/{y}")),
                2 => (format!("{z}/{x}"), y.to_string()),
                _ => (format!("{z}/{x}"), format!("{z}/{y}")),
            };
            let r = fs::rename(p(&a), p(&b));
            // Moves to another parent take the mover lease (EBUSY after a
            // wait, documented); renames in place do not.
            let kind = if parent_of(&a) == parent_of(&b) {
                "rename-dir"
            } else {
                "move-dir"
            };
            (kind, format!("rename {a} -> {b}"), r, None)
        }
        51..=59 => {
            let f = shared_file(rng);
            let r = fs::remove_file(p(&f));
            ("unlink", format!("unlink {f}"), r, None)
        }
        60..=67 => {
            let d = shared_dir(rng);
            let r = fs::remove_dir(p(&d));
            ("rmdir", format!("rmdir {d}"), r, None)
        }
        68..=71 => {
            let (path, perm) = if rng.gen_bool(0.5) {
                (
                    shared_file(rng),
                    [0o644, 0o600, 0o640, 0o444][rng.gen_range(0..4)],
                )
            } else {
                (shared_dir(rng), [0o755, 0o750, 0o700][rng.gen_range(0..3)])
            };
            let r = fs::set_permissions(p(&path), fs::Permissions::from_mode(perm));
            ("chmod", format!("chmod {perm:o} {path}"), r, None)
        }
        72..=81 => {
            let f = shared_file(rng);
            let (k, data) = new_version(c, seq, rng);
            let tmp = format!(
                "{}{}.tmp-{}-{}",
                parent_of(&f),
                if parent_of(&f).is_empty() { "" } else { "/" },
                c.writer,
                k.seq
            );
            let mut r = write_file(&p(&tmp), &data, false, false);
            if r.is_ok() {
                r = fs::rename(p(&tmp), p(&f));
                if r.is_err() {
                    let _ = fs::remove_file(p(&tmp));
                }
            }
            (
                "replace",
                format!("write {tmp} = {k}, rename over {f}"),
                r,
                None,
            )
        }
        82..=86 => {
            let a = shared_file(rng);
            let b = shared_file(rng);
            let r = fs::hard_link(p(&a), p(&b));
            ("link", format!("link {a} -> {b}"), r, None)
        }
        87..=94 => {
            let f = shared_file(rng);
            let what = format!("read {f}");
            match fs::read(p(&f)) {
                Err(e) => ("read", what, Err(e), None),
                Ok(data) => {
                    let bad = match decode(&data) {
                        Decoded::Empty => None,
                        Decoded::Full(k) | Decoded::Prefix(k, _) => (!lock(&c.registry)
                            .contains(&k))
                        .then(|| format!("{what}: version {k} nobody wrote")),
                        Decoded::Bad(s) => Some(format!("{what}: {s}")),
                    };
                    ("read", what, Ok(()), bad)
                }
            }
        }
        _ => {
            let d = if rng.gen_bool(0.3) {
                String::new()
            } else {
                shared_dir(rng)
            };
            let what = format!("list {d:?}");
            match fs::read_dir(p(&d)) {
                Err(e) => ("list", what, Err(e), None),
                Ok(rd) => {
                    let mut r = Ok(());
                    for e in rd {
                        match e {
                            Ok(e) => {
                                // A listed name may go away at once (a race):
                                // ENOENT is fine, EIO is not.
                                if let Err(err) = fs::symlink_metadata(e.path()) {
                                    r = Err(err);
                                    break;
                                }
                            }
                            Err(err) => {
                                r = Err(err);
                                break;
                            }
                        }
                    }
                    ("list", what, r, None)
                }
            }
        }
    }
}

fn writer_thread(c: Ctx) -> Report {
    let mut rep = Report {
        writer: c.writer.clone(),
        ..Report::default()
    };
    let mut rng = StdRng::seed_from_u64(c.seed);
    let private = format!("priv-{}", c.writer);
    let private_writer = format!("p{}", c.writer);
    if let Err(e) = fs::DirBuilder::new()
        .mode(0o755)
        .create(c.root.join(&private))
    {
        rep.failures
            .push(format!("{}: mkdir {private}: {e}", c.writer));
        return rep;
    }
    let mut model = Some(Model::new(&private));
    let cfg = GenConfig {
        max_big: MAX_BIG,
        max_depth: 2,
        error_pct: 5,
    };
    let mut seq = 0u64;
    let mut pseq = 0u64;
    while Instant::now() < c.deadline {
        if rng.gen_bool(0.3) {
            let Some(m) = model.as_mut() else { continue };
            let (op, expect) = gen_op(m, &mut rng, &private_writer, &mut pseq, cfg);
            match &op {
                Op::Write { ver, .. } | Op::Excl { ver, .. } | Op::Replace { ver, .. } => {
                    lock(&c.registry).insert(ver.clone());
                }
                _ => {}
            }
            rep.private_ops += 1;
            match exec_checked(&c.root, m, &op, &expect) {
                Ok(()) => {
                    if expect.is_ok() {
                        m.apply(&op);
                    }
                }
                Err(mis) if mis.errno == Some(libc::EBUSY) && is_dir_move(m, &op) => {
                    rep.private_busy += 1;
                }
                Err(mis) => {
                    rep.failures.push(format!(
                        "{} in its private directory: {} (the model is abandoned)",
                        c.writer, mis.detail
                    ));
                    model = None;
                }
            }
            continue;
        }
        let (kind, what, r, bad) = shared_op(&c, &mut rng, &mut seq);
        if let Some(b) = bad {
            rep.failures.push(format!("{}: {b}", c.writer));
        }
        if let Err(e) = &r {
            let n = e.raw_os_error().unwrap_or(-1);
            if !race_errnos(kind).contains(&n) {
                rep.failures
                    .push(format!("{}: {what}: {} ({e})", c.writer, errno_name(n)));
            }
        }
        rep.count(kind, &r);
    }
    rep.model = model;
    rep
}

/// A shared name (outside the private directories) the workload can make.
fn known_shared_name(path: &str) -> bool {
    path.split('/')
        .all(|n| DIR_NAMES.contains(&n) || FILE_NAMES.contains(&n) || n.starts_with(".tmp-"))
}

fn is_private(path: &str) -> bool {
    path.starts_with("priv-")
}

#[test]
fn two_hosts_two_threads_each_keep_the_volume_consistent() {
    // SAFETY: umask(2) cannot fail.
    unsafe { libc::umask(0o022) };
    let seed = env_u64("CASSFS_STRESS_SEED").unwrap_or_else(unique_seed);
    let secs = env_u64("CASSFS_STRESS_SECS").unwrap_or(25);
    eprintln!("stress: seed {seed} (CASSFS_STRESS_SEED={seed}), {secs} s");
    let vol = Volume::unique("stress");
    let mut a = vol.mount(&[]);
    let mut b = vol.mount(&[]);
    let registry: Registry = Arc::new(Mutex::new(BTreeSet::new()));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (tx, rx) = mpsc::channel();
    let mut writers = Vec::new();
    for (h, (host, m)) in [("A", &a), ("B", &b)].into_iter().enumerate() {
        let host_write = Arc::new(Mutex::new(()));
        for t in 0..2u64 {
            let c = Ctx {
                root: m.path().to_path_buf(),
                writer: format!("{host}{t}"),
                seed: seed ^ ((h as u64) * 2 + t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                registry: Arc::clone(&registry),
                host_write: Arc::clone(&host_write),
                deadline,
            };
            writers.push(c.writer.clone());
            let tx = tx.clone();
            thread::spawn(move || {
                let _ = tx.send(writer_thread(c));
            });
        }
    }
    drop(tx);
    let mut reports = Vec::new();
    let limit = deadline + Duration::from_secs(120);
    while reports.len() < writers.len() {
        let left = limit.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(r) => reports.push(r),
            Err(_) => {
                let done: Vec<&String> = reports.iter().map(|r: &Report| &r.writer).collect();
                panic!(
                    "seed {seed}: writers {writers:?} still running 120 s after the deadline \
                     (finished: {done:?}): a hung operation"
                );
            }
        }
    }
    reports.sort_by(|x, y| x.writer.cmp(&y.writer));
    let mut failures = Vec::new();
    for r in &reports {
        let mut line = format!(
            "{} ({} private ops, {} EBUSY):",
            r.writer, r.private_ops, r.private_busy
        );
        for (k, (ok, errs)) in &r.stats {
            line.push_str(&format!(" {k} {ok} ok"));
            for (e, n) in errs {
                line.push_str(&format!(" {n} {}", errno_name(*e)));
            }
            line.push(';');
        }
        eprintln!("{line}");
        failures.extend(r.failures.iter().cloned());
        // Not a vacuous run: the writer got things done on the shared names
        // and in its private directory.
        let shared_ok: u64 = r.stats.values().map(|(ok, _)| ok).sum();
        if shared_ok < 20 || r.private_ops < 20 {
            failures.push(format!(
                "{} did almost nothing: {shared_ok} shared successes, {} private operations",
                r.writer, r.private_ops
            ));
        }
    }
    for (name, m) in [("A", &mut a), ("B", &mut b)] {
        if !m.is_alive() {
            failures.push(format!(
                "daemon {name} died during the run; output:\n{}",
                m.output()
            ));
        }
    }
    for (name, m) in [("A", &mut a), ("B", &mut b)] {
        if m.is_alive() {
            let st = m.unmount();
            if !st.success() {
                failures.push(format!("daemon {name} exited with {st} at unmount"));
            }
        }
    }

    let c = vol.mount(&[]);
    let tree = walk(c.path());
    let rows = rows_report(&vol.keyspace, vol.owner, &vol.environment);
    eprintln!(
        "seed {seed}: {} names, {} files; in Cassandra {} entries, {} inodes, {} inode row(s) no \
         name reaches, {} entries left in removed directories ({} naming live inodes){}",
        tree.nodes.len(),
        tree.files.len(),
        rows.dentries,
        rows.inodes,
        rows.unreachable.len(),
        rows.dead_dir_entries,
        rows.dead_dir_entries_live,
        rows.sets_unchecked
            .as_ref()
            .map_or(String::new(), |w| format!(
                "; link-count sets not checked: {w}"
            ))
    );
    // Everything wrong, during the run and after it, in one message.
    let mut bad: Vec<String> = failures.iter().map(|f| format!("run: {f}")).collect();
    bad.extend(tree.problems.iter().map(|p| format!("tree: {p}")));
    bad.extend(rows.problems.iter().map(|p| format!("rows: {p}")));
    for (path, node) in &tree.nodes {
        if is_private(path) {
            continue;
        }
        if !known_shared_name(path) {
            bad.push(format!("{path}: a name nobody made ({:?})", node.kind));
            continue;
        }
        let base = path.rsplit('/').next().unwrap_or(path);
        match node.kind {
            Kind::Dir if DIR_NAMES.contains(&base) => {}
            Kind::File if !DIR_NAMES.contains(&base) => {
                let Some(data) = tree.files.get(path) else {
                    continue; // a read problem, already reported
                };
                match decode(data) {
                    Decoded::Full(k) => {
                        if !lock(&registry).contains(&k) || k.writer.starts_with('p') {
                            bad.push(format!(
                                "{path}: version {k}, never written to a shared name"
                            ));
                        }
                    }
                    Decoded::Empty if base.starts_with(".tmp-") => {}
                    Decoded::Empty => bad.push(format!(
                        "{path}: empty, but every shared file was written whole and nothing \
                         failed"
                    )),
                    Decoded::Prefix(k, n) => {
                        bad.push(format!("{path}: truncated, first {n} bytes of version {k}"))
                    }
                    Decoded::Bad(s) => bad.push(format!("{path}: {s}")),
                }
            }
            k => bad.push(format!(
                "{path}: a {k:?} under a name the workload uses otherwise"
            )),
        }
    }
    for r in &reports {
        let private = format!("priv-{}", r.writer);
        let Some(m) = &r.model else { continue };
        let d = diff(&m.snapshot(), &snapshot_of_tree(&tree, &private));
        if !tree.nodes.contains_key(&private) {
            bad.push(format!("{private}: missing"));
        }
        bad.extend(d.into_iter().map(|l| format!("private: {l}")));
    }
    assert!(
        bad.is_empty(),
        "seed {seed}: {} problem(s) during the run or on the fresh mount after it:\n  - {}",
        bad.len(),
        bad.iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  - ")
    );
}
