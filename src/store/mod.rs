//! The storage engine: a small *blocking* API over Apache Cassandra.
//!
//! Everything CassFS keeps lives in the tables of `cql/cassfs.cql` (the key
//! layout is documented there). This module owns the Cassandra driver and the
//! async runtime it needs; both are private, and every method here blocks the
//! calling thread until Cassandra answered or the request timed out. Callers
//! never see a future.
//!
//! A [`Store`] is bound to one volume (owner, environment): every statement
//! binds the volume's key from the store itself, so code above this module
//! cannot reach another volume's rows.

mod apply;
mod blocks;
mod changes;
mod conn;
mod entries;
mod event;
mod generations;
mod inodes;
mod keyspace;
mod locks;
mod moves;
mod records;
mod removals;
mod schema;
mod session;
mod sessions;
mod statements;
mod tls;
pub mod usage;
mod writes;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use conn::Conn;
pub use event::{Event, FEED_BUCKET_SECS, FEED_RETENTION_SECS};
pub use keyspace::{val, Columns, Keyspace, Values};
pub use locks::{LockCells, Swap};
pub use records::INODE_COLUMNS;
pub use schema::{apply_schema, check_schema, Replication, SCHEMA_CQL};
pub use scylla::value::{CqlValue, Row};
pub use session::Store;
pub use sessions::{SessionInfo, SESSION_COLUMNS};
pub use usage::{Limits, Usage};
pub use writes::{name_key, Change, SetOp, Write};

/// Now, in nanoseconds since the Unix epoch (the unit of every time
/// CassFS stores).
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Size of a content block. Files are cut into blocks of this size.
pub const BLOCK_SIZE: u64 = 1 << 20;
/// Files of at most this many bytes are stored inline in their inode row.
pub const INLINE_MAX: u64 = 64 << 10;
/// A SHA-256 digest naming a block. All zeros names a hole (zero bytes).
pub type Hash = [u8; 32];
/// The hash standing for a block of zeros that is not stored.
pub const HOLE: Hash = [0u8; 32];

/// Lower-case hex of a hash, for messages.
pub fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// The kinds of inodes, as stored in `inodes.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    File = 1,
    Dir = 2,
    Symlink = 3,
    Fifo = 4,
    Socket = 5,
    CharDev = 6,
    BlockDev = 7,
}

impl Kind {
    pub fn from_i32(v: i32) -> Option<Kind> {
        Some(match v {
            1 => Kind::File,
            2 => Kind::Dir,
            3 => Kind::Symlink,
            4 => Kind::Fifo,
            5 => Kind::Socket,
            6 => Kind::CharDev,
            7 => Kind::BlockDev,
            _ => return None,
        })
    }
}

/// Where a file's bytes are.
#[derive(Clone, Debug, PartialEq)]
pub enum Content {
    /// The whole content, kept in the inode row.
    Inline(Arc<Vec<u8>>),
    /// One hash per block; the last block may be short (the size says).
    Blocks(Arc<Vec<Hash>>),
}

impl Default for Content {
    fn default() -> Self {
        Content::Inline(Arc::new(Vec::new()))
    }
}

/// One inode: attributes, xattrs and where its content is.
#[derive(Clone, Debug, PartialEq)]
pub struct Inode {
    pub ino: u64,
    pub kind: Kind,
    /// Permission bits (07777).
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub nlink: u32,
    pub rdev: u32,
    pub size: u64,
    pub atime_ns: i64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    /// For directories, the parent directory.
    pub parent: u64,
    /// Changes with every content commit; equal versions mean equal content.
    pub version: i64,
    /// For symlinks, the target.
    pub target: Vec<u8>,
    pub content: Content,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// A directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dentry {
    pub name: Vec<u8>,
    pub ino: u64,
    pub kind: Kind,
}

/// CQL consistency levels accepted for reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    One,
    Two,
    Three,
    Quorum,
    All,
    LocalQuorum,
    EachQuorum,
    LocalOne,
}

