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
//! share_unseal_timeout_secs = 900     # optional: Shamir shares must all arrive within this
//! log_format = "human"                # or "json"
//!
//! [tls]
//! cert = "tls/server.pem"
//! key = "tls/server.key"
//! client_ca = "tls/ca.pem"
//! crl_file = "tls/ca.crl"             # optional: a CRL of the client CA (PEM or DER)
//! revoked_serials = ["1f:0a:33"]      # optional: client certificate serials (hex)
//! revoked_principals = ["spiffe://example.org/old-service"]   # optional
//!
//! [bitcoin]                           # optional; these are the defaults
//! max_fee_sat = 10000000              # 1 ..= 2100000000000000
//! max_fee_rate_sat_per_vb = 1000      # 1 ..= 100000000
//! allow_all_sighashes = false         # weakening: logged and audited when true
//! allow_witness_utxo_only = false     # weakening (CVE-2020-14199): logged and audited when true
//!
//! [signing]                            # optional
//! authorization_max_age = "1h"         # an authorization left unsigned by a crash expires after this
//! unsafe_accept_state_rollback = false # serve a state behind its anchor (audited); never by default
//! max_requests_in_flight = 128         # Sign calls admitted at once; past it RESOURCE_EXHAUSTED
//!
//! [limits]                            # optional; every key optional, defaults shown
//! psbt_bytes = 1048576                # 1 MiB
//! psbt_inputs = 1000
//! psbt_outputs = 1000
//! eth_transaction_bytes = 262144      # 256 KiB (RLP, hex or JSON as sent)
//! eth_calldata_bytes = 131072         # 128 KiB
//! message_bytes = 16384               # 16 KiB (EIP-191 personal message)
//! typed_data_bytes = 65536            # 64 KiB (EIP-712 JSON)
//! typed_data_depth = 16
//! typed_data_items = 1024             # members of one object / elements of one array
//! # grpc_message_bytes = 1114112      # default: the largest payload limit + 64 KiB
//! state_min_free_bytes = 67108864     # 64 MiB kept free on the state disk (0: no guard)
//! state_flush_timeout_secs = 30
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
//!
//! Ranges are checked when the file is read: a value outside its range is an error at its
//! `file:line:column`, like a misspelt key. What each limit guards and why its default:
//! [`crate::signing::input_limits`] and [`crate::signing::storage`].
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

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::governance::policy_sig::{Officer, PolicyTrust};
use crate::governance::PublicKey;
use crate::secret::SecretString;
use crate::state::postgres::PgSettings;

/// The environment variable the PostgreSQL password is read from when the configuration names
/// no other source.
pub const STATE_PASSWORD_ENV: &str = "CUSTOS_STATE_PASSWORD";

use crate::signing::input_limits::InputLimits;

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

/// TLS material (PEM files) and what is revoked. The three revocation settings are read again,
/// without a restart, on SIGHUP (`custos serve`); the rest only at start.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate chain, leaf first.
    pub cert: PathBuf,
    /// The server's private key (keep it 0600).
    pub key: PathBuf,
    /// The CA that client certificates must chain to. Client certificates are mandatory.
    pub client_ca: PathBuf,
    /// A certificate revocation list issued by the client CA (PEM or DER). When set, a client
    /// certificate the CRL lists, or whose issuer has no CRL in the file, is refused.
    #[serde(default)]
    pub crl_file: Option<PathBuf>,
    /// Serial numbers of revoked client certificates, hex (`1f:0a:33` or `1f0a33`).
    #[serde(default)]
    pub revoked_serials: Vec<CertSerial>,
    /// Revoked principals (SAN URI as written; DNS names compare case-insensitively).
    #[serde(default)]
    pub revoked_principals: Vec<RevokedPrincipal>,
}

impl TlsConfig {
    /// The revocation settings, as the server's client trust takes them.
    pub fn revocation(&self) -> crate::service::Revocation {
        crate::service::Revocation {
            crl_file: self.crl_file.clone(),
            serials: self.revoked_serials.iter().map(|s| s.0.clone()).collect(),
            principals: self
                .revoked_principals
                .iter()
                .map(|p| p.0.clone())
                .collect(),
        }
    }
}

/// A certificate serial number from the configuration (validated: hex, at most 20 bytes).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct CertSerial(pub Vec<u8>);

impl TryFrom<String> for CertSerial {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        crate::service::trust::parse_serial(&text).map(CertSerial)
    }
}

