//! Warm reads on a read-write mount at the default flags: opens for reading
//! of a file the kernel already holds are answered without a worker, and
//! must still never serve stale pages — another mount's change shows to a
//! reader that keeps re-opening the file, this mount's own writes show at
//! once, and a name another mount deleted after this one read its
//! directory ahead is gone within the feed's bound.

mod common;
#[path = "common/scrape.rs"]
mod scrape;

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use scrape::*;

/// How long a mount may take to see another mount's change (generous: the
/// CI machine is 2 slow cores; the feed's own bound is about a second).
const SEE: Duration = Duration::from_secs(10);

/// `len` bytes of version `v` (same length for every version).
fn body(v: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 200) as u8 ^ v).collect()
}

/// Opens, reads whole and closes (what a PHP request does to a script).
fn read(p: &Path) -> std::io::Result<Vec<u8>> {
    let mut f = fs::File::open(p)?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)?;
    Ok(out)
}

/// Writes a file whole through an O_TRUNC open (a deploy or a cache write).
fn rewrite(p: &Path, data: &[u8]) {
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .create(true)
        .open(p)
        .unwrap_or_else(|e| panic!("open {} for writing: {e}", p.display()));
    f.write_all(data).expect("write");
}

fn requests(text: &str, op: &str) -> f64 {
    value(text, &format!("cassfs_fuse_requests_total{{op=\"{op}\"}}"))
}

#[test]
fn another_mounts_change_shows_to_a_reader_that_keeps_reopening() {
    let vol = Volume::unique("warm-other");
    let (a, port) = mount_metered(&vol, &[]);
    let b = vol.mount(&[]);
    // Small (inline) and large (blocks) files, rewritten at the same size:
    // only an invalidation, never a size change, can drop the old pages.
    for (name, len) in [("small.php", 3000), ("large.bin", (2 << 20) + 17)] {
        rewrite(&b.join(name), &body(1, len));
        let pa = a.join(name);
        seen_within(SEE, &format!("{name} v1 on A"), || {
            read(&pa).is_ok_and(|d| d == body(1, len))
        });
        // Warm: the kernel holds the pages, the next opens are cached ones.
        let before = scrape(port);
        for _ in 0..20 {
            assert_eq!(read(&pa).expect("read v1"), body(1, len), "{name}");
        }
        let after = scrape(port);
        let reads = requests(&after, "read") - requests(&before, "read");
        assert_eq!(reads, 0.0, "{name}: warm re-opens read from the daemon");
        assert!(requests(&after, "open") - requests(&before, "open") >= 20.0);

        rewrite(&b.join(name), &body(2, len));
        let took = seen_within(SEE, &format!("{name} v2 on A"), || {
            let d = read(&pa).expect("read while it changes");
            assert!(
                d == body(1, len) || d == body(2, len),
                "{name}: a mix of versions ({} bytes)",
                d.len()
            );
            d == body(2, len)
        });
        println!("{name}: the re-opening reader saw the change after {took:?}");
        // And it stays: later cached opens keep the new pages.
        for _ in 0..5 {
            assert_eq!(read(&pa).expect("read v2"), body(2, len), "{name}");
        }
    }
}

#[test]
fn own_writes_show_to_the_next_read_only_open() {
    let vol = Volume::unique("warm-own");
    let a = vol.mount(&[]);
    let p = a.join("config.php");
    let len = 5000;
    rewrite(&p, &body(1, len));
    for _ in 0..3 {
        assert_eq!(read(&p).expect("read v1"), body(1, len));
    }
    // A reader holding the file open while it is rewritten and closed.
    let mut held = fs::File::open(&p).expect("open the held reader");
    rewrite(&p, &body(2, len));
    assert_eq!(read(&p).expect("read after the commit"), body(2, len));
    let mut again = Vec::new();
    held.seek(SeekFrom::Start(0)).expect("seek");
    held.read_to_end(&mut again).expect("read the held reader");
    assert_eq!(again, body(2, len), "the held reader reads the new content");
    drop(held);
    assert_eq!(read(&p).expect("read after the close"), body(2, len));

    // Appends while readers come and go; a shorter rewrite.
    let mut log = OpenOptions::new().append(true).open(&p).expect("append");
    log.write_all(b"tail").expect("append write");
    drop(log);
    let mut want = body(2, len);
    want.extend_from_slice(b"tail");
    assert_eq!(read(&p).expect("read after the append"), want);
    rewrite(&p, b"short");
    assert_eq!(read(&p).expect("read the short one"), b"short");
    assert_eq!(fs::metadata(&p).expect("stat").len(), 5);

    // Unlinked while open for reading: still readable, gone by name, and
    // the name is free for a new file.
    let mut open = fs::File::open(&p).expect("open before unlink");
    fs::remove_file(&p).expect("unlink");
    let mut kept = Vec::new();
    open.read_to_end(&mut kept).expect("read the unlinked file");
    assert_eq!(kept, b"short");
    drop(open);
    assert!(fs::metadata(&p).is_err(), "the name is gone");
    rewrite(&p, b"new");
    assert_eq!(read(&p).expect("read the new file"), b"new");
}

