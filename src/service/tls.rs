//! Mutual TLS material: the server's identity and the CA that client certificates must chain to.
//!
//! Client certificates are mandatory: the server's rustls configuration
//! ([`super::acceptor::server_config`]) verifies them with [`super::trust::ClientTrust`], so a
//! client without a certificate, with one from another CA, a revoked one, or one without the
//! clientAuth usage fails the handshake before any request is read. (`tests/grpc_tls.rs` holds
//! the server to this.)
//!
//! PEM files are parsed here first so that a wrong file gives a clear error naming the file,
//! instead of a handshake that fails later.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// Why TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds no PEM item of the expected kind.
    #[error("{path}: expected {expected} in PEM, found none")]
    Missing {
        /// The file.
        path: PathBuf,
        /// "a certificate", "a private key".
        expected: &'static str,
    },
    /// rustls refused the server's configuration.
    #[error("server tls configuration: {reason}")]
    Config {
        /// What was wrong.
        reason: String,
    },
    /// The PEM does not parse.
    #[error("{path}: invalid PEM: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
}

/// PEM text of one identity (certificate chain and key) and of a trust root, read and checked.
#[derive(Clone)]
pub struct TlsMaterial {
    /// Certificate chain, PEM, leaf first.
    pub cert_pem: Vec<u8>,
    /// Private key, PEM (PKCS#8, SEC1 or PKCS#1).
    pub key_pem: Vec<u8>,
    /// The CA certificate(s) to trust for the peer, PEM.
    pub ca_pem: Vec<u8>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("key_pem", &crate::secret::REDACTED)
            .finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// Reads and checks the three files.
    pub fn load(cert: &Path, key: &Path, ca: &Path) -> Result<Self, TlsError> {
        let cert_pem = read(cert)?;
        check_certificates(cert, &cert_pem)?;
        let key_pem = read(key)?;
        check_key(key, &key_pem)?;
        warn_if_readable_by_others(key);
        let ca_pem = read(ca)?;
        check_certificates(ca, &ca_pem)?;
        Ok(TlsMaterial {
            cert_pem,
            key_pem,
            ca_pem,
        })
    }
}

/// The client side: our identity, and the server's certificate must chain to `ca_pem` and name
/// `server_name` (a DNS name or IP address in its subjectAltName).
pub fn client_tls(material: &TlsMaterial, server_name: &str) -> ClientTlsConfig {
    ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&material.ca_pem))
        .identity(Identity::from_pem(&material.cert_pem, &material.key_pem))
        .domain_name(server_name)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn check_certificates(path: &Path, pem: &[u8]) -> Result<(), TlsError> {
    let mut count = 0;
    for item in CertificateDer::pem_slice_iter(pem) {
        item.map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        count += 1;
    }
    if count == 0 {
        return Err(TlsError::Missing {
            path: path.to_owned(),
            expected: "a certificate",
        });
    }
    Ok(())
}

fn check_key(path: &Path, pem: &[u8]) -> Result<(), TlsError> {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(_) => Ok(()),
        Err(pem::Error::NoItemsFound) => Err(TlsError::Missing {
            path: path.to_owned(),
            expected: "a private key",
        }),
        Err(e) => Err(TlsError::Pem {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "TLS private key is readable by group or others; chmod 600 it");
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}
