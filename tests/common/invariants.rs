//! Invariants of a CassFS volume, checked from outside, plus the pieces the
//! stress and crash tests share:
//!
//! - [`walk`] / [`check_tree`]: walks a (fresh) mount from its root: every
//!   listed name resolves, every directory is reached once (no cycles, no
//!   directory with two names), link counts (directories: 2 + subdirectories;
//!   other files: the number of names seen for the inode), file sizes match
//!   what is read; returns names, attributes and file contents.
//! - [`rows_report`] / [`check_rows`]: the same volume through CQL (the
//!   scylla driver, see [`Cql`]): every entry names an inode row that exists
//!   (non-null kind) of the same kind, a directory has one entry and its
//!   `parent` column names the directory holding that entry, link-count sets
//!   agree with the entries.
//! - Self-describing file versions ([`version_bytes`], [`decode`]): a header
//!   `CASSFS writer=W seq=N len=L` and deterministic padding, so any content
//!   found later tells which complete version it is, or that it is a prefix,
//!   a mix or garbage.
//! - A model of a directory tree owned by ONE writer ([`Model`], [`Op`],
//!   [`gen_op`], [`exec`]): seeded random operations that are valid in the
//!   model (or whose errno the model predicts), applied to the mount and to
//!   the model; [`Model::candidates`] lists the states an interrupted
//!   operation may leave.
//!
//! Include with `#[path = "common/invariants.rs"] mod invariants;` next to
//! `mod common;`.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::IntoRawFd;
use std::path::Path;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;

use scylla::value::CqlValue;

use crate::common::pattern;

// ---------------------------------------------------------------------------
// Walking a mount
// ---------------------------------------------------------------------------

/// The type of a name, as lstat reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

impl Kind {
    fn of(ft: fs::FileType) -> Kind {
        if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_symlink() {
            Kind::Symlink
        } else {
            Kind::Other
        }
    }
}

/// lstat of one name.
#[derive(Clone, Debug)]
pub struct Node {
    pub kind: Kind,
    pub ino: u64,
    pub nlink: u64,
    /// Permission bits (07777).
    pub perm: u32,
    pub size: u64,
}

/// What is wrong, by category (tests may tolerate some categories in some
/// places, e.g. link counts changed concurrently by two hosts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemKind {
    /// A listed name does not resolve (lstat fails).
    Unresolvable,
    /// A directory cannot be listed.
    ListFailed,
    /// A file cannot be read, or reads a different length than its size.
    ReadFailed,
    /// The type in the listing differs from the type lstat reports.
    KindMismatch,
    /// A directory reached a second time (a cycle or two names).
    DirTwice,
    /// Deeper than the walk allows, or too many names.
    Unbounded,
    /// A directory's link count is not 2 + its subdirectories.
    DirNlink,
    /// A file's link count is not the number of its names.
    FileNlink,
}

#[derive(Clone, Debug)]
pub struct Problem {
    pub kind: ProblemKind,
    pub path: String,
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} at {:?}: {}", self.kind, self.path, self.detail)
    }
}

/// A walked tree: paths are relative to the mount root, joined with '/'.
#[derive(Debug, Default)]
pub struct Tree {
    pub root: Option<Node>,
    pub nodes: BTreeMap<String, Node>,
    /// Content of every regular file that could be read.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Every name of every non-directory inode, by st_ino.
    pub names_by_ino: BTreeMap<u64, Vec<String>>,
    pub problems: Vec<Problem>,
}

impl Tree {
    /// Problems except those `tolerate` accepts.
    pub fn problems_except(&self, tolerate: impl Fn(&Problem) -> bool) -> Vec<&Problem> {
        self.problems.iter().filter(|p| !tolerate(p)).collect()
    }

    /// All names of the inode at `path` (itself included), sorted.
    pub fn links_of(&self, path: &str) -> Vec<String> {
        let Some(n) = self.nodes.get(path) else {
            return Vec::new();
        };
        let mut v = self
            .names_by_ino
            .get(&n.ino)
            .cloned()
            .unwrap_or_else(|| vec![path.to_string()]);
        v.sort();
        v
    }
}

/// The walk stops descending below this depth.
pub const MAX_DEPTH: usize = 64;
/// The walk stops after this many names.
pub const MAX_NAMES: usize = 100_000;

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

fn errno_of(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => format!("{} ({e})", errno_name(n)),
        None => e.to_string(),
    }
}

/// The symbolic name of an errno (for reports): the daemon's own table.
pub fn errno_name(n: i32) -> String {
    cassfs::error::errno_name(n).map_or_else(|| format!("errno {n}"), str::to_string)
}

