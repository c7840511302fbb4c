//! POSIX behaviour of a mounted volume, through std::fs and libc, with the
//! error cases. Every test mounts its own volume (unique owner in this
//! process's keyspace) on its own directory.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::thread;
use std::time::Duration;

use sha2::{Digest, Sha256};

use common::*;

/// A mount of a volume nobody else uses.
fn mount(env: &str) -> Mount {
    Volume::unique(env).mount(&[])
}

/// Timestamps may be stored with coarse resolution: sleep long enough that
/// a later change is visible in whole seconds too.
fn tick() {
    thread::sleep(Duration::from_millis(1100));
}

fn mtime_ns(m: &fs::Metadata) -> i128 {
    m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128
}

fn ctime_ns(m: &fs::Metadata) -> i128 {
    m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128
}

// ---------------------------------------------------------------------------
// Files: create, read, write, open flags
// ---------------------------------------------------------------------------

#[test]
fn create_write_read_close() {
    let m = mount("create");
    let p = m.join("a.txt");
    let mut f = File::create(&p).expect("create a.txt");
    f.write_all(b"hello, world\n").expect("write");
    drop(f);
    assert_eq!(read(&p), b"hello, world\n");
    let md = fs::metadata(&p).expect("stat a.txt");
    assert!(md.is_file(), "a regular file");
    assert_eq!(md.len(), 13, "size");
    assert_eq!(md.nlink(), 1, "nlink");
    // Read while still open for writing, after seeking.
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .expect("open rw");
    f.seek(SeekFrom::Start(7)).expect("seek");
    f.write_all(b"WORLD").expect("overwrite in the middle");
    let mut buf = String::new();
    f.seek(SeekFrom::Start(0)).expect("seek 0");
    f.read_to_string(&mut buf)
        .expect("read own writes before close");
    assert_eq!(buf, "hello, WORLD\n");
    drop(f);
    assert_eq!(read(&p), b"hello, WORLD\n");
    // ENOENT without O_CREAT; EISDIR writing a directory.
    assert_errno(File::open(m.join("missing")), libc::ENOENT, "open missing");
    assert_errno(
        OpenOptions::new().write(true).open(m.path()),
        libc::EISDIR,
        "open the root for writing",
    );
    assert_errno(
        File::create(m.join("a.txt/x")),
        libc::ENOTDIR,
        "create under a file",
    );
}

#[test]
fn append_trunc_excl() {
    let m = mount("flags");
    let p = m.join("f");
    write(&p, b"abc");
    {
        let mut f = OpenOptions::new()
            .append(true)
            .open(&p)
            .expect("open O_APPEND");
        f.write_all(b"def").expect("append");
        f.write_all(b"gh").expect("append again");
    }
    assert_eq!(read(&p), b"abcdefgh", "O_APPEND appends");
    {
        // O_APPEND writes go to the end even after a seek.
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&p)
            .expect("open O_APPEND|O_RDWR");
        f.seek(SeekFrom::Start(0)).expect("seek");
        f.write_all(b"!").expect("append after seek");
    }
    assert_eq!(read(&p), b"abcdefgh!", "O_APPEND ignores the offset");
    {
        let mut f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&p)
            .expect("open O_TRUNC");
        assert_eq!(f.metadata().expect("fstat").len(), 0, "truncated at open");
        f.write_all(b"xy").expect("write");
    }
    assert_eq!(read(&p), b"xy", "O_TRUNC then write");
    // O_TRUNC without writing anything.
    drop(
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&p)
            .expect("open O_TRUNC"),
    );
    assert_eq!(
        fs::metadata(&p).expect("stat").len(),
        0,
        "empty after O_TRUNC"
    );
    // O_EXCL
    assert_errno(
        OpenOptions::new().write(true).create_new(true).open(&p),
        libc::EEXIST,
        "O_CREAT|O_EXCL on an existing file",
    );
    let q = m.join("new");
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&q)
        .expect("O_CREAT|O_EXCL on a new name");
    assert!(q.exists(), "created with O_EXCL");
    // Mode at creation.
    let r = m.join("mode600");
    drop(
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&r)
            .expect("create with mode 0600"),
    );
    assert_eq!(
        fs::metadata(&r).expect("stat").permissions().mode() & 0o7777,
        0o600,
        "creation mode"
    );
}

#[test]
fn writes_past_eof_leave_zero_holes() {
    let m = mount("holes");
    let p = m.join("sparse");
    write(&p, b"abc");
    {
        let f = OpenOptions::new().write(true).open(&p).expect("open");
        f.write_all_at(b"XYZ", 100_000)
            .expect("write past EOF (inline → big)");
        f.write_all_at(b"END", 3 * (1 << 20) + 5)
            .expect("write past a block");
    }
    let data = read(&p);
    assert_eq!(data.len(), 3 * (1 << 20) + 8, "size after writes past EOF");
    assert_eq!(&data[..3], b"abc");
    assert!(data[3..100_000].iter().all(|&b| b == 0), "hole 1 is zeros");
    assert_eq!(&data[100_000..100_003], b"XYZ");
    assert!(
        data[100_003..3 * (1 << 20) + 5].iter().all(|&b| b == 0),
        "hole 2 is zeros"
    );
    assert_eq!(&data[3 * (1 << 20) + 5..], b"END");
    // A small file with a small hole stays small and zero-filled.
    let q = m.join("small");
    {
        let f = File::create(&q).expect("create");
        f.write_all_at(b"z", 10).expect("pwrite at 10");
    }
    assert_eq!(read(&q), b"\0\0\0\0\0\0\0\0\0\0z");
}

