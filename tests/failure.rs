//! Failures: Cassandra going away under a mounted volume, and shutdown by
//! signals.
//!
//! This binary stops the shared Cassandra. Each of its tests takes the
//! Cassandra lock EXCLUSIVE (every other test process holds it shared), so
//! none of it runs while another test uses Cassandra, and its tests run one
//! at a time.

mod common;

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Serializes the tests of this binary.
static SERIAL: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    let g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    cassandra_exclusive();
    // A previous test may have failed with Cassandra down.
    ensure_cassandra_up();
    g
}

fn cassandra_up() -> bool {
    cassandra_script(&["status"], Duration::from_secs(30)).success()
}

fn ensure_cassandra_up() {
    if !cassandra_up() {
        let r = cassandra_script(&["start"], Duration::from_secs(300));
        assert!(r.success(), "scripts/cassandra start: {}", r.describe());
    }
}

/// Restarts Cassandra when dropped, whatever happened.
struct RestartCassandra;

impl Drop for RestartCassandra {
    fn drop(&mut self) {
        if !cassandra_up() {
            let r = cassandra_script(&["start"], Duration::from_secs(300));
            if !r.success() {
                eprintln!("could not restart Cassandra: {}", r.describe());
            }
        }
    }
}

/// Runs `f` on a thread; returns its result and how long it took, or None
/// if it had not finished after `limit` (the thread is then left blocked;
/// the mount guard's lazy unmount releases it).
fn timed<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<(T, Duration)> {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    thread::spawn(move || {
        let r = f();
        let _ = tx.send((r, start.elapsed()));
    });
    rx.recv_timeout(limit).ok()
}

const TIMEOUT_SECS: u64 = 3;
/// What "--timeout 3" may take in all: the timeout, a retry or two, slack.
const LIMIT: Duration = Duration::from_secs(TIMEOUT_SECS + 7);

#[track_caller]
fn assert_eio_in_time<T: std::fmt::Debug>(
    r: Option<(io::Result<T>, Duration)>,
    what: &str,
    m: &Mount,
) {
    let Some((res, took)) = r else {
        panic!(
            "{what}: no answer within {LIMIT:?} with Cassandra down; output:\n{}",
            m.output()
        );
    };
    match res {
        Ok(v) => panic!("{what}: succeeded with Cassandra down: {v:?}"),
        Err(e) => assert_eq!(
            e.raw_os_error(),
            Some(libc::EIO),
            "{what}: expected EIO with Cassandra down, got {e}"
        ),
    }
    assert!(
        took <= LIMIT,
        "{what}: EIO after {took:?}, more than --timeout {TIMEOUT_SECS}s + margin"
    );
}

#[test]
fn cassandra_down_gives_eio_then_recovers() {
    let _serial = exclusive();
    let vol = Volume::unique("failure");
    let timeout = TIMEOUT_SECS.to_string();
    let mut m = vol.mount_uncached(&["--timeout", &timeout]);
    let big = pattern(unique_seed(), 1_200_000);
    fs::write(m.join("before"), b"written before the outage").expect("write before");
    fs::write(m.join("big_before"), &big).expect("write big before");
    fs::create_dir(m.join("dir")).expect("mkdir before");

    let _restart = RestartCassandra;
    let r = cassandra_script(&["stop"], Duration::from_secs(120));
    assert!(r.success(), "scripts/cassandra stop: {}", r.describe());
    assert!(!cassandra_up(), "Cassandra is down");

    let p: PathBuf = m.join("created_while_down");
    assert_eio_in_time(
        timed(LIMIT * 3, move || fs::File::create(&p).map(|_| ())),
        "create with Cassandra down",
        &m,
    );
    let p: PathBuf = m.join("never_seen_name");
    assert_eio_in_time(
        timed(LIMIT * 3, move || fs::metadata(&p).map(|_| ())),
        "stat of a never-seen name with Cassandra down",
        &m,
    );
    let p: PathBuf = m.join("dir/newdir");
    assert_eio_in_time(
        timed(LIMIT * 3, move || fs::create_dir(&p)),
        "mkdir with Cassandra down",
        &m,
    );
    assert!(m.is_alive(), "the daemon stays up; output:\n{}", m.output());
    assert!(m.is_mounted(), "the volume stays mounted");

    let r = cassandra_script(&["start"], Duration::from_secs(300));
    assert!(r.success(), "scripts/cassandra start: {}", r.describe());

    // The driver reconnects with some backoff: allow it a while.
    let p = m.join("created_after");
    let ok = wait_until(Duration::from_secs(60), || {
        write_committed(&p, b"after the outage").is_ok()
    });
    assert!(
        ok,
        "writes work again after Cassandra is back; output:\n{}",
        m.output()
    );
    assert_eq!(
        fs::read(m.join("before")).expect("read before"),
        b"written before the outage",
        "data written before the outage is intact"
    );
    assert_eq!(
        fs::read(m.join("big_before")).expect("read big before"),
        big,
        "big file intact"
    );
    assert!(m.join("dir").is_dir(), "directory intact");
    assert_errno(
        fs::metadata(m.join("created_while_down")),
        libc::ENOENT,
        "the failed create left nothing",
    );
    assert_eq!(
        fs::read(&p).expect("read created_after"),
        b"after the outage"
    );
    assert!(m.is_alive(), "the daemon is still up");
    let st = m.unmount();
    assert!(st.success(), "clean unmount after recovery: {st}");
}

