//! Two mounts of one volume at the default flags (the change feed
//! followed), acting at the same moment: each round starts both sides on a
//! barrier, and the outcome must be one a single machine could give when
//! the two calls run in some order. The same cases with the feed off and
//! one host acting on a stale view are in tests/multihost.rs.

mod common;
#[path = "common/invariants.rs"]
mod invariants;

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Barrier;
use std::thread;

use common::*;
use invariants::*;

const ROUNDS: usize = 15;
/// The link race is narrow (an unlink's conditional delete reading the
/// inode before the link's write and deciding after it): more rounds.
const LINK_ROUNDS: usize = 60;

/// Runs `on_a(i)` on mount A and `on_b(i)` on mount B for each round `i`,
/// both started by a barrier; the results of both sides, by round. No
/// assertion runs inside the threads (a panic would leave the other side
/// waiting at the barrier).
fn race<T: Send>(
    rounds: usize,
    a: &Mount,
    b: &Mount,
    on_a: impl Fn(&Path, usize) -> T + Sync,
    on_b: impl Fn(&Path, usize) -> T + Sync,
) -> Vec<(T, T)> {
    let barrier = Barrier::new(2);
    let (ra, rb) = thread::scope(|s| {
        let barrier = &barrier;
        let side = move |root: &Path, f: &(dyn Fn(&Path, usize) -> T + Sync)| {
            (0..rounds)
                .map(|i| {
                    barrier.wait();
                    f(root, i)
                })
                .collect::<Vec<T>>()
        };
        let (on_a, on_b) = (&on_a, &on_b);
        let ha = s.spawn(move || side(a.path(), on_a));
        let hb = s.spawn(move || side(b.path(), on_b));
        (
            ha.join().expect("A's thread panicked"),
            hb.join().expect("B's thread panicked"),
        )
    });
    ra.into_iter().zip(rb).collect()
}

fn two_mounts(env: &str) -> (Volume, Mount, Mount) {
    let vol = Volume::unique(env);
    let a = vol.mount(&[]);
    let b = vol.mount(&[]);
    (vol, a, b)
}

fn allowed(r: &io::Result<()>, errnos: &[i32], what: &str) {
    if let Err(e) = r {
        assert!(errnos.contains(&errno(e)), "{what}: unexpected error {e}");
    }
}

// rmdir on A while B creates a file inside: never both succeed; a fresh
// mount has the directory with B's file, or neither.
#[test]
fn rmdir_and_a_create_inside_at_once() {
    let (vol, a, b) = two_mounts("cc-rmdir");
    for i in 0..ROUNDS {
        fs::create_dir(a.join(format!("d{i:02}"))).expect("mkdir");
    }
    for i in 0..ROUNDS {
        assert!(b.join(format!("d{i:02}")).is_dir(), "B sees d{i:02}");
    }
    let results = race(
        ROUNDS,
        &a,
        &b,
        |m, i| fs::remove_dir(m.join(format!("d{i:02}"))),
        |m, i| write_committed(&m.join(format!("d{i:02}/f")), b"B's file"),
    );
    let c = vol.mount(&[]);
    for (i, (rm, create)) in results.iter().enumerate() {
        allowed(rm, &[libc::ENOTEMPTY], &format!("round {i}: A's rmdir"));
        allowed(create, &[libc::ENOENT], &format!("round {i}: B's create"));
        assert!(
            rm.is_ok() != create.is_ok(),
            "round {i}: exactly one of rmdir ({rm:?}) and create ({create:?}) succeeds"
        );
        let d = c.join(format!("d{i:02}"));
        if create.is_ok() {
            assert_eq!(fs::read(d.join("f")).expect("B's file"), b"B's file");
        } else {
            assert!(!d.exists(), "round {i}: d{i:02} was removed");
        }
    }
    check_tree(c.path(), "fresh mount");
    check_rows(&vol.keyspace, vol.owner, &vol.environment, "rows");
}

// unlink on A while B rewrites the file (open without O_CREAT, write,
// close): in either order the name is gone at the end, and B's write never
// brings the file back.
#[test]
fn unlink_and_a_rewrite_at_once() {
    let (vol, a, b) = two_mounts("cc-unlink");
    for i in 0..ROUNDS {
        fs::write(a.join(format!("f{i:02}")), b"first").expect("write");
    }
    for i in 0..ROUNDS {
        assert_eq!(
            fs::read(b.join(format!("f{i:02}"))).expect("B reads"),
            b"first"
        );
    }
    let results = race(
        ROUNDS,
        &a,
        &b,
        |m, i| fs::remove_file(m.join(format!("f{i:02}"))),
        |m, i| {
            fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(m.join(format!("f{i:02}")))
                .and_then(|mut f| f.write_all(b"B's rewrite"))
        },
    );
    let c = vol.mount(&[]);
    for (i, (rm, rewrite)) in results.iter().enumerate() {
        assert!(rm.is_ok(), "round {i}: A's unlink: {rm:?}");
        allowed(rewrite, &[libc::ENOENT], &format!("round {i}: B's rewrite"));
        assert!(
            !c.join(format!("f{i:02}")).exists(),
            "round {i}: the unlinked file stays unlinked"
        );
    }
    assert!(
        fs::read_dir(c.path()).expect("list").next().is_none(),
        "nothing left"
    );
    check_rows(&vol.keyspace, vol.owner, &vol.environment, "rows");
}

