//! The PKCS#11 key backend: secp256k1 keys that never leave an HSM, used through `CKM_ECDSA`.
//!
//! Built on the `cryptoki` crate (the Parsec project's PKCS#11 binding; its FFI is the only
//! `unsafe` involved, and it stays in that crate). One responsibility per file:
//!
//! - [`module`]: the loaded library, process-wide; re-initialised to reconnect.
//! - [`settings`]: how a token is named and reached, and what is reported about it.
//! - [`token`]: one token found by label, logged in, its health (up, down, PIN refused) and the
//!   reconnection policy.
//! - [`session_pool`]: the bounded pool of sessions (`[hsm] sessions`).
//! - [`keys`]: key objects — labels `custos/<wallet>/<change>/<index>`, attributes, generation
//!   inside the token, import of keys derived elsewhere, listing.
//! - [`sign`]: raw `r ‖ s` → low-S, verified against the wallet's key, recovery id, low-R grinding.
//! - [`wallets`]: which wallets live on the token, and the [`super::KeyBackend`] they sign through.
//! - [`wrap`]: the AES-256 unseal key (auto-unseal of the key store).
//! - [`admin`]: the ceremony operations on the token — generate, import, list, capabilities.
//! - [`ceremony`]: putting a wallet's keys on the token (HD import, or generation inside it).
//! - [`provision`]: making a SoftHSM2 token for development and tests.
//! - [`error`]: what failed, sorted into "token unavailable" (UNAVAILABLE for callers) and the rest.
//!
//! [`Pkcs11Backend`] ties them together: it signs a digest with the key under a label, checking
//! every signature against the public key the caller expects before returning it.
//!
//! # What is deterministic, and what is not
//!
//! A token chooses its ECDSA nonce (SoftHSM2 randomly; PKCS#11 has no RFC 6979 mechanism), so the
//! `r ‖ s` of a signature differs from the software backend's and from one call to the next. What
//! is the same whichever backend holds a key: the public keys, addresses and xpubs (imported keys
//! are the HD keys), every digest signed (sighashes, EIP-155/1559 signing hashes, EIP-712 hashes),
//! the unsigned transaction, the segwit txid (it excludes the witness), and the validity of every
//! signature under the same public key — low S, the same recovery rules. The tests compare exactly
//! these.

pub mod admin;
pub mod ceremony;
pub mod error;
pub mod keys;
pub mod module;
pub mod provision;
pub mod session_pool;
pub mod settings;
pub mod sign;
pub mod token;
pub mod wallets;
pub mod wrap;

use std::collections::HashMap;
use std::sync::RwLock;

use bitcoin::secp256k1::ecdsa::{RecoverableSignature, Signature as EcdsaSignature};
use bitcoin::secp256k1::PublicKey;
use cryptoki::error::Error as CkError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;

pub use error::Pkcs11Error;
pub use keys::{key_label, KeyObject};
pub use token::{Token, TokenSelector, TokenSettings, TokenStatus};
pub use wallets::HsmWallets;

use super::Digest32;
use crate::keys::SecretPrivateKey;
use error::rv_name;
use sign::LOW_R_MAX_TRIES;

/// What the token can do, as `custos hsm status` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// `CKM_ECDSA` is listed.
    pub ecdsa: bool,
    /// `CKM_EC_KEY_PAIR_GEN` is listed.
    pub ec_keygen: bool,
    /// A secp256k1 session key pair could be generated (and was destroyed again).
    pub secp256k1: Result<(), String>,
    /// `CKM_AES_KEY_GEN` is listed.
    pub aes_keygen: bool,
    /// `CKM_AES_GCM` is listed.
    pub aes_gcm: bool,
}

/// What an import did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Key pairs created.
    pub created: usize,
    /// Key pairs that were there already, with the expected public key.
    pub present: usize,
}

/// One key to import: its label, the private key, and the public key it must have.
pub struct ImportItem {
    /// `custos/<wallet>/<change>/<index>`.
    pub label: String,
    /// The private key (zeroized on drop).
    pub secret: SecretPrivateKey,
    /// Its public key.
    pub public: PublicKey,
}

/// A token used as a key backend.
pub struct Pkcs11Backend {
    token: Token,
    /// Private key handles by label, with the module generation they belong to.
    handles: RwLock<HashMap<String, (u64, ObjectHandle)>>,
}

impl std::fmt::Debug for Pkcs11Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Backend")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// The outcome of looking a key up inside one session.
enum Lookup {
    Found(ObjectHandle),
    Missing,
    Refused(String),
}

impl Pkcs11Backend {
    /// Loads the module and connects to the token (see [`Token::open`]: a token absent now is
    /// not an error, a module that cannot be loaded is).
    pub fn open(settings: TokenSettings) -> Result<Self, Pkcs11Error> {
        Ok(Pkcs11Backend {
            token: Token::open(settings)?,
            handles: RwLock::new(HashMap::new()),
        })
    }

    /// The token.
    pub fn token(&self) -> &Token {
        &self.token
    }

    /// The token's state.
    pub fn status(&self) -> TokenStatus {
        self.token.status()
    }

    pub(crate) fn refused(&self, operation: String, e: &CkError) -> Pkcs11Error {
        Pkcs11Error::Refused {
            token: self.token.name().to_owned(),
            operation,
            rv: rv_name(e),
        }
    }

