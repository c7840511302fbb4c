//! Keyspace-wide access for the operator commands (`status`, `volumes`,
//! `gc`, `fsck`, `clone`, `rm-volume`): paged scans of whole tables,
//! reads, and writes fanned out in parallel. Unlike a [`Store`](super::Store),
//! a [`Keyspace`] is not bound to one volume: the commands that use it see
//! every volume of the keyspace. Blocking, like the rest of the store.

use scylla::response::{PagingState, PagingStateResponse};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};

use super::schema::{check_schema, valid_keyspace};
use crate::metrics::CqlKind;

use super::conn::{result_rows, Conn};
use super::{Result, StoreConfig, StoreError};

/// The values of one statement (`None` binds NULL).
pub type Values = Vec<Option<CqlValue>>;

/// Rows read by one page of a scan.
const PAGE_ROWS: i32 = 2000;

pub struct Keyspace {
    conn: Conn,
    ks: String,
}

impl Keyspace {
    /// Connects and checks that the keyspace holds the CassFS schema.
    pub fn open(cfg: &StoreConfig) -> Result<Keyspace> {
        valid_keyspace(&cfg.keyspace)?;
        let conn = Conn::connect(cfg)?;
        check_schema(&conn, cfg)?;
        Ok(Keyspace {
            conn,
            ks: cfg.keyspace.clone(),
        })
    }

    /// The keyspace's name, to write into statements.
    pub fn name(&self) -> &str {
        &self.ks
    }

    fn prepare(&self, cql: &str) -> Result<PreparedStatement> {
        let mut ps = self.conn.prepared(cql)?;
        ps.set_page_size(PAGE_ROWS);
        Ok(ps)
    }

    /// Calls `f` on every row of a query, a page at a time (a whole-table
    /// scan when the query names no partition).
    pub fn scan(
        &self,
        cql: &str,
        values: Values,
        f: &mut dyn FnMut(Row) -> Result<()>,
    ) -> Result<()> {
        let ps = self.prepare(cql)?;
        let mut paging = PagingState::start();
        loop {
            let s = self.conn.session();
            let (ps2, v, state) = (ps.clone(), values.clone(), paging);
            let (rows, next) = self.conn.run(1, async move {
                let (res, next) = s
                    .execute_single_page(&ps2, v, state)
                    .await
                    .map_err(StoreError::request)?;
                Ok((result_rows(res)?, next))
            })?;
            for r in rows {
                f(r)?;
            }
            match next {
                PagingStateResponse::HasMorePages { state } => paging = state,
                PagingStateResponse::NoMorePages => return Ok(()),
            }
        }
    }

    /// Every row of a query.
    pub fn rows(&self, cql: &str, values: Values) -> Result<Vec<Row>> {
        let mut out = Vec::new();
        self.scan(cql, values, &mut |r| {
            out.push(r);
            Ok(())
        })?;
        Ok(out)
    }

    /// Runs statements (single-page reads or writes), [`PARALLEL`] at a
    /// time; the rows of each, in order.
    pub fn run_all(&self, stmts: Vec<(String, Values)>) -> Result<Vec<Vec<Row>>> {
        let jobs = stmts
            .iter()
            .map(|(cql, v)| Ok((self.prepare(cql)?, v)))
            .collect::<Result<Vec<_>>>()?;
        self.conn
            .fan_out(CqlKind::Other, &jobs, |s, (ps, v)| async move {
                let res = s.execute_unpaged(&ps, v).await;
                res.map_err(StoreError::request).and_then(result_rows)
            })
    }

    /// Runs one statement.
    pub fn run(&self, cql: &str, values: Values) -> Result<Vec<Row>> {
        let mut rows = self.run_all(vec![(cql.to_string(), values)])?;
        Ok(rows.pop().unwrap_or_default())
    }
}

/// Typed access to the columns of a row.
pub trait Columns {
    fn big(&self, i: usize) -> Option<i64>;
    fn int(&self, i: usize) -> Option<i32>;
    fn text(&self, i: usize) -> Option<String>;
    fn blob(&self, i: usize) -> Option<Vec<u8>>;
    fn boolean(&self, i: usize) -> Option<bool>;
    /// A set or list column (empty when null).
    fn items(&self, i: usize) -> Vec<CqlValue>;
    /// A map column (empty when null).
    fn pairs(&self, i: usize) -> Vec<(CqlValue, CqlValue)>;
}

impl Columns for Row {
    fn big(&self, i: usize) -> Option<i64> {
        match self.columns.get(i) {
            Some(Some(CqlValue::BigInt(v))) => Some(*v),
            _ => None,
        }
    }
    fn int(&self, i: usize) -> Option<i32> {
        match self.columns.get(i) {
            Some(Some(CqlValue::Int(v))) => Some(*v),
            _ => None,
        }
    }
    fn text(&self, i: usize) -> Option<String> {
        match self.columns.get(i) {
            Some(Some(CqlValue::Text(v))) => Some(v.clone()),
            Some(Some(CqlValue::Ascii(v))) => Some(v.clone()),
            _ => None,
        }
    }
    fn blob(&self, i: usize) -> Option<Vec<u8>> {
        match self.columns.get(i) {
            Some(Some(CqlValue::Blob(v))) => Some(v.clone()),
            _ => None,
        }
    }
    fn boolean(&self, i: usize) -> Option<bool> {
        match self.columns.get(i) {
            Some(Some(CqlValue::Boolean(v))) => Some(*v),
            _ => None,
        }
    }
    fn items(&self, i: usize) -> Vec<CqlValue> {
        match self.columns.get(i) {
            Some(Some(CqlValue::Set(v))) | Some(Some(CqlValue::List(v))) => v.clone(),
            _ => Vec::new(),
        }
    }
    fn pairs(&self, i: usize) -> Vec<(CqlValue, CqlValue)> {
        match self.columns.get(i) {
            Some(Some(CqlValue::Map(v))) => v.clone(),
            _ => Vec::new(),
        }
    }
}

/// Value constructors for [`Values`].
pub mod val {
    use scylla::value::CqlValue;

    pub fn big(v: i64) -> Option<CqlValue> {
        Some(CqlValue::BigInt(v))
    }
    pub fn int(v: i32) -> Option<CqlValue> {
        Some(CqlValue::Int(v))
    }
    pub fn text(v: &str) -> Option<CqlValue> {
        Some(CqlValue::Text(v.to_string()))
    }
    pub fn blob(v: &[u8]) -> Option<CqlValue> {
        Some(CqlValue::Blob(v.to_vec()))
    }
}
