//! The raw Cassandra floor of the benchmark suite (`scripts/bench`).
//!
//! Does the same rows as CassFS does for each workload, with the same driver
//! and store API, but without FUSE, caches or the filesystem layer: the
//! fastest a CassFS-like layout can go on this Cassandra. Sequential per file
//! (the benchmark's workloads are one sequential process); block I/O uses the
//! store's parallel put/get in batches of 16 blocks (CassFS uploads up to 16
//! dirty blocks at once).
//!
//! Usage:
//!   raw_floor --server H --keyspace K --owner N --env E [--tree DIR]
//!             [--mib N] [--files N] WORKLOAD
//! WORKLOAD: W1 (copy the tree in), W2 (read every file), W3 (stat every
//! path, list every directory), W4 (N MiB of 1 MiB blocks put, then got),
//! W5 (N empty files created then deleted in one directory).
//! W2 and W3 read the volume W1 wrote for the same tree (same owner/env).
//! Prints one JSON object on stdout: {"workload": .., "phases": {name:
//! {"seconds", "files", "bytes", "statements"}}}.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use cassfs::store::{
    Change, Content, Dentry, Hash, Inode, Kind, Store, StoreConfig, Write, BLOCK_SIZE, INLINE_MAX,
};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Blocks per put/get call (CassFS's MAX_DIRTY_BLOCKS).
const BLOCK_BATCH: usize = 16;
/// Inode numbers reserved at once (CassFS's INO_BATCH).
const INO_BATCH: u64 = 1024;

type Res<T> = Result<T, String>;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

fn sha256(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(data);
    h.finalize().into()
}

/// One entry of the walked tree: directories before their contents, names
/// sorted (the same order as the Python driver). Symlinks and other
/// non-regular files are skipped, as the driver skips them.
struct Entry {
    rel: PathBuf,
    is_dir: bool,
}

fn walk(root: &Path) -> Res<Vec<Entry>> {
    fn rec(root: &Path, rel: &Path, out: &mut Vec<Entry>) -> Res<()> {
        let dir = root.join(rel);
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok())
            .collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let ft = e.file_type().map_err(|e| e.to_string())?;
            let r = rel.join(e.file_name());
            if ft.is_dir() {
                out.push(Entry {
                    rel: r.clone(),
                    is_dir: true,
                });
                rec(root, &r, out)?;
            } else if ft.is_file() {
                out.push(Entry {
                    rel: r,
                    is_dir: false,
                });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    rec(root, Path::new(""), &mut out)?;
    Ok(out)
}

fn name_of(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_default()
}

struct Floor {
    store: Store,
    free: std::ops::Range<u64>,
}

#[derive(Default)]
struct Phase {
    seconds: f64,
    files: u64,
    bytes: u64,
    statements: u64,
}

impl Floor {
    fn alloc(&mut self) -> Res<u64> {
        if self.free.is_empty() {
            self.free = self
                .store
                .reserve_inodes(INO_BATCH)
                .map_err(|e| e.to_string())?;
        }
        let ino = self.free.start;
        self.free.start += 1;
        Ok(ino)
    }

    fn new_inode(ino: u64, kind: Kind, parent: u64, content: Content, size: u64) -> Inode {
        let now = now_ns();
        Inode {
            ino,
            kind,
            perm: if kind == Kind::Dir { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
            rdev: 0,
            size,
            atime_ns: now,
            mtime_ns: now,
            ctime_ns: now,
            parent,
            version: rand::random::<i64>(),
            target: Vec::new(),
            content,
            xattrs: Default::default(),
        }
    }

    /// The parent's new mtime/ctime (and link count), as CassFS writes it
    /// after every entry it adds or removes.
    /// A new empty inode named `name` in the root, with the root's times
    /// (and link count, for a directory) updated.
    fn add_to_root(&mut self, name: &[u8], kind: Kind) -> Res<Inode> {
        let mut root = self
            .store
            .get_inode(1)
            .map_err(|e| e.to_string())?
            .ok_or("no root")?;
        let ino = self.alloc()?;
        let inode = Self::new_inode(ino, kind, 1, Content::default(), 0);
        self.store
            .put_inode(&inode, Vec::new())
            .map_err(|e| e.to_string())?;
        let d = Dentry {
            name: name.to_vec(),
            ino,
            kind,
        };
        self.store.put_dentry(1, &d).map_err(|e| e.to_string())?;
        self.touch_parent(&mut root, i32::from(kind == Kind::Dir))?;
        Ok(inode)
    }

    fn touch_parent(&self, parent: &mut Inode, dir_delta: i32) -> Res<()> {
        let now = now_ns();
        parent.mtime_ns = now;
        parent.ctime_ns = now;
        parent.nlink = (parent.nlink as i64 + dir_delta as i64) as u32;
        let c = Change::times(now);
        self.store
            .apply(vec![Write::Update(parent.ino, c)])
            .map_err(|e| e.to_string())
    }

    /// Writes a file's content rows: inline, or blocks + refs.
    fn content_for(&self, ino: u64, data: &[u8]) -> Res<Content> {
        if data.len() as u64 <= INLINE_MAX {
            return Ok(Content::Inline(Arc::new(data.to_vec())));
        }
        let mut hashes = Vec::new();
        for batch in data.chunks(BLOCK_SIZE as usize * BLOCK_BATCH) {
            let blocks: Vec<(Hash, Arc<Vec<u8>>)> = batch
                .chunks(BLOCK_SIZE as usize)
                .map(|b| (sha256(b), Arc::new(b.to_vec())))
                .collect();
            hashes.extend(blocks.iter().map(|(h, _)| *h));
            self.store.put_blocks(blocks).map_err(|e| e.to_string())?;
        }
        self.store
            .change_refs(ino, &hashes, &[])
            .map_err(|e| e.to_string())?;
        Ok(Content::Blocks(Arc::new(hashes)))
    }

    fn w1(&mut self, tree: &Path) -> Res<Phase> {
        let entries = walk(tree)?;
        let s0 = self.store.statement_count();
        let t0 = Instant::now();
        let root = self
            .store
            .get_inode(1)
            .map_err(|e| e.to_string())?
            .ok_or("no root")?;
        let mut dirs: HashMap<PathBuf, Inode> = HashMap::new();
        dirs.insert(PathBuf::new(), root);
        let mut ph = Phase::default();
        for e in &entries {
            let parent_rel = e.rel.parent().unwrap_or(Path::new("")).to_path_buf();
            let ino = self.alloc()?;
            let parent_ino = dirs[&parent_rel].ino;
            let inode = if e.is_dir {
                Self::new_inode(ino, Kind::Dir, parent_ino, Content::default(), 0)
            } else {
                let data = std::fs::read(tree.join(&e.rel)).map_err(|err| err.to_string())?;
                ph.files += 1;
                ph.bytes += data.len() as u64;
                let content = self.content_for(ino, &data)?;
                Self::new_inode(ino, Kind::File, parent_ino, content, data.len() as u64)
            };
            self.store
                .put_inode(&inode, Vec::new())
                .map_err(|e| e.to_string())?;
            let d = Dentry {
                name: name_of(&e.rel),
                ino,
                kind: inode.kind,
            };
            self.store
                .put_dentry(parent_ino, &d)
                .map_err(|e| e.to_string())?;
            let mut parent = dirs.remove(&parent_rel).unwrap();
            self.touch_parent(&mut parent, if e.is_dir { 1 } else { 0 })?;
            dirs.insert(parent_rel, parent);
            if e.is_dir {
                dirs.insert(e.rel.clone(), inode);
            }
        }
        ph.seconds = t0.elapsed().as_secs_f64();
        ph.statements = self.store.statement_count() - s0;
        Ok(ph)
    }

    /// Resolves a path's entry from its parent's inode number.
    fn lookup(&self, parent: u64, rel: &Path) -> Res<Dentry> {
        self.store
            .get_dentry(parent, &name_of(rel))
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{}: not in the volume (run W1 first)", rel.display()))
    }

    fn w2(&mut self, tree: &Path) -> Res<Phase> {
        let entries = walk(tree)?;
        let s0 = self.store.statement_count();
        let t0 = Instant::now();
        let mut dirs: HashMap<PathBuf, u64> = HashMap::new();
        dirs.insert(PathBuf::new(), 1);
        let mut ph = Phase::default();
        for e in &entries {
            let parent = dirs[e.rel.parent().unwrap_or(Path::new(""))];
            let d = self.lookup(parent, &e.rel)?;
            if e.is_dir {
                dirs.insert(e.rel.clone(), d.ino);
                continue;
            }
            let i = self
                .store
                .get_inode(d.ino)
                .map_err(|e| e.to_string())?
                .ok_or("no inode")?;
            let n = match &i.content {
                Content::Inline(data) => data.len() as u64,
                Content::Blocks(hashes) => {
                    let mut n = 0u64;
                    for batch in hashes.chunks(BLOCK_BATCH) {
                        for b in self.store.get_blocks(batch).map_err(|e| e.to_string())? {
                            n += b.len() as u64;
                        }
                    }
                    n
                }
            };
            if n != i.size {
                return Err(format!(
                    "{}: read {n} bytes, size {}",
                    e.rel.display(),
                    i.size
                ));
            }
            ph.files += 1;
            ph.bytes += n;
        }
        ph.seconds = t0.elapsed().as_secs_f64();
        ph.statements = self.store.statement_count() - s0;
        Ok(ph)
    }

    fn w3(&mut self, tree: &Path) -> Res<Phase> {
        let entries = walk(tree)?;
        let s0 = self.store.statement_count();
        let t0 = Instant::now();
        let mut dirs: Vec<u64> = vec![1];
        let mut by_path: HashMap<PathBuf, u64> = HashMap::new();
        by_path.insert(PathBuf::new(), 1);
        let mut ph = Phase::default();
        // stat every path: its entry, then its inode.
        for e in &entries {
            let parent = by_path[e.rel.parent().unwrap_or(Path::new(""))];
            let d = self.lookup(parent, &e.rel)?;
            self.store
                .get_inode(d.ino)
                .map_err(|e| e.to_string())?
                .ok_or("no inode")?;
            if e.is_dir {
                by_path.insert(e.rel.clone(), d.ino);
                dirs.push(d.ino);
            }
            ph.files += 1;
        }
        // list every directory.
        for ino in dirs {
            self.store.list_dir(ino).map_err(|e| e.to_string())?;
        }
        ph.seconds = t0.elapsed().as_secs_f64();
        ph.statements = self.store.statement_count() - s0;
        Ok(ph)
    }

    fn w4(&mut self, mib: u64) -> Res<(Phase, Phase)> {
        let mut base = vec![0u8; BLOCK_SIZE as usize];
        rand::thread_rng().fill_bytes(&mut base);
        let s0 = self.store.statement_count();
        let t0 = Instant::now();
        let mut inode = self.add_to_root(b"w4-big", Kind::File)?;
        let ino = inode.ino;
        let mut hashes = Vec::new();
        let mut idx = 0u64;
        while idx < mib {
            let n = (mib - idx).min(BLOCK_BATCH as u64);
            let blocks: Vec<(Hash, Arc<Vec<u8>>)> = (idx..idx + n)
                .map(|i| {
                    let mut b = base.clone();
                    b[..8].copy_from_slice(&i.to_le_bytes());
                    (sha256(&b), Arc::new(b))
                })
                .collect();
            hashes.extend(blocks.iter().map(|(h, _)| *h));
            self.store.put_blocks(blocks).map_err(|e| e.to_string())?;
            idx += n;
        }
        self.store
            .change_refs(ino, &hashes, &[])
            .map_err(|e| e.to_string())?;
        inode.size = mib * BLOCK_SIZE;
        inode.content = Content::Blocks(Arc::new(hashes));
        self.store
            .update_content(&inode)
            .map_err(|e| e.to_string())?;
        let write = Phase {
            seconds: t0.elapsed().as_secs_f64(),
            files: 1,
            bytes: mib * BLOCK_SIZE,
            statements: self.store.statement_count() - s0,
        };

        let s0 = self.store.statement_count();
        let t0 = Instant::now();
        let d = self.lookup(1, Path::new("w4-big"))?;
        let i = self
            .store
            .get_inode(d.ino)
            .map_err(|e| e.to_string())?
            .ok_or("no inode")?;
        let Content::Blocks(hashes) = &i.content else {
            return Err("w4-big has no blocks".into());
        };
        let mut n = 0u64;
        for batch in hashes.chunks(BLOCK_BATCH) {
            for b in self.store.get_blocks(batch).map_err(|e| e.to_string())? {
                n += b.len() as u64;
            }
        }
        if n != i.size {
            return Err(format!("w4-big: read {n} bytes, size {}", i.size));
        }
        let read = Phase {
            seconds: t0.elapsed().as_secs_f64(),
            files: 1,
            bytes: n,
            statements: self.store.statement_count() - s0,
        };
        Ok((write, read))
    }

    fn w5(&mut self, files: u64) -> Res<(Phase, Phase)> {
        let s0 = self.store.statement_count();
        let t0 = Instant::now();
        let mut dir = self.add_to_root(b"w5", Kind::Dir)?;
        let dino = dir.ino;
        let mut made = Vec::with_capacity(files as usize);
        for k in 0..files {
            let ino = self.alloc()?;
            let i = Self::new_inode(ino, Kind::File, dino, Content::default(), 0);
            self.store
                .put_inode(&i, Vec::new())
                .map_err(|e| e.to_string())?;
            let name = format!("f{k:05}").into_bytes();
            let d = Dentry {
                name: name.clone(),
                ino,
                kind: Kind::File,
            };
            self.store.put_dentry(dino, &d).map_err(|e| e.to_string())?;
            self.touch_parent(&mut dir, 0)?;
            made.push((name, ino));
        }
        let create = Phase {
            seconds: t0.elapsed().as_secs_f64(),
            files,
            bytes: 0,
            statements: self.store.statement_count() - s0,
        };
        let s0 = self.store.statement_count();
        let t0 = Instant::now();
        for (name, ino) in &made {
            self.store
                .delete_dentry(dino, name, *ino)
                .map_err(|e| e.to_string())?;
            self.store.delete_inode(*ino).map_err(|e| e.to_string())?;
            self.touch_parent(&mut dir, 0)?;
        }
        let delete = Phase {
            seconds: t0.elapsed().as_secs_f64(),
            files,
            bytes: 0,
            statements: self.store.statement_count() - s0,
        };
        Ok((create, delete))
    }
}

fn phase_json(name: &str, p: &Phase) -> String {
    format!(
        "\"{name}\": {{\"seconds\": {:.6}, \"files\": {}, \"bytes\": {}, \"statements\": {}}}",
        p.seconds, p.files, p.bytes, p.statements
    )
}

fn run() -> Res<()> {
    let mut server = "127.0.0.1".to_string();
    let mut keyspace = String::new();
    let mut owner: i64 = 0;
    let mut env = String::new();
    let mut tree: Option<PathBuf> = None;
    let mut mib: u64 = 1024;
    let mut files: u64 = 10_000;
    let mut workload = String::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |what: &str| args.next().ok_or(format!("{what} needs a value"));
        match a.as_str() {
            "--server" => server = val("--server")?,
            "--keyspace" => keyspace = val("--keyspace")?,
            "--owner" => {
                owner = val("--owner")?
                    .parse()
                    .map_err(|e| format!("--owner: {e}"))?
            }
            "--env" => env = val("--env")?,
            "--tree" => tree = Some(PathBuf::from(val("--tree")?)),
            "--mib" => mib = val("--mib")?.parse().map_err(|e| format!("--mib: {e}"))?,
            "--files" => {
                files = val("--files")?
                    .parse()
                    .map_err(|e| format!("--files: {e}"))?
            }
            w if !w.starts_with('-') => workload = w.to_string(),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if keyspace.is_empty() || env.is_empty() || workload.is_empty() {
        return Err(
            "usage: raw_floor --server H --keyspace K --owner N --env E \
                    [--tree DIR] [--mib N] [--files N] W1|W2|W3|W4|W5"
                .into(),
        );
    }
    let cfg = StoreConfig::new(&server, &keyspace);
    let store = Store::open(&cfg, owner, &env).map_err(|e| e.to_string())?;
    store.ensure_volume(0, 0).map_err(|e| e.to_string())?;
    let mut f = Floor { store, free: 0..0 };
    let need_tree = || {
        tree.clone()
            .ok_or_else(|| format!("{workload} needs --tree"))
    };
    let phases = match workload.as_str() {
        "W1" => vec![("W1", f.w1(&need_tree()?)?)],
        "W2" => vec![("W2", f.w2(&need_tree()?)?)],
        "W3" => vec![("W3", f.w3(&need_tree()?)?)],
        "W4" => {
            let (w, r) = f.w4(mib)?;
            vec![("W4_write", w), ("W4_read", r)]
        }
        "W5" => {
            let (c, d) = f.w5(files)?;
            vec![("W5_create", c), ("W5_delete", d)]
        }
        other => return Err(format!("unknown workload {other}")),
    };
    let body: Vec<String> = phases.iter().map(|(n, p)| phase_json(n, p)).collect();
    println!(
        "{{\"workload\": \"{workload}\", \"phases\": {{{}}}}}",
        body.join(", ")
    );
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("raw_floor: {e}");
        std::process::exit(1);
    }
}
