//! Prometheus metrics (`-metrics ADDR`): owns the metrics registry, the
//! functions the rest of the daemon calls to record events, and the HTTP
//! endpoint that serves them (`GET /metrics`, Prometheus/OpenMetrics text).
//!
//! The registry lives in one global, set only when `-metrics` is given:
//! every recording function first checks it (one atomic load) and does
//! nothing when metrics are off. The handles of the labels known in advance
//! (FUSE operations, CQL kinds, caches) are resolved once, so recording an
//! event is an atomic add (a counter) or a short lock inside
//! prometheus-client (a histogram). Values that are cheaper to sample than
//! to track (open files, dirty bytes, the session heartbeat's age) are
//! computed when scraped.
//!
//! The endpoint is one thread over a std `TcpListener`, serving one
//! connection at a time: requests are bounded in size and time, and a bad
//! connection is closed without affecting the next one or the daemon.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{debug, info, warn};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// The metrics of this process, once `-metrics` was given.
static METRICS: OnceLock<Metrics> = OnceLock::new();

/// When the mount's session last refreshed its heartbeat (Unix ms; 0: never).
static HEARTBEAT_MS: AtomicU64 = AtomicU64::new(0);

/// Upper bounds of the latency buckets, in seconds: 50 µs to 10 s.
const LATENCY_BUCKETS: [f64; 17] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// The FUSE operations the adapter submits (their `op` label).
pub const FUSE_OPS: &[&str] = &[
    "lookup",
    "getattr",
    "setattr",
    "readlink",
    "mknod",
    "mkdir",
    "unlink",
    "rmdir",
    "symlink",
    "rename",
    "link",
    "open",
    "read",
    "write",
    "flush",
    "release",
    "fsync",
    "opendir",
    "readdir",
    "readdirplus",
    "releasedir",
    "statfs",
    "setxattr",
    "getxattr",
    "listxattr",
    "removexattr",
    "access",
    "create",
];

/// The largest request the endpoint reads (request line and headers).
const MAX_REQUEST: usize = 8 << 10;
/// Each read or write on a connection fails after this long.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// A whole request must arrive within this long.
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// What a CQL statement is, for `cassfs_cql_*{kind}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CqlKind {
    /// A SELECT.
    Read = 0,
    /// An unconditional INSERT, UPDATE or DELETE.
    Write = 1,
    /// A conditional write or conditional batch (`IF ...`: Paxos).
    Lwt = 2,
    /// A logged batch without condition.
    Batch = 3,
    /// Schema statements, preparing statements.
    Other = 4,
}

impl CqlKind {
    const ALL: [CqlKind; 5] = [
        CqlKind::Read,
        CqlKind::Write,
        CqlKind::Lwt,
        CqlKind::Batch,
        CqlKind::Other,
    ];

    fn name(self) -> &'static str {
        match self {
            CqlKind::Read => "read",
            CqlKind::Write => "write",
            CqlKind::Lwt => "lwt",
            CqlKind::Batch => "batch",
            CqlKind::Other => "other",
        }
    }

    /// The kind of one statement, from its text.
    pub fn of_statement(cql: &str) -> CqlKind {
        let t = cql.trim_start();
        let starts = |w: &str| t.get(..w.len()).is_some_and(|p| p.eq_ignore_ascii_case(w));
        if starts("SELECT") {
            CqlKind::Read
        } else if starts("INSERT") || starts("UPDATE") || starts("DELETE") {
            if t.contains(" IF ") {
                CqlKind::Lwt
            } else {
                CqlKind::Write
            }
        } else {
            CqlKind::Other
        }
    }

    /// How much a kind weighs in a round trip's latency (the heaviest kind
    /// names the round trip).
    fn weight(self) -> u8 {
        match self {
            CqlKind::Other => 0,
            CqlKind::Read => 1,
            CqlKind::Write => 2,
            CqlKind::Lwt => 3,
            CqlKind::Batch => 4,
        }
    }
}

/// The statements of one round trip to Cassandra, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    counts: [u64; 5],
}

impl Tally {
    /// `n` statements of one kind.
    pub fn of(kind: CqlKind, n: u64) -> Tally {
        Tally::default().and(kind, n)
    }

    /// Adds `n` statements of `kind`.
    pub fn and(mut self, kind: CqlKind, n: u64) -> Tally {
        self.counts[kind as usize] += n;
        self
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The heaviest kind in the round trip (which its latency is filed under).
    fn main(&self) -> CqlKind {
        CqlKind::ALL
            .into_iter()
            .filter(|k| self.counts[*k as usize] > 0)
            .max_by_key(|k| k.weight())
            .unwrap_or(CqlKind::Other)
    }
}

/// The caches whose lookups are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheKind {
    /// Directory entries (names), including cached listings.
    Entries = 0,
    /// Inodes.
    Inodes = 1,
    /// Content blocks.
    Blocks = 2,
}