    /// The handle of the private key `label` valid in `generation`: cached, or found and checked
    /// (secp256k1, sensitive, not extractable) in `session`.
    fn lookup(&self, session: &Session, generation: u64, label: &str) -> Result<Lookup, CkError> {
        if let Some((g, handle)) = self
            .handles
            .read()
            .expect("handle cache lock poisoned")
            .get(label)
        {
            if *g == generation {
                return Ok(Lookup::Found(*handle));
            }
        }
        let found = keys::find_private(session, label)?;
        let handle = match found.as_slice() {
            [] => return Ok(Lookup::Missing),
            [one] => *one,
            more => {
                return Ok(Lookup::Refused(format!(
                    "{} private keys carry this label",
                    more.len()
                )))
            }
        };
        if let Err(reason) = keys::check_private(session, handle)? {
            return Ok(Lookup::Refused(reason));
        }
        self.handles
            .write()
            .expect("handle cache lock poisoned")
            .insert(label.to_owned(), (generation, handle));
        Ok(Lookup::Found(handle))
    }

    fn forget(&self, label: &str) {
        self.handles
            .write()
            .expect("handle cache lock poisoned")
            .remove(label);
    }

    /// ECDSA over `digest` with the key `label`: low S, verified against `expected`, and with
    /// `grind_low_r` re-signed until R is low (at most [`LOW_R_MAX_TRIES`] operations; see
    /// [`sign`]).
    pub fn sign_ecdsa(
        &self,
        label: &str,
        expected: &PublicKey,
        digest: &Digest32,
        grind_low_r: bool,
    ) -> Result<EcdsaSignature, Pkcs11Error> {
        let what = format!("signing with '{label}'");
        for _ in 0..2 {
            let ran = self.token.run(&what, |session, generation| {
                let handle = match self.lookup(session, generation, label)? {
                    Lookup::Found(handle) => handle,
                    Lookup::Missing => return Ok(Err(Lookup::Missing)),
                    Lookup::Refused(reason) => return Ok(Err(Lookup::Refused(reason))),
                };
                let mut last = None;
                for _ in 0..if grind_low_r { LOW_R_MAX_TRIES } else { 1 } {
                    let raw = session.sign(&Mechanism::Ecdsa, handle, digest)?;
                    let signature = match sign::normalise(&raw, digest, expected) {
                        Ok(s) => s,
                        Err(reason) => return Ok(Ok(Err(reason))),
                    };
                    if !grind_low_r || sign::is_low_r(&signature) {
                        return Ok(Ok(Ok(signature)));
                    }
                    last = Some(signature);
                }
                tracing::warn!(
                    label,
                    tries = LOW_R_MAX_TRIES,
                    "no low-R signature from the token; using a valid 72-byte signature"
                );
                Ok(Ok(Ok(last.expect("at least one signature was made"))))
            })?;
            match ran {
                Ok(Ok(Ok(signature))) => return Ok(signature),
                Ok(Ok(Err(reason))) => {
                    return Err(Pkcs11Error::BadSignature {
                        token: self.token.name().to_owned(),
                        label: label.to_owned(),
                        reason,
                    })
                }
                Ok(Err(lookup)) => return Err(self.lookup_error(label, lookup)),
                Err(e) if error::classify(&e) == error::Fault::StaleHandle => {
                    // The token is there (run checked) but the object changed: look it up again.
                    self.forget(label);
                    continue;
                }
                Err(e) => return Err(self.refused(what, &e)),
            }
        }
        Err(self.refused(
            what,
            &CkError::Pkcs11(
                cryptoki::error::RvError::ObjectHandleInvalid,
                cryptoki::context::Function::Sign,
            ),
        ))
    }

    fn lookup_error(&self, label: &str, lookup: Lookup) -> Pkcs11Error {
        match lookup {
            Lookup::Refused(reason) => Pkcs11Error::BadObject {
                token: self.token.name().to_owned(),
                label: label.to_owned(),
                reason,
            },
            _ => {
                // A token whose storage vanished can answer an empty search: make sure it is still
                // there before calling the key missing.
                if let Err(e) = self.token.check_present() {
                    return e;
                }
                Pkcs11Error::KeyNotFound {
                    token: self.token.name().to_owned(),
                    label: label.to_owned(),
                }
            }
        }
    }

    /// Recoverable ECDSA (Ethereum): low S, verified, with the recovery id that recovers
    /// `expected`.
    pub fn sign_recoverable(
        &self,
        label: &str,
        expected: &PublicKey,
        digest: &Digest32,
    ) -> Result<RecoverableSignature, Pkcs11Error> {
        let signature = self.sign_ecdsa(label, expected, digest, false)?;
        sign::recoverable(&signature, digest, expected).map_err(|reason| {
            Pkcs11Error::BadSignature {
                token: self.token.name().to_owned(),
                label: label.to_owned(),
                reason,
            }
        })
    }

    /// The public key stored under `label` (the public key object), if any.
    pub fn public_key(&self, label: &str) -> Result<Option<PublicKey>, Pkcs11Error> {
        let what = format!("reading the public key '{label}'");
        match self
            .token
            .run(&what, |session, _| keys::read_public(session, label))?
        {
            Ok(None) => {
                self.token.check_present()?;
                Ok(None)
            }
            Ok(Some(Ok(key))) => Ok(Some(key)),
            Ok(Some(Err(reason))) => Err(Pkcs11Error::BadObject {
                token: self.token.name().to_owned(),
                label: label.to_owned(),
                reason,
            }),
            Err(e) => Err(self.refused(what, &e)),
        }
    }
}
