//! `-metrics ADDR`: the Prometheus endpoint of a real mount follows what the
//! mount does, survives hostile clients, and bad addresses fail early.

mod common;
#[path = "common/scrape.rs"]
mod scrape;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use scrape::*;

/// Every metric name the README documents, as it appears in a scrape.
const NAMES: &[&str] = &[
    "cassfs_info{version=",
    "cassfs_fuse_requests_total{op=\"lookup\"}",
    "cassfs_fuse_request_duration_seconds_bucket{",
    "# TYPE cassfs_fuse_errors counter",
    "cassfs_cql_statements_total{kind=\"read\"}",
    "cassfs_cql_duration_seconds_bucket{",
    "cassfs_cql_errors_total{kind=",
    "cassfs_cache_hits_total{cache=\"entries\"}",
    "cassfs_cache_hits_total{cache=\"inodes\"}",
    "cassfs_cache_hits_total{cache=\"blocks\"}",
    "cassfs_cache_misses_total{cache=\"entries\"}",
    "cassfs_disk_cache_hits_total ",
    "cassfs_disk_cache_misses_total ",
    "cassfs_disk_cache_corrupt_total ",
    "cassfs_disk_cache_bytes ",
    "cassfs_read_bytes_total ",
    "cassfs_written_bytes_total ",
    "cassfs_open_files ",
    "cassfs_dirty_bytes ",
    "cassfs_session_heartbeat_age_seconds ",
];

#[test]
fn counters_follow_what_the_mount_does() {
    let (m, port) = mount_with_metrics("metrics");
    let before = scrape(port);
    for name in NAMES {
        assert!(before.contains(name), "{name} missing from:\n{before}");
    }
    assert!(before.trim_end().ends_with("# EOF"), "not OpenMetrics text");
    // The session registered before the mount was served: its heartbeat
    // is recent.
    let age = value(&before, "cassfs_session_heartbeat_age_seconds");
    assert!(
        age.is_finite() && (0.0..30.0).contains(&age),
        "heartbeat age {age} right after mounting"
    );

    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(m.join("a.bin"), &data).expect("write a.bin");
    fs::create_dir(m.join("d")).expect("mkdir d");
    fs::write(m.join("d/small"), b"hello").expect("write d/small");
    assert!(fs::metadata(m.join("no-such-name")).is_err());
    let back = fs::read(m.join("a.bin")).expect("read a.bin");
    assert_eq!(back, data);

    // A request is counted just after it is answered, and the kernel sends
    // RELEASE after close(2) returned: wait until the last ones show.
    let ops = ["write", "lookup", "create", "mkdir", "read", "release"];
    let after = scrape_until(port, "every operation counted", |t| {
        ops.iter().all(|op| {
            let series = format!("cassfs_fuse_requests_total{{op=\"{op}\"}}");
            value(t, &series) > value(&before, &series)
        })
    });
    let moved = |series: &str| value(&after, series) - value(&before, series);
    let written = moved("cassfs_written_bytes_total");
    assert!(
        written >= (data.len() + 5) as f64,
        "written bytes moved by {written}"
    );
    let read = moved("cassfs_read_bytes_total");
    assert!(read >= data.len() as f64, "read bytes moved by {read}");
    for op in ops {
        let n = moved(&format!("cassfs_fuse_requests_total{{op=\"{op}\"}}"));
        assert!(n >= 1.0, "fuse requests of {op} moved by {n}");
    }
    let enoent = moved("cassfs_fuse_errors_total{op=\"lookup\",errno=\"ENOENT\"}");
    assert!(enoent >= 1.0, "lookup ENOENT moved by {enoent}");
    let count = |t: &str, name| total(t, name);
    let cql = count(&after, "cassfs_cql_statements_total")
        - count(&before, "cassfs_cql_statements_total");
    assert!(cql >= 3.0, "cql statements moved by {cql}");
    assert!(
        moved("cassfs_cql_statements_total{kind=\"lwt\"}") >= 2.0,
        "two names created: two conditional writes at least"
    );
    // Every statement is counted once, like the statement xattr does.
    let xattr = m.statements() as f64;
    let exposed = count(&scrape(port), "cassfs_cql_statements_total");
    assert!(
        exposed >= xattr,
        "metrics count {exposed} statements, the xattr {xattr} (read before)"
    );
    let lookups = count(&after, "cassfs_fuse_request_duration_seconds_count");
    assert!(lookups >= 1.0, "no request timed");
    let hits = count(&after, "cassfs_cache_hits_total");
    let misses = count(&after, "cassfs_cache_misses_total");
    assert!(hits + misses >= 1.0, "no cache lookup counted");
}

