//! The rows of a mount's session (`sessions`) and of the inodes it holds
//! (`holds`): written with a TTL that the mount's heartbeat renews, so the
//! rows of a mount that died expire (src/sessions.rs runs the heartbeat).

use super::keyspace::Columns;
use super::session::Store;
use super::Result;

/// A mount's session as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionInfo {
    pub id: String,
    pub host: String,
    pub pid: i32,
    pub mountpoint: String,
    pub version: String,
    pub started_ns: i64,
    pub heartbeat_ns: i64,
}

/// The columns [`SessionInfo::from_row`] reads, in order.
pub const SESSION_COLUMNS: &str = "id, host, pid, mountpoint, version, started_ns, heartbeat_ns";

impl SessionInfo {
    pub fn from_row(r: &scylla::value::Row) -> Option<SessionInfo> {
        Some(SessionInfo {
            id: r.text(0)?,
            host: r.text(1).unwrap_or_default(),
            pid: r.int(2).unwrap_or(0),
            mountpoint: r.text(3).unwrap_or_default(),
            version: r.text(4).unwrap_or_default(),
            started_ns: r.big(5).unwrap_or(0),
            heartbeat_ns: r.big(6).unwrap_or(0),
        })
    }
}

impl Store {
    /// Writes (or renews) a session row and the holds of `held`, all with
    /// `ttl` seconds to live, in one parallel round trip.
    pub fn renew_session(&self, s: &SessionInfo, held: &[u64], ttl: i32) -> Result<()> {
        let ks = &self.ks;
        let ps = self.prepared(&format!(
            "INSERT INTO {ks}.sessions (owner, environment, id, host, pid, mountpoint, version, \
             started_ns, heartbeat_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?"
        ))?;
        let v = (
            self.owner,
            &self.env,
            &s.id,
            &s.host,
            s.pid,
            &s.mountpoint,
            &s.version,
            s.started_ns,
            s.heartbeat_ns,
            ttl,
        );
        self.exec(&ps, v)?;
        for ino in held {
            self.hold(&s.id, *ino, ttl)?;
        }
        Ok(())
    }

    /// Records that session `id` keeps inode `ino` (open, with no name).
    pub fn hold(&self, id: &str, ino: u64, ttl: i32) -> Result<()> {
        let ks = &self.ks;
        let ps = self.prepared(&format!(
            "INSERT INTO {ks}.holds (owner, environment, ino, session) VALUES (?, ?, ?, ?) \
             USING TTL ?"
        ))?;
        self.exec(&ps, (self.owner, &self.env, ino as i64, id, ttl))?;
        Ok(())
    }

    /// Drops session `id`'s hold on `ino`.
    pub fn unhold(&self, id: &str, ino: u64) -> Result<()> {
        let ks = &self.ks;
        let ps = self.prepared(&format!(
            "DELETE FROM {ks}.holds WHERE owner = ? AND environment = ? AND ino = ? AND session = ?"
        ))?;
        self.exec(&ps, (self.owner, &self.env, ino as i64, id))?;
        Ok(())
    }

    /// Removes a session's row (a clean unmount); its holds expire.
    pub fn end_session(&self, id: &str) -> Result<()> {
        let ks = &self.ks;
        let ps = self.prepared(&format!(
            "DELETE FROM {ks}.sessions WHERE owner = ? AND environment = ? AND id = ?"
        ))?;
        self.exec(&ps, (self.owner, &self.env, id))?;
        Ok(())
    }

    /// The live sessions of this store's volume.
    pub fn sessions(&self) -> Result<Vec<SessionInfo>> {
        let ks = &self.ks;
        let ps = self.prepared(&format!(
            "SELECT {SESSION_COLUMNS} FROM {ks}.sessions WHERE owner = ? AND environment = ?"
        ))?;
        let rows = self.exec(&ps, (self.owner, &self.env))?;
        Ok(rows.iter().filter_map(SessionInfo::from_row).collect())
    }
}
