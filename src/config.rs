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
//!
//! [tls]
//! cert = "tls/server.pem"
//! key = "tls/server.key"
//! client_ca = "tls/ca.pem"
//!
//! [hsm]                               # optional: a PKCS#11 token (see hsm/README.md)
//! module = "/usr/lib/softhsm/libsofthsm2.so"
//! token_label = "custos"              # or: slot = 3
//! pin_file = "hsm/user-pin"           # or: pin_env = "CUSTOS_HSM_PIN" (never the PIN itself)
//! sessions = 4                        # session pool size
//! wallets = ["eth-hsm", "btc-hsm"]    # wallets whose keys are on the token; ["*"] for all
//! auto_unseal = true                  # unseal at start through the store's slot/pkcs11
//!
//! [hsm.module_env]                    # environment the module reads (optional)
//! SOFTHSM2_CONF = "/srv/custos/hsm/softhsm2.conf"
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The default metrics address: loopback only.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

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

/// The default size of the HSM session pool.
pub const DEFAULT_HSM_SESSIONS: usize = 4;
/// The largest HSM session pool accepted.
pub const MAX_HSM_SESSIONS: usize = 256;

/// A PKCS#11 token (`[hsm]`). The user PIN comes from `pin_file` or the environment variable
/// `pin_env`, never from this file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsmConfig {
    /// The PKCS#11 module (shared library).
    pub module: PathBuf,
    /// The token's label (looked up at every connection). Exactly one of this and `slot`.
    #[serde(default)]
    pub token_label: Option<String>,
    /// A fixed slot id instead of a label.
    #[serde(default)]
    pub slot: Option<u64>,
    /// A file holding the user PIN (keep it 0600). Exactly one of this and `pin_env`.
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// The name of an environment variable holding the user PIN.
    #[serde(default)]
    pub pin_env: Option<String>,
    /// The most sessions opened at once (1 to 256).
    #[serde(default = "default_sessions")]
    pub sessions: usize,
    /// The wallets whose keys live on the token; `"*"` for every wallet the HSM can hold.
    #[serde(default)]
    pub wallets: Vec<String>,
    /// Unseal at start through the store's HSM slot (`slot/pkcs11`).
    #[serde(default)]
    pub auto_unseal: bool,
    /// Environment variables the module reads (`SOFTHSM2_CONF`, `ChrystokiConfigurationPath`),
    /// set before it is loaded.
    #[serde(default)]
    pub module_env: BTreeMap<String, String>,
}

fn default_sessions() -> usize {
    DEFAULT_HSM_SESSIONS
}

impl HsmConfig {
    /// The checks serde cannot express; the message names the fields.
    fn validate(&self) -> Result<(), String> {
        match (&self.token_label, &self.slot) {
            (Some(_), Some(_)) => return Err("set token_label or slot, not both".into()),
            (None, None) => return Err("set token_label (or slot)".into()),
            (Some(label), None) if label.is_empty() || label.len() > 32 => {
                return Err(
                    "token_label has 1 to 32 characters (PKCS#11 labels are 32 bytes)".into(),
                )
            }
            _ => {}
        }
        match (&self.pin_file, &self.pin_env) {
            (Some(_), Some(_)) => return Err("set pin_file or pin_env, not both".into()),
            (None, None) => {
                return Err("set pin_file or pin_env: the user PIN never goes in this file".into())
            }
            _ => {}
        }
        if !(1..=MAX_HSM_SESSIONS).contains(&self.sessions) {
            return Err(format!(
                "sessions is {}, expected 1 to {MAX_HSM_SESSIONS}",
                self.sessions
            ));
        }
        if self.wallets.iter().any(|w| w.is_empty()) {
            return Err("wallets holds an empty name".into());
        }
        Ok(())
    }
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
    /// TLS material.
    pub tls: TlsConfig,
    /// A PKCS#11 token (optional).
    #[serde(default)]
    pub hsm: Option<HsmConfig>,
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
        if let Some(hsm) = &config.hsm {
            hsm.validate().map_err(|message| {
                let line = text
                    .lines()
                    .position(|l| l.trim_start().starts_with("[hsm]"))
                    .map_or(1, |i| i + 1);
                ConfigError::Invalid {
                    path: path.to_owned(),
                    line,
                    column: 1,
                    message: format!("[hsm]: {message}"),
                }
            })?;
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
        if let Some(hsm) = self.hsm.as_mut() {
            resolve(&mut hsm.module);
            if let Some(p) = hsm.pin_file.as_mut() {
                resolve(p);
            }
        }
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
    fn unknown_field_is_an_error_with_its_position() {
        let text = GOOD.replace("[tls]\n", "[tls]\npassphrase = \"hunter2\"\n");
        let error = Config::parse(&text, Path::new("custos.toml")).unwrap_err();
        let message = error.to_string();
        assert!(message.starts_with("custos.toml:9:1: "), "{message}");
        assert!(message.contains("passphrase"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn hsm_section() {
        let text = format!(
            "{GOOD}\n[hsm]\nmodule = \"lib.so\"\ntoken_label = \"custos\"\npin_env = \"PIN\"\nwallets = [\"eth-hsm\"]\nauto_unseal = true\n[hsm.module_env]\nSOFTHSM2_CONF = \"/x/softhsm2.conf\"\n"
        );
        let mut config = Config::parse(&text, Path::new("c.toml")).unwrap();
        config.resolve_paths(Path::new("/etc/custos"));
        let hsm = config.hsm.unwrap();
        assert_eq!(hsm.module, Path::new("/etc/custos/lib.so"));
        assert_eq!(hsm.sessions, DEFAULT_HSM_SESSIONS);
        assert!(hsm.auto_unseal);
        assert_eq!(hsm.module_env["SOFTHSM2_CONF"], "/x/softhsm2.conf");

        // A PIN in the file is an unknown field, named with its position and never echoed.
        let with_pin = text.replace("pin_env = \"PIN\"", "pin = \"123456\"");
        let error = Config::parse(&with_pin, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("pin") && !error.contains("123456"),
            "{error}"
        );
        assert!(error.starts_with("c.toml:16:"), "{error}");
        // The checks serde cannot make name the section's line.
        for (from, to, what) in [
            ("pin_env = \"PIN\"", "", "pin_file or pin_env"),
            (
                "token_label = \"custos\"",
                "slot = 1\ntoken_label = \"x\"",
                "not both",
            ),
            ("auto_unseal = true", "sessions = 0", "sessions is 0"),
        ] {
            let error = Config::parse(&text.replace(from, to), Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("c.toml:13:1: [hsm]: "), "{error}");
            assert!(error.contains(what), "{error}");
        }
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