impl CacheKind {
    const ALL: [CacheKind; 3] = [CacheKind::Entries, CacheKind::Inodes, CacheKind::Blocks];

    fn name(self) -> &'static str {
        match self {
            CacheKind::Entries => "entries",
            CacheKind::Inodes => "inodes",
            CacheKind::Blocks => "blocks",
        }
    }
}

/// Values sampled when the metrics are scraped.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Open file handles.
    pub open_files: u64,
    /// Bytes written to open files and not yet committed.
    pub dirty_bytes: u64,
}

type OpLabel = [(&'static str, &'static str); 1];
type ErrLabel = [(&'static str, Cow<'static, str>); 2];
type Histograms = Family<OpLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

struct Op {
    name: &'static str,
    requests: Counter,
    duration: Histogram,
}

struct Cql {
    statements: Counter,
    duration: Histogram,
    errors: Counter,
}

struct Metrics {
    registry: Registry,
    ops: Vec<Op>,
    fuse_requests: Family<OpLabel, Counter>,
    fuse_durations: Histograms,
    fuse_errors: Family<ErrLabel, Counter>,
    cql: Vec<Cql>,
    cache_hits: Vec<Counter>,
    cache_misses: Vec<Counter>,
    disk_hits: Counter,
    disk_misses: Counter,
    disk_corrupt: Counter,
    disk_bytes: Gauge,
    read_bytes: Counter,
    written_bytes: Counter,
    open_files: Gauge,
    dirty_bytes: Gauge,
    heartbeat_age: Gauge<f64, AtomicU64>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let fuse_requests = Family::<OpLabel, Counter>::default();
        let fuse_durations: Histograms = Family::new_with_constructor(latency_histogram);
        let fuse_errors = Family::<ErrLabel, Counter>::default();
        let ops = FUSE_OPS
            .iter()
            .map(|&name| Op {
                name,
                requests: fuse_requests.get_or_create(&[("op", name)]).clone(),
                duration: fuse_durations.get_or_create(&[("op", name)]).clone(),
            })
            .collect();
        let cql_statements = Family::<OpLabel, Counter>::default();
        let cql_durations: Histograms = Family::new_with_constructor(latency_histogram);
        let cql_errors = Family::<OpLabel, Counter>::default();
        let cql = CqlKind::ALL
            .iter()
            .map(|k| {
                let l = [("kind", k.name())];
                Cql {
                    statements: cql_statements.get_or_create(&l).clone(),
                    duration: cql_durations.get_or_create(&l).clone(),
                    errors: cql_errors.get_or_create(&l).clone(),
                }
            })
            .collect();
        let hits = Family::<OpLabel, Counter>::default();
        let misses = Family::<OpLabel, Counter>::default();
        let cache_hits = CacheKind::ALL
            .iter()
            .map(|c| hits.get_or_create(&[("cache", c.name())]).clone())
            .collect();
        let cache_misses = CacheKind::ALL
            .iter()
            .map(|c| misses.get_or_create(&[("cache", c.name())]).clone())
            .collect();
        let m = Metrics {
            ops,
            fuse_requests: fuse_requests.clone(),
            fuse_durations: fuse_durations.clone(),
            fuse_errors: fuse_errors.clone(),
            cql,
            cache_hits,
            cache_misses,
            disk_hits: Counter::default(),
            disk_misses: Counter::default(),
            disk_corrupt: Counter::default(),
            disk_bytes: Gauge::default(),
            read_bytes: Counter::default(),
            written_bytes: Counter::default(),
            open_files: Gauge::default(),
            dirty_bytes: Gauge::default(),
            heartbeat_age: Gauge::default(),
            registry: Registry::default(),
        };
        m.heartbeat_age.set(f64::NAN);
        let r = &mut registry;
        r.register(
            "cassfs",
            "CassFS build",
            Info::new([("version", crate::version::VERSION)]),
        );
        r.register(
            "cassfs_fuse_requests",
            "FUSE requests answered, by operation",
            fuse_requests,
        );
        r.register_with_unit(
            "cassfs_fuse_request_duration",
            "Time from a FUSE request's arrival to its answer, by operation",
            Unit::Seconds,
            fuse_durations,
        );
        r.register(
            "cassfs_fuse_errors",
            "FUSE requests answered with an error, by operation and errno",
            fuse_errors,
        );
        r.register(
            "cassfs_cql_statements",
            "CQL statements sent to Cassandra, by kind",
            cql_statements,
        );
        r.register_with_unit(
            "cassfs_cql_duration",
            "Time of one round trip to Cassandra, by its heaviest statement kind",
            Unit::Seconds,
            cql_durations,
        );
        r.register(
            "cassfs_cql_errors",
            "Round trips to Cassandra that failed or timed out, by heaviest statement kind",
            cql_errors,
        );
        r.register(
            "cassfs_cache_hits",
            "Lookups answered by a local cache",
            hits,
        );
        r.register(
            "cassfs_cache_misses",
            "Lookups a local cache could not answer",
            misses,
        );
        r.register(
            "cassfs_disk_cache_hits",
            "Blocks read from the on-disk cache (-cache_dir)",
            m.disk_hits.clone(),
        );
        r.register(
            "cassfs_disk_cache_misses",
            "Blocks the on-disk cache did not hold (then read from Cassandra)",
            m.disk_misses.clone(),
        );
        r.register(
            "cassfs_disk_cache_corrupt",
            "Files of the on-disk cache whose content did not match their name (removed)",
            m.disk_corrupt.clone(),
        );
        r.register_with_unit(
            "cassfs_disk_cache",
            "Bytes of blocks in the on-disk cache, as this process knows it",
            Unit::Bytes,
            m.disk_bytes.clone(),
        );
        r.register_with_unit(
            "cassfs_read",
            "Bytes returned to FUSE reads",
            Unit::Bytes,
            m.read_bytes.clone(),
        );
        r.register_with_unit(
            "cassfs_written",
            "Bytes received from FUSE writes",
            Unit::Bytes,
            m.written_bytes.clone(),
        );
        r.register(
            "cassfs_open_files",
            "Open file handles",
            m.open_files.clone(),
        );
        r.register_with_unit(
            "cassfs_dirty",
            "Bytes written to open files and not yet committed",
            Unit::Bytes,
            m.dirty_bytes.clone(),
        );
        r.register_with_unit(
            "cassfs_session_heartbeat_age",
            "Seconds since the mount's session last refreshed its heartbeat (NaN: not yet)",
            Unit::Seconds,
            m.heartbeat_age.clone(),
        );
        Metrics { registry, ..m }
    }

    fn op(&self, name: &str) -> Option<&Op> {
        self.ops.iter().find(|o| o.name == name)
    }

    /// The exposition text, with the sampled values brought up to date.
    fn render(&self, sample: Sample) -> String {
        self.open_files
            .set(i64::try_from(sample.open_files).unwrap_or(i64::MAX));
        self.dirty_bytes
            .set(i64::try_from(sample.dirty_bytes).unwrap_or(i64::MAX));
        let beat = HEARTBEAT_MS.load(Ordering::Relaxed);
        let age = if beat == 0 {
            f64::NAN
        } else {
            now_ms().saturating_sub(beat) as f64 / 1000.0
        };
        self.heartbeat_age.set(age);
        let mut out = String::with_capacity(32 << 10);
        if let Err(e) = encode(&mut out, &self.registry) {
            warn!("metrics: cannot encode: {e}");
        }
        out
    }
}