/// Walks the mount at `root` (depth first), recording every problem found
/// instead of stopping at the first. Reads every regular file whole.
pub fn walk(root: &Path) -> Tree {
    let mut t = Tree::default();
    let meta = match fs::symlink_metadata(root) {
        Ok(m) => m,
        Err(e) => {
            t.problems.push(Problem {
                kind: ProblemKind::Unresolvable,
                path: String::new(),
                detail: format!("lstat of the mount root: {}", errno_of(&e)),
            });
            return t;
        }
    };
    t.root = Some(node_of(&meta));
    // Directory inode -> the path it was first reached by.
    let mut seen_dirs: HashMap<u64, String> = HashMap::new();
    seen_dirs.insert(meta.ino(), String::new());
    // (relative path, depth, link count reported)
    let mut stack: Vec<(String, usize, u64)> = vec![(String::new(), 0, meta.nlink())];
    let mut count = 0usize;
    while let Some((dir, depth, nlink)) = stack.pop() {
        let abs = root.join(&dir);
        let entries = match fs::read_dir(&abs) {
            Ok(rd) => rd,
            Err(e) => {
                t.problems.push(Problem {
                    kind: ProblemKind::ListFailed,
                    path: dir.clone(),
                    detail: format!("read_dir: {}", errno_of(&e)),
                });
                continue;
            }
        };
        let mut subdirs = 0u64;
        let mut listed_ok = true;
        let mut names = Vec::new();
        for e in entries {
            match e {
                Ok(e) => names.push((e.file_name(), e.file_type().ok())),
                Err(e) => {
                    listed_ok = false;
                    t.problems.push(Problem {
                        kind: ProblemKind::ListFailed,
                        path: dir.clone(),
                        detail: format!("read_dir entry: {}", errno_of(&e)),
                    });
                }
            }
        }
        names.sort_by(|x, y| x.0.cmp(&y.0));
        for (name, listed_type) in names {
            count += 1;
            let rel = join(&dir, &name.to_string_lossy());
            if count > MAX_NAMES {
                t.problems.push(Problem {
                    kind: ProblemKind::Unbounded,
                    path: rel,
                    detail: format!("more than {MAX_NAMES} names: walk stopped"),
                });
                return t;
            }
            let m = match fs::symlink_metadata(root.join(&rel)) {
                Ok(m) => m,
                Err(e) => {
                    t.problems.push(Problem {
                        kind: ProblemKind::Unresolvable,
                        path: rel,
                        detail: format!("listed but lstat fails: {}", errno_of(&e)),
                    });
                    continue;
                }
            };
            let node = node_of(&m);
            if let Some(lt) = listed_type {
                let lk = Kind::of(lt);
                if lk != node.kind {
                    t.problems.push(Problem {
                        kind: ProblemKind::KindMismatch,
                        path: rel.clone(),
                        detail: format!("listed as {lk:?}, lstat says {:?}", node.kind),
                    });
                }
            }
            match node.kind {
                Kind::Dir => {
                    subdirs += 1;
                    if let Some(first) = seen_dirs.get(&node.ino) {
                        t.problems.push(Problem {
                            kind: ProblemKind::DirTwice,
                            path: rel.clone(),
                            detail: format!(
                                "directory inode {} already reached as {first:?} (cycle or second name)",
                                node.ino
                            ),
                        });
                    } else if depth + 1 > MAX_DEPTH {
                        t.problems.push(Problem {
                            kind: ProblemKind::Unbounded,
                            path: rel.clone(),
                            detail: format!("deeper than {MAX_DEPTH}: not descended"),
                        });
                    } else {
                        seen_dirs.insert(node.ino, rel.clone());
                        stack.push((rel.clone(), depth + 1, node.nlink));
                    }
                }
                Kind::File => {
                    t.names_by_ino
                        .entry(node.ino)
                        .or_default()
                        .push(rel.clone());
                    match fs::read(root.join(&rel)) {
                        Ok(data) => {
                            if data.len() as u64 != node.size {
                                t.problems.push(Problem {
                                    kind: ProblemKind::ReadFailed,
                                    path: rel.clone(),
                                    detail: format!(
                                        "st_size {} but {} bytes read",
                                        node.size,
                                        data.len()
                                    ),
                                });
                            }
                            t.files.insert(rel.clone(), data);
                        }
                        Err(e) => t.problems.push(Problem {
                            kind: ProblemKind::ReadFailed,
                            path: rel.clone(),
                            detail: format!("read: {}", errno_of(&e)),
                        }),
                    }
                }
                Kind::Symlink | Kind::Other => {
                    t.names_by_ino
                        .entry(node.ino)
                        .or_default()
                        .push(rel.clone());
                }
            }
            t.nodes.insert(rel, node);
        }
        if listed_ok && nlink != 2 + subdirs {
            t.problems.push(Problem {
                kind: ProblemKind::DirNlink,
                path: dir.clone(),
                detail: format!("st_nlink {nlink}, but 2 + {subdirs} subdirectories"),
            });
        }
    }
    for names in t.names_by_ino.values() {
        let counts: BTreeSet<u64> = names
            .iter()
            .filter_map(|n| t.nodes.get(n).map(|x| x.nlink))
            .collect();
        for c in counts {
            if c != names.len() as u64 {
                t.problems.push(Problem {
                    kind: ProblemKind::FileNlink,
                    path: names[0].clone(),
                    detail: format!(
                        "st_nlink {c} but {} name(s) in the tree: {names:?}{}",
                        names.len(),
                        if c > names.len() as u64 {
                            " (count too high: the inode would outlive its names)"
                        } else {
                            " (count too low: removing one name would delete the others' file)"
                        }
                    ),
                });
            }
        }
    }
    t
}

fn node_of(m: &fs::Metadata) -> Node {
    Node {
        kind: Kind::of(m.file_type()),
        ino: m.ino(),
        nlink: m.nlink(),
        perm: m.mode() & 0o7777,
        size: m.size(),
    }
}

/// Formats problems for an assertion message (at most 40).
pub fn describe_problems<'a>(ps: impl IntoIterator<Item = &'a Problem>) -> String {
    let all: Vec<&Problem> = ps.into_iter().collect();
    let mut s = String::new();
    for p in all.iter().take(40) {
        s.push_str(&format!("\n  - {p}"));
    }
    if all.len() > 40 {
        s.push_str(&format!("\n  ... and {} more", all.len() - 40));
    }
    s
}

/// Walks the mount at `root` and asserts that no problem was found; returns
/// the tree (names, attributes, contents) for further checks.
#[track_caller]
pub fn check_tree(root: &Path, context: &str) -> Tree {
    let t = walk(root);
    assert!(
        t.problems.is_empty(),
        "{context}: the tree of {} is inconsistent ({} problem(s)):{}",
        root.display(),
        t.problems.len(),
        describe_problems(&t.problems)
    );
    t
}

// ---------------------------------------------------------------------------
// Rows in Cassandra
// ---------------------------------------------------------------------------

/// What the CQL check found.
#[derive(Debug, Default)]
pub struct RowReport {
    /// Inconsistencies (entries naming missing inodes, ...).
    pub problems: Vec<String>,
    /// Subset of `problems` about a directory's `parent` column (separate so
    /// a test can tell them apart).
    pub parent_problems: Vec<String>,
    /// Subset of `problems` about the link-count sets (`inodes.names`,
    /// `inodes.subdirs`) disagreeing with the entries.
    pub count_problems: Vec<String>,
    /// Why the link-count sets were not checked (e.g. a schema without them).
    pub sets_unchecked: Option<String>,
    pub dentries: usize,
    pub inodes: usize,
    /// Entries in directories that were removed or are unreachable
    /// (leaks, informational), and how many of them name a live inode (a file or
    /// directory moved or linked into a directory removed at that moment).
    pub dead_dir_entries: usize,
    pub dead_dir_entries_live: usize,
    /// Inode rows (non-null kind) no entry reachable from the root names:
    /// leaks, invisible to users (informational).
    pub unreachable: Vec<u64>,
    /// Reachable directories holding a removal mark (an rmdir under way,
    /// or one killed midway): the mark expires, then they take names again.
    pub removal_marks: Vec<i64>,
}

/// A CQL session of the scylla driver (the daemon's own): `scripts/cql.py`
/// prints nothing at all when Cassandra attaches a warning to a result
/// (e.g. "Read N live rows and M tombstone cells"), which volumes with
/// much churn get, so it cannot be trusted for these checks.
pub struct Cql {
    rt: tokio::runtime::Runtime,
    session: scylla::client::session::Session,
}

/// One row, untyped.
pub type CqlRow = Vec<Option<CqlValue>>;

impl Cql {
    pub fn connect() -> Result<Cql, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let addr = format!("{}:9042", crate::common::cassandra_addr());
        let session = rt
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(30),
                    scylla::client::session_builder::SessionBuilder::new()
                        .known_node(&addr)
                        .build(),
                )
                .await
            })
            .map_err(|_| format!("no CQL session to {addr} within 30 s"))?
            .map_err(|e| format!("CQL session to {addr}: {e}"))?;
        Ok(Cql { rt, session })
    }

    /// All rows of `stmt` (unpaged), or the error.
    pub fn select(&self, stmt: &str) -> Result<Vec<CqlRow>, String> {
        self.rt.block_on(async {
            let res = tokio::time::timeout(
                Duration::from_secs(60),
                self.session.query_unpaged(stmt, ()),
            )
            .await
            .map_err(|_| format!("{stmt}: no answer within 60 s"))?
            .map_err(|e| format!("{stmt}: {e}"))?;
            let rows = res.into_rows_result().map_err(|e| format!("{stmt}: {e}"))?;
            let it = rows
                .rows::<scylla::value::Row>()
                .map_err(|e| format!("{stmt}: {e}"))?;
            it.map(|r| r.map(|r| r.columns).map_err(|e| format!("{stmt}: {e}")))
                .collect()
        })
    }
}

