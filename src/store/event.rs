//! One row of the volume's change feed (table `changes`), as written with
//! every change ([`Write::Event`](super::Write)) and as read back by the
//! mounts that follow the feed (`store/changes.rs`, `crate::feed`).

use scylla::value::{CqlValue, Row};

/// Seconds of the change feed in one partition: a follower reads one
/// partition (two at a boundary) per poll, and no partition grows beyond
/// the changes of this many seconds.
pub const FEED_BUCKET_SECS: i64 = 10;

/// Seconds a row of the feed lives (the table's `default_time_to_live`): a
/// mount that could not read the feed for longer starts clean.
pub const FEED_RETENTION_SECS: i64 = 3600;

/// One row of the change feed: what a change touched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// The mount that made the change (its own events are skipped).
    pub origin: String,
    /// When, in nanoseconds since the epoch (the writer's clock).
    pub at: i64,
    /// Random: two events at one instant differ.
    pub id: i64,
    /// Entries, as [`name_key`](super::name_key)s (parent inode and name).
    pub names: Vec<Vec<u8>>,
    /// Inodes whose attributes, content or entries changed.
    pub inos: Vec<u64>,
    /// Of those, the ones whose content was committed, with the new
    /// content version.
    pub versions: Vec<(u64, i64)>,
    /// Inodes whose locks were released (`crate::locks`).
    pub unlocked: Vec<u64>,
}

impl Event {
    /// The feed partition of a time (nanoseconds since the epoch).
    pub fn bucket(at_ns: i64) -> i64 {
        at_ns.div_euclid(FEED_BUCKET_SECS * 1_000_000_000)
    }

    /// The entries named, as (parent, name); malformed keys are skipped.
    pub fn entries(&self) -> impl Iterator<Item = (u64, &[u8])> {
        self.names.iter().filter_map(|k| {
            let (p, name) = k.split_at_checked(8)?;
            let parent = u64::from_be_bytes(p.try_into().ok()?);
            Some((parent, name))
        })
    }
}

/// A change feed row (`at, id, origin, names, inos, versions, unlocked`); malformed
/// rows are skipped.
pub(super) fn event_from_row(row: Row) -> Option<Event> {
    let mut c = row.columns.into_iter();
    let (Some(Some(CqlValue::BigInt(at))), Some(Some(CqlValue::BigInt(id)))) = (c.next(), c.next())
    else {
        return None;
    };
    let origin = match c.next() {
        Some(Some(CqlValue::Text(o))) => o,
        _ => String::new(),
    };
    let list = |v: Option<Option<CqlValue>>| match v {
        Some(Some(CqlValue::List(l))) => l,
        _ => Vec::new(),
    };
    let names = list(c.next())
        .into_iter()
        .filter_map(|v| match v {
            CqlValue::Blob(b) => Some(b),
            _ => None,
        })
        .collect();
    let inodes = |v| -> Vec<u64> {
        list(v)
            .into_iter()
            .filter_map(|v| match v {
                CqlValue::BigInt(i) => Some(i as u64),
                _ => None,
            })
            .collect()
    };
    let inos = inodes(c.next());
    let versions = match c.next() {
        Some(Some(CqlValue::Map(m))) => m
            .into_iter()
            .filter_map(|kv| match kv {
                (CqlValue::BigInt(ino), CqlValue::BigInt(v)) => Some((ino as u64, v)),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let unlocked = inodes(c.next());
    Some(Event {
        origin,
        at,
        id,
        names,
        inos,
        versions,
        unlocked,
    })
}
