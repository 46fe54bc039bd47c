//! What can go wrong between Custos and a PKCS#11 token, sorted by what the caller should do.
//!
//! Three kinds matter to callers ([`Pkcs11Error::is_unavailable`]):
//!
//! - **the token is unavailable** — not present, removed, failing, locked, its PIN refused, every
//!   session busy: nothing was signed, the request may be retried later, and the signing API
//!   answers `UNAVAILABLE` naming the token;
//! - **the token refused one operation** (a key not found, a template it does not accept, a
//!   signature that does not verify against the wallet's key): a precise error for that request;
//! - **the module cannot do what Custos needs** (no secp256k1, no `CKM_ECDSA`): a configuration
//!   error naming the module, reported at start and by `custos hsm status`.
//!
//! Messages name the module or token and the PKCS#11 return value (`CKR_DEVICE_REMOVED`), never a
//! PIN or key material: nothing secret is ever passed to a constructor here.

use std::path::PathBuf;

use cryptoki::error::{Error as CkError, RvError};

/// Why a PKCS#11 operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Pkcs11Error {
    /// The module (shared library) could not be loaded.
    #[error("cannot load the pkcs#11 module {}: {reason}", module.display())]
    Load {
        /// The module path.
        module: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// The module lacks a mechanism or curve Custos needs.
    #[error("the pkcs#11 module {} does not support {what}: {reason}", module.display())]
    Unsupported {
        /// The module path.
        module: PathBuf,
        /// What is missing (`secp256k1 keys (OID 1.3.132.0.10)`, `CKM_ECDSA`).
        what: String,
        /// What the module answered.
        reason: String,
    },
    /// The token cannot be used now (absent, removed, failing, every session busy). Nothing was
    /// done; retrying after the token is back works.
    #[error("{token} is unavailable: {reason}")]
    Unavailable {
        /// The token (`token 'custos'`, `slot 3`).
        token: String,
        /// What happened (with the PKCS#11 return value when there is one).
        reason: String,
    },
    /// The token refused the user PIN, or the PIN is locked. Custos never retries a refused PIN
    /// (a real HSM locks after a few failures): fix the PIN source and restart.
    #[error("{token} refused the user pin ({rv}); not retrying, so as not to lock the token: check the pin file or variable and restart")]
    PinRefused {
        /// The token.
        token: String,
        /// `CKR_PIN_INCORRECT`, `CKR_PIN_LOCKED`, ...
        rv: String,
    },
    /// No key object under this label.
    #[error("{token} holds no private key labelled '{label}' (import or generate it: custos hsm import|keygen)")]
    KeyNotFound {
        /// The token.
        token: String,
        /// The label searched for.
        label: String,
    },
    /// A key object exists but is not the key the wallet expects (another store's key under the
    /// same label, or a tampered token).
    #[error("{token}: the key labelled '{label}' is {found}, but the wallet expects {expected}")]
    KeyMismatch {
        /// The token.
        token: String,
        /// The label.
        label: String,
        /// The wallet's public key (hex).
        expected: String,
        /// What the token holds (hex, or a description).
        found: String,
    },
    /// An object exists but its attributes are not what Custos requires (not secp256k1, not
    /// sensitive, extractable, ...).
    #[error("{token}: the object labelled '{label}' is refused: {reason}")]
    BadObject {
        /// The token.
        token: String,
        /// The label.
        label: String,
        /// What is wrong.
        reason: String,
    },
    /// The token returned a signature that is malformed or does not verify against the wallet's
    /// public key. It is never released.
    #[error("{token}: the signature from key '{label}' is refused: {reason}")]
    BadSignature {
        /// The token.
        token: String,
        /// The key label.
        label: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The token refused an operation for a reason other than its availability.
    #[error("{token}: {operation} failed: {rv}")]
    Refused {
        /// The token.
        token: String,
        /// What was attempted (`creating the key object custos/eth/0/3`).
        operation: String,
        /// The PKCS#11 return value, or the binding's message.
        rv: String,
    },
    /// The request itself is not something the backend does (a taproot key, a bad range).
    #[error("{0}")]
    Invalid(String),
}

impl Pkcs11Error {
    /// Whether the error means "the token cannot be used now" (the signing API's UNAVAILABLE).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Pkcs11Error::Unavailable { .. } | Pkcs11Error::PinRefused { .. }
        )
    }
}

