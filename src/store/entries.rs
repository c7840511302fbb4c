//! Directory entries: the names of a directory in the `dir_entries` table, each
//! call aimed at the directory's current generation (`store/generations.rs`).
//!
//! Creates, replaces and removals of names are conditional batches with the
//! generation's sentinel (the entry with the empty name), so that none lands
//! in a directory being removed or in a generation that was rolled; reads
//! return the sentinel beside the rows, so a frozen generation is noticed
//! and the read repeated in the next one.

use scylla::response::{PagingState, PagingStateResponse};
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;

use crate::metrics::{CqlKind, Tally};

use super::changes::Touched;
use super::conn::{applied_with, first_bool, result_rows};
use super::generations::Attempt;
use super::moves::RawDentry;
use super::records::dentry_from_row;
use super::session::Store;
use super::statements::{FROZEN, SMALL_DIR};
use super::writes::Write;
use super::{Dentry, Inode, Result, StoreError};

/// The sentinel's `ino` (None: live) and the entries of some rows.
type Rows = (Option<i64>, Vec<RawDentry>);

/// Whether a conditional write of an entry applied, judged from the inode
/// the entry names now (`None`: no entry).
type Landed = dyn Fn(Option<u64>) -> bool;

/// Rows of `name, ino, kind, moving_from`: the sentinel's state and the
/// entries (rows without an inode are not entries: skipped).
fn split_rows(res: scylla::response::query_result::QueryResult) -> Result<Rows> {
    let p = parse_rows(res)?;
    Ok((p.sentinel, p.entries))
}

/// What one read of entry rows returned.
struct Parsed {
    sentinel: Option<i64>,
    entries: Vec<RawDentry>,
    /// Rows read, entries or not, and the name of the last: a row without
    /// an inode (a rename's record cleared after its entry went) is not an
    /// entry, but counts against a LIMIT.
    rows: usize,
    last: Option<Vec<u8>>,
}

fn parse_rows(res: scylla::response::query_result::QueryResult) -> Result<Parsed> {
    let rows = res.into_rows_result().map_err(StoreError::request)?;
    let rows = rows
        .rows::<(Vec<u8>, Option<i64>, Option<i32>, Option<Vec<u8>>)>()
        .map_err(StoreError::request)?;
    let mut p = Parsed {
        sentinel: None,
        entries: Vec::new(),
        rows: 0,
        last: None,
    };
    for r in rows {
        let (name, ino, kind, moving) = r.map_err(StoreError::request)?;
        p.rows += 1;
        if name.is_empty() {
            p.sentinel = ino;
            continue;
        }
        p.last = Some(name.clone());
        if let (Some(ino), Some(kind)) = (ino, kind) {
            let moving = moving.filter(|m| !m.is_empty());
            p.entries
                .push((dentry_from_row((name, ino, kind))?, moving));
        }
    }
    Ok(p)
}

/// What a read found: the rows, and whether the generation was frozen.
fn attempt<T>((sentinel, rows): (Option<i64>, T)) -> Attempt<T> {
    if sentinel == Some(FROZEN) {
        Attempt::Frozen(rows)
    } else {
        Attempt::Done(rows)
    }
}

impl Store {
    pub(super) fn dir_key(&self, dir: u64, gen: i64) -> (i64, String, i64, i64) {
        (self.owner, self.env.clone(), dir as i64, gen)
    }

    /// The key of a generation's sentinel (the entry with the empty name).
    pub(super) fn sentinel_key(&self, dir: u64, gen: i64) -> (i64, String, i64, i64, Vec<u8>) {
        (self.owner, self.env.clone(), dir as i64, gen, Vec::new())
    }

    fn read_rows<V: SerializeRow + Send>(&self, ps: &PreparedStatement, v: V) -> Result<Rows> {
        let s = self.conn.session();
        let t = Tally::of(CqlKind::of_statement(ps.get_statement()), 1);
        self.conn.run_as(t, async move {
            split_rows(
                s.execute_unpaged(ps, v)
                    .await
                    .map_err(StoreError::request)?,
            )
        })
    }

    pub fn get_dentry(&self, parent: u64, name: &[u8]) -> Result<Option<Dentry>> {
        let raw = self.get_raw_dentry(parent, name)?;
        self.settle_one(parent, raw)
    }

