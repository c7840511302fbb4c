//! Hostile input against one mount at the default flags: absurd sizes and
//! offsets, oversized xattrs, symlink targets and names, too many hard links,
//! invalid rename flags, and absurd command-line flag values. Every case must
//! fail with the documented errno (or exit with a one-line error), and the
//! daemon must keep serving afterwards.

mod common;

use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::Duration;

use common::*;

/// The documented maximum file size: 16 GiB.
const MAX_FILE: i64 = 16 << 30;
/// The documented maximum of names+values of the xattrs of one inode.
const XATTR_TOTAL: usize = 256 << 10;
/// The documented maximum number of names of one file.
const MAX_LINKS: u64 = 1000;

/// Asserts the daemon still runs and serves a write and a read back.
#[track_caller]
fn assert_serves(m: &mut Mount, after: &str) {
    assert!(
        m.is_alive(),
        "the daemon died after {after}; output:\n{}",
        m.output()
    );
    let p = m.join("still-alive");
    let data = format!("still serving after {after}");
    write(&p, data.as_bytes());
    assert_eq!(read(&p), data.as_bytes(), "read back after {after}");
}

/// truncate(2) by path.
fn truncate_path(p: &Path, len: i64) -> io::Result<()> {
    let c = c_path(p);
    // SAFETY: a valid NUL-terminated path.
    check(unsafe { libc::truncate(c.as_ptr(), len as libc::off_t) })
}

/// ftruncate(2).
fn ftruncate_fd(f: &fs::File, len: i64) -> io::Result<()> {
    // SAFETY: a file descriptor we own.
    check(unsafe { libc::ftruncate(f.as_raw_fd(), len as libc::off_t) })
}

