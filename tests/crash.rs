//! Crash test: the daemon is killed with SIGKILL in the middle of a workload,
//! the volume is remounted, and what the fresh mount shows must be a state
//! the workload could have left.
//!
//! Each round mounts the volume (default flags), runs a seeded single-writer
//! workload on a thread (whole-file writes of 80 B .. 3 MiB in place and by
//! rename over a temporary file, O_EXCL creates, renames of files and
//! directories, unlinks, hard links, mkdir/rmdir, chmod, reads compared with
//! the model), kills the daemon after a random 0.3–2 s, force-unmounts the
//! dead mount (the workload must stop on its errors, within a deadline),
//! remounts the SAME volume and checks:
//! - every operation that failed before the kill failed as the model said;
//! - the tree walks cleanly (`check_tree`: every listed name resolves, no
//!   cycles, link counts right, sizes match contents);
//! - the whole tree equals the model before the interrupted operation, after
//!   it, or one of its visible intermediate steps — so nothing that returned
//!   success is lost, and every file holds exactly one complete version
//!   written to it (never a mix or a truncated one);
//! - the rows (`check_rows`): every entry names an inode row that exists.
//!
//! Rounds go on from the state found, so later rounds work on a tree with
//! history. Environment: `CASSFS_CRASH_ROUNDS` (default 10),
//! `CASSFS_CRASH_SEED` (default: random, printed).

mod common;
#[path = "common/invariants.rs"]
mod invariants;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::*;
use invariants::*;

/// What the workload thread and the test share.
struct Work {
    model: Model,
    seq: u64,
    /// The operation started and not yet known to have finished.
    in_flight: Option<(Op, Expect)>,
    /// The first result that differed from the model, and when.
    failure: Option<(Mismatch, Instant)>,
    ops_done: usize,
    /// Directory moves refused with EBUSY (the mover lease was held).
    busy: usize,
}

const WRITER: &str = "W";

fn lock(w: &Mutex<Work>) -> std::sync::MutexGuard<'_, Work> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs operations until `stop` or the first result the model did not
/// predict (after the kill: ENOTCONN and the like).
fn workload(root: std::path::PathBuf, work: Arc<Mutex<Work>>, stop: Arc<AtomicBool>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let cfg = GenConfig {
        max_big: 3 << 20,
        max_depth: 3,
        error_pct: 8,
    };
    while !stop.load(Ordering::SeqCst) {
        let (op, expect, model) = {
            let mut w = lock(&work);
            let mut seq = w.seq;
            let (op, expect) = gen_op(&w.model, &mut rng, WRITER, &mut seq, cfg);
            w.seq = seq;
            w.in_flight = Some((op.clone(), expect));
            (op, expect, w.model.clone())
        };
        let r = exec_checked(&root, &model, &op, &expect);
        let mut w = lock(&work);
        match r {
            Ok(()) => {
                if expect.is_ok() {
                    w.model.apply(&op);
                }
                w.in_flight = None;
                w.ops_done += 1;
            }
            Err(m) if m.errno == Some(libc::EBUSY) && is_dir_move(&model, &op) => {
                // The dead mount's mover lease (30 s) may still be held.
                w.in_flight = None;
                w.busy += 1;
            }
            Err(m) => {
                w.failure = Some((m, Instant::now()));
                return;
            }
        }
    }
}

