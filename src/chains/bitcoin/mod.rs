//! Bitcoin (mainnet, testnet, signet, regtest): PSBT in, intent out, signatures through the key
//! backend, finalised transaction (or the updated PSBT) back.
//!
//! Standards implemented, on rust-bitcoin 0.32's PSBT types:
//! - BIP174 (PSBT v0): parsed from binary, base64 or hex ([`psbt`]); the signer and finaliser roles
//!   for this wallet's inputs ([`sign`], [`finalize`]).
//! - BIP143 (segwit v0 sighash) for P2WPKH (BIP84) and P2SH-P2WPKH (BIP49); legacy sighash for
//!   P2PKH (BIP44).
//! - BIP341 (taproot sighash, all spent outputs committed) and BIP340 (Schnorr) with the BIP86
//!   key-path-only tweak for P2TR.
//!
//! The flow, as the signing pipeline drives it: [`decode`] parses and checks the PSBT against one
//! wallet and explains it as an [`Intent`] (what the policy engine and approvers see); after
//! policy, [`sign`] asks the key backend for the signatures of the inputs this wallet owns (the
//! backend gets a key reference and a digest, never the PSBT), finalises what it can, and returns
//! the raw transaction when every input is final or the PSBT (base64) for the other signers.
//!
//! Decisions worth knowing:
//! - Ownership and change are re-derived from the wallet's account xpub, never trusted from the
//!   PSBT (see [`psbt`] and [`intent`]).
//! - Every input must show its value (`witness_utxo`, or `non_witness_utxo` whose txid matches);
//!   P2PKH and segwit v0 inputs we sign need `non_witness_utxo`, the full previous transaction
//!   (legacy signatures commit to no amount, BIP143 ones to their own input's only:
//!   CVE-2020-14199); P2TR inputs need only `witness_utxo` (BIP341 commits to every amount).
//! - The network is checked where a PSBT shows it: global xpubs (xpub vs tpub) and key origins with
//!   our fingerprint (SLIP-44 coin type 0 vs 1). Testnet, signet and regtest share coin type and
//!   tpub, so they cannot be told apart from a PSBT.
//! - Safety caps and weakenings live in [`SignOptions`].

pub mod error;
mod finalize;
pub mod intent;
pub mod options;
pub mod psbt;
mod sign;
pub mod weight;

pub use error::{PsbtError, SignError};
pub use options::SignOptions;
pub use psbt::{OwnedInput, ScriptKind, Sighash};

use crate::backend::KeyBackend;
use crate::intent::Intent;
use crate::wallet::Wallet;

/// A PSBT checked against one wallet, with the intent it carries.
#[derive(Clone, Debug)]
pub struct DecodedPsbt {
    wallet: String,
    account: crate::keys::AccountKey,
    checked: psbt::Checked,
    intent: Intent,
}

impl DecodedPsbt {
    /// What the PSBT really does.
    pub fn intent(&self) -> &Intent {
        &self.intent
    }

    /// The parsed PSBT (read only).
    pub fn psbt(&self) -> &bitcoin::Psbt {
        &self.checked.psbt
    }

    /// The inputs this wallet will sign.
    pub fn owned_inputs(&self) -> impl Iterator<Item = &OwnedInput> {
        self.checked.owned.iter().flatten()
    }
}

/// The result of signing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BitcoinSigned {
    /// Every input is final: the network transaction.
    Final {
        /// The transaction, hex.
        raw_tx_hex: String,
        /// Its txid.
        txid: String,
        /// Its wtxid.
        wtxid: String,
    },
    /// Some input still needs another signer: the updated PSBT.
    Partial {
        /// BIP174 base64.
        psbt_base64: String,
    },
}

/// Parses `payload` (binary, base64 or hex PSBT) sent for `wallet`, checks it and explains it.
pub fn decode(
    wallet: &Wallet,
    payload: &[u8],
    options: &SignOptions,
) -> Result<DecodedPsbt, PsbtError> {
    psbt::bitcoin_network(wallet)?;
    let parsed = psbt::parse_payload(payload)?;
    let checked = psbt::check(wallet, parsed, options)?;
    let intent = intent::build(wallet, &checked, options)?;
    Ok(DecodedPsbt {
        wallet: wallet.name.clone(),
        account: wallet.account.clone(),
        checked,
        intent,
    })
}

/// Signs the inputs `wallet` owns through `backend`, finalises them, and returns the transaction
/// if every input is final, else the updated PSBT.
pub fn sign(
    decoded: DecodedPsbt,
    wallet: &Wallet,
    backend: &dyn KeyBackend,
) -> Result<BitcoinSigned, SignError> {
    if decoded.wallet != wallet.name || decoded.account != wallet.account {
        return Err(SignError::WalletMismatch {
            expected: decoded.wallet,
            found: wallet.name.clone(),
        });
    }
    let mut checked = decoded.checked;
    sign::sign_owned(&mut checked, backend)?;
    Ok(finalize::finalize(checked))
}
