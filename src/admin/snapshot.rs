//! What the operator commands read: the volumes of a keyspace, their
//! sessions and holds, and each volume's inodes and current directory
//! entries, by paged scans of whole tables (filtered to a [`Scope`]). A
//! snapshot is not taken at one instant: commands that change rows from it
//! re-check each row with a conditional write or a fresh read, and spare
//! rows younger than a grace period.

use std::collections::{HashMap, HashSet};

use super::{CmdResult, Progress, Scope, VolumeKey};
use crate::sessions::SESSION_TTL;
use crate::store::{Columns, Hash, Keyspace, Row, SessionInfo, HOLE, SESSION_COLUMNS};

/// An inode row as the commands need it.
#[derive(Clone, Debug)]
pub struct InodeRec {
    pub ino: u64,
    /// `None`: a partial row (an update that reached a deleted inode).
    pub kind: Option<i32>,
    pub parent: u64,
    pub size: u64,
    pub ctime_ns: i64,
    pub names: Vec<Vec<u8>>,
    pub subdirs: Vec<u64>,
    pub blocks: Vec<Hash>,
    pub gen: i64,
}

impl InodeRec {
    pub fn is_dir(&self) -> bool {
        self.kind == Some(crate::store::Kind::Dir as i32)
    }

    /// What it counts for in its volume's usage counters (nothing for a
    /// partial row).
    pub fn usage(&self) -> crate::store::Usage {
        match self.kind {
            None => crate::store::Usage::default(),
            Some(k) => match crate::store::Kind::from_i32(k) {
                Some(kind) => crate::store::Usage::of(kind, self.size),
                None => crate::store::Usage::of(crate::store::Kind::Fifo, 0),
            },
        }
    }

    /// The distinct stored blocks of its content (no holes).
    pub fn distinct_blocks(&self) -> HashSet<Hash> {
        self.blocks.iter().copied().filter(|h| *h != HOLE).collect()
    }

    /// The length of block `i` of the content.
    pub fn block_len(&self, i: usize) -> u64 {
        let bs = crate::store::BLOCK_SIZE;
        self.size.saturating_sub(i as u64 * bs).min(bs)
    }
}

/// A live directory entry of a directory's current generation.
#[derive(Clone, Debug)]
pub struct EntryRec {
    pub parent: u64,
    pub gen: i64,
    pub name: Vec<u8>,
    pub ino: u64,
    pub kind: i32,
}

/// One volume's rows.
#[derive(Default)]
pub struct VolumeRows {
    pub inodes: HashMap<u64, InodeRec>,
    pub entries: Vec<EntryRec>,
}

impl VolumeRows {
    /// The inodes named by some entry, and the root.
    pub fn named(&self) -> HashSet<u64> {
        let mut s: HashSet<u64> = self.entries.iter().map(|e| e.ino).collect();
        s.insert(1);
        s
    }

    /// Whether an inode row is complete (not deleted).
    pub fn alive(&self, ino: u64) -> bool {
        self.inodes.get(&ino).is_some_and(|i| i.kind.is_some())
    }
}

