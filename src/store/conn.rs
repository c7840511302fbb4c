//! The connection to Cassandra: the driver session, the private runtime
//! that drives it, and the helpers every store module shares to run
//! statements and read their results. Nothing here knows a volume.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency as CqlConsistency, SerialConsistency};
use scylla::value::{CqlValue, Row};

use parking_lot::Mutex;

use crate::metrics::{self, CqlKind, Tally};

use super::{Consistency, Result, StoreConfig, StoreError};

/// How many requests of one bulk call run at once.
pub(super) const PARALLEL: usize = 32;

fn cql_consistency(c: Consistency) -> CqlConsistency {
    match c {
        Consistency::One => CqlConsistency::One,
        Consistency::Two => CqlConsistency::Two,
        Consistency::Three => CqlConsistency::Three,
        Consistency::Quorum => CqlConsistency::Quorum,
        Consistency::All => CqlConsistency::All,
        Consistency::LocalQuorum => CqlConsistency::LocalQuorum,
        Consistency::EachQuorum => CqlConsistency::EachQuorum,
        Consistency::LocalOne => CqlConsistency::LocalOne,
    }
}

/// The serial consistency of conditional writes, matching the locality of
/// the consistency level: LOCAL_SERIAL for the LOCAL_* levels and ONE/TWO/
/// THREE, SERIAL for the cluster-wide ones.
fn serial_consistency(c: Consistency) -> SerialConsistency {
    match c {
        Consistency::Quorum | Consistency::All | Consistency::EachQuorum => {
            SerialConsistency::Serial
        }
        _ => SerialConsistency::LocalSerial,
    }
}

/// Why connecting failed, in one line: a refused login says so; a TLS
/// failure whose cause the driver lost is diagnosed by a handshake of our
/// own; a connection reset without TLS hints that the cluster may need it.
fn connect_failure(
    cfg: &StoreConfig,
    tls: Option<&openssl::ssl::SslContext>,
    reason: &str,
) -> StoreError {
    let addr = cfg.addresses();
    let mut reason = reason.split_whitespace().collect::<Vec<_>>().join(" ");
    let lower = reason.to_lowercase();
    if lower.contains("authentication") || lower.contains("bad credentials") {
        return StoreError::Login { addr, reason };
    }
    match tls {
        Some(ctx) => {
            if let Some(why) = super::tls::probe(ctx, &cfg.servers, cfg.connect_timeout) {
                reason = format!("TLS handshake failed: {why}");
            }
        }
        None if lower.contains("connection reset") || lower.contains("connection broken") => {
            reason.push_str(" (if the cluster requires TLS, use -tls)");
        }
        None => {}
    }
    StoreError::Unreachable { addr, reason }
}

/// Whether a statement may be sent twice: not a conditional write (Paxos
/// would answer "not applied" the second time) nor a counter update.
fn is_idempotent(cql: &str) -> bool {
    let upper = cql.to_ascii_uppercase();
    !(upper.contains(" IF ") || upper.contains("CHURN SET") || upper.contains("USAGE SET"))
}

/// A connected session and the runtime that drives it.
pub struct Conn {
    // Declared before `rt`: dropped first (see Drop).
    session: Option<Arc<Session>>,
    rt: tokio::runtime::Runtime,
    pub(super) timeout: Duration,
    pub(super) statements: AtomicU64,
    /// Statements prepared on first use, by text.
    prepared: Mutex<HashMap<String, PreparedStatement>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _guard = self.rt.enter();
        self.session.take();
    }
}

