//! The lock table's rows (`locks`, one partition per locked inode): each
//! mount's element of `holders` (its locks on the inode, with a TTL that
//! the mount renews), changed only by conditional writes and read at
//! SERIAL consistency. What the elements mean is `crate::locks`'s business;
//! this module only moves them.

use std::collections::BTreeMap;

use scylla::statement::Consistency as CqlConsistency;
use scylla::value::{CqlValue, Row};

use super::conn::first_bool;
use super::event::Event;
use super::now_ns;
use super::session::Store;
use super::writes::Write;
use super::Result;

/// An inode's `holders`: mount (session id) -> its encoded locks.
pub type LockCells = BTreeMap<String, Vec<u8>>;

/// The outcome of a conditional change of a mount's element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Swap {
    /// Written.
    Applied,
    /// Not written: `holders` is now this.
    Current(LockCells),
}

/// The `holders` of a result row's column `i` (absent or null: none).
fn cells_at(row: Option<&Row>, i: usize) -> LockCells {
    let Some(Some(CqlValue::Map(m))) = row.and_then(|r| r.columns.get(i)) else {
        return LockCells::new();
    };
    m.iter()
        .filter_map(|kv| match kv {
            (CqlValue::Text(k), CqlValue::Blob(v)) => Some((k.clone(), v.clone())),
            (CqlValue::Text(k), CqlValue::Empty) => Some((k.clone(), Vec::new())),
            _ => None,
        })
        .collect()
}

impl Store {
    /// An inode's `holders` as Paxos has them (a SERIAL read).
    pub fn lock_cells(&self, ino: u64) -> Result<LockCells> {
        let ks = &self.ks;
        let mut ps = self.prepared(&format!(
            "SELECT holders FROM {ks}.locks WHERE owner = ? AND environment = ? AND ino = ?"
        ))?;
        ps.set_consistency(CqlConsistency::Serial);
        let rows = self.exec(&ps, (self.owner, &self.env, ino as i64))?;
        Ok(cells_at(rows.first(), 0))
    }

    /// Sets `mount`'s element to `value` for `ttl` seconds if `holders` is
    /// exactly `expected`. When Cassandra cannot say whether the write
    /// applied, `holders` is read back and returned as [`Swap::Current`]
    /// (the caller sees its own element there if it did).
    pub fn swap_lock_cell(
        &self,
        ino: u64,
        mount: &str,
        value: &[u8],
        ttl: i32,
        expected: &LockCells,
    ) -> Result<Swap> {
        let ks = &self.ks;
        let set = format!(
            "UPDATE {ks}.locks USING TTL ? SET holders[?] = ? WHERE owner = ? AND \
             environment = ? AND ino = ?"
        );
        let key = (self.owner, &self.env, ino as i64);
        let res = if expected.is_empty() {
            let ps = self.prepared(&format!("{set} IF holders = null"))?;
            self.exec(&ps, (ttl, mount, value, key.0, key.1, key.2))
        } else {
            let ps = self.prepared(&format!("{set} IF holders = ?"))?;
            self.exec(&ps, (ttl, mount, value, key.0, key.1, key.2, expected))
        };
        match res {
            Ok(rows) => match rows.first().and_then(|r| r.columns.first()) {
                Some(Some(CqlValue::Boolean(true))) => Ok(Swap::Applied),
                _ => Ok(Swap::Current(cells_at(rows.first(), 1))),
            },
            Err(e) => {
                log::debug!("lock write on inode {ino} failed ({e}); reading it back");
                self.lock_cells(ino).map(Swap::Current)
            }
        }
    }

    /// Writes `mount`'s element again, unchanged, with a fresh `ttl`, if it
    /// is still `value`: false when it is not (it expired).
    pub fn renew_lock_cell(&self, ino: u64, mount: &str, value: &[u8], ttl: i32) -> Result<bool> {
        let ks = &self.ks;
        let ps = self.prepared(&format!(
            "UPDATE {ks}.locks USING TTL ? SET holders[?] = ? WHERE owner = ? AND \
             environment = ? AND ino = ? IF holders[?] = ?"
        ))?;
        let v = (
            ttl, mount, value, self.owner, &self.env, ino as i64, mount, value,
        );
        Ok(first_bool(self.exec(&ps, v)?))
    }

    /// Tells the other mounts (change feed) that locks on `inos` were
    /// released, as `origin`.
    pub fn locks_released(&self, origin: &str, inos: Vec<u64>) -> Result<()> {
        let e = Event {
            origin: origin.to_string(),
            at: now_ns(),
            id: rand::random::<i64>(),
            unlocked: inos,
            ..Event::default()
        };
        self.apply(vec![Write::Event(e)])
    }
}