fn int_of(v: &Option<CqlValue>) -> Option<i64> {
    match v {
        Some(CqlValue::BigInt(n)) => Some(*n),
        Some(CqlValue::Int(n)) => Some(i64::from(*n)),
        Some(CqlValue::SmallInt(n)) => Some(i64::from(*n)),
        Some(CqlValue::TinyInt(n)) => Some(i64::from(*n)),
        _ => None,
    }
}

fn blob_of(v: &Option<CqlValue>) -> Option<Vec<u8>> {
    match v {
        Some(CqlValue::Blob(b)) => Some(b.clone()),
        _ => None,
    }
}

/// The elements of a set column (null: empty).
fn set_of(v: &Option<CqlValue>) -> Vec<CqlValue> {
    match v {
        Some(CqlValue::Set(s)) | Some(CqlValue::List(s)) => s.clone(),
        _ => Vec::new(),
    }
}

/// Reads the volume's entries and inodes through CQL and reports what is
/// inconsistent (entries in directories that were removed are leaks, only
/// counted): an entry in a live directory naming a missing (or deleted: null kind) inode or
/// one of another kind, a directory with two entries, a directory whose
/// `parent` column is not the directory holding its entry, and (when the
/// schema has them) link-count sets that disagree with the entries: a
/// named file's `names` must be exactly its entries, a named directory's
/// `subdirs` exactly the directories listed in it. Panics if Cassandra
/// cannot be queried.
pub fn rows_report(keyspace: &str, owner: i64, environment: &str) -> RowReport {
    let cql = Cql::connect().unwrap_or_else(|e| panic!("rows_report: {e}"));
    let mut r = RowReport::default();
    let filter = format!("WHERE owner = {owner} AND environment = '{environment}' ALLOW FILTERING");
    let dentries = cql
        .select(&format!(
            "SELECT parent, name, ino, kind, TTL(ino), gen FROM {keyspace}.dir_entries {filter}"
        ))
        .unwrap_or_else(|e| panic!("rows_report: {e}"));
    let inodes = cql
        .select(&format!(
            "SELECT ino, kind, parent, gen FROM {keyspace}.inodes {filter}"
        ))
        .unwrap_or_else(|e| panic!("rows_report: {e}"));
    // ino -> (kind, parent) for rows with a kind.
    let mut live: HashMap<i64, (i64, Option<i64>)> = HashMap::new();
    // directory -> the generation its entries are in (see cql/cassfs.cql)
    let mut gens: HashMap<i64, i64> = HashMap::new();
    for row in &inodes {
        let (Some(ino), kind) = (int_of(&row[0]), int_of(&row[1])) else {
            r.problems.push(format!("inode row without ino: {row:?}"));
            continue;
        };
        if let Some(kind) = kind {
            live.insert(ino, (kind, int_of(&row[2])));
            gens.insert(ino, int_of(&row[3]).unwrap_or(0));
        }
    }
    r.inodes = live.len();
    // Only the current generation of a live directory holds its entries;
    // older ones keep a frozen sentinel (and rows a roll left to drop).
    let dentries: Vec<_> = dentries
        .into_iter()
        .filter(
            |row| match (int_of(&row[0]), gens.get(&int_of(&row[0]).unwrap_or(-9))) {
                (Some(_), Some(g)) => int_of(&row[5]).unwrap_or(0) == *g,
                _ => true,
            },
        )
        .collect();
    r.dentries = dentries.len();
    let mut entries: Vec<(i64, Vec<u8>, i64, Option<i64>)> = Vec::new();
    // directory -> TTL of its sentinel's ino
    let mut ttls: HashMap<i64, Option<i64>> = HashMap::new();
    for row in &dentries {
        match (int_of(&row[0]), blob_of(&row[1]), int_of(&row[2])) {
            (Some(parent), Some(name), Some(ino)) => {
                if name.is_empty() {
                    ttls.insert(parent, int_of(&row[4]));
                }
                entries.push((parent, name, ino, int_of(&row[3])))
            }
            // A live sentinel that carries only its generation's roll_at,
            // or a rename's record cleared just after its entry went: rows
            // without an inode are not entries (every reader skips them).
            (Some(_), Some(_), None) => {}
            _ => r
                .problems
                .push(format!("dentry row without parent, name or ino: {row:?}")),
        }
    }
    // The directories reachable from the root through entries of live
    // directories: only their entries are visible.
    let mut subdir_entries: HashMap<i64, Vec<i64>> = HashMap::new();
    for (parent, _, ino, _) in &entries {
        if matches!(live.get(ino), Some((2, _))) {
            subdir_entries.entry(*parent).or_default().push(*ino);
        }
    }
    let mut reachable: BTreeSet<i64> = BTreeSet::new();
    let mut todo = vec![1i64];
    while let Some(d) = todo.pop() {
        if reachable.len() > MAX_NAMES || !reachable.insert(d) {
            continue;
        }
        if let Some(cs) = subdir_entries.get(&d) {
            todo.extend(cs.iter().copied());
        }
    }
    let visible_dir = |d: i64| reachable.contains(&d);
    // The empty name is a directory's removal sentinel, not an entry: with
    // a TTL it marks an rmdir under way; without, a removed directory.
    let mut sentinels = Vec::new();
    entries.retain(|(parent, name, ino, _)| {
        if !name.is_empty() {
            return true;
        }
        sentinels.push((*parent, *ino));
        false
    });
    for (parent, ino) in sentinels {
        if !visible_dir(parent) {
            continue;
        }
        match ttls.get(&parent) {
            Some(Some(_)) if ino == -1 => r.removal_marks.push(parent),
            _ => r.problems.push(format!(
                "reachable directory {parent} is sealed as removed (sentinel -> {ino})"
            )),
        }
    }
    // Every entry naming an inode, visible or not: "P/name".
    let mut named_by: HashMap<i64, Vec<String>> = HashMap::new();
    for (parent, name, ino, _) in &entries {
        let state = if visible_dir(*parent) {
            ""
        } else if live.contains_key(parent) {
            " (unreachable dir)"
        } else {
            " (deleted dir)"
        };
        named_by
            .entry(*ino)
            .or_default()
            .push(format!("{parent}/{}{state}", String::from_utf8_lossy(name)));
    }
    // dir ino -> entries naming it
    let mut dir_names: HashMap<i64, Vec<String>> = HashMap::new();
    // What the link-count sets should hold, from the entries.
    let mut want_names: HashMap<i64, BTreeSet<Vec<u8>>> = HashMap::new();
    let mut want_subdirs: HashMap<i64, BTreeSet<i64>> = HashMap::new();
    for (parent, raw_name, ino, dkind) in &entries {
        let (parent, ino, dkind) = (*parent, *ino, *dkind);
        let name = String::from_utf8_lossy(raw_name).into_owned();
        if !visible_dir(parent) {
            // Left in a directory removed meanwhile: unreachable.
            r.dead_dir_entries += 1;
            if live.contains_key(&ino) {
                r.dead_dir_entries_live += 1;
            }
            continue;
        }
        let what = format!("entry {name:?} in directory {parent} -> inode {ino}");
        match live.get(&ino) {
            None => r.problems.push(format!(
                "{what}: no inode row (or one with a null kind: deleted)"
            )),
            Some((kind, iparent)) => {
                if dkind != Some(*kind) {
                    r.problems
                        .push(format!("{what}: entry kind {dkind:?}, inode kind {kind}"));
                }
                if *kind == 2 {
                    want_subdirs.entry(parent).or_default().insert(ino);
                    dir_names
                        .entry(ino)
                        .or_default()
                        .push(format!("{parent}/{name}"));
                    if *iparent != Some(parent) {
                        let p = format!(
                            "{what}: directory's parent column is {iparent:?}, not {parent}"
                        );
                        r.parent_problems.push(p.clone());
                        r.problems.push(p);
                    }
                } else {
                    let mut key = (parent as u64).to_be_bytes().to_vec();
                    key.extend_from_slice(raw_name);
                    want_names.entry(ino).or_default().insert(key);
                }
            }
        }
    }
    for (ino, names) in &dir_names {
        if names.len() > 1 {
            r.problems.push(format!(
                "directory inode {ino} has {} entries: {names:?}",
                names.len()
            ));
        }
    }
    let sets = cql.select(&format!(
        "SELECT ino, names, subdirs FROM {keyspace}.inodes {filter}"
    ));
    match sets {
        Ok(rows) => check_sets(
            &mut r,
            &rows,
            &Sets {
                live: &live,
                dir_names: &dir_names,
                want_names: &want_names,
                want_subdirs: &want_subdirs,
                named_by: &named_by,
                reachable: &reachable,
            },
        ),
        Err(e) => r.sets_unchecked = Some(e),
    }
    let named: BTreeSet<i64> = entries
        .iter()
        .filter(|(p, ..)| visible_dir(*p))
        .map(|(_, _, i, _)| *i)
        .collect();
    let mut unreachable: Vec<u64> = live
        .keys()
        .filter(|i| **i != 1 && !named.contains(i))
        .map(|&i| i as u64)
        .collect();
    unreachable.sort_unstable();
    r.unreachable = unreachable;
    r
}

