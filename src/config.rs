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
//! [signing]                            # optional
//! authorization_max_age = "1h"         # an authorization left unsigned by a crash expires after this
//! unsafe_accept_state_rollback = false # serve a state behind its anchor (audited); never by default
//!
//! # Who must sign a policy before it takes effect (required; see docs/governance.md).
//! [compliance]
//! officers = [
//!   { name = "dana", key = "ed25519:3d40…" },
//!   { name = "erin", key = "p256:02a1…" },
//! ]
//! threshold = 2
//! # signatures = "policy.toml.sig"   # default: <policy_file>.sig
//! # allow_unsigned_policy = true     # DEVELOPMENT ONLY: any valid policy file takes effect
//!
//! # The approval console (optional): a web page for approvers, plain HTTP on loopback only.
//! [console]
//! listen = "127.0.0.1:7480"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::governance::policy_sig::{Officer, PolicyTrust};
use crate::governance::PublicKey;

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
    /// Compliance officers whose signatures a policy needs. Required: leaving it out is an
    /// error, so that running without policy signatures is always a written decision.
    #[serde(default)]
    pub compliance: Option<Spanned<ComplianceConfig>>,
    /// The approval console, if it is to be served.
    #[serde(default)]
    pub console: Option<ConsoleConfig>,
    /// Signing-core bounds.
    #[serde(default)]
    pub signing: SigningConfig,
}

/// One pinned compliance officer.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficerConfig {
    /// A name for messages and the audit.
    pub name: String,
    /// The officer's public key (`ed25519:<hex>` or `p256:<hex>`).
    pub key: Spanned<String>,
}

/// `[compliance]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplianceConfig {
    /// The officers whose signatures count.
    #[serde(default)]
    pub officers: Vec<OfficerConfig>,
    /// How many distinct officers must sign a policy.
    #[serde(default)]
    pub threshold: Option<Spanned<usize>>,
    /// The signature file (default: `<policy_file>.sig`).
    #[serde(default)]
    pub signatures: Option<PathBuf>,
    /// DEVELOPMENT ONLY: a policy takes effect without signatures (said at every start and
    /// reload, in the log and the audit). Whoever can write the policy file then decides what is
    /// signed.
    #[serde(default)]
    pub allow_unsigned_policy: bool,
}

/// `[console]`: the approval console.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Where it listens: a loopback address (it speaks plain HTTP).
    pub listen: Spanned<SocketAddr>,
}

/// `[signing]`: bounds of the signing core.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    /// How long an `authorized` request left unsigned (by a crash) may still be signed by a retry
    /// or the recovery pass; older ones are expired and their reservations released (`"1h"`).
    #[serde(
        default = "default_authorization_max_age",
        deserialize_with = "duration"
    )]
    pub authorization_max_age: u64,
    /// UNSAFE: unseal over a state database that is behind the key store's anchor (a restored
    /// backup, or a rollback by whoever administers the state). It may replay or undo work; the
    /// override is recorded in the audit chain and the log. Prefer `custos state accept-rollback`.
    #[serde(default)]
    pub unsafe_accept_state_rollback: bool,
}

impl Default for SigningConfig {
    fn default() -> Self {
        SigningConfig {
            authorization_max_age: default_authorization_max_age(),
            unsafe_accept_state_rollback: false,
        }
    }
}

