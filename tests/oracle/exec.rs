//! Applying operations to one side (a CassFS mount or the plain oracle
//! directory) through raw syscalls, what they return, and snapshots of a
//! whole tree.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::common::pattern;
use crate::ops::{Acc, Op, SLOTS};

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(-1)
}

/// The symbolic name of an errno (for reports): the daemon's own table.
pub fn errno_name(n: i32) -> String {
    cassfs::error::errno_name(n).map_or_else(|| format!("errno {n}"), str::to_string)
}

/// The comparable part of a stat: type, permission bits, size (not for
/// directories), link count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatSum {
    pub kind: &'static str,
    pub perm: u32,
    pub size: Option<i64>,
    pub nlink: u64,
    /// Only when set explicitly (utimensat to a time before
    /// [`EXPLICIT_MTIME_BEFORE`]); see [`Out::normalize`].
    pub mtime: Option<(i64, i64)>,
}

/// Operations set mtimes before this (2017-09): an mtime earlier than this
/// was set explicitly and has not been changed by a modification since.
pub const EXPLICIT_MTIME_BEFORE: i64 = 1_500_000_000;

fn kind_name(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "file",
        libc::S_IFDIR => "dir",
        libc::S_IFLNK => "symlink",
        _ => "other",
    }
}

impl StatSum {
    fn of(st: &libc::stat) -> StatSum {
        let kind = kind_name(st.st_mode);
        StatSum {
            kind,
            perm: st.st_mode & 0o7777,
            size: (kind != "dir").then_some(st.st_size),
            nlink: st.st_nlink,
            mtime: (st.st_mtime < EXPLICIT_MTIME_BEFORE).then_some((st.st_mtime, st.st_mtime_nsec)),
        }
    }

    /// Keeps this (CassFS) mtime only where the oracle's is explicit.
    pub fn normalize(&mut self, oracle: &StatSum) {
        if oracle.mtime.is_none() {
            self.mtime = None;
        }
    }
}

/// What an operation returned.
#[derive(Clone, PartialEq, Eq)]
pub enum Out {
    Ok,
    Err(i32),
    /// The fd slot is empty (on this side).
    NoFd,
    Count(usize),
    Data(Vec<u8>),
    Stat(StatSum),
    Target(Vec<u8>),
    Value(Vec<u8>),
    Names(Vec<String>),
    Mtime(i64, i64),
    Seq(Vec<Out>),
}

pub fn short_hash(data: &[u8]) -> String {
    let h = Sha256::digest(data);
    h.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl fmt::Debug for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Out::Ok => write!(f, "ok"),
            Out::Err(e) => write!(f, "{}", errno_name(*e)),
            Out::NoFd => write!(f, "no fd"),
            Out::Count(n) => write!(f, "{n}"),
            Out::Data(d) => write!(f, "{} bytes (sha256 {})", d.len(), short_hash(d)),
            Out::Stat(s) => write!(f, "{s:?}"),
            Out::Target(t) => write!(f, "{:?}", String::from_utf8_lossy(t)),
            Out::Value(v) => write!(f, "value of {} bytes {}", v.len(), short_hash(v)),
            Out::Names(n) => write!(f, "{n:?}"),
            Out::Mtime(s, ns) => write!(f, "mtime {s}.{ns:09}"),
            Out::Seq(xs) => f.debug_list().entries(xs).finish(),
        }
    }
}

impl Out {
    /// Drops from `self` (CassFS) what is not compared because of what the
    /// oracle returned: mtimes the oracle did not have set explicitly.
    pub fn normalize(&mut self, oracle: &Out) {
        match (self, oracle) {
            (Out::Stat(a), Out::Stat(b)) => a.normalize(b),
            (Out::Seq(xs), Out::Seq(ys)) => {
                for (x, y) in xs.iter_mut().zip(ys) {
                    x.normalize(y);
                }
            }
            _ => {}
        }
    }

