//! Made-up payloads and throwaway directories for `custos demo` and `custos bench signer`.
//!
//! The payloads spend coins that never existed: a Bitcoin P2WPKH PSBT written as an independent
//! wallet writes it (BIP174: `witness_utxo`, `non_witness_utxo` and key origins; the change output
//! carries its key origin so the signer can verify it is ours), and an Ethereum EIP-1559 transfer
//! in the JSON form `custos sign --eth-tx` takes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::psbt::{Input, Output, Psbt};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};

use super::CliError;
use crate::wallet::Wallet;

/// A directory under the system's temporary directory, removed on drop unless kept.
pub struct ScratchDir {
    /// Where it is.
    pub path: PathBuf,
    /// Whether to keep it on drop.
    pub keep: bool,
}

impl ScratchDir {
    /// A new empty directory `<tmp>/<prefix>-<pid>-<random>`, removed on drop.
    pub fn new(prefix: &str) -> Result<ScratchDir, CliError> {
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&path)
            .map_err(|e| CliError::operational(format!("cannot create {}: {e}", path.display())))?;
        Ok(ScratchDir { path, keep: false })
    }

    /// `self.path.join(name)`.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A P2WPKH script for a 20-byte hash no one has a key for (someone else's address).
pub fn external_script(tag: u8) -> ScriptBuf {
    ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([tag; 20]))
}

/// A PSBT spending a made-up coin of `funding_sat` at `wallet` 0/0 (made unique by `salt`):
/// `pay_sat` to `payee`, `fee_sat` fee, the rest back to `wallet` 1/0 with its key origin.
pub fn p2wpkh_psbt(
    wallet: &Wallet,
    salt: u64,
    funding_sat: u64,
    payee: &ScriptBuf,
    pay_sat: u64,
    fee_sat: u64,
) -> Result<Psbt, CliError> {
    fn op(e: impl std::fmt::Display) -> CliError {
        CliError::operational(e)
    }
    let ours = |change: bool| {
        wallet
            .account
            .script_pubkey(change, 0)
            .map_err(op)?
            .ok_or_else(|| op("not a bitcoin wallet"))
    };
    let funding = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(
                Txid::from_raw_hash(bitcoin::hashes::sha256d::Hash::hash(
                    format!("custos: a coin that never existed #{salt}").as_bytes(),
                )),
                0,
            ),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(funding_sat),
            script_pubkey: ours(false)?,
        }],
    };
    let change_sat = funding_sat
        .checked_sub(pay_sat + fee_sat)
        .ok_or_else(|| op("the payment and fee exceed the coin"))?;
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(funding.compute_txid(), 0),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![
            TxOut {
                value: Amount::from_sat(pay_sat),
                script_pubkey: payee.clone(),
            },
            TxOut {
                value: Amount::from_sat(change_sat),
                script_pubkey: ours(true)?,
            },
        ],
    };
    let origin = |change| {
        (
            wallet.account.master_fingerprint,
            wallet.account.child_path(change, 0),
        )
    };
    let input_key = wallet.account.public_key(false, 0).map_err(op)?;
    let change_key = wallet.account.public_key(true, 0).map_err(op)?;
    let mut psbt = Psbt::from_unsigned_tx(tx).map_err(op)?;
    psbt.inputs[0] = Input {
        witness_utxo: Some(funding.output[0].clone()),
        non_witness_utxo: Some(funding),
        bip32_derivation: BTreeMap::from([(input_key, origin(false))]),
        ..Input::default()
    };
    psbt.outputs[1] = Output {
        bip32_derivation: BTreeMap::from([(change_key, origin(true))]),
        ..Output::default()
    };
    Ok(psbt)
}

/// An unsigned EIP-1559 transfer of `wei` to `to`, as JSON (21000 gas, 2 gwei max fee).
pub fn eth_transfer(chain_id: u64, nonce: u64, to: &str, wei: u128) -> Vec<u8> {
    let tx = serde_json::json!({
        "type": "0x2",
        "chainId": format!("{chain_id:#x}"),
        "nonce": format!("{nonce:#x}"),
        "gas": "0x5208",
        "maxFeePerGas": "0x77359400",
        "maxPriorityFeePerGas": "0x3b9aca00",
        "to": to,
        "value": format!("{wei:#x}"),
        "data": "0x",
    });
    serde_json::to_vec_pretty(&tx).expect("a JSON value serialises")
}
