//! Each volume's usage and quota: the `usage` counter table (bytes of
//! committed file content and inodes in use, kept by the mounts: each write
//! that changes them sends its counter update beside itself, in the same
//! round trip) and the `quotas` table (the limits an operator sets with
//! `cassfs quota`). Both are one row per volume, so reading them is cheap.
//!
//! Counters are never deleted: Cassandra cannot reliably count again from a
//! deleted counter, so a counter is set by adding the difference to what it
//! holds ([`set_usage`]).

use std::collections::HashMap;

use scylla::value::{Counter, CqlValue, Row};

use super::conn::result_rows;
use super::keyspace::{val, Columns, Keyspace, Values};
use super::{Inode, Kind, Result, Store, StoreError};
use crate::metrics::{CqlKind, Tally};

/// Bytes and inodes of a volume, or a change of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Sum of the sizes of the files (regular files only).
    pub bytes: i64,
    /// Inodes: files, directories, symlinks and the rest, the root included.
    pub inodes: i64,
}

impl Usage {
    /// What one inode counts for: itself, and a file's size.
    pub fn of(kind: Kind, size: u64) -> Usage {
        let bytes = if kind == Kind::File { size as i64 } else { 0 };
        Usage { bytes, inodes: 1 }
    }

    /// What an inode counts for.
    pub fn inode(i: &Inode) -> Usage {
        Usage::of(i.kind, i.size)
    }

    /// A change of the bytes alone.
    pub fn bytes(n: i64) -> Usage {
        Usage {
            bytes: n,
            inodes: 0,
        }
    }

    pub fn plus(self, o: Usage) -> Usage {
        Usage {
            bytes: self.bytes.saturating_add(o.bytes),
            inodes: self.inodes.saturating_add(o.inodes),
        }
    }

    pub fn minus(self, o: Usage) -> Usage {
        self.plus(o.negated())
    }

    pub fn negated(self) -> Usage {
        Usage {
            bytes: self.bytes.saturating_neg(),
            inodes: self.inodes.saturating_neg(),
        }
    }

    pub fn is_zero(self) -> bool {
        self == Usage::default()
    }
}

/// A volume's limits (`None`: no limit of that kind).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub max_bytes: Option<u64>,
    pub max_inodes: Option<u64>,
}

impl Limits {
    pub fn is_none(&self) -> bool {
        self.max_bytes.is_none() && self.max_inodes.is_none()
    }
}

/// The statement adding to a volume's counters: values bytes, inodes,
/// owner, environment. A counter update is never sent twice (the driver
/// does not retry it) and never batched with other writes.
pub(super) fn add_cql(ks: &str) -> String {
    format!(
        "UPDATE {ks}.usage SET bytes = bytes + ?, inodes = inodes + ? \
         WHERE owner = ? AND environment = ?"
    )
}

/// The values of [`add_cql`].
pub(super) fn add_values(u: Usage, owner: i64, env: &str) -> Values {
    vec![
        Some(CqlValue::Counter(Counter(u.bytes))),
        Some(CqlValue::Counter(Counter(u.inodes))),
        val::big(owner),
        val::text(env),
    ]
}

fn counter(r: &Row, i: usize) -> i64 {
    match r.columns.get(i) {
        Some(Some(CqlValue::Counter(Counter(n)))) | Some(Some(CqlValue::BigInt(n))) => *n,
        _ => 0,
    }
}

/// A non-negative bigint column as a limit.
fn limit(r: &Row, i: usize) -> Option<u64> {
    r.big(i).map(|n| n.max(0) as u64)
}

fn usage_from(rows: &[Row], at: usize) -> Usage {
    rows.first().map_or(Usage::default(), |r| Usage {
        bytes: counter(r, at),
        inodes: counter(r, at + 1),
    })
}

fn limits_from(rows: &[Row], at: usize) -> Limits {
    rows.first().map_or(Limits::default(), |r| Limits {
        max_bytes: limit(r, at),
        max_inodes: limit(r, at + 1),
    })
}

const KEY: &str = "WHERE owner = ? AND environment = ?";

impl Store {
    /// The volume's usage counters and its quota, read in one round trip.
    pub fn usage_and_limits(&self) -> Result<(Usage, Limits)> {
        let ks = &self.ks;
        let u = self.prepared(&format!("SELECT bytes, inodes FROM {ks}.usage {KEY}"))?;
        let q = self.prepared(&format!(
            "SELECT max_bytes, max_inodes FROM {ks}.quotas {KEY}"
        ))?;
        let s = self.conn.session();
        let key = (self.owner, self.env.clone());
        let (ur, qr) = self.conn.run_as(Tally::of(CqlKind::Read, 2), async move {
            let (a, b) = tokio::join!(s.execute_unpaged(&u, &key), s.execute_unpaged(&q, &key));
            let a = result_rows(a.map_err(StoreError::request)?)?;
            let b = result_rows(b.map_err(StoreError::request)?)?;
            Ok((a, b))
        })?;
        Ok((usage_from(&ur, 0), limits_from(&qr, 0)))
    }