#[test]
fn truncate_up_and_down() {
    let m = mount("truncate");
    let p = m.join("t");
    let content = pattern(unique_seed(), 200_000);
    write(&p, &content);
    let f = OpenOptions::new().write(true).open(&p).expect("open");
    f.set_len(1000).expect("truncate down (big → inline)");
    drop(f);
    assert_eq!(read(&p), &content[..1000], "truncated down");
    let f = OpenOptions::new().write(true).open(&p).expect("open");
    f.set_len(5000).expect("truncate up");
    drop(f);
    let d = read(&p);
    assert_eq!(d.len(), 5000);
    assert_eq!(&d[..1000], &content[..1000]);
    assert!(d[1000..].iter().all(|&b| b == 0), "extension is zeros");
    // Through the path (truncate(2)) and across a block boundary.
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).expect("c path");
    // SAFETY: valid C string.
    let r = unsafe { libc::truncate(c.as_ptr(), (1 << 20) + 17) };
    assert_eq!(r, 0, "truncate(2) up: {}", std::io::Error::last_os_error());
    assert_eq!(fs::metadata(&p).expect("stat").len(), (1 << 20) + 17);
    let d = read(&p);
    assert_eq!(&d[..1000], &content[..1000]);
    assert!(d[1000..].iter().all(|&b| b == 0));
    // SAFETY: valid C string.
    let r = unsafe { libc::truncate(c.as_ptr(), 0) };
    assert_eq!(r, 0, "truncate(2) to 0");
    assert_eq!(read(&p), b"");
    // Truncating a directory fails.
    let d = std::ffi::CString::new(m.path().as_os_str().as_bytes()).expect("c path");
    // SAFETY: valid C string.
    let r = unsafe { libc::truncate(d.as_ptr(), 0) };
    assert_eq!(r, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EISDIR),
        "truncate a directory"
    );
}

// ---------------------------------------------------------------------------
// Attributes
// ---------------------------------------------------------------------------

#[test]
fn chmod_chown_utimens_and_times() {
    let m = mount("attrs");
    let p = m.join("f");
    write(&p, b"one");
    let before = fs::metadata(&p).expect("stat");

    tick();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).expect("chmod 640");
    let md = fs::metadata(&p).expect("stat");
    assert_eq!(md.permissions().mode() & 0o7777, 0o640, "mode after chmod");
    assert!(ctime_ns(&md) > ctime_ns(&before), "ctime changes on chmod");
    assert_eq!(mtime_ns(&md), mtime_ns(&before), "mtime unchanged by chmod");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o4755)).expect("chmod 4755");
    assert_eq!(
        fs::metadata(&p).expect("stat").permissions().mode() & 0o7777,
        0o4755,
        "setuid bit kept"
    );

    std::os::unix::fs::chown(&p, Some(1234), Some(5678)).expect("chown 1234:5678");
    let md = fs::metadata(&p).expect("stat");
    assert_eq!((md.uid(), md.gid()), (1234, 5678), "owner after chown");
    std::os::unix::fs::chown(&p, None, Some(42)).expect("chgrp 42");
    let md = fs::metadata(&p).expect("stat");
    assert_eq!((md.uid(), md.gid()), (1234, 42), "only the group changed");

    set_times(&p, (1_000_000_000, 5), (1_500_000_000, 123_456_789)).expect("utimensat");
    let md = fs::metadata(&p).expect("stat");
    assert_eq!(md.mtime(), 1_500_000_000, "mtime seconds set");
    assert_eq!(md.atime(), 1_000_000_000, "atime seconds set");
    assert!(
        (md.mtime_nsec() - 123_456_789).abs() < 1_000 || md.mtime_nsec() == 0,
        "mtime nanoseconds set (or truncated to seconds): {}",
        md.mtime_nsec()
    );

    // A write moves mtime and ctime forward.
    let before = fs::metadata(&p).expect("stat");
    tick();
    {
        let mut f = OpenOptions::new().append(true).open(&p).expect("open");
        f.write_all(b"two").expect("write");
    }
    let md = fs::metadata(&p).expect("stat");
    assert!(mtime_ns(&md) > mtime_ns(&before), "mtime changes on write");
    assert!(ctime_ns(&md) > ctime_ns(&before), "ctime changes on write");
    assert!(
        md.mtime() > 1_500_000_000,
        "mtime is now, not the utimens value"
    );

    // Creating an entry updates the directory's mtime.
    let dir_before = fs::metadata(m.path()).expect("stat root");
    tick();
    write(&m.join("g"), b"");
    let dir_after = fs::metadata(m.path()).expect("stat root");
    assert!(
        mtime_ns(&dir_after) > mtime_ns(&dir_before),
        "directory mtime changes when an entry is added"
    );
}

// ---------------------------------------------------------------------------
// Directories
// ---------------------------------------------------------------------------

#[test]
fn removed_directory_stays_fstat_able_while_open() {
    let m = mount("rmdir_open");
    let d = m.join("gone");
    fs::create_dir(&d).expect("mkdir");
    let f = File::open(&d).expect("open the directory");
    fs::remove_dir(&d).expect("rmdir");
    let st = f.metadata().expect("fstat of the removed directory");
    assert!(st.is_dir());
    assert_eq!(st.nlink(), 0, "a removed directory has no links");
    let err = File::create(d.join("x")).expect_err("create in a removed directory");
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
}

