//! Running steps in lockstep on CassFS and the oracle, comparing, and
//! shrinking a failing run to a short reproduction.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::common::{Mount, Volume};
use crate::exec::{diff_trees, list_tree, snapshot, Out, Side};
use crate::ops::{next_single, next_two, Op, Step, View};

/// What a run is.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub seed: u64,
    /// Operations to generate (tree checks come on top).
    pub ops: usize,
    /// Two mounts of one volume, whole-file data operations only.
    pub two_mounts: bool,
    /// Mount with every cache TTL at 0 (always so with two mounts).
    pub uncached: bool,
    /// A whole-tree comparison every this many operations.
    pub check_every: usize,
    /// Time allowed for shrinking a failure.
    pub shrink_time: Duration,
}

/// A difference between CassFS and the oracle.
#[derive(Clone, Debug)]
pub struct Mismatch {
    /// Index of the step (== number of steps: the final check).
    pub index: usize,
    /// What kind of difference (shrinking keeps only candidates that fail
    /// the same way).
    pub sig: String,
    pub detail: String,
}

/// The mounts and the oracle directory of one run.
pub struct World {
    /// Per operation kind: (successes, failures) on the oracle side.
    pub stats: std::collections::BTreeMap<&'static str, (usize, usize)>,
    // Sides before mounts: their fds are closed before unmounting.
    fs: Vec<Side>,
    oracle: Side,
    _mounts: Vec<Mount>,
    _oracle_dir: tempfile::TempDir,
}

impl World {
    pub fn new(cfg: &Config) -> World {
        let vol = Volume::unique("oracle");
        let mounts: Vec<Mount> = if cfg.two_mounts {
            vec![vol.mount_uncached(&[]), vol.mount_uncached(&[])]
        } else if cfg.uncached {
            vec![vol.mount_uncached(&[])]
        } else {
            vec![vol.mount(&[])]
        };
        let dir = tempfile::Builder::new()
            .prefix("cassfs-oracle-")
            .tempdir()
            .expect("create the oracle directory");
        World {
            stats: Default::default(),
            fs: mounts.iter().map(|m| Side::new(m.path())).collect(),
            oracle: Side::new(dir.path()),
            _mounts: mounts,
            _oracle_dir: dir,
        }
    }

    fn view(&self) -> View {
        View {
            slot_sizes: self.oracle.slot_sizes(),
            entries: list_tree(&self.oracle.root),
        }
    }

    fn check_tree(&self, mount: usize, index: usize) -> Result<(), Mismatch> {
        let a = snapshot(&self.fs[mount].root);
        let b = snapshot(&self.oracle.root);
        let d = diff_trees(&a, &b);
        if d.is_empty() {
            return Ok(());
        }
        let mut detail = format!("trees differ (through mount {mount}):\n");
        for (path, what, x, y) in d.iter().take(12) {
            let _ = writeln!(
                detail,
                "  {path:?}: {what}: cassfs {x} / oracle {y}",
                path = if path.is_empty() { "/" } else { path }
            );
        }
        let (path, what, ..) = &d[0];
        let _ = path;
        Err(Mismatch {
            index,
            sig: format!("tree:{what}"),
            detail,
        })
    }

    pub fn exec(&mut self, index: usize, step: &Step) -> Result<(), Mismatch> {
        if let Op::CheckTree = step.op {
            return self.check_tree(step.mount, index);
        }
        let mut a = self.fs[step.mount].apply(&step.op);
        let b = self.oracle.apply(&step.op);
        a.normalize(&b);
        let e = self.stats.entry(step.op.kind()).or_default();
        if matches!(b, Out::Err(_) | Out::NoFd) {
            e.1 += 1;
        } else {
            e.0 += 1;
        }
        if a == b {
            return Ok(());
        }
        let extra = Out::explain(&a, &b);
        Err(Mismatch {
            index,
            sig: format!("{}:{}/{}", step.op.kind(), a.shape(), b.shape()),
            detail: format!(
                "step {index}: {step}\n  cassfs: {a:?}\n  oracle: {b:?}{}",
                if extra.is_empty() {
                    String::new()
                } else {
                    format!("\n  {extra}")
                }
            ),
        })
    }

    /// Closes all fds on both sides (comparing), then compares the trees
    /// through every mount.
    pub fn finish(&mut self, index: usize) -> Result<(), Mismatch> {
        let a: Vec<(usize, Out)> = self.fs.iter_mut().flat_map(|s| s.close_all()).collect();
        let b = self.oracle.close_all();
        if a != b {
            return Err(Mismatch {
                index,
                sig: "final_close".into(),
                detail: format!("closing all fds at the end: cassfs {a:?}, oracle {b:?}"),
            });
        }
        for m in 0..self.fs.len() {
            self.check_tree(m, index)?;
        }
        Ok(())
    }
}

/// Replays `steps` on a fresh volume and oracle: the first mismatch.
pub fn replay(steps: &[Step], cfg: &Config) -> Option<Mismatch> {
    let mut w = World::new(cfg);
    for (i, s) in steps.iter().enumerate() {
        if let Err(m) = w.exec(i, s) {
            return Some(m);
        }
    }
    w.finish(steps.len()).err()
}

