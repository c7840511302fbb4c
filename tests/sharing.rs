//! Two daemons mounting one volume see each other's closed files: at once
//! with every cache TTL at 0, and at the default flags within 3 s (the
//! change feed pushes each change to the other mount).
//! Distinct volumes of one keyspace are isolated.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::time::Duration;

use common::*;

/// How the two mounts of a sharing test are made.
#[derive(Clone, Copy, Debug)]
enum Flags {
    /// Every TTL 0: each host sees the other's changes at once.
    Uncached,
    /// The defaults users run: the other host's changes are pushed by the
    /// change feed.
    Default,
}

impl Flags {
    fn mount(self, vol: &Volume) -> Mount {
        match self {
            Flags::Uncached => vol.mount_uncached(&[]),
            Flags::Default => vol.mount(&[]),
        }
    }

    /// How long a host may take to see the other host's new names and
    /// attribute changes: no time at all with TTLs 0 (checked once).
    fn limit(self) -> Duration {
        match self {
            Flags::Uncached => Duration::ZERO,
            Flags::Default => Duration::from_secs(3),
        }
    }

    /// Asserts `f` becomes true within [`Flags::limit`].
    #[track_caller]
    fn eventually(self, what: &str, f: impl FnMut() -> bool) {
        let limit = self.limit();
        assert!(wait_until(limit, f), "{self:?}: {what} (within {limit:?})");
    }
}

/// A file's content as text (for readable assertion messages).
fn text(p: &std::path::Path) -> String {
    String::from_utf8_lossy(&read(p)).into_owned()
}

/// Whether `p` reads as exactly `want`.
fn reads_as(p: &std::path::Path, want: &[u8]) -> bool {
    fs::read(p).is_ok_and(|d| d == want)
}

/// Whether `p` does not exist.
fn is_gone(p: &std::path::Path) -> bool {
    fs::symlink_metadata(p).is_err_and(|e| errno(&e) == libc::ENOENT)
}

// Closed files, overwrites, directories, renames, unlinks and chmods of one
// host are seen by the other.
fn see_each_others_closed_files(flags: Flags) {
    let vol = Volume::unique("shared");
    let a = flags.mount(&vol);
    let b = flags.mount(&vol);

    // B looks first (and would cache a negative entry if it were wrong to).
    assert_errno(fs::metadata(b.join("f")), libc::ENOENT, "not there yet");
    write(&a.join("f"), b"from A");
    flags.eventually("B reads A's closed file", || {
        reads_as(&b.join("f"), b"from A")
    });

    // An overwrite on A replaces what B read (B's page cache revalidated):
    // a new open sees it at once without caches, within seconds (the feed)
    // at the defaults.
    write(&a.join("f"), b"A again, longer");
    flags.eventually("B sees the new content", || {
        reads_as(&b.join("f"), b"A again, longer")
    });

    // And the other way round, with a big (block-stored) file.
    let big = pattern(unique_seed(), 1_500_000);
    write(&b.join("big"), &big);
    flags.eventually("A reads B's big file", || reads_as(&a.join("big"), &big));

    // A file still open for writing on A is not half-visible on B; after
    // close it is complete.
    {
        let mut f = fs::File::create(a.join("inprogress")).expect("create on A");
        f.write_all(b"part 1,").expect("write");
        f.write_all(b" part 2").expect("write");
    }
    flags.eventually("B reads the complete file", || {
        reads_as(&b.join("inprogress"), b"part 1, part 2")
    });

    // Directories.
    fs::create_dir(a.join("dir")).expect("mkdir on A");
    write(&a.join("dir/inner"), b"inner");
    flags.eventually("B sees A's directory", || b.join("dir").is_dir());
    flags.eventually("B lists A's directory", || {
        fs::read_dir(b.join("dir")).is_ok_and(|d| d.count() == 1)
    });

    // Rename on A.
    fs::rename(a.join("f"), a.join("dir/g")).expect("rename on A");
    flags.eventually("old name gone on B", || is_gone(&b.join("f")));
    flags.eventually("new name on B", || {
        reads_as(&b.join("dir/g"), b"A again, longer")
    });
    flags.eventually("not listed on B", || {
        !names(b.path()).contains(&OsString::from("f"))
    });

    // Unlink on A.
    fs::remove_file(a.join("dir/inner")).expect("unlink on A");
    flags.eventually("unlinked file gone on B", || is_gone(&b.join("dir/inner")));
    flags.eventually("B lists one entry left", || {
        names(&b.join("dir")).len() == 1
    });

    // Attributes changed on B are seen on A.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(b.join("big"), fs::Permissions::from_mode(0o611)).expect("chmod on B");
    flags.eventually("A sees B's chmod", || {
        fs::metadata(a.join("big")).is_ok_and(|m| m.permissions().mode() & 0o7777 == 0o611)
    });

    // Directory rename on B, seen on A.
    fs::rename(b.join("dir"), b.join("dir2")).expect("rename dir on B");
    flags.eventually("old dir gone on A", || is_gone(&a.join("dir")));
    flags.eventually("A reads through the renamed dir", || {
        reads_as(&a.join("dir2/g"), b"A again, longer")
    });
}

