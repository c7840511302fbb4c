//! The operations of the oracle tester, how they print (as the syscalls they
//! make), and the seeded generator that picks them.
//!
//! An operation names everything it needs (paths relative to the volume
//! root, fd slots, data seeds), so a recorded list replays on its own: that
//! is what shrinking relies on.

use std::fmt;

use rand::rngs::StdRng;
use rand::Rng;

/// Open file descriptor slots per side (fd slot i on CassFS <-> slot i on
/// the oracle).
pub const SLOTS: usize = 6;

/// Names used at every level: few, so that operations collide often.
const NAMES: [&str; 9] = ["a", "b", "c", "d", "e", "d0", "d1", "d2", "l"];
/// The names directories are usually made with.
const DIRS: [&str; 3] = ["d0", "d1", "d2"];
/// Symlink targets: all relative and without "..", so that nothing
/// resolves outside the volume / oracle directory.
const TARGETS: [&str; 7] = ["a", "b", "d0", "d0/a", "nope", "l", "d1/d0"];
const XATTRS: [&str; 3] = ["user.a", "user.b", "user.c"];
const MODES: [u32; 8] = [0o644, 0o600, 0o755, 0o700, 0o444, 0o640, 0o4755, 0o1777];

const MIB: u64 = 1 << 20;

/// How a file is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acc {
    R,
    W,
    RW,
}

#[derive(Clone, Debug)]
pub enum Op {
    /// Closes what `slot` holds first (if anything).
    Open {
        slot: usize,
        path: String,
        acc: Acc,
        creat: bool,
        excl: bool,
        trunc: bool,
        append: bool,
        mode: u32,
    },
    Close {
        slot: usize,
    },
    /// `off: None` is write(2) at the file position, else pwrite(2).
    Write {
        slot: usize,
        off: Option<u64>,
        len: usize,
        seed: u64,
    },
    /// `off: None` is read(2) at the file position, else pread(2).
    Read {
        slot: usize,
        off: Option<u64>,
        len: usize,
    },
    Ftruncate {
        slot: usize,
        len: u64,
    },
    Fsync {
        slot: usize,
        data_only: bool,
    },
    Fstat {
        slot: usize,
    },
    Truncate {
        path: String,
        len: u64,
    },
    Stat {
        path: String,
        follow: bool,
    },
    Rename {
        from: String,
        to: String,
        flags: u32,
    },
    Link {
        from: String,
        to: String,
    },
    Unlink {
        path: String,
    },
    Mkdir {
        path: String,
        mode: u32,
    },
    Rmdir {
        path: String,
    },
    Symlink {
        target: String,
        path: String,
    },
    Readlink {
        path: String,
    },
    Chmod {
        path: String,
        mode: u32,
    },
    /// Sets mtime (atime omitted), then stats to read it back.
    Utimens {
        path: String,
        sec: i64,
        nsec: i64,
        follow: bool,
    },
    SetXattr {
        path: String,
        name: String,
        len: usize,
        seed: u64,
        flags: i32,
    },
    GetXattr {
        path: String,
        name: String,
    },
    RemoveXattr {
        path: String,
        name: String,
    },
    ListDir {
        path: String,
    },
    /// Whole-file write: open(O_WRONLY|flags), write, close.
    WriteFile {
        path: String,
        creat: bool,
        excl: bool,
        trunc: bool,
        append: bool,
        off: Option<u64>,
        len: usize,
        seed: u64,
    },
    /// Whole-file read: open(O_RDONLY), pread, close.
    ReadFile {
        path: String,
        off: u64,
        len: usize,
    },
    /// Compare the whole trees (through this step's mount).
    CheckTree,
}

/// One step: an operation and the CassFS mount (0 or 1) it goes through.
#[derive(Clone, Debug)]
pub struct Step {
    pub mount: usize,
    pub op: Op,
}

