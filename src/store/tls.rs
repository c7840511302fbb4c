//! The TLS context of connections to Cassandra, from PEM files: the CAs
//! that verify the servers, and a client certificate for mutual TLS.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use openssl::ssl::{
    ErrorCode, HandshakeError, Ssl, SslContext, SslContextBuilder, SslFiletype, SslMethod,
    SslVerifyMode,
};

use super::TlsFiles;

/// A TLS context verifying the servers; a one-line error naming the file
/// that could not be used.
pub(super) fn context(files: &TlsFiles) -> Result<SslContext, String> {
    let named = [
        ("CA file", &files.ca),
        ("certificate", &files.cert),
        ("key", &files.key),
    ];
    for (what, path) in named {
        if let Some(p) = path {
            std::fs::File::open(p).map_err(|e| format!("TLS {what} {}: {e}", p.display()))?;
        }
    }
    let mut b = SslContextBuilder::new(SslMethod::tls_client())
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    match &files.ca {
        Some(ca) => b
            .set_ca_file(ca)
            .map_err(|e| format!("TLS CA file {}: {}", ca.display(), first_line(&e)))?,
        None => b
            .set_default_verify_paths()
            .map_err(|e| format!("cannot load the system's CAs: {}", first_line(&e)))?,
    }
    b.set_verify(SslVerifyMode::PEER);
    match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            b.set_certificate_chain_file(cert)
                .map_err(|e| format!("TLS certificate {}: {}", cert.display(), first_line(&e)))?;
            b.set_private_key_file(key, SslFiletype::PEM)
                .map_err(|e| format!("TLS key {}: {}", key.display(), first_line(&e)))?;
            b.check_private_key().map_err(|e| {
                format!(
                    "TLS key {} does not match the certificate: {}",
                    key.display(),
                    first_line(&e)
                )
            })?;
        }
        (None, None) => {}
        _ => {
            return Err(
                "a TLS client certificate needs its key, and the key its certificate".into(),
            )
        }
    }
    Ok(b.build())
}

/// The reason of the first error of a stack (OpenSSL prints the whole
/// stack, codes and all).
fn first_line(e: &openssl::error::ErrorStack) -> String {
    e.errors()
        .first()
        .and_then(|x| x.reason())
        .map(str::to_string)
        .unwrap_or_else(|| e.to_string())
}

/// Why a TLS handshake with the first contact point that accepts a TCP
/// connection fails, if it does: the driver can lose that cause. A server
/// refusing the client's certificate says so after the handshake (TLS 1.3),
/// on the first read.
pub(super) fn probe(ctx: &SslContext, servers: &[String], limit: Duration) -> Option<String> {
    let addr = servers
        .iter()
        .filter_map(|s| s.to_socket_addrs().ok())
        .flatten()
        .next()?;
    let stream = TcpStream::connect_timeout(&addr, limit).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream.set_write_timeout(Some(limit)).ok()?;
    let ssl = Ssl::new(ctx).ok()?;
    match ssl.connect(stream) {
        Err(HandshakeError::Failure(mid)) => Some(ssl_reason(mid.error())),
        Err(e) => Some(e.to_string()),
        Ok(mut s) => {
            let mut b = [0u8; 1];
            match s.ssl_read(&mut b) {
                Err(e) if e.code() == ErrorCode::SSL => Some(ssl_reason(&e)),
                _ => None,
            }
        }
    }
}

fn ssl_reason(e: &openssl::ssl::Error) -> String {
    match e.ssl_error() {
        Some(stack) => first_line(stack),
        None => e.to_string(),
    }
}
