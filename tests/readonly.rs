//! Read-only mounts at the default flags: the kernel keeps no handles (no
//! OPEN, OPENDIR, FLUSH or RELEASE reach the daemon), reads and listings
//! are served by inode, a warm pass is answered by the kernel alone, and
//! another mount's changes still show within seconds (the change feed).

mod common;
#[path = "common/scrape.rs"]
mod scrape;

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use scrape::*;

/// How long the read-only mount may take to see the other mount's change.
const SEE: Duration = Duration::from_secs(10);
/// Entries of the large directory: more than a directory read whole.
const LARGE: usize = 1100;
/// Requests a warm pass must not send: after their ENOSYS the kernel never
/// does.
const HANDLE_OPS: &[&str] = &["open", "opendir", "flush", "release", "releasedir"];
/// Requests a warm pass sends only for what the kernel dropped from its
/// page and directory caches meanwhile (memory reclaim may take a page at
/// any time): at most one per hundred paths.
const CACHE_OPS: &[&str] = &["read", "readdir", "readdirplus"];

/// Deterministic bytes of file `n`.
fn content(n: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + n * 7) % 251) as u8).collect()
}

/// Names and contents of the tree the tests read.
fn tree() -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        ("big.bin".to_string(), content(0, (5 << 20) + 12_345)),
        ("empty".to_string(), Vec::new()),
    ];
    for n in 0..40 {
        files.push((format!("small/f{n:02}.php"), content(n, 100 + n * 997)));
    }
    for n in 0..LARGE {
        files.push((format!("large/n{n:05}"), content(n, n % 50)));
    }
    files
}

fn write_tree(root: &Path) {
    fs::create_dir(root.join("small")).expect("mkdir small");
    fs::create_dir(root.join("large")).expect("mkdir large");
    for (name, data) in tree() {
        fs::write(root.join(&name), &data).unwrap_or_else(|e| panic!("write {name}: {e}"));
    }
}

fn names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

/// Reads the whole tree through `root`, checking listings, sizes and bytes.
fn check_tree(root: &Path) {
    let files = tree();
    for dir in ["small", "large"] {
        let listed = names(&root.join(dir));
        let unique: BTreeSet<&String> = listed.iter().collect();
        assert_eq!(unique.len(), listed.len(), "{dir} lists a name twice");
        let want: BTreeSet<String> = files
            .iter()
            .filter_map(|(n, _)| n.strip_prefix(&format!("{dir}/")).map(String::from))
            .collect();
        assert_eq!(unique, want.iter().collect(), "listing of {dir}");
    }
    for (name, data) in &files {
        let p = root.join(name);
        let len = fs::metadata(&p).map(|m| m.len());
        assert_eq!(len.ok(), Some(data.len() as u64), "size of {name}");
        let back = fs::read(&p).unwrap_or_else(|e| panic!("read {name}: {e}"));
        assert!(back == *data, "content of {name} differs");
    }
}

fn assert_erofs<T: std::fmt::Debug>(r: io::Result<T>, what: &str) {
    let e = r.expect_err(what);
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{what}: {e}");
}

/// Requests of op `op` in a scrape.
fn requests(text: &str, op: &str) -> f64 {
    value(text, &format!("cassfs_fuse_requests_total{{op=\"{op}\"}}"))
}

#[test]
fn warm_reads_never_leave_the_kernel() {
    let vol = Volume::unique("ro-warm");
    let mut rw = vol.mount(&[]);
    write_tree(rw.path());
    rw.unmount();
    // The read-only mount reads the change feed from 1 s before it starts:
    // the writer's last events, replayed, would drop the caches warmed below.
    std::thread::sleep(Duration::from_secs(2));

    let (ro, port) = mount_metered(&vol, &["--read_only"]);
    check_tree(ro.path());
    let cold = scrape(port);
    assert!(requests(&cold, "open") >= 1.0, "no OPEN was asked:\n{cold}");
    assert!(
        requests(&cold, "open") <= 2.0,
        "OPENs after ENOSYS:\n{cold}"
    );
    assert!(requests(&cold, "opendir") <= 2.0, "OPENDIRs after ENOSYS");
    for op in ["release", "releasedir"] {
        assert_eq!(requests(&cold, op), 0.0, "{op} sent:\n{cold}");
    }
    assert!(requests(&cold, "read") >= 1.0, "reads went by handle?");

    // Writes are refused.
    let p = ro.join("small/f00.php");
    assert_erofs(fs::write(ro.join("new"), b"x"), "create");
    assert_erofs(OpenOptions::new().write(true).open(&p), "open for writing");
    assert_erofs(OpenOptions::new().append(true).open(&p), "open to append");
    assert_erofs(fs::create_dir(ro.join("d")), "mkdir");
    assert_erofs(fs::remove_file(&p), "unlink");
    assert_erofs(fs::rename(&p, ro.join("x")), "rename");

    let before = scrape(port);
    let start = Instant::now();
    check_tree(ro.path());
    let warm = start.elapsed();
    let after = scrape(port);
    let mut sent = Vec::new();
    for op in HANDLE_OPS {
        let n = requests(&after, op) - requests(&before, op);
        assert_eq!(n, 0.0, "the warm pass sent {op} {n} times");
    }
    for op in CACHE_OPS {
        let n = requests(&after, op) - requests(&before, op);
        let bound = (tree().len() / 100) as f64;
        assert!(
            n <= bound,
            "the warm pass sent {op} {n} times (bound {bound})"
        );
    }
    let all =
        total(&after, "cassfs_fuse_requests_total") - total(&before, "cassfs_fuse_requests_total");
    for line in after.lines() {
        if let Some(rest) = line.strip_prefix("cassfs_fuse_requests_total{op=\"") {
            sent.push(rest.to_string());
        }
    }
    println!(
        "warm pass over {} files: {all} requests in {warm:?}",
        tree().len()
    );
    assert!(all <= 10.0, "the warm pass sent {all} requests: {sent:?}");
}

