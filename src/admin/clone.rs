//! `cassfs clone`: a new environment of an owner with the same tree as
//! another, copying metadata only: content blocks are stored once per
//! owner, so the clone references the source's blocks and no block is
//! copied (files of at most 64 KiB live inline in their inode row and are
//! copied with it).
//!
//! The source's tree is walked from the root (reads in proportion to the
//! volume, not to the keyspace). Each inode row is read once and holds one committed version of its
//! file, so a clone of a volume being written holds committed versions
//! only. Entries whose inode was not read (created meanwhile) are left
//! out, link counts are computed from the entries copied, the target's
//! usage counters are set to what was copied, and its volume row is
//! written last: a clone that fails midway leaves rows that
//! `cassfs fsck` reports and `cassfs rm-volume` removes.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use serde_json::json;

use super::snapshot::{self, EntryRec};
use super::{CmdResult, Progress, Scope, VolumeKey};
use crate::store::usage::{self, Usage};
use crate::store::{name_key, val, Columns, CqlValue, Keyspace, Kind, Values, INODE_COLUMNS};

type Stmt = (String, Values);

pub struct CloneOptions {
    pub owner: i64,
    pub from: String,
    pub to: String,
    pub force: bool,
}

#[derive(Default)]
struct Written {
    rows: u64,
    bytes: u64,
}

impl Written {
    fn add(&mut self, v: &Values) {
        self.rows += 1;
        self.bytes += v.iter().map(value_len).sum::<u64>();
    }
}

fn value_len(v: &Option<CqlValue>) -> u64 {
    match v {
        None => 0,
        Some(CqlValue::Blob(b)) => b.len() as u64,
        Some(CqlValue::Text(t)) => t.len() as u64,
        Some(CqlValue::Int(_)) => 4,
        Some(CqlValue::Set(s)) | Some(CqlValue::List(s)) => {
            s.iter().map(|x| value_len(&Some(x.clone()))).sum()
        }
        Some(CqlValue::Map(m)) => m
            .iter()
            .map(|(a, b)| value_len(&Some(a.clone())) + value_len(&Some(b.clone())))
            .sum(),
        Some(_) => 8,
    }
}

pub fn run(ks: &Keyspace, o: &CloneOptions, json_out: bool) -> CmdResult<()> {
    let started = Instant::now();
    if o.from == o.to {
        return Err("clone: --from and --to name the same environment".into());
    }
    let src: VolumeKey = (o.owner, o.from.clone());
    let dst: VolumeKey = (o.owner, o.to.clone());
    let owner_scope = Scope {
        owner: Some(o.owner),
        environment: None,
    };
    let volumes = snapshot::volumes(ks, &owner_scope)?;
    let next_ino = volumes
        .iter()
        .find(|(k, _)| *k == src)
        .map(|_| next_ino(ks, &src))
        .ok_or_else(|| format!("clone: there is no volume ({}, {})", o.owner, o.from))??;
    let progress = Progress::new("clone");
    prepare_target(ks, &dst, o.force, &progress)?;
    progress.stage("walking the tree");
    let walked = snapshot::walk_entries(ks, &src, &progress)?;
    let named: HashSet<u64> = walked.iter().map(|e| e.ino).chain([1]).collect();
    let mut written = Written::default();
    progress.stage("copying inodes");
    let (found, reads) = read_inodes(ks, &src, &named)?;
    if !found.contains(&1) {
        return Err(format!(
            "clone: volume ({}, {}) has no root",
            o.owner, o.from
        ));
    }
    // Entries whose inode was not read (removed meanwhile) are left out.
    let entries: Vec<&EntryRec> = walked.iter().filter(|e| found.contains(&e.ino)).collect();
    let links = links(&entries);
    let counted = usage_of(&reads);
    let (refs, inodes) = inode_statements(ks, &dst, reads, &links, &progress, &mut written);
    let files = inodes.len() as u64;
    // References before the rows that use them, as a commit does.
    ks.run_all(refs).map_err(|e| e.to_string())?;
    ks.run_all(inodes).map_err(|e| e.to_string())?;
    let k = ks.name();
    progress.stage("copying entries");
    let mut stmts = Vec::new();
    for e in &entries {
        let v = vec![
            val::big(o.owner),
            val::text(&o.to),
            val::big(e.parent as i64),
            val::blob(&e.name),
            val::big(e.ino as i64),
            val::int(e.kind),
        ];
        written.add(&v);
        let cql = format!(
            "INSERT INTO {k}.dir_entries (owner, environment, parent, gen, name, ino, kind, \
             moving_from) VALUES (?, ?, ?, 0, ?, ?, ?, 0x)"
        );
        stmts.push((cql, v));
    }
    ks.run_all(stmts).map_err(|e| e.to_string())?;
    usage::set_usage(ks, &dst, counted).map_err(|e| e.to_string())?;
    let v = vec![
        val::big(o.owner),
        val::text(&o.to),
        val::big(next_ino),
        val::big(super::now_ns()),
    ];
    written.add(&v);
    ks.run(
        &format!(
            "INSERT INTO {k}.volumes (owner, environment, next_ino, created_ns) VALUES (?, ?, ?, ?)"
        ),
        v,
    )
    .map_err(|e| e.to_string())?;
    progress.done();
    let secs = started.elapsed();
    let text = format!(
        "clone: ({0}, {1}) -> ({0}, {2}): {files} inodes, {3} entries, {4} rows and {5} bytes \
         written (no block copied) in {6:.1} s ({7:.0} inodes/s)",
        o.owner,
        o.from,
        o.to,
        entries.len(),
        written.rows,
        written.bytes,
        secs.as_secs_f64(),
        super::per_sec(files, secs)
    );
    let doc = json!({
        "owner": o.owner, "from": o.from, "to": o.to, "inodes": files,
        "entries": entries.len(), "rows_written": written.rows,
        "bytes_written": written.bytes, "seconds": secs.as_secs_f64(),
    });
    super::print(json_out, &doc, &text);
    Ok(())
}