fn show_name_key(k: &[u8]) -> String {
    if k.len() < 8 {
        return format!("{k:?}");
    }
    let mut p = [0u8; 8];
    p.copy_from_slice(&k[..8]);
    format!(
        "{}/{}",
        u64::from_be_bytes(p),
        String::from_utf8_lossy(&k[8..])
    )
}

/// What [`check_sets`] compares the link-count sets with.
struct Sets<'a> {
    live: &'a HashMap<i64, (i64, Option<i64>)>,
    dir_names: &'a HashMap<i64, Vec<String>>,
    /// From the entries in live directories.
    want_names: &'a HashMap<i64, BTreeSet<Vec<u8>>>,
    want_subdirs: &'a HashMap<i64, BTreeSet<i64>>,
    /// Every entry naming an inode ("P/name", deleted directories marked).
    named_by: &'a HashMap<i64, Vec<String>>,
    /// Directories reachable from the root.
    reachable: &'a BTreeSet<i64>,
}

/// Compares `inodes.names` / `inodes.subdirs` with the entries in live
/// directories (only for inodes such an entry names: an unnamed inode is a
/// leak, not checked). A name recorded in a file's row whose directory was
/// removed still counts in st_nlink: that is a visible count too high.
fn check_sets(r: &mut RowReport, rows: &[CqlRow], w: &Sets<'_>) {
    let describe_dir = |d: i64| {
        format!(
            "{d} ({}, named by {:?})",
            if !w.live.contains_key(&d) {
                "deleted"
            } else if w.reachable.contains(&d) {
                "reachable"
            } else {
                "live but unreachable"
            },
            w.named_by.get(&d).cloned().unwrap_or_default()
        )
    };
    for row in rows {
        let Some(ino) = int_of(&row[0]) else { continue };
        let Some((kind, _)) = w.live.get(&ino) else {
            continue;
        };
        if *kind == 2 {
            if ino != 1 && !w.dir_names.contains_key(&ino) {
                continue;
            }
            let have: BTreeSet<i64> = set_of(&row[2])
                .into_iter()
                .filter_map(|v| int_of(&Some(v)))
                .collect();
            let empty = BTreeSet::new();
            let want = w.want_subdirs.get(&ino).unwrap_or(&empty);
            if &have != want {
                let p = format!(
                    "directory inode {ino}: st_nlink {} instead of {}: subdirs without an entry \
                     here: [{}]; subdirectories listed but not counted: {:?}",
                    2 + have.len(),
                    2 + want.len(),
                    have.difference(want)
                        .map(|&d| describe_dir(d))
                        .collect::<Vec<_>>()
                        .join(", "),
                    want.difference(&have).collect::<Vec<_>>()
                );
                r.count_problems.push(p.clone());
                r.problems.push(p);
            }
        } else if let Some(want) = w.want_names.get(&ino) {
            let have: BTreeSet<Vec<u8>> = set_of(&row[1])
                .into_iter()
                .filter_map(|v| blob_of(&Some(v)))
                .collect();
            if &have != want {
                let extra: Vec<String> = have
                    .difference(want)
                    .map(|k| {
                        let mut p = [0u8; 8];
                        if k.len() >= 8 {
                            p.copy_from_slice(&k[..8]);
                        }
                        let d = i64::from_be_bytes(p);
                        format!("{} (directory {})", show_name_key(k), describe_dir(d))
                    })
                    .collect();
                let p = format!(
                    "inode {ino}: st_nlink {} instead of {}: names counted without a live entry: \
                     {extra:?}; entries not counted: {:?}",
                    have.len(),
                    want.len(),
                    want.difference(&have)
                        .map(|k| show_name_key(k))
                        .collect::<Vec<_>>()
                );
                r.count_problems.push(p.clone());
                r.problems.push(p);
            }
        }
    }
}

/// Asserts, through CQL, that every entry of the volume names an existing
/// inode row of its kind, every directory has one entry, and each
/// directory's `parent` column names the directory that holds its entry.
#[track_caller]
pub fn check_rows(keyspace: &str, owner: i64, environment: &str, context: &str) -> RowReport {
    let r = rows_report(keyspace, owner, environment);
    if let Some(why) = &r.sets_unchecked {
        eprintln!("{context}: link-count sets not checked: {why}");
    }
    assert!(
        r.problems.is_empty(),
        "{context}: rows of volume ({owner}, {environment}) in {keyspace} are inconsistent \
         ({} problem(s), {} entries, {} inodes):\n  - {}",
        r.problems.len(),
        r.dentries,
        r.inodes,
        r.problems
            .iter()
            .take(40)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n  - ")
    );
    r
}

// ---------------------------------------------------------------------------
// Self-describing versions of a file's content
// ---------------------------------------------------------------------------

/// One version of a file: who wrote it and its sequence number.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionKey {
    pub writer: String,
    pub seq: u64,
}

impl fmt::Display for VersionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.writer, self.seq)
    }
}

fn header(writer: &str, seq: u64, len: usize) -> String {
    format!("CASSFS writer={writer} seq={seq} len={len}\n")
}