fn metrics() -> Option<&'static Metrics> {
    METRICS.get()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Whether metrics are being collected.
pub fn enabled() -> bool {
    metrics().is_some()
}

/// The start of something timed, when metrics are on.
pub fn start() -> Option<Instant> {
    metrics().map(|_| Instant::now())
}

/// A FUSE request of `op` was answered (`start`: from [`start`] when it
/// arrived).
pub fn fuse_done(op: &'static str, start: Option<Instant>) {
    let (Some(m), Some(start)) = (metrics(), start) else {
        return;
    };
    let secs = start.elapsed().as_secs_f64();
    match m.op(op) {
        Some(o) => {
            o.requests.inc();
            o.duration.observe(secs);
        }
        None => {
            m.fuse_requests.get_or_create(&[("op", op)]).inc();
            m.fuse_durations.get_or_create(&[("op", op)]).observe(secs);
        }
    }
}

/// A FUSE request of `op` is answered with `errno`.
pub fn fuse_error(op: &'static str, errno: i32) {
    if let Some(m) = metrics() {
        let name = crate::error::errno_name(errno)
            .map_or_else(|| Cow::Owned(errno.to_string()), Cow::Borrowed);
        m.fuse_errors
            .get_or_create(&[("op", Cow::Borrowed(op)), ("errno", name)])
            .inc();
    }
}

