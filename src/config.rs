//! `custos.toml`: the server's configuration, validated at start.
//!
//! Unknown fields are errors, and every error names the file, line and column. Secrets never
//! appear in this file: the unseal passphrase comes from `passphrase_file` (or the
//! `CUSTOS_PASSPHRASE` environment variable), TLS keys from their own files. Relative paths are
//! resolved against the directory of the configuration file, so an environment directory can move.
//!
//! ```toml
//! listen = "127.0.0.1:7443"
//! metrics_listen = "127.0.0.1:9464"   # optional; loopback by default
//! store_dir = "store"
//! state_dir = "state"
//! policy_file = "policy.toml"
//! passphrase_file = "passphrase"      # optional
//! log_format = "human"                # or "json"
//! max_requests_in_flight = 128        # optional; Sign calls past it get RESOURCE_EXHAUSTED
//!
//! [tls]
//! cert = "tls/server.pem"
//! key = "tls/server.key"
//! client_ca = "tls/ca.pem"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The default metrics address: loopback only.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

/// The default bound on signing requests in flight.
pub const DEFAULT_MAX_REQUESTS_IN_FLIGHT: usize = crate::signing::DEFAULT_MAX_REQUESTS_IN_FLIGHT;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    #[default]
    Human,
    /// One JSON object per line, for log shippers.
    Json,
}

/// TLS material (PEM files).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain, leaf first.
    pub cert: PathBuf,
    /// The server's private key (keep it 0600).
    pub key: PathBuf,
    /// The CA that client certificates must chain to. Client certificates are mandatory.
    pub client_ca: PathBuf,
}

/// The whole file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// gRPC listen address.
    pub listen: SocketAddr,
    /// Prometheus metrics listen address.
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: SocketAddr,
    /// The sealed key store directory.
    pub store_dir: PathBuf,
    /// The state directory (requests, limits, outbox, audit).
    pub state_dir: PathBuf,
    /// The policy file.
    pub policy_file: PathBuf,
    /// A file holding the unseal passphrase, for unattended starts. Optional.
    #[serde(default)]
    pub passphrase_file: Option<PathBuf>,
    /// Log format.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Signing requests admitted at once (at least 1). Past it, a `Sign` call is refused at once
    /// with RESOURCE_EXHAUSTED (code `overloaded`) instead of queueing, so the latency of the
    /// requests admitted stays bounded (about this number divided by the signing rate).
    #[serde(default = "default_max_requests_in_flight")]
    pub max_requests_in_flight: usize,
    /// TLS material.
    pub tls: TlsConfig,
}

fn default_max_requests_in_flight() -> usize {
    DEFAULT_MAX_REQUESTS_IN_FLIGHT
}

fn default_metrics_listen() -> SocketAddr {
    DEFAULT_METRICS_LISTEN
        .parse()
        .expect("the default metrics address is a valid socket address")
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the model.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What was wrong.
        message: String,
    },
}

impl Config {
    /// Reads and validates `path`; relative paths inside are resolved against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Config::parse(&text, path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// Parses configuration text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|error| {
            let (line, column) = error
                .span()
                .map(|span| line_column(text, span.start))
                .unwrap_or((1, 1));
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message: error.message().trim().to_owned(),
            }
        })?;
        if config.max_requests_in_flight == 0 {
            let offset = text.find("max_requests_in_flight").unwrap_or(0);
            let (line, column) = line_column(text, offset);
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message: "max_requests_in_flight must be at least 1, not 0".into(),
            });
        }
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.store_dir);
        resolve(&mut self.state_dir);
        resolve(&mut self.policy_file);
        if let Some(p) = self.passphrase_file.as_mut() {
            resolve(p);
        }
        resolve(&mut self.tls.cert);
        resolve(&mut self.tls.key);
        resolve(&mut self.tls.client_ca);
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen = "127.0.0.1:7443"
store_dir = "store"
state_dir = "/var/lib/custos/state"
policy_file = "policy.toml"
log_format = "json"

[tls]
cert = "tls/server.pem"
key = "tls/server.key"
client_ca = "tls/ca.pem"
"#;

    #[test]
    fn parses_with_defaults_and_resolves_relative_paths() {
        let mut config = Config::parse(GOOD, Path::new("custos.toml")).unwrap();
        assert_eq!(config.metrics_listen, default_metrics_listen());
        assert!(config.metrics_listen.ip().is_loopback());
        assert_eq!(config.log_format, LogFormat::Json);
        config.resolve_paths(Path::new("/etc/custos"));
        assert_eq!(config.store_dir, Path::new("/etc/custos/store"));
        assert_eq!(config.state_dir, Path::new("/var/lib/custos/state"));
        assert_eq!(config.tls.key, Path::new("/etc/custos/tls/server.key"));
    }

    #[test]
    fn the_bound_on_requests_in_flight_defaults_and_refuses_zero() {
        let config = Config::parse(GOOD, Path::new("custos.toml")).unwrap();
        assert_eq!(
            config.max_requests_in_flight,
            DEFAULT_MAX_REQUESTS_IN_FLIGHT
        );
        let text = format!("max_requests_in_flight = 8\n{GOOD}");
        let config = Config::parse(&text, Path::new("custos.toml")).unwrap();
        assert_eq!(config.max_requests_in_flight, 8);
        let text = format!("max_requests_in_flight = 0\n{GOOD}");
        let error = Config::parse(&text, Path::new("custos.toml")).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("custos.toml:1:1: max_requests_in_flight"),
            "{error}"
        );
    }

    #[test]
    fn unknown_field_is_an_error_with_its_position() {
        let text = GOOD.replace("[tls]\n", "[tls]\npassphrase = \"hunter2\"\n");
        let error = Config::parse(&text, Path::new("custos.toml")).unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("custos.toml:9:1: "), "{message}");
        assert!(message.contains("passphrase"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn bad_value_names_line_and_column() {
        let text = GOOD.replace("\"127.0.0.1:7443\"", "\"localhost\"");
        let error = Config::parse(&text, Path::new("c.toml")).unwrap_err();
        assert!(error.to_string().starts_with("c.toml:2:10: "), "{error}");
        let text = GOOD.replace("\"json\"", "\"xml\"");
        let error = Config::parse(&text, Path::new("c.toml")).unwrap_err();
        assert!(error.to_string().starts_with("c.toml:6:14: "), "{error}");
    }
}
