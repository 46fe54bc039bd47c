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
//! ```
//!
//! The state lives in the embedded sled database in `state_dir` (the default), or in PostgreSQL,
//! shared by several replicas (then `state_dir` is left out):
//!
//! ```toml
//! [state]
//! engine = "postgres"                              # "sled" (default) or "postgres"
//! url = "postgres://custos@db.internal:5432/custos" # never with a password in it
//! password_file = "pg-password"                    # or password_env = "CUSTOS_STATE_PASSWORD"
//! schema = "custos"                                # optional (default: the server's, `public`)
//! pool_size = 16                                   # optional
//! connect_timeout_ms = 5000                        # optional bounds
//! statement_timeout_ms = 10000
//! lock_timeout_ms = 5000
//! ```
//!
//! Without `password_file` or `password_env`, the password is read from `CUSTOS_STATE_PASSWORD`
//! if that is set (else none is sent: trust or peer authentication).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::secret::SecretString;
use crate::state::postgres::PgSettings;

/// The environment variable the PostgreSQL password is read from when the configuration names
/// no other source.
pub const STATE_PASSWORD_ENV: &str = "CUSTOS_STATE_PASSWORD";

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

/// Which engine holds the state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateEngine {
    /// The embedded database in `state_dir` (one process).
    #[default]
    Sled,
    /// A PostgreSQL database, shared by replicas.
    Postgres,
}

/// `[state]`: where the state lives.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `sled` (default) or `postgres`.
    #[serde(default)]
    pub engine: Option<Spanned<StateEngine>>,
    /// PostgreSQL: `postgres://USER@HOST:PORT/DB` (no password).
    #[serde(default)]
    pub url: Option<Spanned<String>>,
    /// PostgreSQL: a file holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PostgreSQL: the environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// PostgreSQL: the schema of Custos' tables.
    #[serde(default)]
    pub schema: Option<Spanned<String>>,
    /// PostgreSQL: connections in the pool.
    #[serde(default)]
    pub pool_size: Option<usize>,
    /// PostgreSQL: bound on opening a connection, ms.
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// PostgreSQL: bound on one statement, ms.
    #[serde(default)]
    pub statement_timeout_ms: Option<u64>,
    /// PostgreSQL: bound on waiting for the state lock, ms.
    #[serde(default)]
    pub lock_timeout_ms: Option<u64>,
}