/// Content of the `i`-th file of the in-flight writer: every fifth one
/// larger than a block, so both kinds of commit are in flight.
fn inflight_content(i: usize) -> Vec<u8> {
    let len = if i % 5 == 4 {
        1_500_000
    } else {
        2_000 + i * 13 % 5_000
    };
    let mut v = format!("{i}:").into_bytes();
    v.extend(pattern(i as u64 * 31 + 7, len));
    v
}

/// Writes `d/f<i>` whole and closes it, close's error included.
fn write_whole(p: &std::path::Path, data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::io::IntoRawFd;
    let mut f = fs::File::create(p)?;
    f.write_all(data)?;
    // SAFETY: the descriptor is owned by `f`, given up by into_raw_fd.
    check(unsafe { libc::close(f.into_raw_fd()) })
}

// At the default flags: Cassandra stops while a writer is writing new files
// whole and while a directory the mount never listed exists. Listing that
// directory fails with EIO (never an empty or partial listing); every write
// in flight either lands whole or fails, and a fresh mount shows which:
// every file whose close succeeded is there whole, every other one is
// absent or whole.
#[test]
fn writes_in_flight_and_uncached_listings_during_an_outage() {
    let _serial = exclusive();
    let vol = Volume::unique("inflight");
    let timeout = TIMEOUT_SECS.to_string();
    // Four levels below the root: deeper than what the mount reads ahead of
    // the root's lookups (three levels), so never listed by it.
    const UNLISTED: &str = "u1/u2/u3/unlisted";
    let seeder = vol.mount(&[]);
    fs::create_dir_all(seeder.join(UNLISTED)).expect("mkdir unlisted");
    for n in ["a", "b", "c"] {
        fs::write(seeder.join(UNLISTED).join(n), n).expect("write unlisted/*");
    }
    fs::create_dir(seeder.join("d")).expect("mkdir d");
    drop(seeder);
    let mut m = vol.mount(&["--timeout", &timeout]);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let root = m.path().to_path_buf();
    let writer_stop = stop.clone();
    let writer = thread::spawn(move || {
        let mut results = Vec::new();
        let mut failures = 0;
        for i in 0..100_000 {
            if writer_stop.load(std::sync::atomic::Ordering::SeqCst) || failures >= 3 {
                break;
            }
            let r = write_whole(&root.join(format!("d/f{i:05}")), &inflight_content(i));
            failures += usize::from(r.is_err());
            results.push(r.map_err(|e| e.raw_os_error()));
        }
        results
    });
    thread::sleep(Duration::from_millis(1500));

    let _restart = RestartCassandra;
    let r = cassandra_script(&["stop"], Duration::from_secs(120));
    assert!(r.success(), "scripts/cassandra stop: {}", r.describe());
    let dir = m.join(UNLISTED);
    let listed = timed(LIMIT * 3, move || {
        fs::read_dir(&dir).map(|d| d.filter_map(|e| e.ok()).count())
    });
    match listed {
        None => panic!("listing an unlisted directory hangs with Cassandra down"),
        Some((Ok(n), _)) => panic!("an uncached directory listed {n} entries with Cassandra down"),
        Some((Err(e), took)) => {
            assert_eq!(e.raw_os_error(), Some(libc::EIO), "listing: {e}");
            assert!(took <= LIMIT, "EIO after {took:?}");
        }
    }
    let results = {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(writer.join());
        });
        let joined = rx.recv_timeout(LIMIT * 6);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        joined
            .expect("the writer stops on its errors within the timeouts")
            .expect("the writer thread")
    };
    assert!(m.is_alive(), "the daemon stays up; output:\n{}", m.output());
    let r = cassandra_script(&["start"], Duration::from_secs(300));
    assert!(r.success(), "scripts/cassandra start: {}", r.describe());
    drop(m);

    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(ok > 0, "some writes landed before the outage");
    for (i, r) in results.iter().enumerate() {
        if let Err(e) = r {
            assert_eq!(*e, Some(libc::EIO), "write {i} failed with EIO, not {e:?}");
        }
    }
    // The driver of a new mount may need a moment once Cassandra is back.
    let mut fresh = None;
    let back = wait_until(Duration::from_secs(120), || {
        fresh = Mount::try_new(&vol.args()).ok();
        fresh.is_some()
    });
    assert!(back, "a fresh mount once Cassandra is back");
    let c = fresh.expect("the fresh mount");
    let names: std::collections::BTreeSet<String> = fs::read_dir(c.join("d"))
        .expect("list d on a fresh mount")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    for (i, r) in results.iter().enumerate() {
        let name = format!("f{i:05}");
        if r.is_ok() {
            assert!(
                names.contains(&name),
                "{name} was closed before the outage: it is there"
            );
        }
    }
    for name in &names {
        let i: usize = name[1..]
            .parse()
            .unwrap_or_else(|_| panic!("unexpected name {name}"));
        let got = fs::read(c.join("d").join(name)).expect("read on the fresh mount");
        assert!(
            got == inflight_content(i),
            "{name}: whole, never empty or torn ({} bytes)",
            got.len()
        );
    }
    assert_eq!(
        fs::read_dir(c.join(UNLISTED))
            .expect("list unlisted")
            .count(),
        3,
        "the directory is intact"
    );
}