#[test]
fn mkdir_rmdir_and_errors() {
    let m = mount("dirs");
    let d = m.join("d");
    fs::create_dir(&d).expect("mkdir d");
    assert!(fs::metadata(&d).expect("stat d").is_dir());
    assert_eq!(
        fs::metadata(&d).expect("stat d").nlink(),
        2,
        "new dir nlink"
    );
    assert_errno(fs::create_dir(&d), libc::EEXIST, "mkdir existing");
    assert_errno(
        fs::create_dir(m.join("nope/sub")),
        libc::ENOENT,
        "mkdir under a missing parent",
    );
    fs::create_dir_all(d.join("a/b/c")).expect("mkdir -p");
    assert_eq!(
        fs::metadata(&d).expect("stat d").nlink(),
        3,
        "nlink counts subdirectories"
    );
    write(&d.join("a/b/c/file"), b"x");
    assert_errno(
        fs::remove_dir(d.join("a")),
        libc::ENOTEMPTY,
        "rmdir non-empty",
    );
    assert_errno(
        fs::remove_dir(d.join("a/b/c/file")),
        libc::ENOTDIR,
        "rmdir a file",
    );
    assert_errno(
        fs::remove_file(d.join("a")),
        libc::EISDIR,
        "unlink a directory",
    );
    assert_errno(
        fs::remove_dir(m.join("ghost")),
        libc::ENOENT,
        "rmdir missing",
    );
    fs::remove_file(d.join("a/b/c/file")).expect("unlink file");
    fs::remove_dir(d.join("a/b/c")).expect("rmdir c");
    fs::remove_dir(d.join("a/b")).expect("rmdir b");
    fs::remove_dir(d.join("a")).expect("rmdir a");
    assert!(names(&d).is_empty(), "d is empty");
    fs::remove_dir(&d).expect("rmdir d");
    assert_errno(fs::metadata(&d), libc::ENOENT, "stat removed dir");
    fs::create_dir(&d).expect("mkdir d again");
    assert!(names(&d).is_empty(), "a re-created directory is empty");
}

#[test]
fn readdir_many_entries() {
    let m = mount("readdir");
    let d = m.join("many");
    fs::create_dir(&d).expect("mkdir");
    let mut want = BTreeSet::new();
    for i in 0..600 {
        let name = format!("entry-{i:04}-{}", "x".repeat(i % 50));
        if i % 10 == 0 {
            fs::create_dir(d.join(&name)).expect("mkdir entry");
        } else {
            write(&d.join(&name), name.as_bytes());
        }
        want.insert(OsString::from(name));
    }
    let got = names(&d);
    assert_eq!(got.len(), 600, "entry count");
    assert_eq!(got, want, "entry names");
    for e in fs::read_dir(&d).expect("read_dir") {
        let e = e.expect("entry");
        let is_dir = e.file_type().expect("file type").is_dir();
        let idx: usize = e.file_name().to_string_lossy()[6..10]
            .parse()
            .expect("index in the name");
        assert_eq!(
            is_dir,
            idx.is_multiple_of(10),
            "d_type of {:?}",
            e.file_name()
        );
    }
    let sample = d.join(format!("entry-0123-{}", "x".repeat(123 % 50)));
    assert_eq!(read(&sample), sample.file_name().expect("name").as_bytes());
    // Root lists the directory too.
    assert!(names(m.path()).contains(OsStr::new("many")));
}

#[test]
fn unlink_open_file_stays_readable() {
    let m = mount("unlinkopen");
    let p = m.join("doomed");
    let content = pattern(unique_seed(), 150_000);
    write(&p, &content);
    let mut f = File::open(&p).expect("open");
    fs::remove_file(&p).expect("unlink while open");
    assert_errno(fs::metadata(&p), libc::ENOENT, "name gone after unlink");
    assert!(
        !names(m.path()).contains(OsStr::new("doomed")),
        "not listed"
    );
    let md = f.metadata().expect("fstat an unlinked file");
    assert_eq!(md.len(), content.len() as u64, "size through the fd");
    let mut got = Vec::new();
    f.read_to_end(&mut got).expect("read an unlinked open file");
    assert_eq!(got, content, "content through the fd");
    drop(f);
    // A new file of the same name is a different, empty file.
    write(&p, b"new");
    assert_eq!(read(&p), b"new");
    // Write to an unlinked file through its fd, then read it back.
    let q = m.join("tmp");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&q)
        .expect("create tmp");
    fs::remove_file(&q).expect("unlink tmp");
    f.write_all(b"anonymous").expect("write unlinked");
    f.seek(SeekFrom::Start(0)).expect("seek");
    let mut s = String::new();
    f.read_to_string(&mut s).expect("read unlinked");
    assert_eq!(s, "anonymous");
}

// ---------------------------------------------------------------------------
// Rename
// ---------------------------------------------------------------------------