impl Conn {
    /// Connects to the contact points; fails within `connect_timeout`.
    pub fn connect(cfg: &StoreConfig) -> Result<Conn> {
        let unreachable = |reason: String| StoreError::Unreachable {
            addr: cfg.addresses(),
            reason,
        };
        if cfg.servers.is_empty() {
            return Err(unreachable("no server given".into()));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cassfs-cql")
            .enable_all()
            .build()
            .map_err(|e| unreachable(format!("cannot start I/O runtime: {e}")))?;
        let mut profile = ExecutionProfile::builder()
            .consistency(cql_consistency(cfg.consistency))
            .serial_consistency(Some(serial_consistency(cfg.consistency)))
            .request_timeout(Some(cfg.request_timeout));
        if let Some(dc) = &cfg.datacenter {
            let policy = DefaultPolicy::builder()
                .prefer_datacenter(dc.clone())
                .permit_dc_failover(false)
                .token_aware(true)
                .build();
            profile = profile.load_balancing_policy(policy);
        }
        // Client-side timestamps: one host's successive writes to a row
        // apply in the order made, whatever the nodes' clocks.
        let mut builder = SessionBuilder::new()
            .known_nodes(&cfg.servers)
            .connection_timeout(cfg.connect_timeout)
            .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()))
            .default_execution_profile_handle(profile.build().into_handle());
        if let Some(c) = &cfg.credentials {
            builder = builder.user(c.username.clone(), c.password.clone());
        }
        let tls = match &cfg.tls {
            Some(files) => Some(super::tls::context(files).map_err(&unreachable)?),
            None => None,
        };
        if let Some(ctx) = &tls {
            builder = builder.tls_context(Some(ctx.clone()));
        }
        let session = rt.block_on(async {
            match tokio::time::timeout(cfg.connect_timeout, builder.build()).await {
                Ok(Ok(s)) => Ok(s),
                Ok(Err(e)) => Err(connect_failure(cfg, tls.as_ref(), &e.to_string())),
                Err(_) => Err(unreachable(format!(
                    "no CQL answer within {:?}",
                    cfg.connect_timeout
                ))),
            }
        })?;
        Ok(Conn {
            session: Some(Arc::new(session)),
            rt,
            timeout: cfg.request_timeout,
            statements: AtomicU64::new(0),
            prepared: Mutex::new(HashMap::new()),
        })
    }

    pub(super) fn session(&self) -> Arc<Session> {
        match &self.session {
            Some(s) => s.clone(),
            None => unreachable!("session is only taken in drop"),
        }
    }

    /// Runs one future on the runtime, bounded by the request timeout (with
    /// a margin over the driver's own), counting `n` statements not
    /// classified for metrics (schema, preparing).
    pub(super) fn run<T, F>(&self, n: u64, fut: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        self.run_as(Tally::of(CqlKind::Other, n), fut)
    }

    /// [`Conn::run`] of a round trip whose statements are `t`: every
    /// statement CassFS sends goes through here, counted and timed.
    pub(super) fn run_as<T, F>(&self, t: Tally, fut: F) -> Result<T>
    where
        F: Future<Output = Result<T>>,
    {
        self.statements.fetch_add(t.total(), Ordering::Relaxed);
        let start = metrics::start();
        let limit = self.timeout + Duration::from_secs(2);
        let res = self
            .rt
            .block_on(async { tokio::time::timeout(limit, fut).await })
            .unwrap_or(Err(StoreError::Timeout(limit)));
        metrics::cql_done(&t, start, res.is_ok());
        res
    }

    /// Runs a schema statement (not prepared).
    pub(super) fn ddl(&self, cql: &str) -> Result<()> {
        let s = self.session();
        self.run(1, async move {
            s.query_unpaged(cql, ())
                .await
                .map_err(StoreError::request)?;
            Ok(())
        })
    }

    pub(super) fn use_keyspace(&self, ks: &str) -> Result<()> {
        let s = self.session();
        self.run(1, async move {
            s.use_keyspace(ks, false).await.map_err(StoreError::request)
        })
    }

    /// The names of the tables of a keyspace (empty if it does not exist).
    pub(super) fn table_names(&self, ks: &str) -> Result<Vec<String>> {
        let s = self.session();
        self.run(1, async move {
            let res = s
                .query_unpaged(
                    "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
                    (ks,),
                )
                .await
                .map_err(StoreError::request)?;
            let rows = res.into_rows_result().map_err(StoreError::request)?;
            let names = rows
                .rows::<(String,)>()
                .map_err(StoreError::request)?
                .map(|r| r.map(|(n,)| n).map_err(StoreError::request))
                .collect::<Result<Vec<_>>>()?;
            Ok(names)
        })
    }

    /// A statement prepared on first use, by text ([`Conn::prepare`]).
    pub(super) fn prepared(&self, cql: &str) -> Result<PreparedStatement> {
        if let Some(ps) = self.prepared.lock().get(cql) {
            return Ok(ps.clone());
        }
        let ps = self.prepare(cql.to_string())?;
        self.prepared.lock().insert(cql.to_string(), ps.clone());
        Ok(ps)
    }

    /// Prepares a statement, marked idempotent unless it is conditional or
    /// a counter update: the driver then retries it on another node when
    /// its coordinator fails (with client-side timestamps, a write sent
    /// twice is the same write).
    pub(super) fn prepare(&self, cql: String) -> Result<PreparedStatement> {
        let s = self.session();
        let idempotent = is_idempotent(&cql);
        let mut ps = self.run(1, async move {
            s.prepare(cql).await.map_err(StoreError::request)
        })?;
        ps.set_is_idempotent(idempotent);
        Ok(ps)
    }

    /// Runs `each` on every item, [`PARALLEL`] at a time (one round trip
    /// per chunk), counted as statements of `kind`: the results, in the
    /// items' order, or the first failure.
    pub(super) fn fan_out<I, T, Fut>(
        &self,
        kind: CqlKind,
        items: &[I],
        each: impl Fn(Arc<Session>, I) -> Fut,
    ) -> Result<Vec<T>>
    where
        I: Clone,
        Fut: Future<Output = Result<T>>,
    {
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(PARALLEL) {
            let s = self.session();
            let calls: Vec<Fut> = chunk.iter().cloned().map(|i| each(s.clone(), i)).collect();
            let t = Tally::of(kind, chunk.len() as u64);
            out.extend(self.run_as(t, futures::future::try_join_all(calls))?);
        }
        Ok(out)
    }
}