    /// Adds to the volume's counters now (a correction made apart from the
    /// write it accounts for).
    pub fn add_usage(&self, u: Usage) -> Result<()> {
        if u.is_zero() {
            return Ok(());
        }
        self.apply(vec![super::Write::Usage(u)])
    }
}

/// A volume: (owner, environment).
type Key = (i64, String);

fn scan_by_volume<T>(
    ks: &Keyspace,
    cql: &str,
    f: fn(&[Row], usize) -> T,
) -> Result<HashMap<Key, T>> {
    let mut out = HashMap::new();
    ks.scan(cql, Vec::new(), &mut |r| {
        if let (Some(o), Some(e)) = (r.big(0), r.text(1)) {
            out.insert((o, e), f(std::slice::from_ref(&r), 2));
        }
        Ok(())
    })?;
    Ok(out)
}

/// Every volume's counters (a scan of the small `usage` table).
pub fn all_usage(ks: &Keyspace) -> Result<HashMap<Key, Usage>> {
    let cql = format!(
        "SELECT owner, environment, bytes, inodes FROM {}.usage",
        ks.name()
    );
    scan_by_volume(ks, &cql, usage_from)
}

/// Every volume's quota (a scan of the small `quotas` table).
pub fn all_limits(ks: &Keyspace) -> Result<HashMap<Key, Limits>> {
    let cql = format!(
        "SELECT owner, environment, max_bytes, max_inodes FROM {}.quotas",
        ks.name()
    );
    scan_by_volume(ks, &cql, limits_from)
}

fn key_values((owner, env): &Key) -> Values {
    vec![val::big(*owner), val::text(env)]
}

/// One volume's counters (zero when it has none).
pub fn read_usage(ks: &Keyspace, key: &Key) -> Result<Usage> {
    let cql = format!("SELECT bytes, inodes FROM {}.usage {KEY}", ks.name());
    Ok(usage_from(&ks.run(&cql, key_values(key))?, 0))
}

/// Adds to one volume's counters.
pub fn add_usage(ks: &Keyspace, key: &Key, u: Usage) -> Result<()> {
    if u.is_zero() {
        return Ok(());
    }
    ks.run(&add_cql(ks.name()), add_values(u, key.0, &key.1))?;
    Ok(())
}

/// Sets one volume's counters to `want` by adding the difference to what
/// they hold; the difference.
pub fn set_usage(ks: &Keyspace, key: &Key, want: Usage) -> Result<Usage> {
    let diff = want.minus(read_usage(ks, key)?);
    add_usage(ks, key, diff)?;
    Ok(diff)
}

/// One volume's quota (`None`: it has none).
pub fn read_limits(ks: &Keyspace, key: &Key) -> Result<Option<Limits>> {
    let cql = format!(
        "SELECT max_bytes, max_inodes FROM {}.quotas {KEY}",
        ks.name()
    );
    let l = limits_from(&ks.run(&cql, key_values(key))?, 0);
    Ok((!l.is_none()).then_some(l))
}

/// Changes one volume's quota: `Some(limit)` sets that kind (a `None`
/// limit removes it), `None` leaves it as it is.
pub fn set_limits(
    ks: &Keyspace,
    key: &Key,
    bytes: Option<Option<u64>>,
    inodes: Option<Option<u64>>,
) -> Result<()> {
    let mut sets = Vec::new();
    let mut values: Values = Vec::new();
    for (col, v) in [("max_bytes", bytes), ("max_inodes", inodes)] {
        if let Some(v) = v {
            sets.push(format!("{col} = ?"));
            values.push(v.map(|n| CqlValue::BigInt(n.min(i64::MAX as u64) as i64)));
        }
    }
    if sets.is_empty() {
        return Ok(());
    }
    values.extend(key_values(key));
    let cql = format!("UPDATE {}.quotas SET {} {KEY}", ks.name(), sets.join(", "));
    ks.run(&cql, values)?;
    Ok(())
}

/// Removes one volume's quota.
pub fn remove_limits(ks: &Keyspace, key: &Key) -> Result<()> {
    let cql = format!("DELETE FROM {}.quotas {KEY}", ks.name());
    ks.run(&cql, key_values(key))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_count_bytes() {
        assert_eq!(
            Usage::of(Kind::File, 10),
            Usage {
                bytes: 10,
                inodes: 1
            }
        );
        assert_eq!(
            Usage::of(Kind::Symlink, 10),
            Usage {
                bytes: 0,
                inodes: 1
            }
        );
        assert_eq!(Usage::of(Kind::Dir, 0).negated().inodes, -1);
        let u = Usage::bytes(5).plus(Usage::of(Kind::File, 3));
        assert_eq!(u.minus(u), Usage::default());
    }
}
