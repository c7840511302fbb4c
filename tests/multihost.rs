//! Two mounts of one volume (two `cassfs` daemons = two "hosts") at the
//! default flags except that they do not follow the change feed
//! (`-feed_interval 0`): the worst case of a host whose feed lags, so each
//! host keeps a stale view for up to `fcache_ttl` (60 s) and the races below
//! are certain to meet one (at the defaults, tests/feed.rs and
//! tests/sharing.rs show changes arriving within seconds). Whatever a
//! host's view, these safety properties must hold at once:
//! creating a name never destroys another host's name; attribute writes
//! change only what they change; link counts stay exact; a deleted inode
//! stays deleted; renames keep the tree a tree; new opens see the latest
//! commit. Every check of "what is really stored" uses a fresh third mount.

mod common;

use std::collections::BTreeSet;
use std::ffi::{CString, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// How long a host that does not follow the feed may take to see another
/// host's change (`fcache_ttl` + the kernel's 1 s).
const SEE: Duration = Duration::from_secs(75);

/// The mount of one host: default flags, the change feed not followed.
fn host(vol: &Volume) -> Mount {
    vol.mount(&["--feed_interval", "0"])
}

/// mkfifo(3) with mode 0644.
fn mkfifo(p: &Path) -> io::Result<()> {
    let c = c_path(p);
    // SAFETY: a valid NUL-terminated path.
    check(unsafe { libc::mkfifo(c.as_ptr(), 0o644) })
}

/// fchmod(2).
fn fchmod(f: &fs::File, mode: u32) -> io::Result<()> {
    // SAFETY: a file descriptor we own.
    check(unsafe { libc::fchmod(f.as_raw_fd(), mode as libc::mode_t) })
}

/// fsetxattr(2).
fn fsetxattr(f: &fs::File, name: &str, value: &[u8]) -> io::Result<()> {
    let n = CString::new(name).expect("name without NUL");
    // SAFETY: a file descriptor we own; valid name and value buffers.
    check(unsafe {
        libc::fsetxattr(
            f.as_raw_fd(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

/// chown(2).
fn chown(p: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let c = c_path(p);
    // SAFETY: a valid NUL-terminated path.
    check(unsafe { libc::chown(c.as_ptr(), uid, gid) })
}

/// A file's content as text (for readable assertion messages).
fn text(p: &Path) -> String {
    String::from_utf8_lossy(&read(p)).into_owned()
}

fn mode_of(p: &Path) -> u32 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn meta(p: &Path) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()))
}

fn set_of(items: &[&str]) -> BTreeSet<OsString> {
    items.iter().map(OsString::from).collect()
}

/// Asserts `r` failed with one of `allowed`.
#[track_caller]
// The user's scenario: B lists up/; A makes up/2026 and writes a photo into
// it; B's mkdir up/2026 must fail with EEXIST (not replace A's directory),
// and a fresh mount still reads A's photo.
#[test]
fn mkdir_on_stale_host_fails_and_keeps_other_hosts_directory() {
    let vol = Volume::unique("mh-upload");
    let a = host(&vol);
    fs::create_dir(a.join("up")).expect("mkdir up on A");
    let b = host(&vol);
    assert!(names(&b.join("up")).is_empty(), "B lists an empty up/");
    assert_errno(
        fs::metadata(b.join("up/2026")),
        libc::ENOENT,
        "B looks up up/2026 before A creates it",
    );

    fs::create_dir(a.join("up/2026")).expect("mkdir up/2026 on A");
    let photo = pattern(unique_seed(), 300_000);
    write(&a.join("up/2026/photo.jpg"), &photo);

    assert_errno(
        fs::create_dir(b.join("up/2026")),
        libc::EEXIST,
        "B's mkdir of the directory A just made",
    );
    assert!(
        read(&a.join("up/2026/photo.jpg")) == photo,
        "A still reads its photo"
    );

    let c = host(&vol);
    assert!(
        read(&c.join("up/2026/photo.jpg")) == photo,
        "a fresh mount reads A's photo"
    );
    assert_eq!(
        names(&c.join("up")),
        set_of(&["2026"]),
        "up/ on a fresh mount"
    );
    assert_eq!(
        names(&c.join("up/2026")),
        set_of(&["photo.jpg"]),
        "up/2026 on a fresh mount"
    );
    assert_eq!(meta(&c.join("up")).nlink(), 3, "up's link count");

    // Once its caches expire, B sees A's directory and photo too.
    assert!(
        wait_until(SEE, || fs::read(b.join("up/2026/photo.jpg"))
            .is_ok_and(|d| d == photo)),
        "B never saw A's photo within {SEE:?}"
    );
}

// Every way of creating a name (O_EXCL, mkdir, link, symlink, mkfifo,
// RENAME_NOREPLACE) fails with EEXIST on B for a name A created after B
// looked it up; a fresh mount shows A's files untouched.
#[test]
fn exclusive_creates_on_stale_host_fail_with_eexist() {
    let vol = Volume::unique("mh-excl");
    let a = host(&vol);
    fs::create_dir(a.join("d")).expect("mkdir d on A");
    let b = host(&vol);
    write(&b.join("b_src"), b"B's link source");
    write(&b.join("b_move"), b"B's rename source");
    let targets = ["excl", "dir", "link", "sym", "fifo", "renamed"];
    assert!(names(&b.join("d")).is_empty(), "B lists an empty d");
    for t in targets {
        assert_errno(
            fs::symlink_metadata(b.join("d").join(t)),
            libc::ENOENT,
            &format!("B looks up d/{t} before A creates it"),
        );
    }
    for t in targets {
        write(&a.join("d").join(t), format!("A's {t}").as_bytes());
    }

    assert_errno(
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(b.join("d/excl")),
        libc::EEXIST,
        "B's open(O_CREAT|O_EXCL)",
    );
    assert_errno(fs::create_dir(b.join("d/dir")), libc::EEXIST, "B's mkdir");
    assert_errno(
        fs::hard_link(b.join("b_src"), b.join("d/link")),
        libc::EEXIST,
        "B's link",
    );
    assert_errno(
        std::os::unix::fs::symlink("../b_src", b.join("d/sym")),
        libc::EEXIST,
        "B's symlink",
    );
    assert_errno(mkfifo(&b.join("d/fifo")), libc::EEXIST, "B's mkfifo");
    assert_errno(
        renameat2(
            &b.join("b_move"),
            &b.join("d/renamed"),
            libc::RENAME_NOREPLACE,
        ),
        libc::EEXIST,
        "B's renameat2(RENAME_NOREPLACE)",
    );
    assert_eq!(
        text(&b.join("b_move")),
        "B's rename source",
        "B's rename source stays"
    );

    let c = host(&vol);
    assert_eq!(
        names(&c.join("d")),
        set_of(&targets),
        "d on a fresh mount holds A's names"
    );
    for t in targets {
        let p = c.join("d").join(t);
        let m = meta(&p);
        assert!(m.is_file(), "d/{t} is still A's regular file: {m:?}");
        assert_eq!(m.nlink(), 1, "d/{t} has one name");
        assert_eq!(text(&p), format!("A's {t}"), "d/{t}'s content");
    }
    assert_eq!(
        meta(&c.join("b_src")).nlink(),
        1,
        "B's link source: one name"
    );
    assert_eq!(text(&c.join("b_move")), "B's rename source");
    assert_eq!(meta(&c.join("d")).nlink(), 2, "d has no subdirectory");
}

// A plain O_CREAT (no O_EXCL) on B of a name A created after B looked it up
// opens A's file: without O_TRUNC B reads A's content, with O_TRUNC it is an
// overwrite of that file. A fresh mount sees one file per name, nothing lost.
#[test]
fn plain_create_on_stale_host_opens_other_hosts_file() {
    let vol = Volume::unique("mh-creat");
    let a = host(&vol);
    fs::create_dir(a.join("d")).expect("mkdir d on A");
    let b = host(&vol);
    assert!(names(&b.join("d")).is_empty(), "B lists an empty d");
    for n in ["keep", "trunc"] {
        assert_errno(
            fs::metadata(b.join("d").join(n)),
            libc::ENOENT,
            &format!("B looks up d/{n} first"),
        );
    }
    write(&a.join("d/keep"), b"A's kept content");
    write(&a.join("d/trunc"), b"A's content, to be overwritten");
    let ino_keep = meta(&a.join("d/keep")).ino();
    let ino_trunc = meta(&a.join("d/trunc")).ino();

    {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(b.join("d/keep"))
            .expect("B's open(O_CREAT) of d/keep");
        let mut got = Vec::new();
        f.read_to_end(&mut got).expect("read on B");
        assert_eq!(
            String::from_utf8_lossy(&got),
            "A's kept content",
            "B's O_CREAT opened A's file"
        );
    }
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(b.join("d/trunc"))
            .expect("B's open(O_CREAT|O_TRUNC) of d/trunc");
        f.write_all(b"B's overwrite").expect("write on B");
    }
    assert_eq!(text(&a.join("d/keep")), "A's kept content");
    assert_eq!(
        text(&a.join("d/trunc")),
        "B's overwrite",
        "A's new open sees B's overwrite"
    );

    let c = host(&vol);
    assert_eq!(
        names(&c.join("d")),
        set_of(&["keep", "trunc"]),
        "d on a fresh mount: one entry per name"
    );
    assert_eq!(text(&c.join("d/keep")), "A's kept content");
    assert_eq!(text(&c.join("d/trunc")), "B's overwrite");
    for (n, ino) in [("keep", ino_keep), ("trunc", ino_trunc)] {
        let m = meta(&c.join("d").join(n));
        assert_eq!(m.nlink(), 1, "d/{n} has one name");
        assert_eq!(m.ino(), ino, "d/{n} is still A's inode");
    }
}

// chmod 700 of a directory on B survives A (which had the directory cached)
// creating a file and a subdirectory inside it.
#[test]
fn chmod_on_one_host_survives_creates_inside_on_the_other() {
    let vol = Volume::unique("mh-chmoddir");
    let a = host(&vol);
    fs::create_dir(a.join("perm")).expect("mkdir perm on A");
    assert_eq!(mode_of(&a.join("perm")), 0o755, "perm's initial mode");
    let b = host(&vol);
    assert_eq!(mode_of(&b.join("perm")), 0o755, "B sees perm");
    fs::set_permissions(b.join("perm"), fs::Permissions::from_mode(0o700)).expect("chmod on B");
    assert_eq!(mode_of(&a.join("perm")), 0o755, "A still has perm cached");

    write(&a.join("perm/file"), b"inside");
    fs::create_dir(a.join("perm/sub")).expect("mkdir perm/sub on A");

    let c = host(&vol);
    assert_eq!(
        mode_of(&c.join("perm")),
        0o700,
        "B's chmod of perm survives A's creates inside it"
    );
    assert_eq!(names(&c.join("perm")), set_of(&["file", "sub"]));
    assert_eq!(meta(&c.join("perm")).nlink(), 3, "perm's link count");
    assert_eq!(text(&c.join("perm/file")), "inside");
}

// Attribute writes on two hosts to one file (each host having the file
// cached) both survive: chmod vs utimes, utimes vs chmod, chmod vs
// truncate, xattr vs xattr, chown vs chmod.
#[test]
fn attribute_writes_on_two_hosts_both_survive() {
    let vol = Volume::unique("mh-attrs");
    let a = host(&vol);
    for i in 1..=5 {
        write(&a.join(format!("f{i}")), b"0123456789");
    }
    let b = host(&vol);
    for i in 1..=5 {
        let p = format!("f{i}");
        assert_eq!(mode_of(&a.join(&p)), 0o644, "A has {p} cached");
        assert_eq!(mode_of(&b.join(&p)), 0o644, "B has {p} cached");
    }
    let t1 = (1_000_000_000, 0);
    let t2 = (1_100_000_000, 0);

    // f1: chmod on B, utimes on A.
    fs::set_permissions(b.join("f1"), fs::Permissions::from_mode(0o600)).expect("chmod f1 on B");
    set_times(&a.join("f1"), t1, t1).expect("utimes f1 on A");
    // f2: utimes on B, chmod on A.
    set_times(&b.join("f2"), t2, t2).expect("utimes f2 on B");
    fs::set_permissions(a.join("f2"), fs::Permissions::from_mode(0o640)).expect("chmod f2 on A");
    // f3: chmod on B, ftruncate on A.
    fs::set_permissions(b.join("f3"), fs::Permissions::from_mode(0o604)).expect("chmod f3 on B");
    OpenOptions::new()
        .write(true)
        .open(a.join("f3"))
        .expect("open f3 on A")
        .set_len(3)
        .expect("ftruncate f3 on A");
    // f4: an xattr on each host.
    setxattr(&b.join("f4"), "user.from_b", b"B", 0).expect("setxattr f4 on B");
    setxattr(&a.join("f4"), "user.from_a", b"A", 0).expect("setxattr f4 on A");
    // f5: chown on B, chmod on A.
    chown(&b.join("f5"), 1234, 4321).expect("chown f5 on B");
    fs::set_permissions(a.join("f5"), fs::Permissions::from_mode(0o700)).expect("chmod f5 on A");

    let c = host(&vol);
    let m1 = meta(&c.join("f1"));
    assert_eq!(
        m1.mode() & 0o7777,
        0o600,
        "f1: B's chmod survives A's utimes"
    );
    assert_eq!(m1.mtime(), t1.0, "f1: A's utimes");
    let m2 = meta(&c.join("f2"));
    assert_eq!(m2.mtime(), t2.0, "f2: B's utimes survives A's chmod");
    assert_eq!(m2.mode() & 0o7777, 0o640, "f2: A's chmod");
    let m3 = meta(&c.join("f3"));
    assert_eq!(
        m3.mode() & 0o7777,
        0o604,
        "f3: B's chmod survives A's truncate"
    );
    assert_eq!(m3.len(), 3, "f3: A's truncate");
    assert_eq!(text(&c.join("f3")), "012", "f3's content");
    assert_eq!(
        getxattr(&c.join("f4"), "user.from_b").expect("f4: B's xattr survives A's"),
        b"B"
    );
    assert_eq!(
        getxattr(&c.join("f4"), "user.from_a").expect("f4: A's xattr"),
        b"A"
    );
    let m5 = meta(&c.join("f5"));
    assert_eq!(
        (m5.uid(), m5.gid()),
        (1234, 4321),
        "f5: B's chown survives A's chmod"
    );
    assert_eq!(m5.mode() & 0o7777, 0o700, "f5: A's chmod");
    for i in [1, 2, 4, 5] {
        assert_eq!(
            text(&c.join(format!("f{i}"))),
            "0123456789",
            "f{i}'s content"
        );
    }
}

// Both hosts create and remove subdirectories and hard links in one
// directory at the same time; a fresh mount then sees exact link counts.
#[test]
fn link_counts_stay_exact_under_concurrent_changes_on_two_hosts() {
    let vol = Volume::unique("mh-nlink");
    let a = host(&vol);
    fs::create_dir(a.join("d")).expect("mkdir d on A");
    write(&a.join("d/target"), b"linked");
    let b = host(&vol);
    assert_eq!(text(&b.join("d/target")), "linked", "B sees d/target");
    let per: usize = 24;
    std::thread::scope(|s| {
        for (tag, m) in [("a", &a), ("b", &b)] {
            s.spawn(move || {
                let d = m.join("d");
                for i in 0..per {
                    let dir = d.join(format!("{tag}dir{i:02}"));
                    let link = d.join(format!("{tag}link{i:02}"));
                    fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
                    fs::hard_link(d.join("target"), &link)
                        .unwrap_or_else(|e| panic!("link {}: {e}", link.display()));
                    if i % 3 == 0 {
                        fs::remove_dir(&dir)
                            .unwrap_or_else(|e| panic!("rmdir {}: {e}", dir.display()));
                        fs::remove_file(&link)
                            .unwrap_or_else(|e| panic!("unlink {}: {e}", link.display()));
                    }
                }
            });
        }
    });
    let kept = 2 * (per - per.div_ceil(3)) as u64;

    let c = host(&vol);
    let d = c.join("d");
    let listed = names(&d);
    let dirs = listed
        .iter()
        .filter(|n| n.to_string_lossy().contains("dir"))
        .count() as u64;
    let links = listed
        .iter()
        .filter(|n| n.to_string_lossy().contains("link"))
        .count() as u64;
    assert_eq!(dirs, kept, "subdirectories listed: {listed:?}");
    assert_eq!(links, kept, "links listed: {listed:?}");
    assert_eq!(
        meta(&d).nlink(),
        2 + dirs,
        "d's st_nlink = 2 + its subdirectories"
    );
    let target = meta(&d.join("target"));
    assert_eq!(
        target.nlink(),
        1 + links,
        "target's st_nlink = the number of its names"
    );
    for n in &listed {
        let m = meta(&d.join(n));
        if n.to_string_lossy().contains("dir") {
            assert_eq!(m.nlink(), 2, "{n:?}: an empty directory");
        } else {
            assert_eq!(m.ino(), target.ino(), "{n:?} is a name of target");
        }
    }
    assert_eq!(meta(c.path()).nlink(), 3, "the root: 2 + d");
}

// A file deleted on B while A has it open stays deleted: A's fchmod,
// fsetxattr, writes and close through the open fd must not bring it back.
// Same for a file A only had cached (chmod, setxattr, utimes, a write
// without O_CREAT on its path).
#[test]
fn file_deleted_on_one_host_stays_deleted() {
    let vol = Volume::unique("mh-deleted");
    let a = host(&vol);
    write(&a.join("open"), b"original content");
    write(&a.join("cached"), b"original content");
    write(&a.join("witness"), b"stays");
    let b = host(&vol);
    assert_eq!(text(&b.join("open")), "original content", "B sees open");
    assert_eq!(text(&b.join("cached")), "original content", "B sees cached");
    assert_eq!(text(&a.join("cached")), "original content", "A caches it");

    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(a.join("open"))
        .expect("open on A");
    fs::remove_file(b.join("open")).expect("unlink open on B");
    fs::remove_file(b.join("cached")).expect("unlink cached on B");

    // What A does to the deleted inodes may succeed or fail; either way it
    // must not bring the names back.
    let r1 = fchmod(&f, 0o600);
    let r2 = fsetxattr(&f, "user.after", b"unlink");
    let r3 = f.write_all(b"written after the unlink on B");
    let r4 = f.sync_all();
    drop(f);
    let r5 = fs::set_permissions(a.join("cached"), fs::Permissions::from_mode(0o600));
    let r6 = setxattr(&a.join("cached"), "user.after", b"unlink", 0);
    let r7 = set_times(&a.join("cached"), (1_000_000_000, 0), (1_000_000_000, 0));
    let r8 = OpenOptions::new()
        .write(true)
        .open(a.join("cached"))
        .and_then(|mut g| g.write_all(b"written after the unlink on B"));
    eprintln!(
        "A on the deleted inodes: fchmod {r1:?}, fsetxattr {r2:?}, write {r3:?}, fsync {r4:?}, \
         chmod {r5:?}, setxattr {r6:?}, utimes {r7:?}, write {r8:?}"
    );

    let c = host(&vol);
    for n in ["open", "cached"] {
        assert_errno(
            fs::symlink_metadata(c.join(n)),
            libc::ENOENT,
            &format!("{n} deleted on B is gone on a fresh mount"),
        );
    }
    assert_eq!(
        names(c.path()),
        set_of(&["witness"]),
        "the root listing on a fresh mount"
    );
    assert_eq!(text(&c.join("witness")), "stays");
}

// A file deleted on B while A has it cached or open cannot get a name back
// through A: a link to its cached path, a link of the open fd
// (linkat AT_EMPTY_PATH) and a rename of its cached path must not make it
// reappear, and no name on a fresh mount dangles.
#[test]
fn file_deleted_on_one_host_cannot_be_linked_back() {
    let vol = Volume::unique("mh-relink");
    let a = host(&vol);
    for n in ["g", "h", "open"] {
        write(&a.join(n), b"original content");
    }
    let b = host(&vol);
    for n in ["g", "h", "open"] {
        assert_eq!(text(&b.join(n)), "original content", "B sees {n}");
        assert_eq!(text(&a.join(n)), "original content", "A caches {n}");
    }
    let f = fs::File::open(a.join("open")).expect("open on A");
    for n in ["g", "h", "open"] {
        fs::remove_file(b.join(n)).unwrap_or_else(|e| panic!("unlink {n} on B: {e}"));
    }

    let r1 = fs::hard_link(a.join("g"), a.join("g_link"));
    let r2 = fs::rename(a.join("h"), a.join("h_moved"));
    let empty = CString::new("").expect("empty string");
    let to = c_path(&a.join("open_link"));
    // SAFETY: a file descriptor we own, valid C strings.
    let r3 = check(unsafe {
        libc::linkat(
            f.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    });
    drop(f);
    eprintln!("A on the deleted inodes: link {r1:?}, rename {r2:?}, linkat {r3:?}");

    let c = host(&vol);
    for n in ["g", "h", "open", "g_link", "h_moved", "open_link"] {
        assert_errno(
            fs::symlink_metadata(c.join(n)),
            libc::ENOENT,
            &format!("{n} on a fresh mount (its inode was deleted on B)"),
        );
    }
    for n in names(c.path()) {
        assert!(
            fs::symlink_metadata(c.join(&n)).is_ok(),
            "{n:?} is listed on a fresh mount but does not resolve"
        );
    }
    assert!(
        names(c.path()).is_empty(),
        "the root of a fresh mount: {:?}",
        names(c.path())
    );
}

// A directory removed on B while A has it cached stays removed: A's chmod,
// utimes and setxattr on its path, and creates inside it, must not bring it
// back.
#[test]
fn directory_removed_on_one_host_stays_removed() {
    let vol = Volume::unique("mh-rmdir");
    let a = host(&vol);
    fs::create_dir(a.join("d")).expect("mkdir d on A");
    fs::create_dir(a.join("keep")).expect("mkdir keep on A");
    let b = host(&vol);
    assert!(b.join("d").is_dir(), "B sees d");
    assert!(a.join("d").is_dir(), "A has d cached");
    fs::remove_dir(b.join("d")).expect("rmdir d on B");

    let r1 = fs::set_permissions(a.join("d"), fs::Permissions::from_mode(0o700));
    let r2 = set_times(&a.join("d"), (1_000_000_000, 0), (1_000_000_000, 0));
    let r3 = setxattr(&a.join("d"), "user.after", b"rmdir", 0);
    let r4 = fs::write(a.join("d/file"), b"into a removed directory");
    let r5 = fs::create_dir(a.join("d/sub"));
    eprintln!(
        "A on the removed directory: chmod {r1:?}, utimes {r2:?}, setxattr {r3:?}, \
         create inside {r4:?}, mkdir inside {r5:?}"
    );

    let c = host(&vol);
    assert_errno(
        fs::symlink_metadata(c.join("d")),
        libc::ENOENT,
        "d removed on B is gone on a fresh mount",
    );
    assert_eq!(names(c.path()), set_of(&["keep"]), "the root listing");
    assert_eq!(meta(c.path()).nlink(), 3, "the root: 2 + keep");
}

/// Walks the tree under `root` (not following symlinks) and returns every
/// entry (relative path) with its attributes. Panics if a listed name does
/// not resolve, a directory is reached twice or deeper than 64 levels (a
/// cycle), a directory's st_nlink is not 2 + its subdirectories, or a
/// file's st_nlink is not the number of names it has in the tree.
fn check_tree(root: &Path) -> std::collections::BTreeMap<PathBuf, fs::Metadata> {
    fn go(
        root: &Path,
        rel: &Path,
        depth: usize,
        seen: &mut BTreeSet<u64>,
        out: &mut std::collections::BTreeMap<PathBuf, fs::Metadata>,
    ) {
        assert!(depth < 64, "walk deeper than 64 levels at {rel:?}: a cycle");
        let dir = root.join(rel);
        let dm = meta(&dir);
        assert!(
            seen.insert(dm.ino()),
            "directory inode {} reached twice (again at {rel:?}): a cycle",
            dm.ino()
        );
        let mut subdirs = 0;
        for n in names(&dir) {
            let child = rel.join(&n);
            let m = fs::symlink_metadata(root.join(&child))
                .unwrap_or_else(|e| panic!("{child:?} is listed but does not resolve: {e}"));
            out.insert(child.clone(), m.clone());
            if m.is_dir() {
                subdirs += 1;
                go(root, &child, depth + 1, seen, out);
            }
        }
        assert_eq!(
            dm.nlink(),
            2 + subdirs,
            "st_nlink of directory {rel:?} = 2 + its {subdirs} subdirectories"
        );
    }
    let mut out = std::collections::BTreeMap::new();
    go(root, Path::new(""), 0, &mut BTreeSet::new(), &mut out);
    let mut names_of: std::collections::BTreeMap<u64, Vec<&PathBuf>> = Default::default();
    for (p, m) in &out {
        if !m.is_dir() {
            names_of.entry(m.ino()).or_default().push(p);
        }
    }
    for (ino, paths) in &names_of {
        let nlink = out[paths[0]].nlink();
        assert_eq!(
            nlink,
            paths.len() as u64,
            "st_nlink of inode {ino} = the number of its names {paths:?}"
        );
    }
    out
}

// B moves y into x while A has both cached at the root; A's move of x into
// y (now x's descendant) must fail, and a fresh mount sees a tree without
// cycles in which every directory is reachable once.
#[test]
fn rename_into_own_descendant_across_hosts_is_refused() {
    let vol = Volume::unique("mh-cycle");
    let a = host(&vol);
    fs::create_dir(a.join("x")).expect("mkdir x on A");
    fs::create_dir(a.join("y")).expect("mkdir y on A");
    write(&a.join("x/fx"), b"in x");
    write(&a.join("y/fy"), b"in y");
    let b = host(&vol);
    assert!(b.join("x").is_dir() && b.join("y").is_dir(), "B sees x, y");
    assert!(a.join("x").is_dir() && a.join("y").is_dir(), "A has x, y");

    fs::rename(b.join("y"), b.join("x/y")).expect("B moves y into x");

    assert_errno_in(
        fs::rename(a.join("x"), a.join("y/x2")),
        &[libc::EINVAL, libc::ENOENT],
        "A's move of x into y, which B moved into x",
    );
    assert_errno_in(
        fs::rename(a.join("x"), a.join("x/y/x2")),
        &[libc::EINVAL, libc::ENOENT],
        "A's move of x into x/y",
    );

    let c = host(&vol);
    let all: BTreeSet<PathBuf> = check_tree(c.path()).into_keys().collect();
    let want: BTreeSet<PathBuf> = ["x", "x/fx", "x/y", "x/y/fy"]
        .into_iter()
        .map(PathBuf::from)
        .collect();
    assert_eq!(all, want, "the tree on a fresh mount");
    assert_eq!(text(&c.join("x/y/fy")), "in y");
    assert_eq!(meta(c.path()).nlink(), 3, "the root: 2 + x");
    assert_eq!(meta(&c.join("x")).nlink(), 3, "x: 2 + y");
    assert_eq!(meta(&c.join("x/y")).nlink(), 2, "y: no subdirectory");
}

// A new open on B sees A's latest commit at once, while B still holds an fd
// opened on the old content; B's later writes through a new fd build on
// the latest content, never on the old one.
#[test]
fn new_opens_see_the_latest_commit() {
    let vol = Volume::unique("mh-open");
    let a = host(&vol);
    write(&a.join("f"), b"v1");
    let b = host(&vol);
    let mut old = fs::File::open(b.join("f")).expect("open f on B");
    let mut got = Vec::new();
    old.read_to_end(&mut got).expect("read the old fd");
    assert_eq!(String::from_utf8_lossy(&got), "v1", "B's first open");

    write(&a.join("f"), b"version two");
    assert_eq!(
        text(&b.join("f")),
        "version two",
        "a new open on B sees A's commit at once"
    );

    // An overwrite through a new B fd is exactly what B wrote.
    {
        let mut w = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(b.join("f"))
            .expect("open f for writing on B");
        w.write_all(b"written by B").expect("write on B");
    }
    assert_eq!(text(&b.join("f")), "written by B", "B reads its write");
    assert_eq!(
        text(&a.join("f")),
        "written by B",
        "a new open on A sees B's commit at once"
    );

    // A new open on B while A's writes are unflushed sees the last commit;
    // once A closes, a new open sees all of the new (longer) content.
    {
        let mut w = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(a.join("f"))
            .expect("open f for writing on A");
        w.write_all(b"A's longer content, committed at close")
            .expect("write on A");
        assert_eq!(
            text(&b.join("f")),
            "written by B",
            "a new open on B before A's close sees the last commit"
        );
    }
    assert_eq!(
        text(&b.join("f")),
        "A's longer content, committed at close",
        "a new open on B after A's close"
    );

    // A partial write through a new B fd lands on the latest content.
    write(&a.join("f"), b"0123456789abcdef");
    {
        let w = OpenOptions::new()
            .write(true)
            .open(b.join("f"))
            .expect("open f for writing on B again");
        w.write_all_at(b"XY", 0).expect("pwrite on B");
    }
    assert_eq!(
        text(&b.join("f")),
        "XY23456789abcdef",
        "B's pwrite on top of A's latest commit"
    );
    assert_eq!(text(&a.join("f")), "XY23456789abcdef", "A sees it");
    drop(old);

    let c = host(&vol);
    assert_eq!(
        text(&c.join("f")),
        "XY23456789abcdef",
        "a fresh mount after B closed its old fd"
    );
}

// A commit made by fsync while the writer keeps the file open is seen whole
// (content and size) by a new open on the other host at once, growing and
// shrinking; a new open before the fsync sees the previous commit.
#[test]
fn new_open_sees_a_commit_made_by_fsync() {
    let vol = Volume::unique("mh-fsync");
    let a = host(&vol);
    write(&a.join("f"), b"short");
    let b = host(&vol);
    assert_eq!(text(&b.join("f")), "short", "B's first read");

    let mut w = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(a.join("f"))
        .expect("open f on A");
    w.write_all(b"a longer version").expect("write on A");
    assert_eq!(
        text(&b.join("f")),
        "short",
        "B's new open before A's fsync sees the last commit"
    );
    w.sync_all().expect("fsync on A");
    assert_eq!(
        text(&b.join("f")),
        "a longer version",
        "a new open on B after A's fsync (grown)"
    );
    assert_eq!(meta(&b.join("f")).len(), 16, "B's st_size after the open");
    drop(w);

    let mut w = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(a.join("f"))
        .expect("open f on A again");
    w.write_all(b"tiny").expect("write on A");
    assert_eq!(
        text(&b.join("f")),
        "a longer version",
        "B's new open before A's second fsync sees the last commit"
    );
    w.sync_all().expect("fsync on A");
    assert_eq!(
        text(&b.join("f")),
        "tiny",
        "a new open on B after A's fsync (shrunk)"
    );
    drop(w);
    assert_eq!(text(&b.join("f")), "tiny", "after A's close");
}

// B still believes d empty when A writes a file into it: B's rmdir of d and
// B's rename of an empty directory over d must fail (ENOTEMPTY or EEXIST),
// and a fresh mount still reads A's file.
#[test]
fn rmdir_on_stale_host_fails_when_other_host_filled_the_directory() {
    let vol = Volume::unique("mh-rmdirfull");
    let a = host(&vol);
    fs::create_dir(a.join("d")).expect("mkdir d on A");
    fs::create_dir(a.join("d2")).expect("mkdir d2 on A");
    let b = host(&vol);
    fs::create_dir(b.join("empty")).expect("mkdir empty on B");
    assert!(names(&b.join("d")).is_empty(), "B lists an empty d");
    assert!(names(&b.join("d2")).is_empty(), "B lists an empty d2");
    write(&a.join("d/photo"), b"A's photo in d");
    write(&a.join("d2/photo"), b"A's photo in d2");

    assert_errno_in(
        fs::remove_dir(b.join("d")),
        &[libc::ENOTEMPTY, libc::EEXIST],
        "B's rmdir of d, which A filled",
    );
    assert_errno_in(
        fs::rename(b.join("empty"), b.join("d2")),
        &[libc::ENOTEMPTY, libc::EEXIST],
        "B's rename of an empty directory over d2, which A filled",
    );

    let c = host(&vol);
    assert_eq!(text(&c.join("d/photo")), "A's photo in d");
    assert_eq!(text(&c.join("d2/photo")), "A's photo in d2");
    assert!(
        c.join("empty").is_dir(),
        "B's empty directory is still there"
    );
    check_tree(c.path());
}

// B unlinks a name it has cached, after A linked the file under a second
// name, or moved the file away and put a new file under the old name: the
// other names survive with exact link counts and nothing dangles.
#[test]
fn unlink_on_stale_host_keeps_other_names_intact() {
    let vol = Volume::unique("mh-staleunlink");
    let a = host(&vol);
    write(&a.join("linked"), b"one inode, two names");
    write(&a.join("moved"), b"moved away by A");
    let b = host(&vol);
    assert_eq!(text(&b.join("linked")), "one inode, two names");
    assert_eq!(text(&b.join("moved")), "moved away by A");
    assert_eq!(meta(&b.join("linked")).nlink(), 1, "B caches nlink 1");

    fs::hard_link(a.join("linked"), a.join("second")).expect("link on A");
    fs::rename(a.join("moved"), a.join("elsewhere")).expect("rename on A");
    write(&a.join("moved"), b"A's new file under the old name");

    fs::remove_file(b.join("linked")).expect("B unlinks linked");
    let r = fs::remove_file(b.join("moved"));
    eprintln!("B's unlink of the replaced name: {r:?}");

    let c = host(&vol);
    let tree = check_tree(c.path());
    assert_eq!(
        text(&c.join("second")),
        "one inode, two names",
        "the second name A made survives B's unlink of the first"
    );
    assert_eq!(meta(&c.join("second")).nlink(), 1, "second's link count");
    assert_errno(
        fs::metadata(c.join("linked")),
        libc::ENOENT,
        "the name B unlinked",
    );
    assert_eq!(
        text(&c.join("elsewhere")),
        "moved away by A",
        "the file A moved away survives B's unlink of its old name"
    );
    if tree.contains_key(Path::new("moved")) {
        assert_eq!(text(&c.join("moved")), "A's new file under the old name");
    }
}

// B has x cached as a file; A replaces it by a directory with a file
// inside. B's write of x (O_CREAT|O_TRUNC) may fail or land in the deleted
// inode, but a fresh mount still shows A's directory and its file.
#[test]
fn stale_write_never_replaces_other_hosts_directory() {
    let vol = Volume::unique("mh-staledir");
    let a = host(&vol);
    write(&a.join("x"), b"a file first");
    let b = host(&vol);
    assert_eq!(text(&b.join("x")), "a file first", "B caches x as a file");
    fs::remove_file(a.join("x")).expect("unlink x on A");
    fs::create_dir(a.join("x")).expect("mkdir x on A");
    write(&a.join("x/inside"), b"A's file in the directory x");

    let r1 = fs::write(b.join("x"), b"B's write");
    let r2 = std::os::unix::fs::symlink("target", b.join("x"));
    eprintln!("B on the replaced name: write {r1:?}, symlink {r2:?}");

    let c = host(&vol);
    assert!(meta(&c.join("x")).is_dir(), "x is still A's directory");
    assert_eq!(text(&c.join("x/inside")), "A's file in the directory x");
    assert_eq!(names(c.path()), set_of(&["x"]), "the root of a fresh mount");
    check_tree(c.path());
}

// Both hosts create the same names at the same moment: with O_EXCL and
// with mkdir exactly one host succeeds (the other gets EEXIST) and a fresh
// mount holds the winner's file or directory; with plain O_CREAT|O_TRUNC a
// fresh mount holds exactly one file per name with one host's content.
#[test]
fn simultaneous_creates_of_one_name_on_two_hosts() {
    simultaneous_creates(&["--feed_interval", "0"]);
}

// The same at the default flags (the change feed followed).
#[test]
fn simultaneous_creates_of_one_name_at_the_default_flags() {
    simultaneous_creates(&[]);
}

fn simultaneous_creates(flags: &[&str]) {
    let vol = Volume::unique("mh-race");
    let host = |v: &Volume| v.mount(flags);
    let a = host(&vol);
    fs::create_dir(a.join("d")).expect("mkdir d on A");
    let b = host(&vol);
    assert!(names(&b.join("d")).is_empty(), "B lists an empty d");
    let rounds = 20;
    let barrier = std::sync::Barrier::new(2);
    // No assertion inside the threads: a panic there would leave the other
    // thread waiting at the barrier for ever.
    type Round = (io::Result<()>, io::Result<()>, io::Result<()>);
    let results: Vec<Vec<Round>> = std::thread::scope(|s| {
        let hs: Vec<_> = [("A", &a), ("B", &b)]
            .into_iter()
            .map(|(tag, m)| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut rounds_done = Vec::new();
                    for i in 0..rounds {
                        barrier.wait();
                        let excl = OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(m.join(format!("d/excl{i:02}")))
                            .and_then(|mut f| f.write_all(format!("{tag} won").as_bytes()));
                        barrier.wait();
                        let dir = fs::create_dir(m.join(format!("d/dir{i:02}"))).and_then(|()| {
                            fs::write(
                                m.join(format!("d/dir{i:02}/by")),
                                format!("{tag} won").as_bytes(),
                            )
                        });
                        barrier.wait();
                        let plain = fs::write(
                            m.join(format!("d/plain{i:02}")),
                            format!("{tag} wrote this").as_bytes(),
                        );
                        rounds_done.push((excl, dir, plain));
                    }
                    rounds_done
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("a creating thread panicked"))
            .collect()
    });
    for (side, rs) in ["A", "B"].iter().zip(&results) {
        for (i, (excl, dir, plain)) in rs.iter().enumerate() {
            if let Err(e) = excl {
                assert_eq!(errno(e), libc::EEXIST, "{side}: O_EXCL create {i}: {e}");
            }
            if let Err(e) = dir {
                assert_eq!(errno(e), libc::EEXIST, "{side}: mkdir {i}: {e}");
            }
            if let Err(e) = plain {
                panic!("{side}: plain create {i}: {e}");
            }
        }
    }

    let c = host(&vol);
    let d = c.join("d");
    let tree = check_tree(c.path());
    assert_eq!(
        names(&d).len(),
        3 * rounds,
        "one entry per name in d: {:?}",
        names(&d)
    );
    for i in 0..rounds {
        let (a_excl, a_dir) = (results[0][i].0.is_ok(), results[0][i].1.is_ok());
        let (b_excl, b_dir) = (results[1][i].0.is_ok(), results[1][i].1.is_ok());
        assert!(
            a_excl != b_excl,
            "O_EXCL round {i}: exactly one host succeeds (A {a_excl}, B {b_excl})"
        );
        assert!(
            a_dir != b_dir,
            "mkdir round {i}: exactly one host succeeds (A {a_dir}, B {b_dir})"
        );
        let winner = if a_excl { "A" } else { "B" };
        assert_eq!(
            text(&d.join(format!("excl{i:02}"))),
            format!("{winner} won"),
            "O_EXCL round {i}: the winner's content"
        );
        let winner = if a_dir { "A" } else { "B" };
        assert_eq!(
            text(&d.join(format!("dir{i:02}/by"))),
            format!("{winner} won"),
            "mkdir round {i}: the winner's directory"
        );
        let plain = text(&d.join(format!("plain{i:02}")));
        assert!(
            plain == "A wrote this" || plain == "B wrote this",
            "plain create round {i}: one host's content, got {plain:?}"
        );
        assert!(
            tree[&PathBuf::from(format!("d/plain{i:02}"))].is_file(),
            "plain{i:02} is a file"
        );
    }
}

// Both hosts move two directories into each other at the same moment (A: x
// into y, B: y into x), many times: at most one move of each pair succeeds
// and a fresh mount sees a tree in which every directory is reachable once.
#[test]
fn simultaneous_cross_moves_never_make_a_cycle() {
    simultaneous_cross_moves(&["--feed_interval", "0"]);
}

// The same at the default flags (the change feed followed).
#[test]
fn simultaneous_cross_moves_at_the_default_flags() {
    simultaneous_cross_moves(&[]);
}

fn simultaneous_cross_moves(flags: &[&str]) {
    let vol = Volume::unique("mh-crossmove");
    let host = |v: &Volume| v.mount(flags);
    let a = host(&vol);
    let rounds = 15;
    for i in 0..rounds {
        fs::create_dir_all(a.join(format!("r{i:02}/x"))).expect("mkdir x on A");
        fs::create_dir_all(a.join(format!("r{i:02}/y"))).expect("mkdir y on A");
    }
    let b = host(&vol);
    for i in 0..rounds {
        assert!(b.join(format!("r{i:02}/x")).is_dir(), "B sees r{i:02}/x");
        assert!(b.join(format!("r{i:02}/y")).is_dir(), "B sees r{i:02}/y");
    }
    let barrier = std::sync::Barrier::new(2);
    let results: Vec<Vec<io::Result<()>>> = std::thread::scope(|s| {
        let hs: Vec<_> = [(&a, "x", "y"), (&b, "y", "x")]
            .into_iter()
            .map(|(m, from, into)| {
                let barrier = &barrier;
                s.spawn(move || {
                    (0..rounds)
                        .map(|i| {
                            barrier.wait();
                            let r = m.join(format!("r{i:02}"));
                            fs::rename(r.join(from), r.join(into).join(from))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("a moving thread panicked"))
            .collect()
    });
    let pairs: Vec<(&io::Result<()>, &io::Result<()>)> =
        results[0].iter().zip(&results[1]).collect();
    for (i, (ra, rb)) in pairs.iter().enumerate() {
        assert!(
            !(ra.is_ok() && rb.is_ok()),
            "round {i}: both cross moves succeeded (a cycle)"
        );
        eprintln!("round {i}: A x->y/x {ra:?}, B y->x/y {rb:?}");
    }

    let c = host(&vol);
    let tree = check_tree(c.path());
    for (i, (ra, rb)) in pairs.iter().enumerate() {
        let r = PathBuf::from(format!("r{i:02}"));
        let dirs: Vec<&PathBuf> = tree
            .keys()
            .filter(|p| p.starts_with(&r) && *p != &r)
            .collect();
        assert_eq!(
            dirs.len(),
            2,
            "round {i}: x and y each reachable once: {dirs:?}"
        );
        let (a_ok, b_ok) = (ra.is_ok(), rb.is_ok());
        let want: Vec<PathBuf> = match (a_ok, b_ok) {
            (true, _) => vec![r.join("y"), r.join("y/x")],
            (_, true) => vec![r.join("x"), r.join("x/y")],
            _ => vec![r.join("x"), r.join("y")],
        };
        let got: Vec<PathBuf> = dirs.into_iter().cloned().collect();
        assert_eq!(got, want, "round {i}: the tree after the moves");
    }
}
