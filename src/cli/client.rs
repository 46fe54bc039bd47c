//! The host commands' side of the wire: the client configuration file, a mutual-TLS channel to
//! the server, and one mapping from a gRPC status to what the command prints and how it exits.
//!
//! A client configuration (`custos dev env` writes one per principal as `client-<name>.toml`):
//!
//! ```toml
//! endpoint = "https://localhost:50051"
//! server_name = "localhost"          # optional: the name the server certificate must carry
//!
//! approver_key = "approver-keys/officers-alice.pem"   # optional: what `custos approve` signs with
//!
//! [tls]
//! cert = "tls/clients/withdrawals.pem"
//! key = "tls/clients/withdrawals.key"
//! ca = "tls/ca.pem"
//! ```
//!
//! Unknown fields are errors; relative paths are resolved against the file's directory.
//!
//! Exit codes of every host command: **0** done; **1** the server refused or failed the call (the
//! gRPC code and message go to stderr, e.g. `PERMISSION_DENIED: [deny.default] ...`), or
//! the server could not be reached; **2** usage (bad arguments, an unreadable or invalid client
//! configuration or input file).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::CliError;
use crate::service::tls::client_tls;
use crate::service::TlsMaterial;

/// The client's TLS files.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// Our certificate (its SAN is our principal).
    pub cert: PathBuf,
    /// Our private key.
    pub key: PathBuf,
    /// The CA the server's certificate must chain to.
    pub ca: PathBuf,
}

/// A client configuration file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// `https://host:port` of the server.
    pub endpoint: String,
    /// The name the server certificate must carry; the endpoint's host when absent.
    #[serde(default)]
    pub server_name: Option<String>,
    /// The approver's key file (PKCS#8 PEM) `custos approve` and `custos reject` sign votes
    /// with, unless `--key` names another.
    #[serde(default)]
    pub approver_key: Option<PathBuf>,
    /// TLS files.
    pub tls: ClientTlsConfig,
}

impl ClientConfig {
    /// Reads and checks `path`; relative paths inside are resolved against its directory.
    pub fn load(path: &Path) -> Result<Self, CliError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
        let mut config: ClientConfig = toml::from_str(&text).map_err(|e| {
            CliError::usage(format!("{}: {}", path.display(), e.to_string().trim_end()))
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut config.tls.cert,
            &mut config.tls.key,
            &mut config.tls.ca,
        ]
        .into_iter()
        .chain(config.approver_key.as_mut())
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(config)
    }

    /// The TLS server name: `server_name`, else the endpoint's host.
    pub fn server_name(&self) -> Result<String, CliError> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        let uri: tonic::transport::Uri = self
            .endpoint
            .parse()
            .map_err(|e| CliError::usage(format!("endpoint {:?}: {e}", self.endpoint)))?;
        uri.host()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
            .ok_or_else(|| CliError::usage(format!("endpoint {:?} has no host", self.endpoint)))
    }

    /// Connects with mutual TLS.
    pub async fn connect(&self) -> Result<Channel, CliError> {
        let material = TlsMaterial::load(&self.tls.cert, &self.tls.key, &self.tls.ca)
            .map_err(CliError::usage)?;
        let server_name = self.server_name()?;
        let endpoint = Endpoint::from_shared(self.endpoint.clone())
            .map_err(|e| CliError::usage(format!("endpoint {:?}: {e}", self.endpoint)))?
            .tls_config(client_tls(&material, &server_name))
            .map_err(|e| CliError::usage(format!("client TLS: {e}")))?
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120));
        endpoint.connect().await.map_err(|e| {
            CliError::operational(format!(
                "cannot connect to {}: {}",
                self.endpoint,
                error_chain(&e)
            ))
        })
    }
}

/// `e` and its sources, joined with ": " (tonic's transport error alone says only "transport
/// error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The canonical upper-case name of a gRPC code (`PERMISSION_DENIED`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A refused or failed call: `CODE: message` on stderr, exit 1.
pub fn status_error(status: Status) -> CliError {
    CliError::operational(format!(
        "{}: {}",
        code_name(status.code()),
        status.message()
    ))
}

/// Runs one client call on a small runtime.
pub fn block_on<T>(work: impl Future<Output = Result<T, CliError>>) -> Result<T, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::operational(format!("cannot start the async runtime: {e}")))?
        .block_on(work)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_resolves_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client-x.toml");
        std::fs::write(
            &path,
            "endpoint = \"https://127.0.0.1:50051\"\n[tls]\ncert = \"a.pem\"\nkey = \"/abs/a.key\"\nca = \"ca.pem\"\n",
        )
        .unwrap();
        let config = ClientConfig::load(&path).unwrap();
        assert_eq!(config.tls.cert, dir.path().join("a.pem"));
        assert_eq!(config.tls.key, Path::new("/abs/a.key"));
        assert_eq!(config.server_name().unwrap(), "127.0.0.1");
    }

    #[test]
    fn unknown_field_is_a_usage_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "endpoint = \"https://localhost:1\"\npassword = \"x\"\n[tls]\ncert = \"a\"\nkey = \"b\"\nca = \"c\"\n",
        )
        .unwrap();
        let error = ClientConfig::load(&path).unwrap_err();
        assert_eq!(error.exit_code, 2);
        assert!(error.message.contains("password"), "{}", error.message);
    }

    #[test]
    fn status_names_the_code() {
        let error = status_error(Status::permission_denied("[policy-deny.default] no rule"));
        assert_eq!(error.exit_code, 1);
        assert_eq!(
            error.message,
            "PERMISSION_DENIED: [policy-deny.default] no rule"
        );
    }
}
