//! The driver session, its private runtime, and the volume-bound [`Store`].

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency as CqlConsistency, SerialConsistency};
use scylla::value::{CqlValue, Row};

use parking_lot::Mutex;

use crate::metrics::{self, CqlKind, Tally};

use super::changes::{event_from_row, Event, Touched};
use super::entries::EntryStatements;
use super::generations::GenStatements;
use super::now_ns;
use super::records::{InodeRow, INODE_COLUMNS};
use super::removals::Removal;
use super::schema::{check_schema, valid_keyspace};
use super::writes::{Cql, Write};
use super::{Consistency, Hash, Inode, Result, StoreConfig, StoreError};

/// Directories of at most this many entries can be read whole in one
/// request ([`Store::list_small_dir`]).
pub const SMALL_DIR: usize = 1000;

/// Seconds a directory's removal mark (its sentinel while an rmdir is under
/// way) lives unless sealed: the bound on how long an rmdir killed midway
/// keeps the directory from gaining entries.
pub const REMOVAL_MARK_TTL: i32 = 60;

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
    timeout: Duration,
    statements: AtomicU64,
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
}

/// The prepared statements of one store.
pub(super) struct Statements {
    pub(super) get_inode: PreparedStatement,
    get_version: PreparedStatement,
    set_xattr: PreparedStatement,
    remove_xattr: PreparedStatement,
    insert_block: PreparedStatement,
    get_block: PreparedStatement,
    insert_ref: PreparedStatement,
    block_exists: PreparedStatement,
    delete_ref: PreparedStatement,
    create_volume: PreparedStatement,
    read_next_ino: PreparedStatement,
    cas_next_ino: PreparedStatement,
    take_mover: PreparedStatement,
    drop_mover: PreparedStatement,
    delete_unnamed: PreparedStatement,
    delete_last_name: PreparedStatement,
    add_name: PreparedStatement,
    read_changes: PreparedStatement,
    pending_renames: PreparedStatement,
    removals: PreparedStatement,
    delete_dir_under: PreparedStatement,
}

impl Statements {
    fn prepare(c: &Conn, ks: &str) -> Result<Statements> {
        let key = "owner = ? AND environment = ?";
        let ino_key = format!("{key} AND ino = ?");
        let p = |q: String| c.prepare(q);
        let mut read_next = p(format!("SELECT next_ino FROM {ks}.volumes WHERE {key}"))?;
        read_next.set_consistency(CqlConsistency::Serial);
        Ok(Statements {
            get_inode: p(format!(
                "SELECT {INODE_COLUMNS} FROM {ks}.inodes WHERE {ino_key}"
            ))?,
            get_version: p(format!(
                "SELECT kind, version FROM {ks}.inodes WHERE {ino_key}"
            ))?,
            set_xattr: p(format!(
                "UPDATE {ks}.inodes SET xattrs[?] = ?, ctime_ns = ? WHERE {ino_key}"
            ))?,
            remove_xattr: p(format!(
                "UPDATE {ks}.inodes SET xattrs = xattrs - ?, ctime_ns = ? WHERE {ino_key}"
            ))?,
            insert_block: p(format!(
                "INSERT INTO {ks}.blocks (owner, hash, data) VALUES (?, ?, ?)"
            ))?,
            get_block: p(format!(
                "SELECT data FROM {ks}.blocks WHERE owner = ? AND hash = ?"
            ))?,
            insert_ref: p(format!(
                "INSERT INTO {ks}.block_refs (owner, hash, environment, ino, at) \
                 VALUES (?, ?, ?, ?, ?)"
            ))?,
            block_exists: p(format!(
                "SELECT hash FROM {ks}.blocks WHERE owner = ? AND hash = ?"
            ))?,
            delete_ref: p(format!(
                "DELETE FROM {ks}.block_refs WHERE owner = ? AND hash = ? AND environment = ? \
                 AND ino = ?"
            ))?,
            create_volume: p(format!(
                "INSERT INTO {ks}.volumes (owner, environment, next_ino, created_ns) \
                 VALUES (?, ?, 2, ?) IF NOT EXISTS"
            ))?,
            read_next_ino: read_next,
            cas_next_ino: p(format!(
                "UPDATE {ks}.volumes SET next_ino = ? WHERE {key} IF next_ino = ?"
            ))?,
            take_mover: p(format!(
                "UPDATE {ks}.volumes USING TTL ? SET mover = ? WHERE {key} IF mover = null"
            ))?,
            drop_mover: p(format!(
                "UPDATE {ks}.volumes SET mover = null WHERE {key} IF mover = ?"
            ))?,
            delete_last_name: p(format!(
                "DELETE FROM {ks}.inodes WHERE {ino_key} IF names = ?"
            ))?,
            add_name: p(format!(
                "UPDATE {ks}.inodes SET names = names + ?, ctime_ns = ? WHERE {ino_key} IF kind = ?"
            ))?,
            read_changes: p(format!(
                "SELECT at, id, origin, names, inos, versions, unlocked FROM {ks}.changes \
                 WHERE {key} AND bucket = ? AND at > ?"
            ))?,
            removals: p(format!(
                "SELECT parent, name, ino, dir FROM {ks}.removals WHERE {key}"
            ))?,
            pending_renames: p(format!(
                "SELECT id, parent, name FROM {ks}.renames WHERE {key}"
            ))?,
            delete_unnamed: p(format!(
                "DELETE FROM {ks}.inodes WHERE {ino_key} IF names = null"
            ))?,
            delete_dir_under: p(format!(
                "DELETE FROM {ks}.inodes WHERE {ino_key} IF parent = ?"
            ))?,
        })
    }
}

