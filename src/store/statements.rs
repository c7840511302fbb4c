//! The prepared statements of a [`Store`](super::Store), prepared once
//! when it opens: on inodes, blocks and the volume row ([`Statements`]),
//! on directory entries ([`EntryStatements`], used by `store/entries.rs`)
//! and on directory generations ([`GenStatements`], `store/generations.rs`).

use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency as CqlConsistency;

use super::conn::Conn;
use super::records::INODE_COLUMNS;
use super::Result;

/// Directories of at most this many entries can be read whole in one
/// request ([`Store::list_small_dir`](super::Store::list_small_dir)).
pub const SMALL_DIR: usize = 1000;

/// Seconds a directory's removal mark (its sentinel while an rmdir is under
/// way) lives unless sealed: the bound on how long an rmdir killed midway
/// keeps the directory from gaining entries.
pub const REMOVAL_MARK_TTL: i32 = 60;

/// The sentinel's `ino` in a generation that was rolled.
pub(super) const FROZEN: i64 = -2;

/// The prepared statements of one store.
pub(super) struct Statements {
    pub(super) get_inode: PreparedStatement,
    pub(super) get_version: PreparedStatement,
    pub(super) set_xattr: PreparedStatement,
    pub(super) remove_xattr: PreparedStatement,
    pub(super) insert_block: PreparedStatement,
    pub(super) get_block: PreparedStatement,
    pub(super) insert_ref: PreparedStatement,
    pub(super) block_exists: PreparedStatement,
    pub(super) delete_ref: PreparedStatement,
    pub(super) create_volume: PreparedStatement,
    pub(super) read_next_ino: PreparedStatement,
    pub(super) cas_next_ino: PreparedStatement,
    pub(super) take_mover: PreparedStatement,
    pub(super) drop_mover: PreparedStatement,
    pub(super) delete_unnamed: PreparedStatement,
    pub(super) delete_last_name: PreparedStatement,
    pub(super) add_name: PreparedStatement,
    pub(super) read_changes: PreparedStatement,
    pub(super) pending_renames: PreparedStatement,
    pub(super) removals: PreparedStatement,
    pub(super) delete_dir_under: PreparedStatement,
}

