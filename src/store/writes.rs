//! The writes the filesystem makes, as CQL: each [`Write`] becomes one
//! statement text and its bound values, so the same writes can run in
//! parallel ([`super::Store::apply`]) or as one logged batch
//! ([`super::Store::apply_atomic`]).
//!
//! Attribute changes are narrow: a [`Change`] sets only the columns it
//! names, and link counts change by adding or removing set elements, never
//! by writing a number read earlier. No write rewrites a row from a cached
//! copy.

use scylla::value::CqlValue;

use super::event::Event;
use super::records::content_columns;
use super::usage::{self, Usage};
use super::{Dentry, Inode, Kind};

/// The key of one name of a non-directory in `inodes.names`: the parent
/// inode (8 bytes, big-endian) and the name.
pub fn name_key(parent: u64, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + name.len());
    k.extend_from_slice(&parent.to_be_bytes());
    k.extend_from_slice(name);
    k
}

/// Adds or removes one element of a set column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetOp<T> {
    Add(T),
    Remove(T),
}

/// The columns of one inode a write changes; `None` leaves a column alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime_ns: Option<i64>,
    pub mtime_ns: Option<i64>,
    pub ctime_ns: Option<i64>,
    pub parent: Option<u64>,
    /// A name of a non-directory ([`name_key`]).
    pub names: Option<SetOp<Vec<u8>>>,
    /// A subdirectory of a directory.
    pub subdirs: Option<SetOp<u64>>,
}

impl Change {
    /// New mtime and ctime (a directory whose entries changed).
    pub fn times(now: i64) -> Change {
        Change {
            mtime_ns: Some(now),
            ctime_ns: Some(now),
            ..Change::default()
        }
    }

    /// A new ctime only.
    pub fn ctime(now: i64) -> Change {
        Change {
            ctime_ns: Some(now),
            ..Change::default()
        }
    }

    pub fn with_names(mut self, op: SetOp<Vec<u8>>) -> Change {
        self.names = Some(op);
        self
    }

    pub fn with_subdirs(mut self, op: SetOp<u64>) -> Change {
        self.subdirs = Some(op);
        self
    }

    pub fn is_empty(&self) -> bool {
        *self == Change::default()
    }
}

/// One write of the filesystem.
#[derive(Clone, Debug)]
pub enum Write {
    /// A row of the change feed.
    Event(Event),
    /// A new inode row (the only write that sets `kind`), with its names.
    PutInode(Inode, Vec<Vec<u8>>),
    DeleteInode(u64),
    /// New content of an inode (size, version, data or block list, mtime,
    /// ctime) in one row write: readers see the old content or the new.
    Commit(Inode),
    /// Changes some columns of an inode.
    Update(u64, Change),
    PutDentry(u64, Dentry),
    /// Removes an entry (parent, name) that names an inode.
    DeleteDentry(u64, Vec<u8>, u64),
    /// Clears the record of a finished rename on an entry.
    ClearMoving(u64, Vec<u8>),
    /// Journals a rename to a new name (id, new parent, new name).
    Journal(i64, u64, Vec<u8>),
    /// Removes a rename's journal row.
    Unjournal(i64),
    /// Records the removal a worker of a mount is making (holder, parent,
    /// name, inode, is a directory), replacing that worker's previous one.
    Removing(String, u64, Vec<u8>, u64, bool),
    /// Adds to the volume's usage counters (`store/usage.rs`): sent beside
    /// the write it accounts for, never in a batch with other writes nor
    /// sent twice (so never through `Store::apply_atomic`).
    Usage(Usage),
}

/// A statement text and its values (`None` binds NULL).
pub(super) type Cql = (String, Vec<Option<CqlValue>>);

/// The inode columns an INSERT of a new inode writes.
const INSERT_COLUMNS: [&str; 18] = [
    "kind",
    "mode",
    "uid",
    "gid",
    "rdev",
    "size",
    "atime_ns",
    "mtime_ns",
    "ctime_ns",
    "parent",
    "version",
    "target",
    "inline_data",
    "blocks",
    "xattrs",
    "names",
    "owner",
    "environment",
];

fn big(v: u64) -> Option<CqlValue> {
    Some(CqlValue::BigInt(v as i64))
}

fn int(v: u32) -> Option<CqlValue> {
    Some(CqlValue::Int(v as i32))
}

fn blob(v: &[u8]) -> Option<CqlValue> {
    Some(CqlValue::Blob(v.to_vec()))
}

impl Write {
    /// The directory whose entries this write changes, if any.
    pub(super) fn entry_dir(&self) -> Option<u64> {
        match self {
            Write::PutDentry(p, _) | Write::DeleteDentry(p, ..) | Write::ClearMoving(p, _) => {
                Some(*p)
            }
            _ => None,
        }
    }