/// A prepared write and its values.
pub(super) type Job = (PreparedStatement, Cql);
/// A directory and a generation of its entries.
pub(super) type DirGen = (u64, i64);

/// A blocking handle on one volume's rows.
pub struct Store {
    pub(super) conn: Arc<Conn>,
    pub(super) st: Statements,
    /// Statements on directory entries (`store/entries.rs`).
    pub(super) est: EntryStatements,
    /// Statements of directory generations (`store/generations.rs`).
    pub(super) gt: GenStatements,
    pub(super) ks: String,
    pub(super) owner: i64,
    pub(super) env: String,
    /// Each directory's generation, as far as this store knows.
    pub(super) gens: Mutex<HashMap<u64, i64>>,
    /// Removals per directory not yet added to `churn`.
    pub(super) tally: Mutex<HashMap<u64, u32>>,
    /// The mount whose changes this store publishes to the change feed
    /// (`None`: no events, e.g. a command-line tool).
    origin: Option<String>,
    /// Blocks on local disk, read before Cassandra (`-cache_dir`).
    disk: Option<crate::diskcache::DiskCache>,
}

pub(super) fn first_bool(rows: Vec<Row>) -> bool {
    matches!(
        rows.first().and_then(|r| r.columns.first()),
        Some(Some(CqlValue::Boolean(true)))
    )
}

impl Store {
    /// Connects, checks the schema, and binds the store to one volume.
    pub fn open(cfg: &StoreConfig, owner: i64, environment: &str) -> Result<Store> {
        valid_keyspace(&cfg.keyspace)?;
        let conn = Arc::new(Conn::connect(cfg)?);
        Store::open_on(conn, cfg, owner, environment)
    }

    /// Binds a store to one volume over a connection that other volumes'
    /// stores may share (one driver session, one runtime for all of them).
    pub fn open_on(
        conn: Arc<Conn>,
        cfg: &StoreConfig,
        owner: i64,
        environment: &str,
    ) -> Result<Store> {
        valid_keyspace(&cfg.keyspace)?;
        check_schema(&conn, cfg)?;
        let st = Statements::prepare(&conn, &cfg.keyspace)?;
        let est = EntryStatements::prepare(&conn, &cfg.keyspace)?;
        let gt = GenStatements::prepare(&conn, &cfg.keyspace)?;
        Ok(Store {
            conn,
            st,
            est,
            gt,
            gens: Mutex::new(HashMap::new()),
            tally: Mutex::new(HashMap::new()),
            ks: cfg.keyspace.clone(),
            owner,
            env: environment.to_string(),
            origin: None,
            disk: None,
        })
    }