#[test]
fn cached_files_stay_readable_while_cassandra_is_down() {
    let _serial = exclusive();
    let vol = Volume::unique("stale");
    let timeout = TIMEOUT_SECS.to_string();
    let m = vol.mount(&[
        "--timeout",
        &timeout,
        "--fcache_ttl",
        "1",
        "--entry_ttl",
        "0",
        "--negative_ttl",
        "0",
    ]);
    let page = b"<?php echo 'hello';".to_vec();
    fs::create_dir(m.join("site")).expect("mkdir");
    fs::write(m.join("site/index.php"), &page).expect("write");
    assert_eq!(fs::read(m.join("site/index.php")).expect("read"), page);
    assert_eq!(fs::read_dir(m.join("site")).expect("list").count(), 1);

    let _restart = RestartCassandra;
    let r = cassandra_script(&["stop"], Duration::from_secs(120));
    assert!(r.success(), "scripts/cassandra stop: {}", r.describe());
    // Let every local cache entry expire: they must still be served.
    thread::sleep(Duration::from_millis(1500));

    let p = m.join("site/index.php");
    let got = timed(LIMIT * 3, move || fs::read(&p));
    let Some((res, took)) = got else {
        panic!("no answer for a cached file with Cassandra down")
    };
    assert_eq!(
        res.expect("a cached file is served while Cassandra is down"),
        page
    );
    assert!(took <= LIMIT, "served after {took:?}");
    let dir = m.join("site");
    let listed = timed(LIMIT * 3, move || {
        fs::read_dir(&dir).map(|d| d.filter_map(|e| e.ok()).count())
    });
    let Some((res, _)) = listed else {
        panic!("no answer for a cached listing with Cassandra down")
    };
    assert_eq!(res.expect("cached listing"), 1, "never an empty listing");
    // New work fails instead of hanging.
    let p = m.join("site/upload.jpg");
    assert_eio_in_time(
        timed(LIMIT * 3, move || fs::write(&p, b"new")),
        "a new file with Cassandra down",
        &m,
    );
}