#[test]
fn rename_files() {
    let m = mount("renamefiles");
    fs::create_dir(m.join("a")).expect("mkdir a");
    fs::create_dir(m.join("b")).expect("mkdir b");
    write(&m.join("a/x"), b"xx");
    fs::rename(m.join("a/x"), m.join("a/y")).expect("rename within a directory");
    assert_errno(fs::metadata(m.join("a/x")), libc::ENOENT, "old name gone");
    assert_eq!(read(&m.join("a/y")), b"xx");
    fs::rename(m.join("a/y"), m.join("b/z")).expect("rename across directories");
    assert!(names(&m.join("a")).is_empty(), "a is empty");
    assert_eq!(read(&m.join("b/z")), b"xx");
    // Over an existing file: the target is replaced.
    write(&m.join("b/w"), b"old target");
    fs::rename(m.join("b/z"), m.join("b/w")).expect("rename over a file");
    assert_eq!(read(&m.join("b/w")), b"xx", "target replaced");
    assert_eq!(names(&m.join("b")).len(), 1, "one entry left");
    // Onto itself: no-op.
    fs::rename(m.join("b/w"), m.join("b/w")).expect("rename onto itself");
    assert_eq!(read(&m.join("b/w")), b"xx");
    // Errors.
    assert_errno(
        fs::rename(m.join("b/missing"), m.join("b/q")),
        libc::ENOENT,
        "rename a missing source",
    );
    assert_errno(
        fs::rename(m.join("b/w"), m.join("nodir/q")),
        libc::ENOENT,
        "rename into a missing directory",
    );
    assert_errno(
        fs::rename(m.join("b/w"), m.join("a")),
        libc::EISDIR,
        "rename a file over a directory",
    );
    // An open file survives being renamed over.
    write(&m.join("b/v"), b"victim");
    let mut f = File::open(m.join("b/v")).expect("open victim");
    fs::rename(m.join("b/w"), m.join("b/v")).expect("rename over an open file");
    let mut s = String::new();
    f.read_to_string(&mut s).expect("read the replaced file");
    assert_eq!(s, "victim", "the open fd still sees the old file");
    assert_eq!(read(&m.join("b/v")), b"xx");
}

#[test]
fn rename_directories() {
    let m = mount("renamedirs");
    fs::create_dir_all(m.join("src/inner")).expect("mkdir -p");
    write(&m.join("src/inner/f"), b"deep");
    fs::create_dir(m.join("dst")).expect("mkdir dst");
    fs::rename(m.join("src"), m.join("dst/moved")).expect("rename a directory across");
    assert_eq!(
        read(&m.join("dst/moved/inner/f")),
        b"deep",
        "children follow"
    );
    assert_errno(fs::metadata(m.join("src")), libc::ENOENT, "old dir gone");
    // '..' of the moved directory is its new parent.
    let dotdot = fs::metadata(m.join("dst/moved/..")).expect("stat moved/..");
    assert_eq!(
        dotdot.ino(),
        fs::metadata(m.join("dst")).expect("stat dst").ino(),
        "'..' follows the rename"
    );
    // Over an empty directory.
    fs::create_dir(m.join("empty")).expect("mkdir empty");
    fs::rename(m.join("dst/moved"), m.join("empty")).expect("rename over an empty dir");
    assert_eq!(read(&m.join("empty/inner/f")), b"deep");
    // Over a non-empty directory.
    fs::create_dir(m.join("full")).expect("mkdir full");
    write(&m.join("full/f"), b"");
    assert_errno(
        fs::rename(m.join("empty"), m.join("full")),
        libc::ENOTEMPTY,
        "rename over a non-empty dir",
    );
    // A directory over a file.
    write(&m.join("plain"), b"");
    assert_errno(
        fs::rename(m.join("full"), m.join("plain")),
        libc::ENOTDIR,
        "rename a dir over a file",
    );
    // Into its own subdirectory.
    assert_errno(
        fs::rename(m.join("empty"), m.join("empty/inner/loop")),
        libc::EINVAL,
        "rename a dir into itself",
    );
    // nlink of parents follows subdirectory moves.
    let root_links = fs::metadata(m.path()).expect("stat root").nlink();
    fs::rename(m.join("full"), m.join("dst/full")).expect("move full under dst");
    assert_eq!(
        fs::metadata(m.path()).expect("stat root").nlink(),
        root_links - 1,
        "root lost a subdirectory"
    );
    assert_eq!(
        fs::metadata(m.join("dst")).expect("stat dst").nlink(),
        3,
        "dst gained one"
    );
}

#[test]
fn renameat2_noreplace_and_exchange() {
    let m = mount("renameat2");
    write(&m.join("a"), b"AAA");
    write(&m.join("b"), b"BBB");
    assert_errno(
        renameat2(&m.join("a"), &m.join("b"), libc::RENAME_NOREPLACE),
        libc::EEXIST,
        "RENAME_NOREPLACE over an existing file",
    );
    assert_eq!(read(&m.join("a")), b"AAA", "source untouched");
    assert_eq!(read(&m.join("b")), b"BBB", "target untouched");
    renameat2(&m.join("a"), &m.join("c"), libc::RENAME_NOREPLACE)
        .expect("RENAME_NOREPLACE to a free name");
    assert_eq!(read(&m.join("c")), b"AAA");
    renameat2(&m.join("b"), &m.join("c"), libc::RENAME_EXCHANGE).expect("RENAME_EXCHANGE");
    assert_eq!(read(&m.join("b")), b"AAA", "exchanged");
    assert_eq!(read(&m.join("c")), b"BBB", "exchanged");
    // Exchange a file and a directory across directories.
    fs::create_dir_all(m.join("d/sub")).expect("mkdir");
    write(&m.join("d/sub/inside"), b"i");
    renameat2(&m.join("b"), &m.join("d/sub"), libc::RENAME_EXCHANGE)
        .expect("exchange a file and a directory");
    assert_eq!(read(&m.join("d/sub")), b"AAA", "file now at d/sub");
    assert_eq!(read(&m.join("b/inside")), b"i", "directory now at b");
    assert_errno(
        renameat2(&m.join("c"), &m.join("nothing"), libc::RENAME_EXCHANGE),
        libc::ENOENT,
        "RENAME_EXCHANGE with a missing target",
    );
}

