//! `cassfs fsck`: checks that each volume's rows form a filesystem, and
//! with `--repair` fixes what can be fixed without guessing.
//!
//! Found (each a kind of [`Problem`]): names pointing at missing inodes,
//! inodes with no name, link counts (recorded names of a file,
//! subdirectories of a directory) that disagree with the entries, entries
//! whose kind disagrees with their inode, content blocks referenced but
//! missing, missing block references, directories unreachable from the
//! root (a cycle), rows of volumes that have no volume row, and usage
//! counters that disagree with the inodes scanned.
//!
//! Repaired: dangling names are removed (a conditional delete of that
//! entry), recorded names, subdirectories, parents and entry kinds are set
//! from the entries, missing references are written, unnamed inodes past
//! the grace period that no live session holds are deleted (as gc does),
//! and the usage counters are set to the scan (less what the repairs
//! deleted) by adding the difference.
//! Missing blocks and unreachable directories are reported only.
//!
//! Exit status: 0 clean, 1 problems found and all repaired, 4 problems left.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use serde_json::json;

use super::snapshot::{self, VolumeRows};
use super::{CmdResult, Progress, Scope, VolumeKey};
use crate::store::usage::{self, Usage};
use crate::store::{name_key, val, CqlValue, Hash, Keyspace, Kind, Values};

pub struct FsckOptions {
    pub scope: Scope,
    pub repair: bool,
    pub grace: Duration,
}

/// What fsck can find.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Problem {
    DanglingName,
    UnnamedInode,
    LinkCount,
    EntryKind,
    MissingBlock,
    MissingRef,
    Unreachable,
    UnknownVolume,
    Usage,
}

impl Problem {
    pub fn label(self) -> &'static str {
        match self {
            Problem::DanglingName => "names pointing at missing inodes",
            Problem::UnnamedInode => "inodes with no name",
            Problem::LinkCount => "link counts that disagree with names",
            Problem::EntryKind => "entries whose kind disagrees with the inode",
            Problem::MissingBlock => "blocks referenced but missing",
            Problem::MissingRef => "block references missing",
            Problem::Unreachable => "directories unreachable from the root (cycles)",
            Problem::UnknownVolume => "volumes with rows but no volume row",
            Problem::Usage => "usage counters that disagree with the inodes",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Problem::DanglingName => "dangling_names",
            Problem::UnnamedInode => "unnamed_inodes",
            Problem::LinkCount => "link_counts",
            Problem::EntryKind => "entry_kinds",
            Problem::MissingBlock => "missing_blocks",
            Problem::MissingRef => "missing_refs",
            Problem::Unreachable => "unreachable_dirs",
            Problem::UnknownVolume => "unknown_volumes",
            Problem::Usage => "usage_counters",
        }
    }
}

#[derive(Default)]
pub struct FsckReport {
    pub found: BTreeMap<Problem, u64>,
    pub repaired: BTreeMap<Problem, u64>,
    /// One line per problem, for the text output.
    pub details: Vec<String>,
    pub rows_read: u64,
}

impl FsckReport {
    fn found(&mut self, p: Problem, detail: String) {
        *self.found.entry(p).or_default() += 1;
        if self.details.len() < 1000 {
            self.details.push(detail);
        }
    }

    fn repaired(&mut self, p: Problem) {
        *self.repaired.entry(p).or_default() += 1;
    }

    pub fn total_found(&self) -> u64 {
        self.found.values().sum()
    }

    pub fn total_repaired(&self) -> u64 {
        self.repaired.values().sum()
    }
}

type Stmt = (String, Values);

/// Runs fsck and prints its report; the exit status (0, 1 or 4).
pub fn run(ks: &Keyspace, opts: &FsckOptions, json_out: bool) -> CmdResult<u8> {
    let started = Instant::now();
    let progress = Progress::new("fsck");
    let r = check(ks, opts, &progress)?;
    progress.done();
    let secs = started.elapsed();
    let (found, fixed) = (r.total_found(), r.total_repaired());
    let mut text: Vec<String> = r.details.clone();
    for (p, n) in &r.found {
        let f = r.repaired.get(p).copied().unwrap_or(0);
        text.push(format!("  {n} {} ({f} repaired)", p.label()));
    }
    text.push(format!(
        "fsck: {found} problem(s), {fixed} repaired; {} rows read in {:.1} s ({:.0} rows/s)",
        r.rows_read,
        secs.as_secs_f64(),
        super::per_sec(r.rows_read, secs)
    ));
    let counts = |m: &BTreeMap<Problem, u64>| {
        serde_json::Value::Object(
            m.iter()
                .map(|(p, n)| (p.key().to_string(), json!(n)))
                .collect(),
        )
    };
    let doc = json!({
        "found": counts(&r.found), "repaired": counts(&r.repaired),
        "problems": found, "fixed": fixed, "details": r.details,
        "rows_read": r.rows_read, "seconds": secs.as_secs_f64(),
    });
    super::print(json_out, &doc, &text.join("\n"));
    Ok(match (found, fixed) {
        (0, _) => 0,
        (f, x) if x >= f => 1,
        _ => 4,
    })
}