#[test]
fn a_name_deleted_elsewhere_after_its_directory_was_read_ahead_goes() {
    let vol = Volume::unique("warm-prefetch");
    let a = vol.mount(&[]);
    let b = vol.mount(&[]);
    fs::create_dir_all(b.join("site/sub")).expect("mkdir");
    for n in 0..30 {
        rewrite(
            &b.join(format!("site/f{n:02}.php")),
            &body(n, 100 + n as usize),
        );
        rewrite(&b.join(format!("site/sub/g{n:02}.php")), &body(n, 70_000));
    }
    // A reads one file: its directory (and what is below) is read ahead.
    let first = a.join("site/f00.php");
    seen_within(SEE, "site/f00.php on A", || read(&first).is_ok());
    thread::sleep(Duration::from_millis(500));
    let gone = a.join("site/f07.php");
    let gone_below = a.join("site/sub/g07.php");
    fs::remove_file(b.join("site/f07.php")).expect("unlink on B");
    fs::remove_file(b.join("site/sub/g07.php")).expect("unlink below on B");
    seen_within(
        SEE,
        "f07 gone on A",
        || matches!(read(&gone), Err(e) if e.raw_os_error() == Some(libc::ENOENT)),
    );
    seen_within(
        SEE,
        "sub/g07 gone on A",
        || matches!(read(&gone_below), Err(e) if e.raw_os_error() == Some(libc::ENOENT)),
    );
    let listed: Vec<String> = fs::read_dir(a.join("site/sub"))
        .expect("list sub")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(listed.len(), 29, "{listed:?}");
    assert!(!listed.iter().any(|n| n == "g07.php"), "{listed:?}");
    // The others read right (content read ahead, not mixed up).
    for n in [0u8, 8, 29] {
        let p = a.join(format!("site/sub/g{n:02}.php"));
        assert_eq!(read(&p).expect("read below"), body(n, 70_000));
    }
}

/// Readers re-opening files while a writer replaces one (a temporary file
/// renamed over it) and another file is unlinked and made again, on one
/// mount read by several kernel threads: every read is one whole version,
/// the file replaced by renames always opens (an open of the inode a rename
/// just replaced gets ESTALE, and the kernel looks the path up again), and
/// the churned file fails only with ENOENT (between its unlink and its new
/// create; it reads empty between its create and write).
#[test]
fn readers_writers_and_unlinks_on_one_mount_agree() {
    let vol = Volume::unique("warm-race");
    let a = vol.mount(&["-fuse_threads", "4"]);
    let (f, g) = (a.join("hot.php"), a.join("churn.php"));
    let len = 20_000;
    rewrite(&f, &body(0, len));
    rewrite(&g, &body(100, 300));
    let until = Instant::now() + Duration::from_secs(4);
    thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let (mut n, mut stale) = (0, 0);
                while Instant::now() < until {
                    // Never ENOENT: an open of the inode a rename just
                    // replaced gets ESTALE, and the kernel looks again.
                    // It looks again once: an open that loses the race to
                    // the next rename as well fails with ESTALE (rare).
                    match read(&f) {
                        Ok(d) => {
                            assert!(
                                d.len() == len && (0..=200).any(|v| d == body(v, len)),
                                "a read that is no whole version ({} bytes)",
                                d.len()
                            );
                            n += 1;
                        }
                        Err(e) if e.raw_os_error() == Some(libc::ESTALE) => stale += 1,
                        Err(e) => panic!("a read of the file renamed over: {e}"),
                    }
                    match read(&g) {
                        Ok(d) => assert!(matches!(d.len(), 0 | 300), "churn: {} bytes", d.len()),
                        Err(e) => assert!(
                            matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESTALE)),
                            "churn: {e}"
                        ),
                    }
                }
                assert!(n > 10, "only {n} whole reads");
                assert!(
                    stale * 100 <= n,
                    "{stale} opens of the file renamed over failed with ESTALE, {n} read it"
                );
            });
        }
        s.spawn(|| {
            // A cache file's update: a temporary file renamed over it.
            let (mut v, tmp) = (1, a.join("hot.php.tmp"));
            while Instant::now() < until {
                rewrite(&tmp, &body(v, len));
                fs::rename(&tmp, &f).expect("rename over");
                v = v % 200 + 1;
            }
        });
        s.spawn(|| {
            while Instant::now() < until {
                fs::remove_file(&g).expect("unlink churn");
                rewrite(&g, &body(101, 300));
            }
        });
    });
    // Afterwards every open sees the last commit.
    let last = read(&f).expect("final read");
    assert_eq!(read(&f).expect("again"), last);
    assert_eq!(read(&g).expect("churn at the end"), body(101, 300));
}
