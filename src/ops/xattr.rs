//! Extended attributes, kept in the inode row.

use super::{now_ns, Fs, ROOT};
use crate::error::{FsError, FsResult};

/// Largest value Linux allows (XATTR_SIZE_MAX).
const VALUE_MAX: usize = 64 << 10;
/// Largest name Linux allows (XATTR_NAME_MAX).
const NAME_MAX: usize = 255;
/// Most bytes of names and values one inode may hold (they live in its
/// row, read with every load of it): more fails with ENOSPC.
pub const XATTR_TOTAL_MAX: usize = 256 << 10;
/// A read-only attribute of the root: CQL statements run by this mount.
pub const STATEMENTS_XATTR: &[u8] = b"user.cassfs.statements";

/// The answer to getxattr/listxattr: the size, or the bytes when they fit.
#[derive(Debug, PartialEq, Eq)]
pub enum XattrReply {
    Size(u32),
    Data(Vec<u8>),
}

fn sized(data: Vec<u8>, size: u32) -> FsResult<XattrReply> {
    if size == 0 {
        return Ok(XattrReply::Size(data.len() as u32));
    }
    if data.len() > size as usize {
        return Err(FsError::Range);
    }
    Ok(XattrReply::Data(data))
}

fn check_name(name: &[u8]) -> FsResult<()> {
    if name.is_empty() || name.len() > NAME_MAX {
        return Err(FsError::Range);
    }
    // POSIX ACLs would need permission checks of their own: not supported.
    if name.starts_with(b"system.") {
        return Err(FsError::NotSupported);
    }
    let known = [&b"user."[..], b"trusted.", b"security."];
    if !known.iter().any(|p| name.starts_with(p)) {
        return Err(FsError::NotSupported);
    }
    Ok(())
}

impl Fs {
    pub fn getxattr(&self, ino: u64, name: &[u8], size: u32) -> FsResult<XattrReply> {
        if ino == ROOT && name == STATEMENTS_XATTR {
            return sized(self.statement_count().to_string().into_bytes(), size);
        }
        check_name(name)?;
        let i = self.load(ino)?;
        let v = i.xattrs.get(name).ok_or(FsError::NoAttr)?;
        sized(v.clone(), size)
    }

    pub fn listxattr(&self, ino: u64, size: u32) -> FsResult<XattrReply> {
        let i = self.load(ino)?;
        let mut out = Vec::new();
        for k in i.xattrs.keys() {
            out.extend_from_slice(k);
            out.push(0);
        }
        sized(out, size)
    }

    /// `flags`: XATTR_CREATE (fail if present) or XATTR_REPLACE (fail if not).
    pub fn setxattr(&self, ino: u64, name: &[u8], value: &[u8], flags: i32) -> FsResult<()> {
        self.writable()?;
        if ino == ROOT && name == STATEMENTS_XATTR {
            return Err(FsError::Perm);
        }
        check_name(name)?;
        self.settle(ino)?;
        if value.len() > VALUE_MAX {
            return Err(FsError::ArgTooBig);
        }
        // Checked against Cassandra, not the cache: another mount may have
        // set or removed the attribute.
        let epoch = self.cache.inode_epoch();
        let mut i = self.store.get_inode(ino)?.ok_or(FsError::NotFound)?;
        let present = i.xattrs.contains_key(name);
        if flags & libc::XATTR_CREATE != 0 && present {
            return Err(FsError::Exists);
        }
        if flags & libc::XATTR_REPLACE != 0 && !present {
            return Err(FsError::NoAttr);
        }
        let others: usize = i
            .xattrs
            .iter()
            .filter(|(k, _)| k.as_slice() != name)
            .map(|(k, v)| k.len() + v.len())
            .sum();
        if others + name.len() + value.len() > XATTR_TOTAL_MAX {
            return Err(FsError::NoSpace);
        }
        let now = now_ns();
        self.store.set_xattr(ino, name, value, now)?;
        i.xattrs.insert(name.to_vec(), value.to_vec());
        i.ctime_ns = now;
        self.cache.put_inode_read(&i, epoch);
        Ok(())
    }

    pub fn removexattr(&self, ino: u64, name: &[u8]) -> FsResult<()> {
        self.writable()?;
        check_name(name)?;
        self.settle(ino)?;
        let epoch = self.cache.inode_epoch();
        let mut i = self.store.get_inode(ino)?.ok_or(FsError::NotFound)?;
        if i.xattrs.remove(name).is_none() {
            return Err(FsError::NoAttr);
        }
        let now = now_ns();
        self.store.remove_xattr(ino, name, now)?;
        i.ctime_ns = now;
        self.cache.put_inode_read(&i, epoch);
        Ok(())
    }
}
