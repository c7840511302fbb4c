//! Rows of the `inodes` and `volumes` tables: reading inodes, writing
//! whole ones, the conditional writes that keep a file's names and its
//! deletion in order, extended attributes, inode numbers, and the
//! volume's lease for moving directories.

use std::ops::Range;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlValue;

use crate::metrics::{CqlKind, Tally};

use super::changes::Touched;
use super::conn::first_bool;
use super::now_ns;
use super::records::InodeRow;
use super::session::Store;
use super::writes::Write;
use super::{Inode, Result, StoreError};

impl Store {
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
        let (ps, owner, env) = (&self.st.get_inode, self.owner, self.env.as_str());
        let got = self
            .conn
            .fan_out(CqlKind::Read, inos, |s, ino| async move {
                fetch_inode(&s, ps, owner, env, ino).await
            })?;
        Ok(got
            .into_iter()
            .map(|r| r.map(|(i, gen)| self.noted(i, gen)))
            .collect())
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
