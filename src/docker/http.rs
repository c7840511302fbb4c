//! The little HTTP/1.1 that Docker's plugin client speaks over a Unix
//! socket: `POST /Method` with a JSON body (Content-Length or chunked),
//! answered with a JSON body; connections are kept alive between requests.
//! Nothing here knows what the methods mean.

use std::io::{self, BufRead, BufReader, Read, Write};

/// The largest request body accepted: Docker's requests are a few hundred
/// bytes.
pub const MAX_BODY: usize = 1 << 20;
/// The longest request or header line accepted.
const MAX_LINE: usize = 16 << 10;
/// The most header lines accepted.
const MAX_HEADERS: usize = 100;

/// One request: its path (`/VolumeDriver.Mount`) and body.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    /// The client asked to close the connection after the answer.
    pub close: bool,
}

/// Why a request could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The client closed the connection between requests.
    Closed,
    /// A request that is not HTTP/1.x as understood here: answered 400.
    Bad(String),
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> ReadError {
        ReadError::Io(e)
    }
}

/// Reads one line (without its CRLF); `None` at end of stream before any
/// byte.
fn line<R: BufRead>(r: &mut R) -> Result<Option<String>, ReadError> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(MAX_LINE as u64 + 2)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if !buf.ends_with(b"\n") {
        return Err(ReadError::Bad("line too long or cut short".into()));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| ReadError::Bad("a line is not UTF-8".into()))
}

/// Reads the next request from a kept-alive connection.
pub fn read_request<R: BufRead>(r: &mut R) -> Result<Request, ReadError> {
    let first = line(r)?.ok_or(ReadError::Closed)?;
    let mut parts = first.split_whitespace();
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(format!("not a request line: {first:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(ReadError::Bad(format!("unsupported version {version}")));
    }
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut close = version == "HTTP/1.0";
    for _ in 0..=MAX_HEADERS {
        let Some(h) = line(r)? else {
            return Err(ReadError::Bad("headers cut short".into()));
        };
        if h.is_empty() {
            let body = match (chunked, length) {
                (true, _) => read_chunked(r)?,
                (false, Some(n)) => read_exact(r, n)?,
                (false, None) => Vec::new(),
            };
            return Ok(Request {
                method: method.to_string(),
                path: path.to_string(),
                body,
                close,
            });
        }
        let Some((name, value)) = h.split_once(':') else {
            return Err(ReadError::Bad(format!("not a header: {h:?}")));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                let n = value
                    .parse::<usize>()
                    .map_err(|_| ReadError::Bad(format!("bad Content-Length {value:?}")))?;
                length = Some(n);
            }
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    Err(ReadError::Bad("too many headers".into()))
}

fn read_exact<R: Read>(r: &mut R, n: usize) -> Result<Vec<u8>, ReadError> {
    if n > MAX_BODY {
        return Err(ReadError::Bad(format!("body of {n} bytes is too large")));
    }
    let mut body = vec![0; n];
    r.read_exact(&mut body)?;
    Ok(body)
}

fn read_chunked<R: BufRead>(r: &mut R) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let size_line = line(r)?.ok_or_else(|| ReadError::Bad("chunk cut short".into()))?;
        let hex = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(hex, 16)
            .map_err(|_| ReadError::Bad(format!("bad chunk size {hex:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while let Some(t) = line(r)? {
                if t.is_empty() {
                    break;
                }
            }
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(ReadError::Bad("body is too large".into()));
        }
        body.extend(read_exact(r, size)?);
        line(r)?;
    }
}

/// Writes one answer with a JSON body.
pub fn write_response<W: Write>(w: &mut W, status: u16, body: &[u8]) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Internal Server Error",
    };
    write!(
        w,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/vnd.docker.plugins.v1.2+json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    )?;
    w.write_all(body)?;
    w.flush()
}

/// A buffered reader over a stream, for [`read_request`].
pub fn reader<S: Read>(s: S) -> BufReader<S> {
    BufReader::new(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Request, ReadError> {
        read_request(&mut BufReader::new(raw.as_bytes()))
    }

    #[test]
    fn reads_a_request_with_a_length() {
        let r = parse("POST /VolumeDriver.Get HTTP/1.1\r\nHost: \r\nContent-Length: 16\r\n\r\n{\"Name\":\"7.pr\"}\n")
            .expect("parses");
        assert_eq!(r.path, "/VolumeDriver.Get");
        assert_eq!(r.body, b"{\"Name\":\"7.pr\"}\n");
        assert!(!r.close);
    }

    #[test]
    fn reads_a_chunked_request() {
        let r = parse("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            .expect("parses");
        assert_eq!(r.body, b"abcde");
    }

    #[test]
    fn refuses_what_is_not_http() {
        assert!(matches!(parse("hello\r\n\r\n"), Err(ReadError::Bad(_))));
        assert!(matches!(parse(""), Err(ReadError::Closed)));
        let big = format!(
            "POST /x HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(parse(&big), Err(ReadError::Bad(_))));
    }
}
