//! Conversions between CQL rows and the store's types ([`Inode`], [`Dentry`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use scylla::DeserializeRow;

use super::{Content, Dentry, Hash, Inode, Kind, StoreError};

/// The inode columns, in the order of `INODE_COLUMNS`.
#[derive(DeserializeRow)]
pub(super) struct InodeRow {
    kind: Option<i32>,
    mode: Option<i32>,
    uid: Option<i32>,
    gid: Option<i32>,
    rdev: Option<i32>,
    size: Option<i64>,
    atime_ns: Option<i64>,
    mtime_ns: Option<i64>,
    ctime_ns: Option<i64>,
    parent: Option<i64>,
    version: Option<i64>,
    target: Option<Vec<u8>>,
    inline_data: Option<Vec<u8>>,
    blocks: Option<Vec<u8>>,
    xattrs: Option<BTreeMap<Vec<u8>, Vec<u8>>>,
    names: Option<Vec<Vec<u8>>>,
    subdirs: Option<Vec<i64>>,
    gen: Option<i64>,
}

pub const INODE_COLUMNS: &str = "kind, mode, uid, gid, rdev, size, atime_ns, \
     mtime_ns, ctime_ns, parent, version, target, inline_data, blocks, xattrs, names, subdirs, gen";

fn corrupt(reason: String) -> StoreError {
    StoreError::Corrupt {
        table: "inodes",
        reason,
    }
}

impl InodeRow {
    /// A directory's generation of entries (`store/generations.rs`).
    pub(super) fn gen(&self) -> i64 {
        self.gen.unwrap_or(0)
    }

    /// The inode, or `None` for a row without a kind: what an update that
    /// raced a delete leaves behind, a deleted inode (see `cql/cassfs.cql`).
    pub(super) fn into_inode(self, ino: u64) -> Result<Option<Inode>, StoreError> {
        let Some(kind) = self.kind else {
            return Ok(None);
        };
        let kind =
            Kind::from_i32(kind).ok_or_else(|| corrupt(format!("inode {ino} has kind {kind}")))?;
        let nlink = match kind {
            Kind::Dir => 2 + self.subdirs.map_or(0, |s| s.len()),
            _ => self.names.map_or(0, |s| s.len()),
        };
        let content = match self.blocks {
            Some(b) if !b.is_empty() => Content::Blocks(Arc::new(split_hashes(&b, ino)?)),
            _ => Content::Inline(Arc::new(self.inline_data.unwrap_or_default())),
        };
        Ok(Some(Inode {
            ino,
            kind,
            perm: self.mode.unwrap_or(0) as u32 & 0o7777,
            uid: self.uid.unwrap_or(0) as u32,
            gid: self.gid.unwrap_or(0) as u32,
            nlink: u32::try_from(nlink).unwrap_or(u32::MAX),
            rdev: self.rdev.unwrap_or(0) as u32,
            size: self.size.unwrap_or(0) as u64,
            atime_ns: self.atime_ns.unwrap_or(0),
            mtime_ns: self.mtime_ns.unwrap_or(0),
            ctime_ns: self.ctime_ns.unwrap_or(0),
            parent: self.parent.unwrap_or(1) as u64,
            version: self.version.unwrap_or(0),
            target: self.target.unwrap_or_default(),
            content,
            xattrs: self.xattrs.unwrap_or_default(),
        }))
    }
}

fn split_hashes(b: &[u8], ino: u64) -> Result<Vec<Hash>, StoreError> {
    if !b.len().is_multiple_of(32) {
        return Err(corrupt(format!(
            "inode {ino}: block list of {} bytes",
            b.len()
        )));
    }
    Ok(b.chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect())
}

/// Content as the two columns `inline_data` and `blocks`.
pub(super) fn content_columns(c: &Content) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    match c {
        Content::Inline(d) => (Some(d.as_ref().clone()), None),
        Content::Blocks(h) => (None, Some(h.iter().flatten().copied().collect())),
    }
}

/// A dentry row as read by a listing.
pub(super) fn dentry_from_row(
    (name, ino, kind): (Vec<u8>, i64, i32),
) -> Result<Dentry, StoreError> {
    let kind = Kind::from_i32(kind).ok_or_else(|| StoreError::Corrupt {
        table: "dir_entries",
        reason: format!("entry {:?} has kind {kind}", String::from_utf8_lossy(&name)),
    })?;
    Ok(Dentry {
        name,
        ino: ino as u64,
        kind,
    })
}