fn body_seed(writer: &str, seq: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in writer.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h ^ seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The content of version (`writer`, `seq`): `len` bytes (at least the
/// header's length), a header line then deterministic padding.
pub fn version_bytes(writer: &str, seq: u64, len: usize) -> Vec<u8> {
    let h = header(writer, seq, len);
    let len = len.max(h.len());
    let h = header(writer, seq, len);
    let mut v = h.clone().into_bytes();
    v.extend_from_slice(&pattern(
        body_seed(writer, seq),
        len.saturating_sub(h.len()),
    ));
    v.truncate(len);
    v
}

/// What some bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    Empty,
    /// Exactly one complete version.
    Full(VersionKey),
    /// A strict prefix of a version (what a reader on the writing host may
    /// see while it writes).
    Prefix(VersionKey, usize),
    /// Not a version nor a prefix of one: a mix, garbage, a header cut short.
    Bad(String),
}

/// Tells which version `data` is (see [`Decoded`]).
pub fn decode(data: &[u8]) -> Decoded {
    if data.is_empty() {
        return Decoded::Empty;
    }
    let Some(nl) = data.iter().position(|&b| b == b'\n') else {
        return Decoded::Bad(format!(
            "{} bytes without a header line: {:?}",
            data.len(),
            String::from_utf8_lossy(&data[..data.len().min(60)])
        ));
    };
    let line = String::from_utf8_lossy(&data[..nl]).into_owned();
    let mut writer = None;
    let mut seq = None;
    let mut len = None;
    let mut words = line.split(' ');
    if words.next() != Some("CASSFS") {
        return Decoded::Bad(format!("not a version header: {line:?}"));
    }
    for w in words {
        if let Some(v) = w.strip_prefix("writer=") {
            writer = Some(v.to_string());
        } else if let Some(v) = w.strip_prefix("seq=") {
            seq = v.parse::<u64>().ok();
        } else if let Some(v) = w.strip_prefix("len=") {
            len = v.parse::<usize>().ok();
        }
    }
    let (Some(writer), Some(seq), Some(len)) = (writer, seq, len) else {
        return Decoded::Bad(format!("malformed version header {line:?}"));
    };
    let expected = version_bytes(&writer, seq, len);
    let key = VersionKey { writer, seq };
    let common = data.len().min(expected.len());
    if let Some(off) = (0..common).find(|&i| data[i] != expected[i]) {
        return Decoded::Bad(format!(
            "{} bytes starting as version {key} (len {len}) but differing from it at offset {off} \
             (a mix of versions or garbage)",
            data.len()
        ));
    }
    match data.len().cmp(&expected.len()) {
        std::cmp::Ordering::Equal => Decoded::Full(key),
        std::cmp::Ordering::Less => Decoded::Prefix(key, data.len()),
        std::cmp::Ordering::Greater => Decoded::Bad(format!(
            "version {key} (len {len}) followed by {} more bytes",
            data.len() - expected.len()
        )),
    }
}

/// Writes a whole file: open (`O_CREAT|O_TRUNC`, or `O_CREAT|O_EXCL` when
/// `excl`) with mode 0644, write, optionally fsync, close — the close's
/// error (the commit's) is returned, not ignored.
pub fn write_file(path: &Path, data: &[u8], excl: bool, fsync: bool) -> io::Result<()> {
    let mut o = OpenOptions::new();
    o.write(true).mode(0o644);
    if excl {
        o.create_new(true);
    } else {
        o.create(true).truncate(true);
    }
    let mut f = o.open(path)?;
    let r = f
        .write_all(data)
        .and_then(|()| if fsync { f.sync_all() } else { Ok(()) });
    let c = close_checked(f);
    r.and(c)
}

/// close(2) with its error returned (dropping a `File` ignores it).
pub fn close_checked(f: File) -> io::Result<()> {
    let fd = f.into_raw_fd();
    // SAFETY: we own fd (taken out of the File) and close it once.
    let r = unsafe { libc::close(fd) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A size for a new version: mostly small (inline, ≤ 64 KiB), sometimes
/// just around 64 KiB, sometimes block-stored; up to `max_big` bytes.
pub fn pick_size(rng: &mut StdRng, max_big: usize) -> usize {
    match rng.gen_range(0..100) {
        0..=44 => rng.gen_range(80..8_000),
        45..=64 => rng.gen_range(8_000..=65_536),
        65..=69 => rng.gen_range(65_530..65_545),
        70..=89 => rng.gen_range(65_537..300_000),
        _ => rng.gen_range(300_000..max_big.max(300_001)),
    }
}

// ---------------------------------------------------------------------------
// A single writer's tree: model, operations, generator, execution
// ---------------------------------------------------------------------------

/// What a model file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Empty,
    Version(VersionKey),
    /// Not a complete version (from a real tree only).
    Bad(String),
}

impl fmt::Display for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Content::Empty => write!(f, "empty"),
            Content::Version(k) => write!(f, "version {k}"),
            Content::Bad(s) => write!(f, "BAD CONTENT: {s}"),
        }
    }
}

/// One name in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Snap {
    Dir {
        perm: u32,
    },
    File {
        content: Content,
        perm: u32,
        /// Every name of this inode (itself included), sorted.
        links: Vec<String>,
    },
    Other(String),
}

impl fmt::Display for Snap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Snap::Dir { perm } => write!(f, "dir {perm:o}"),
            Snap::File {
                content,
                perm,
                links,
            } => {
                write!(f, "file {perm:o} {content}")?;
                if links.len() > 1 {
                    write!(f, " names {links:?}")?;
                }
                Ok(())
            }
            Snap::Other(s) => write!(f, "{s}"),
        }
    }
}

/// Path -> what is there.
pub type Snapshot = BTreeMap<String, Snap>;

fn under(path: &str, base: &str) -> bool {
    base.is_empty() || path.starts_with(&format!("{base}/"))
}

/// The snapshot of the part of a walked tree below `base` ("" for all).
pub fn snapshot_of_tree(t: &Tree, base: &str) -> Snapshot {
    let mut s = Snapshot::new();
    for (p, n) in &t.nodes {
        if !under(p, base) {
            continue;
        }
        let snap = match n.kind {
            Kind::Dir => Snap::Dir { perm: n.perm },
            Kind::File => {
                let content = match t.files.get(p) {
                    None => Content::Bad("unreadable".into()),
                    Some(d) => match decode(d) {
                        Decoded::Empty => Content::Empty,
                        Decoded::Full(k) => Content::Version(k),
                        Decoded::Prefix(k, n) => {
                            Content::Bad(format!("truncated: first {n} bytes of version {k}"))
                        }
                        Decoded::Bad(s) => Content::Bad(s),
                    },
                };
                Snap::File {
                    content,
                    perm: n.perm,
                    links: t.links_of(p),
                }
            }
            k => Snap::Other(format!("{k:?}")),
        };
        s.insert(p.clone(), snap);
    }
    s
}

/// The differences between an expected and an actual snapshot (empty when
/// equal).
pub fn diff(expected: &Snapshot, actual: &Snapshot) -> Vec<String> {
    let mut out = Vec::new();
    for (p, e) in expected {
        match actual.get(p) {
            None => out.push(format!("{p}: missing (expected {e})")),
            Some(a) if a != e => out.push(format!("{p}: expected {e}, found {a}")),
            _ => {}
        }
    }
    for (p, a) in actual {
        if !expected.contains_key(p) {
            out.push(format!("{p}: unexpected {a}"));
        }
    }
    out
}