#[test]
fn open_files_and_dirty_bytes_follow_an_open_file() {
    let (m, port) = mount_with_metrics("metrics-open");
    let open = |t: &str| value(t, "cassfs_open_files");
    let dirty = |t: &str| value(t, "cassfs_dirty_bytes");
    let base = scrape_until(port, "no open file", |t| open(t) == 0.0);
    assert_eq!(dirty(&base), 0.0);
    let mut f = fs::File::create(m.join("held")).expect("create held");
    f.write_all(&[7u8; 100_000]).expect("write held");
    let held = scrape(port);
    assert_eq!(open(&held), 1.0, "open files while one is held");
    assert!(
        dirty(&held) >= 100_000.0,
        "dirty bytes while 100000 are written and not committed: {}",
        dirty(&held)
    );
    drop(f);
    scrape_until(port, "the file closed and committed", |t| {
        open(t) == 0.0 && dirty(t) == 0.0
    });
}

#[test]
fn hostile_clients_do_not_stop_the_endpoint() {
    let (m, port) = mount_with_metrics("metrics-hostile");
    scrape(port);
    // Not HTTP at all: an error status, or the connection closed.
    let answer = exchange(port, b"GARBAGE\r\n\r\n");
    let head = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || head.starts_with("HTTP/1.1 4"),
        "garbage got {head:?}"
    );
    // 100 KB without a blank line: cut off at the size bound.
    let junk: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let answer = exchange(port, &junk);
    let head = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || head.starts_with("HTTP/1.1 4"),
        "junk got {head:?}"
    );
    // Binary bytes, a truncated request, an empty connection.
    exchange(port, &[0u8, 255, 13, 10, 13, 10]);
    exchange(port, b"GET /metr");
    exchange(port, b"");
    assert_eq!(get(port, "/nope").0, 404);
    assert_eq!(get(port, "/").0, 404);
    let post = exchange(port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert!(
        String::from_utf8_lossy(&post).starts_with("HTTP/1.1 405"),
        "POST got {:?}",
        String::from_utf8_lossy(&post)
    );
    // A client that connects and says nothing delays others, never blocks them.
    let idle = TcpStream::connect(("127.0.0.1", port)).expect("idle connection");
    let start = Instant::now();
    let text = scrape(port);
    assert!(text.contains("cassfs_fuse_requests_total"));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "a scrape behind an idle client took {:?}",
        start.elapsed()
    );
    drop(idle);
    // The daemon still serves its files.
    fs::write(m.join("still"), b"ok").expect("write after the abuse");
    assert_eq!(fs::read(m.join("still")).expect("read back"), b"ok");
    scrape(port);
}

fn run(args: &[OsString], mountpoint: Option<&std::path::Path>) -> RunResult {
    let refs: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    run_cassfs(&refs, Duration::from_secs(30), mountpoint)
}

#[track_caller]
fn one_line(r: &RunResult, what: &str) -> String {
    assert!(r.status.is_some(), "{what}: did not exit: {}", r.describe());
    assert!(!r.success(), "{what}: exit status 0: {}", r.describe());
    let msg = r.stderr.trim().to_string();
    assert_eq!(
        msg.lines().filter(|l| !l.trim().is_empty()).count(),
        1,
        "{what}: not one line: {}",
        r.describe()
    );
    msg
}

#[test]
fn a_bad_address_exits_2_with_one_line() {
    for bad in [
        "not-an-addr",
        "127.0.0.1",
        "localhost:9567",
        "1.2.3.4:70000",
    ] {
        let args: Vec<OsString> = ["-metrics", bad].iter().map(OsString::from).collect();
        let r = run(&args, None);
        assert_eq!(r.code(), Some(2), "-metrics {bad}: {}", r.describe());
        let msg = one_line(&r, bad);
        assert!(msg.contains(bad), "-metrics {bad}: message {msg}");
    }
}

#[test]
fn a_port_in_use_fails_before_mounting() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("take a port");
    let addr = taken.local_addr().expect("its address").to_string();
    let vol = Volume::unique("metrics-taken");
    let dir = Mount::fresh_dir();
    let mut args: Vec<OsString> = vec!["--mount".into(), dir.clone().into()];
    args.extend(vol.args().into_iter().map(OsString::from));
    args.extend(["-metrics".into(), OsString::from(&addr)]);
    let r = run(&args, Some(&dir));
    let mounted = is_mounted(&dir);
    let _ = fs::remove_dir(&dir);
    assert!(!mounted, "mounted despite the port in use");
    let msg = one_line(&r, "port in use");
    assert_eq!(r.code(), Some(1), "{}", r.describe());
    assert!(
        msg.contains(&addr),
        "the message does not name {addr}: {msg}"
    );
    assert!(r.elapsed < Duration::from_secs(10), "took {:?}", r.elapsed);
}