/// What the inode rows read count for in the usage counters (rows are
/// `owner, environment, ino, INODE_COLUMNS`: kind and size at 3 and 8).
fn usage_of(rows: &[crate::store::Row]) -> Usage {
    rows.iter().fold(Usage::default(), |u, r| {
        let kind = r.int(3).and_then(Kind::from_i32).unwrap_or(Kind::Fifo);
        let size = r.big(8).unwrap_or(0).max(0) as u64;
        u.plus(Usage::of(kind, size))
    })
}

/// The source's inode allocator, so the clone hands out new numbers only.
fn next_ino(ks: &Keyspace, (owner, env): &VolumeKey) -> CmdResult<i64> {
    let rows = ks
        .run(
            &format!(
                "SELECT next_ino FROM {}.volumes WHERE owner = ? AND environment = ?",
                ks.name()
            ),
            vec![val::big(*owner), val::text(env)],
        )
        .map_err(|e| e.to_string())?;
    Ok(rows.first().and_then(|r| r.big(0)).unwrap_or(2))
}

/// Refuses a target that has files, unless forced (then it is removed
/// first); a target with live sessions is always refused.
fn prepare_target(
    ks: &Keyspace,
    dst: &VolumeKey,
    force: bool,
    progress: &Progress,
) -> CmdResult<()> {
    let scope = Scope {
        owner: Some(dst.0),
        environment: Some(dst.1.clone()),
    };
    if snapshot::sessions(ks, &scope)?
        .get(dst)
        .is_some_and(|s| !s.is_empty())
    {
        return Err(format!(
            "clone: volume ({}, {}) is mounted (see cassfs status); unmount it first",
            dst.0, dst.1
        ));
    }
    let rows = snapshot::volume_rows(ks, &scope, progress)?;
    let Some(v) = rows.get(dst) else {
        return Ok(());
    };
    if !v.entries.is_empty() && !force {
        return Err(format!(
            "clone: volume ({}, {}) is not empty ({} entries); use --force to replace it",
            dst.0,
            dst.1,
            v.entries.len()
        ));
    }
    let stmts = super::rmvol::remove_statements(ks, dst, v, progress)?;
    ks.run_all(stmts).map_err(|e| e.to_string())?;
    Ok(())
}

/// Each copied inode's names (files) or subdirectories and parent
/// (directories), from the entries copied.
struct Links {
    names: HashMap<u64, Vec<CqlValue>>,
    subdirs: HashMap<u64, Vec<CqlValue>>,
    parent: HashMap<u64, u64>,
}