    /// From now on every write call that changes what a user sees also
    /// writes its event to the volume's change feed, as `origin`.
    pub fn publish_changes_as(&mut self, origin: &str) {
        self.origin = Some(origin.to_string());
    }

    /// From now on blocks are read from `disk` before Cassandra, and every
    /// block read from Cassandra or stored is written to it.
    pub fn use_disk_cache(&mut self, disk: crate::diskcache::DiskCache) {
        self.disk = Some(disk);
    }

    /// The change feed's rows of one partition written after `after_ns`.
    pub fn read_changes(&self, bucket: i64, after_ns: i64) -> Result<Vec<Event>> {
        let v = (self.owner, &self.env, bucket, after_ns);
        let rows = self.exec(&self.st.read_changes, v)?;
        Ok(rows.into_iter().filter_map(event_from_row).collect())
    }

    /// CQL statements executed so far by this store.
    pub fn statement_count(&self) -> u64 {
        self.conn.statements.load(Ordering::Relaxed)
    }

    pub(super) fn exec<V>(&self, ps: &PreparedStatement, values: V) -> Result<Vec<Row>>
    where
        V: scylla::serialize::row::SerializeRow + Send,
    {
        let s = self.conn.session();
        let t = Tally::of(CqlKind::of_statement(ps.get_statement()), 1);
        self.conn.run_as(t, async move {
            let res = s
                .execute_unpaged(ps, values)
                .await
                .map_err(StoreError::request)?;
            result_rows(res)
        })
    }

    /// Creates the volume row and the root directory if they do not exist.
    /// The root is written with timestamp 1, so any later change wins.
    pub fn ensure_volume(&self, root_uid: u32, root_gid: u32) -> Result<()> {
        let now = now_ns();
        let created = first_bool(self.exec(&self.st.create_volume, (self.owner, &self.env, now))?);
        if created {
            // The root counts as an inode of the volume's usage.
            self.add_usage(super::usage::Usage::of(super::Kind::Dir, 0))?;
        }
        let root = Inode {
            ino: 1,
            kind: super::Kind::Dir,
            perm: 0o755,
            uid: root_uid,
            gid: root_gid,
            nlink: 2,
            rdev: 0,
            size: 0,
            atime_ns: now,
            mtime_ns: now,
            ctime_ns: now,
            parent: 1,
            version: 0,
            target: Vec::new(),
            content: Default::default(),
            xattrs: Default::default(),
        };
        if self.get_inode(1)?.is_none() {
            let (cql, values) =
                Write::PutInode(root, Vec::new()).to_cql(&self.ks, self.owner, &self.env, &|_| 0);
            let ps = self.conn.prepare(format!("{cql} USING TIMESTAMP 1"))?;
            self.exec(&ps, values)?;
        }
        Ok(())
    }

    /// Reserves `n` inode numbers unique across every mount of the volume.
    pub fn reserve_inodes(&self, n: u64) -> Result<Range<u64>> {
        for _ in 0..64 {
            let rows = self.exec(&self.st.read_next_ino, (self.owner, &self.env))?;
            let next = match rows.first().and_then(|r| r.columns.first()) {
                Some(Some(CqlValue::BigInt(v))) => *v,
                _ => {
                    return Err(StoreError::Corrupt {
                        table: "volumes",
                        reason: "volume row has no next_ino".into(),
                    })
                }
            };
            let end = next + n as i64;
            let rows = self.exec(&self.st.cas_next_ino, (end, self.owner, &self.env, next))?;
            if first_bool(rows) {
                return Ok(next as u64..end as u64);
            }
        }
        Err(StoreError::Request(
            "could not reserve inode numbers: too much contention".into(),
        ))
    }

