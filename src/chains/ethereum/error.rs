//! Why an Ethereum payload was refused or could not be signed.

use crate::backend::BackendError;

/// Why an Ethereum payload was refused, or could not be signed. Messages are lower-case, name the
/// field, and say what was expected and what came; they never carry key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EthError {
    /// The wallet is not an Ethereum/EVM wallet.
    #[error("wallet '{wallet}' is a {chain} wallet, not an ethereum one")]
    NotEthereumWallet {
        /// Wallet name.
        wallet: String,
        /// Its chain.
        chain: &'static str,
    },
    /// The account index is not a normal (non-hardened) BIP32 index, or derivation failed.
    #[error("no address at account index {index}: {reason}")]
    Index {
        /// The index asked for.
        index: u32,
        /// Why.
        reason: String,
    },
    /// The payload is empty.
    #[error("empty {0} payload")]
    Empty(&'static str),
    /// The payload is not well-formed JSON (or not a JSON object).
    #[error("invalid json: {0}")]
    Json(String),
    /// A field this format does not define.
    #[error("unknown field '{field}' in {context}")]
    UnknownField {
        /// The field name as given.
        field: String,
        /// Where (`transaction`, `access list entry`, `typed data`, `domain`, …).
        context: &'static str,
    },
    /// A required field is absent.
    #[error("missing field '{field}': {why}")]
    MissingField {
        /// The field name.
        field: &'static str,
        /// Why it is required.
        why: &'static str,
    },
    /// A field has the wrong form.
    #[error("invalid field '{field}': expected {expected}, found {found}")]
    InvalidField {
        /// The field name.
        field: String,
        /// What was expected.
        expected: &'static str,
        /// What came (truncated).
        found: String,
    },
    /// Two fields that must not appear together (gasPrice with EIP-1559 fees; data and input
    /// with different values).
    #[error("conflicting fields '{0}' and '{1}'")]
    ConflictingFields(&'static str, &'static str),
    /// A field that the transaction type does not have.
    #[error("field '{field}' is not allowed in a type {tx_type} transaction")]
    FieldNotInType {
        /// The field.
        field: &'static str,
        /// The EIP-2718 type.
        tx_type: u8,
    },
    /// A transaction type Custos does not sign (blob and set-code transactions, unknown types).
    #[error("unsupported transaction type {0:#x}: expected 0x0 (legacy), 0x1 (eip-2930) or 0x2 (eip-1559)")]
    UnsupportedType(u64),
    /// The chain id in the payload is not the wallet's.
    #[error(
        "chain id mismatch: the wallet is on chain {expected}, the payload is for chain {found}"
    )]
    ChainIdMismatch {
        /// The wallet's chain id.
        expected: u64,
        /// The payload's.
        found: String,
    },
    /// A legacy transaction without EIP-155 replay protection.
    #[error(
        "legacy transaction without a chain id (pre-eip-155): it could be replayed on every chain"
    )]
    MissingChainId,
    /// The max priority fee is above the max fee (EIP-1559 forbids it).
    #[error("maxPriorityFeePerGas {priority} is above maxFeePerGas {max}")]
    PriorityFeeAboveMax {
        /// maxPriorityFeePerGas.
        priority: u128,
        /// maxFeePerGas.
        max: u128,
    },
    /// The `from` field (or a permit owner) is not the wallet's address at the index asked for.
    #[error("{field} {found} is not this wallet's address {expected} (index {index})")]
    WrongSender {
        /// `from`, `owner` or `holder`.
        field: &'static str,
        /// Our address (EIP-55).
        expected: String,
        /// What the payload says.
        found: String,
        /// The account index.
        index: u32,
    },
    /// The RLP bytes do not decode as an unsigned transaction.
    #[error("invalid rlp transaction: {0}")]
    Rlp(String),
    /// Bytes after the end of the transaction.
    #[error("{0} unexpected bytes after the transaction")]
    TrailingBytes(usize),
    /// The RLP transaction already carries a signature.
    #[error("the transaction is already signed: expected an unsigned transaction")]
    AlreadySigned,
    /// EIP-712 typed data that does not hash (undefined types, values not matching their type).
    #[error("invalid typed data: {0}")]
    TypedData(String),
    /// Typed data that looks like a permit but is not one Custos can decode exactly. Refused
    /// rather than signed as an opaque message: a permit is an approval.
    #[error("unrecognised permit: {0}")]
    UnrecognisedPermit(String),
    /// The decoded request was made for another wallet.
    #[error("decoded for wallet '{decoded}', asked to sign with wallet '{wallet}'")]
    WalletMismatch {
        /// Wallet of the decoded request.
        decoded: String,
        /// Wallet given to sign.
        wallet: String,
    },
    /// The key backend does not hold this wallet's seed.
    #[error("the key backend does not hold the key of wallet '{0}'")]
    KeyNotFound(String),
    /// The key backend failed.
    #[error("key backend: {0}")]
    Backend(#[from] BackendError),
    /// The backend returned a signature that does not recover to our address, is high-S or has
    /// an impossible recovery id: never released.
    #[error("the key backend returned an unusable signature: {0}")]
    BadSignature(String),
}

/// Shortens untrusted text for an error message (at most 80 characters, control characters
/// escaped).
pub(crate) fn excerpt(text: &str) -> String {
    let mut out: String = text.chars().take(80).flat_map(char::escape_debug).collect();
    if text.chars().count() > 80 {
        out.push('…');
    }
    out
}
