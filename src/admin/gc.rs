//! `cassfs gc`: removes what nothing uses any more, beside live mounts.
//!
//! 1. Inodes no entry names, that no live session holds, unchanged for the
//!    grace period: with a conditional delete, only while the inode is
//!    unchanged since it was read (its ctime) and, for a file, its recorded
//!    names are empty, for a directory, its parent is the one read (then
//!    its entries go). Partial inode rows (updates that reached a
//!    deleted inode) go too. The inodes deleted leave the volume's usage
//!    counters.
//! 2. Block references whose inode is gone or no longer uses the block,
//!    deleted with the grace period's cutoff as timestamp: a reference
//!    written since (a commit under way) survives the delete.
//! 3. Blocks with no reference, written before the cutoff. Commits write
//!    a block's reference before the block (and check reused blocks after
//!    writing theirs), so gc checks the references again right before and
//!    right after deleting a block (the delete carries the write time it
//!    read, so a block written again since survives) and puts the block
//!    back if a reference appeared meanwhile.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;

use super::snapshot::{self, RefRec, VolumeRows};
use super::{CmdResult, Progress, Scope, VolumeKey};
use crate::store::usage::{self, Usage};
use crate::store::{val, Columns, Hash, Keyspace, Values};

pub struct GcOptions {
    pub scope: Scope,
    pub dry_run: bool,
    pub grace: Duration,
}

#[derive(Default, Debug)]
pub struct GcReport {
    pub inodes: u64,
    pub partial_inodes: u64,
    pub refs: u64,
    pub blocks: u64,
    pub block_bytes: u64,
    pub spared_held: u64,
    pub spared_young: u64,
    pub left_for_fsck: u64,
    pub rows_read: u64,
}

type Stmt = (String, Values);

pub fn run(ks: &Keyspace, opts: &GcOptions, json_out: bool) -> CmdResult<()> {
    let started = Instant::now();
    let progress = Progress::new("gc");
    let r = collect(ks, opts, &progress)?;
    progress.done();
    let secs = started.elapsed();
    let verb = if opts.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let text = format!(
        "gc: {verb} {} inodes, {} partial inode rows, {} block references, {} blocks \
         ({} bytes); spared {} held open, {} younger than {} s; {} left for fsck; \
         {} rows read in {:.1} s ({:.0} rows/s)",
        r.inodes,
        r.partial_inodes,
        r.refs,
        r.blocks,
        r.block_bytes,
        r.spared_held,
        r.spared_young,
        opts.grace.as_secs(),
        r.left_for_fsck,
        r.rows_read,
        secs.as_secs_f64(),
        super::per_sec(r.rows_read, secs)
    );
    let doc = json!({
        "dry_run": opts.dry_run, "inodes": r.inodes, "partial_inodes": r.partial_inodes,
        "refs": r.refs, "blocks": r.blocks, "block_bytes": r.block_bytes,
        "spared_held": r.spared_held, "spared_young": r.spared_young,
        "left_for_fsck": r.left_for_fsck, "rows_read": r.rows_read,
        "seconds": secs.as_secs_f64(),
    });
    super::print(json_out, &doc, &text);
    Ok(())
}

pub fn collect(ks: &Keyspace, opts: &GcOptions, progress: &Progress) -> CmdResult<GcReport> {
    // Blocks are shared by the environments of an owner: gc works on whole
    // owners.
    let scope = Scope {
        owner: opts.scope.owner,
        environment: None,
    };
    let cutoff_ns = super::now_ns() - opts.grace.as_nanos().min(i64::MAX as u128) as i64;
    let mut report = GcReport::default();
    let live = snapshot::sessions(ks, &scope)?;
    let held = snapshot::holds(ks, &scope, &live)?;
    let mut rows = snapshot::volume_rows(ks, &scope, progress)?;
    report.rows_read += rows
        .values()
        .map(|v| (v.inodes.len() + v.entries.len()) as u64)
        .sum::<u64>();
    progress.stage("removing unnamed inodes");
    let no_holds = HashSet::new();
    for (key, v) in rows.iter_mut() {
        let held = held.get(key).unwrap_or(&no_holds);
        let gone = unnamed_inodes(ks, key, v, held, cutoff_ns, opts.dry_run, &mut report)?;
        for ino in gone {
            if let Some(i) = v.inodes.get_mut(&ino) {
                i.kind = None;
            }
        }
    }
    let refs = snapshot::refs(ks, &scope, progress)?;
    report.rows_read += refs.len() as u64;
    progress.stage("removing block references");
    let kept = stale_refs(ks, &rows, refs, cutoff_ns, opts.dry_run, &mut report)?;
    progress.stage("removing blocks");
    unreferenced_blocks(
        ks,
        &scope,
        &kept,
        cutoff_ns,
        opts.dry_run,
        progress,
        &mut report,
    )?;
    Ok(report)
}