// Uncached: each host sees the other's changes at once.
#[test]
fn two_mounts_see_each_others_closed_files() {
    see_each_others_closed_files(Flags::Uncached);
}

// Default flags: the same, once the caches expire.
#[test]
fn two_mounts_see_each_others_closed_files_default_flags() {
    see_each_others_closed_files(Flags::Default);
}

// Volumes of one keyspace (by owner and environment) are isolated; blocks
// are shared per owner only.
#[test]
fn volumes_are_isolated() {
    let ks = fresh_keyspace("isolation");
    let vols = [
        Volume::new(&ks, 1, "prod"),
        Volume::new(&ks, 2, "prod"),
        Volume::new(&ks, 1, "dev"),
    ];
    let mounts: Vec<Mount> = vols.iter().map(|v| v.mount_uncached(&[])).collect();
    for (i, m) in mounts.iter().enumerate() {
        write(&m.join("same_name"), format!("volume {i}").as_bytes());
        write(&m.join(format!("only_{i}")), b"mine");
        fs::create_dir(m.join(format!("dir_{i}"))).expect("mkdir");
    }
    for (i, m) in mounts.iter().enumerate() {
        assert_eq!(
            read(&m.join("same_name")),
            format!("volume {i}").as_bytes(),
            "volume {i} keeps its own same_name"
        );
        let want: BTreeSet<OsString> = [
            "same_name".to_string(),
            format!("only_{i}"),
            format!("dir_{i}"),
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        assert_eq!(names(m.path()), want, "volume {i} lists only its own");
        for j in 0..mounts.len() {
            if j != i {
                assert_errno(
                    fs::metadata(m.join(format!("only_{j}"))),
                    libc::ENOENT,
                    &format!("volume {i} does not see volume {j}'s file"),
                );
            }
        }
    }
    // An identical big file in (1, prod) and (1, dev) is stored once (blocks
    // are per owner); (2, prod) stores its own.
    let big = pattern(unique_seed(), 2 * (1 << 20));
    for m in &mounts {
        write(&m.join("big"), &big);
    }
    assert_eq!(
        block_rows(&ks, 1),
        2,
        "owner 1: two blocks shared by prod and dev"
    );
    assert_eq!(block_rows(&ks, 2), 2, "owner 2: its own two blocks");
    // Removing it in one volume leaves the others intact.
    fs::remove_file(mounts[0].join("big")).expect("unlink in (1, prod)");
    assert_eq!(read(&mounts[2].join("big")), big, "(1, dev) still has it");
    assert_eq!(read(&mounts[1].join("big")), big, "(2, prod) still has it");
    // A remount of (1, prod) still sees only its own.
    drop(mounts);
    let again = vols[0].mount_uncached(&[]);
    assert_eq!(text(&again.join("same_name")), "volume 0");
    assert_errno(
        fs::metadata(again.join("only_1")),
        libc::ENOENT,
        "still isolated",
    );
}

// Writes are private until close/fsync; an fsync publishes them while the
// file stays open; xattrs are shared too.
fn fsync_publishes_and_unflushed_writes_stay_private_with(flags: Flags) {
    let vol = Volume::unique("fsync");
    let a = flags.mount(&vol);
    let b = flags.mount(&vol);
    write(&a.join("f"), b"committed v1");
    flags.eventually("B sees A's new file", || {
        reads_as(&b.join("f"), b"committed v1")
    });
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(a.join("f"))
        .expect("open on A");
    f.write_all(b"uncommitted v2").expect("write on A");
    // Writes are buffered until close/fsync: B still reads the last commit.
    assert_eq!(
        text(&b.join("f")),
        "committed v1",
        "B must not see A's unflushed writes"
    );
    f.sync_all().expect("fsync on A");
    // A new open sees the latest commit (at once without caches, pushed by
    // the feed at the defaults).
    flags.eventually(
        "B sees the fsynced content while A keeps the file open",
        || reads_as(&b.join("f"), b"uncommitted v2"),
    );
    drop(f);
    assert_eq!(text(&b.join("f")), "uncommitted v2");
    // xattrs too.
    setxattr(&a.join("f"), "user.tag", b"from A", 0).expect("setxattr on A");
    flags.eventually("B reads A's xattr", || {
        getxattr(&b.join("f"), "user.tag").is_ok_and(|v| v == b"from A")
    });
}

// Uncached.
#[test]
fn fsync_publishes_and_unflushed_writes_stay_private() {
    fsync_publishes_and_unflushed_writes_stay_private_with(Flags::Uncached);
}

// Default flags.
#[test]
fn fsync_publishes_and_unflushed_writes_stay_private_default_flags() {
    fsync_publishes_and_unflushed_writes_stay_private_with(Flags::Default);
}

// Both hosts create files in one directory at once: each host lists all of
// them (at the defaults once its caches expire), with distinct inodes.
fn concurrent_creators_get_distinct_inodes(flags: Flags) {
    use std::os::unix::fs::MetadataExt;
    let vol = Volume::unique("twowriters");
    let a = flags.mount(&vol);
    let b = flags.mount(&vol);
    fs::create_dir(a.join("d")).expect("mkdir on A");
    flags.eventually("B sees A's directory", || b.join("d").is_dir());
    let per = 60;
    std::thread::scope(|s| {
        for (tag, m) in [("a", &a), ("b", &b)] {
            s.spawn(move || {
                for i in 0..per {
                    let name = format!("{tag}{i:03}");
                    write(&m.join("d").join(&name), name.as_bytes());
                }
            });
        }
    });
    for (side, m) in [("A", &a), ("B", &b)] {
        flags.eventually(&format!("{side} lists every file of both"), || {
            names(&m.join("d")).len() == 2 * per
        });
        let listed = names(&m.join("d"));
        let mut inos = BTreeSet::new();
        for n in &listed {
            let p = m.join("d").join(n);
            assert_eq!(read(&p), n.as_encoded_bytes(), "{side}: content of {n:?}");
            inos.insert(fs::metadata(&p).expect("stat").ino());
        }
        assert_eq!(inos.len(), 2 * per, "{side}: inode numbers are distinct");
    }
}

// Uncached.
#[test]
fn concurrent_creators_on_two_mounts_get_distinct_inodes() {
    concurrent_creators_get_distinct_inodes(Flags::Uncached);
}

// Default flags.
#[test]
fn concurrent_creators_on_two_mounts_get_distinct_inodes_default_flags() {
    concurrent_creators_get_distinct_inodes(Flags::Default);
}
