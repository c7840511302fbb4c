//! The filesystem's error type and its one mapping to errno.

use crate::store::StoreError;

/// Why a filesystem operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    /// The inode a path led to is gone (replaced by a rename, removed):
    /// the kernel looks the path up again once.
    #[error("stale file handle")]
    Stale,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("name too long")]
    NameTooLong,
    #[error("invalid argument")]
    Invalid,
    #[error("no such attribute")]
    NoAttr,
    #[error("buffer too small")]
    Range,
    #[error("operation not permitted")]
    Perm,
    #[error("permission denied")]
    Access,
    #[error("read-only filesystem")]
    ReadOnly,
    #[error("operation not supported")]
    NotSupported,
    #[error("bad file handle")]
    BadHandle,
    #[error("file too large")]
    TooBig,
    #[error("too many links")]
    TooManyLinks,
    #[error("argument list too long")]
    ArgTooBig,
    #[error("no space left for this inode's attributes")]
    NoSpace,
    #[error("busy: another mount is moving a directory")]
    Busy,
    #[error("the volume's quota is reached")]
    Quota,
    /// Asked of a read-only mount that keeps no handles: the kernel stops
    /// sending the request.
    #[error("not implemented on a read-only mount")]
    NoHandles,
    #[error("a conflicting lock is held")]
    WouldBlock,
    #[error("interrupted by a signal")]
    Interrupted,
    #[error("this mount lost its locks on the file (lease not renewed)")]
    LockLost,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FsError {
    /// The errno the kernel gets for this error.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Stale => libc::ESTALE,
            FsError::Exists => libc::EEXIST,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::Invalid => libc::EINVAL,
            FsError::NoAttr => libc::ENODATA,
            FsError::Range => libc::ERANGE,
            FsError::Perm => libc::EPERM,
            FsError::Access => libc::EACCES,
            FsError::ReadOnly => libc::EROFS,
            FsError::NotSupported => libc::EOPNOTSUPP,
            FsError::BadHandle => libc::EBADF,
            FsError::TooBig => libc::EFBIG,
            FsError::TooManyLinks => libc::EMLINK,
            FsError::ArgTooBig => libc::E2BIG,
            FsError::NoSpace => libc::ENOSPC,
            FsError::Busy => libc::EBUSY,
            FsError::Quota => libc::EDQUOT,
            FsError::NoHandles => libc::ENOSYS,
            FsError::WouldBlock => libc::EAGAIN,
            FsError::Interrupted => libc::EINTR,
            FsError::LockLost => libc::EIO,
            FsError::Store(_) => libc::EIO,
        }
    }

    /// Errors that are part of normal operation (a lookup of a missing
    /// name) are logged at debug level; the rest as warnings.
    pub fn is_expected(&self) -> bool {
        !matches!(self, FsError::Store(_))
    }
}

pub type FsResult<T> = Result<T, FsError>;

/// The errno's symbolic name, for the common ones (metrics labels, test
/// reports); `None` for the others.
pub fn errno_name(e: i32) -> Option<&'static str> {
    Some(match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EDQUOT => "EDQUOT",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENODATA => "ENODATA",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ESTALE => "ESTALE",
        libc::EINTR => "EINTR",
        libc::ENOTCONN => "ENOTCONN",
        libc::ECONNABORTED => "ECONNABORTED",
        libc::ETXTBSY => "ETXTBSY",
        _ => return None,
    })
}
