//! Directory generations: what keeps a directory listable whatever was
//! created and deleted in it before (the design is in `cql/cassfs.cql`,
//! table `dir_entries`).
//!
//! This module owns which generation each directory's entries are in (a
//! map kept from inode reads, corrected whenever a generation turns out
//! frozen), the count of removals per directory (`churn`), and rolling a
//! directory to a new generation when its current one has collected too
//! many tombstones: freeze, copy the live entries, move the directory on,
//! drop the old entries with one range tombstone. Every step of a roll is
//! idempotent, so a mount that finds a roll left unfinished (its mount
//! died) for [`TAKEOVER`] finishes it.

use std::collections::HashMap;
use std::thread;
use std::time::{Duration, Instant};

use scylla::value::CqlValue;

use crate::metrics::{CqlKind, Tally};

use super::conn::{first_bool, result_rows};
use super::session::Store;
use super::statements::FROZEN;
use super::writes::Write;
use super::{Kind, Result, StoreError};

/// Removals after which a generation is rolled, or its live entries when it
/// has more (a big directory is copied only after as many removals: the
/// copies cost at most one write per removal).
pub const ROLL_AFTER: i64 = 1000;
/// Each mount adds its removals in a directory to `churn` this many at a time.
const FLUSH_EVERY: u32 = 64;
/// How long a frozen generation may stay current before another mount
/// finishes its roll.
pub const TAKEOVER: Duration = Duration::from_secs(5);
/// Directories whose generation a store remembers (then it starts over).
const REMEMBERED: usize = 1 << 16;
/// Times one call follows a generation to the next before it gives up.
const FOLLOW: usize = 16;

/// The outcome of one attempt of a call on a directory's generation.
pub(super) enum Attempt<T> {
    Done(T),
    /// The generation was frozen: the value to return should it still be
    /// current (a read of a roll under way is complete).
    Frozen(T),
}

/// A generation's sentinel.
pub(super) struct Sentinel {
    pub ino: Option<i64>,
    roll_at: Option<i64>,
    /// Write time of `ino`, in microseconds.
    written_us: Option<i64>,
}

fn now_us() -> i64 {
    super::now_ns() / 1000
}

fn big(v: Option<&CqlValue>) -> Option<i64> {
    match v {
        Some(CqlValue::BigInt(n)) | Some(CqlValue::Counter(scylla::value::Counter(n))) => Some(*n),
        _ => None,
    }
}

impl Store {
    /// The generation of a directory's entries, as this store knows it.
    pub(super) fn gen_of(&self, dir: u64) -> Result<i64> {
        if let Some(g) = self.gens.lock().get(&dir) {
            return Ok(*g);
        }
        let g = self.read_gen(dir)?.unwrap_or(0);
        self.note_gen(dir, g);
        Ok(g)
    }

    /// Remembers a directory's generation (read with its inode). Only ever
    /// forward: a read that raced a roll cannot take a store back.
    pub(super) fn note_gen(&self, dir: u64, gen: i64) {
        let mut m = self.gens.lock();
        if m.len() >= REMEMBERED && !m.contains_key(&dir) {
            m.clear();
        }
        let g = m.entry(dir).or_insert(gen);
        *g = (*g).max(gen);
    }

    /// The generation in the directory's inode row (`None`: no such directory).
    fn read_gen(&self, dir: u64) -> Result<Option<i64>> {
        let v = (self.owner, self.env.clone(), dir as i64);
        let rows = self.exec(&self.gt.read_gen, v)?;
        let Some(row) = rows.into_iter().next() else {
            return Ok(None);
        };
        let kind =
            matches!(row.columns.first(), Some(Some(CqlValue::Int(k))) if *k == Kind::Dir as i32);
        Ok(kind.then(|| big(row.columns.get(1).and_then(|c| c.as_ref())).unwrap_or(0)))
    }

    pub(super) fn sentinel_of(&self, dir: u64, gen: i64) -> Result<Sentinel> {
        let v = self.sentinel_key(dir, gen);
        let rows = self.exec(&self.gt.sentinel, v)?;
        let cols = rows
            .into_iter()
            .next()
            .map(|r| r.columns)
            .unwrap_or_default();
        let col = |i: usize| big(cols.get(i).and_then(|c| c.as_ref()));
        Ok(Sentinel {
            ino: col(0),
            roll_at: col(1),
            written_us: col(2),
        })
    }