impl StateConfig {
    /// The engine.
    pub fn engine(&self) -> StateEngine {
        self.engine
            .as_ref()
            .map(|e| *e.get_ref())
            .unwrap_or_default()
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
    /// The state directory (requests, limits, outbox, audit) of the sled engine.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
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
    /// Where the state lives (default: sled in `state_dir`).
    #[serde(default)]
    pub state: StateConfig,
    /// Signing-core bounds.
    #[serde(default)]
    pub signing: SigningConfig,
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
        config.check_state().map_err(|(at, message)| {
            let (line, column) = line_column(text, at);
            ConfigError::Invalid {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        })?;
        Ok(config)
    }

    /// The `[state]` rules serde cannot express; an error names its position in the text.
    fn check_state(&self) -> Result<(), (usize, String)> {
        let state = &self.state;
        let at = state.engine.as_ref().map(|e| e.span().start).unwrap_or(0);
        match state.engine() {
            StateEngine::Sled => {
                if self.state_dir.is_none() {
                    return Err((at, "the sled state engine needs `state_dir`".into()));
                }
                if let Some(url) = &state.url {
                    return Err((
                        url.span().start,
                        "`url` is for engine = \"postgres\" (the state engine is sled)".into(),
                    ));
                }
            }
            StateEngine::Postgres => {
                if self.state_dir.is_some() {
                    return Err((
                        at,
                        "`state_dir` is for the sled engine: remove it when the state is in \
                         PostgreSQL"
                            .into(),
                    ));
                }
                let Some(url) = &state.url else {
                    return Err((at, "engine = \"postgres\" needs `url`".into()));
                };
                PgSettings::new(url.get_ref().clone())
                    .driver_config()
                    .map_err(|e| (url.span().start, e))?;
                if state.password_file.is_some() && state.password_env.is_some() {
                    return Err((
                        at,
                        "give `password_file` or `password_env`, not both".into(),
                    ));
                }
                if let Some(schema) = &state.schema {
                    crate::state::postgres::settings::check_schema_name(schema.get_ref())
                        .map_err(|e| (schema.span().start, e))?;
                }
                if state.pool_size == Some(0) {
                    return Err((at, "`pool_size` must be at least 1".into()));
                }
            }
        }
        Ok(())
    }

    /// The PostgreSQL settings (`None` for the sled engine), with the password read from its file
    /// or environment variable.
    pub fn postgres_settings(&self) -> Result<Option<PgSettings>, String> {
        let state = &self.state;
        if state.engine() != StateEngine::Postgres {
            return Ok(None);
        }
        let url = state
            .url
            .as_ref()
            .map(|u| u.get_ref().clone())
            .ok_or("engine = \"postgres\" needs `url`")?;
        let mut settings = PgSettings::new(url);
        settings.password = match (&state.password_file, &state.password_env) {
            (Some(file), _) => {
                Some(SecretString::from_file(file).map_err(|e| {
                    format!("cannot read the password file {}: {e}", file.display())
                })?)
            }
            (None, Some(var)) => Some(std::env::var(var).map(SecretString::new).map_err(|_| {
                format!("the environment variable {var} (password_env) is not set")
            })?),
            (None, None) => std::env::var(STATE_PASSWORD_ENV)
                .ok()
                .map(SecretString::new),
        };
        settings.schema = state.schema.as_ref().map(|s| s.get_ref().clone());
        if let Some(n) = state.pool_size {
            settings.pool_size = n;
        }
        let ms = std::time::Duration::from_millis;
        if let Some(t) = state.connect_timeout_ms {
            settings.connect_timeout = ms(t.max(1));
        }
        if let Some(t) = state.statement_timeout_ms {
            settings.statement_timeout = ms(t.max(1));
        }
        if let Some(t) = state.lock_timeout_ms {
            settings.lock_timeout = ms(t.max(1));
        }
        Ok(Some(settings))
    }

    /// Where the state is, for messages: the sled directory or the PostgreSQL URL.
    pub fn state_location(&self) -> String {
        match (&self.state_dir, &self.state.url) {
            (Some(dir), _) if self.state.engine() == StateEngine::Sled => dir.display().to_string(),
            (_, Some(url)) => url.get_ref().clone(),
            _ => "?".into(),
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.store_dir);
        if let Some(p) = self.state_dir.as_mut() {
            resolve(p);
        }
        if let Some(p) = self.state.password_file.as_mut() {
            resolve(p);
        }
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
        assert_eq!(
            config.state_dir.as_deref(),
            Some(Path::new("/var/lib/custos/state"))
        );
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
    fn postgres_state_is_checked_with_positions() {
        let base = GOOD.replace("state_dir = \"/var/lib/custos/state\"\n", "");
        let pg = format!(
            "{base}\n[state]\nengine = \"postgres\"\nurl = \"postgres://custos@127.0.0.1:5432/custos\"\npassword_file = \"pw\"\nschema = \"custos\"\n"
        );
        let mut config = Config::parse(&pg, Path::new("c.toml")).unwrap();
        assert_eq!(config.state.engine(), StateEngine::Postgres);
        config.resolve_paths(Path::new("/etc/custos"));
        assert_eq!(
            config.state.password_file.as_deref(),
            Some(Path::new("/etc/custos/pw"))
        );
        // A password in the URL: refused at its line, and not echoed.
        let bad = pg.replace("custos@127", "custos:hunter2@127");
        let e = Config::parse(&bad, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml:14:7: "), "{e}");
        assert!(e.contains("password") && !e.contains("hunter2"), "{e}");
        // No url; state_dir beside postgres; no state_dir for sled; an unknown key.
        let e = Config::parse(&pg.replace("url = ", "# url = "), Path::new("c.toml"));
        assert!(e.unwrap_err().to_string().contains("needs `url`"));
        let e = Config::parse(&format!("state_dir = \"s\"\n{pg}"), Path::new("c.toml"));
        assert!(e.unwrap_err().to_string().contains("state_dir"));
        let e = Config::parse(&base, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs `state_dir`"), "{e}");
        let e = Config::parse(&format!("{pg}password = \"x\"\n"), Path::new("c.toml"));
        assert!(e.unwrap_err().to_string().starts_with("c.toml:17:1: "));
        let e = Config::parse(
            &pg.replace("\"custos\"\n", "\"Bad-Name\"\n"),
            Path::new("c"),
        );
        assert!(e.unwrap_err().to_string().contains("schema"));
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