fn default_authorization_max_age() -> u64 {
    crate::signing::DEFAULT_AUTHORIZATION_MAX_AGE_SECS
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let text = String::deserialize(d)?;
    let secs =
        crate::policy::amount_units::parse_duration(&text).map_err(serde::de::Error::custom)?;
    if secs == 0 {
        return Err(serde::de::Error::custom("must be longer than zero"));
    }
    Ok(secs)
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
        let at = |offset: usize, message: String| {
            let (line, column) = line_column(text, offset);
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        };
        config
            .policy_trust_checked()
            .map_err(|(offset, message)| at(offset, message))?;
        if let Some(console) = &config.console {
            if !console.listen.get_ref().ip().is_loopback() {
                return Err(at(
                    console.listen.span().start,
                    format!(
                        "the approval console speaks plain HTTP: listen on a loopback address (127.0.0.1 or ::1), not {}",
                        console.listen.get_ref()
                    ),
                ));
            }
        }
        Ok(config)
    }

    /// Which policies may take effect, from `[compliance]` (validated when the file was parsed).
    pub fn policy_trust(&self) -> PolicyTrust {
        self.policy_trust_checked()
            .expect("the configuration was validated when it was parsed")
    }

    fn policy_trust_checked(&self) -> Result<PolicyTrust, (usize, String)> {
        let Some(section) = &self.compliance else {
            return Err((
                0,
                "no [compliance] section: pin the compliance officers' public keys and a threshold \
                 (officers = [{ name = \"…\", key = \"ed25519:…\" }], threshold = N), or, for \
                 development only, set allow_unsigned_policy = true under [compliance]"
                    .into(),
            ));
        };
        let c = section.get_ref();
        let mut officers = Vec::new();
        for o in &c.officers {
            let key = PublicKey::parse(o.key.get_ref())
                .map_err(|e| (o.key.span().start, format!("officer '{}': {e}", o.name)))?;
            officers.push(Officer {
                name: o.name.clone(),
                key,
            });
        }
        if c.allow_unsigned_policy {
            return Ok(PolicyTrust::development(officers));
        }
        let (threshold, offset) = match &c.threshold {
            Some(t) => (*t.get_ref(), t.span().start),
            None => {
                return Err((
                    section.span().start,
                    "[compliance] needs a threshold: how many officers must sign a policy".into(),
                ))
            }
        };
        PolicyTrust::new(officers, threshold).map_err(|e| (offset, format!("[compliance] {e}")))
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
        if let Some(section) = self.compliance.as_mut() {
            if let Some(p) = section.get_mut().signatures.as_mut() {
                resolve(p);
            }
        }
    }

    /// The policy's signature file, when `[compliance] signatures` names one.
    pub fn policy_signatures(&self) -> Option<PathBuf> {
        self.compliance
            .as_ref()
            .and_then(|c| c.get_ref().signatures.clone())
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

[compliance]
officers = [{ name = "dana", key = "ed25519:3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c" }]
threshold = 1
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
    fn signing_bounds_default_and_parse() {
        let config = Config::parse(GOOD, Path::new("custos.toml")).unwrap();
        assert_eq!(config.signing.authorization_max_age, 3600);
        assert!(!config.signing.unsafe_accept_state_rollback);
        let text = format!("{GOOD}\n[signing]\nauthorization_max_age = \"15m\"\n");
        let config = Config::parse(&text, Path::new("custos.toml")).unwrap();
        assert_eq!(config.signing.authorization_max_age, 900);
        let text = format!("{GOOD}\n[signing]\nauthorization_max_age = \"soon\"\n");
        let error = Config::parse(&text, Path::new("custos.toml")).unwrap_err();
        assert!(error.to_string().contains("custos.toml:"), "{error}");
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

    #[test]
    fn compliance_is_required_and_checked_where_it_is_written() {
        let config = Config::parse(GOOD, Path::new("c.toml")).unwrap();
        let trust = config.policy_trust();
        assert_eq!(trust.threshold(), 1);
        assert!(!trust.is_development());

        let cut = GOOD.split("[compliance]").next().unwrap();
        let e = Config::parse(cut, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no [compliance] section"), "{e}");

        let text = GOOD.replace("threshold = 1", "threshold = 2");
        let e = Config::parse(&text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml:15:13: "), "{e}");
        assert!(e.contains("threshold 2 with 1 officer key(s)"), "{e}");

        let text = GOOD.replace("ed25519:3d40", "ed25519:zz40");
        let e = Config::parse(&text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml:14:"), "{e}");
        assert!(e.contains("officer 'dana'") && e.contains("not hex"), "{e}");

        let dev = format!("{cut}[compliance]\nallow_unsigned_policy = true\n");
        assert!(Config::parse(&dev, Path::new("c.toml"))
            .unwrap()
            .policy_trust()
            .is_development());
    }

    #[test]
    fn the_console_listens_on_loopback_only() {
        let ok = format!("{GOOD}\n[console]\nlisten = \"127.0.0.1:0\"\n");
        assert!(Config::parse(&ok, Path::new("c.toml"))
            .unwrap()
            .console
            .is_some());
        let open = format!("{GOOD}\n[console]\nlisten = \"0.0.0.0:8080\"\n");
        let e = Config::parse(&open, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("loopback"), "{e}");
    }
}
