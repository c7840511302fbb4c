//! The volume-bound [`Store`]: one volume's key, the prepared statements,
//! and what every call on it shares (the change feed's origin, the disk
//! cache). Its calls live beside it, one file per kind of row: `inodes`,
//! `entries`, `blocks`, `apply` (writes), `changes`, and so on.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use scylla::statement::prepared::PreparedStatement;
use scylla::value::Row;

use parking_lot::Mutex;

use crate::metrics::{CqlKind, Tally};

use super::conn::{result_rows, Conn};
use super::schema::{check_schema, valid_keyspace};
use super::statements::{EntryStatements, GenStatements, Statements};
use super::{Result, StoreConfig, StoreError};

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
    pub(super) origin: Option<String>,
    /// Blocks on local disk, read before Cassandra (`-cache_dir`).
    pub(super) disk: Option<crate::diskcache::DiskCache>,
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

    /// A statement prepared on first use, by text.
    pub(super) fn prepared(&self, cql: &str) -> Result<PreparedStatement> {
        self.conn.prepared(cql)
    }
}
