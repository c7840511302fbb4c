//! Two daemons mounting one volume see each other's closed files at once
//! (with every cache TTL at 0); distinct volumes of one keyspace are
//! isolated.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::io::Write;

use common::*;

#[test]
fn two_mounts_see_each_others_closed_files() {
    let vol = Volume::unique("shared");
    let a = vol.mount_uncached(&[]);
    let b = vol.mount_uncached(&[]);

    // B looks first (and would cache a negative entry if it were wrong to).
    assert_errno(fs::metadata(b.join("f")), libc::ENOENT, "not there yet");
    write(&a.join("f"), b"from A");
    assert_eq!(read(&b.join("f")), b"from A", "B reads A's closed file");

    // An overwrite on A replaces what B read (B's page cache revalidated).
    write(&a.join("f"), b"A again, longer");
    assert_eq!(
        read(&b.join("f")),
        b"A again, longer",
        "B sees the new content"
    );

    // And the other way round, with a big (block-stored) file.
    let big = pattern(unique_seed(), 1_500_000);
    write(&b.join("big"), &big);
    assert_eq!(read(&a.join("big")), big, "A reads B's big file");

    // A file still open for writing on A is not half-visible on B; after
    // close it is complete.
    {
        let mut f = fs::File::create(a.join("inprogress")).expect("create on A");
        f.write_all(b"part 1,").expect("write");
        f.write_all(b" part 2").expect("write");
    }
    assert_eq!(read(&b.join("inprogress")), b"part 1, part 2");

    // Directories.
    fs::create_dir(a.join("dir")).expect("mkdir on A");
    write(&a.join("dir/inner"), b"inner");
    assert!(b.join("dir").is_dir(), "B sees A's directory");
    assert_eq!(names(&b.join("dir")).len(), 1, "B lists A's directory");

    // Rename on A.
    fs::rename(a.join("f"), a.join("dir/g")).expect("rename on A");
    assert_errno(
        fs::metadata(b.join("f")),
        libc::ENOENT,
        "old name gone on B",
    );
    assert_eq!(read(&b.join("dir/g")), b"A again, longer", "new name on B");
    assert!(
        !names(b.path()).contains(&OsString::from("f")),
        "not listed on B"
    );

    // Unlink on A.
    fs::remove_file(a.join("dir/inner")).expect("unlink on A");
    assert_errno(
        fs::metadata(b.join("dir/inner")),
        libc::ENOENT,
        "unlinked file gone on B",
    );
    assert_eq!(names(&b.join("dir")).len(), 1, "B lists one entry left");

    // Attributes changed on B are seen on A.
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(b.join("big"), fs::Permissions::from_mode(0o611)).expect("chmod on B");
    assert_eq!(
        fs::metadata(a.join("big"))
            .expect("stat on A")
            .permissions()
            .mode()
            & 0o7777,
        0o611,
        "A sees B's chmod"
    );

    // Directory rename on B, seen on A.
    fs::rename(b.join("dir"), b.join("dir2")).expect("rename dir on B");
    assert_errno(
        fs::metadata(a.join("dir")),
        libc::ENOENT,
        "old dir gone on A",
    );
    assert_eq!(read(&a.join("dir2/g")), b"A again, longer");
}

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
    assert_eq!(read(&again.join("same_name")), b"volume 0");
    assert_errno(
        fs::metadata(again.join("only_1")),
        libc::ENOENT,
        "still isolated",
    );
}

#[test]
fn fsync_publishes_and_unflushed_writes_stay_private() {
    let vol = Volume::unique("fsync");
    let a = vol.mount_uncached(&[]);
    let b = vol.mount_uncached(&[]);
    write(&a.join("f"), b"committed v1");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(a.join("f"))
        .expect("open on A");
    f.write_all(b"uncommitted v2").expect("write on A");
    // Writes are buffered until close/fsync: B still reads the last commit.
    assert_eq!(
        read(&b.join("f")),
        b"committed v1",
        "B must not see A's unflushed writes"
    );
    f.sync_all().expect("fsync on A");
    assert_eq!(
        read(&b.join("f")),
        b"uncommitted v2",
        "B sees the fsynced content while A keeps the file open"
    );
    drop(f);
    assert_eq!(read(&b.join("f")), b"uncommitted v2");
    // xattrs too.
    setxattr(&a.join("f"), "user.tag", b"from A", 0).expect("setxattr on A");
    assert_eq!(
        getxattr(&b.join("f"), "user.tag").expect("getxattr on B"),
        b"from A"
    );
}

#[test]
fn concurrent_creators_on_two_mounts_get_distinct_inodes() {
    use std::os::unix::fs::MetadataExt;
    let vol = Volume::unique("twowriters");
    let a = vol.mount_uncached(&[]);
    let b = vol.mount_uncached(&[]);
    fs::create_dir(a.join("d")).expect("mkdir on A");
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
        let listed = names(&m.join("d"));
        assert_eq!(listed.len(), 2 * per, "{side} lists every file of both");
        let mut inos = BTreeSet::new();
        for n in &listed {
            let p = m.join("d").join(n);
            assert_eq!(read(&p), n.as_encoded_bytes(), "{side}: content of {n:?}");
            inos.insert(fs::metadata(&p).expect("stat").ino());
        }
        assert_eq!(inos.len(), 2 * per, "{side}: inode numbers are distinct");
    }
}