// link on A while B unlinks the source: the new name exists exactly when
// the link succeeded, and then holds the file's content with one name.
#[test]
fn link_and_unlink_of_its_source_at_once() {
    let (vol, a, b) = two_mounts("cc-link");
    for i in 0..LINK_ROUNDS {
        fs::write(a.join(format!("f{i:02}")), format!("content {i}")).expect("write");
    }
    for i in 0..LINK_ROUNDS {
        assert!(b.join(format!("f{i:02}")).is_file(), "B sees f{i:02}");
    }
    let results = race(
        LINK_ROUNDS,
        &a,
        &b,
        |m, i| fs::hard_link(m.join(format!("f{i:02}")), m.join(format!("g{i:02}"))),
        |m, i| fs::remove_file(m.join(format!("f{i:02}"))),
    );
    let c = vol.mount(&[]);
    for (i, (link, rm)) in results.iter().enumerate() {
        allowed(link, &[libc::ENOENT], &format!("round {i}: A's link"));
        assert!(rm.is_ok(), "round {i}: B's unlink: {rm:?}");
        let g = c.join(format!("g{i:02}"));
        assert_eq!(
            g.exists(),
            link.is_ok(),
            "round {i}: g{i:02} exists iff linked"
        );
        if link.is_ok() {
            assert_eq!(
                fs::read(&g).expect("read g"),
                format!("content {i}").as_bytes()
            );
            assert_eq!(
                fs::metadata(&g).expect("stat g").nlink(),
                1,
                "round {i}: one name"
            );
        }
        assert!(
            !c.join(format!("f{i:02}")).exists(),
            "round {i}: f{i:02} is gone"
        );
    }
    check_tree(c.path(), "fresh mount");
    check_rows(&vol.keyspace, vol.owner, &vol.environment, "rows");
}

// chmod on A while B sets the times of the same file, and chmod of a
// directory on A while B creates inside it: every change survives.
#[test]
fn attribute_changes_and_creates_inside_at_once() {
    let (vol, a, b) = two_mounts("cc-attr");
    for i in 0..ROUNDS {
        fs::write(a.join(format!("f{i:02}")), b"x").expect("write");
        fs::create_dir(a.join(format!("d{i:02}"))).expect("mkdir");
    }
    for i in 0..ROUNDS {
        assert!(b.join(format!("d{i:02}")).is_dir(), "B sees d{i:02}");
        assert!(b.join(format!("f{i:02}")).is_file(), "B sees f{i:02}");
    }
    let mtime = 1_500_000_000 + 7;
    let results = race(
        ROUNDS,
        &a,
        &b,
        |m, i| {
            let perm = |mode| fs::Permissions::from_mode(mode);
            fs::set_permissions(m.join(format!("f{i:02}")), perm(0o640))?;
            fs::set_permissions(m.join(format!("d{i:02}")), perm(0o700))
        },
        |m, i| {
            set_times(&m.join(format!("f{i:02}")), (mtime, 0), (mtime, 0))?;
            write_committed(&m.join(format!("d{i:02}/inside")), b"B")?;
            fs::create_dir(m.join(format!("d{i:02}/sub")))
        },
    );
    let c = vol.mount(&[]);
    for (i, (ra, rb)) in results.iter().enumerate() {
        assert!(ra.is_ok(), "round {i}: A's chmods: {ra:?}");
        assert!(rb.is_ok(), "round {i}: B's changes: {rb:?}");
        let f = fs::metadata(c.join(format!("f{i:02}"))).expect("stat f");
        assert_eq!(
            f.mode() & 0o7777,
            0o640,
            "round {i}: A's chmod of f survives"
        );
        assert_eq!(f.mtime(), mtime, "round {i}: B's utimes of f survives");
        let d = fs::metadata(c.join(format!("d{i:02}"))).expect("stat d");
        assert_eq!(
            d.mode() & 0o7777,
            0o700,
            "round {i}: A's chmod of d survives"
        );
        assert_eq!(d.nlink(), 3, "round {i}: d has B's subdirectory");
        assert_eq!(
            fs::read(c.join(format!("d{i:02}/inside"))).expect("read"),
            b"B"
        );
    }
    check_tree(c.path(), "fresh mount");
    check_rows(&vol.keyspace, vol.owner, &vol.environment, "rows");
}

// mkdir of one name on both mounts, then a file written into it by
// whoever made it: one directory per name, holding the winner's file.
#[test]
fn mkdir_of_one_name_on_both_at_once() {
    let (vol, a, b) = two_mounts("cc-mkdir");
    let mk = |m: &Path, i: usize, tag: &str| {
        fs::create_dir(m.join(format!("d{i:02}")))?;
        write_committed(&m.join(format!("d{i:02}/by")), tag.as_bytes())
    };
    let results = race(ROUNDS, &a, &b, |m, i| mk(m, i, "A"), |m, i| mk(m, i, "B"));
    let c = vol.mount(&[]);
    for (i, (ra, rb)) in results.iter().enumerate() {
        allowed(ra, &[libc::EEXIST], &format!("round {i}: A's mkdir"));
        allowed(rb, &[libc::EEXIST], &format!("round {i}: B's mkdir"));
        assert!(
            ra.is_ok() != rb.is_ok(),
            "round {i}: exactly one mkdir succeeds"
        );
        let winner = if ra.is_ok() { "A" } else { "B" };
        assert_eq!(
            fs::read(c.join(format!("d{i:02}/by"))).expect("read by"),
            winner.as_bytes()
        );
    }
    check_tree(c.path(), "fresh mount");
    check_rows(&vol.keyspace, vol.owner, &vol.environment, "rows");
}