impl Op {
    /// A short name of the kind of operation (for mismatch signatures).
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Open { .. } => "open",
            Op::Close { .. } => "close",
            Op::Write { .. } => "write",
            Op::Read { .. } => "read",
            Op::Ftruncate { .. } => "ftruncate",
            Op::Fsync { .. } => "fsync",
            Op::Fstat { .. } => "fstat",
            Op::Truncate { .. } => "truncate",
            Op::Stat { .. } => "stat",
            Op::Rename { .. } => "rename",
            Op::Link { .. } => "link",
            Op::Unlink { .. } => "unlink",
            Op::Mkdir { .. } => "mkdir",
            Op::Rmdir { .. } => "rmdir",
            Op::Symlink { .. } => "symlink",
            Op::Readlink { .. } => "readlink",
            Op::Chmod { .. } => "chmod",
            Op::Utimens { .. } => "utimensat",
            Op::SetXattr { .. } => "setxattr",
            Op::GetXattr { .. } => "getxattr",
            Op::RemoveXattr { .. } => "removexattr",
            Op::ListDir { .. } => "readdir",
            Op::WriteFile { .. } => "writefile",
            Op::ReadFile { .. } => "readfile",
            Op::CheckTree => "check_tree",
        }
    }
}

pub fn open_flags_str(acc: Acc, creat: bool, excl: bool, trunc: bool, append: bool) -> String {
    let mut s = match acc {
        Acc::R => "O_RDONLY",
        Acc::W => "O_WRONLY",
        Acc::RW => "O_RDWR",
    }
    .to_string();
    for (on, name) in [
        (creat, "O_CREAT"),
        (excl, "O_EXCL"),
        (trunc, "O_TRUNC"),
        (append, "O_APPEND"),
    ] {
        if on {
            s.push('|');
            s.push_str(name);
        }
    }
    s
}

fn rename_flags_str(flags: u32) -> &'static str {
    match flags {
        0 => "0",
        libc::RENAME_NOREPLACE => "RENAME_NOREPLACE",
        libc::RENAME_EXCHANGE => "RENAME_EXCHANGE",
        _ => "?",
    }
}