    /// An entry as stored, with the source of an unfinished rename.
    pub(super) fn get_raw_dentry(&self, parent: u64, name: &[u8]) -> Result<Option<RawDentry>> {
        self.raw_dentry(&self.est.get, parent, name)
    }

    /// An entry read at SERIAL consistency: a conditional write of it that
    /// a killed process left under way is settled first (for replaying what
    /// such a process left: renames, removals).
    pub(super) fn get_raw_dentry_serial(
        &self,
        parent: u64,
        name: &[u8],
    ) -> Result<Option<RawDentry>> {
        self.raw_dentry(&self.est.get_serial, parent, name)
    }

    fn raw_dentry(
        &self,
        ps: &PreparedStatement,
        parent: u64,
        name: &[u8],
    ) -> Result<Option<RawDentry>> {
        self.in_dir(parent, false, |gen| {
            let (k0, k1, k2, k3) = self.dir_key(parent, gen);
            let v = (k0, k1, k2, k3, Vec::<u8>::new(), name.to_vec());
            let (sentinel, mut rows) = self.read_rows(ps, v)?;
            Ok(attempt((sentinel, rows.pop())))
        })
    }

    /// An entry and its inode. With a `guess` of the inode number (from a
    /// cache) both are read at once: one round trip when the guess is right.
    pub fn get_dentry_and_inode(
        &self,
        parent: u64,
        name: &[u8],
        guess: Option<u64>,
    ) -> Result<(Option<Dentry>, Option<Inode>)> {
        let got = match guess {
            Some(guess) => {
                let (k0, k1, k2, k3) = self.dir_key(parent, self.gen_of(parent)?);
                let v = (k0, k1, k2, k3, Vec::<u8>::new(), name.to_vec());
                let s = self.conn.session();
                let (pd, pi) = (&self.est.get, &self.st.get_inode);
                let (owner, env) = (self.owner, self.env.as_str());
                let (d, i) = self.conn.run_as(Tally::of(CqlKind::Read, 2), async {
                    let (d, i) = tokio::join!(
                        async {
                            split_rows(
                                s.execute_unpaged(pd, v)
                                    .await
                                    .map_err(StoreError::request)?,
                            )
                        },
                        super::inodes::fetch_inode(&s, pi, owner, env, guess)
                    );
                    Ok((d?, i?))
                })?;
                let i = i.map(|(inode, g)| self.noted(inode, g));
                Some((d, i))
            }
            None => None,
        };
        let (d, i) = match got {
            Some(((sentinel, mut rows), i)) if sentinel != Some(FROZEN) => {
                (self.settle_one(parent, rows.pop())?, i)
            }
            _ => (self.get_dentry(parent, name)?, None),
        };
        match (&d, guess) {
            (Some(d), Some(g)) if d.ino == g => Ok((Some(d.clone()), i)),
            (Some(d), _) => Ok((Some(d.clone()), self.get_inode(d.ino)?)),
            (None, _) => Ok((None, None)),
        }
    }

    /// Every entry of a directory, read page by page. An error is an error,
    /// never an empty listing.
    pub fn list_dir(&self, parent: u64) -> Result<Vec<Dentry>> {
        let rows = self.in_dir(parent, false, |gen| {
            Ok(attempt(self.rows_of_gen(parent, gen)?))
        })?;
        self.settle(parent, rows)
    }

    /// Every row of one generation of a directory, read page by page.
    pub(super) fn rows_of_gen(&self, dir: u64, gen: i64) -> Result<Rows> {
        let (mut sentinel, mut all) = (None, Vec::new());
        let mut paging = PagingState::start();
        loop {
            let s = self.conn.session();
            let ps = &self.est.list;
            let key = self.dir_key(dir, gen);
            let state = paging.clone();
            let (rows, next) = self.conn.run_as(Tally::of(CqlKind::Read, 1), async move {
                let (res, next) = s
                    .execute_single_page(ps, key, state)
                    .await
                    .map_err(StoreError::request)?;
                Ok((split_rows(res)?, next))
            })?;
            sentinel = sentinel.or(rows.0);
            all.extend(rows.1);
            match next {
                PagingStateResponse::HasMorePages { state } => paging = state,
                PagingStateResponse::NoMorePages => return Ok((sentinel, all)),
            }
        }
    }

