//! Why a PSBT was refused ([`PsbtError`], at decode) or could not be signed ([`SignError`]).
//!
//! Messages are lower-case, name the input or output index, and say what was expected and what
//! came. They carry scripts and txids (public data), never key material.

use crate::backend::BackendError;

/// Why a PSBT was refused when decoding it for a wallet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PsbtError {
    /// The payload is larger than any PSBT Custos accepts.
    #[error("psbt is {size} bytes, more than the {max} accepted")]
    TooLarge {
        /// Size given.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not a BIP174 PSBT in binary, base64 or hex form.
    #[error("not a valid psbt (binary, base64 or hex): {0}")]
    Encoding(String),
    /// The wallet is not a Bitcoin wallet.
    #[error("wallet {wallet} is on {network}, not a bitcoin network")]
    NotBitcoinWallet {
        /// Wallet name.
        wallet: String,
        /// Its network.
        network: String,
    },
    /// Something in the PSBT belongs to another network than the wallet's.
    #[error("{location} is for {found}, but wallet {wallet} is on {expected}")]
    WrongNetwork {
        /// `input 2`, `output 0`, `global xpub`.
        location: String,
        /// Wallet name.
        wallet: String,
        /// The wallet's network.
        expected: String,
        /// What the PSBT shows.
        found: String,
    },
    /// The unsigned transaction has no inputs or no outputs.
    #[error("the transaction has no {0}")]
    Empty(&'static str),
    /// Two inputs spend the same previous output.
    #[error("input {second} spends {outpoint}, which input {first} already spends")]
    DuplicateInput {
        /// First input spending it.
        first: usize,
        /// The duplicate.
        second: usize,
        /// The outpoint.
        outpoint: String,
    },
    /// An input lacks the previous-output data needed to know its value.
    #[error("input {input} has no {expected}: its value cannot be known")]
    MissingUtxo {
        /// Input index.
        input: usize,
        /// What was needed (`witness_utxo or non_witness_utxo`, `non_witness_utxo`).
        expected: &'static str,
    },
    /// A segwit v0 input of ours carries only `witness_utxo` (see
    /// [`super::SignOptions::allow_witness_utxo_only`]).
    #[error("input {input} ({script}, ours) has no non_witness_utxo: the full previous transaction is required to prove its amount, since a segwit v0 signature commits to no other input's amount (CVE-2020-14199; option bitcoin.allow_witness_utxo_only)")]
    MissingPreviousTransaction {
        /// Input index.
        input: usize,
        /// `p2wpkh` or `p2sh-p2wpkh`.
        script: &'static str,
    },
    /// The `non_witness_utxo` is not the transaction the input spends.
    #[error("input {input} spends an output of {expected}, but its non_witness_utxo is {found}")]
    NonWitnessUtxoMismatch {
        /// Input index.
        input: usize,
        /// The txid of the outpoint.
        expected: String,
        /// The txid of the transaction given.
        found: String,
    },
    /// The outpoint's index is past the previous transaction's outputs.
    #[error(
        "input {input} spends output {vout}, but its previous transaction has {outputs} outputs"
    )]
    VoutOutOfRange {
        /// Input index.
        input: usize,
        /// Output index spent.
        vout: u32,
        /// Outputs of the previous transaction.
        outputs: usize,
    },
    /// `witness_utxo` and `non_witness_utxo` disagree.
    #[error("input {input}: witness_utxo ({found}) differs from the output in non_witness_utxo ({expected})")]
    UtxoConflict {
        /// Input index.
        input: usize,
        /// From the full previous transaction: `value sat to script`.
        expected: String,
        /// From witness_utxo.
        found: String,
    },
    /// An input claims our key at a path, but the previous output is not what that key signs.
    #[error("input {input} claims key {path} of wallet {wallet}, whose script is {expected}, but it spends {found}")]
    ScriptMismatch {
        /// Input index.
        input: usize,
        /// Wallet name.
        wallet: String,
        /// Full path claimed.
        path: String,
        /// Our script at that path (hex).
        expected: String,
        /// The previous output's scriptPubKey (hex).
        found: String,
    },
    /// A key origin names our path but a different public key.
    #[error("input {input}: key origin {path} names public key {found}, but wallet {wallet} has {expected} there")]
    ClaimedKeyMismatch {
        /// Input index.
        input: usize,
        /// Wallet name.
        wallet: String,
        /// Full path claimed.
        path: String,
        /// Our key at the path (hex).
        expected: String,
        /// The key in the PSBT (hex).
        found: String,
    },
    /// The P2SH-P2WPKH redeem script is not the one of our key.
    #[error("input {input}: redeem script is {found}, expected {expected}")]
    RedeemScriptMismatch {
        /// Input index.
        input: usize,
        /// Our P2WPKH program (hex).
        expected: String,
        /// The PSBT's redeem script (hex).
        found: String,
    },
    /// A taproot input of ours carries a script tree (BIP86 wallets have none).
    #[error("input {input}: taproot merkle root given, but wallet {wallet} signs key-path-only (bip86) outputs")]
    TaprootTree {
        /// Input index.
        input: usize,
        /// Wallet name.
        wallet: String,
    },
    /// A sighash type the options do not allow.
    #[error("input {input} asks for sighash {found}, but only {expected} is allowed")]
    SighashNotAllowed {
        /// Input index.
        input: usize,
        /// Allowed types.
        expected: &'static str,
        /// The type asked for.
        found: String,
    },
    /// Not a valid sighash type for the input's signature scheme.
    #[error("input {input} asks for sighash type {found:#x}, which is not valid for {scheme}")]
    InvalidSighash {
        /// Input index.
        input: usize,
        /// `ecdsa` or `taproot`.
        scheme: &'static str,
        /// The value in the PSBT.
        found: u32,
    },
    /// SIGHASH_SINGLE on an input with no output at the same index.
    #[error("input {input} asks for sighash single, but there is no output {input}")]
    SighashSingleWithoutOutput {
        /// Input index.
        input: usize,
    },
    /// An output below the dust threshold.
    #[error(
        "output {output} pays {value} sat, below the dust threshold of {min} sat for its script"
    )]
    Dust {
        /// Output index.
        output: usize,
        /// Its value.
        value: u64,
        /// The threshold.
        min: u64,
    },
    /// An OP_RETURN output with value (the value would be burnt).
    #[error("output {output} is an op_return carrying {value} sat, which would be burnt")]
    BurntValue {
        /// Output index.
        output: usize,
        /// Its value.
        value: u64,
    },
    /// An output whose script has no address form and is not OP_RETURN.
    #[error("output {output} has a non-standard script {script}: no address, cannot say who receives it")]
    UnknownOutputScript {
        /// Output index.
        output: usize,
        /// The script (hex).
        script: String,
    },
    /// A value above 21 million BTC, or sums that overflow.
    #[error("{location} value {value} sat is above the 21 million btc supply")]
    ValueOutOfRange {
        /// `input 1`, `output 0`, `inputs total`.
        location: String,
        /// The value.
        value: u64,
    },
    /// The outputs spend more than the inputs hold.
    #[error("outputs total {outputs} sat, more than the inputs' {inputs} sat")]
    OutputsExceedInputs {
        /// Sum of input values.
        inputs: u64,
        /// Sum of output values.
        outputs: u64,
    },
    /// Fee above `max_fee_sat`.
    #[error("fee of {fee} sat is above the maximum of {max} sat (option max_fee_sat)")]
    AbsurdFee {
        /// The fee.
        fee: u64,
        /// The cap.
        max: u64,
    },
    /// Fee rate above `max_fee_rate_sat_per_vb`.
    #[error("fee rate of {rate_sat_per_kvb} sat/kvB is above the maximum of {max_sat_per_vb} sat/vB (option max_fee_rate_sat_per_vb)")]
    AbsurdFeeRate {
        /// The rate, sat per 1000 vB.
        rate_sat_per_kvb: u64,
        /// The cap, sat/vB.
        max_sat_per_vb: u64,
    },
    /// No input belongs to the wallet.
    #[error("nothing to sign for wallet {wallet}: no input carries a key origin of this wallet")]
    NothingToSign {
        /// Wallet name.
        wallet: String,
    },
    /// A BIP32 derivation inside the account failed.
    #[error("deriving {path} of wallet {wallet} failed: {reason}")]
    Derivation {
        /// Wallet name.
        wallet: String,
        /// Path.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Why signing a decoded PSBT failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The PSBT was decoded for another wallet.
    #[error("psbt was decoded for wallet {expected}, not {found}")]
    WalletMismatch {
        /// The wallet it was decoded for.
        expected: String,
        /// The wallet given to sign.
        found: String,
    },
    /// The key backend failed.
    #[error("key backend failed for input {input}: {source}")]
    Backend {
        /// Input index.
        input: usize,
        /// The backend's error.
        #[source]
        source: BackendError,
    },
    /// The sighash could not be computed.
    #[error("sighash of input {input} could not be computed: {reason}")]
    Sighash {
        /// Input index.
        input: usize,
        /// Why.
        reason: String,
    },
    /// The backend returned a signature that does not verify against our key.
    #[error(
        "key backend returned a signature for input {input} that does not verify against {key}"
    )]
    BadSignature {
        /// Input index.
        input: usize,
        /// The public key expected to verify it (hex).
        key: String,
    },
}