// ---------------------------------------------------------------------------
// Links
// ---------------------------------------------------------------------------

#[test]
fn symlinks() {
    let m = mount("symlinks");
    write(&m.join("target"), b"pointed at");
    std::os::unix::fs::symlink("target", m.join("link")).expect("symlink");
    let lmd = fs::symlink_metadata(m.join("link")).expect("lstat");
    assert!(lmd.file_type().is_symlink(), "a symlink");
    assert_eq!(lmd.len(), 6, "symlink size is the target length");
    assert_eq!(
        fs::read_link(m.join("link")).expect("readlink"),
        Path::new("target")
    );
    assert_eq!(read(&m.join("link")), b"pointed at", "followed");
    // Dangling, absolute and long targets.
    std::os::unix::fs::symlink("/no/such/thing", m.join("dangling")).expect("symlink");
    assert_errno(fs::metadata(m.join("dangling")), libc::ENOENT, "dangling");
    let long = "d/".repeat(1000) + "end";
    std::os::unix::fs::symlink(&long, m.join("long")).expect("symlink with a long target");
    assert_eq!(
        fs::read_link(m.join("long")).expect("readlink long"),
        Path::new(&long)
    );
    assert_errno(
        fs::read_link(m.join("target")),
        libc::EINVAL,
        "readlink of a regular file",
    );
    assert_errno(
        std::os::unix::fs::symlink("x", m.join("link")),
        libc::EEXIST,
        "symlink over an existing name",
    );
    fs::remove_file(m.join("link")).expect("unlink the symlink");
    assert_eq!(read(&m.join("target")), b"pointed at", "target untouched");
}

#[test]
fn hard_links() {
    let m = mount("hardlinks");
    fs::create_dir(m.join("other")).expect("mkdir");
    write(&m.join("orig"), b"shared");
    fs::hard_link(m.join("orig"), m.join("other/alias")).expect("link");
    let a = fs::metadata(m.join("orig")).expect("stat orig");
    let b = fs::metadata(m.join("other/alias")).expect("stat alias");
    assert_eq!(a.ino(), b.ino(), "same inode");
    assert_eq!(a.nlink(), 2, "nlink after link");
    fs::hard_link(m.join("orig"), m.join("third")).expect("link again");
    assert_eq!(fs::metadata(m.join("orig")).expect("stat").nlink(), 3);
    {
        let mut f = OpenOptions::new()
            .append(true)
            .open(m.join("other/alias"))
            .expect("open alias");
        f.write_all(b" content").expect("write through alias");
    }
    assert_eq!(read(&m.join("orig")), b"shared content", "one content");
    assert_eq!(read(&m.join("third")), b"shared content", "one content");
    fs::remove_file(m.join("orig")).expect("unlink orig");
    assert_eq!(fs::metadata(m.join("third")).expect("stat").nlink(), 2);
    fs::remove_file(m.join("third")).expect("unlink third");
    let md = fs::metadata(m.join("other/alias")).expect("stat alias");
    assert_eq!(md.nlink(), 1, "nlink back to 1");
    assert_eq!(read(&m.join("other/alias")), b"shared content");
    assert_errno(
        fs::hard_link(m.join("other"), m.join("dirlink")),
        libc::EPERM,
        "hard link to a directory",
    );
    assert_errno(
        fs::hard_link(m.join("other/alias"), m.join("other/alias")),
        libc::EEXIST,
        "link over an existing name",
    );
    assert_errno(
        fs::hard_link(m.join("missing"), m.join("x")),
        libc::ENOENT,
        "link of a missing file",
    );
}

// ---------------------------------------------------------------------------
// statfs, xattrs, names
// ---------------------------------------------------------------------------

#[test]
fn statfs_succeeds() {
    let m = mount("statfs");
    let st = statvfs(m.path()).expect("statvfs on the mount");
    assert!(st.f_bsize > 0, "f_bsize > 0");
    assert!(st.f_namemax >= 255, "f_namemax {}", st.f_namemax);
    write(&m.join("f"), b"x");
    statvfs(&m.join("f")).expect("statvfs on a file in the mount");
}

