//! Content blocks (`blocks`, named by their SHA-256) and the references
//! inodes hold on them (`block_refs`), read through the disk cache when a
//! mount has one.

use std::sync::Arc;

use crate::metrics::CqlKind;

use super::conn::result_rows;
use super::now_ns;
use super::session::Store;
use super::{hex, Hash, Result, StoreError};

impl Store {
    /// Stores blocks (idempotent: a block is named by its content).
    pub fn put_blocks(&self, blocks: Vec<(Hash, Arc<Vec<u8>>)>) -> Result<()> {
        let (ps, owner) = (&self.st.insert_block, self.owner);
        self.conn
            .fan_out(CqlKind::Write, &blocks, |s, (hash, data)| async move {
                s.execute_unpaged(ps, (owner, hash.as_slice(), data.as_slice()))
                    .await
                    .map_err(StoreError::request)
            })?;
        if let Some(disk) = &self.disk {
            for (h, d) in &blocks {
                disk.put(h, d);
            }
        }
        Ok(())
    }

    /// The blocks of `hashes` that are not stored.
    pub fn missing_blocks(&self, hashes: &[Hash]) -> Result<Vec<Hash>> {
        let (ps, owner) = (&self.st.block_exists, self.owner);
        let gone = self
            .conn
            .fan_out(CqlKind::Read, hashes, |s, hash| async move {
                let r = s.execute_unpaged(ps, (owner, hash.as_slice())).await;
                let rows = result_rows(r.map_err(StoreError::request)?)?;
                Ok(rows.is_empty().then_some(hash))
            })?;
        Ok(gone.into_iter().flatten().collect())
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
        let (ps, owner) = (&self.st.get_block, self.owner);
        self.conn
            .fan_out(CqlKind::Read, hashes, |s, hash| async move {
                let res = s
                    .execute_unpaged(ps, (owner, hash.as_slice()))
                    .await
                    .map_err(StoreError::request)?;
                let rows = res.into_rows_result().map_err(StoreError::request)?;
                let row = rows
                    .maybe_first_row::<(Vec<u8>,)>()
                    .map_err(StoreError::request)?;
                match row {
                    Some((data,)) => Ok(Arc::new(data)),
                    None => Err(StoreError::Corrupt {
                        table: "blocks",
                        reason: format!("block {} is missing", hex(&hash)),
                    }),
                }
            })
    }

    /// Records that `ino` references each block (`add`) or no longer does.
    pub fn change_refs(&self, ino: u64, add: &[Hash], remove: &[Hash]) -> Result<()> {
        let jobs: Vec<(bool, Hash)> = add
            .iter()
            .map(|h| (true, *h))
            .chain(remove.iter().map(|h| (false, *h)))
            .collect();
        let (ins, del) = (&self.st.insert_ref, &self.st.delete_ref);
        let (owner, env, at) = (self.owner, self.env.as_str(), now_ns());
        self.conn
            .fan_out(CqlKind::Write, &jobs, |s, (is_add, hash)| async move {
                let (h, i) = (hash.as_slice(), ino as i64);
                let r = if is_add {
                    s.execute_unpaged(ins, (owner, h, env, i, at)).await
                } else {
                    s.execute_unpaged(del, (owner, h, env, i)).await
                };
                r.map(drop).map_err(StoreError::request)
            })?;
        Ok(())
    }
}