#[test]
fn listings_without_handles_resume_where_they_stopped() {
    let vol = Volume::unique("ro-seek");
    let mut rw = vol.mount(&[]);
    fs::create_dir(rw.join("large")).expect("mkdir large");
    for n in 0..LARGE {
        fs::write(rw.join(format!("large/n{n:05}")), b"").expect("create");
    }
    rw.unmount();
    let ro = vol.mount(&["--read_only"]);
    let dir = c_path(&ro.join("large"));
    // A listing read in two parts, with a telldir/seekdir back between them,
    // gives every name once and the same second part twice.
    // SAFETY: a valid path; the stream is used only until closedir.
    unsafe {
        let d = libc::opendir(dir.as_ptr());
        assert!(!d.is_null(), "opendir: {}", io::Error::last_os_error());
        let next = |d: *mut libc::DIR| -> Option<String> {
            let e = libc::readdir(d);
            (!e.is_null()).then(|| {
                let name = std::ffi::CStr::from_ptr((*e).d_name.as_ptr());
                name.to_string_lossy().into_owned()
            })
        };
        let mut first = Vec::new();
        for _ in 0..600 {
            first.extend(next(d));
        }
        let mark = libc::telldir(d);
        let rest: Vec<String> = std::iter::from_fn(|| next(d)).collect();
        libc::seekdir(d, mark);
        let again: Vec<String> = std::iter::from_fn(|| next(d)).collect();
        libc::closedir(d);
        assert_eq!(rest, again, "the listing after seekdir differs");
        let all: Vec<String> = first.into_iter().chain(rest).collect();
        let unique: BTreeSet<&String> = all.iter().collect();
        assert_eq!(all.len(), LARGE + 2, "entries listed");
        assert_eq!(unique.len(), LARGE + 2, "a name listed twice");
    }
}

#[test]
fn another_mounts_changes_show_on_a_read_only_mount() {
    let vol = Volume::unique("ro-see");
    let rw = vol.mount(&[]);
    fs::create_dir(rw.join("d")).expect("mkdir d");
    fs::write(rw.join("d/f"), b"version one").expect("write f");
    fs::write(rw.join("d/gone"), b"to be removed").expect("write gone");
    let big = content(1, 3 << 20);
    fs::write(rw.join("big"), &big).expect("write big");

    let ro = vol.mount(&["--read_only"]);
    // Warm the read-only mount's caches and the kernel's with the old state.
    for _ in 0..2 {
        assert_eq!(fs::read(ro.join("d/f")).expect("read f"), b"version one");
        assert!(fs::read(ro.join("big")).expect("read big") == big);
        let mut listed = names(&ro.join("d"));
        listed.sort();
        assert_eq!(listed, ["f", "gone"]);
        assert!(fs::metadata(ro.join("d/new")).is_err());
    }

    // Same size: only an invalidation can make the kernel drop its pages.
    fs::write(rw.join("d/f"), b"version two").expect("rewrite f");
    let mut big2 = big.clone();
    big2[(2 << 20) + 5] ^= 0xff;
    fs::write(rw.join("big"), &big2).expect("rewrite big");
    fs::write(rw.join("d/new"), b"new file").expect("write new");
    fs::remove_file(rw.join("d/gone")).expect("remove gone");

    let t = seen_within(SEE, "the rewritten file's content", || {
        fs::read(ro.join("d/f")).is_ok_and(|d| d == b"version two")
    });
    println!("rewritten file seen after {t:?}");
    seen_within(SEE, "the large file's new content", || {
        fs::read(ro.join("big")).is_ok_and(|d| d == big2)
    });
    seen_within(SEE, "the new file", || {
        fs::read(ro.join("d/new")).is_ok_and(|d| d == b"new file")
    });
    seen_within(SEE, "the removed file gone", || {
        fs::metadata(ro.join("d/gone")).is_err()
    });
    seen_within(SEE, "the directory's new listing", || {
        let mut listed = names(&ro.join("d"));
        listed.sort();
        listed == ["f", "new"]
    });
}

#[test]
fn without_the_feed_a_read_only_mount_keeps_handles() {
    let vol = Volume::unique("ro-nofeed");
    let rw = vol.mount(&[]);
    fs::write(rw.join("f"), b"first").expect("write f");
    let (ro, port) = mount_metered(&vol, &["--read_only", "--feed_interval", "0"]);
    for _ in 0..3 {
        assert_eq!(fs::read(ro.join("f")).expect("read f"), b"first");
    }
    // Kept pages would never learn of changes: every open asks. (A request
    // is counted once answered, so a release answered at once can be
    // counted before the open a worker answered: wait for both.)
    scrape_until(port, "an OPEN and a RELEASE per read", |t| {
        requests(t, "release") >= 3.0 && requests(t, "open") >= 3.0
    });
    fs::write(rw.join("f"), b"again").expect("rewrite f");
    seen_within(SEE, "the rewrite, by the version checked at open", || {
        fs::read(ro.join("f")).is_ok_and(|d| d == b"again")
    });
}