#[test]
fn xattrs() {
    let m = mount("xattrs");
    let p = m.join("f");
    write(&p, b"");
    assert_errno(getxattr(&p, "user.missing"), libc::ENODATA, "get missing");
    setxattr(&p, "user.color", b"blue", 0).expect("setxattr");
    assert_eq!(getxattr(&p, "user.color").expect("getxattr"), b"blue");
    let bin: Vec<u8> = (0..=255u8).collect();
    setxattr(&p, "user.bin", &bin, 0).expect("set a binary value");
    assert_eq!(getxattr(&p, "user.bin").expect("get binary"), bin);
    setxattr(&p, "user.empty", b"", 0).expect("set an empty value");
    assert_eq!(getxattr(&p, "user.empty").expect("get empty"), b"");
    let listed: HashSet<OsString> = listxattr(&p).expect("listxattr").into_iter().collect();
    for n in ["user.color", "user.bin", "user.empty"] {
        assert!(listed.contains(OsStr::new(n)), "{n} listed in {listed:?}");
    }
    assert_errno(
        setxattr(&p, "user.color", b"red", libc::XATTR_CREATE),
        libc::EEXIST,
        "XATTR_CREATE on an existing name",
    );
    assert_eq!(
        getxattr(&p, "user.color").expect("get"),
        b"blue",
        "unchanged"
    );
    assert_errno(
        setxattr(&p, "user.nothing", b"v", libc::XATTR_REPLACE),
        libc::ENODATA,
        "XATTR_REPLACE on a missing name",
    );
    setxattr(&p, "user.color", b"red", libc::XATTR_REPLACE).expect("XATTR_REPLACE");
    assert_eq!(getxattr(&p, "user.color").expect("get"), b"red");
    setxattr(&p, "user.new", b"n", libc::XATTR_CREATE).expect("XATTR_CREATE on a new name");
    removexattr(&p, "user.color").expect("removexattr");
    assert_errno(getxattr(&p, "user.color"), libc::ENODATA, "get removed");
    assert_errno(
        removexattr(&p, "user.color"),
        libc::ENODATA,
        "remove a missing name",
    );
    let listed = listxattr(&p).expect("listxattr");
    assert!(
        !listed.iter().any(|n| n == "user.color"),
        "removed name not listed: {listed:?}"
    );
    // xattrs on a directory, and they survive a content change.
    let d = m.join("dir");
    fs::create_dir(&d).expect("mkdir");
    setxattr(&d, "user.d", b"dv", 0).expect("setxattr on a directory");
    assert_eq!(getxattr(&d, "user.d").expect("get"), b"dv");
    write(&p, b"new content");
    assert_eq!(getxattr(&p, "user.bin").expect("get after write"), bin);
    // The statements counter on the root: a number, read-only, not listed.
    let n = m.statements();
    assert!(n > 0, "some statements were executed: {n}");
    let root_list = listxattr(m.path()).expect("listxattr root");
    assert!(
        !root_list.iter().any(|x| x == "user.cassfs.statements"),
        "the virtual xattr is not listed: {root_list:?}"
    );
    assert!(
        setxattr(m.path(), "user.cassfs.statements", b"0", 0).is_err(),
        "the virtual xattr is read-only"
    );
    assert!(m.statements() >= n, "the count does not go down");
}

#[test]
fn name_length_limits() {
    let m = mount("namelen");
    let ok = "n".repeat(255);
    write(&m.join(&ok), b"255");
    assert_eq!(read(&m.join(&ok)), b"255");
    assert!(names(m.path()).contains(OsStr::new(&ok)), "listed");
    fs::create_dir(m.join("d".repeat(255))).expect("mkdir with a 255-byte name");
    let long = "n".repeat(256);
    assert_errno(
        File::create(m.join(&long)),
        libc::ENAMETOOLONG,
        "create 256",
    );
    assert_errno(
        fs::create_dir(m.join(&long)),
        libc::ENAMETOOLONG,
        "mkdir 256",
    );
    assert_errno(fs::metadata(m.join(&long)), libc::ENAMETOOLONG, "stat 256");
    assert_errno(
        fs::rename(m.join(&ok), m.join(&long)),
        libc::ENAMETOOLONG,
        "rename to 256",
    );
    assert_errno(
        std::os::unix::fs::symlink("x", m.join(&long)),
        libc::ENAMETOOLONG,
        "symlink 256",
    );
}

#[test]
fn non_utf8_names() {
    let m = mount("nonutf8");
    let raw: Vec<Vec<u8>> = vec![
        vec![0xff, 0xfe, b'a'],
        vec![b'x', 0x80, 0x81, b'y'],
        b"caf\xe9".to_vec(),
        "ünïcödé ✓".as_bytes().to_vec(),
        b"with space and\ttab".to_vec(),
    ];
    for (i, n) in raw.iter().enumerate() {
        let name = OsStr::from_bytes(n);
        write(&m.path().join(name), format!("file {i}").as_bytes());
    }
    let dir = OsStr::from_bytes(b"dir\xc3\x28");
    fs::create_dir(m.path().join(dir)).expect("mkdir with an invalid UTF-8 name");
    let got = names(m.path());
    for (i, n) in raw.iter().enumerate() {
        let name = OsString::from_vec(n.clone());
        assert!(got.contains(&name), "{name:?} listed back in {got:?}");
        assert_eq!(read(&m.path().join(&name)), format!("file {i}").as_bytes());
    }
    assert!(got.contains(dir), "directory listed back");
    assert_eq!(got.len(), raw.len() + 1, "nothing else listed");
}

// ---------------------------------------------------------------------------
// Big files, dedup, persistence
// ---------------------------------------------------------------------------

const MIB: usize = 1 << 20;

