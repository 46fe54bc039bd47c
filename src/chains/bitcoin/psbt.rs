//! Parse a BIP174 PSBT from untrusted bytes and check it against one wallet: network, previous
//! outputs, which inputs are ours (re-derived, never trusted), sighash types, duplicate inputs.
//!
//! An input is ours when a key origin (`bip32_derivation`, or `tap_key_origins` for taproot) names
//! the wallet's master fingerprint at a path inside the wallet's account, and the script the wallet
//! derives at that path is the previous output's scriptPubKey. A key origin naming our fingerprint
//! and account whose script does not match is an error, never a silent "foreign". Inputs with no key
//! origin of ours are foreign: their value is counted as someone else's and they stay untouched.

use std::collections::HashMap;

use bitcoin::bip32::{ChildNumber, DerivationPath, KeySource};
use bitcoin::secp256k1::PublicKey;
use bitcoin::sighash::{EcdsaSighashType, TapSighashType};
use bitcoin::{NetworkKind, Psbt, ScriptBuf, TxOut};

use super::error::PsbtError;
use super::options::SignOptions;
use crate::backend::KeyRef;
use crate::keys::Purpose;
use crate::wallet::Wallet;

/// The largest payload accepted: a standard transaction is at most 400 000 weight units, and a
/// PSBT carrying full previous transactions stays well below this.
pub const MAX_PSBT_BYTES: usize = 4_000_000;

/// Script types this module signs (one per BIP44/49/84/86 purpose).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptKind {
    /// BIP44 P2PKH (legacy sighash).
    P2pkh,
    /// BIP49 P2SH-P2WPKH (BIP143 sighash).
    P2shP2wpkh,
    /// BIP84 P2WPKH (BIP143 sighash).
    P2wpkh,
    /// BIP86 P2TR key path (BIP341 sighash, BIP340 signature).
    P2tr,
}

impl ScriptKind {
    pub(crate) fn of(purpose: Purpose) -> Self {
        match purpose {
            Purpose::Bip44 => ScriptKind::P2pkh,
            Purpose::Bip49 => ScriptKind::P2shP2wpkh,
            Purpose::Bip84 => ScriptKind::P2wpkh,
            Purpose::Bip86 => ScriptKind::P2tr,
        }
    }
}

/// The sighash an owned input will be signed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sighash {
    /// ECDSA (legacy or BIP143).
    Ecdsa(EcdsaSighashType),
    /// Schnorr (BIP341).
    Taproot(TapSighashType),
}

/// One input this wallet signs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedInput {
    /// Index in the transaction.
    pub index: usize,
    /// Script type.
    pub kind: ScriptKind,
    /// The key to ask the backend for.
    pub key: KeyRef,
    /// Our public key at that path (re-derived from the account xpub).
    pub public_key: PublicKey,
    /// The sighash type to sign with.
    pub sighash: Sighash,
}

/// A PSBT that passed the structural checks, with its previous outputs and owned inputs.
#[derive(Clone, Debug)]
pub(crate) struct Checked {
    pub psbt: Psbt,
    /// The output each input spends, by input index.
    pub prevouts: Vec<TxOut>,
    /// `Some` for inputs of this wallet, by input index.
    pub owned: Vec<Option<OwnedInput>>,
}

/// Binary (`psbt\xff…`), base64 or hex text into a PSBT.
pub(crate) fn parse_payload(payload: &[u8]) -> Result<Psbt, PsbtError> {
    if payload.len() > MAX_PSBT_BYTES {
        return Err(PsbtError::TooLarge {
            size: payload.len(),
            max: MAX_PSBT_BYTES,
        });
    }
    const MAGIC: &[u8] = b"psbt\xff";
    if payload.starts_with(MAGIC) {
        return Psbt::deserialize(payload).map_err(|e| PsbtError::Encoding(e.to_string()));
    }
    let text = std::str::from_utf8(payload)
        .map_err(|_| PsbtError::Encoding("neither binary (psbt magic) nor text".into()))?
        .trim();
    // `get` rather than slicing: byte 10 of hostile text may fall inside a multi-byte character.
    let bytes = if text
        .get(..10)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("70736274ff"))
    {
        hex::decode(text).map_err(|e| PsbtError::Encoding(format!("bad hex: {e}")))?
    } else {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| PsbtError::Encoding(format!("bad base64: {e}")))?
    };
    if !bytes.starts_with(MAGIC) {
        return Err(PsbtError::Encoding("missing psbt magic bytes".into()));
    }
    Psbt::deserialize(&bytes).map_err(|e| PsbtError::Encoding(e.to_string()))
}