/// Whether a conditional write applied (the first column of its answer).
pub(super) fn first_bool(rows: Vec<Row>) -> bool {
    matches!(
        rows.first().and_then(|r| r.columns.first()),
        Some(Some(CqlValue::Boolean(true)))
    )
}

/// The rows of a result, untyped (none for a result without rows).
pub(super) fn result_rows(res: scylla::response::query_result::QueryResult) -> Result<Vec<Row>> {
    if !res.is_rows() {
        return Ok(Vec::new());
    }
    let rows = res.into_rows_result().map_err(StoreError::request)?;
    let out = rows
        .rows::<Row>()
        .map_err(StoreError::request)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(StoreError::request)?;
    Ok(out)
}

/// Awaits a conditional write and other writes together: whether the
/// condition applied, or the first failure. The other writes are polled
/// first, so they are on their way before the conditional write: a process
/// killed between the two leaves them without it (a new inode no name
/// reaches yet, a rename's journal row with no new name: both harmless)
/// rather than the conditional write without them.
pub(super) async fn applied_with<E: std::fmt::Display>(
    lwt: impl Future<Output = std::result::Result<scylla::response::query_result::QueryResult, E>>,
    also: impl Future<Output = Result<()>>,
) -> Result<bool> {
    let (rest, lwt) = tokio::join!(also, lwt);
    rest?;
    Ok(first_bool(result_rows(lwt.map_err(StoreError::request)?)?))
}

#[cfg(test)]
mod tests {
    use super::is_idempotent;

    #[test]
    fn only_plain_writes_and_reads_are_sent_twice() {
        assert!(is_idempotent("SELECT * FROM ks.inodes WHERE owner = ?"));
        assert!(is_idempotent(
            "UPDATE ks.inodes SET names = names + ? WHERE ino = ?"
        ));
        assert!(!is_idempotent(
            "INSERT INTO ks.dir_entries (a) VALUES (?) IF NOT EXISTS"
        ));
        assert!(!is_idempotent(
            "DELETE FROM ks.inodes WHERE ino = ? IF names = null"
        ));
        assert!(!is_idempotent(
            "UPDATE ks.churn SET removed = removed + ? WHERE parent = ?"
        ));
    }
}