#[test]
fn big_file_200mb_roundtrip() {
    let m = mount("bigfile");
    let p = m.join("big.bin");
    let chunks = 200;
    let seed = unique_seed();
    let mut want = Vec::with_capacity(chunks);
    {
        let mut f = File::create(&p).expect("create big.bin");
        for i in 0..chunks {
            let c = pattern(seed.wrapping_add(i as u64), MIB);
            want.push(Sha256::digest(&c));
            f.write_all(&c)
                .unwrap_or_else(|e| panic!("write chunk {i}: {e}"));
        }
        f.sync_all().expect("fsync big.bin");
    }
    assert_eq!(
        fs::metadata(&p).expect("stat").len(),
        (chunks * MIB) as u64,
        "size"
    );
    let mut f = File::open(&p).expect("open big.bin");
    let mut buf = vec![0u8; MIB];
    for (i, w) in want.iter().enumerate() {
        f.read_exact(&mut buf)
            .unwrap_or_else(|e| panic!("read chunk {i}: {e}"));
        assert!(Sha256::digest(&buf) == *w, "chunk {i} differs");
    }
    let mut rest = Vec::new();
    f.read_to_end(&mut rest).expect("read to EOF");
    assert!(rest.is_empty(), "nothing after the last chunk");
    // A random read in the middle, across a block boundary.
    let off = 77 * MIB - 10;
    let mut small = [0u8; 20];
    f.read_exact_at(&mut small, off as u64)
        .expect("pread across blocks");
    let c76 = pattern(seed.wrapping_add(76), MIB);
    let c77 = pattern(seed.wrapping_add(77), MIB);
    assert_eq!(&small[..10], &c76[MIB - 10..]);
    assert_eq!(&small[10..], &c77[..10]);
}

#[test]
fn dedup_identical_files() {
    let vol = Volume::unique("dedup");
    let m = vol.mount(&[]);
    let content = pattern(unique_seed(), 3 * MIB);
    let before = block_rows(&vol.keyspace, vol.owner);
    assert_eq!(before, 0, "a new owner has no blocks");
    write(&m.join("one"), &content);
    let after_one = block_rows(&vol.keyspace, vol.owner);
    assert_eq!(after_one, 3, "a 3 MiB file is 3 block rows");
    fs::create_dir(m.join("sub")).expect("mkdir");
    write(&m.join("sub/two"), &content);
    let after_two = block_rows(&vol.keyspace, vol.owner);
    assert_eq!(after_two, 3, "an identical file adds no block rows");
    assert_eq!(read(&m.join("sub/two")), content, "the copy reads back");
    // Small files are inline: no block rows.
    write(&m.join("small"), &content[..60_000]);
    assert_eq!(
        block_rows(&vol.keyspace, vol.owner),
        3,
        "inline files add no blocks"
    );
}

#[test]
fn persistence_across_remount() {
    let vol = Volume::unique("persist");
    let big = pattern(unique_seed(), 2 * MIB + 123);
    {
        let mut m = vol.mount(&[]);
        fs::create_dir(m.join("d")).expect("mkdir");
        write(&m.join("d/small"), b"small content");
        write(&m.join("big"), &big);
        std::os::unix::fs::symlink("d/small", m.join("ln")).expect("symlink");
        setxattr(&m.join("big"), "user.k", b"v", 0).expect("setxattr");
        fs::set_permissions(m.join("d/small"), fs::Permissions::from_mode(0o604)).expect("chmod");
        let st = m.unmount();
        assert!(st.success(), "clean unmount exits 0: {st}");
    }
    let m = vol.mount(&[]);
    assert_eq!(read(&m.join("d/small")), b"small content");
    assert_eq!(read(&m.join("big")), big, "big file after remount");
    assert_eq!(
        fs::read_link(m.join("ln")).expect("readlink"),
        Path::new("d/small")
    );
    assert_eq!(getxattr(&m.join("big"), "user.k").expect("getxattr"), b"v");
    assert_eq!(
        fs::metadata(m.join("d/small"))
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777,
        0o604
    );
}

#[test]
fn ten_thousand_entries_and_cheap_directory_rename() {
    let m = mount("tenk");
    let d = m.join("big_dir");
    fs::create_dir(&d).expect("mkdir");
    let n = 10_000;
    // Four threads create the entries.
    thread::scope(|s| {
        for t in 0..4 {
            let d = &d;
            s.spawn(move || {
                for i in (t..n).step_by(4) {
                    File::create(d.join(format!("f{i:05}")))
                        .unwrap_or_else(|e| panic!("create f{i:05}: {e}"));
                }
            });
        }
    });
    let listed = names(&d);
    assert_eq!(listed.len(), n, "listing count");
    assert!(listed.contains(OsStr::new("f09999")));
    // Statements are prepared on first use: one rename of an empty
    // directory first, so the counts below compare like with like.
    fs::create_dir(m.join("warm_up")).expect("mkdir");
    fs::rename(m.join("warm_up"), m.join("warmed_up")).expect("warm-up rename");
    let before = m.statements();
    fs::rename(&d, m.join("renamed_dir")).expect("rename the big directory");
    let delta = m.statements() - before;
    assert!(
        delta < 20,
        "renaming a 10,000-entry directory took {delta} statements"
    );
    // And it is constant: a rename of an empty directory costs the same.
    fs::create_dir(m.join("small_dir")).expect("mkdir");
    let before = m.statements();
    fs::rename(m.join("small_dir"), m.join("small_renamed")).expect("rename empty dir");
    let small_delta = m.statements() - before;
    assert!(
        delta <= small_delta + 4,
        "rename cost grows with size: {delta} vs {small_delta} for an empty dir"
    );
    assert_eq!(names(&m.join("renamed_dir")).len(), n, "count after rename");
    fs::metadata(m.join("renamed_dir/f04242")).expect("an entry after the rename");
}