    pub fn get_inode(&self, ino: u64) -> Result<Option<Inode>> {
        let s = self.conn.session();
        let (ps, env) = (&self.st.get_inode, self.env.as_str());
        let got = self.conn.run_as(
            Tally::of(CqlKind::Read, 1),
            fetch_inode(&s, ps, self.owner, env, ino),
        )?;
        Ok(got.map(|(i, gen)| self.noted(i, gen)))
    }

    /// An inode just read; a directory's generation is remembered.
    pub(super) fn noted(&self, i: Inode, gen: i64) -> Inode {
        if i.kind == super::Kind::Dir {
            self.note_gen(i.ino, gen);
        }
        i
    }

    /// Reads many inodes at once (missing ones are `None`), in order.
    pub fn get_inodes(&self, inos: &[u64]) -> Result<Vec<Option<Inode>>> {
        let mut out = Vec::with_capacity(inos.len());
        for chunk in inos.chunks(PARALLEL) {
            let s = self.conn.session();
            let ps = self.st.get_inode.clone();
            let owner = self.owner;
            let env = self.env.clone();
            let chunk: Vec<u64> = chunk.to_vec();
            let t = Tally::of(CqlKind::Read, chunk.len() as u64);
            let rows = self.conn.run_as(t, async move {
                let mut set = tokio::task::JoinSet::new();
                for (i, ino) in chunk.iter().enumerate() {
                    let (s, ps, env, ino) = (s.clone(), ps.clone(), env.clone(), *ino);
                    set.spawn(async move {
                        fetch_inode(&s, &ps, owner, &env, ino).await.map(|r| (i, r))
                    });
                }
                let mut got = vec![None; chunk.len()];
                while let Some(r) = set.join_next().await {
                    let (i, inode) = r.map_err(StoreError::request)??;
                    got[i] = inode;
                }
                Ok(got)
            })?;
            out.extend(
                rows.into_iter()
                    .map(|r| r.map(|(i, gen)| self.noted(i, gen))),
            );
        }
        Ok(out)
    }

    /// The content version of an inode (`None`: it does not exist): a
    /// small read to check whether a cached copy is current.
    pub fn get_version(&self, ino: u64) -> Result<Option<i64>> {
        let rows = self.exec(&self.st.get_version, (self.owner, &self.env, ino as i64))?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        match (row.columns.first(), row.columns.get(1)) {
            (Some(Some(CqlValue::Int(_))), Some(Some(CqlValue::BigInt(v)))) => Ok(Some(*v)),
            (Some(Some(CqlValue::Int(_))), _) => Ok(Some(0)),
            _ => Ok(None),
        }
    }

    /// Writes every column of a new inode, with the names it has.
    pub fn put_inode(&self, i: &Inode, names: Vec<Vec<u8>>) -> Result<()> {
        self.apply(vec![self.new_inode(i, names)])
    }

    /// The write of a new inode; a new directory's entries start in
    /// generation 0.
    pub(super) fn new_inode(&self, i: &Inode, names: Vec<Vec<u8>>) -> Write {
        if i.kind == super::Kind::Dir {
            self.note_gen(i.ino, 0);
        }
        Write::PutInode(i.clone(), names)
    }

    /// Writes the content of an inode (size, version, data, times) in one
    /// row write: readers see the old content or the new, never a mix.
    pub fn update_content(&self, i: &Inode) -> Result<()> {
        self.apply(vec![Write::Commit(i.clone())])
    }

    /// Deletes a non-directory inode if it has no name left, decided by
    /// Cassandra (a name added or moved meanwhile keeps it): true if deleted.
    /// `also` goes in the same round trip, whatever the outcome.
    pub fn delete_if_unnamed(&self, ino: u64, also: Vec<Write>) -> Result<bool> {
        let v = (self.owner, self.env.clone(), ino as i64);
        self.exec_with(&self.st.delete_unnamed, v, also, Touched::ino(ino))
    }

    /// Deletes a directory inode if it is still under `parent` (not moved
    /// meanwhile by another host): true if deleted.
    /// `also` goes in the same round trip, whatever the outcome.
    pub fn delete_dir_if_under(&self, ino: u64, parent: u64, also: Vec<Write>) -> Result<bool> {
        let v = (self.owner, self.env.clone(), ino as i64, parent as i64);
        self.exec_with(&self.st.delete_dir_under, v, also, Touched::ino(ino))
    }