/// pwrite(2) with a raw (possibly huge) offset.
fn pwrite_raw(f: &fs::File, data: &[u8], off: i64) -> io::Result<usize> {
    // SAFETY: data is readable for data.len() bytes; a file descriptor we own.
    let r = unsafe {
        libc::pwrite(
            f.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            off as libc::off_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Asserts `r` failed with one of `allowed`.
/// Opens `p` read-write.
fn open_rw(p: &Path) -> fs::File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(p)
        .unwrap_or_else(|e| panic!("open {} read-write: {e}", p.display()))
}

// truncate/ftruncate beyond the 16 GiB maximum (4 EiB, 2^63-1, 17 GiB,
// 16 GiB + 1) fail with EFBIG and change nothing.
#[test]
fn truncate_beyond_16_gib_fails_with_efbig() {
    let vol = Volume::unique("hostile-trunc");
    let mut m = vol.mount(&[]);
    let f = m.join("f");
    write(&f, b"small content");

    // truncate -s 4E f
    assert_errno(
        truncate_path(&f, 4i64 << 60),
        libc::EFBIG,
        "truncate to 4 EiB",
    );
    assert_serves(&mut m, "truncate to 4 EiB");
    assert_eq!(
        read(&f),
        b"small content",
        "content after a refused truncate"
    );

    let file = open_rw(&f);
    for (len, what) in [
        (i64::MAX, "ftruncate to 2^63-1"),
        (17 << 30, "ftruncate to 17 GiB"),
        (MAX_FILE + 1, "ftruncate to 16 GiB + 1"),
        (4i64 << 60, "ftruncate to 4 EiB"),
    ] {
        assert_errno(ftruncate_fd(&file, len), libc::EFBIG, what);
        assert_serves(&mut m, what);
    }
    drop(file);
    assert_eq!(
        fs::metadata(&f).expect("stat f").len(),
        13,
        "the size is unchanged by the refused truncates"
    );
    assert_eq!(
        read(&f),
        b"small content",
        "content after refused truncates"
    );
    assert_serves(&mut m, "the refused truncates");
}

// pwrite at or past the 16 GiB maximum fails (EFBIG; at 2^62 the kernel may
// answer EINVAL) and changes nothing.
#[test]
fn pwrite_beyond_16_gib_fails_with_efbig() {
    let vol = Volume::unique("hostile-pwrite");
    let mut m = vol.mount(&[]);
    let f = m.join("f");
    write(&f, b"small content");
    let file = open_rw(&f);
    assert_errno(
        pwrite_raw(&file, b"x", MAX_FILE),
        libc::EFBIG,
        "pwrite of 1 byte at 16 GiB",
    );
    assert_serves(&mut m, "pwrite at 16 GiB");
    assert_errno_in(
        pwrite_raw(&file, b"x", 1i64 << 62),
        &[libc::EFBIG, libc::EINVAL],
        "pwrite at 2^62",
    );
    assert_serves(&mut m, "pwrite at 2^62");
    drop(file);
    assert_eq!(
        fs::metadata(&f).expect("stat f").len(),
        13,
        "the size is unchanged by the refused writes"
    );
    assert_eq!(read(&f), b"small content", "content after refused writes");
    assert_serves(&mut m, "the refused writes");
}

// Exactly 16 GiB via ftruncate works, is sparse (the last 4 KiB read as
// zeros, the head is kept), its last byte can be written, and truncating
// back down works.
#[test]
fn exactly_16_gib_is_allowed_and_sparse() {
    let vol = Volume::unique("hostile-16g");
    let mut m = vol.mount(&[]);
    let f = m.join("f");
    write(&f, b"small content");
    let file = open_rw(&f);
    ftruncate_fd(&file, MAX_FILE).expect("ftruncate to exactly 16 GiB");
    drop(file);
    assert_eq!(
        fs::metadata(&f).expect("stat f").len(),
        MAX_FILE as u64,
        "st_size after ftruncate to 16 GiB"
    );
    let file = fs::File::open(&f).expect("open the 16 GiB file");
    let mut tail = vec![0xAAu8; 4096];
    file.read_exact_at(&mut tail, MAX_FILE as u64 - 4096)
        .expect("read the last 4 KiB");
    assert!(tail.iter().all(|&b| b == 0), "the last 4 KiB are zeros");
    let mut head = vec![0u8; 13];
    file.read_exact_at(&mut head, 0).expect("read the head");
    assert_eq!(head, b"small content", "the head survived the extension");
    drop(file);
    assert_serves(&mut m, "ftruncate to 16 GiB");

    // The last byte can be written; a write across the end writes at most
    // up to it (a short write) or fails with EFBIG.
    let file = open_rw(&f);
    assert_eq!(
        pwrite_raw(&file, b"Z", MAX_FILE - 1).expect("pwrite of the last byte"),
        1
    );
    match pwrite_raw(&file, b"YX", MAX_FILE - 1) {
        Ok(n) => assert_eq!(n, 1, "a write across 16 GiB is cut at 16 GiB"),
        Err(e) => assert_eq!(errno(&e), libc::EFBIG, "a write across 16 GiB: {e}"),
    }
    drop(file);
    assert_eq!(
        fs::metadata(&f).expect("stat f").len(),
        MAX_FILE as u64,
        "st_size after writing the last byte"
    );
    let file = fs::File::open(&f).expect("open the 16 GiB file again");
    let mut last = [0u8; 2];
    file.read_exact_at(&mut last, MAX_FILE as u64 - 2)
        .expect("read the last 2 bytes");
    assert!(
        last == [0, b'Z'] || last == [0, b'Y'],
        "the last bytes: {last:?}"
    );
    drop(file);
    assert_serves(&mut m, "writing the last byte of 16 GiB");

    truncate_path(&f, 5).expect("truncate back down to 5 bytes");
    assert_eq!(
        fs::metadata(&f).expect("stat f").len(),
        5,
        "st_size after truncating back down"
    );
    assert_eq!(read(&f), b"small", "content after truncating back down");
    assert_serves(&mut m, "truncating back down");
}

// xattrs: a 256-byte name gives ERANGE, a 65537-byte value E2BIG; the
// names+values of one inode are limited to 256 KiB (ENOSPC beyond, earlier
// ones stay readable, removing one makes room again, a replace that would
// pass the limit fails and keeps the old value).
#[test]
fn oversized_xattrs_are_refused() {
    let vol = Volume::unique("hostile-xattr");
    let mut m = vol.mount(&[]);
    let f = m.join("f");
    write(&f, b"x");

    let long_name = format!("user.{}", "n".repeat(251));
    assert_eq!(long_name.len(), 256);
    assert_errno(
        setxattr(&f, &long_name, b"v", 0),
        libc::ERANGE,
        "256-byte xattr name",
    );
    assert_serves(&mut m, "256-byte xattr name");
    let ok_name = format!("user.{}", "n".repeat(250));
    setxattr(&f, &ok_name, b"v", 0).expect("255-byte xattr name works");
    assert_eq!(getxattr(&f, &ok_name).expect("get 255-byte name"), b"v");
    removexattr(&f, &ok_name).expect("remove the 255-byte name");

    assert_errno(
        setxattr(&f, "user.huge", &vec![7u8; 65537], 0),
        libc::E2BIG,
        "65537-byte xattr value",
    );
    assert_serves(&mut m, "65537-byte xattr value");

    // 60 KiB values until the 256 KiB total is reached.
    let value_len = 60 << 10;
    let name = |i: usize| format!("user.big{i:02}");
    let value = |i: usize| pattern(1000 + i as u64, value_len);
    let fits = XATTR_TOTAL / (name(0).len() + value_len);
    assert_eq!(fits, 4, "the arithmetic of this test");
    for i in 0..fits {
        setxattr(&f, &name(i), &value(i), 0)
            .unwrap_or_else(|e| panic!("setxattr {} (within the limit): {e}", name(i)));
    }
    assert_errno(
        setxattr(&f, &name(fits), &value(fits), 0),
        libc::ENOSPC,
        "the xattr that passes 256 KiB per inode",
    );
    assert_serves(&mut m, "xattrs beyond 256 KiB");
    for i in 0..fits {
        assert_eq!(
            getxattr(&f, &name(i)).unwrap_or_else(|e| panic!("getxattr {}: {e}", name(i))),
            value(i),
            "{} still readable after the refused one",
            name(i)
        );
    }
    assert_errno(
        getxattr(&f, &name(fits)),
        libc::ENODATA,
        "the refused xattr does not exist",
    );
    removexattr(&f, &name(0)).expect("remove one big xattr");
    setxattr(&f, &name(fits), &value(fits), 0).expect("after removing one, another fits");
    assert_eq!(
        getxattr(&f, &name(fits)).expect("get the new one"),
        value(fits)
    );
    let listed = listxattr(&f).expect("listxattr");
    assert_eq!(
        listed.len(),
        fits,
        "listed xattrs after the swap: {listed:?}"
    );
    assert_serves(&mut m, "xattr swap");

    // Fill up to just under the limit; then a replace that would grow past
    // it fails with ENOSPC and keeps the old value, a same-size one works.
    let used: usize = (1..=fits).map(|i| name(i).len() + value_len).sum();
    let fill_len = XATTR_TOTAL - used - "user.fill".len() - 300;
    setxattr(&f, "user.fill", &vec![b'f'; fill_len], 0).expect("fill to 300 bytes under 256 KiB");
    assert_errno(
        setxattr(&f, &name(1), &vec![b'g'; 64 << 10], libc::XATTR_REPLACE),
        libc::ENOSPC,
        "a replace that grows the total past 256 KiB",
    );
    assert_eq!(
        getxattr(&f, &name(1)).expect("get after the refused replace"),
        value(1),
        "the refused replace kept the old value"
    );
    setxattr(&f, &name(1), &vec![b'h'; value_len], libc::XATTR_REPLACE)
        .expect("a same-size replace at the limit");
    assert_eq!(
        getxattr(&f, &name(1)).expect("get after the replace"),
        vec![b'h'; value_len]
    );
    assert_serves(&mut m, "xattr replace at the limit");
}

// A symlink target of 4096 bytes gives ENAMETOOLONG; 4095 bytes work and
// readlink returns them exactly.
#[test]
fn symlink_target_length_limits() {
    let vol = Volume::unique("hostile-symlink");
    let mut m = vol.mount(&[]);
    let target = |len: usize| -> String {
        let mut s = "component/".repeat(len / 10 + 1);
        s.truncate(len);
        s
    };
    assert_errno(
        std::os::unix::fs::symlink(target(4096), m.join("too_long")),
        libc::ENAMETOOLONG,
        "symlink with a 4096-byte target",
    );
    assert_serves(&mut m, "4096-byte symlink target");
    assert_errno(
        fs::symlink_metadata(m.join("too_long")),
        libc::ENOENT,
        "the refused symlink does not exist",
    );
    let t = target(4095);
    std::os::unix::fs::symlink(&t, m.join("longest")).expect("symlink with a 4095-byte target");
    let back = fs::read_link(m.join("longest")).expect("readlink the 4095-byte target");
    assert_eq!(back.as_os_str(), OsStr::new(&t), "readlink returns it");
    assert_eq!(
        fs::symlink_metadata(m.join("longest"))
            .expect("lstat")
            .len(),
        4095,
        "st_size of the symlink"
    );
    assert_serves(&mut m, "4095-byte symlink target");
}

// Names of 256 bytes give ENAMETOOLONG for every kind of create; 255 works.
#[test]
fn names_longer_than_255_bytes_are_refused() {
    let vol = Volume::unique("hostile-names");
    let mut m = vol.mount(&[]);
    let long = "L".repeat(256);
    let ok = "K".repeat(255);
    write(&m.join("src"), b"source");
    assert_errno(
        fs::write(m.join(&long), b"x"),
        libc::ENAMETOOLONG,
        "create a 256-byte name",
    );
    assert_errno(
        fs::create_dir(m.join(&long)),
        libc::ENAMETOOLONG,
        "mkdir a 256-byte name",
    );
    assert_errno(
        fs::hard_link(m.join("src"), m.join(&long)),
        libc::ENAMETOOLONG,
        "link to a 256-byte name",
    );
    assert_errno(
        std::os::unix::fs::symlink("src", m.join(&long)),
        libc::ENAMETOOLONG,
        "symlink at a 256-byte name",
    );
    assert_errno(
        fs::rename(m.join("src"), m.join(&long)),
        libc::ENAMETOOLONG,
        "rename to a 256-byte name",
    );
    assert_errno(
        fs::metadata(m.join(&long)),
        libc::ENAMETOOLONG,
        "lookup of a 256-byte name",
    );
    assert_serves(&mut m, "256-byte names");
    write(&m.join(&ok), b"255");
    assert_eq!(read(&m.join(&ok)), b"255", "a 255-byte name works");
    let listed = names(m.path());
    assert!(
        listed.contains(&OsString::from(&ok)),
        "the 255-byte name is listed"
    );
    assert!(
        !listed.iter().any(|n| n.len() > 255),
        "no over-long name was stored: {listed:?}"
    );
    assert_serves(&mut m, "255-byte name");
}

// A file has at most 1000 names: the link that would make st_nlink 1001
// fails with EMLINK; after removing one name, a link works again.
#[test]
fn hard_links_beyond_1000_fail_with_emlink() {
    let vol = Volume::unique("hostile-links");
    let mut m = vol.mount(&[]);
    fs::create_dir(m.join("d")).expect("mkdir d");
    let src = m.join("d/n0000");
    write(&src, b"many names");
    for i in 1..MAX_LINKS {
        fs::hard_link(&src, m.join(format!("d/n{i:04}")))
            .unwrap_or_else(|e| panic!("link number {i} (nlink {}): {e}", i + 1));
    }
    assert_eq!(
        fs::metadata(&src).expect("stat").nlink(),
        MAX_LINKS,
        "st_nlink at the maximum"
    );
    assert_errno(
        fs::hard_link(&src, m.join(format!("d/n{MAX_LINKS:04}"))),
        libc::EMLINK,
        "the link that would make st_nlink 1001",
    );
    assert_serves(&mut m, "EMLINK");
    assert_errno(
        fs::metadata(m.join(format!("d/n{MAX_LINKS:04}"))),
        libc::ENOENT,
        "the refused link does not exist",
    );
    assert_eq!(
        fs::metadata(&src).expect("stat").nlink(),
        MAX_LINKS,
        "st_nlink unchanged by the refused link"
    );
    assert_eq!(names(&m.join("d")).len() as u64, MAX_LINKS, "names listed");
    fs::remove_file(m.join("d/n0500")).expect("unlink one name");
    fs::hard_link(&src, m.join("d/again")).expect("a link after removing one name");
    assert_eq!(
        fs::metadata(&src).expect("stat").nlink(),
        MAX_LINKS,
        "st_nlink back at the maximum"
    );
    assert_eq!(read(&m.join("d/again")), b"many names");
    assert_serves(&mut m, "links");
}

// renameat2 with RENAME_WHITEOUT, an undefined flag or NOREPLACE|EXCHANGE
// gives EINVAL; moving a directory into itself or its own subdirectory
// gives EINVAL; nothing moves.
#[test]
fn invalid_renames_fail_with_einval() {
    let vol = Volume::unique("hostile-rename");
    let mut m = vol.mount(&[]);
    write(&m.join("a"), b"a");
    write(&m.join("b"), b"b");
    fs::create_dir_all(m.join("d/sub")).expect("mkdir d/sub");
    for (flags, what) in [
        (libc::RENAME_WHITEOUT, "RENAME_WHITEOUT"),
        (0x8, "undefined flag 0x8"),
        (
            libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE,
            "RENAME_NOREPLACE|RENAME_EXCHANGE",
        ),
        (0x8000_0000, "undefined flag 0x80000000"),
    ] {
        assert_errno(
            renameat2(&m.join("a"), &m.join("c"), flags),
            libc::EINVAL,
            &format!("renameat2 with {what} to a new name"),
        );
        assert_errno(
            renameat2(&m.join("a"), &m.join("b"), flags),
            libc::EINVAL,
            &format!("renameat2 with {what} over a file"),
        );
        assert_serves(&mut m, what);
    }
    assert_eq!(read(&m.join("a")), b"a", "a did not move");
    assert_eq!(read(&m.join("b")), b"b", "b was not replaced");
    assert_errno(fs::metadata(m.join("c")), libc::ENOENT, "no c appeared");

    assert_errno(
        fs::rename(m.join("d"), m.join("d/inside")),
        libc::EINVAL,
        "rename of d into itself",
    );
    assert_errno(
        fs::rename(m.join("d"), m.join("d/sub/deeper")),
        libc::EINVAL,
        "rename of d into its subdirectory",
    );
    assert_errno(
        fs::rename(m.join("d"), m.join("d/sub")),
        libc::EINVAL,
        "rename of d over its own subdirectory",
    );
    assert_serves(&mut m, "rename into itself");
    assert!(m.join("d/sub").is_dir(), "d/sub still there");
    assert_eq!(
        names(m.path()),
        ["a", "b", "d", "still-alive"]
            .into_iter()
            .map(OsString::from)
            .collect(),
        "the root after the refused renames"
    );
    assert_eq!(
        fs::metadata(m.join("d")).expect("stat d").nlink(),
        3,
        "d's link count"
    );
}

/// The arguments of a mount that would succeed but for `bad`.
fn mount_args_with(ks: &str, dir: &Path, bad: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["-mount".into(), dir.as_os_str().to_os_string()];
    for a in [
        "-server",
        &cassandra_addr(),
        "-keyspace",
        ks,
        "-owner",
        "1",
        "-environment",
        "hostile",
    ] {
        args.push(a.into());
    }
    args.extend(bad.iter().map(OsString::from));
    args
}

// Absurd flag values exit non-zero within 10 s with a one-line error on
// stderr (no panic, no backtrace hint), never mount.
#[test]
fn absurd_flag_values_fail_with_one_line() {
    const FAST: Duration = Duration::from_secs(10);
    let ks = shared_keyspace();
    let mut failures = Vec::new();
    for bad in [
        &["-timeout", "1e30"][..],
        &["-timeout", "-1"][..],
        &["-timeout", "nan"][..],
        &["-entry_ttl", "1e30"][..],
        &["-fcache_ttl", "99999999999999999999"][..],
        &["-feed_interval", "1e30"][..],
        &["-feed_interval", "61"][..],
        &["-feed_interval", "nan"][..],
        &["-workers", "0"][..],
        &["-workers", "100000000"][..],
        &["-cache_size", "99999999999999999999G"][..],
    ] {
        let dir = Mount::fresh_dir();
        let args = mount_args_with(&ks, &dir, bad);
        let refs: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let r = run_cassfs(&refs, FAST + Duration::from_secs(5), Some(&dir));
        let _ = fs::remove_dir(&dir);
        let what = bad.join(" ");
        let msg = r.stderr.trim();
        let problem = if r.status.is_none() {
            Some("did not exit (it may have mounted)")
        } else if r.elapsed > FAST {
            Some("took longer than 10 s")
        } else if r.success() {
            Some("exit status 0")
        } else if msg.is_empty() {
            Some("nothing on stderr")
        } else if msg.contains("panicked") || msg.contains("RUST_BACKTRACE") {
            Some("a panic instead of an error message")
        } else if msg.lines().filter(|l| !l.trim().is_empty()).count() != 1 {
            Some("the error is not one line")
        } else {
            None
        };
        if let Some(p) = problem {
            failures.push(format!("{what}: {p}: {}", r.describe()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the absurd flag values were not refused with one line:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