#[test]
fn concurrent_writers_on_different_files() {
    let m = mount("concurrent");
    let threads = 6;
    let files = 8;
    let seed = unique_seed();
    thread::scope(|s| {
        for t in 0..threads {
            let m = &m;
            s.spawn(move || {
                let dir = m.join(format!("t{t}"));
                fs::create_dir(&dir).expect("mkdir per thread");
                for i in 0..files {
                    // Sizes across inline and block storage.
                    let len = [10, 70_000, MIB + 1][(t + i) % 3];
                    let data = pattern(seed ^ ((t * 100 + i) as u64), len);
                    let mut f = File::create(dir.join(format!("f{i}"))).expect("create");
                    for c in data.chunks(8192) {
                        f.write_all(c).expect("write");
                    }
                }
            });
        }
    });
    for t in 0..threads {
        for i in 0..files {
            let len = [10, 70_000, MIB + 1][(t + i) % 3];
            let want = pattern(seed ^ ((t * 100 + i) as u64), len);
            let got = read(&m.join(format!("t{t}/f{i}")));
            assert!(
                got == want,
                "t{t}/f{i} differs (len {} vs {len})",
                got.len()
            );
        }
    }
}

#[test]
fn read_only_mount_refuses_writes() {
    let vol = Volume::unique("readonly");
    {
        let mut m = vol.mount(&[]);
        write(&m.join("f"), b"kept");
        assert!(m.unmount().success(), "clean unmount");
    }
    let m = vol.mount(&["--read_only"]);
    assert_eq!(read(&m.join("f")), b"kept", "readable");
    assert_errno(
        File::create(m.join("g")),
        libc::EROFS,
        "create on read-only",
    );
    assert_errno(
        OpenOptions::new().write(true).open(m.join("f")),
        libc::EROFS,
        "open for write on read-only",
    );
    assert_errno(
        fs::create_dir(m.join("d")),
        libc::EROFS,
        "mkdir on read-only",
    );
    assert_errno(
        fs::remove_file(m.join("f")),
        libc::EROFS,
        "unlink on read-only",
    );
}

// ---------------------------------------------------------------------------
// One mount: open files share state; mmap; special files
// ---------------------------------------------------------------------------

#[test]
fn second_fd_sees_unflushed_writes_on_the_same_mount() {
    let m = mount("twofds");
    let p = m.join("f");
    write(&p, b"old");
    let mut w = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&p)
        .expect("open for writing");
    w.write_all(b"new data, not closed").expect("write");
    // POSIX: a read after a write returns the new data, whatever the fd.
    assert_eq!(
        read(&p),
        b"new data, not closed",
        "a second open on the same mount sees the first fd's writes"
    );
    assert_eq!(
        fs::metadata(&p).expect("stat").len(),
        20,
        "stat sees the buffered size"
    );
    drop(w);
    assert_eq!(read(&p), b"new data, not closed");
    // Reading past EOF returns nothing.
    let f = File::open(&p).expect("open");
    let mut buf = [0u8; 8];
    assert_eq!(f.read_at(&mut buf, 1000).expect("pread past EOF"), 0);
}

#[test]
fn mmap_shared_write_is_persisted() {
    let vol = Volume::unique("mmap");
    let mut m = vol.mount(&[]);
    let p = m.join("mapped");
    let len = 300_000usize;
    write(&p, &vec![b'.'; len]);
    {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&p)
            .expect("open rw");
        use std::os::unix::io::AsRawFd;
        // SAFETY: mapping a file we own for `len` bytes; unmapped below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(
            addr,
            libc::MAP_FAILED,
            "mmap: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: addr maps len writable bytes.
        let map = unsafe { std::slice::from_raw_parts_mut(addr.cast::<u8>(), len) };
        assert!(map.iter().all(|&b| b == b'.'), "mapped content");
        map[..5].copy_from_slice(b"HELLO");
        map[len - 5..].copy_from_slice(b"WORLD");
        // SAFETY: addr/len from the mmap above.
        let r = unsafe { libc::msync(addr, len, libc::MS_SYNC) };
        assert_eq!(r, 0, "msync: {}", std::io::Error::last_os_error());
        // SAFETY: addr/len from the mmap above; map is not used afterwards.
        unsafe { libc::munmap(addr, len) };
        f.sync_all().expect("fsync");
    }
    assert!(m.unmount().success(), "clean unmount");
    drop(m);
    // Read back through a new daemon: the page cache of the old one is gone.
    let m = vol.mount(&[]);
    let vol_data = read(&m.join("mapped"));
    assert_eq!(&vol_data[..5], b"HELLO");
    assert_eq!(&vol_data[len - 5..], b"WORLD");
    assert!(vol_data[5..len - 5].iter().all(|&b| b == b'.'));
}

#[test]
fn fifo_and_rename_over_a_hard_link() {
    let m = mount("special");
    let fifo = m.join("fifo");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).expect("c path");
    // SAFETY: valid C string.
    let r = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(r, 0, "mkfifo: {}", std::io::Error::last_os_error());
    use std::os::unix::fs::FileTypeExt;
    assert!(
        fs::symlink_metadata(&fifo)
            .expect("lstat fifo")
            .file_type()
            .is_fifo(),
        "a fifo"
    );
    // Renaming over one name of a twice-linked file leaves the other.
    write(&m.join("a"), b"A");
    fs::hard_link(m.join("a"), m.join("a2")).expect("link");
    write(&m.join("b"), b"B");
    fs::rename(m.join("b"), m.join("a")).expect("rename over a linked name");
    assert_eq!(read(&m.join("a")), b"B");
    let md = fs::metadata(m.join("a2")).expect("stat a2");
    assert_eq!(md.nlink(), 1, "the replaced inode lost a link");
    assert_eq!(read(&m.join("a2")), b"A");
}