#[test]
fn sigkill_during_a_workload_leaves_a_consistent_tree() {
    // Modes in the model assume this umask.
    // SAFETY: umask(2) cannot fail.
    unsafe { libc::umask(0o022) };
    let seed = env_u64("CASSFS_CRASH_SEED").unwrap_or_else(unique_seed);
    let rounds = env_u64("CASSFS_CRASH_ROUNDS").unwrap_or(10);
    eprintln!("crash test: seed {seed} (CASSFS_CRASH_SEED={seed}), {rounds} rounds");
    let mut rng = StdRng::seed_from_u64(seed);
    let vol = Volume::unique("crash");
    let work = Arc::new(Mutex::new(Work {
        model: Model::new(""),
        seq: 0,
        in_flight: None,
        failure: None,
        ops_done: 0,
        busy: 0,
    }));
    let mut m = vol.mount(&[]);
    let started = Instant::now();
    for round in 0..rounds {
        let ctx = format!("seed {seed}, round {round}");
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        {
            let root = m.path().to_path_buf();
            let work = Arc::clone(&work);
            let stop = Arc::clone(&stop);
            let tseed = seed ^ (round + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            thread::spawn(move || {
                workload(root, work, stop, tseed);
                let _ = tx.send(());
            });
        }
        thread::sleep(Duration::from_millis(rng.gen_range(300..2000)));
        let killed_at = Instant::now();
        let pid = m.pid().expect("the daemon runs");
        assert!(
            m.is_alive(),
            "{ctx}: the daemon died during the workload; output:\n{}",
            m.output()
        );
        let st = m.stop_with_signal(libc::SIGKILL);
        stop.store(true, Ordering::SeqCst);
        assert!(
            force_unmount(m.path()),
            "{ctx}: cannot unmount the dead mount of pid {pid}"
        );
        let finished = rx.recv_timeout(Duration::from_secs(30)).is_ok();
        assert!(
            finished,
            "{ctx}: the workload did not stop within 30 s of the kill (hung on {:?})",
            lock(&work).in_flight
        );
        drop(m);

        let (in_flight, before, ops_done, busy) = {
            let mut w = lock(&work);
            if let Some((f, at)) = w.failure.take() {
                assert!(
                    at >= killed_at,
                    "{ctx}: before the kill, {} (errno {:?})",
                    f.detail,
                    f.errno
                );
            }
            let done = (w.ops_done, w.busy);
            w.ops_done = 0;
            w.busy = 0;
            (w.in_flight.take(), w.model.clone(), done.0, done.1)
        };
        eprintln!(
            "round {round}: {ops_done} operations ({busy} directory moves EBUSY), killed ({st}) \
             during {}",
            in_flight
                .as_ref()
                .map_or("nothing".to_string(), |(op, e)| format!(
                    "{op} (expect {e:?})"
                ))
        );

        m = vol.mount(&[]);
        let tree = check_tree(m.path(), &format!("{ctx}, after the kill"));
        let actual = snapshot_of_tree(&tree, "");
        let candidates = match &in_flight {
            Some((op, expect)) => before.candidates(op, expect),
            None => vec![("idle".to_string(), before.clone())],
        };
        let matched = candidates
            .iter()
            .find(|(_, c)| c.snapshot() == actual)
            .map(|(name, _)| name.clone());
        match matched {
            Some(name) => eprintln!(
                "round {round}: tree matches the state {name:?} ({} names, {} files)",
                actual.len(),
                tree.files.len()
            ),
            None => {
                let mut msg = format!(
                    "{ctx}: after the kill during {:?} the tree is no state the workload could \
                     have left.",
                    in_flight.as_ref().map(|(op, _)| op.to_string())
                );
                for (name, c) in &candidates {
                    let d = diff(&c.snapshot(), &actual);
                    msg.push_str(&format!("\n differences from {name:?}:"));
                    for l in d.iter().take(20) {
                        msg.push_str(&format!("\n   {l}"));
                    }
                }
                panic!("{msg}");
            }
        }
        let rows = check_rows(
            &vol.keyspace,
            vol.owner,
            &vol.environment,
            &format!("{ctx}, after the kill"),
        );
        eprintln!(
            "round {round}: rows consistent ({} entries, {} inodes, {} entries in removed \
             directories, {} inode row(s) no name reaches: invisible leaks {:?})",
            rows.dentries,
            rows.inodes,
            rows.dead_dir_entries,
            rows.unreachable.len(),
            rows.unreachable
        );
        if !rows.removal_marks.is_empty() {
            // An rmdir killed midway: its directory takes no names until
            // the mark expires (README: 60 s at most).
            let marked = Instant::now();
            while !rows_report(&vol.keyspace, vol.owner, &vol.environment)
                .removal_marks
                .is_empty()
            {
                assert!(
                    marked.elapsed() < Duration::from_secs(90),
                    "{ctx}: removal marks {:?} did not expire within 90 s",
                    rows.removal_marks
                );
                thread::sleep(Duration::from_secs(1));
            }
            eprintln!(
                "round {round}: removal marks {:?} of a killed rmdir expired after {:?}",
                rows.removal_marks,
                marked.elapsed()
            );
        }
        // Go on from what is there.
        lock(&work).model = Model::from_tree(&tree, "");
    }
    let st = m.unmount();
    assert!(st.success(), "clean unmount at the end: {st}");
    eprintln!("crash test: {rounds} rounds in {:?}", started.elapsed());
}

/// The checker itself (no mount): a complete version decodes as itself; a
/// truncated one, a mix of two and garbage never pass as a version.
#[test]
fn versions_tell_complete_from_truncated_or_mixed() {
    for len in [80, 4_000, 65_536, 65_537, 1_100_000] {
        let a = version_bytes("W", 1, len);
        let b = version_bytes("W", 2, len);
        assert_eq!(a.len(), len);
        let key = |seq| VersionKey {
            writer: "W".into(),
            seq,
        };
        assert_eq!(decode(&a), Decoded::Full(key(1)));
        assert_eq!(decode(&a[..len / 2]), Decoded::Prefix(key(1), len / 2));
        let mut mix = a[..len / 2].to_vec();
        mix.extend_from_slice(&b[len / 2..]);
        assert!(
            matches!(decode(&mix), Decoded::Bad(_)),
            "a mix of two versions of {len} bytes"
        );
        let mut longer = a.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Decoded::Bad(_)));
        assert!(matches!(decode(&vec![0u8; len]), Decoded::Bad(_)));
    }
    assert_eq!(decode(b""), Decoded::Empty);
}