fn xattr_flags_str(flags: i32) -> &'static str {
    match flags {
        0 => "0",
        libc::XATTR_CREATE => "XATTR_CREATE",
        libc::XATTR_REPLACE => "XATTR_REPLACE",
        _ => "?",
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Open {
                slot,
                path,
                acc,
                creat,
                excl,
                trunc,
                append,
                mode,
            } => write!(
                f,
                "fd{slot} = open(\"{path}\", {}, 0{mode:o})",
                open_flags_str(*acc, *creat, *excl, *trunc, *append)
            ),
            Op::Close { slot } => write!(f, "close(fd{slot})"),
            Op::Write {
                slot,
                off: None,
                len,
                seed,
            } => write!(f, "write(fd{slot}, pattern({seed}, {len}), {len})"),
            Op::Write {
                slot,
                off: Some(o),
                len,
                seed,
            } => write!(f, "pwrite(fd{slot}, pattern({seed}, {len}), {len}, {o})"),
            Op::Read {
                slot,
                off: None,
                len,
            } => write!(f, "read(fd{slot}, buf, {len})"),
            Op::Read {
                slot,
                off: Some(o),
                len,
            } => write!(f, "pread(fd{slot}, buf, {len}, {o})"),
            Op::Ftruncate { slot, len } => write!(f, "ftruncate(fd{slot}, {len})"),
            Op::Fsync {
                slot,
                data_only: false,
            } => write!(f, "fsync(fd{slot})"),
            Op::Fsync {
                slot,
                data_only: true,
            } => write!(f, "fdatasync(fd{slot})"),
            Op::Fstat { slot } => write!(f, "fstat(fd{slot})"),
            Op::Truncate { path, len } => write!(f, "truncate(\"{path}\", {len})"),
            Op::Stat { path, follow: true } => write!(f, "stat(\"{path}\")"),
            Op::Stat {
                path,
                follow: false,
            } => write!(f, "lstat(\"{path}\")"),
            Op::Rename { from, to, flags } => write!(
                f,
                "renameat2(\"{from}\", \"{to}\", {})",
                rename_flags_str(*flags)
            ),
            Op::Link { from, to } => write!(f, "link(\"{from}\", \"{to}\")"),
            Op::Unlink { path } => write!(f, "unlink(\"{path}\")"),
            Op::Mkdir { path, mode } => write!(f, "mkdir(\"{path}\", 0{mode:o})"),
            Op::Rmdir { path } => write!(f, "rmdir(\"{path}\")"),
            Op::Symlink { target, path } => write!(f, "symlink(\"{target}\", \"{path}\")"),
            Op::Readlink { path } => write!(f, "readlink(\"{path}\")"),
            Op::Chmod { path, mode } => write!(f, "chmod(\"{path}\", 0{mode:o})"),
            Op::Utimens {
                path,
                sec,
                nsec,
                follow,
            } => write!(
                f,
                "utimensat(\"{path}\", [UTIME_OMIT, {{{sec}, {nsec}}}], {}); {}stat",
                if *follow { "0" } else { "AT_SYMLINK_NOFOLLOW" },
                if *follow { "" } else { "l" }
            ),
            Op::SetXattr {
                path,
                name,
                len,
                seed,
                flags,
            } => write!(
                f,
                "setxattr(\"{path}\", \"{name}\", pattern({seed}, {len}), {len}, {})",
                xattr_flags_str(*flags)
            ),
            Op::GetXattr { path, name } => write!(f, "getxattr(\"{path}\", \"{name}\")"),
            Op::RemoveXattr { path, name } => write!(f, "removexattr(\"{path}\", \"{name}\")"),
            Op::ListDir { path } => write!(f, "readdir(\"{path}\")"),
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
                write!(
                    f,
                    "fd = open(\"{path}\", {}, 0644); ",
                    open_flags_str(Acc::W, *creat, *excl, *trunc, *append)
                )?;
                match off {
                    None => write!(f, "write(fd, pattern({seed}, {len}), {len}); ")?,
                    Some(o) => write!(f, "pwrite(fd, pattern({seed}, {len}), {len}, {o}); ")?,
                }
                write!(f, "close(fd)")
            }
            Op::ReadFile { path, off, len } => write!(
                f,
                "fd = open(\"{path}\", O_RDONLY); pread(fd, buf, {len}, {off}); close(fd)"
            ),
            Op::CheckTree => write!(f, "<compare whole trees>"),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[mount {}] {}", self.mount, self.op)
    }
}

// ---------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------

/// What the generator may know of the current state (from the oracle side):
/// for each fd slot, the size of the open file (None: slot empty).
pub struct View {
    pub slot_sizes: [Option<u64>; SLOTS],
    /// What exists in the oracle tree: (path, "file" | "dir" | "symlink").
    pub entries: Vec<(String, &'static str)>,
}

fn pick<'a>(rng: &mut StdRng, xs: &[&'a str]) -> &'a str {
    xs[rng.gen_range(0..xs.len())]
}

/// A path of depth 1 to 3 over the small name space.
fn path(rng: &mut StdRng, view: &View) -> String {
    if !view.entries.is_empty() && rng.gen_bool(0.4) {
        return view.entries[rng.gen_range(0..view.entries.len())].0.clone();
    }
    let name = pick(rng, &NAMES);
    match rng.gen_range(0..10) {
        0..=4 => name.to_string(),
        5..=8 => format!("{}/{name}", pick(rng, &DIRS)),
        _ => format!("{}/{}/{name}", pick(rng, &DIRS), pick(rng, &DIRS)),
    }
}

/// A path whose last component is usually a directory name.
fn dir_path(rng: &mut StdRng, view: &View) -> String {
    if rng.gen_bool(0.25) {
        return path(rng, view);
    }
    let dirs: Vec<&String> = view
        .entries
        .iter()
        .filter(|(_, k)| *k == "dir")
        .map(|(p, _)| p)
        .collect();
    if !dirs.is_empty() && rng.gen_bool(0.4) {
        return dirs[rng.gen_range(0..dirs.len())].clone();
    }
    let name = pick(rng, &DIRS);
    match rng.gen_range(0..10) {
        0..=5 => name.to_string(),
        6..=8 => format!("{}/{name}", pick(rng, &DIRS)),
        _ => format!("{}/{}/{name}", pick(rng, &DIRS), pick(rng, &DIRS)),
    }
}

