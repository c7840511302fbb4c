//! The TLS context of connections to Cassandra, from PEM files: the CAs
//! that verify the servers, and a client certificate for mutual TLS.

use openssl::ssl::{SslContext, SslContextBuilder, SslFiletype, SslMethod, SslVerifyMode};

use super::TlsFiles;

/// A TLS context verifying the servers; a one-line error naming the file
/// that could not be used.
pub(super) fn context(files: &TlsFiles) -> Result<SslContext, String> {
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

fn first_line(e: &openssl::error::ErrorStack) -> String {
    let text = e.to_string();
    text.lines().next().unwrap_or("unknown error").to_string()
}
