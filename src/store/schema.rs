//! Creating and checking the CassFS schema (`cql/cassfs.cql`).

use super::conn::Conn;
use super::{Result, StoreConfig, StoreError};

/// The schema, compiled into the binary.
pub const SCHEMA_CQL: &str = include_str!("../../cql/cassfs.cql");

/// The tables a keyspace must hold for CassFS to mount it.
const TABLES: [&str; 14] = [
    "volumes",
    "inodes",
    "dir_entries",
    "churn",
    "blocks",
    "block_refs",
    "renames",
    "changes",
    "removals",
    "sessions",
    "holds",
    "usage",
    "quotas",
    "locks",
];

/// Checks that a keyspace name is a plain CQL identifier.
pub(super) fn valid_keyspace(ks: &str) -> Result<()> {
    let ok = !ks.is_empty()
        && ks.len() <= 48
        && ks.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && ks.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    if ok {
        Ok(())
    } else {
        Err(StoreError::Schema(format!(
            "invalid keyspace name '{ks}': use 1-48 letters, digits or '_', starting with a letter"
        )))
    }
}

/// The statements of the schema file, comments removed.
fn statements() -> impl Iterator<Item = String> {
    let text: String = SCHEMA_CQL
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .into_iter()
}

/// How a new keyspace is replicated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replication {
    /// SimpleStrategy with this many replicas.
    Simple(u32),
    /// NetworkTopologyStrategy: replicas per datacenter.
    Network(Vec<(String, u32)>),
}

impl Replication {
    fn cql(&self) -> Result<String> {
        let bad = |m: &str| Err(StoreError::Schema(m.to_string()));
        match self {
            Replication::Simple(0) => bad("replication factor must be at least 1"),
            Replication::Simple(n) => Ok(format!(
                "{{'class': 'SimpleStrategy', 'replication_factor': {n}}}"
            )),
            Replication::Network(dcs) if dcs.is_empty() => bad("no datacenter named"),
            Replication::Network(dcs) => {
                let mut parts = vec!["'class': 'NetworkTopologyStrategy'".to_string()];
                for (dc, n) in dcs {
                    let ok = !dc.is_empty()
                        && dc
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                    if !ok || *n == 0 {
                        return bad(
                            "a datacenter is NAME:REPLICAS (letters, digits, -_.; at least 1)",
                        );
                    }
                    parts.push(format!("'{dc}': {n}"));
                }
                Ok(format!("{{{}}}", parts.join(", ")))
            }
        }
    }
}

/// Creates the keyspace (if it does not exist, replicated as `replication`
/// says) and every table. Safe to run again: nothing existing is changed.
pub fn apply_schema(cfg: &StoreConfig, replication: &Replication) -> Result<()> {
    valid_keyspace(&cfg.keyspace)?;
    let strategy = replication.cql()?;
    let conn = Conn::connect(cfg)?;
    let ks = &cfg.keyspace;
    conn.ddl(&format!(
        "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {strategy}"
    ))?;
    conn.use_keyspace(ks)?;
    for stmt in statements() {
        conn.ddl(&stmt)?;
    }
    if conn.table_names(ks)?.iter().any(|t| t == "dentries") {
        let n = migrate_dentries(&conn, ks)?;
        conn.ddl(&format!("DROP TABLE {ks}.dentries"))?;
        log::info!("moved {n} directory entries of an earlier version to {ks}.dir_entries");
    }
    Ok(())
}

/// Keyspaces of earlier versions kept directory entries in `dentries`
/// (one partition per directory, no generations): they are copied into
/// generation 0 of `dir_entries`; the caller then drops the old table.
fn migrate_dentries(conn: &Conn, ks: &str) -> Result<u64> {
    use scylla::response::{PagingState, PagingStateResponse};
    type Row = (
        i64,
        String,
        i64,
        Vec<u8>,
        Option<i64>,
        Option<i32>,
        Option<Vec<u8>>,
    );
    let sel = conn.prepare(format!(
        "SELECT owner, environment, parent, name, ino, kind, moving_from FROM {ks}.dentries"
    ))?;
    let ins = conn.prepare(format!(
        "INSERT INTO {ks}.dir_entries (owner, environment, parent, gen, name, ino, kind, \
         moving_from) VALUES (?, ?, ?, 0, ?, ?, ?, ?)"
    ))?;
    let mut paging = PagingState::start();
    let mut n = 0;
    loop {
        let s = conn.session();
        let (sel, ins, state) = (sel.clone(), ins.clone(), paging.clone());
        let (copied, next) = conn.run(1, async move {
            let (res, next) = s
                .execute_single_page(&sel, (), state)
                .await
                .map_err(StoreError::request)?;
            let rows = res.into_rows_result().map_err(StoreError::request)?;
            let mut copied = 0u64;
            for r in rows.rows::<Row>().map_err(StoreError::request)? {
                let (o, e, p, name, ino, kind, moving) = r.map_err(StoreError::request)?;
                let v = (o, e, p, name, ino, kind, moving.unwrap_or_default());
                s.execute_unpaged(&ins, v)
                    .await
                    .map_err(StoreError::request)?;
                copied += 1;
            }
            Ok((copied, next))
        })?;
        n += copied;
        match next {
            PagingStateResponse::HasMorePages { state } => paging = state,
            PagingStateResponse::NoMorePages => return Ok(n),
        }
    }
}

/// Fails with a message saying how to create the schema when the keyspace
/// lacks any CassFS table.
pub fn check_schema(conn: &Conn, cfg: &StoreConfig) -> Result<()> {
    valid_keyspace(&cfg.keyspace)?;
    let present = conn.table_names(&cfg.keyspace)?;
    let missing: Vec<&str> = TABLES
        .iter()
        .copied()
        .filter(|t| !present.iter().any(|p| p == t))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let what = if present.is_empty() {
        format!(
            "keyspace '{}' does not exist or has no tables",
            cfg.keyspace
        )
    } else {
        format!(
            "keyspace '{}' lacks CassFS tables ({})",
            cfg.keyspace,
            missing.join(", ")
        )
    };
    Err(StoreError::Schema(format!(
        "{what}; create the schema with: cassfs schema --server {} --keyspace {}",
        cfg.addresses(),
        cfg.keyspace
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_file_has_every_table() {
        let all: Vec<String> = statements().collect();
        for t in TABLES {
            let needle = format!("CREATE TABLE IF NOT EXISTS {t} (");
            assert!(all.iter().any(|s| s.starts_with(&needle)), "{t} missing");
        }
        assert!(all.iter().all(|s| !s.contains("--")));
    }

    #[test]
    fn keyspace_names_are_checked() {
        assert!(valid_keyspace("cassfs_1").is_ok());
        assert!(valid_keyspace("1abc").is_err());
        assert!(valid_keyspace("a;DROP").is_err());
        assert!(valid_keyspace("").is_err());
    }
}