fn mode(rng: &mut StdRng) -> u32 {
    if rng.gen_bool(0.7) {
        0o644
    } else {
        MODES[rng.gen_range(0..MODES.len())]
    }
}

/// A write length: mostly small, some medium, a few over 1 MiB.
fn write_len(rng: &mut StdRng) -> usize {
    match rng.gen_range(0..100) {
        0..=79 => rng.gen_range(1..8192),
        80..=95 => rng.gen_range(8192..300_000),
        _ => rng.gen_range(MIB as usize..(MIB as usize * 3 / 2)),
    }
}

/// An offset relative to a file of `size` bytes: inside, at EOF, past EOF,
/// and sometimes far past it.
fn offset(rng: &mut StdRng, size: u64) -> u64 {
    match rng.gen_range(0..100) {
        0..=49 => rng.gen_range(0..=size),
        50..=59 => size,
        60..=89 => size + rng.gen_range(1..100_000),
        _ => rng.gen_range(MIB..3 * MIB),
    }
}

fn trunc_len(rng: &mut StdRng, size: u64) -> u64 {
    match rng.gen_range(0..10) {
        0..=1 => 0,
        2..=4 => rng.gen_range(0..=size),
        5..=8 => size + rng.gen_range(1..70_000),
        _ => rng.gen_range(MIB..2 * MIB + 5),
    }
}

fn read_len(rng: &mut StdRng) -> usize {
    match rng.gen_range(0..10) {
        0..=7 => rng.gen_range(1..20_000),
        _ => rng.gen_range(20_000..(2 * MIB as usize)),
    }
}

fn rename_flags(rng: &mut StdRng) -> u32 {
    match rng.gen_range(0..10) {
        0..=6 => 0,
        7..=8 => libc::RENAME_NOREPLACE,
        _ => libc::RENAME_EXCHANGE,
    }
}

fn xattr_name(rng: &mut StdRng) -> String {
    pick(rng, &XATTRS).to_string()
}

/// Path-based operations (both modes).
fn path_op(rng: &mut StdRng, view: &View) -> Op {
    match rng.gen_range(0..100) {
        0..=4 => Op::Truncate {
            path: path(rng, view),
            len: trunc_len(rng, 5000),
        },
        5..=14 => Op::Stat {
            path: path(rng, view),
            follow: rng.gen_bool(0.3),
        },
        15..=32 => {
            let (from, to) = if rng.gen_bool(0.3) {
                (dir_path(rng, view), dir_path(rng, view))
            } else {
                (path(rng, view), path(rng, view))
            };
            Op::Rename {
                from,
                to,
                flags: rename_flags(rng),
            }
        }
        33..=38 => Op::Link {
            from: path(rng, view),
            to: path(rng, view),
        },
        39..=48 => Op::Unlink {
            path: path(rng, view),
        },
        49..=57 => Op::Mkdir {
            path: dir_path(rng, view),
            mode: if rng.gen_bool(0.8) { 0o755 } else { mode(rng) },
        },
        58..=62 => Op::Rmdir {
            path: dir_path(rng, view),
        },
        63..=67 => Op::Symlink {
            target: pick(rng, &TARGETS).to_string(),
            path: path(rng, view),
        },
        68..=70 => Op::Readlink {
            path: path(rng, view),
        },
        71..=74 => Op::Chmod {
            path: path(rng, view),
            mode: mode(rng),
        },
        75..=78 => Op::Utimens {
            path: path(rng, view),
            sec: rng.gen_range(0..1_400_000_000),
            nsec: rng.gen_range(0..1_000_000_000),
            follow: rng.gen_bool(0.7),
        },
        79..=86 => Op::SetXattr {
            path: path(rng, view),
            name: xattr_name(rng),
            len: rng.gen_range(0..120),
            seed: rng.gen(),
            flags: match rng.gen_range(0..4) {
                0 => libc::XATTR_CREATE,
                1 => libc::XATTR_REPLACE,
                _ => 0,
            },
        },
        87..=91 => Op::GetXattr {
            path: path(rng, view),
            name: xattr_name(rng),
        },
        92..=94 => Op::RemoveXattr {
            path: path(rng, view),
            name: xattr_name(rng),
        },
        _ => Op::ListDir {
            path: if rng.gen_bool(0.3) {
                String::new()
            } else {
                dir_path(rng, view)
            },
        },
    }
}