/// Deletes the volume's unnamed inodes (step 1); the inodes deleted.
fn unnamed_inodes(
    ks: &Keyspace,
    (owner, env): &VolumeKey,
    v: &VolumeRows,
    held: &HashSet<u64>,
    cutoff_ns: i64,
    dry_run: bool,
    report: &mut GcReport,
) -> CmdResult<Vec<u64>> {
    let k = ks.name();
    let named = v.named();
    let key = |ino: u64| vec![val::big(*owner), val::text(env), val::big(ino as i64)];
    let mut stmts: Vec<(u64, Stmt)> = Vec::new();
    let mut after: Vec<Stmt> = Vec::new();
    for i in v.inodes.values() {
        if i.kind.is_none() {
            report.partial_inodes += 1;
            let cql =
                format!("DELETE FROM {k}.inodes WHERE owner = ? AND environment = ? AND ino = ?");
            if !dry_run {
                after.push((cql, key(i.ino)));
            }
            continue;
        }
        if named.contains(&i.ino) {
            continue;
        }
        if held.contains(&i.ino) {
            report.spared_held += 1;
            continue;
        }
        if i.ctime_ns > cutoff_ns {
            report.spared_young += 1;
            continue;
        }
        // Conditional on the inode being unchanged since it was read (a
        // rename writes ctime): the scan of entries is not one instant.
        let mut v = key(i.ino);
        v.push(or_null(i.ctime_ns));
        let cql = if i.is_dir() {
            v.push(or_null(i.parent as i64));
            let cql = format!(
                "DELETE FROM {k}.inodes WHERE owner = ? AND environment = ? AND ino = ? \
                 IF ctime_ns = ? AND parent = ?"
            );
            (cql, v)
        } else if i.names.is_empty() {
            let cql = format!(
                "DELETE FROM {k}.inodes WHERE owner = ? AND environment = ? AND ino = ? \
                 IF ctime_ns = ? AND names = null"
            );
            (cql, v)
        } else {
            // Records names no entry has: a link count for fsck to settle.
            report.left_for_fsck += 1;
            continue;
        };
        stmts.push((i.ino, cql));
    }
    if dry_run {
        report.inodes += stmts.len() as u64;
        return Ok(Vec::new());
    }
    let (inos, stmts): (Vec<u64>, Vec<Stmt>) = stmts.into_iter().unzip();
    let results = ks.run_all(stmts).map_err(|e| e.to_string())?;
    let mut gone = Vec::new();
    for (ino, rows) in inos.into_iter().zip(results) {
        if rows.first().and_then(|r| r.boolean(0)) == Some(true) {
            gone.push(ino);
            if v.inodes.get(&ino).is_some_and(|i| i.is_dir()) {
                after.extend(dir_rows(k, owner, env, ino, v.inodes[&ino].gen));
            }
        }
    }
    report.inodes += gone.len() as u64;
    ks.run_all(after).map_err(|e| e.to_string())?;
    let freed = gone
        .iter()
        .filter_map(|ino| v.inodes.get(ino))
        .fold(Usage::default(), |u, i| u.plus(i.usage()));
    let key = (*owner, env.clone());
    usage::add_usage(ks, &key, freed.negated()).map_err(|e| e.to_string())?;
    Ok(gone)
}

/// A column value read as 0 when null, bound back as null when 0 (for
/// conditions on columns no real row leaves at 0).
pub fn or_null(v: i64) -> Option<crate::store::CqlValue> {
    (v != 0).then_some(crate::store::CqlValue::BigInt(v))
}

/// Statements deleting a removed directory's entries (every generation)
/// and its removal count.
pub fn dir_rows(k: &str, owner: &i64, env: &str, ino: u64, gen: i64) -> Vec<Stmt> {
    let mut out: Vec<Stmt> = (0..=gen.max(0))
        .map(|g| {
            (
                format!(
                    "DELETE FROM {k}.dir_entries WHERE owner = ? AND environment = ? \
                     AND parent = ? AND gen = ?"
                ),
                vec![
                    val::big(*owner),
                    val::text(env),
                    val::big(ino as i64),
                    val::big(g),
                ],
            )
        })
        .collect();
    out.push((
        format!("DELETE FROM {k}.churn WHERE owner = ? AND environment = ? AND parent = ?"),
        vec![val::big(*owner), val::text(env), val::big(ino as i64)],
    ));
    out
}