    /// Every entry of a directory in one request, or `None` when it has
    /// more than [`SMALL_DIR`] entries.
    pub fn list_small_dir(&self, parent: u64) -> Result<Option<Vec<Dentry>>> {
        let p = self.in_dir(parent, false, |gen| {
            let s = self.conn.session();
            let (ps, v) = (&self.est.small, self.dir_key(parent, gen));
            let p = self.conn.run_as(Tally::of(CqlKind::Read, 1), async move {
                parse_rows(
                    s.execute_unpaged(ps, v)
                        .await
                        .map_err(StoreError::request)?,
                )
            })?;
            Ok(attempt((p.sentinel, p)))
        })?;
        // A full LIMIT may have cut entries off, whatever it returned.
        if p.entries.len() > SMALL_DIR || p.rows >= SMALL_DIR + 2 {
            return Ok(None);
        }
        self.settle(parent, p.entries).map(Some)
    }

    /// At most `limit` entries of a directory, in name order, from the
    /// first name after `after` (from the start for `None`).
    pub fn list_page(&self, dir: u64, after: Option<&[u8]>, limit: usize) -> Result<Vec<Dentry>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let n = i32::try_from(limit).unwrap_or(i32::MAX);
        let mut after = after.unwrap_or_default().to_vec();
        let rows = self.in_dir(dir, false, |gen| {
            // Pages of rows that are not entries are stepped over.
            loop {
                let (k0, k1, k2, k3) = self.dir_key(dir, gen);
                let page = (k0, k1.clone(), k2, k3, after.clone(), n);
                let sentinel = self.sentinel_key(dir, gen);
                let s = self.conn.session();
                let (pp, ps) = (&self.est.page, &self.est.sentinel);
                let t = Tally::of(CqlKind::Read, 2);
                let (page, sentinel) = self.conn.run_as(t, async move {
                    let (p, st) =
                        tokio::join!(s.execute_unpaged(pp, page), s.execute_unpaged(ps, sentinel));
                    let p = parse_rows(p.map_err(StoreError::request)?)?;
                    let (st, _) = split_rows(st.map_err(StoreError::request)?)?;
                    Ok((p, st))
                })?;
                match page.last {
                    Some(last) if page.entries.is_empty() && page.rows >= limit => after = last,
                    _ => return Ok(attempt((sentinel, page.entries))),
                }
            }
        })?;
        self.settle(dir, rows)
    }

    /// Whether a directory has any entry.
    pub fn dir_has_entries(&self, parent: u64) -> Result<bool> {
        Ok(!self.list_page(parent, None, 16)?.is_empty())
    }

    /// Writes an entry, whatever was there (no condition).
    pub fn put_dentry(&self, parent: u64, d: &Dentry) -> Result<()> {
        self.apply(vec![Write::PutDentry(parent, d.clone())])
    }

    /// Removes an entry naming `ino` (no condition).
    pub fn delete_dentry(&self, parent: u64, name: &[u8], ino: u64) -> Result<()> {
        self.apply(vec![Write::DeleteDentry(parent, name.to_vec(), ino)])
    }

    /// Creates a name unless it exists, as one conditional write decided by
    /// Cassandra (not by a cache), with `also` applied in the same round
    /// trip whatever the outcome: true when this call created the name.
    pub fn create_dentry(&self, parent: u64, d: &Dentry, also: Vec<Write>) -> Result<bool> {
        self.create_dentry_from(parent, d, None, also)
    }

    /// Creates a new inode and its name `d` in `parent`: the inode's row is
    /// written in the same round trip as the name's conditional write (and
    /// `also`), whatever its outcome; true when the name was created. A
    /// name read before its inode row is there reads as absent
    /// (`Fs::load` finds no inode), so the two need no order.
    pub fn create_inode_named(
        &self,
        parent: u64,
        d: &Dentry,
        inode: &Inode,
        names: Vec<Vec<u8>>,
        mut also: Vec<Write>,
    ) -> Result<bool> {
        also.insert(0, self.new_inode(inode, names));
        self.create_dentry_from(parent, d, None, also)
    }

    /// Like [`Store::create_dentry`], for a rename to a new name: the entry
    /// records its source (a [`name_key`](super::name_key)) until the rename's
    /// batch clears it, so a rename interrupted between the two is finished
    /// by whoever reads the entry next (`store/moves.rs`).
    pub fn create_dentry_from(
        &self,
        parent: u64,
        d: &Dentry,
        moving_from: Option<Vec<u8>>,
        also: Vec<Write>,
    ) -> Result<bool> {
        let moving = moving_from.unwrap_or_default();
        let t = Touched::name(parent, &d.name);
        let want = d.ino;
        let landed = move |now: Option<u64>| now == Some(want);
        let target = (parent, d.name.as_slice(), &landed as &Landed);
        self.conditional_entry(target, &self.est.create, &self.est.live, also, t, |gen| {
            let (k0, k1, k2, k3) = self.dir_key(parent, gen);
            let (ino, kind) = (d.ino as i64, d.kind as i32);
            (k0, k1, k2, k3, d.name.clone(), ino, kind, moving.clone())
        })
    }

    /// Points an existing name at `d.ino` only if it still names `old`
    /// (a conditional write), recording the rename's source like
    /// [`Store::create_dentry_from`]: true when replaced.
    pub fn replace_dentry_from(
        &self,
        parent: u64,
        d: &Dentry,
        old: u64,
        moving_from: Option<Vec<u8>>,
        also: Vec<Write>,
    ) -> Result<bool> {
        let moving = moving_from.unwrap_or_default();
        let t = Touched::name(parent, &d.name);
        let want = d.ino;
        let landed = move |now: Option<u64>| now == Some(want);
        let target = (parent, d.name.as_slice(), &landed as &Landed);
        self.conditional_entry(target, &self.est.replace, &self.est.live, also, t, |gen| {
            let (k0, k1, k2, k3) = self.dir_key(parent, gen);
            let (ino, kind) = (d.ino as i64, d.kind as i32);
            (
                ino,
                kind,
                moving.clone(),
                k0,
                k1,
                k2,
                k3,
                d.name.clone(),
                old as i64,
            )
        })
    }

    /// Removes a name only if it still names inode `ino` (a conditional
    /// write: a name another host replaced meanwhile is left alone), with
    /// `also` applied in the same round trip: true when removed.
    pub fn remove_dentry(
        &self,
        parent: u64,
        name: &[u8],
        ino: u64,
        also: Vec<Write>,
    ) -> Result<bool> {
        let t = Touched::name(parent, name);
        // Gone, or naming another inode: removed (by this call or another;
        // link counts are sets of names, so settling twice is harmless).
        let landed = move |now: Option<u64>| now != Some(ino);
        let removed = self.conditional_entry(
            (parent, name, &landed as &Landed),
            &self.est.remove,
            &self.est.unfrozen,
            also,
            t,
            |gen| {
                let (k0, k1, k2, k3) = self.dir_key(parent, gen);
                (k0, k1, k2, k3, name.to_vec(), ino as i64)
            },
        )?;
        if removed {
            self.note_removal(parent);
        }
        Ok(removed)
    }

    /// One conditional write of an entry of `dir`, made one conditional
    /// batch with `guard` on the generation's sentinel, and `also` (with
    /// the change feed's event) in the same round trip whatever the
    /// outcome. A write refused because the generation was frozen is made
    /// again in the next one: true when the write applied.
    fn conditional_entry<V: SerializeRow + Send>(
        &self,
        (dir, name, landed): (u64, &[u8], &Landed),
        ps: &PreparedStatement,
        guard: &PreparedStatement,
        also: Vec<Write>,
        touched: Touched,
        values: impl Fn(i64) -> V,
    ) -> Result<bool> {
        let (jobs, _) = self.prepare_writes(&also, touched)?;
        let mut jobs = Some(jobs);
        let mut batch = Batch::new(BatchType::Logged);
        batch.append_statement(ps.clone());
        batch.append_statement(guard.clone());
        self.in_dir(dir, true, |gen| {
            let jobs = jobs.take().unwrap_or_default();
            let sentinel = self.sentinel_key(dir, gen);
            let v = (values(gen), sentinel);
            let s = self.conn.session();
            let batch = &batch;
            // A conditional batch (Paxos) of the entry and the sentinel guard.
            let t = Tally::of(CqlKind::Lwt, 2).and(CqlKind::Write, jobs.len() as u64);
            let sent = self.conn.run_as(t, async {
                let also = super::apply::send_writes(s.clone(), &jobs);
                applied_with(s.batch(batch, v), also).await
            });
            let applied = match sent {
                Ok(applied) => applied,
                Err(e) => {
                    let ask = || {
                        let s = self.conn.session();
                        let v = (values(gen), self.sentinel_key(dir, gen));
                        self.conn.run_as(Tally::of(CqlKind::Lwt, 2), async move {
                            let res = s.batch(batch, v).await.map_err(StoreError::request)?;
                            Ok(first_bool(result_rows(res)?))
                        })
                    };
                    let settled = self.settle_unknown((dir, name, landed), &ask);
                    if settled != Some(false) {
                        // The entry is (or may be) there; what goes with it
                        // (a new inode's row, a rename's journal row) may
                        // not be: written again, as it is idempotent.
                        // Not the counter updates: they are never sent twice.
                        let plain: Vec<_> = jobs
                            .iter()
                            .filter(|(ps, _)| ps.get_is_idempotent())
                            .cloned()
                            .collect();
                        let again = self.run_jobs(&plain);
                        match (settled, again) {
                            (Some(true), Err(again)) => return Err(again),
                            (None, Err(again)) => log::warn!(
                                "the writes beside an unsettled conditional write may be \
                                 missing: {again}"
                            ),
                            _ => {}
                        }
                    }
                    settled.ok_or(e)?
                }
            };
            if applied {
                return Ok(Attempt::Done(true));
            }
            let frozen = self.sentinel_of(dir, gen)?.ino == Some(FROZEN);
            Ok(if frozen {
                Attempt::Frozen(false)
            } else {
                Attempt::Done(false)
            })
        })
    }

    /// Whether a conditional write of entry `dir`/`name` whose outcome is
    /// unknown (its coordinator died, or it timed out) applied: it is made
    /// again (`ask`, the same write), then, unless that applied, the entry
    /// is read at SERIAL. A read alone would not do: a proposal accepted
    /// by a minority of replicas (one that then died) is invisible to it,
    /// yet a later conditional write may still complete it; a proposal of
    /// this mount that applies now supersedes it. Asking again is harmless
    /// when the first write applied: its condition is then false (or, for
    /// a create whose name another host removed meanwhile, the name comes
    /// back with its inode, as if created after that removal). `None` when
    /// no answer comes.
    fn settle_unknown(
        &self,
        (dir, name, landed): (u64, &[u8], &Landed),
        ask: &dyn Fn() -> Result<bool>,
    ) -> Option<bool> {
        for wait in [0, 500, 1500, 3000] {
            std::thread::sleep(std::time::Duration::from_millis(wait));
            match ask() {
                Ok(true) => return Some(true),
                Ok(false) => {}
                Err(e) => {
                    log::debug!("settling a conditional write: {e}");
                    continue;
                }
            }
            match self.get_raw_dentry_serial(dir, name) {
                Ok(d) => return Some(landed(d.map(|(d, _)| d.ino))),
                Err(e) => log::debug!("settling a conditional write: {e}"),
            }
        }
        None
    }

    /// Sets a directory's removal sentinel for an rmdir under way, a
    /// conditional write: false if another rmdir holds it already. The
    /// mark expires after [`REMOVAL_MARK_TTL`] seconds, so that an rmdir
    /// killed before it ends leaves the directory writable again.
    pub fn mark_removing(&self, dir: u64) -> Result<bool> {
        self.in_dir(dir, true, |gen| {
            if self.sentinel(&self.est.mark, dir, gen)? {
                return Ok(Attempt::Done(true));
            }
            let frozen = self.sentinel_of(dir, gen)?.ino == Some(FROZEN);
            Ok(if frozen {
                Attempt::Frozen(false)
            } else {
                Attempt::Done(false)
            })
        })
    }

    /// Clears the mark of an rmdir that removes nothing (ENOTEMPTY, or the
    /// name changed meanwhile). A marked generation is never rolled, so the
    /// mark is in the current one.
    pub fn unmark_removing(&self, dir: u64) -> Result<()> {
        let gen = self.gen_of(dir)?;
        self.sentinel(&self.est.clear, dir, gen).map(drop)
    }

    /// Makes the sentinel of a directory whose name is gone permanent: no
    /// entry is ever written into it again. `also` goes in the same round
    /// trip.
    pub fn seal_removed(&self, dir: u64, also: Vec<Write>) -> Result<()> {
        let v = self.sentinel_key(dir, self.gen_of(dir)?);
        self.exec_with(&self.est.seal, v, also, Touched::none())
            .map(drop)
    }

    fn sentinel(&self, ps: &PreparedStatement, dir: u64, gen: i64) -> Result<bool> {
        Ok(first_bool(self.exec(ps, self.sentinel_key(dir, gen))?))
    }
}