/// A model file object (an inode): names point at it.
#[derive(Clone, Debug)]
pub struct Obj {
    pub content: Content,
    pub perm: u32,
}

/// The expected state of a tree below `base` that only one writer changes.
#[derive(Clone, Debug, Default)]
pub struct Model {
    /// The directory the model covers ("" = the mount root); it always
    /// exists and is not itself part of the model.
    pub base: String,
    pub dirs: BTreeMap<String, u32>,
    pub files: BTreeMap<String, u64>,
    pub objs: BTreeMap<u64, Obj>,
    next_obj: u64,
}

/// One operation of the single-writer workload. Paths are relative to the
/// mount root.
#[derive(Clone, Debug)]
pub enum Op {
    /// open(O_CREAT|O_TRUNC), write, [fsync], close.
    Write {
        path: String,
        ver: VersionKey,
        len: usize,
        fsync: bool,
    },
    /// open(O_CREAT|O_EXCL), write, close.
    Excl {
        path: String,
        ver: VersionKey,
        len: usize,
    },
    Mkdir {
        path: String,
        perm: u32,
    },
    Rename {
        from: String,
        to: String,
    },
    Unlink {
        path: String,
    },
    Rmdir {
        path: String,
    },
    Chmod {
        path: String,
        perm: u32,
    },
    /// Write `tmp` whole, then rename it over `path` (PHP-style replace).
    Replace {
        path: String,
        tmp: String,
        ver: VersionKey,
        len: usize,
    },
    Link {
        from: String,
        to: String,
    },
    /// Read and compare with the model.
    Read {
        path: String,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Write {
                path,
                ver,
                len,
                fsync,
            } => write!(
                f,
                "write {path} = {ver} ({len} B{})",
                if *fsync { ", fsync" } else { "" }
            ),
            Op::Excl { path, ver, len } => write!(f, "create O_EXCL {path} = {ver} ({len} B)"),
            Op::Mkdir { path, perm } => write!(f, "mkdir {path} {perm:o}"),
            Op::Rename { from, to } => write!(f, "rename {from} -> {to}"),
            Op::Unlink { path } => write!(f, "unlink {path}"),
            Op::Rmdir { path } => write!(f, "rmdir {path}"),
            Op::Chmod { path, perm } => write!(f, "chmod {perm:o} {path}"),
            Op::Replace {
                path,
                tmp,
                ver,
                len,
            } => write!(f, "write {tmp} = {ver} ({len} B), rename over {path}"),
            Op::Link { from, to } => write!(f, "link {from} -> {to}"),
            Op::Read { path } => write!(f, "read {path}"),
        }
    }
}

/// What the model says an operation returns: Ok, or this errno.
pub type Expect = Result<(), i32>;

/// Directory names and file names the generator uses (few, so operations
/// collide with earlier ones).
pub const DIR_NAMES: [&str; 4] = ["d0", "d1", "d2", "d3"];
pub const FILE_NAMES: [&str; 8] = ["f0", "f1", "f2", "f3", "f4", "f5", "f6", "f7"];

fn parent_of(p: &str) -> &str {
    p.rfind('/').map_or("", |i| &p[..i])
}

impl Model {
    pub fn new(base: &str) -> Model {
        Model {
            base: base.to_string(),
            ..Model::default()
        }
    }

    pub fn is_dir(&self, p: &str) -> bool {
        p == self.base || self.dirs.contains_key(p)
    }

    pub fn exists(&self, p: &str) -> bool {
        self.is_dir(p) || self.files.contains_key(p)
    }

    fn depth(&self, p: &str) -> usize {
        if p == self.base {
            return 0;
        }
        let rel = if self.base.is_empty() {
            p
        } else {
            &p[self.base.len() + 1..]
        };
        rel.split('/').count()
    }

    /// Levels of directories below `p` (0 for an empty directory).
    fn height(&self, p: &str) -> usize {
        let pre = format!("{p}/");
        self.dirs
            .keys()
            .filter(|k| k.starts_with(&pre))
            .map(|k| k[pre.len()..].split('/').count())
            .max()
            .unwrap_or(0)
    }

    pub fn is_empty_dir(&self, p: &str) -> bool {
        let pre = format!("{p}/");
        self.is_dir(p)
            && !self.dirs.keys().any(|k| k.starts_with(&pre))
            && !self.files.keys().any(|k| k.starts_with(&pre))
    }

    fn new_obj(&mut self, content: Content) -> u64 {
        self.next_obj += 1;
        self.objs.insert(
            self.next_obj,
            Obj {
                content,
                perm: 0o644,
            },
        );
        self.next_obj
    }

    fn gc(&mut self) {
        let used: BTreeSet<u64> = self.files.values().copied().collect();
        self.objs.retain(|k, _| used.contains(k));
    }

    /// The file at `p` now holds `content` (created with mode 0644 if new).
    fn set_content(&mut self, p: &str, content: Content) {
        match self.files.get(p) {
            Some(o) => {
                if let Some(obj) = self.objs.get_mut(o) {
                    obj.content = content;
                }
            }
            None => {
                let o = self.new_obj(content);
                self.files.insert(p.to_string(), o);
            }
        }
    }

    fn rename(&mut self, from: &str, to: &str) {
        if from == to {
            return;
        }
        if let Some(&o) = self.files.get(from) {
            if self.files.get(to) == Some(&o) {
                return; // two names of one inode: nothing happens
            }
            self.files.remove(from);
            self.files.insert(to.to_string(), o);
            self.gc();
            return;
        }
        if let Some(perm) = self.dirs.remove(from) {
            self.dirs.remove(to); // an empty directory replaced
            let pre = format!("{from}/");
            let move_key = |k: &String| format!("{to}/{}", &k[pre.len()..]);
            let dirs: Vec<(String, u32)> = self
                .dirs
                .iter()
                .filter(|(k, _)| k.starts_with(&pre))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            for (k, v) in dirs {
                self.dirs.remove(&k);
                self.dirs.insert(move_key(&k), v);
            }
            let files: Vec<(String, u64)> = self
                .files
                .iter()
                .filter(|(k, _)| k.starts_with(&pre))
                .map(|(k, v)| (k.clone(), *v))
                .collect();
            for (k, v) in files {
                self.files.remove(&k);
                self.files.insert(move_key(&k), v);
            }
            self.dirs.insert(to.to_string(), perm);
        }
    }