    /// The statement and its values; `gen` gives a directory's generation.
    pub(super) fn to_cql(&self, ks: &str, owner: i64, env: &str, gen: &dyn Fn(u64) -> i64) -> Cql {
        let key = vec![
            Some(CqlValue::BigInt(owner)),
            Some(CqlValue::Text(env.into())),
        ];
        match self {
            Write::Event(e) if !e.unlocked.is_empty() => (
                format!(
                    "INSERT INTO {ks}.changes (owner, environment, bucket, at, id, origin, \
                     unlocked) VALUES (?, ?, ?, ?, ?, ?, ?)"
                ),
                [
                    key,
                    event_key(e),
                    vec![
                        Some(CqlValue::List(
                            e.unlocked.iter().map(|i| CqlValue::BigInt(*i as i64)).collect(),
                        )),
                    ],
                ]
                .concat(),
            ),
            Write::Event(e) => (
                format!(
                    "INSERT INTO {ks}.changes (owner, environment, bucket, at, id, origin, names, \
                     inos, versions) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                [
                    key,
                    event_key(e),
                    vec![
                        Some(CqlValue::List(
                            e.names.iter().map(|n| CqlValue::Blob(n.clone())).collect(),
                        )),
                        Some(CqlValue::List(
                            e.inos.iter().map(|i| CqlValue::BigInt(*i as i64)).collect(),
                        )),
                        Some(CqlValue::Map(
                            e.versions
                                .iter()
                                .map(|(i, v)| (CqlValue::BigInt(*i as i64), CqlValue::BigInt(*v)))
                                .collect(),
                        )),
                    ],
                ]
                .concat(),
            ),
            Write::PutInode(i, names) => insert_inode(ks, owner, env, i, names),
            Write::DeleteInode(ino) => (
                format!("DELETE FROM {ks}.inodes WHERE owner = ? AND environment = ? AND ino = ?"),
                [key, vec![big(*ino)]].concat(),
            ),
            Write::Commit(i) => {
                let (inline_data, blocks) = content_columns(&i.content);
                (
                    format!(
                        "UPDATE {ks}.inodes SET size = ?, version = ?, inline_data = ?, \
                         blocks = ?, mtime_ns = ?, ctime_ns = ? WHERE owner = ? \
                         AND environment = ? AND ino = ?"
                    ),
                    [
                        vec![
                            Some(CqlValue::BigInt(i.size as i64)),
                            Some(CqlValue::BigInt(i.version)),
                            inline_data.map(CqlValue::Blob),
                            blocks.map(CqlValue::Blob),
                            Some(CqlValue::BigInt(i.mtime_ns)),
                            Some(CqlValue::BigInt(i.ctime_ns)),
                        ],
                        key,
                        vec![big(i.ino)],
                    ]
                    .concat(),
                )
            }
            Write::Update(ino, c) => update_inode(ks, key, *ino, c),
            Write::PutDentry(parent, d) => (
                format!(
                    "INSERT INTO {ks}.dir_entries (owner, environment, parent, gen, name, ino, kind, \
                     moving_from) VALUES (?, ?, ?, ?, ?, ?, ?, 0x)"
                ),
                [
                    key,
                    vec![
                        big(*parent),
                        Some(CqlValue::BigInt(gen(*parent))),
                        blob(&d.name),
                        big(d.ino),
                        int(d.kind as u32),
                    ],
                ]
                .concat(),
            ),
            Write::Journal(id, parent, name) => (
                format!(
                    "INSERT INTO {ks}.renames (owner, environment, id, parent, name) \
                     VALUES (?, ?, ?, ?, ?)"
                ),
                [
                    key,
                    vec![Some(CqlValue::BigInt(*id)), big(*parent), blob(name)],
                ]
                .concat(),
            ),
            Write::Removing(holder, parent, name, ino, dir) => (
                format!(
                    "INSERT INTO {ks}.removals (owner, environment, holder, parent, name, ino, \
                     dir) VALUES (?, ?, ?, ?, ?, ?, ?)"
                ),
                [
                    key,
                    vec![
                        Some(CqlValue::Text(holder.clone())),
                        big(*parent),
                        blob(name),
                        big(*ino),
                        Some(CqlValue::Boolean(*dir)),
                    ],
                ]
                .concat(),
            ),
            Write::Usage(u) => (usage::add_cql(ks), usage::add_values(*u, owner, env)),
            Write::Unjournal(id) => (
                format!("DELETE FROM {ks}.renames WHERE owner = ? AND environment = ? AND id = ?"),
                [key, vec![Some(CqlValue::BigInt(*id))]].concat(),
            ),
            // Cleared to empty, not null: a null is a tombstone.
            Write::ClearMoving(parent, name) => (
                format!(
                    "UPDATE {ks}.dir_entries SET moving_from = 0x WHERE owner = ? \
                     AND environment = ? AND parent = ? AND gen = ? AND name = ?"
                ),
                [key, vec![big(*parent), Some(CqlValue::BigInt(gen(*parent))), blob(name)]].concat(),
            ),
            Write::DeleteDentry(parent, name, _) => (
                format!(
                    "DELETE FROM {ks}.dir_entries WHERE owner = ? AND environment = ? \
                     AND parent = ? AND gen = ? AND name = ?"
                ),
                [key, vec![big(*parent), Some(CqlValue::BigInt(gen(*parent))), blob(name)]].concat(),
            ),
        }
    }
}