/// Generates and runs `cfg.ops` operations: the steps run and the first
/// mismatch, if any.
pub fn generate_and_run(cfg: &Config) -> (Vec<Step>, Option<Mismatch>) {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut w = World::new(cfg);
    let mut steps = Vec::new();
    let mounts = if cfg.two_mounts { 2 } else { 1 };
    for n in 0..cfg.ops {
        if n > 0 && n % cfg.check_every == 0 {
            steps.push(Step {
                mount: (n / cfg.check_every) % mounts,
                op: Op::CheckTree,
            });
            if let Err(m) = w.exec(steps.len() - 1, steps.last().expect("a step")) {
                return (steps, Some(m));
            }
        }
        let op = if cfg.two_mounts {
            next_two(&mut rng, &w.view())
        } else {
            next_single(&mut rng, &w.view())
        };
        let mount = if cfg.two_mounts { n % 2 } else { 0 };
        steps.push(Step { mount, op });
        if let Err(m) = w.exec(steps.len() - 1, steps.last().expect("a step")) {
            return (steps, Some(m));
        }
    }
    let res = w.finish(steps.len()).err();
    let summary: Vec<String> = w
        .stats
        .iter()
        .map(|(k, (ok, err))| format!("{k} {ok}/{}", ok + err))
        .collect();
    eprintln!(
        "oracle: seed {}: succeeded/run per kind: {}",
        cfg.seed,
        summary.join(", ")
    );
    (steps, res)
}

/// Delta debugging: removes chunks of steps while the replay still fails
/// with the same signature, within `cfg.shrink_time`. Returns the shortest failing
/// list found and its mismatch.
pub fn shrink(steps: &[Step], first: &Mismatch, cfg: &Config) -> (Vec<Step>, Mismatch, usize) {
    let start = Instant::now();
    let mut cur: Vec<Step> = steps[..first.index.min(steps.len())]
        .iter()
        .cloned()
        .chain(steps.get(first.index).cloned())
        .collect();
    let mut best = first.clone();
    let mut replays = 0;
    // Does the failure reproduce at all from a fresh start?
    match replay(&cur, cfg) {
        Some(m) if m.sig == first.sig => {
            cur.truncate((m.index + 1).min(cur.len()));
            best = m;
        }
        _ => return (cur, best, 1),
    }
    let mut chunk = (cur.len() / 2).max(1);
    loop {
        let mut removed = false;
        let mut i = 0;
        while i < cur.len() {
            if start.elapsed() > cfg.shrink_time {
                return (cur, best, replays);
            }
            let end = (i + chunk).min(cur.len());
            let cand: Vec<Step> = cur[..i].iter().chain(&cur[end..]).cloned().collect();
            replays += 1;
            match replay(&cand, cfg) {
                Some(m) if m.sig == first.sig => {
                    cur = cand;
                    cur.truncate((m.index + 1).min(cur.len()));
                    best = m;
                    removed = true;
                }
                _ => i += chunk,
            }
        }
        if chunk == 1 && !removed {
            return (cur, best, replays);
        }
        if !removed {
            chunk = (chunk / 2).max(1);
        }
    }
}

/// A full report of a failure: seed, the mismatch, the shrunk steps.
pub fn report(cfg: &Config, steps: &[Step], m: &Mismatch) -> String {
    let t0 = Instant::now();
    let (small, sm, replays) = shrink(steps, m, cfg);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "CassFS differs from the oracle: seed {} ({} ops, {}), at step {} of {}",
        cfg.seed,
        cfg.ops,
        if cfg.two_mounts {
            "two mounts"
        } else if cfg.uncached {
            "one mount, caches off"
        } else {
            "one mount"
        },
        m.index,
        steps.len()
    );
    let _ = writeln!(
        s,
        "rerun: CASSFS_ORACLE_SEED={} CASSFS_ORACLE_OPS={}",
        cfg.seed, cfg.ops
    );
    let _ = writeln!(s, "original mismatch [{}]:\n{}", m.sig, m.detail);
    let _ = writeln!(
        s,
        "shrunk to {} steps ({} replays, {:.0?}); the volume starts empty, paths are relative to the root;\nthe run ends by closing all fds and comparing the trees:",
        small.len(),
        replays,
        t0.elapsed()
    );
    for (i, st) in small.iter().enumerate() {
        let _ = writeln!(s, "  {i:3}: {st}");
    }
    let _ = writeln!(s, "shrunk mismatch [{}]:\n{}", sm.sig, sm.detail);
    s
}

/// Runs one configuration; panics with a report on a mismatch.
pub fn run(cfg: &Config) {
    let t0 = Instant::now();
    eprintln!(
        "oracle: seed {} ops {} two_mounts {}",
        cfg.seed, cfg.ops, cfg.two_mounts
    );
    let (steps, m) = generate_and_run(cfg);
    if let Some(m) = m {
        let r = report(cfg, &steps, &m);
        eprintln!("{r}");
        panic!("{r}");
    }
    eprintln!(
        "oracle: seed {} passed {} steps in {:.1?}",
        cfg.seed,
        steps.len(),
        t0.elapsed()
    );
}