fn signal_test(sig: libc::c_int, name: &str) {
    let _serial = exclusive();
    let vol = Volume::unique(name);
    let mut m = vol.mount(&[]);
    fs::write(m.join("kept"), name.as_bytes()).expect("write");
    let dir = m.path().to_path_buf();
    let st = m.stop_with_signal(sig);
    assert_eq!(
        st.code(),
        Some(0),
        "exit status after {name}: {st}; output:\n{}",
        m.output()
    );
    assert!(
        !is_mounted(&dir),
        "{} still mounted after {name}",
        dir.display()
    );
    drop(m);
    let again = vol.mount(&[]);
    assert_eq!(
        fs::read(again.join("kept")).expect("read after remount"),
        name.as_bytes(),
        "data survives the {name} shutdown"
    );
}

#[test]
fn sigterm_unmounts_and_exits_0() {
    signal_test(libc::SIGTERM, "sigterm");
}

#[test]
fn sigint_unmounts_and_exits_0() {
    signal_test(libc::SIGINT, "sigint");
}

#[test]
fn sigterm_with_an_open_file_still_exits_0() {
    let _serial = exclusive();
    let vol = Volume::unique("sigterm_open");
    let mut m = vol.mount(&[]);
    fs::write(m.join("f"), b"x").expect("write");
    let f = fs::File::open(m.join("f")).expect("open and keep open");
    let st = m.stop_with_signal(libc::SIGTERM);
    // Busy mounts cannot be unmounted normally; the daemon must still exit
    // (it may detach lazily).
    assert_eq!(
        st.code(),
        Some(0),
        "exit status: {st}; output:\n{}",
        m.output()
    );
    drop(f);
}

// Two mounts at the default flags lose Cassandra (so neither can follow the
// change feed) and get it back: once both reach Cassandra again, a change
// on one shows on the other within seconds, also for names and content the
// other had cached before the outage.
#[test]
fn mounts_that_lost_the_feed_converge_when_cassandra_is_back() {
    let _serial = exclusive();
    let vol = Volume::unique("feedloss");
    let a = vol.mount(&["--timeout", "3"]);
    let b = vol.mount(&["--timeout", "3"]);
    fs::write(a.join("f"), b"before").expect("write before");
    assert!(
        wait_until(Duration::from_secs(3), || fs::read(b.join("f"))
            .is_ok_and(|d| d == b"before")),
        "B sees A's file before the outage"
    );
    // B's feed applies A's events again for a while after it first sees
    // them (forgetting what it read meanwhile); what B has cached once that
    // settles is what it must serve through the outage.
    thread::sleep(cassfs::feed::REAPPLY[cassfs::feed::REAPPLY.len() - 1] + Duration::from_secs(1));
    assert_eq!(fs::read(b.join("f")).expect("B reads f"), b"before");
    let _ = fs::metadata(b.join("g")); // a negative entry on B

    let _restart = RestartCassandra;
    let r = cassandra_script(&["stop"], Duration::from_secs(120));
    assert!(r.success(), "scripts/cassandra stop: {}", r.describe());
    thread::sleep(Duration::from_secs(3));
    assert_eq!(
        fs::read(b.join("f")).expect("B serves its cached copy during the outage"),
        b"before"
    );
    let r = cassandra_script(&["start"], Duration::from_secs(300));
    assert!(r.success(), "scripts/cassandra start: {}", r.describe());

    // A writes as soon as it can again; B must converge.
    assert!(
        wait_until(Duration::from_secs(60), || write_committed(
            &a.join("f"),
            b"after"
        )
        .is_ok()
            && write_committed(&a.join("g"), b"new").is_ok()),
        "A writes again after the outage; output:\n{}",
        a.output()
    );
    let seen = Instant::now();
    assert!(
        wait_until(Duration::from_secs(60), || {
            fs::read(b.join("f")).is_ok_and(|d| d == b"after")
                && fs::read(b.join("g")).is_ok_and(|d| d == b"new")
        }),
        "B converges on A's changes after the outage; output:\n{}",
        b.output()
    );
    // Once B reads the feed again, it stays converged: a further change
    // shows within seconds.
    fs::write(a.join("f"), b"later").expect("write later");
    assert!(
        wait_until(Duration::from_secs(3), || fs::read(b.join("f"))
            .is_ok_and(|d| d == b"later")),
        "B sees A's next change within 3 s"
    );
    eprintln!("B converged {:?} after A's first write", seen.elapsed());
}