    /// Applies a successful operation.
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Write { path, ver, .. } | Op::Excl { path, ver, .. } => {
                self.set_content(path, Content::Version(ver.clone()))
            }
            Op::Mkdir { path, perm } => {
                self.dirs.insert(path.clone(), *perm);
            }
            Op::Rename { from, to } => self.rename(from, to),
            Op::Unlink { path } => {
                self.files.remove(path);
                self.gc();
            }
            Op::Rmdir { path } => {
                self.dirs.remove(path);
            }
            Op::Chmod { path, perm } => {
                if let Some(p) = self.dirs.get_mut(path) {
                    *p = *perm;
                } else if let Some(o) = self.files.get(path) {
                    if let Some(obj) = self.objs.get_mut(o) {
                        obj.perm = *perm;
                    }
                }
            }
            Op::Replace { path, tmp, ver, .. } => {
                // A new inode (the temporary file) takes the name.
                self.files.remove(tmp);
                let o = self.new_obj(Content::Version(ver.clone()));
                self.files.insert(path.clone(), o);
                self.gc();
            }
            Op::Link { from, to } => {
                if let Some(&o) = self.files.get(from) {
                    self.files.insert(to.clone(), o);
                }
            }
            Op::Read { .. } => {}
        }
    }

    /// Every state an operation interrupted at any point (e.g. by a crash)
    /// may leave: before, after, and the visible steps in between.
    pub fn candidates(&self, op: &Op, expect: &Expect) -> Vec<(String, Model)> {
        let mut out = vec![("before".to_string(), self.clone())];
        if expect.is_err() {
            return out;
        }
        match op {
            Op::Write { path, .. } | Op::Excl { path, .. } => {
                let mut m = self.clone();
                m.set_content(path, Content::Empty);
                out.push(("created or truncated, not yet written".into(), m));
            }
            Op::Replace { tmp, ver, .. } => {
                let mut m = self.clone();
                m.set_content(tmp, Content::Empty);
                out.push(("temporary file created".into(), m.clone()));
                m.set_content(tmp, Content::Version(ver.clone()));
                out.push(("temporary file written, not renamed".into(), m));
            }
            _ => {}
        }
        let mut after = self.clone();
        after.apply(op);
        out.push(("after".into(), after));
        out
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut names: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for (p, o) in &self.files {
            names.entry(*o).or_default().push(p.clone());
        }
        let mut s = Snapshot::new();
        for (p, perm) in &self.dirs {
            s.insert(p.clone(), Snap::Dir { perm: *perm });
        }
        for (p, o) in &self.files {
            let obj = &self.objs[o];
            s.insert(
                p.clone(),
                Snap::File {
                    content: obj.content.clone(),
                    perm: obj.perm,
                    links: names[o].clone(),
                },
            );
        }
        s
    }

    /// A model of what a real tree holds below `base` (to go on from a state
    /// found after a crash). Files with bad content count as empty.
    pub fn from_tree(t: &Tree, base: &str) -> Model {
        let mut m = Model::new(base);
        let mut by_ino: HashMap<u64, u64> = HashMap::new();
        for (p, n) in &t.nodes {
            if !under(p, base) {
                continue;
            }
            match n.kind {
                Kind::Dir => {
                    m.dirs.insert(p.clone(), n.perm);
                }
                Kind::File => {
                    let o = match by_ino.get(&n.ino) {
                        Some(&o) => o,
                        None => {
                            let content = match t.files.get(p).map(|d| decode(d)) {
                                Some(Decoded::Full(k)) => Content::Version(k),
                                _ => Content::Empty,
                            };
                            let o = m.new_obj(content);
                            if let Some(obj) = m.objs.get_mut(&o) {
                                obj.perm = n.perm;
                            }
                            by_ino.insert(n.ino, o);
                            o
                        }
                    };
                    m.files.insert(p.clone(), o);
                }
                _ => {}
            }
        }
        m
    }

    fn all_dirs(&self) -> Vec<String> {
        let mut v = vec![self.base.clone()];
        v.extend(self.dirs.keys().cloned());
        v
    }

    fn within(&self, p: &str, dir: &str) -> bool {
        p == dir || p.starts_with(&format!("{dir}/"))
    }
}

/// Whether `op` moves a directory to another parent: that takes the
/// volume's mover lease, so it may wait and then fail with EBUSY while
/// another mount (or a crashed one, for up to 30 s) holds it — documented.
pub fn is_dir_move(m: &Model, op: &Op) -> bool {
    matches!(op, Op::Rename { from, to }
        if m.dirs.contains_key(from) && parent_of(from) != parent_of(to))
}

/// Tuning of [`gen_op`].
#[derive(Clone, Copy, Debug)]
pub struct GenConfig {
    /// Largest file version.
    pub max_big: usize,
    /// Deepest directory created (1 = directly in the base).
    pub max_depth: usize,
    /// Percentage of operations whose error the model predicts.
    pub error_pct: u32,
}

fn pick<'a, T>(rng: &mut StdRng, v: &'a [T]) -> Option<&'a T> {
    if v.is_empty() {
        None
    } else {
        Some(&v[rng.gen_range(0..v.len())])
    }
}

/// A random operation valid in `m` (or, `error_pct` % of the time, one whose
/// errno the model predicts). `seq` numbers this writer's versions.
pub fn gen_op(
    m: &Model,
    rng: &mut StdRng,
    writer: &str,
    seq: &mut u64,
    cfg: GenConfig,
) -> (Op, Expect) {
    for _ in 0..50 {
        if let Some(r) = try_gen(m, rng, writer, seq, cfg) {
            return r;
        }
    }
    // Always possible: a new version of a file directly in the base.
    *seq += 1;
    let path = join(&m.base, pick(rng, &FILE_NAMES).copied().unwrap_or("f0"));
    (
        Op::Write {
            path,
            ver: VersionKey {
                writer: writer.to_string(),
                seq: *seq,
            },
            len: pick_size(rng, cfg.max_big),
            fsync: false,
        },
        Ok(()),
    )
}