    pub fn delete_inode(&self, ino: u64) -> Result<()> {
        self.apply(vec![Write::DeleteInode(ino)])
    }

    pub fn set_xattr(&self, ino: u64, name: &[u8], value: &[u8], ctime_ns: i64) -> Result<()> {
        let v = (
            name.to_vec(),
            value.to_vec(),
            ctime_ns,
            self.owner,
            self.env.clone(),
            ino as i64,
        );
        self.exec_with(&self.st.set_xattr, v, Vec::new(), Touched::ino(ino))
            .map(drop)
    }

    pub fn remove_xattr(&self, ino: u64, name: &[u8], ctime_ns: i64) -> Result<()> {
        let names = vec![name.to_vec()];
        let v = (names, ctime_ns, self.owner, self.env.clone(), ino as i64);
        self.exec_with(&self.st.remove_xattr, v, Vec::new(), Touched::ino(ino))
            .map(drop)
    }

    /// Finishes the renames to a new name that a process left half-done
    /// (see `renames` in cql/cassfs.cql); run when a mount starts.
    pub fn finish_renames(&self) -> Result<usize> {
        let rows = self.exec(&self.st.pending_renames, (self.owner, &self.env))?;
        let mut n = 0;
        for r in rows {
            let mut c = r.columns.into_iter();
            if let (
                Some(Some(CqlValue::BigInt(id))),
                Some(Some(CqlValue::BigInt(p))),
                Some(Some(CqlValue::Blob(name))),
            ) = (c.next(), c.next(), c.next())
            {
                // Reading the entry finishes its rename (store/moves.rs).
                let raw = self.get_raw_dentry_serial(p as u64, &name)?;
                self.settle_one(p as u64, raw)?;
                self.apply(vec![Write::Unjournal(id)])?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// The removals recorded by workers (`Write::Removing`): parent, name,
    /// inode, whether a directory.
    pub(super) fn removal_rows(&self) -> Result<Vec<Removal>> {
        let rows = self.exec(&self.st.removals, (self.owner, &self.env))?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let mut c = r.columns.into_iter();
                match (c.next(), c.next(), c.next(), c.next()) {
                    (
                        Some(Some(CqlValue::BigInt(p))),
                        Some(Some(CqlValue::Blob(name))),
                        Some(Some(CqlValue::BigInt(ino))),
                        Some(Some(CqlValue::Boolean(dir))),
                    ) => Some(Removal {
                        parent: p as u64,
                        name,
                        ino: ino as u64,
                        dir,
                    }),
                    _ => None,
                }
            })
            .collect())
    }

    /// Deletes a non-directory inode whose only name is `key` (a conditional
    /// write), with `also` in the same round trip: true if deleted.
    pub fn delete_if_last_name(&self, ino: u64, key: &[u8], also: Vec<Write>) -> Result<bool> {
        let v = (self.owner, self.env.clone(), ino as i64, vec![key.to_vec()]);
        // The name's removal already told the other mounts.
        self.exec_with(&self.st.delete_last_name, v, also, Touched::none())
    }

    /// Records a new name (a [`name_key`](super::name_key)) of a
    /// non-directory inode only if the inode still exists (a conditional
    /// write: ordered with the conditional deletes of its last name, so a
    /// name is never added to an inode deleted meanwhile): true if added.
    pub fn add_name_if_alive(
        &self,
        ino: u64,
        key: &[u8],
        ctime_ns: i64,
        kind: super::Kind,
    ) -> Result<bool> {
        let names: std::collections::HashSet<Vec<u8>> = [key.to_vec()].into();
        let v = (
            names,
            ctime_ns,
            self.owner,
            self.env.clone(),
            ino as i64,
            kind as i32,
        );
        self.exec_with(&self.st.add_name, v, Vec::new(), Touched::ino(ino))
    }

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