impl Statements {
    pub(super) fn prepare(c: &Conn, ks: &str) -> Result<Statements> {
        let key = "owner = ? AND environment = ?";
        let ino_key = format!("{key} AND ino = ?");
        let p = |q: String| c.prepare(q);
        let mut read_next = p(format!("SELECT next_ino FROM {ks}.volumes WHERE {key}"))?;
        read_next.set_consistency(CqlConsistency::Serial);
        Ok(Statements {
            get_inode: p(format!(
                "SELECT {INODE_COLUMNS} FROM {ks}.inodes WHERE {ino_key}"
            ))?,
            get_version: p(format!(
                "SELECT kind, version FROM {ks}.inodes WHERE {ino_key}"
            ))?,
            set_xattr: p(format!(
                "UPDATE {ks}.inodes SET xattrs[?] = ?, ctime_ns = ? WHERE {ino_key}"
            ))?,
            remove_xattr: p(format!(
                "UPDATE {ks}.inodes SET xattrs = xattrs - ?, ctime_ns = ? WHERE {ino_key}"
            ))?,
            insert_block: p(format!(
                "INSERT INTO {ks}.blocks (owner, hash, data) VALUES (?, ?, ?)"
            ))?,
            get_block: p(format!(
                "SELECT data FROM {ks}.blocks WHERE owner = ? AND hash = ?"
            ))?,
            insert_ref: p(format!(
                "INSERT INTO {ks}.block_refs (owner, hash, environment, ino, at) \
                 VALUES (?, ?, ?, ?, ?)"
            ))?,
            block_exists: p(format!(
                "SELECT hash FROM {ks}.blocks WHERE owner = ? AND hash = ?"
            ))?,
            delete_ref: p(format!(
                "DELETE FROM {ks}.block_refs WHERE owner = ? AND hash = ? AND environment = ? \
                 AND ino = ?"
            ))?,
            create_volume: p(format!(
                "INSERT INTO {ks}.volumes (owner, environment, next_ino, created_ns) \
                 VALUES (?, ?, 2, ?) IF NOT EXISTS"
            ))?,
            read_next_ino: read_next,
            cas_next_ino: p(format!(
                "UPDATE {ks}.volumes SET next_ino = ? WHERE {key} IF next_ino = ?"
            ))?,
            take_mover: p(format!(
                "UPDATE {ks}.volumes USING TTL ? SET mover = ? WHERE {key} IF mover = null"
            ))?,
            drop_mover: p(format!(
                "UPDATE {ks}.volumes SET mover = null WHERE {key} IF mover = ?"
            ))?,
            delete_last_name: p(format!(
                "DELETE FROM {ks}.inodes WHERE {ino_key} IF names = ?"
            ))?,
            add_name: p(format!(
                "UPDATE {ks}.inodes SET names = names + ?, ctime_ns = ? WHERE {ino_key} IF kind = ?"
            ))?,
            read_changes: p(format!(
                "SELECT at, id, origin, names, inos, versions, unlocked FROM {ks}.changes \
                 WHERE {key} AND bucket = ? AND at > ?"
            ))?,
            removals: p(format!(
                "SELECT parent, name, ino, dir FROM {ks}.removals WHERE {key}"
            ))?,
            pending_renames: p(format!(
                "SELECT id, parent, name FROM {ks}.renames WHERE {key}"
            ))?,
            delete_unnamed: p(format!(
                "DELETE FROM {ks}.inodes WHERE {ino_key} IF names = null"
            ))?,
            delete_dir_under: p(format!(
                "DELETE FROM {ks}.inodes WHERE {ino_key} IF parent = ?"
            ))?,
        })
    }
}

/// The statements on `dir_entries` of one store.
pub(super) struct EntryStatements {
    /// The sentinel and one name.
    pub(super) get: PreparedStatement,
    /// The same at SERIAL consistency: a conditional write of the name
    /// still under way (its process died) is settled first.
    pub(super) get_serial: PreparedStatement,
    pub(super) list: PreparedStatement,
    pub(super) small: PreparedStatement,
    /// Entries after a name, at most a number of them.
    pub(super) page: PreparedStatement,
    /// The sentinel alone.
    pub(super) sentinel: PreparedStatement,
    pub(super) create: PreparedStatement,
    pub(super) replace: PreparedStatement,
    pub(super) remove: PreparedStatement,
    /// Batch guards: the sentinel is live / is not frozen.
    pub(super) live: PreparedStatement,
    pub(super) unfrozen: PreparedStatement,
    pub(super) mark: PreparedStatement,
    pub(super) seal: PreparedStatement,
    pub(super) clear: PreparedStatement,
}