    /// Whether each (directory, generation) is frozen, read in parallel.
    fn frozen(&self, gens: &[(u64, i64)]) -> Result<Vec<bool>> {
        let (ps, owner, env) = (&self.gt.sentinel, self.owner, self.env.as_str());
        self.conn
            .fan_out(CqlKind::Read, gens, |s, (dir, gen)| async move {
                let v = (owner, env, dir as i64, gen, Vec::<u8>::new());
                let r = s.execute_unpaged(ps, v).await;
                let rows = result_rows(r.map_err(StoreError::request)?)?;
                let first = rows
                    .into_iter()
                    .next()
                    .and_then(|r| r.columns.into_iter().next());
                Ok(big(first.flatten().as_ref()) == Some(FROZEN))
            })
    }

    /// Runs `attempt` on the directory's generation; when that generation
    /// turns out frozen, on the next one. `wait`: a write, which must wait
    /// for a roll under way to end; a read uses the frozen generation while
    /// it is still current (it is complete).
    pub(super) fn in_dir<T>(
        &self,
        dir: u64,
        wait: bool,
        mut attempt: impl FnMut(i64) -> Result<Attempt<T>>,
    ) -> Result<T> {
        let mut gen = self.gen_of(dir)?;
        for _ in 0..FOLLOW {
            match attempt(gen)? {
                Attempt::Done(v) => return Ok(v),
                Attempt::Frozen(v) => match self.next_gen(dir, gen, wait)? {
                    Some(g) => gen = g,
                    None => return Ok(v),
                },
            }
        }
        Err(StoreError::Corrupt {
            table: "dir_entries",
            reason: format!("directory {dir}: generation {gen} still frozen after {FOLLOW} rolls"),
        })
    }