impl std::str::FromStr for Consistency {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s.to_ascii_uppercase().as_str() {
            "ONE" => Consistency::One,
            "TWO" => Consistency::Two,
            "THREE" => Consistency::Three,
            "QUORUM" => Consistency::Quorum,
            "ALL" => Consistency::All,
            "LOCAL_QUORUM" => Consistency::LocalQuorum,
            "EACH_QUORUM" => Consistency::EachQuorum,
            "LOCAL_ONE" => Consistency::LocalOne,
            _ => {
                return Err(format!(
                    "unknown consistency '{s}' (one of ONE, TWO, THREE, QUORUM, ALL, \
                     LOCAL_QUORUM, EACH_QUORUM, LOCAL_ONE)"
                ))
            }
        })
    }
}

/// How to reach Cassandra.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Contact points, `host` or `host:port` (9042 when no port is given).
    pub servers: Vec<String>,
    pub keyspace: String,
    pub consistency: Consistency,
    /// Every request fails after this long (the driver's request timeout).
    pub request_timeout: Duration,
    /// Connecting (including the CQL handshake) fails after this long.
    pub connect_timeout: Duration,
    /// Login for PasswordAuthenticator (`None`: no authentication).
    pub credentials: Option<Credentials>,
    /// TLS to Cassandra (`None`: plain text).
    pub tls: Option<TlsFiles>,
    /// Prefer this datacenter's nodes (`LOCAL_*` consistencies then mean it).
    pub datacenter: Option<String>,
}

/// A user name and its password; the password never shows in `Debug`.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, password: <hidden> }}",
            self.username
        )
    }
}

/// The PEM files of a TLS connection.
#[derive(Clone, Debug, Default)]
pub struct TlsFiles {
    /// CAs that verify the servers (`None`: the system's).
    pub ca: Option<std::path::PathBuf>,
    /// A client certificate and its key, for mutual TLS.
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
}

impl StoreConfig {
    pub fn new(servers: &str, keyspace: &str) -> StoreConfig {
        StoreConfig {
            servers: split_servers(servers),
            keyspace: keyspace.to_string(),
            consistency: Consistency::LocalQuorum,
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(8),
            credentials: None,
            tls: None,
            datacenter: None,
        }
    }

    /// The contact points as `host:port`, for messages.
    pub fn addresses(&self) -> String {
        self.servers.join(",")
    }
}

/// Splits a comma-separated server list and adds the default port.
pub fn split_servers(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let has_port = s.rsplit_once(':').is_some_and(|(h, p)| {
                !h.is_empty() && !h.ends_with(':') && p.parse::<u16>().is_ok()
            });
            if has_port {
                s.to_string()
            } else {
                format!("{s}:9042")
            }
        })
        .collect()
}

/// What can go wrong talking to Cassandra.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot reach Cassandra at {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("Cassandra at {addr} refused the login: {reason}")]
    Login { addr: String, reason: String },
    #[error("{0}")]
    Schema(String),
    #[error("Cassandra request timed out after {0:?}")]
    Timeout(Duration),
    #[error("Cassandra request failed: {0}")]
    Request(String),
    #[error("corrupt row in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
}

impl StoreError {
    /// Whether the same request may succeed if sent again soon: a timeout,
    /// a broken connection, too few replicas answering.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Timeout(_) | StoreError::Unreachable { .. } => true,
            StoreError::Request(r) => {
                let r = r.to_ascii_lowercase();
                [
                    "timed out",
                    "timeout",
                    "broken",
                    "not enough nodes",
                    "unavailable",
                    "reset",
                ]
                .iter()
                .any(|w| r.contains(w))
            }
            _ => false,
        }
    }

    pub(crate) fn request(e: impl fmt::Display) -> StoreError {
        StoreError::Request(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_get_default_port() {
        assert_eq!(
            split_servers("a, b:9000,127.0.0.1:1,,"),
            vec!["a:9042", "b:9000", "127.0.0.1:1"]
        );
    }

    #[test]
    fn consistency_parses_case_insensitively() {
        assert_eq!("local_quorum".parse(), Ok(Consistency::LocalQuorum));
        assert!("MOST".parse::<Consistency>().is_err());
    }
}