    /// Takes the volume's lease for moving directories between parents
    /// (so that two hosts cannot make a cycle by moving at once); it
    /// expires after `ttl_secs` should its holder die. True when taken.
    pub fn take_mover(&self, holder: &str, ttl_secs: i32) -> Result<bool> {
        let v = (ttl_secs, holder, self.owner, &self.env);
        Ok(first_bool(self.exec(&self.st.take_mover, v)?))
    }

    /// Gives the lease back (only if `holder` still has it).
    pub fn drop_mover(&self, holder: &str) -> Result<()> {
        self.exec(&self.st.drop_mover, (self.owner, &self.env, holder))?;
        Ok(())
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

    /// A statement prepared on first use, by text.
    pub(super) fn prepared(&self, cql: &str) -> Result<PreparedStatement> {
        self.conn.prepared(cql)
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

    /// Stores blocks (idempotent: a block is named by its content).
    pub fn put_blocks(&self, blocks: Vec<(Hash, Arc<Vec<u8>>)>) -> Result<()> {
        for chunk in blocks.chunks(PARALLEL) {
            let s = self.conn.session();
            let ps = self.st.insert_block.clone();
            let owner = self.owner;
            let chunk = chunk.to_vec();
            let t = Tally::of(CqlKind::Write, chunk.len() as u64);
            self.conn.run_as(t, async move {
                let mut set = tokio::task::JoinSet::new();
                for (hash, data) in chunk {
                    let (s, ps) = (s.clone(), ps.clone());
                    set.spawn(async move {
                        s.execute_unpaged(&ps, (owner, hash.as_slice(), data.as_slice()))
                            .await
                            .map_err(StoreError::request)
                    });
                }
                while let Some(r) = set.join_next().await {
                    r.map_err(StoreError::request)??;
                }
                Ok(())
            })?;
        }
        if let Some(disk) = &self.disk {
            for (h, d) in &blocks {
                disk.put(h, d);
            }
        }
        Ok(())
    }

    /// The blocks of `hashes` that are not stored.
    pub fn missing_blocks(&self, hashes: &[Hash]) -> Result<Vec<Hash>> {
        let mut missing = Vec::new();
        for chunk in hashes.chunks(PARALLEL) {
            let s = self.conn.session();
            let ps = self.st.block_exists.clone();
            let owner = self.owner;
            let chunk = chunk.to_vec();
            let t = Tally::of(CqlKind::Read, chunk.len() as u64);
            let gone = self.conn.run_as(t, async move {
                let mut set = tokio::task::JoinSet::new();
                for hash in chunk {
                    let (s, ps) = (s.clone(), ps.clone());
                    set.spawn(async move {
                        let r = s.execute_unpaged(&ps, (owner, hash.as_slice())).await;
                        let rows = result_rows(r.map_err(StoreError::request)?)?;
                        Ok::<_, StoreError>(rows.is_empty().then_some(hash))
                    });
                }
                let mut gone = Vec::new();
                while let Some(r) = set.join_next().await {
                    gone.extend(r.map_err(StoreError::request)??);
                }
                Ok(gone)
            })?;
            missing.extend(gone);
        }
        Ok(missing)
    }

    /// Reads blocks by hash, in order: from the disk cache if there is
    /// one and it holds them, else from Cassandra (then cached on disk).
    /// A block missing from Cassandra is an error.
    pub fn get_blocks(&self, hashes: &[Hash]) -> Result<Vec<Arc<Vec<u8>>>> {
        let Some(disk) = &self.disk else {
            return self.fetch_blocks(hashes);
        };
        let mut out: Vec<Option<Arc<Vec<u8>>>> = disk
            .get_many(hashes)
            .into_iter()
            .map(|d| d.map(Arc::new))
            .collect();
        let missing: Vec<Hash> = hashes
            .iter()
            .zip(&out)
            .filter(|(_, got)| got.is_none())
            .map(|(h, _)| *h)
            .collect();
        let mut fetched = missing.iter().zip(self.fetch_blocks(&missing)?);
        for slot in out.iter_mut().filter(|s| s.is_none()) {
            if let Some((h, d)) = fetched.next() {
                disk.put(h, &d);
                *slot = Some(d);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Reads blocks by hash from Cassandra, in order.
    fn fetch_blocks(&self, hashes: &[Hash]) -> Result<Vec<Arc<Vec<u8>>>> {
        let mut out = Vec::with_capacity(hashes.len());
        for chunk in hashes.chunks(PARALLEL) {
            let s = self.conn.session();
            let ps = self.st.get_block.clone();
            let owner = self.owner;
            let chunk = chunk.to_vec();
            let t = Tally::of(CqlKind::Read, chunk.len() as u64);
            let got = self.conn.run_as(t, async move {
                let mut set = tokio::task::JoinSet::new();
                for (i, hash) in chunk.iter().enumerate() {
                    let (s, ps, hash) = (s.clone(), ps.clone(), *hash);
                    set.spawn(async move {
                        let res = s
                            .execute_unpaged(&ps, (owner, hash.as_slice()))
                            .await
                            .map_err(StoreError::request)?;
                        let rows = res.into_rows_result().map_err(StoreError::request)?;
                        let row = rows
                            .maybe_first_row::<(Vec<u8>,)>()
                            .map_err(StoreError::request)?;
                        Ok::<_, StoreError>((i, hash, row))
                    });
                }
                let mut got: Vec<Arc<Vec<u8>>> = (0..chunk.len()).map(|_| Arc::default()).collect();
                while let Some(r) = set.join_next().await {
                    let (i, hash, row) = r.map_err(StoreError::request)??;
                    let Some((data,)) = row else {
                        return Err(StoreError::Corrupt {
                            table: "blocks",
                            reason: format!("block {} is missing", hex(&hash)),
                        });
                    };
                    got[i] = Arc::new(data);
                }
                Ok(got)
            })?;
            out.extend(got);
        }
        Ok(out)
    }

    /// Records that `ino` references each block (`add`) or no longer does.
    pub fn change_refs(&self, ino: u64, add: &[Hash], remove: &[Hash]) -> Result<()> {
        let jobs: Vec<(bool, Hash)> = add
            .iter()
            .map(|h| (true, *h))
            .chain(remove.iter().map(|h| (false, *h)))
            .collect();
        for chunk in jobs.chunks(PARALLEL) {
            let s = self.conn.session();
            let (ins, del) = (self.st.insert_ref.clone(), self.st.delete_ref.clone());
            let (owner, env) = (self.owner, self.env.clone());
            let chunk = chunk.to_vec();
            let t = Tally::of(CqlKind::Write, chunk.len() as u64);
            self.conn.run_as(t, async move {
                let mut set = tokio::task::JoinSet::new();
                let at = now_ns();
                for (is_add, hash) in chunk {
                    let (s, env) = (s.clone(), env.clone());
                    let (ins, del) = (ins.clone(), del.clone());
                    set.spawn(async move {
                        let key = (owner, hash.as_slice(), env.as_str(), ino as i64);
                        let r = if is_add {
                            let (o, h, e, i) = key;
                            s.execute_unpaged(&ins, (o, h, e, i, at)).await
                        } else {
                            s.execute_unpaged(&del, key).await
                        };
                        r.map_err(StoreError::request)
                    });
                }
                while let Some(r) = set.join_next().await {
                    r.map_err(StoreError::request)??;
                }
                Ok(())
            })?;
        }
        Ok(())
    }
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

/// An inode and, for a directory, the generation of its entries.
pub(super) async fn fetch_inode(
    s: &Session,
    ps: &PreparedStatement,
    owner: i64,
    env: &str,
    ino: u64,
) -> Result<Option<(Inode, i64)>> {
    let res = s
        .execute_unpaged(ps, (owner, env, ino as i64))
        .await
        .map_err(StoreError::request)?;
    let rows = res.into_rows_result().map_err(StoreError::request)?;
    let row = rows
        .maybe_first_row::<InodeRow>()
        .map_err(StoreError::request)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let gen = row.gen();
    Ok(row.into_inode(ino)?.map(|i| (i, gen)))
}

/// Lower-case hex of a hash, for messages.
pub fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
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