/// A round trip to Cassandra of the statements `t`, begun at `start`, ended
/// (`ok`: without error).
pub fn cql_done(t: &Tally, start: Option<Instant>, ok: bool) {
    let (Some(m), Some(start)) = (metrics(), start) else {
        return;
    };
    for k in CqlKind::ALL {
        let n = t.counts[k as usize];
        if n > 0 {
            m.cql[k as usize].statements.inc_by(n);
        }
    }
    let main = &m.cql[t.main() as usize];
    main.duration.observe(start.elapsed().as_secs_f64());
    if !ok {
        main.errors.inc();
    }
}

/// A lookup in a cache found what it looked for (`hit`) or not.
pub fn cache_lookup(cache: CacheKind, hit: bool) {
    if let Some(m) = metrics() {
        let c = if hit { &m.cache_hits } else { &m.cache_misses };
        c[cache as usize].inc();
    }
}

/// A lookup in the on-disk block cache found the block (`hit`) or not.
pub fn disk_cache_lookup(hit: bool) {
    if let Some(m) = metrics() {
        if hit {
            m.disk_hits.inc()
        } else {
            m.disk_misses.inc()
        };
    }
}

/// A file of the on-disk block cache did not hold the block it names.
pub fn disk_cache_corrupt() {
    if let Some(m) = metrics() {
        m.disk_corrupt.inc();
    }
}

/// The on-disk block cache grew (or shrank, `delta` < 0) by `delta` bytes.
pub fn disk_cache_bytes(delta: i64) {
    if let Some(m) = metrics() {
        m.disk_bytes.inc_by(delta);
    }
}

/// `n` bytes were returned to a FUSE read.
pub fn read_bytes(n: usize) {
    if let Some(m) = metrics() {
        m.read_bytes.inc_by(n as u64);
    }
}

/// `n` bytes were received from a FUSE write.
pub fn written_bytes(n: usize) {
    if let Some(m) = metrics() {
        m.written_bytes.inc_by(n as u64);
    }
}

/// The mount's session refreshed its heartbeat in Cassandra just now.
pub fn heartbeat_done() {
    HEARTBEAT_MS.store(now_ms().max(1), Ordering::Relaxed);
}

/// The endpoint's socket, bound before the volume is mounted; nothing is
/// served until [`Server::serve`].
pub struct Server {
    listener: TcpListener,
}

/// Binds the endpoint's address and turns metrics on for this process.
pub fn bind(addr: SocketAddr) -> Result<Server, String> {
    let listener =
        TcpListener::bind(addr).map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    let _ = METRICS.get_or_init(Metrics::new);
    Ok(Server { listener })
}

