//! `cassfs rm-volume`: deletes every row of a volume (refused while it has
//! live sessions, unless forced), its quota too, and brings its usage
//! counters to zero. Content blocks are shared by an owner's
//! environments and are left to `cassfs gc`. The volume row goes last, so
//! an interrupted removal is still listed and can be run again.

use std::collections::HashSet;
use std::time::Instant;

use serde_json::json;

use super::snapshot::{self, VolumeRows};
use super::{CmdResult, Progress, Scope, VolumeKey};
use crate::store::usage::{self, Usage};
use crate::store::{val, Event, Keyspace, Values, FEED_BUCKET_SECS, FEED_RETENTION_SECS};

type Stmt = (String, Values);

pub fn run(ks: &Keyspace, key: &VolumeKey, force: bool, json_out: bool) -> CmdResult<()> {
    let started = Instant::now();
    let scope = Scope {
        owner: Some(key.0),
        environment: Some(key.1.clone()),
    };
    let live = snapshot::sessions(ks, &scope)?;
    let n = live.get(key).map_or(0, Vec::len);
    if n > 0 && !force {
        return Err(format!(
            "volume ({}, {}) has {n} live session(s) (see cassfs status); unmount them or use --force",
            key.0, key.1
        ));
    }
    let progress = Progress::new("rm-volume");
    let rows = snapshot::volume_rows(ks, &scope, &progress)?;
    let empty = VolumeRows::default();
    let v = rows.get(key).unwrap_or(&empty);
    let stmts = remove_statements(ks, key, v, &progress)?;
    let count = stmts.len();
    progress.stage("deleting");
    ks.run_all(stmts).map_err(|e| e.to_string())?;
    // Counters are brought to zero, not deleted (see store/usage.rs).
    usage::set_usage(ks, key, Usage::default()).map_err(|e| e.to_string())?;
    usage::remove_limits(ks, key).map_err(|e| e.to_string())?;
    let k = ks.name();
    ks.run(
        &format!("DELETE FROM {k}.volumes WHERE owner = ? AND environment = ?"),
        vec![val::big(key.0), val::text(&key.1)],
    )
    .map_err(|e| e.to_string())?;
    progress.done();
    let secs = started.elapsed().as_secs_f64();
    let text = format!(
        "rm-volume: removed volume ({}, {}): {} inodes, {} entries, {count} deletes in {secs:.1} s; \
         its content blocks are left to cassfs gc",
        key.0,
        key.1,
        v.inodes.len(),
        v.entries.len()
    );
    let doc = json!({
        "owner": key.0, "environment": key.1, "inodes": v.inodes.len(),
        "entries": v.entries.len(), "deletes": count, "seconds": secs,
    });
    super::print(json_out, &doc, &text);
    Ok(())
}

/// The deletes that remove a volume's rows (all but its volume row).
pub fn remove_statements(
    ks: &Keyspace,
    (owner, env): &VolumeKey,
    v: &VolumeRows,
    progress: &Progress,
) -> CmdResult<Vec<Stmt>> {
    let k = ks.name();
    let vol = || vec![val::big(*owner), val::text(env)];
    let mut out: Vec<Stmt> = Vec::new();
    let mut dirs: HashSet<(u64, i64)> = v.entries.iter().map(|e| (e.parent, e.gen)).collect();
    for i in v.inodes.values() {
        if i.is_dir() || i.gen > 0 {
            dirs.insert((i.ino, i.gen));
        }
        out.push((
            format!("DELETE FROM {k}.inodes WHERE owner = ? AND environment = ? AND ino = ?"),
            [vol(), vec![val::big(i.ino as i64)]].concat(),
        ));
    }
    for (d, gen) in dirs {
        out.extend(super::gc::dir_rows(k, owner, env, d, gen));
    }
    let scope = Scope {
        owner: Some(*owner),
        environment: Some(env.clone()),
    };
    for r in snapshot::refs(ks, &scope, progress)? {
        if r.environment == *env {
            out.push((
                format!(
                    "DELETE FROM {k}.block_refs WHERE owner = ? AND hash = ? AND environment = ? \
                     AND ino = ?"
                ),
                vec![
                    val::big(*owner),
                    val::blob(&r.hash),
                    val::text(env),
                    val::big(r.ino as i64),
                ],
            ));
        }
    }
    for table in ["renames", "removals", "sessions", "holds"] {
        out.push((
            format!("DELETE FROM {k}.{table} WHERE owner = ? AND environment = ?"),
            vol(),
        ));
    }
    let now = Event::bucket(super::now_ns());
    let span = FEED_RETENTION_SECS / FEED_BUCKET_SECS + 1;
    for b in now - span..=now + 1 {
        out.push((
            format!("DELETE FROM {k}.changes WHERE owner = ? AND environment = ? AND bucket = ?"),
            [vol(), vec![val::big(b)]].concat(),
        ));
    }
    Ok(out)
}