fn links(entries: &[&EntryRec]) -> Links {
    let mut l = Links {
        names: HashMap::new(),
        subdirs: HashMap::new(),
        parent: HashMap::new(),
    };
    for e in entries {
        if e.kind == crate::store::Kind::Dir as i32 {
            l.subdirs
                .entry(e.parent)
                .or_default()
                .push(CqlValue::BigInt(e.ino as i64));
            l.parent.insert(e.ino, e.parent);
        } else {
            l.names
                .entry(e.ino)
                .or_default()
                .push(CqlValue::Blob(name_key(e.parent, &e.name)));
        }
    }
    l
}

/// The inode rows of `inos` (every column), and which of them exist.
fn read_inodes(
    ks: &Keyspace,
    src: &VolumeKey,
    inos: &HashSet<u64>,
) -> CmdResult<(HashSet<u64>, Vec<crate::store::Row>)> {
    let k = ks.name();
    let cql = format!(
        "SELECT owner, environment, ino, {INODE_COLUMNS} FROM {k}.inodes WHERE owner = ? \
         AND environment = ? AND ino = ?"
    );
    let reads = inos
        .iter()
        .map(|ino| {
            (
                cql.clone(),
                vec![val::big(src.0), val::text(&src.1), val::big(*ino as i64)],
            )
        })
        .collect();
    let rows: Vec<_> = ks
        .run_all(reads)
        .map_err(|e| e.to_string())?
        .into_iter()
        .flatten()
        .filter(|r| r.int(3).is_some()) // `kind`: a complete row
        .collect();
    let found = rows
        .iter()
        .filter_map(|r| r.big(2))
        .map(|i| i as u64)
        .collect();
    Ok((found, rows))
}

/// Inserts of the copied inodes into the target, every column as read
/// but the links (from the entries) and the generation (entries are
/// copied into generation 0); null columns are left out (a null written
/// is a tombstone). With them, the block references of the content read.
fn inode_statements(
    ks: &Keyspace,
    dst: &VolumeKey,
    rows: Vec<crate::store::Row>,
    links: &Links,
    progress: &Progress,
    written: &mut Written,
) -> (Vec<Stmt>, Vec<Stmt>) {
    let k = ks.name();
    let columns: Vec<&str> = INODE_COLUMNS.split(',').map(str::trim).collect();
    let mut out = Vec::new();
    let mut refs = Vec::new();
    for r in rows {
        progress.tick();
        let Some(ino) = r.big(2) else { continue };
        let ino = ino as u64;
        let mut names = vec!["owner", "environment", "ino"];
        let mut values = vec![val::big(dst.0), val::text(&dst.1), val::big(ino as i64)];
        for (c, v) in columns.iter().zip(r.columns.into_iter().skip(3)) {
            let v = match *c {
                "gen" => None,
                "names" => links.names.get(&ino).map(|n| CqlValue::Set(n.clone())),
                "subdirs" => links.subdirs.get(&ino).map(|n| CqlValue::Set(n.clone())),
                "parent" => links
                    .parent
                    .get(&ino)
                    .map(|p| CqlValue::BigInt(*p as i64))
                    .or(v),
                _ => v,
            };
            if let (&"blocks", Some(CqlValue::Blob(b))) = (c, &v) {
                refs.extend(block_refs(k, dst, ino, b, written));
            }
            if let Some(v) = v {
                names.push(c);
                values.push(Some(v));
            }
        }
        let marks = vec!["?"; names.len()].join(", ");
        let cql = format!(
            "INSERT INTO {k}.inodes ({}) VALUES ({marks})",
            names.join(", ")
        );
        written.add(&values);
        out.push((cql, values));
    }
    (refs, out)
}

/// The target's references to the distinct blocks of a block list.
fn block_refs(k: &str, dst: &VolumeKey, ino: u64, blocks: &[u8], w: &mut Written) -> Vec<Stmt> {
    let distinct: HashSet<&[u8]> = blocks
        .chunks_exact(32)
        .filter(|h| h.iter().any(|b| *b != 0))
        .collect();
    let cql = format!(
        "INSERT INTO {k}.block_refs (owner, hash, environment, ino, at) VALUES (?, ?, ?, ?, ?)"
    );
    distinct
        .into_iter()
        .map(|h| {
            let v = vec![
                val::big(dst.0),
                val::blob(h),
                val::text(&dst.1),
                val::big(ino as i64),
                val::big(super::now_ns()),
            ];
            w.add(&v);
            (cql.clone(), v)
        })
        .collect()
}