impl Server {
    /// The address actually bound (the port chosen for port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves `GET /metrics` from a thread of its own; `sample` gives the
    /// values sampled at each scrape.
    pub fn serve<F>(self, sample: F) -> std::io::Result<()>
    where
        F: Fn() -> Sample + Send + 'static,
    {
        let addr = self.local_addr();
        std::thread::Builder::new()
            .name("cassfs-metrics".into())
            .spawn(move || {
                let Some(m) = metrics() else {
                    return;
                };
                if let Some(a) = addr {
                    info!("metrics on http://{a}/metrics");
                }
                for conn in self.listener.incoming() {
                    match conn {
                        Ok(stream) => {
                            let run =
                                std::panic::AssertUnwindSafe(|| serve_one(m, stream, &sample));
                            match std::panic::catch_unwind(run) {
                                Ok(Ok(())) => {}
                                Ok(Err(e)) => debug!("metrics: connection: {e}"),
                                Err(_) => warn!("metrics: a request panicked"),
                            }
                        }
                        Err(e) => {
                            // Out of descriptors and the like: let it pass.
                            debug!("metrics: accept: {e}");
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                }
            })
            .map(drop)
    }
}

/// Reads one request and answers it; the connection is then closed.
fn serve_one(
    m: &Metrics,
    mut stream: TcpStream,
    sample: &dyn Fn() -> Sample,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head = loop {
        if let Some(end) = header_end(&buf) {
            break &buf[..end];
        }
        if buf.len() >= MAX_REQUEST {
            return respond(&mut stream, 431, "Request Header Fields Too Large", "", "");
        }
        if Instant::now() > deadline {
            return respond(&mut stream, 408, "Request Timeout", "", "");
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(()); // closed before a whole request
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end_matches('\r').split(' ');
    let (method, target, version) = (parts.next(), parts.next(), parts.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return respond(&mut stream, 400, "Bad Request", "", "");
    };
    if !version.starts_with("HTTP/1.") || parts.next().is_some() {
        return respond(&mut stream, 400, "Bad Request", "", "");
    }
    if method != "GET" {
        return respond(&mut stream, 405, "Method Not Allowed", "Allow: GET\r\n", "");
    }
    let path = target.split('?').next().unwrap_or(target);
    if path != "/metrics" {
        return respond(&mut stream, 404, "Not Found", "", "");
    }
    let body = m.render(sample());
    respond(&mut stream, 200, "OK", "", &body)
}

/// Where the request's head ends (after the blank line), if it has.
fn header_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    crlf.or_else(|| buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2))
}

fn respond(
    stream: &mut TcpStream,
    code: u16,
    reason: &str,
    extra: &str,
    body: &str,
) -> std::io::Result<()> {
    let body = if code == 200 {
        Cow::Borrowed(body)
    } else {
        Cow::Owned(format!("{code} {reason}\n"))
    };
    let kind = if code == 200 {
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Connection: close\r\n{extra}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_classified_by_their_text() {
        assert_eq!(CqlKind::of_statement("SELECT a FROM t"), CqlKind::Read);
        assert_eq!(CqlKind::of_statement("select a FROM t"), CqlKind::Read);
        assert_eq!(
            CqlKind::of_statement("INSERT INTO t (a) VALUES (?)"),
            CqlKind::Write
        );
        assert_eq!(
            CqlKind::of_statement("INSERT INTO t (a) VALUES (?) IF NOT EXISTS"),
            CqlKind::Lwt
        );
        assert_eq!(
            CqlKind::of_statement("DELETE FROM t WHERE a = ? IF b = ?"),
            CqlKind::Lwt
        );
        assert_eq!(CqlKind::of_statement("CREATE TABLE x"), CqlKind::Other);
    }

    #[test]
    fn a_round_trip_is_filed_under_its_heaviest_kind() {
        let t = Tally::of(CqlKind::Write, 3).and(CqlKind::Lwt, 1);
        assert_eq!(t.total(), 4);
        assert_eq!(t.main(), CqlKind::Lwt);
        assert_eq!(Tally::of(CqlKind::Read, 2).main(), CqlKind::Read);
        assert_eq!(Tally::default().main(), CqlKind::Other);
    }

    #[test]
    fn request_heads_end_at_a_blank_line() {
        assert_eq!(header_end(b"GET / HTTP/1.1\r\n\r\n"), Some(18));
        assert_eq!(header_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(header_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn errnos_have_names() {
        assert_eq!(crate::error::errno_name(libc::ENOENT), Some("ENOENT"));
        assert_eq!(crate::error::errno_name(9999), None);
    }

    #[test]
    fn every_documented_name_is_exposed() {
        let m = Metrics::new();
        let text = m.render(Sample {
            open_files: 2,
            dirty_bytes: 10,
        });
        for name in [
            "cassfs_info{version=",
            "cassfs_fuse_requests_total{op=\"lookup\"}",
            "cassfs_fuse_request_duration_seconds_bucket{",
            "# TYPE cassfs_fuse_errors counter",
            "cassfs_cql_statements_total{kind=\"read\"}",
            "cassfs_cql_duration_seconds_bucket{",
            "cassfs_cql_errors_total{kind=\"lwt\"}",
            "cassfs_cache_hits_total{cache=\"entries\"}",
            "cassfs_cache_misses_total{cache=\"blocks\"}",
            "cassfs_read_bytes_total 0",
            "cassfs_written_bytes_total 0",
            "cassfs_open_files 2",
            "cassfs_dirty_bytes 10",
            "cassfs_session_heartbeat_age_seconds ",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }

    fn heartbeat_age(text: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix("cassfs_session_heartbeat_age_seconds "))
            .and_then(|v| v.trim().parse().ok())
    }

    #[test]
    fn the_heartbeat_age_is_computed_when_scraped() {
        let m = Metrics::new();
        if HEARTBEAT_MS.load(Ordering::Relaxed) == 0 {
            let age = heartbeat_age(&m.render(Sample::default()));
            assert!(age.is_some_and(f64::is_nan), "{age:?} before any heartbeat");
        }
        HEARTBEAT_MS.store(now_ms() - 3_000, Ordering::Relaxed);
        let age = heartbeat_age(&m.render(Sample::default())).unwrap_or(f64::NAN);
        assert!(
            (3.0..60.0).contains(&age),
            "age {age} of a heartbeat 3 s ago"
        );
        heartbeat_done();
        let age = heartbeat_age(&m.render(Sample::default())).unwrap_or(f64::NAN);
        assert!(
            (0.0..3.0).contains(&age),
            "age {age} of a heartbeat just now"
        );
    }
}