/// Deletes references of inodes that are gone or do not use the block
/// (step 2); the (owner, block) pairs still referenced.
fn stale_refs(
    ks: &Keyspace,
    rows: &std::collections::HashMap<VolumeKey, VolumeRows>,
    refs: Vec<RefRec>,
    cutoff_ns: i64,
    dry_run: bool,
    report: &mut GcReport,
) -> CmdResult<HashSet<(i64, Hash)>> {
    let k = ks.name();
    let mut kept = HashSet::new();
    let mut stmts = Vec::new();
    for r in refs {
        let inode = rows
            .get(&(r.owner, r.environment.clone()))
            .and_then(|v| v.inodes.get(&r.ino))
            .filter(|i| i.kind.is_some());
        let used = inode.is_some_and(|i| i.blocks.contains(&r.hash));
        let young = r.at_ns.is_some_and(|t| t > cutoff_ns);
        if used || young {
            kept.insert((r.owner, r.hash));
            continue;
        }
        report.refs += 1;
        // Only what was written before the cutoff goes: a reference
        // written again since survives.
        stmts.push((
            format!(
                "DELETE FROM {k}.block_refs USING TIMESTAMP ? WHERE owner = ? AND hash = ? \
                 AND environment = ? AND ino = ?"
            ),
            vec![
                val::big(cutoff_ns / 1000),
                val::big(r.owner),
                val::blob(&r.hash),
                val::text(&r.environment),
                val::big(r.ino as i64),
            ],
        ));
    }
    if !dry_run {
        ks.run_all(stmts).map_err(|e| e.to_string())?;
    }
    Ok(kept)
}

/// Deletes blocks no reference names (step 3).
fn unreferenced_blocks(
    ks: &Keyspace,
    scope: &Scope,
    kept: &HashSet<(i64, Hash)>,
    cutoff_ns: i64,
    dry_run: bool,
    progress: &Progress,
    report: &mut GcReport,
) -> CmdResult<()> {
    let k = ks.name();
    let mut candidates: Vec<(i64, Hash)> = Vec::new();
    // Keys only: the write time (and data) is read for candidates alone.
    let cql = format!("SELECT DISTINCT owner, hash FROM {k}.blocks");
    let mut read = 0u64;
    ks.scan(&cql, Vec::new(), &mut |r| {
        progress.tick();
        read += 1;
        let (Some(owner), Some(hash)) = (r.big(0), r.blob(1)) else {
            return Ok(());
        };
        let Ok(hash) = <Hash>::try_from(hash.as_slice()) else {
            return Ok(());
        };
        if scope.has_owner(owner) && !kept.contains(&(owner, hash)) {
            candidates.push((owner, hash));
        }
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    report.rows_read += read;
    for chunk in candidates.chunks(256) {
        delete_blocks(ks, chunk, cutoff_ns, dry_run, report)?;
    }
    Ok(())
}

/// The reference check, delete and re-check of step 3, for some blocks.
fn delete_blocks(
    ks: &Keyspace,
    blocks: &[(i64, Hash)],
    cutoff_ns: i64,
    dry_run: bool,
    report: &mut GcReport,
) -> CmdResult<()> {
    let k = ks.name();
    let key = |(o, h): &(i64, Hash)| vec![val::big(*o), val::blob(h)];
    let refs_of = |b: &[(i64, Hash)]| -> CmdResult<Vec<bool>> {
        let q = format!("SELECT ino FROM {k}.block_refs WHERE owner = ? AND hash = ? LIMIT 1");
        let rows = ks
            .run_all(b.iter().map(|x| (q.clone(), key(x))).collect())
            .map_err(|e| e.to_string())?;
        Ok(rows.iter().map(|r| !r.is_empty()).collect())
    };
    let q = format!("SELECT data, writetime(data) FROM {k}.blocks WHERE owner = ? AND hash = ?");
    let data = ks
        .run_all(blocks.iter().map(|x| (q.clone(), key(x))).collect())
        .map_err(|e| e.to_string())?;
    let referenced = refs_of(blocks)?;
    let mut doomed = Vec::new();
    for ((b, rows), has_ref) in blocks.iter().zip(data).zip(referenced) {
        let Some(row) = rows.first() else { continue };
        let (Some(bytes), Some(wt)) = (row.blob(0), row.big(1)) else {
            continue;
        };
        if !has_ref && wt < cutoff_ns / 1000 {
            doomed.push((*b, bytes, wt));
        }
    }
    report.blocks += doomed.len() as u64;
    report.block_bytes += doomed.iter().map(|d| d.1.len() as u64).sum::<u64>();
    if dry_run || doomed.is_empty() {
        return Ok(());
    }
    let del = format!("DELETE FROM {k}.blocks USING TIMESTAMP ? WHERE owner = ? AND hash = ?");
    let stmts = doomed
        .iter()
        .map(|(b, _, wt)| (del.clone(), [vec![val::big(*wt)], key(b)].concat()))
        .collect();
    ks.run_all(stmts).map_err(|e| e.to_string())?;
    // A commit that referenced one of them meanwhile gets it back.
    let pairs: Vec<(i64, Hash)> = doomed.iter().map(|d| d.0).collect();
    let again = refs_of(&pairs)?;
    let ins = format!("INSERT INTO {k}.blocks (owner, hash, data) VALUES (?, ?, ?)");
    let mut restore = Vec::new();
    for ((b, bytes, _), has_ref) in doomed.iter().zip(again) {
        if has_ref {
            restore.push((ins.clone(), [key(b), vec![val::blob(bytes)]].concat()));
            report.blocks -= 1;
            report.block_bytes -= bytes.len() as u64;
        }
    }
    ks.run_all(restore).map_err(|e| e.to_string())?;
    Ok(())
}