/// How a PKCS#11 return value is to be treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The token, its connection or the session is gone or failing: reconnect before the next use.
    Token,
    /// An object handle is no longer valid: look the object up again (and check the token).
    StaleHandle,
    /// The user PIN was refused or is locked: never retry it.
    Pin,
    /// The operation was refused; the token itself is fine.
    Operation,
}

/// Classifies a binding error.
pub(crate) fn classify(error: &CkError) -> Fault {
    let CkError::Pkcs11(rv, _) = error else {
        // Library loading, null function pointers, conversions: the module is not usable.
        return match error {
            CkError::LibraryLoading(_) | CkError::NullFunctionPointer => Fault::Token,
            _ => Fault::Operation,
        };
    };
    match rv {
        RvError::DeviceError
        | RvError::DeviceMemory
        | RvError::DeviceRemoved
        | RvError::TokenNotPresent
        | RvError::TokenNotRecognized
        | RvError::SessionClosed
        | RvError::SessionHandleInvalid
        | RvError::SessionCount
        | RvError::CryptokiNotInitialized
        | RvError::GeneralError
        | RvError::FunctionFailed
        | RvError::HostMemory
        | RvError::SlotIdInvalid
        | RvError::UserNotLoggedIn
        | RvError::FunctionCanceled
        | RvError::FipsSelfTestFailed => Fault::Token,
        RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid => Fault::StaleHandle,
        RvError::PinIncorrect
        | RvError::PinInvalid
        | RvError::PinLenRange
        | RvError::PinExpired
        | RvError::PinLocked
        | RvError::UserPinNotInitialized => Fault::Pin,
        _ => Fault::Operation,
    }
}

/// A return value as operators read it in vendor manuals: `CKR_DEVICE_REMOVED`. Other binding
/// errors keep their own (short) message.
pub(crate) fn rv_name(error: &CkError) -> String {
    match error {
        CkError::Pkcs11(rv, function) => {
            format!("{} ({function:?})", ckr_name(rv))
        }
        CkError::LibraryLoading(e) => format!("library loading failed: {e}"),
        other => other.to_string(),
    }
}

/// `RvError::DeviceRemoved` → `CKR_DEVICE_REMOVED`.
pub(crate) fn ckr_name(rv: &RvError) -> String {
    let debug = format!("{rv:?}");
    let camel = debug.split('(').next().unwrap_or(&debug);
    let mut out = String::from("CKR");
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    #[test]
    fn return_values_read_like_the_spec() {
        assert_eq!(ckr_name(&RvError::DeviceRemoved), "CKR_DEVICE_REMOVED");
        assert_eq!(ckr_name(&RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        let e = CkError::Pkcs11(RvError::TokenNotPresent, Function::Sign);
        assert_eq!(rv_name(&e), "CKR_TOKEN_NOT_PRESENT (Sign)");
    }

    #[test]
    fn faults_are_sorted() {
        let f = |rv| classify(&CkError::Pkcs11(rv, Function::Sign));
        assert_eq!(f(RvError::DeviceRemoved), Fault::Token);
        assert_eq!(f(RvError::GeneralError), Fault::Token);
        assert_eq!(f(RvError::ObjectHandleInvalid), Fault::StaleHandle);
        assert_eq!(f(RvError::PinLocked), Fault::Pin);
        assert_eq!(f(RvError::TemplateIncomplete), Fault::Operation);
        assert!(Pkcs11Error::PinRefused {
            token: "token 'x'".into(),
            rv: "CKR_PIN_INCORRECT".into()
        }
        .is_unavailable());
        assert!(!Pkcs11Error::KeyNotFound {
            token: "token 'x'".into(),
            label: "l".into()
        }
        .is_unavailable());
    }
}