/// The volumes rows of a keyspace, within a scope.
pub fn volumes(ks: &Keyspace, scope: &Scope) -> CmdResult<Vec<(VolumeKey, i64)>> {
    let cql = format!(
        "SELECT owner, environment, created_ns FROM {}.volumes",
        ks.name()
    );
    let mut out = Vec::new();
    ks.scan(&cql, Vec::new(), &mut |r| {
        if let (Some(o), Some(e)) = (r.big(0), r.text(1)) {
            if scope.contains(o, &e) {
                out.push(((o, e), r.big(2).unwrap_or(0)));
            }
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    out.sort();
    Ok(out)
}

/// The live sessions of every volume in scope (rows whose heartbeat is
/// older than the session TTL are dead, whatever their TTL says).
pub fn sessions(ks: &Keyspace, scope: &Scope) -> CmdResult<HashMap<VolumeKey, Vec<SessionInfo>>> {
    let cql = format!(
        "SELECT owner, environment, {SESSION_COLUMNS} FROM {}.sessions",
        ks.name()
    );
    let oldest = super::now_ns() - i64::from(SESSION_TTL) * 1_000_000_000;
    let mut out: HashMap<VolumeKey, Vec<SessionInfo>> = HashMap::new();
    ks.scan(&cql, Vec::new(), &mut |mut r| {
        let (Some(o), Some(e)) = (r.big(0), r.text(1)) else {
            return Ok(());
        };
        r.columns.drain(0..2);
        if let Some(s) = SessionInfo::from_row(&r) {
            if scope.contains(o, &e) && s.heartbeat_ns >= oldest {
                out.entry((o, e)).or_default().push(s);
            }
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    Ok(out)
}

/// The inodes held by a live session, per volume.
pub fn holds(
    ks: &Keyspace,
    scope: &Scope,
    live: &HashMap<VolumeKey, Vec<SessionInfo>>,
) -> CmdResult<HashMap<VolumeKey, HashSet<u64>>> {
    let cql = format!(
        "SELECT owner, environment, ino, session FROM {}.holds",
        ks.name()
    );
    let mut out: HashMap<VolumeKey, HashSet<u64>> = HashMap::new();
    ks.scan(&cql, Vec::new(), &mut |r| {
        let (Some(o), Some(e), Some(ino), Some(s)) = (r.big(0), r.text(1), r.big(2), r.text(3))
        else {
            return Ok(());
        };
        let key = (o, e);
        let alive = live.get(&key).is_some_and(|v| v.iter().any(|x| x.id == s));
        if scope.contains(key.0, &key.1) && alive {
            out.entry(key).or_default().insert(ino as u64);
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    Ok(out)
}

fn inode_from_row(r: &Row) -> Option<InodeRec> {
    let blocks = r
        .blob(9)
        .unwrap_or_default()
        .chunks_exact(32)
        .filter_map(|c| <Hash>::try_from(c).ok())
        .collect();
    let names = r
        .items(7)
        .into_iter()
        .filter_map(|v| match v {
            crate::store::CqlValue::Blob(b) => Some(b),
            _ => None,
        })
        .collect();
    let subdirs = r
        .items(8)
        .into_iter()
        .filter_map(|v| match v {
            crate::store::CqlValue::BigInt(i) => Some(i as u64),
            _ => None,
        })
        .collect();
    Some(InodeRec {
        ino: r.big(2)? as u64,
        kind: r.int(3),
        parent: r.big(4).unwrap_or(0) as u64,
        size: r.big(5).unwrap_or(0).max(0) as u64,
        ctime_ns: r.big(6).unwrap_or(0),
        names,
        subdirs,
        blocks,
        gen: r.big(10).unwrap_or(0),
    })
}

/// The volume of a row whose first columns are (owner, environment), if
/// it is in scope.
fn volume_of(r: &Row, scope: &Scope) -> Option<VolumeKey> {
    let (o, e) = (r.big(0)?, r.text(1)?);
    scope.contains(o, &e).then_some((o, e))
}

/// Every volume's inodes and current entries, within a scope.
pub fn volume_rows(
    ks: &Keyspace,
    scope: &Scope,
    progress: &Progress,
) -> CmdResult<HashMap<VolumeKey, VolumeRows>> {
    let mut vols: HashMap<VolumeKey, VolumeRows> = HashMap::new();
    progress.stage("reading inodes");
    let cql = format!(
        "SELECT owner, environment, ino, kind, parent, size, ctime_ns, names, subdirs, blocks, \
         gen FROM {}.inodes",
        ks.name()
    );
    ks.scan(&cql, Vec::new(), &mut |r| {
        progress.tick();
        let Some(key) = volume_of(&r, scope) else {
            return Ok(());
        };
        if let Some(i) = inode_from_row(&r) {
            vols.entry(key).or_default().inodes.insert(i.ino, i);
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    progress.stage("reading directory entries");
    let cql = format!(
        "SELECT owner, environment, parent, gen, name, ino, kind FROM {}.dir_entries",
        ks.name()
    );
    ks.scan(&cql, Vec::new(), &mut |r| {
        progress.tick();
        let Some(key) = volume_of(&r, scope) else {
            return Ok(());
        };
        let (Some(parent), Some(gen), Some(name)) = (r.big(2), r.big(3), r.blob(4)) else {
            return Ok(());
        };
        // Sentinels (empty name) and rows left without an inode are not
        // entries.
        let (Some(ino), Some(kind)) = (r.big(5), r.int(6)) else {
            return Ok(());
        };
        if name.is_empty() || ino < 0 {
            return Ok(());
        }
        let v = vols.entry(key).or_default();
        let current = v.inodes.get(&(parent as u64)).map_or(0, |d| d.gen);
        if gen == current {
            v.entries.push(EntryRec {
                parent: parent as u64,
                gen,
                name,
                ino: ino as u64,
                kind,
            });
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    Ok(vols)
}

/// A block reference row.
#[derive(Clone, Debug)]
pub struct RefRec {
    pub owner: i64,
    pub hash: Hash,
    pub environment: String,
    pub ino: u64,
    /// When it was written (`None`: by a version that did not say).
    pub at_ns: Option<i64>,
}

/// Every block reference of the owners in scope.
pub fn refs(ks: &Keyspace, scope: &Scope, progress: &Progress) -> CmdResult<Vec<RefRec>> {
    progress.stage("reading block references");
    let cql = format!(
        "SELECT owner, hash, environment, ino, at FROM {}.block_refs",
        ks.name()
    );
    let mut out = Vec::new();
    ks.scan(&cql, Vec::new(), &mut |r| {
        progress.tick();
        let (Some(owner), Some(hash), Some(environment), Some(ino)) =
            (r.big(0), r.blob(1), r.text(2), r.big(3))
        else {
            return Ok(());
        };
        let Ok(hash) = <Hash>::try_from(hash.as_slice()) else {
            return Ok(());
        };
        if scope.has_owner(owner) {
            out.push(RefRec {
                owner,
                hash,
                environment,
                ino: ino as u64,
                at_ns: r.big(4),
            });
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    Ok(out)
}

/// A volume's current entries, walking its tree from the root: reads in
/// proportion to the volume, not to the keyspace (what `clone` needs; a
/// walk cannot find what is unreachable, a scan can).
pub fn walk_entries(
    ks: &Keyspace,
    (owner, env): &VolumeKey,
    progress: &Progress,
) -> CmdResult<Vec<EntryRec>> {
    let k = ks.name();
    let gen_q =
        format!("SELECT gen FROM {k}.inodes WHERE owner = ? AND environment = ? AND ino = ?");
    let list_q = format!(
        "SELECT name, ino, kind FROM {k}.dir_entries WHERE owner = ? AND environment = ? \
         AND parent = ? AND gen = ?"
    );
    let vol = || vec![crate::store::val::big(*owner), crate::store::val::text(env)];
    let mut out = Vec::new();
    let mut seen = HashSet::from([1u64]);
    let mut level = vec![1u64];
    while !level.is_empty() {
        let reads = level
            .iter()
            .map(|d| {
                (
                    gen_q.clone(),
                    [vol(), vec![crate::store::val::big(*d as i64)]].concat(),
                )
            })
            .collect();
        let gens = ks.run_all(reads).map_err(|e| e.to_string())?;
        let mut next = Vec::new();
        for (dir, rows) in level.iter().zip(gens) {
            let gen = rows.first().and_then(|r| r.big(0)).unwrap_or(0);
            let v = [
                vol(),
                vec![
                    crate::store::val::big(*dir as i64),
                    crate::store::val::big(gen),
                ],
            ]
            .concat();
            ks.scan(&list_q, v, &mut |r| {
                progress.tick();
                let (Some(name), Some(ino), Some(kind)) = (r.blob(0), r.big(1), r.int(2)) else {
                    return Ok(());
                };
                if name.is_empty() || ino < 0 {
                    return Ok(());
                }
                let ino = ino as u64;
                if kind == crate::store::Kind::Dir as i32 && seen.insert(ino) {
                    next.push(ino);
                }
                out.push(EntryRec {
                    parent: *dir,
                    gen,
                    name,
                    ino,
                    kind,
                });
                Ok(())
            })
            .map_err(|e| e.to_string())?;
        }
        level = next;
    }
    Ok(out)
}