/// A revoked principal from the configuration: a whole name (no `*` pattern), without
/// surrounding whitespace; a DNS name (no `:`) is lower-cased as certificates' DNS names are.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct RevokedPrincipal(pub String);

impl TryFrom<String> for RevokedPrincipal {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        if text.is_empty() || text.trim() != text || text.chars().any(char::is_control) {
            return Err(format!(
                "expected a principal (a SAN URI or DNS name), got {text:?}"
            ));
        }
        if text.contains('*') {
            return Err(format!(
                "revoked principal {text:?}: list whole principals, '*' patterns are not revocations"
            ));
        }
        Ok(RevokedPrincipal(if text.contains(':') {
            text
        } else {
            text.to_ascii_lowercase()
        }))
    }
}

/// The largest satoshi amount there can be: 21 million BTC.
pub const MAX_MONEY_SAT: u64 = 2_100_000_000_000_000;
/// The largest fee rate `[bitcoin] max_fee_rate_sat_per_vb` accepts: 1 BTC per virtual byte
/// (any real cap is far below).
pub const MAX_FEE_RATE_SAT_PER_VB: u64 = 100_000_000;

/// `[bitcoin]`: the Bitcoin sign options ([`crate::chains::bitcoin::SignOptions`], whose docs name
/// the attack each one guards against). Every field is optional and defaults to the safe value.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BitcoinConfig {
    /// Refuse a PSBT whose fee is above this (satoshis), 1 ..= [`MAX_MONEY_SAT`].
    #[serde(deserialize_with = "fee_sat")]
    pub max_fee_sat: u64,
    /// Refuse a PSBT whose fee rate is above this (sat/vB), 1 ..= [`MAX_FEE_RATE_SAT_PER_VB`].
    #[serde(deserialize_with = "fee_rate")]
    pub max_fee_rate_sat_per_vb: u64,
    /// Sign sighash types other than ALL/DEFAULT (a weakening).
    pub allow_all_sighashes: bool,
    /// Sign segwit v0 inputs that carry only `witness_utxo` (a weakening: CVE-2020-14199).
    pub allow_witness_utxo_only: bool,
}

impl Default for BitcoinConfig {
    fn default() -> Self {
        let options = crate::chains::bitcoin::SignOptions::default();
        BitcoinConfig {
            max_fee_sat: options.max_fee_sat,
            max_fee_rate_sat_per_vb: options.max_fee_rate_sat_per_vb,
            allow_all_sighashes: options.allow_all_sighashes,
            allow_witness_utxo_only: options.allow_witness_utxo_only,
        }
    }
}

impl BitcoinConfig {
    /// The sign options this section sets.
    pub fn sign_options(&self) -> crate::chains::bitcoin::SignOptions {
        crate::chains::bitcoin::SignOptions {
            max_fee_sat: self.max_fee_sat,
            max_fee_rate_sat_per_vb: self.max_fee_rate_sat_per_vb,
            allow_all_sighashes: self.allow_all_sighashes,
            allow_witness_utxo_only: self.allow_witness_utxo_only,
        }
    }
}

fn in_range<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
    min: u64,
    max: u64,
    unit: &str,
) -> Result<u64, D::Error> {
    let value = u64::deserialize(deserializer)?;
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(serde::de::Error::custom(format!(
            "expected {min} ..= {max} {unit}, got {value}"
        )))
    }
}

fn fee_sat<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    in_range(deserializer, 1, MAX_MONEY_SAT, "sat")
}

fn fee_rate<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    in_range(deserializer, 1, MAX_FEE_RATE_SAT_PER_VB, "sat/vB")
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
    /// Seconds, from the first Shamir share given to `Admin.Unseal`, for a threshold of shares
    /// to arrive before the partial progress is forgotten (default 900).
    #[serde(default = "default_share_unseal_timeout")]
    pub share_unseal_timeout_secs: u64,
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
    /// Bitcoin sign options (optional section; safe defaults).
    #[serde(default)]
    pub bitcoin: BitcoinConfig,
    /// Where the state lives (default: sled in `state_dir`).
    #[serde(default)]
    pub state: StateConfig,
    /// Signing-core bounds.
    #[serde(default)]
    pub signing: SigningConfig,
    /// Bounds on request payloads, gRPC messages and the state disk.
    #[serde(default)]
    pub limits: InputLimits,
    /// A PKCS#11 token (optional).
    #[serde(default)]
    pub hsm: Option<HsmConfig>,
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
    /// `Sign` calls admitted at once (at least 1). Past it a call is refused at once with
    /// RESOURCE_EXHAUSTED (code `overloaded`) instead of queueing, so the latency of the requests
    /// admitted stays bounded (about this number divided by the signing rate).
    #[serde(
        default = "default_max_requests_in_flight",
        deserialize_with = "at_least_one"
    )]
    pub max_requests_in_flight: usize,
}

