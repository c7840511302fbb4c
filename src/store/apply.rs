//! Writes on their way to Cassandra: a call's [`Write`]s prepared with
//! the change feed's event of what they touch, then sent in one round trip
//! (concurrently, as one unlogged batch when small, or as one logged
//! batch), or beside one conditional write ([`Store::exec_with`]).

use std::sync::Arc;
use std::time::Duration;

use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;

use crate::metrics::{CqlKind, Tally};

use super::changes::Touched;
use super::conn::{applied_with, first_bool, result_rows};
use super::now_ns;
use super::session::Store;
use super::writes::{Cql, Write};
use super::{Result, StoreError};

/// A prepared write and its values.
pub(super) type Job = (PreparedStatement, Cql);
/// A directory and a generation of its entries.
pub(super) type DirGen = (u64, i64);

impl Store {
    /// Runs one write (conditional or not) and `also` concurrently, with
    /// the change feed's event of all of it (one round trip; `also` is
    /// applied whatever a condition's outcome): true when a conditional
    /// write applied. `touched`: what the one write touches.
    pub(super) fn exec_with<V>(
        &self,
        ps: &PreparedStatement,
        values: V,
        also: Vec<Write>,
        touched: Touched,
    ) -> Result<bool>
    where
        V: scylla::serialize::row::SerializeRow + Send + Clone,
    {
        let (jobs, _) = self.prepare_writes(&also, touched)?;
        let s = self.conn.session();
        let kind = CqlKind::of_statement(ps.get_statement());
        let t = Tally::of(kind, 1).and(CqlKind::Write, jobs.len() as u64);
        let again = values.clone();
        let first = self.conn.run_as(t, async move {
            let also = send_writes(s.clone(), &jobs);
            applied_with(s.execute_unpaged(ps, values), also).await
        });
        match first {
            Err(e) if kind == CqlKind::Lwt => {
                // Outcome unknown (its coordinator failed): asked again, a
                // condition that the first attempt made false answers "not
                // applied", which callers treat as a change by another host
                // (at worst an inode or reference is left for gc).
                std::thread::sleep(Duration::from_millis(500));
                let s = self.conn.session();
                self.conn
                    .run_as(Tally::of(kind, 1), async move {
                        let res = s.execute_unpaged(ps, again).await;
                        Ok(first_bool(result_rows(res.map_err(StoreError::request)?)?))
                    })
                    .map_err(|_| e)
            }
            other => other,
        }
    }

    /// The statements and values of writes, each statement prepared, with
    /// the change feed's event of what they and `touched` touch (when this
    /// store publishes changes and something visible changes).
    /// Also returns the directories and generations of the entries written.
    pub(super) fn prepare_writes(
        &self,
        writes: &[Write],
        mut touched: Touched,
    ) -> Result<(Vec<Job>, Vec<DirGen>)> {
        let mut out = Vec::with_capacity(writes.len() + 1);
        let mut used: Vec<(u64, i64)> = Vec::new();
        for dir in writes.iter().filter_map(Write::entry_dir) {
            if !used.iter().any(|(d, _)| *d == dir) {
                used.push((dir, self.gen_of(dir)?));
            }
        }
        let gen = |dir: u64| used.iter().find(|(d, _)| *d == dir).map_or(0, |(_, g)| *g);
        let event = self.origin.as_deref().and_then(|origin| {
            writes.iter().for_each(|w| touched.add(w));
            let visible = !touched.is_empty();
            visible.then(|| Write::Event(touched.into_event(origin, now_ns())))
        });
        for w in writes.iter().chain(event.as_ref()) {
            let cql = w.to_cql(&self.ks, self.owner, &self.env, &gen);
            out.push((self.prepared(&cql.0)?, cql));
        }
        Ok((out, used))
    }

    /// Runs independent writes concurrently: one round trip for all of them.
    /// Each either happened or the call fails (some may have happened).
    pub fn apply(&self, writes: Vec<Write>) -> Result<()> {
        let (jobs, used) = self.prepare_writes(&writes, Touched::none())?;
        self.run_jobs(&jobs)?;
        self.entries_landed(&writes, &used)
    }

    /// Runs prepared writes concurrently: one round trip.
    pub(super) fn run_jobs(&self, jobs: &[Job]) -> Result<()> {
        let s = self.conn.session();
        let t = Tally::of(CqlKind::Write, jobs.len() as u64);
        self.conn.run_as(t, send_writes(s, jobs))
    }