fn insert_inode(ks: &str, owner: i64, env: &str, i: &Inode, names: &[Vec<u8>]) -> Cql {
    let (inline_data, blocks) = content_columns(&i.content);
    let set = |v: Vec<CqlValue>| (!v.is_empty()).then_some(CqlValue::Set(v));
    let xattrs: Vec<(CqlValue, CqlValue)> = i
        .xattrs
        .iter()
        .map(|(k, v)| (CqlValue::Blob(k.clone()), CqlValue::Blob(v.clone())))
        .collect();
    let values = vec![
        int(i.kind as u32),
        int(i.perm),
        int(i.uid),
        int(i.gid),
        int(i.rdev),
        big(i.size),
        Some(CqlValue::BigInt(i.atime_ns)),
        Some(CqlValue::BigInt(i.mtime_ns)),
        Some(CqlValue::BigInt(i.ctime_ns)),
        big(i.parent),
        Some(CqlValue::BigInt(i.version)),
        (i.kind == Kind::Symlink).then(|| CqlValue::Blob(i.target.clone())),
        inline_data.map(CqlValue::Blob),
        blocks.map(CqlValue::Blob),
        (!xattrs.is_empty()).then_some(CqlValue::Map(xattrs)),
        set(names.iter().map(|n| CqlValue::Blob(n.clone())).collect()),
        Some(CqlValue::BigInt(owner)),
        Some(CqlValue::Text(env.into())),
        big(i.ino),
    ];
    let cols = INSERT_COLUMNS.join(", ");
    let marks = vec!["?"; INSERT_COLUMNS.len() + 1].join(", ");
    (
        format!("INSERT INTO {ks}.inodes ({cols}, ino) VALUES ({marks})"),
        values,
    )
}

fn update_inode(ks: &str, key: Vec<Option<CqlValue>>, ino: u64, c: &Change) -> Cql {
    let mut sets: Vec<String> = Vec::new();
    let mut values: Vec<Option<CqlValue>> = Vec::new();
    let mut plain = |col: &str, v: Option<CqlValue>| {
        sets.push(format!("{col} = ?"));
        values.push(v);
    };
    if let Some(v) = c.mode {
        plain("mode", int(v));
    }
    if let Some(v) = c.uid {
        plain("uid", int(v));
    }
    if let Some(v) = c.gid {
        plain("gid", int(v));
    }
    for (col, v) in [
        ("atime_ns", c.atime_ns),
        ("mtime_ns", c.mtime_ns),
        ("ctime_ns", c.ctime_ns),
    ] {
        if let Some(v) = v {
            plain(col, Some(CqlValue::BigInt(v)));
        }
    }
    if let Some(v) = c.parent {
        plain("parent", big(v));
    }
    let mut set_op = |col: &str, add: bool, v: CqlValue| {
        let op = if add { '+' } else { '-' };
        sets.push(format!("{col} = {col} {op} ?"));
        values.push(Some(CqlValue::Set(vec![v])));
    };
    match &c.names {
        Some(SetOp::Add(k)) => set_op("names", true, CqlValue::Blob(k.clone())),
        Some(SetOp::Remove(k)) => set_op("names", false, CqlValue::Blob(k.clone())),
        None => {}
    }
    match c.subdirs {
        Some(SetOp::Add(d)) => set_op("subdirs", true, CqlValue::BigInt(d as i64)),
        Some(SetOp::Remove(d)) => set_op("subdirs", false, CqlValue::BigInt(d as i64)),
        None => {}
    }
    values.extend(key);
    values.push(big(ino));
    (
        format!(
            "UPDATE {ks}.inodes SET {} WHERE owner = ? AND environment = ? AND ino = ?",
            sets.join(", ")
        ),
        values,
    )
}

/// An event's columns after the volume: bucket, at, id, origin.
fn event_key(e: &Event) -> Vec<Option<CqlValue>> {
    vec![
        Some(CqlValue::BigInt(Event::bucket(e.at))),
        Some(CqlValue::BigInt(e.at)),
        Some(CqlValue::BigInt(e.id)),
        Some(CqlValue::Text(e.origin.clone())),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_keys_start_with_the_parent() {
        assert_eq!(name_key(1, b"ab"), vec![0, 0, 0, 0, 0, 0, 0, 1, b'a', b'b']);
    }

    #[test]
    fn updates_name_only_their_columns() {
        let c = Change::times(5).with_subdirs(SetOp::Add(9));
        let (cql, values) = Write::Update(3, c).to_cql("ks", 1, "e", &|_| 0);
        assert_eq!(
            cql,
            "UPDATE ks.inodes SET mtime_ns = ?, ctime_ns = ?, subdirs = subdirs + ? \
             WHERE owner = ? AND environment = ? AND ino = ?"
        );
        assert_eq!(values.len(), 6);
    }
}