    /// Extra detail on how two results differ (first differing byte).
    pub fn explain(a: &Out, b: &Out) -> String {
        match (a, b) {
            (Out::Data(x), Out::Data(y)) => {
                let first = x.iter().zip(y.iter()).position(|(p, q)| p != q);
                match first {
                    Some(i) => format!(
                        "first differing byte at {i}: cassfs {:#04x}, oracle {:#04x}",
                        x[i], y[i]
                    ),
                    None => format!("lengths differ: cassfs {}, oracle {}", x.len(), y.len()),
                }
            }
            (Out::Seq(xs), Out::Seq(ys)) => xs
                .iter()
                .zip(ys.iter())
                .find(|(p, q)| p != q)
                .map(|(p, q)| Out::explain(p, q))
                .unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// A coarse description (for mismatch signatures).
    pub fn shape(&self) -> String {
        match self {
            Out::Err(e) => errno_name(*e),
            Out::Ok => "ok".into(),
            Out::NoFd => "nofd".into(),
            Out::Seq(xs) => xs.iter().map(Out::shape).collect::<Vec<_>>().join(","),
            Out::Count(_) => "count".into(),
            Out::Data(_) => "data".into(),
            Out::Stat(_) => "stat".into(),
            Out::Target(_) => "target".into(),
            Out::Value(_) => "value".into(),
            Out::Names(_) => "names".into(),
            Out::Mtime(..) => "mtime".into(),
        }
    }
}

fn ret(r: libc::c_int) -> Out {
    if r < 0 {
        Out::Err(errno())
    } else {
        Out::Ok
    }
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("string without NUL")
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

fn open_flags(acc: Acc, creat: bool, excl: bool, trunc: bool, append: bool) -> libc::c_int {
    let mut fl = match acc {
        Acc::R => libc::O_RDONLY,
        Acc::W => libc::O_WRONLY,
        Acc::RW => libc::O_RDWR,
    } | libc::O_CLOEXEC;
    if creat {
        fl |= libc::O_CREAT;
    }
    if excl {
        fl |= libc::O_EXCL;
    }
    if trunc {
        fl |= libc::O_TRUNC;
    }
    if append {
        fl |= libc::O_APPEND;
    }
    fl
}

/// Writes all of `data` (looping on short writes); the count, or the errno
/// if nothing could be written.
fn write_all(fd: libc::c_int, data: &[u8], off: Option<u64>) -> Out {
    let mut done = 0usize;
    while done < data.len() {
        let rest = &data[done..];
        // SAFETY: fd is an fd of ours; rest is readable for rest.len() bytes.
        let r = unsafe {
            match off {
                Some(o) => libc::pwrite(
                    fd,
                    rest.as_ptr().cast(),
                    rest.len(),
                    (o + done as u64) as libc::off_t,
                ),
                None => libc::write(fd, rest.as_ptr().cast(), rest.len()),
            }
        };
        if r < 0 {
            if done == 0 {
                return Out::Err(errno());
            }
            break;
        }
        if r == 0 {
            break;
        }
        done += r as usize;
    }
    Out::Count(done)
}

/// Reads up to `len` bytes (looping on short reads until EOF).
fn read_upto(fd: libc::c_int, len: usize, off: Option<u64>) -> Out {
    let mut buf = vec![0u8; len];
    let mut done = 0usize;
    while done < len {
        let rest = &mut buf[done..];
        // SAFETY: fd is an fd of ours; rest is writable for rest.len() bytes.
        let r = unsafe {
            match off {
                Some(o) => libc::pread(
                    fd,
                    rest.as_mut_ptr().cast(),
                    rest.len(),
                    (o + done as u64) as libc::off_t,
                ),
                None => libc::read(fd, rest.as_mut_ptr().cast(), rest.len()),
            }
        };
        if r < 0 {
            if done == 0 {
                return Out::Err(errno());
            }
            break;
        }
        if r == 0 {
            break;
        }
        done += r as usize;
    }
    buf.truncate(done);
    Out::Data(buf)
}

fn stat_path(p: &CString, follow: bool) -> Result<libc::stat, i32> {
    // SAFETY: stat is plain data; zeroed is a valid initial value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    let r = unsafe {
        if follow {
            libc::stat(p.as_ptr(), &mut st)
        } else {
            libc::lstat(p.as_ptr(), &mut st)
        }
    };
    if r < 0 {
        Err(errno())
    } else {
        Ok(st)
    }
}

fn fstat(fd: libc::c_int) -> Result<libc::stat, i32> {
    // SAFETY: stat is plain data; zeroed is a valid initial value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: an fd of ours and a valid out pointer.
    if unsafe { libc::fstat(fd, &mut st) } < 0 {
        Err(errno())
    } else {
        Ok(st)
    }
}

fn close(fd: libc::c_int) -> Out {
    // SAFETY: an fd of ours, closed once (its slot is cleared by the caller).
    ret(unsafe { libc::close(fd) })
}

/// One side: a root directory and its fd slots.
pub struct Side {
    pub root: PathBuf,
    fds: [Option<libc::c_int>; SLOTS],
}

impl Side {
    pub fn new(root: &Path) -> Side {
        Side {
            root: root.to_path_buf(),
            fds: [None; SLOTS],
        }
    }

    fn p(&self, rel: &str) -> CString {
        if rel.is_empty() {
            cpath(&self.root)
        } else {
            cpath(&self.root.join(rel))
        }
    }

    /// The size of the file open in each slot (None: empty slot).
    pub fn slot_sizes(&self) -> [Option<u64>; SLOTS] {
        let mut out = [None; SLOTS];
        for (i, fd) in self.fds.iter().enumerate() {
            if let Some(fd) = fd {
                out[i] = Some(fstat(*fd).map(|st| st.st_size as u64).unwrap_or(0));
            }
        }
        out
    }

    /// Closes every open slot, in slot order; the close results.
    pub fn close_all(&mut self) -> Vec<(usize, Out)> {
        let mut out = Vec::new();
        for i in 0..SLOTS {
            if let Some(fd) = self.fds[i].take() {
                out.push((i, close(fd)));
            }
        }
        out
    }

    pub fn apply(&mut self, op: &Op) -> Out {
        match op {
            Op::Open {
                slot,
                path,
                acc,
                creat,
                excl,
                trunc,
                append,
                mode,
            } => {
                let mut outs = Vec::new();
                if let Some(fd) = self.fds[*slot].take() {
                    outs.push(close(fd));
                }
                let p = self.p(path);
                let fl = open_flags(*acc, *creat, *excl, *trunc, *append);
                // SAFETY: valid C string; mode passed as the variadic arg.
                let fd = unsafe { libc::open(p.as_ptr(), fl, *mode as libc::c_uint) };
                if fd < 0 {
                    outs.push(Out::Err(errno()));
                } else {
                    self.fds[*slot] = Some(fd);
                    outs.push(Out::Ok);
                }
                if outs.len() == 1 {
                    outs.pop().expect("one result")
                } else {
                    Out::Seq(outs)
                }
            }
            Op::Close { slot } => match self.fds[*slot].take() {
                Some(fd) => close(fd),
                None => Out::NoFd,
            },
            Op::Write {
                slot,
                off,
                len,
                seed,
            } => match self.fds[*slot] {
                Some(fd) => write_all(fd, &pattern(*seed, *len), *off),
                None => Out::NoFd,
            },
            Op::Read { slot, off, len } => match self.fds[*slot] {
                Some(fd) => read_upto(fd, *len, *off),
                None => Out::NoFd,
            },
            Op::Ftruncate { slot, len } => match self.fds[*slot] {
                // SAFETY: an fd of ours.
                Some(fd) => ret(unsafe { libc::ftruncate(fd, *len as libc::off_t) }),
                None => Out::NoFd,
            },
            Op::Fsync { slot, data_only } => match self.fds[*slot] {
                // SAFETY: an fd of ours.
                Some(fd) => ret(unsafe {
                    if *data_only {
                        libc::fdatasync(fd)
                    } else {
                        libc::fsync(fd)
                    }
                }),
                None => Out::NoFd,
            },
            Op::Fstat { slot } => match self.fds[*slot] {
                Some(fd) => match fstat(fd) {
                    Ok(st) => Out::Stat(StatSum::of(&st)),
                    Err(e) => Out::Err(e),
                },
                None => Out::NoFd,
            },
            Op::Truncate { path, len } => {
                let p = self.p(path);
                // SAFETY: valid C string.
                ret(unsafe { libc::truncate(p.as_ptr(), *len as libc::off_t) })
            }
            Op::Stat { path, follow } => match stat_path(&self.p(path), *follow) {
                Ok(st) => Out::Stat(StatSum::of(&st)),
                Err(e) => Out::Err(e),
            },
            Op::Rename { from, to, flags } => {
                let (f, t) = (self.p(from), self.p(to));
                // SAFETY: valid C strings.
                ret(unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        f.as_ptr(),
                        libc::AT_FDCWD,
                        t.as_ptr(),
                        *flags,
                    )
                })
            }
            Op::Link { from, to } => {
                let (f, t) = (self.p(from), self.p(to));
                // SAFETY: valid C strings.
                ret(unsafe {
                    libc::linkat(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), 0)
                })
            }
            Op::Unlink { path } => {
                let p = self.p(path);
                // SAFETY: valid C string.
                ret(unsafe { libc::unlink(p.as_ptr()) })
            }
            Op::Mkdir { path, mode } => {
                let p = self.p(path);
                // SAFETY: valid C string.
                ret(unsafe { libc::mkdir(p.as_ptr(), *mode as libc::mode_t) })
            }
            Op::Rmdir { path } => {
                let p = self.p(path);
                // SAFETY: valid C string.
                ret(unsafe { libc::rmdir(p.as_ptr()) })
            }
            Op::Symlink { target, path } => {
                let (t, p) = (cstr(target), self.p(path));
                // SAFETY: valid C strings.
                ret(unsafe { libc::symlink(t.as_ptr(), p.as_ptr()) })
            }
            Op::Readlink { path } => match readlink(&self.p(path)) {
                Ok(t) => Out::Target(t),
                Err(e) => Out::Err(e),
            },
            Op::Chmod { path, mode } => {
                let p = self.p(path);
                // SAFETY: valid C string.
                ret(unsafe { libc::chmod(p.as_ptr(), *mode as libc::mode_t) })
            }
            Op::Utimens {
                path,
                sec,
                nsec,
                follow,
            } => {
                let p = self.p(path);
                let ts = [
                    libc::timespec {
                        tv_sec: 0,
                        tv_nsec: libc::UTIME_OMIT,
                    },
                    libc::timespec {
                        tv_sec: *sec as libc::time_t,
                        tv_nsec: *nsec as _,
                    },
                ];
                let fl = if *follow {
                    0
                } else {
                    libc::AT_SYMLINK_NOFOLLOW
                };
                // SAFETY: valid C string and a two-element timespec array.
                let r = unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), ts.as_ptr(), fl) };
                if r < 0 {
                    return Out::Err(errno());
                }
                match stat_path(&p, *follow) {
                    Ok(st) => Out::Mtime(st.st_mtime, st.st_mtime_nsec),
                    Err(e) => Out::Seq(vec![Out::Ok, Out::Err(e)]),
                }
            }
            Op::SetXattr {
                path,
                name,
                len,
                seed,
                flags,
            } => {
                let (p, n) = (self.p(path), cstr(name));
                let v = pattern(*seed, *len);
                // SAFETY: valid C strings; v readable for v.len() bytes.
                ret(unsafe {
                    libc::setxattr(p.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), *flags)
                })
            }
            Op::GetXattr { path, name } => match getxattr(&self.p(path), name, true) {
                Ok(v) => Out::Value(v),
                Err(e) => Out::Err(e),
            },
            Op::RemoveXattr { path, name } => {
                let (p, n) = (self.p(path), cstr(name));
                // SAFETY: valid C strings.
                ret(unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) })
            }
            Op::ListDir { path } => {
                let dir = if path.is_empty() {
                    self.root.clone()
                } else {
                    self.root.join(path)
                };
                match list_dir(&dir) {
                    Ok(names) => Out::Names(names),
                    Err(e) => Out::Err(e),
                }
            }
            Op::WriteFile {
                path,
                creat,
                excl,
                trunc,
                append,
                off,
                len,
                seed,
            } => {
                let p = self.p(path);
                let fl = open_flags(Acc::W, *creat, *excl, *trunc, *append);
                // SAFETY: valid C string; mode as the variadic arg.
                let fd = unsafe { libc::open(p.as_ptr(), fl, 0o644 as libc::c_uint) };
                if fd < 0 {
                    return Out::Err(errno());
                }
                let w = write_all(fd, &pattern(*seed, *len), *off);
                Out::Seq(vec![w, close(fd)])
            }
            Op::ReadFile { path, off, len } => {
                let p = self.p(path);
                // SAFETY: valid C string.
                let fd = unsafe { libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
                if fd < 0 {
                    return Out::Err(errno());
                }
                let r = read_upto(fd, *len, Some(*off));
                Out::Seq(vec![r, close(fd)])
            }
            Op::CheckTree => Out::Ok,
        }
    }
}