/// The next operation in single-mount mode (file descriptors kept open
/// across steps).
pub fn next_single(rng: &mut StdRng, view: &View) -> Op {
    let open: Vec<usize> = (0..SLOTS)
        .filter(|&s| view.slot_sizes[s].is_some())
        .collect();
    let free: Vec<usize> = (0..SLOTS)
        .filter(|&s| view.slot_sizes[s].is_none())
        .collect();
    let roll = rng.gen_range(0..100);
    // fd operations need an open slot; without one, open something.
    if roll < 55 && (open.is_empty() || roll < 14) {
        let slot = if !free.is_empty() && rng.gen_bool(0.95) {
            free[rng.gen_range(0..free.len())]
        } else {
            rng.gen_range(0..SLOTS)
        };
        let acc = match rng.gen_range(0..10) {
            0..=2 => Acc::R,
            3..=4 => Acc::W,
            _ => Acc::RW,
        };
        return Op::Open {
            slot,
            path: path(rng, view),
            acc,
            creat: rng.gen_bool(0.6),
            excl: rng.gen_bool(0.1),
            trunc: rng.gen_bool(0.15),
            append: rng.gen_bool(0.15),
            mode: mode(rng),
        };
    }
    if roll < 55 {
        let slot = open[rng.gen_range(0..open.len())];
        let size = view.slot_sizes[slot].unwrap_or(0);
        return match roll {
            14..=22 => Op::Close { slot },
            23..=36 => Op::Write {
                slot,
                off: if rng.gen_bool(0.3) {
                    None
                } else {
                    Some(offset(rng, size))
                },
                len: write_len(rng),
                seed: rng.gen(),
            },
            37..=45 => Op::Read {
                slot,
                off: if rng.gen_bool(0.3) {
                    None
                } else {
                    Some(if rng.gen_bool(0.8) {
                        rng.gen_range(0..=size + 10)
                    } else {
                        offset(rng, size)
                    })
                },
                len: read_len(rng),
            },
            46..=48 => Op::Ftruncate {
                slot,
                len: trunc_len(rng, size),
            },
            49..=51 => Op::Fsync {
                slot,
                data_only: rng.gen_bool(0.3),
            },
            _ => Op::Fstat { slot },
        };
    }
    path_op(rng, view)
}

/// The next operation in two-mount mode: only whole-file data operations,
/// so that all data is committed when the other mount looks.
pub fn next_two(rng: &mut StdRng, view: &View) -> Op {
    match rng.gen_range(0..100) {
        0..=24 => Op::WriteFile {
            path: path(rng, view),
            creat: rng.gen_bool(0.8),
            excl: rng.gen_bool(0.1),
            trunc: rng.gen_bool(0.2),
            append: rng.gen_bool(0.15),
            off: if rng.gen_bool(0.3) {
                None
            } else {
                Some(offset(rng, 5000))
            },
            len: write_len(rng),
            seed: rng.gen(),
        },
        25..=39 => Op::ReadFile {
            path: path(rng, view),
            off: if rng.gen_bool(0.8) {
                rng.gen_range(0..8000)
            } else {
                offset(rng, 5000)
            },
            len: read_len(rng),
        },
        _ => path_op(rng, view),
    }
}