/// The wallet's rust-bitcoin network.
pub(crate) fn bitcoin_network(wallet: &Wallet) -> Result<bitcoin::Network, PsbtError> {
    wallet
        .network()
        .bitcoin()
        .ok_or_else(|| PsbtError::NotBitcoinWallet {
            wallet: wallet.name.clone(),
            network: wallet.network().name(),
        })
}

/// Structural checks and input ownership.
pub(crate) fn check(
    wallet: &Wallet,
    psbt: Psbt,
    options: &SignOptions,
) -> Result<Checked, PsbtError> {
    let network = bitcoin_network(wallet)?;
    let tx = &psbt.unsigned_tx;
    if tx.input.is_empty() {
        return Err(PsbtError::Empty("inputs"));
    }
    if tx.output.is_empty() {
        return Err(PsbtError::Empty("outputs"));
    }
    let mut seen = HashMap::new();
    for (i, input) in tx.input.iter().enumerate() {
        if let Some(first) = seen.insert(input.previous_output, i) {
            return Err(PsbtError::DuplicateInput {
                first,
                second: i,
                outpoint: input.previous_output.to_string(),
            });
        }
    }
    let kind = NetworkKind::from(network);
    for xpub in psbt.xpub.keys() {
        if xpub.network != kind {
            return Err(wrong_network(
                wallet,
                "global xpub".into(),
                kind_name(xpub.network),
            ));
        }
    }
    for (o, output) in psbt.outputs.iter().enumerate() {
        for (_, path) in our_origins(wallet, &output.bip32_derivation, &output.tap_key_origins) {
            check_coin_type(wallet, path, || format!("output {o}"))?;
        }
    }

    let mut prevouts = Vec::with_capacity(tx.input.len());
    let mut owned = Vec::with_capacity(tx.input.len());
    for (i, input) in psbt.inputs.iter().enumerate() {
        let outpoint = tx.input[i].previous_output;
        let full = match &input.non_witness_utxo {
            Some(prev) => {
                let txid = prev.compute_txid();
                if txid != outpoint.txid {
                    return Err(PsbtError::NonWitnessUtxoMismatch {
                        input: i,
                        expected: outpoint.txid.to_string(),
                        found: txid.to_string(),
                    });
                }
                let out =
                    prev.output
                        .get(outpoint.vout as usize)
                        .ok_or(PsbtError::VoutOutOfRange {
                            input: i,
                            vout: outpoint.vout,
                            outputs: prev.output.len(),
                        })?;
                Some(out.clone())
            }
            None => None,
        };
        let prevout = match (full, &input.witness_utxo) {
            (Some(full), Some(witness)) if &full != witness => {
                return Err(PsbtError::UtxoConflict {
                    input: i,
                    expected: describe(&full),
                    found: describe(witness),
                })
            }
            (Some(full), _) => full,
            (None, Some(witness)) => witness.clone(),
            (None, None) => {
                return Err(PsbtError::MissingUtxo {
                    input: i,
                    expected: "witness_utxo or non_witness_utxo",
                })
            }
        };
        let mine = ownership(wallet, i, input, &prevout, tx.output.len(), options)?;
        if let Some(mine) = &mine {
            if input.non_witness_utxo.is_none() {
                require_previous_transaction(i, mine.kind, options)?;
            }
        }
        prevouts.push(prevout);
        owned.push(mine);
    }
    if owned.iter().all(Option::is_none) {
        return Err(PsbtError::NothingToSign {
            wallet: wallet.name.clone(),
        });
    }
    Ok(Checked {
        psbt,
        prevouts,
        owned,
    })
}

/// An owned input without its full previous transaction: refused unless its signature commits to
/// the amount by itself (taproot), or the options allow `witness_utxo` alone for segwit v0.
///
/// Only the full transaction, hashed to the outpoint's txid, proves what an input is worth: a
/// legacy signature commits to no amount, a BIP143 (segwit v0) signature to its own input's
/// amount only, so a requester who understates a different input in each of two requests gets
/// two sets of signatures that combine into a transaction paying far more fee than either
/// request showed (CVE-2020-14199). BIP341 signatures commit to every spent output.
fn require_previous_transaction(
    input: usize,
    kind: ScriptKind,
    options: &SignOptions,
) -> Result<(), PsbtError> {
    match kind {
        ScriptKind::P2pkh => Err(PsbtError::MissingUtxo {
            input,
            expected: "non_witness_utxo",
        }),
        ScriptKind::P2wpkh | ScriptKind::P2shP2wpkh if !options.allow_witness_utxo_only => {
            Err(PsbtError::MissingPreviousTransaction {
                input,
                script: if kind == ScriptKind::P2wpkh {
                    "p2wpkh"
                } else {
                    "p2sh-p2wpkh"
                },
            })
        }
        ScriptKind::P2wpkh | ScriptKind::P2shP2wpkh | ScriptKind::P2tr => Ok(()),
    }
}