impl Default for SigningConfig {
    fn default() -> Self {
        SigningConfig {
            authorization_max_age: default_authorization_max_age(),
            unsafe_accept_state_rollback: false,
            max_requests_in_flight: default_max_requests_in_flight(),
        }
    }
}

fn at_least_one<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    if n == 0 {
        return Err(serde::de::Error::custom("must be at least 1, not 0"));
    }
    Ok(n)
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

fn default_max_requests_in_flight() -> usize {
    DEFAULT_MAX_REQUESTS_IN_FLIGHT
}

fn default_share_unseal_timeout() -> u64 {
    900
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
    /// A value is valid alone but not with the others (`[limits]`).
    #[error("{path}: {message}")]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// What was wrong, naming the keys.
        message: String,
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
        config
            .limits
            .validate()
            .map_err(|message| ConfigError::Inconsistent {
                path: path.to_owned(),
                message,
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
        if let Some(p) = self.tls.crl_file.as_mut() {
            resolve(p);
        }
        if let Some(hsm) = self.hsm.as_mut() {
            resolve(&mut hsm.module);
            if let Some(p) = hsm.pin_file.as_mut() {
                resolve(p);
            }
        }
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
        assert_eq!(config.share_unseal_timeout_secs, 900);
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
    fn the_bound_on_requests_in_flight_defaults_and_refuses_zero() {
        let config = Config::parse(GOOD, Path::new("custos.toml")).unwrap();
        assert_eq!(
            config.signing.max_requests_in_flight,
            DEFAULT_MAX_REQUESTS_IN_FLIGHT
        );
        let text = format!("{GOOD}\n[signing]\nmax_requests_in_flight = 8\n");
        let config = Config::parse(&text, Path::new("custos.toml")).unwrap();
        assert_eq!(config.signing.max_requests_in_flight, 8);
        let text = format!("{GOOD}\n[signing]\nmax_requests_in_flight = 0\n");
        let error = Config::parse(&text, Path::new("custos.toml")).unwrap_err();
        let at = format!("custos.toml:{}:", GOOD.lines().count() + 3);
        assert!(error.to_string().starts_with(&at), "{error}");
        assert!(error.to_string().contains("at least 1, not 0"), "{error}");
    }

    #[test]
    fn limits_default_when_absent_and_are_read_when_given() {
        let config = Config::parse(GOOD, Path::new("custos.toml")).unwrap();
        assert_eq!(config.limits, InputLimits::default());
        let text = format!("{GOOD}\n[limits]\nmessage_bytes = 4096\nstate_min_free_bytes = 0\n");
        let config = Config::parse(&text, Path::new("custos.toml")).unwrap();
        assert_eq!(config.limits.message_bytes, 4096);
        assert_eq!(config.limits.state_min_free_bytes, 0);
        assert_eq!(config.limits.psbt_bytes, InputLimits::default().psbt_bytes);
    }

    #[test]
    fn limits_refuse_unknown_keys_and_inconsistent_values() {
        let text = format!("{GOOD}\n[limits]\nmessage_size = 4096\n");
        let error = Config::parse(&text, Path::new("c.toml")).unwrap_err();
        assert!(error.to_string().contains("message_size"), "{error}");
        // The line after GOOD, a blank line and the table header.
        let at = format!("c.toml:{}:1: ", GOOD.lines().count() + 3);
        assert!(error.to_string().starts_with(&at), "{error}");
        let text = format!("{GOOD}\n[limits]\ngrpc_message_bytes = 1000\n");
        let error = Config::parse(&text, Path::new("c.toml")).unwrap_err();
        assert!(
            error.to_string().contains("grpc_message_bytes is 1000"),
            "{error}"
        );
        let text = format!("{GOOD}\n[limits]\npsbt_inputs = 0\n");
        let error = Config::parse(&text, Path::new("c.toml")).unwrap_err();
        assert!(
            error.to_string().contains("psbt_inputs must be above 0"),
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
    fn revocation_settings_are_validated_where_written() {
        let text = GOOD.replace(
            "client_ca = \"tls/ca.pem\"\n",
            "client_ca = \"tls/ca.pem\"\ncrl_file = \"tls/ca.crl\"\nrevoked_serials = [\"1F:0a\", \"00ff\"]\nrevoked_principals = [\"spiffe://t/Old\", \"Svc.T\"]\n",
        );
        let mut config = Config::parse(&text, Path::new("c.toml")).unwrap();
        config.resolve_paths(Path::new("/etc/custos"));
        let revocation = config.tls.revocation();
        assert_eq!(
            revocation.crl_file.as_deref(),
            Some(Path::new("/etc/custos/tls/ca.crl"))
        );
        assert_eq!(revocation.serials, [vec![0x1f, 0x0a], vec![0xff]]);
        assert_eq!(revocation.principals, ["spiffe://t/Old", "svc.t"]);

        for (line, needle) in [
            (
                "revoked_serials = [\"01\", \"xyz\"]",
                "serial number in hex",
            ),
            ("revoked_principals = [\"svc*\"]", "patterns"),
            ("revoked_principals = [\" svc\"]", "expected a principal"),
            ("crl = \"x\"", "unknown field"),
        ] {
            let text = GOOD.replace(
                "client_ca = \"tls/ca.pem\"\n",
                &format!("client_ca = \"tls/ca.pem\"\n{line}\n"),
            );
            let message = Config::parse(&text, Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(message.starts_with("c.toml:12:"), "{line}: {message}");
            assert!(message.contains(needle), "{line}: {message}");
        }
    }

    #[test]
    fn bitcoin_section_defaults_to_the_safe_options() {
        let config = Config::parse(GOOD, Path::new("c.toml")).unwrap();
        assert_eq!(
            config.bitcoin.sign_options(),
            crate::chains::bitcoin::SignOptions::default()
        );
        assert!(config.bitcoin.sign_options().weakenings().is_empty());

        let text = format!(
            "{GOOD}\n[bitcoin]\nmax_fee_sat = 50000\nmax_fee_rate_sat_per_vb = 20\nallow_all_sighashes = true\nallow_witness_utxo_only = true\n"
        );
        let options = Config::parse(&text, Path::new("c.toml"))
            .unwrap()
            .bitcoin
            .sign_options();
        assert_eq!(options.max_fee_sat, 50_000);
        assert_eq!(options.max_fee_rate_sat_per_vb, 20);
        assert!(options.allow_all_sighashes && options.allow_witness_utxo_only);
        assert_eq!(options.weakenings().len(), 2);
    }

    #[test]
    fn bitcoin_values_out_of_range_or_unknown_name_their_line() {
        for (line, needle) in [
            (
                "max_fee_sat = 0",
                "expected 1 ..= 2100000000000000 sat, got 0",
            ),
            ("max_fee_sat = 2100000000000001", "got 2100000000000001"),
            ("max_fee_rate_sat_per_vb = 0", "sat/vB, got 0"),
            ("max_fee_rate_sat_per_vb = 100000001", "got 100000001"),
            ("max_fee_sat = -5", "-5"),
            ("allow_witness_utxo_only = \"yes\"", "bool"),
            ("require_non_witness_utxo = false", "unknown field"),
        ] {
            let text = format!("{GOOD}\n[bitcoin]\n{line}\n");
            let error = Config::parse(&text, Path::new("c.toml")).unwrap_err();
            let message = error.to_string();
            let at = format!("c.toml:{}:", GOOD.lines().count() + 3);
            assert!(message.starts_with(&at), "{line}: {message}");
            assert!(message.contains(needle), "{line}: {message}");
        }
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
        // GOOD, a blank line, [hsm], module, token_label: the PIN's line.
        let at = format!("c.toml:{}:", GOOD.lines().count() + 5);
        assert!(error.starts_with(&at), "{error}");
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
            // The [hsm] header's line: after GOOD and a blank line.
            let at = format!("c.toml:{}:1: [hsm]: ", GOOD.lines().count() + 2);
            assert!(error.starts_with(&at), "{error}");
            assert!(error.contains(what), "{error}");
        }
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
        // base (GOOD without state_dir), a blank line, [state], engine: the URL's line.
        let url_line = base.lines().count() + 4;
        assert!(e.starts_with(&format!("c.toml:{url_line}:7: ")), "{e}");
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
        let e = e.unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("c.toml:{}:1: ", url_line + 3)),
            "{e}"
        );
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
