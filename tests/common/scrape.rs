//! Reading a mount's `-metrics` endpoint in tests: a free port, a mount
//! serving metrics there, raw HTTP exchanges, and the values of series.

#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::common::{Mount, Volume};

/// A port nobody listens on now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

/// Sends `request` raw and returns what came back (possibly nothing, if the
/// server closed the connection); write errors are the server's right.
pub fn exchange(port: u16, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the metrics port");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("read timeout");
    s.set_write_timeout(Some(Duration::from_secs(15)))
        .expect("write timeout");
    let _ = s.write_all(request);
    let _ = s.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {}
        Err(e) => panic!("reading the answer: {e}"),
    }
    out
}

/// `GET path`: (status code, body).
pub fn get(port: u16, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let raw = String::from_utf8(exchange(port, req.as_bytes())).expect("UTF-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP head");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (code, body.to_string())
}

pub fn scrape(port: u16) -> String {
    let (code, body) = get(port, "/metrics");
    assert_eq!(code, 200, "GET /metrics: {body}");
    body
}

/// The value of one series (`name{labels}` exactly as exposed), 0 if absent.
pub fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().unwrap_or(f64::NAN))
        .unwrap_or(0.0)
}

/// The sum of every series of a metric (all label values).
pub fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Scrapes until `ok` holds of the text (the kernel sends some requests,
/// like RELEASE, after the system call returned).
pub fn scrape_until(port: u16, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let text = scrape(port);
        if ok(&text) {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: not seen within 10 s in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn mount_with_metrics(env: &str) -> (Mount, u16) {
    mount_metered(&Volume::unique(env), &[])
}

/// Mounts `vol` with `extra` flags, serving metrics on a free port.
pub fn mount_metered(vol: &Volume, extra: &[&str]) -> (Mount, u16) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut flags = vec!["-metrics", &addr];
    flags.extend_from_slice(extra);
    (vol.mount(&flags), port)
}