/// Key origins naming our master fingerprint: `(claimed key, path)`.
fn our_origins<'a>(
    wallet: &Wallet,
    bip32: &'a std::collections::BTreeMap<PublicKey, KeySource>,
    tap: &'a std::collections::BTreeMap<
        bitcoin::XOnlyPublicKey,
        (Vec<bitcoin::TapLeafHash>, KeySource),
    >,
) -> Vec<(Claim, &'a DerivationPath)> {
    let fingerprint = wallet.account.master_fingerprint;
    bip32
        .iter()
        .filter(|(_, (f, _))| *f == fingerprint)
        .map(|(k, (_, p))| (Claim::Full(*k), p))
        .chain(
            tap.iter()
                .filter(|(_, (_, (f, _)))| *f == fingerprint)
                .map(|(k, (_, (_, p)))| (Claim::XOnly(*k), p)),
        )
        .collect()
}

/// The key a key origin names.
#[derive(Clone, Copy)]
pub(crate) enum Claim {
    Full(PublicKey),
    XOnly(bitcoin::XOnlyPublicKey),
}

impl Claim {
    fn matches(&self, ours: &PublicKey) -> bool {
        match self {
            Claim::Full(k) => k == ours,
            Claim::XOnly(k) => *k == ours.x_only_public_key().0,
        }
    }

    fn to_hex(self) -> String {
        match self {
            Claim::Full(k) => k.to_string(),
            Claim::XOnly(k) => k.to_string(),
        }
    }
}

/// Our key and script at `path` if it lies in the wallet's account; `Ok(None)` otherwise.
pub(crate) fn derive_at(
    wallet: &Wallet,
    path: &DerivationPath,
) -> Result<Option<(KeyRef, PublicKey, ScriptBuf)>, PsbtError> {
    let Some((key, change, index)) = wallet.key_ref_for_path(path) else {
        return Ok(None);
    };
    let fail = |e: crate::keys::AccountKeyError| PsbtError::Derivation {
        wallet: wallet.name.clone(),
        path: path.to_string(),
        reason: e.to_string(),
    };
    let public_key = wallet.account.public_key(change, index).map_err(fail)?;
    let script = wallet
        .account
        .script_pubkey(change, index)
        .map_err(fail)?
        .ok_or_else(|| PsbtError::NotBitcoinWallet {
            wallet: wallet.name.clone(),
            network: wallet.network().name(),
        })?;
    Ok(Some((key, public_key, script)))
}

/// Whether input `i` is ours; errors for claims of our keys that do not hold.
fn ownership(
    wallet: &Wallet,
    i: usize,
    input: &bitcoin::psbt::Input,
    prevout: &TxOut,
    n_outputs: usize,
    options: &SignOptions,
) -> Result<Option<OwnedInput>, PsbtError> {
    let mut found = None;
    for (claim, path) in our_origins(wallet, &input.bip32_derivation, &input.tap_key_origins) {
        let Some((key, public_key, script)) = derive_at(wallet, path)? else {
            check_coin_type(wallet, path, || format!("input {i}"))?;
            continue;
        };
        let full_path = format!("m/{path}");
        if !claim.matches(&public_key) {
            return Err(PsbtError::ClaimedKeyMismatch {
                input: i,
                wallet: wallet.name.clone(),
                path: full_path,
                expected: public_key.to_string(),
                found: claim.to_hex(),
            });
        }
        if script != prevout.script_pubkey {
            return Err(PsbtError::ScriptMismatch {
                input: i,
                wallet: wallet.name.clone(),
                path: full_path,
                expected: script.to_hex_string(),
                found: prevout.script_pubkey.to_hex_string(),
            });
        }
        found = Some((key, public_key));
    }
    let Some((key, public_key)) = found else {
        return Ok(None);
    };
    let kind = ScriptKind::of(wallet.account.path.purpose);
    if kind == ScriptKind::P2shP2wpkh {
        let expected =
            ScriptBuf::new_p2wpkh(&bitcoin::CompressedPublicKey(public_key).wpubkey_hash());
        if let Some(redeem) = &input.redeem_script {
            if *redeem != expected {
                return Err(PsbtError::RedeemScriptMismatch {
                    input: i,
                    expected: expected.to_hex_string(),
                    found: redeem.to_hex_string(),
                });
            }
        }
    }
    if kind == ScriptKind::P2tr && input.tap_merkle_root.is_some() {
        return Err(PsbtError::TaprootTree {
            input: i,
            wallet: wallet.name.clone(),
        });
    }
    let sighash = sighash_for(i, kind, input.sighash_type, n_outputs, options)?;
    Ok(Some(OwnedInput {
        index: i,
        kind,
        key,
        public_key,
        sighash,
    }))
}

