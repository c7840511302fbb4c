//! Renames interrupted between their two steps, finished by readers.
//!
//! A rename to a new name first creates that name with a conditional write
//! that also records the source (`dentries.moving_from`), then sends one
//! logged batch that removes the source and clears the record. If the
//! renaming process dies between the two, the next read of the new name
//! (any host, any lookup or listing) finishes it: removes the source if it
//! still names the same inode, applies the inode's and parents' changes,
//! and clears the record. Every step is idempotent, so finishing a rename
//! that is still under way elsewhere is harmless.

use scylla::value::CqlValue;

use super::writes::{name_key, Change, SetOp, Write};
use super::{Dentry, Kind, Result, Store};

/// An entry as stored, with the source of an unfinished rename.
pub type RawDentry = (Dentry, Option<Vec<u8>>);

/// Splits a [`name_key`] into the parent and the name.
fn split_key(key: &[u8]) -> Option<(u64, &[u8])> {
    if key.len() < 9 {
        return None;
    }
    let (p, name) = key.split_at(8);
    let mut be = [0u8; 8];
    be.copy_from_slice(p);
    Some((u64::from_be_bytes(be), name))
}

impl Store {
    /// The entries of `parent`, each rename left unfinished now finished.
    pub(super) fn settle(&self, parent: u64, rows: Vec<RawDentry>) -> Result<Vec<Dentry>> {
        let mut out = Vec::with_capacity(rows.len());
        for (d, moving) in rows {
            if let Some(from) = moving {
                self.finish_move(parent, &d, &from)?;
            }
            out.push(d);
        }
        Ok(out)
    }

    pub(super) fn settle_one(&self, parent: u64, row: Option<RawDentry>) -> Result<Option<Dentry>> {
        Ok(self.settle(parent, row.into_iter().collect())?.pop())
    }

    /// Finishes the rename of `from` to `parent`/`d.name`.
    fn finish_move(&self, parent: u64, d: &Dentry, from: &[u8]) -> Result<()> {
        let mut writes = vec![Write::ClearMoving(parent, d.name.clone())];
        if let Some((src_parent, src_name)) = split_key(from) {
            let src = self.get_raw_dentry(src_parent, src_name)?;
            if src.is_some_and(|(s, _)| s.ino == d.ino)
                && self.remove_dentry(src_parent, src_name, d.ino, Vec::new())?
            {
                writes.extend(source_gone(d, src_parent, from, parent));
            }
        }
        self.apply(writes)
    }
}

/// What a finished rename changes besides the entries: a file loses the
/// source's name and has the new one (its rename records that in the batch
/// a killed process never sent); a directory gets its new parent and the
/// parents' link counts follow.
fn source_gone(d: &Dentry, src_parent: u64, from: &[u8], parent: u64) -> Vec<Write> {
    if d.kind != Kind::Dir {
        let gone = Change::default().with_names(SetOp::Remove(from.to_vec()));
        let named = Change::default().with_names(SetOp::Add(name_key(parent, &d.name)));
        return vec![Write::Update(d.ino, gone), Write::Update(d.ino, named)];
    }
    let mut w = vec![Write::Update(
        d.ino,
        Change {
            parent: Some(parent),
            ..Change::default()
        },
    )];
    if src_parent != parent {
        let out = Change::default().with_subdirs(SetOp::Remove(d.ino));
        let into = Change::default().with_subdirs(SetOp::Add(d.ino));
        w.push(Write::Update(src_parent, out));
        w.push(Write::Update(parent, into));
    }
    w
}

impl Store {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::name_key;

    #[test]
    fn keys_split_back() {
        let k = name_key(42, b"name");
        assert_eq!(split_key(&k), Some((42, &b"name"[..])));
        assert_eq!(split_key(&k[..8]), None);
    }
}