    /// Runs prepared writes as one batch of `kind` (see [`run_batch`]).
    fn batch(&self, kind: BatchType, jobs: &[Job]) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let s = self.conn.session();
        self.conn.run_as(Tally::of(CqlKind::Batch, 1), async move {
            run_batch(&s, kind, jobs).await
        })
    }

    /// Applies writes as one logged batch: once Cassandra accepted it, all
    /// of them happen, even if this process dies at once (one round trip).
    /// `journaled`: the writes finish a journaled rename, which whoever
    /// reads its new name next would finish anyway (`store/moves.rs`), so
    /// when the batch log cannot be written (a node died and is not known
    /// dead yet) they go as an unlogged batch instead.
    pub fn apply_atomic(&self, writes: Vec<Write>, journaled: bool) -> Result<()> {
        let (jobs, used) = self.prepare_writes(&writes, Touched::none())?;
        // Sent again until the request timeout has passed since the first
        // attempt: no conditions, no counters, one timestamp.
        let deadline = std::time::Instant::now() + self.conn.timeout;
        loop {
            match self.batch(BatchType::Logged, &jobs) {
                Err(e) if journaled && e.to_string().contains("BatchLog") => {
                    log::debug!(
                        "the batch log cannot be written, sending the rename unlogged: {e}"
                    );
                    // What clears the journal goes last: until it lands, the
                    // rename can be finished from its journal.
                    let last =
                        |w: &Write| matches!(w, Write::ClearMoving(..) | Write::Unjournal(_));
                    let (tail, head): (Vec<_>, Vec<_>) =
                        jobs.into_iter().zip(&writes).partition(|(_, w)| last(w));
                    let strip =
                        |v: Vec<(Job, &Write)>| v.into_iter().map(|(j, _)| j).collect::<Vec<_>>();
                    self.batch(BatchType::Unlogged, &strip(head))?;
                    self.batch(BatchType::Unlogged, &strip(tail))?;
                    break;
                }
                Err(e) if e.is_transient() && std::time::Instant::now() < deadline => {
                    log::debug!("batch failed, sending it again: {e}");
                    std::thread::sleep(Duration::from_millis(500));
                }
                other => break other?,
            }
        }
        self.entries_landed(&writes, &used)
    }
}

/// The largest set of writes sent as one batch, by the bytes of its values
/// (below Cassandra's default `batch_size_warn_threshold` of 5 KiB).
const BATCH_MAX_BYTES: usize = 4 << 10;

/// Sends prepared writes in one round trip; fails if any failed (some may
/// have happened). Small ones go as one unlogged batch (one request for
/// Cassandra to parse and answer instead of one per write; each partition
/// is still written on its own), the others concurrently, polled in this
/// task in order: each is handed to its connection when first polled, so a
/// write polled before another is never sent after it on the same
/// connection (see [`applied_with`]).
pub(super) async fn send_writes(s: Arc<Session>, jobs: &[Job]) -> Result<()> {
    if jobs.iter().all(|(ps, _)| ps.get_is_idempotent()) {
        return send_plain(&s, jobs).await;
    }
    // Counter updates (the only writes here that may not be sent twice)
    // cannot share a batch with other writes: they go beside it.
    let (plain, counters): (Vec<Job>, Vec<Job>) = jobs
        .iter()
        .cloned()
        .partition(|(ps, _)| ps.get_is_idempotent());
    let counted = counters
        .iter()
        .map(|(ps, (_, values))| s.execute_unpaged(ps, values));
    let (sent, counted) = futures::join!(
        send_plain(&s, &plain),
        futures::future::try_join_all(counted)
    );
    // A counter update is bookkeeping beside the write it accounts for: one
    // that failed (it is never sent twice, so a coordinator dying under it
    // fails it) leaves the counters off until `cassfs fsck --repair`, not
    // the caller's write failed.
    if let Err(e) = counted {
        log::warn!("a usage counter update failed ({e}); the volume's counters may be off until cassfs fsck --repair");
    }
    sent
}

/// [`send_writes`] of writes that may all be batched together.
async fn send_plain(s: &Session, jobs: &[Job]) -> Result<()> {
    let size: usize = jobs.iter().map(|(_, (_, v))| values_bytes(v)).sum();
    if jobs.len() > 1 && size <= BATCH_MAX_BYTES {
        return run_batch(s, BatchType::Unlogged, jobs).await;
    }
    let sends = jobs
        .iter()
        .map(|(ps, (_, values))| s.execute_unpaged(ps, values));
    futures::future::try_join_all(sends)
        .await
        .map_err(StoreError::request)?;
    Ok(())
}

/// Runs prepared writes as one batch of `kind`, marked idempotent (sent
/// again on another node when its coordinator fails) when every write is.
async fn run_batch(s: &Session, kind: BatchType, jobs: &[Job]) -> Result<()> {
    let mut batch = Batch::new(kind);
    batch.set_is_idempotent(jobs.iter().all(|(ps, _)| ps.get_is_idempotent()));
    let values: Vec<_> = jobs.iter().map(|(_, (_, v))| v).collect();
    for (ps, _) in jobs {
        batch.append_statement(ps.clone());
    }
    s.batch(&batch, values).await.map_err(StoreError::request)?;
    Ok(())
}

/// About how many bytes a statement's values take on the wire.
fn values_bytes(values: &[Option<CqlValue>]) -> usize {
    fn one(v: &CqlValue) -> usize {
        match v {
            CqlValue::Blob(b) => b.len(),
            CqlValue::Text(t) | CqlValue::Ascii(t) => t.len(),
            CqlValue::List(l) | CqlValue::Set(l) => l.iter().map(one).sum::<usize>() + 4,
            CqlValue::Map(m) => m.iter().map(|(k, v)| one(k) + one(v)).sum::<usize>() + 4,
            _ => 8,
        }
    }
    values.iter().map(|v| v.as_ref().map_or(4, one) + 4).sum()
}