/// The sighash type an owned input asks for, if the options allow it.
fn sighash_for(
    i: usize,
    kind: ScriptKind,
    asked: Option<bitcoin::psbt::PsbtSighashType>,
    n_outputs: usize,
    options: &SignOptions,
) -> Result<Sighash, PsbtError> {
    let sighash = if kind == ScriptKind::P2tr {
        let ty = match asked {
            None => TapSighashType::Default,
            Some(t) => t.taproot_hash_ty().map_err(|_| PsbtError::InvalidSighash {
                input: i,
                scheme: "taproot",
                found: t.to_u32(),
            })?,
        };
        if !matches!(ty, TapSighashType::Default | TapSighashType::All)
            && !options.allow_all_sighashes
        {
            return Err(PsbtError::SighashNotAllowed {
                input: i,
                expected: "SIGHASH_DEFAULT or SIGHASH_ALL",
                found: ty.to_string(),
            });
        }
        Sighash::Taproot(ty)
    } else {
        let ty = match asked {
            None => EcdsaSighashType::All,
            Some(t) => t.ecdsa_hash_ty().map_err(|_| PsbtError::InvalidSighash {
                input: i,
                scheme: "ecdsa",
                found: t.to_u32(),
            })?,
        };
        if ty != EcdsaSighashType::All && !options.allow_all_sighashes {
            return Err(PsbtError::SighashNotAllowed {
                input: i,
                expected: "SIGHASH_ALL",
                found: ty.to_string(),
            });
        }
        Sighash::Ecdsa(ty)
    };
    let single = matches!(
        sighash,
        Sighash::Ecdsa(EcdsaSighashType::Single | EcdsaSighashType::SinglePlusAnyoneCanPay)
            | Sighash::Taproot(TapSighashType::Single | TapSighashType::SinglePlusAnyoneCanPay)
    );
    if single && i >= n_outputs {
        return Err(PsbtError::SighashSingleWithoutOutput { input: i });
    }
    Ok(sighash)
}

/// A path with our fingerprint outside our account: refuse it if its coin type says the other
/// kind of network (SLIP-44: 0 mainnet, 1 test networks) for a Bitcoin purpose.
fn check_coin_type(
    wallet: &Wallet,
    path: &DerivationPath,
    location: impl Fn() -> String,
) -> Result<(), PsbtError> {
    let c: &[ChildNumber] = path.as_ref();
    let (
        Some(ChildNumber::Hardened { index: purpose }),
        Some(ChildNumber::Hardened { index: coin }),
    ) = (c.first(), c.get(1))
    else {
        return Ok(());
    };
    let ours = wallet.account.path.coin_type;
    if matches!(purpose, 44 | 49 | 84 | 86) && matches!(coin, 0 | 1) && *coin != ours {
        let found = if *coin == 0 {
            "mainnet (coin type 0)"
        } else {
            "a test network (coin type 1)"
        };
        return Err(wrong_network(wallet, location(), found.into()));
    }
    Ok(())
}

fn wrong_network(wallet: &Wallet, location: String, found: String) -> PsbtError {
    PsbtError::WrongNetwork {
        location,
        wallet: wallet.name.clone(),
        expected: wallet.network().name(),
        found,
    }
}

fn kind_name(kind: NetworkKind) -> String {
    match kind {
        NetworkKind::Main => "mainnet (xpub)".into(),
        NetworkKind::Test => "a test network (tpub)".into(),
    }
}

fn describe(out: &TxOut) -> String {
    format!(
        "{} sat to {}",
        out.value.to_sat(),
        out.script_pubkey.to_hex_string()
    )
}