impl EntryStatements {
    pub(super) fn prepare(c: &Conn, ks: &str) -> Result<EntryStatements> {
        let key = "owner = ? AND environment = ? AND parent = ? AND gen = ?";
        let cols = "name, ino, kind, moving_from";
        let p = |q: String| c.prepare(q);
        let sentinel = |cond: &str| {
            format!("UPDATE {ks}.dir_entries SET kind = null WHERE {key} AND name = ? IF {cond}")
        };
        let get = format!("SELECT {cols} FROM {ks}.dir_entries WHERE {key} AND name IN (?, ?)");
        let mut get_serial = p(get.clone())?;
        get_serial.set_consistency(scylla::statement::Consistency::Serial);
        Ok(EntryStatements {
            get: p(get)?,
            get_serial,
            list: p(format!("SELECT {cols} FROM {ks}.dir_entries WHERE {key}"))?,
            small: p(format!(
                "SELECT {cols} FROM {ks}.dir_entries WHERE {key} LIMIT {}",
                SMALL_DIR + 2
            ))?,
            page: p(format!(
                "SELECT {cols} FROM {ks}.dir_entries WHERE {key} AND name > ? LIMIT ?"
            ))?,
            sentinel: p(format!(
                "SELECT {cols} FROM {ks}.dir_entries WHERE {key} AND name = ?"
            ))?,
            create: p(format!(
                "INSERT INTO {ks}.dir_entries (owner, environment, parent, gen, name, ino, kind, \
                 moving_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
            ))?,
            replace: p(format!(
                "UPDATE {ks}.dir_entries SET ino = ?, kind = ?, moving_from = ? \
                 WHERE {key} AND name = ? IF ino = ?"
            ))?,
            remove: p(format!(
                "DELETE FROM {ks}.dir_entries WHERE {key} AND name = ? IF ino = ?"
            ))?,
            live: p(sentinel("ino = null"))?,
            unfrozen: p(sentinel("ino IN (null, -1)"))?,
            mark: p(format!(
                "UPDATE {ks}.dir_entries USING TTL {REMOVAL_MARK_TTL} SET ino = -1 \
                 WHERE {key} AND name = ? IF ino = null"
            ))?,
            seal: p(format!(
                "UPDATE {ks}.dir_entries SET ino = -1 WHERE {key} AND name = ? IF ino IN (null, -1)"
            ))?,
            clear: p(format!(
                "UPDATE {ks}.dir_entries SET ino = null WHERE {key} AND name = ? IF ino = -1"
            ))?,
        })
    }
}

/// The statements of generations of one store.
pub(super) struct GenStatements {
    pub(super) read_gen: PreparedStatement,
    pub(super) sentinel: PreparedStatement,
    pub(super) freeze: PreparedStatement,
    pub(super) copy: PreparedStatement,
    pub(super) roll_at: PreparedStatement,
    pub(super) set_gen: PreparedStatement,
    pub(super) drop_old: PreparedStatement,
    pub(super) churn_add: PreparedStatement,
    pub(super) churn_read: PreparedStatement,
}

impl GenStatements {
    pub(super) fn prepare(c: &Conn, ks: &str) -> Result<GenStatements> {
        let vol = "owner = ? AND environment = ?";
        let key = format!("{vol} AND parent = ? AND gen = ?");
        let p = |q: String| c.prepare(q);
        Ok(GenStatements {
            read_gen: p(format!(
                "SELECT kind, gen FROM {ks}.inodes WHERE {vol} AND ino = ?"
            ))?,
            sentinel: p(format!(
                "SELECT ino, roll_at, WRITETIME(ino) FROM {ks}.dir_entries WHERE {key} AND name = ?"
            ))?,
            freeze: p(format!(
                "UPDATE {ks}.dir_entries SET ino = {FROZEN} WHERE {key} AND name = ? IF ino = null"
            ))?,
            copy: p(format!(
                "INSERT INTO {ks}.dir_entries (owner, environment, parent, gen, name, ino, kind, \
                 moving_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?"
            ))?,
            roll_at: p(format!(
                "UPDATE {ks}.dir_entries USING TIMESTAMP ? SET roll_at = ? WHERE {key} AND name = ?"
            ))?,
            set_gen: p(format!(
                "UPDATE {ks}.inodes USING TIMESTAMP ? SET gen = ? WHERE {vol} AND ino = ?"
            ))?,
            drop_old: p(format!(
                "DELETE FROM {ks}.dir_entries WHERE {key} AND name > ?"
            ))?,
            churn_add: p(format!(
                "UPDATE {ks}.churn SET removed = removed + ? WHERE {vol} AND parent = ?"
            ))?,
            churn_read: p(format!(
                "SELECT removed FROM {ks}.churn WHERE {vol} AND parent = ?"
            ))?,
        })
    }
}