fn try_gen(
    m: &Model,
    rng: &mut StdRng,
    writer: &str,
    seq: &mut u64,
    cfg: GenConfig,
) -> Option<(Op, Expect)> {
    let dirs = m.all_dirs();
    let files: Vec<String> = m.files.keys().cloned().collect();
    let sub_dirs: Vec<String> = m.dirs.keys().cloned().collect();
    let mut version = |rng: &mut StdRng| {
        *seq += 1;
        (
            VersionKey {
                writer: writer.to_string(),
                seq: *seq,
            },
            pick_size(rng, cfg.max_big),
        )
    };
    // A name for a new file in some directory (None if it already exists).
    let new_file = |rng: &mut StdRng| -> Option<String> {
        let d = pick(rng, &dirs)?;
        let p = join(d, pick(rng, &FILE_NAMES)?);
        (!m.exists(&p)).then_some(p)
    };
    let erring = rng.gen_range(0..100) < cfg.error_pct;
    let op = match rng.gen_range(0..100) {
        // A new version in place, of an existing or a new file.
        0..=21 => {
            let path = if rng.gen_bool(0.6) {
                pick(rng, &files)?.clone()
            } else {
                new_file(rng)?
            };
            let (ver, len) = version(rng);
            (
                Op::Write {
                    path,
                    ver,
                    len,
                    fsync: rng.gen_bool(0.2),
                },
                Ok(()),
            )
        }
        22..=29 => {
            if erring {
                let path = pick(rng, &files)?.clone();
                let (ver, len) = version(rng);
                (Op::Excl { path, ver, len }, Err(libc::EEXIST))
            } else {
                let path = new_file(rng)?;
                let (ver, len) = version(rng);
                (Op::Excl { path, ver, len }, Ok(()))
            }
        }
        30..=39 => {
            let d = pick(rng, &dirs)?;
            let p = join(d, pick(rng, &DIR_NAMES)?);
            if m.exists(&p) {
                if !erring {
                    return None;
                }
                (
                    Op::Mkdir {
                        path: p,
                        perm: 0o755,
                    },
                    Err(libc::EEXIST),
                )
            } else {
                if m.depth(&p) > cfg.max_depth {
                    return None;
                }
                let perm = *pick(rng, &[0o755, 0o750, 0o700])?;
                (Op::Mkdir { path: p, perm }, Ok(()))
            }
        }
        // Rename a file: over another file or to a new name.
        40..=49 => {
            let from = pick(rng, &files)?.clone();
            let to = if rng.gen_bool(0.5) {
                pick(rng, &files)?.clone()
            } else {
                new_file(rng)?
            };
            if to == from {
                return None;
            }
            (Op::Rename { from, to }, Ok(()))
        }
        // Rename a directory: a new name, into another directory, over an
        // empty one; or (predicted EINVAL) into itself.
        50..=57 => {
            let from = pick(rng, &sub_dirs)?.clone();
            if erring {
                let inside: Vec<String> = dirs
                    .iter()
                    .filter(|d| m.within(d, &from))
                    .cloned()
                    .collect();
                let d = pick(rng, &inside)?;
                let to = join(d, pick(rng, &DIR_NAMES)?);
                if m.exists(&to) && !m.is_dir(&to) {
                    return None;
                }
                if to == from {
                    return None;
                }
                (Op::Rename { from, to }, Err(libc::EINVAL))
            } else {
                let outside: Vec<String> = dirs
                    .iter()
                    .filter(|d| !m.within(d, &from))
                    .cloned()
                    .collect();
                let d = pick(rng, &outside)?;
                let to = join(d, pick(rng, &DIR_NAMES)?);
                if to == from || (m.exists(&to) && !m.is_empty_dir(&to)) {
                    return None;
                }
                // Keep the tree from growing ever deeper by moves.
                if m.depth(&to) + m.height(&from) > cfg.max_depth + 2 {
                    return None;
                }
                (Op::Rename { from, to }, Ok(()))
            }
        }
        58..=66 => {
            if erring {
                let path = new_file(rng)?;
                (Op::Unlink { path }, Err(libc::ENOENT))
            } else {
                (
                    Op::Unlink {
                        path: pick(rng, &files)?.clone(),
                    },
                    Ok(()),
                )
            }
        }
        67..=73 => {
            let path = pick(rng, &sub_dirs)?.clone();
            if m.is_empty_dir(&path) {
                (Op::Rmdir { path }, Ok(()))
            } else if erring || rng.gen_bool(0.3) {
                (Op::Rmdir { path }, Err(libc::ENOTEMPTY))
            } else {
                return None;
            }
        }
        74..=77 => {
            if rng.gen_bool(0.5) {
                let path = pick(rng, &files)?.clone();
                let perm = *pick(rng, &[0o644, 0o600, 0o640, 0o444, 0o755])?;
                (Op::Chmod { path, perm }, Ok(()))
            } else {
                let path = pick(rng, &sub_dirs)?.clone();
                let perm = *pick(rng, &[0o755, 0o750, 0o700, 0o711])?;
                (Op::Chmod { path, perm }, Ok(()))
            }
        }
        78..=87 => {
            let path = if rng.gen_bool(0.7) {
                pick(rng, &files)?.clone()
            } else {
                new_file(rng)?
            };
            let (ver, len) = version(rng);
            let tmp = join(parent_of(&path), &format!(".tmp-{writer}-{}", ver.seq));
            (
                Op::Replace {
                    path,
                    tmp,
                    ver,
                    len,
                },
                Ok(()),
            )
        }
        88..=92 => {
            let from = pick(rng, &files)?.clone();
            if erring {
                let to = pick(rng, &files)?.clone();
                (Op::Link { from, to }, Err(libc::EEXIST))
            } else {
                let to = new_file(rng)?;
                (Op::Link { from, to }, Ok(()))
            }
        }
        _ => (
            Op::Read {
                path: pick(rng, &files)?.clone(),
            },
            Ok(()),
        ),
    };
    Some(op)
}

/// Runs `op` on the mount at `root`. A read returns the bytes read.
pub fn exec(root: &Path, op: &Op) -> io::Result<Option<Vec<u8>>> {
    let p = |s: &str| root.join(s);
    match op {
        Op::Write {
            path,
            ver,
            len,
            fsync,
        } => write_file(
            &p(path),
            &version_bytes(&ver.writer, ver.seq, *len),
            false,
            *fsync,
        )?,
        Op::Excl { path, ver, len } => write_file(
            &p(path),
            &version_bytes(&ver.writer, ver.seq, *len),
            true,
            false,
        )?,
        Op::Mkdir { path, perm } => fs::DirBuilder::new().mode(*perm).create(p(path))?,
        Op::Rename { from, to } => fs::rename(p(from), p(to))?,
        Op::Unlink { path } => fs::remove_file(p(path))?,
        Op::Rmdir { path } => fs::remove_dir(p(path))?,
        Op::Chmod { path, perm } => {
            fs::set_permissions(p(path), fs::Permissions::from_mode(*perm))?
        }
        Op::Replace {
            path,
            tmp,
            ver,
            len,
        } => {
            write_file(
                &p(tmp),
                &version_bytes(&ver.writer, ver.seq, *len),
                false,
                false,
            )?;
            fs::rename(p(tmp), p(path))?
        }
        Op::Link { from, to } => fs::hard_link(p(from), p(to))?,
        Op::Read { path } => return fs::read(p(path)).map(Some),
    }
    Ok(None)
}

/// Runs `op` and checks its result against the model: the expected errno,
/// and for a read the exact content. Returns Err(description) on a
/// mismatch; `Err` with `io` set when the call failed unexpectedly.
pub fn exec_checked(root: &Path, m: &Model, op: &Op, expect: &Expect) -> Result<(), Mismatch> {
    let r = exec(root, op);
    match (r, expect) {
        (Ok(data), Ok(())) => {
            if let (Op::Read { path }, Some(data)) = (op, data) {
                let want = m.files.get(path).and_then(|o| m.objs.get(o));
                let got = match decode(&data) {
                    Decoded::Empty => Content::Empty,
                    Decoded::Full(k) => Content::Version(k),
                    Decoded::Prefix(k, n) => {
                        Content::Bad(format!("truncated: first {n} bytes of {k}"))
                    }
                    Decoded::Bad(s) => Content::Bad(s),
                };
                if want.map(|o| &o.content) != Some(&got) {
                    return Err(Mismatch {
                        errno: None,
                        detail: format!(
                            "{op}: read {got}, the model holds {}",
                            want.map_or("nothing".to_string(), |o| o.content.to_string())
                        ),
                    });
                }
            }
            Ok(())
        }
        (Ok(_), Err(e)) => Err(Mismatch {
            errno: None,
            detail: format!("{op}: succeeded, expected {}", errno_name(*e)),
        }),
        (Err(err), Err(e)) if err.raw_os_error() == Some(*e) => Ok(()),
        (Err(err), want) => Err(Mismatch {
            errno: err.raw_os_error(),
            detail: format!(
                "{op}: failed with {}, expected {}",
                errno_of(&err),
                match want {
                    Ok(()) => "success".to_string(),
                    Err(e) => errno_name(*e),
                }
            ),
        }),
    }
}

/// An operation that did not do what the model said.
#[derive(Clone, Debug)]
pub struct Mismatch {
    /// The errno of an unexpected failure (None: wrong success or content).
    pub errno: Option<i32>,
    pub detail: String,
}