    /// The generation after frozen `seen`, once the directory points at
    /// it: `None` when it still points at `seen` and `!wait`, or when the
    /// directory is gone. A write waits for the roll, and after
    /// [`TAKEOVER`] finishes it.
    fn next_gen(&self, dir: u64, seen: i64, wait: bool) -> Result<Option<i64>> {
        let start = Instant::now();
        loop {
            match self.read_gen(dir)? {
                None => return Ok(None),
                Some(g) if g > seen => {
                    self.note_gen(dir, g);
                    return Ok(Some(g));
                }
                Some(_) if !wait => return Ok(None),
                Some(_) if start.elapsed() >= TAKEOVER => self.finish_roll(dir, seen)?,
                Some(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Counts a removal in `dir`; every [`FLUSH_EVERY`] removals adds them
    /// to the directory's `churn` and rolls the directory when it is due.
    /// Failures are logged: the removal itself has happened.
    pub(super) fn note_removal(&self, dir: u64) {
        let flush = {
            let mut t = self.tally.lock();
            if t.len() >= REMEMBERED {
                t.clear();
            }
            let n = t.entry(dir).or_insert(0);
            *n += 1;
            let full = *n >= FLUSH_EVERY;
            if full {
                t.remove(&dir);
            }
            full
        };
        if flush {
            if let Err(e) = self.flush_removals(dir, i64::from(FLUSH_EVERY)) {
                log::warn!("directory {dir}: counting removals: {e}");
            }
        }
    }

    fn flush_removals(&self, dir: u64, n: i64) -> Result<()> {
        let key = (self.owner, self.env.clone(), dir as i64);
        let s = self.conn.session();
        let (k, ps) = (key.clone(), &self.gt.churn_add);
        self.conn.run_as(Tally::of(CqlKind::Write, 1), async move {
            let add = scylla::value::Counter(n);
            s.execute_unpaged(ps, (add, k.0, k.1, k.2))
                .await
                .map_err(StoreError::request)?;
            Ok(())
        })?;
        let removed = self.removed_in(dir)?;
        let gen = self.gen_of(dir)?;
        let s = self.sentinel_of(dir, gen)?;
        if s.ino.is_some() || removed < s.roll_at.unwrap_or(ROLL_AFTER) {
            return Ok(()); // an rmdir or a roll under way, or not due
        }
        if s.roll_at.is_none() {
            // A generation no roll started (a directory's first): due
            // when its removals reach its live entries too.
            let live = self.rows_of_gen(dir, gen)?.1.len() as i64;
            if live > removed {
                return self.set_roll_at(dir, gen, live, now_us());
            }
        }
        self.roll(dir, gen)
    }

    /// Records in a generation's sentinel the `churn` count at which it is
    /// due to roll (`ts_us`: the write's timestamp).
    fn set_roll_at(&self, dir: u64, gen: i64, at: i64, ts_us: i64) -> Result<()> {
        let (k0, k1, k2, k3, k4) = self.sentinel_key(dir, gen);
        self.exec(&self.gt.roll_at, (ts_us, at, k0, k1, k2, k3, k4))?;
        Ok(())
    }

    /// Entries ever removed from `dir` (all mounts' flushed counts).
    fn removed_in(&self, dir: u64) -> Result<i64> {
        let rows = self.exec(
            &self.gt.churn_read,
            (self.owner, self.env.clone(), dir as i64),
        )?;
        let first = rows
            .into_iter()
            .next()
            .and_then(|r| r.columns.into_iter().next());
        Ok(big(first.flatten().as_ref()).unwrap_or(0))
    }

    /// Rolls `dir` from generation `gen` to the next, unless another mount
    /// is rolling it or an rmdir holds it.
    pub fn roll(&self, dir: u64, gen: i64) -> Result<()> {
        let v = self.sentinel_key(dir, gen);
        if !first_bool(self.exec(&self.gt.freeze, v)?) {
            return Ok(());
        }
        self.finish_roll(dir, gen)
    }

    /// Copies frozen generation `gen` of `dir` into the next, points the
    /// directory there and drops the old entries. Idempotent.
    fn finish_roll(&self, dir: u64, gen: i64) -> Result<()> {
        let frozen = self.sentinel_of(dir, gen)?;
        let (Some(FROZEN), Some(ts)) = (frozen.ino, frozen.written_us) else {
            return Ok(());
        };
        let (_, live) = self.rows_of_gen(dir, gen)?;
        let next = gen + 1;
        let key = (self.owner, self.env.clone(), dir as i64);
        let (ps, owner, env) = (&self.gt.copy, self.owner, self.env.as_str());
        self.conn
            .fan_out(CqlKind::Write, &live, |s, (d, moving)| async move {
                let moving = moving.unwrap_or_default();
                let v = (
                    owner,
                    env,
                    dir as i64,
                    next,
                    d.name,
                    d.ino as i64,
                    d.kind as i32,
                    moving,
                    ts,
                );
                s.execute_unpaged(ps, v)
                    .await
                    .map(drop)
                    .map_err(StoreError::request)
            })?;
        let roll_at = self.removed_in(dir)? + ROLL_AFTER.max(live.len() as i64);
        self.set_roll_at(dir, next, roll_at, ts)?;
        self.exec(
            &self.gt.set_gen,
            (ts, next, self.owner, self.env.clone(), dir as i64),
        )?;
        self.note_gen(dir, next);
        let (k0, k1, k2) = key;
        self.exec(&self.gt.drop_old, (k0, k1, k2, gen, Vec::<u8>::new()))?;
        log::debug!(
            "directory {dir}: rolled to generation {next} ({} entries)",
            live.len()
        );
        Ok(())
    }

    /// After unconditional writes of entries (`used`: the directories and
    /// generations they went to): a generation frozen meanwhile may have
    /// been copied without them, so they are made again in the next one —
    /// a removal as a conditional removal of the same inode.
    pub(super) fn entries_landed(&self, writes: &[Write], used: &[(u64, i64)]) -> Result<()> {
        let mut moved: HashMap<u64, i64> = HashMap::new();
        for (&(dir, gen), frozen) in used.iter().zip(self.frozen(used)?) {
            if frozen {
                self.next_gen(dir, gen, true)?;
                moved.insert(dir, gen);
            }
        }
        for w in writes {
            match w {
                Write::DeleteDentry(p, name, ino) if moved.contains_key(p) => {
                    self.remove_dentry(*p, name, *ino, Vec::new())?;
                }
                Write::PutDentry(p, _) | Write::ClearMoving(p, _) if moved.contains_key(p) => {
                    self.apply(vec![w.clone()])?;
                }
                Write::DeleteDentry(p, ..) => self.note_removal(*p),
                _ => {}
            }
        }
        Ok(())
    }
}