impl Drop for Side {
    fn drop(&mut self) {
        self.close_all();
    }
}

fn readlink(p: &CString) -> Result<Vec<u8>, i32> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C string; buf writable for buf.len() bytes.
    let r = unsafe { libc::readlink(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(errno());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

fn getxattr(p: &CString, name: &str, follow: bool) -> Result<Vec<u8>, i32> {
    let n = cstr(name);
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: valid C strings; buf writable for buf.len() bytes.
    let r = unsafe {
        if follow {
            libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        } else {
            libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        }
    };
    if r < 0 {
        return Err(errno());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

fn llistxattr(p: &CString) -> Result<Vec<String>, i32> {
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: valid C string; buf writable for buf.len() bytes.
    let r = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(errno());
    }
    buf.truncate(r as usize);
    let mut names: Vec<String> = buf
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    names.sort();
    Ok(names)
}

fn list_dir(dir: &Path) -> Result<Vec<String>, i32> {
    let rd = std::fs::read_dir(dir).map_err(|e| e.raw_os_error().unwrap_or(-1))?;
    let mut names = Vec::new();
    for e in rd {
        let e = e.map_err(|e| e.raw_os_error().unwrap_or(-1))?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

// ---------------------------------------------------------------------------
// Whole-tree snapshots
// ---------------------------------------------------------------------------

/// What is compared of one entry of a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub stat: StatSum,
    pub target: Option<String>,
    pub xattrs: Vec<(String, String)>,
    pub content: Option<String>,
}

/// path (relative, "" for the root) -> entry, or the errno met reading it.
pub type Tree = BTreeMap<String, Result<Entry, String>>;

fn entry(abs: &Path) -> Result<(Entry, bool), String> {
    let p = cpath(abs);
    let st = stat_path(&p, false).map_err(|e| format!("lstat: {}", errno_name(e)))?;
    let stat = StatSum::of(&st);
    let target = if stat.kind == "symlink" {
        let t = readlink(&p).map_err(|e| format!("readlink: {}", errno_name(e)))?;
        Some(String::from_utf8_lossy(&t).into_owned())
    } else {
        None
    };
    let mut xattrs = Vec::new();
    for name in llistxattr(&p).map_err(|e| format!("llistxattr: {}", errno_name(e)))? {
        let v = getxattr(&p, &name, false)
            .map_err(|e| format!("lgetxattr {name}: {}", errno_name(e)))?;
        xattrs.push((name, short_hash(&v)));
    }
    let content = if stat.kind == "file" {
        let data = std::fs::read(abs).map_err(|e| format!("read: {e}"))?;
        Some(format!("{} bytes sha256 {}", data.len(), short_hash(&data)))
    } else {
        None
    };
    let is_dir = stat.kind == "dir";
    Ok((
        Entry {
            stat,
            target,
            xattrs,
            content,
        },
        is_dir,
    ))
}

fn walk(root: &Path, rel: &str, out: &mut Tree) {
    let abs = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    match entry(&abs) {
        Err(e) => {
            out.insert(rel.to_string(), Err(e));
        }
        Ok((mut e, is_dir)) => {
            if rel.is_empty() {
                // The roots' own permissions differ (temp dir vs volume root).
                e.stat.perm = 0;
            }
            out.insert(rel.to_string(), Ok(e));
            if is_dir {
                match list_dir(&abs) {
                    Err(err) => {
                        out.insert(format!("{rel}/<readdir>"), Err(errno_name(err)));
                    }
                    Ok(names) => {
                        for n in names {
                            let child = if rel.is_empty() {
                                n
                            } else {
                                format!("{rel}/{n}")
                            };
                            walk(root, &child, out);
                        }
                    }
                }
            }
        }
    }
}

pub fn snapshot(root: &Path) -> Tree {
    let mut t = Tree::new();
    walk(root, "", &mut t);
    t
}

/// The differences between two trees: (path, what differs, cassfs, oracle).
pub fn diff_trees(fs: &Tree, oracle: &Tree) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    let keys: std::collections::BTreeSet<&String> = fs.keys().chain(oracle.keys()).collect();
    for k in keys {
        let field = |name: &str, a: String, b: String| (k.clone(), name.to_string(), a, b);
        match (fs.get(k), oracle.get(k)) {
            (None, Some(b)) => out.push(field("missing", "absent".into(), format!("{b:?}"))),
            (Some(a), None) => out.push(field("extra", format!("{a:?}"), "absent".into())),
            (Some(Ok(a)), Some(Ok(b))) => {
                if a.stat.kind != b.stat.kind {
                    out.push(field("type", a.stat.kind.into(), b.stat.kind.into()));
                    continue;
                }
                if a.stat.perm != b.stat.perm {
                    out.push(field(
                        "perm",
                        format!("{:o}", a.stat.perm),
                        format!("{:o}", b.stat.perm),
                    ));
                }
                if a.stat.size != b.stat.size {
                    out.push(field(
                        "size",
                        format!("{:?}", a.stat.size),
                        format!("{:?}", b.stat.size),
                    ));
                }
                if b.stat.mtime.is_some() && a.stat.mtime != b.stat.mtime {
                    out.push(field(
                        "mtime",
                        format!("{:?}", a.stat.mtime),
                        format!("{:?}", b.stat.mtime),
                    ));
                }
                if a.stat.nlink != b.stat.nlink {
                    out.push(field(
                        "nlink",
                        a.stat.nlink.to_string(),
                        b.stat.nlink.to_string(),
                    ));
                }
                if a.target != b.target {
                    out.push(field(
                        "target",
                        format!("{:?}", a.target),
                        format!("{:?}", b.target),
                    ));
                }
                if a.xattrs != b.xattrs {
                    out.push(field(
                        "xattrs",
                        format!("{:?}", a.xattrs),
                        format!("{:?}", b.xattrs),
                    ));
                }
                if a.content != b.content {
                    out.push(field(
                        "content",
                        format!("{:?}", a.content),
                        format!("{:?}", b.content),
                    ));
                }
            }
            (Some(a), Some(b)) => {
                if a != b {
                    out.push(field("error", format!("{a:?}"), format!("{b:?}")));
                }
            }
            (None, None) => {}
        }
    }
    out
}

/// Every path under `root` (not the root) with its type, without reading
/// anything else: what the generator picks existing paths from.
pub fn list_tree(root: &Path) -> Vec<(String, &'static str)> {
    fn go(root: &Path, rel: &str, out: &mut Vec<(String, &'static str)>) {
        let abs = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let Ok(names) = list_dir(&abs) else { return };
        for n in names {
            let child = if rel.is_empty() {
                n
            } else {
                format!("{rel}/{n}")
            };
            let Ok(st) = stat_path(&cpath(&root.join(&child)), false) else {
                continue;
            };
            let kind = kind_name(st.st_mode);
            out.push((child.clone(), kind));
            if kind == "dir" {
                go(root, &child, out);
            }
        }
    }
    let mut out = Vec::new();
    go(root, "", &mut out);
    out
}