pub fn check(ks: &Keyspace, opts: &FsckOptions, progress: &Progress) -> CmdResult<FsckReport> {
    let mut report = FsckReport::default();
    let volumes: HashSet<VolumeKey> = snapshot::volumes(ks, &opts.scope)?
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let live = snapshot::sessions(ks, &opts.scope)?;
    let held = snapshot::holds(ks, &opts.scope, &live)?;
    let rows = snapshot::volume_rows(ks, &opts.scope, progress)?;
    let refs = snapshot::refs(ks, &opts.scope, progress)?;
    report.rows_read += refs.len() as u64;
    let counters = usage::all_usage(ks).map_err(|e| e.to_string())?;
    let mut have_refs: HashSet<(i64, String, u64, Hash)> = HashSet::new();
    for r in refs {
        if opts.scope.contains(r.owner, &r.environment) {
            if !volumes.contains(&(r.owner, r.environment.clone()))
                && !rows.contains_key(&(r.owner, r.environment.clone()))
            {
                report.found(
                    Problem::UnknownVolume,
                    format!(
                        "block reference of volume ({}, {}), which has no volume row",
                        r.owner, r.environment
                    ),
                );
            }
            have_refs.insert((r.owner, r.environment, r.ino, r.hash));
        }
    }
    let cutoff_ns = super::now_ns() - opts.grace.as_nanos().min(i64::MAX as u128) as i64;
    let mut keys: Vec<&VolumeKey> = rows.keys().collect();
    keys.sort();
    for key in keys {
        let v = &rows[key];
        report.rows_read += (v.inodes.len() + v.entries.len()) as u64;
        if !volumes.contains(key) {
            report.found(
                Problem::UnknownVolume,
                format!(
                    "volume ({}, {}) has rows but no volume row (cassfs rm-volume removes them)",
                    key.0, key.1
                ),
            );
            continue;
        }
        let no_holds = HashSet::new();
        let ctx = Volume {
            ks,
            key,
            v,
            held: held.get(key).unwrap_or(&no_holds),
            have_refs: &have_refs,
            cutoff_ns,
            counted: counters.get(key).copied().unwrap_or_default(),
        };
        let fixes = ctx.check(&mut report)?;
        if opts.repair {
            ctx.repair(fixes, &mut report)?;
        }
    }
    Ok(report)
}

/// A repair and the problem it fixes; conditional ones count only when
/// they applied.
struct Fix {
    problem: Problem,
    stmt: Stmt,
    /// A read that cancels the repair when it finds a row now (the scan
    /// raced a change: a name created while its inode row was written).
    unless_found: Option<Stmt>,
    /// What the repair takes out of the usage counters when it applies
    /// (an inode deleted).
    freed: Usage,
}

struct Volume<'a> {
    ks: &'a Keyspace,
    key: &'a VolumeKey,
    v: &'a VolumeRows,
    held: &'a HashSet<u64>,
    have_refs: &'a HashSet<(i64, String, u64, Hash)>,
    cutoff_ns: i64,
    /// The volume's usage counters.
    counted: Usage,
}

