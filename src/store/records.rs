//! Conversions between CQL rows and the store's types ([`Inode`], [`Dentry`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use scylla::{DeserializeRow, SerializeRow};

use super::{Content, Dentry, Hash, Inode, Kind, StoreError};

/// The inode columns, in the order of `INODE_COLUMNS`.
#[derive(DeserializeRow)]
pub(super) struct InodeRow {
    kind: Option<i32>,
    mode: Option<i32>,
    uid: Option<i32>,
    gid: Option<i32>,
    nlink: Option<i32>,
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
}

pub(super) const INODE_COLUMNS: &str = "kind, mode, uid, gid, nlink, rdev, size, atime_ns, \
     mtime_ns, ctime_ns, parent, version, target, inline_data, blocks, xattrs";

fn corrupt(reason: String) -> StoreError {
    StoreError::Corrupt {
        table: "inodes",
        reason,
    }
}

impl InodeRow {
    pub(super) fn into_inode(self, ino: u64) -> Result<Inode, StoreError> {
        let kind = self
            .kind
            .and_then(Kind::from_i32)
            .ok_or_else(|| corrupt(format!("inode {ino} has no valid kind")))?;
        let content = match self.blocks {
            Some(b) if !b.is_empty() => Content::Blocks(Arc::new(split_hashes(&b, ino)?)),
            _ => Content::Inline(Arc::new(self.inline_data.unwrap_or_default())),
        };
        Ok(Inode {
            ino,
            kind,
            perm: self.mode.unwrap_or(0) as u32 & 0o7777,
            uid: self.uid.unwrap_or(0) as u32,
            gid: self.gid.unwrap_or(0) as u32,
            nlink: self.nlink.unwrap_or(1) as u32,
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
        })
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

/// All columns of a new inode row, for INSERT.
#[derive(SerializeRow)]
pub(super) struct NewInodeRow<'a> {
    owner: i64,
    environment: &'a str,
    ino: i64,
    kind: i32,
    mode: i32,
    uid: i32,
    gid: i32,
    nlink: i32,
    rdev: i32,
    size: i64,
    atime_ns: i64,
    mtime_ns: i64,
    ctime_ns: i64,
    parent: i64,
    version: i64,
    target: Option<&'a [u8]>,
    inline_data: Option<Vec<u8>>,
    blocks: Option<Vec<u8>>,
    xattrs: &'a BTreeMap<Vec<u8>, Vec<u8>>,
}

pub(super) const NEW_INODE_COLUMNS: &str = "owner, environment, ino, kind, mode, uid, gid, \
     nlink, rdev, size, atime_ns, mtime_ns, ctime_ns, parent, version, target, inline_data, \
     blocks, xattrs";

impl<'a> NewInodeRow<'a> {
    pub(super) fn new(owner: i64, environment: &'a str, i: &'a Inode) -> Self {
        let (inline_data, blocks) = content_columns(&i.content);
        NewInodeRow {
            owner,
            environment,
            ino: i.ino as i64,
            kind: i.kind as i32,
            mode: i.perm as i32,
            uid: i.uid as i32,
            gid: i.gid as i32,
            nlink: i.nlink as i32,
            rdev: i.rdev as i32,
            size: i.size as i64,
            atime_ns: i.atime_ns,
            mtime_ns: i.mtime_ns,
            ctime_ns: i.ctime_ns,
            parent: i.parent as i64,
            version: i.version,
            target: (i.kind == Kind::Symlink).then_some(i.target.as_slice()),
            inline_data,
            blocks,
            xattrs: &i.xattrs,
        }
    }
}

/// A dentry row as read by a listing.
pub(super) fn dentry_from_row(
    (name, ino, kind): (Vec<u8>, i64, i32),
) -> Result<Dentry, StoreError> {
    let kind = Kind::from_i32(kind).ok_or_else(|| StoreError::Corrupt {
        table: "dentries",
        reason: format!("entry {:?} has kind {kind}", String::from_utf8_lossy(&name)),
    })?;
    Ok(Dentry {
        name,
        ino: ino as u64,
        kind,
    })
}
