//! How a token is named and reached (`[hsm]` of `custos.toml`, made into [`TokenSettings`]), and
//! what is reported about it ([`TokenStatus`]). The PIN lives here only inside a zeroizing,
//! redacted [`SecretString`].

use std::path::PathBuf;

use crate::secret::SecretString;

/// Which token of the module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenSelector {
    /// The token whose label is this (looked up at every connection).
    Label(String),
    /// A fixed slot id (for modules whose tokens have no useful label).
    Slot(u64),
}

impl std::fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSelector::Label(label) => write!(f, "token '{label}'"),
            TokenSelector::Slot(slot) => write!(f, "the token in slot {slot}"),
        }
    }
}

/// How to reach a token. Holds the user PIN (zeroized on drop, never printed).
pub struct TokenSettings {
    /// The PKCS#11 module (shared library).
    pub module: PathBuf,
    /// The token.
    pub token: TokenSelector,
    /// The user PIN.
    pub pin: SecretString,
    /// The most sessions opened at once (at least 1).
    pub sessions: usize,
}

impl std::fmt::Debug for TokenSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSettings")
            .field("module", &self.module)
            .field("token", &self.token)
            .field("pin", &self.pin)
            .field("sessions", &self.sessions)
            .finish()
    }
}

/// What `custos hsm status` and the server's status report about a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenStatus {
    /// `token 'custos'`.
    pub token: String,
    /// The module path.
    pub module: PathBuf,
    /// Whether it can be used now.
    pub available: bool,
    /// `available in slot 3`, or why not.
    pub detail: String,
    /// Sessions open / the pool's capacity.
    pub sessions: (usize, usize),
}