impl Volume<'_> {
    fn name(&self) -> String {
        format!("({}, {})", self.key.0, self.key.1)
    }

    /// Whether an entry names a directory: its inode's kind, or the
    /// entry's when the inode is missing.
    fn is_dir(&self, ino: u64, entry_kind: i32) -> bool {
        let kind = self.v.inodes.get(&ino).and_then(|i| i.kind);
        kind.unwrap_or(entry_kind) == Kind::Dir as i32
    }

    /// The key of inode `ino` of this volume.
    fn ino_key(&self, ino: u64) -> Values {
        vec![
            val::big(self.key.0),
            val::text(&self.key.1),
            val::big(ino as i64),
        ]
    }

    fn check(&self, report: &mut FsckReport) -> CmdResult<Vec<Fix>> {
        let mut fixes = Vec::new();
        self.check_entries(report, &mut fixes);
        self.check_links(report, &mut fixes);
        self.check_reachable(report);
        self.check_blocks(report, &mut fixes)?;
        self.check_usage(report);
        Ok(fixes)
    }

    /// What the inodes scanned count for: every inode with a kind, and the
    /// sizes of the files.
    fn scanned(&self) -> Usage {
        self.v
            .inodes
            .values()
            .fold(Usage::default(), |u, i| u.plus(i.usage()))
    }

    /// The usage counters against the scan.
    fn check_usage(&self, report: &mut FsckReport) {
        let scan = self.scanned();
        if scan != self.counted {
            report.found(
                Problem::Usage,
                format!(
                    "{}: usage counters say {} bytes and {} inodes, the inodes hold {} bytes \
                     and {} inodes",
                    self.name(),
                    self.counted.bytes,
                    self.counted.inodes,
                    scan.bytes,
                    scan.inodes
                ),
            );
        }
    }

    /// Sets the usage counters to the scan, less what the repairs deleted
    /// (counters cannot be set: the difference is added).
    fn repair_usage(&self, freed: Usage, report: &mut FsckReport) -> CmdResult<()> {
        let want = self.scanned().minus(freed);
        let key = (self.key.0, self.key.1.clone());
        usage::add_usage(self.ks, &key, want.minus(self.counted)).map_err(|e| e.to_string())?;
        if self.scanned() != self.counted {
            report.repaired(Problem::Usage);
        }
        Ok(())
    }

    /// Names pointing at missing inodes, and kinds that disagree.
    fn check_entries(&self, report: &mut FsckReport, fixes: &mut Vec<Fix>) {
        let k = self.ks.name();
        let inode_q =
            format!("SELECT ino FROM {k}.inodes WHERE owner = ? AND environment = ? AND ino = ?");
        for e in &self.v.entries {
            let entry_key = vec![
                val::big(self.key.0),
                val::text(&self.key.1),
                val::big(e.parent as i64),
                val::big(e.gen),
                val::blob(&e.name),
            ];
            let shown = String::from_utf8_lossy(&e.name);
            match self.v.inodes.get(&e.ino).and_then(|i| i.kind) {
                None => {
                    report.found(
                        Problem::DanglingName,
                        format!(
                            "{}: name {shown:?} in directory {} points at missing inode {}",
                            self.name(),
                            e.parent,
                            e.ino
                        ),
                    );
                    let cql = format!(
                        "DELETE FROM {k}.dir_entries WHERE owner = ? AND environment = ? \
                         AND parent = ? AND gen = ? AND name = ? IF ino = ?"
                    );
                    let v = [entry_key, vec![val::big(e.ino as i64)]].concat();
                    fixes.push(Fix {
                        problem: Problem::DanglingName,
                        stmt: (cql, v),
                        unless_found: Some((inode_q.clone(), self.ino_key(e.ino))),
                        freed: Usage::default(),
                    });
                }
                Some(kind) if kind != e.kind => {
                    report.found(
                        Problem::EntryKind,
                        format!("{}: name {shown:?} in directory {} has kind {} but inode {} has {kind}", self.name(), e.parent, e.kind, e.ino),
                    );
                    let cql = format!(
                        "UPDATE {k}.dir_entries SET kind = ? WHERE owner = ? AND environment = ? \
                         AND parent = ? AND gen = ? AND name = ? IF ino = ?"
                    );
                    let v = [
                        vec![val::int(kind)],
                        entry_key,
                        vec![val::big(e.ino as i64)],
                    ]
                    .concat();
                    fixes.push(Fix {
                        problem: Problem::EntryKind,
                        stmt: (cql, v),
                        unless_found: None,
                        freed: Usage::default(),
                    });
                }
                Some(_) => {}
            }
        }
    }

    /// Unnamed inodes and link counts (recorded names, subdirectories,
    /// parents) against the entries.
    fn check_links(&self, report: &mut FsckReport, fixes: &mut Vec<Fix>) {
        let k = self.ks.name();
        let mut names: HashMap<u64, HashSet<Vec<u8>>> = HashMap::new();
        let mut subdirs: HashMap<u64, HashSet<u64>> = HashMap::new();
        let mut parents: HashMap<u64, HashSet<u64>> = HashMap::new();
        for e in &self.v.entries {
            names
                .entry(e.ino)
                .or_default()
                .insert(name_key(e.parent, &e.name));
            // The inode says what it is; a wrong kind in the entry is
            // another problem (check_entries).
            if self.is_dir(e.ino, e.kind) {
                subdirs.entry(e.parent).or_default().insert(e.ino);
                parents.entry(e.ino).or_default().insert(e.parent);
            }
        }
        let mut inos: Vec<&u64> = self.v.inodes.keys().collect();
        inos.sort();
        for ino in inos {
            let i = &self.v.inodes[ino];
            if i.kind.is_none() {
                continue; // a deleted inode's partial row: gc removes it
            }
            let key = self.ino_key(i.ino);
            if i.ino != 1 && !names.contains_key(&i.ino) {
                report.found(
                    Problem::UnnamedInode,
                    format!("{}: inode {} has no name", self.name(), i.ino),
                );
                if !self.held.contains(&i.ino) && i.ctime_ns <= self.cutoff_ns {
                    // Only while unchanged since it was read (see gc).
                    let cql = format!(
                        "DELETE FROM {k}.inodes WHERE owner = ? AND environment = ? AND ino = ? \
                         IF ctime_ns = ?"
                    );
                    let cond = vec![super::gc::or_null(i.ctime_ns)];
                    fixes.push(Fix {
                        problem: Problem::UnnamedInode,
                        stmt: (cql, [key.clone(), cond].concat()),
                        unless_found: None,
                        freed: i.usage(),
                    });
                }
                continue;
            }
            if i.is_dir() {
                let want: HashSet<u64> = subdirs.get(&i.ino).cloned().unwrap_or_default();
                let have: HashSet<u64> = i.subdirs.iter().copied().collect();
                let parent_ok =
                    i.ino == 1 || parents.get(&i.ino).is_some_and(|p| p.contains(&i.parent));
                if want != have || !parent_ok {
                    report.found(
                        Problem::LinkCount,
                        format!("{}: directory {} records {} subdirectories and parent {}, its entries say {}", self.name(), i.ino, have.len(), i.parent, want.len()),
                    );
                    let set =
                        CqlValue::Set(want.iter().map(|d| CqlValue::BigInt(*d as i64)).collect());
                    let parent = if parent_ok {
                        i.parent
                    } else {
                        parents
                            .get(&i.ino)
                            .and_then(|p| p.iter().min().copied())
                            .unwrap_or(i.parent)
                    };
                    let cql = format!(
                        "UPDATE {k}.inodes SET subdirs = ?, parent = ? WHERE owner = ? AND environment = ? \
                         AND ino = ? IF kind = ?"
                    );
                    let v = [
                        vec![Some(set), val::big(parent as i64)],
                        key,
                        vec![val::int(Kind::Dir as i32)],
                    ]
                    .concat();
                    fixes.push(Fix {
                        problem: Problem::LinkCount,
                        stmt: (cql, v),
                        unless_found: None,
                        freed: Usage::default(),
                    });
                }
            } else {
                let want: HashSet<Vec<u8>> = names.get(&i.ino).cloned().unwrap_or_default();
                let have: HashSet<Vec<u8>> = i.names.iter().cloned().collect();
                if want != have {
                    report.found(
                        Problem::LinkCount,
                        format!(
                            "{}: inode {} records {} names, its entries are {}",
                            self.name(),
                            i.ino,
                            have.len(),
                            want.len()
                        ),
                    );
                    let set = CqlValue::Set(want.into_iter().map(CqlValue::Blob).collect());
                    let cql = format!(
                        "UPDATE {k}.inodes SET names = ? WHERE owner = ? AND environment = ? AND ino = ? \
                         IF kind = ?"
                    );
                    let v = [vec![Some(set)], key, vec![i.kind.map(CqlValue::Int)]].concat();
                    fixes.push(Fix {
                        problem: Problem::LinkCount,
                        stmt: (cql, v),
                        unless_found: None,
                        freed: Usage::default(),
                    });
                }
            }
        }
    }

    /// Directories named by entries but not reachable from the root.
    fn check_reachable(&self, report: &mut FsckReport) {
        let mut children: HashMap<u64, Vec<u64>> = HashMap::new();
        let mut named_dirs = HashSet::new();
        for e in &self.v.entries {
            if self.is_dir(e.ino, e.kind) {
                children.entry(e.parent).or_default().push(e.ino);
                named_dirs.insert(e.ino);
            }
        }
        let mut seen = HashSet::from([1u64]);
        let mut queue = VecDeque::from([1u64]);
        while let Some(d) = queue.pop_front() {
            for c in children.get(&d).into_iter().flatten() {
                if seen.insert(*c) {
                    queue.push_back(*c);
                }
            }
        }
        let mut lost: Vec<u64> = named_dirs.difference(&seen).copied().collect();
        lost.sort();
        for d in lost {
            // Only directories whose parent is alive: the contents of an
            // unnamed directory are reported through it.
            let parent_named = self
                .v
                .entries
                .iter()
                .any(|e| e.ino == d && self.v.alive(e.parent));
            if parent_named && self.v.alive(d) {
                report.found(
                    Problem::Unreachable,
                    format!(
                        "{}: directory {d} is not reachable from the root",
                        self.name()
                    ),
                );
            }
        }
    }

    /// Blocks referenced but missing, and missing references.
    fn check_blocks(&self, report: &mut FsckReport, fixes: &mut Vec<Fix>) -> CmdResult<()> {
        let k = self.ks.name();
        let (owner, env) = (self.key.0, &self.key.1);
        let named = self.v.named();
        let mut used: HashMap<Hash, u64> = HashMap::new();
        for i in self
            .v
            .inodes
            .values()
            .filter(|i| i.kind.is_some() && named.contains(&i.ino))
        {
            for h in i.distinct_blocks() {
                used.entry(h).or_insert(i.ino);
                if !self.have_refs.contains(&(owner, env.clone(), i.ino, h)) {
                    report.found(
                        Problem::MissingRef,
                        format!(
                            "{}: inode {} has no reference to a block it uses",
                            self.name(),
                            i.ino
                        ),
                    );
                    let cql = format!(
                        "INSERT INTO {k}.block_refs (owner, hash, environment, ino, at) VALUES (?, ?, ?, ?, ?)"
                    );
                    let v = vec![
                        val::big(owner),
                        val::blob(&h),
                        val::text(env),
                        val::big(i.ino as i64),
                        val::big(super::now_ns()),
                    ];
                    fixes.push(Fix {
                        problem: Problem::MissingRef,
                        stmt: (cql, v),
                        unless_found: None,
                        freed: Usage::default(),
                    });
                }
            }
        }
        let hashes: Vec<(Hash, u64)> = used.into_iter().collect();
        let q = format!("SELECT hash FROM {k}.blocks WHERE owner = ? AND hash = ?");
        let stmts = hashes
            .iter()
            .map(|(h, _)| (q.clone(), vec![val::big(owner), val::blob(h)]))
            .collect();
        let rows = self.ks.run_all(stmts).map_err(|e| e.to_string())?;
        for ((_, ino), r) in hashes.iter().zip(rows) {
            if r.is_empty() {
                report.found(
                    Problem::MissingBlock,
                    format!("{}: a block of inode {ino} is missing", self.name()),
                );
            }
        }
        Ok(())
    }

    fn repair(&self, fixes: Vec<Fix>, report: &mut FsckReport) -> CmdResult<()> {
        let checks: Vec<Stmt> = fixes
            .iter()
            .filter_map(|f| f.unless_found.clone())
            .collect();
        let mut found = self
            .ks
            .run_all(checks)
            .map_err(|e| e.to_string())?
            .into_iter();
        let mut kept = Vec::with_capacity(fixes.len());
        for f in fixes {
            let cancelled = f.unless_found.is_some() && found.next().is_some_and(|r| !r.is_empty());
            if !cancelled {
                kept.push(f);
            }
        }
        let (problems, stmts): (Vec<(Problem, Usage)>, Vec<Stmt>) = kept
            .into_iter()
            .map(|f| ((f.problem, f.freed), f.stmt))
            .unzip();
        let results = self.ks.run_all(stmts).map_err(|e| e.to_string())?;
        let mut freed = Usage::default();
        for ((p, gone), rows) in problems.into_iter().zip(results) {
            // Unconditional writes return no rows; conditional ones say
            // whether they applied.
            let applied = rows.first().map_or(Some(true), |r| {
                use crate::store::Columns;
                r.boolean(0)
            });
            if applied == Some(true) {
                report.repaired(p);
                freed = freed.plus(gone);
            }
        }
        self.repair_usage(freed, report)
    }
}
