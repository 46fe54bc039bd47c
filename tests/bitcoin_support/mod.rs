//! Shared helpers for the Bitcoin tests: wallets from mnemonics, PSBTs built field by field as an
//! independent wallet writes them, and verification through Bitcoin Core's script interpreter.
#![allow(dead_code)]

use std::collections::BTreeMap;

use bitcoin::absolute::LockTime;
use bitcoin::bip32::{DerivationPath, Fingerprint};
use bitcoin::psbt::{Input, Output, Psbt};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use custos::backend::{SeedId, SoftwareBackend};
use custos::keys::{AccountKey, AccountPath, MasterKey, MnemonicSecret, Network, Purpose};
use custos::secret::SecretString;
use custos::wallet::Wallet;

pub const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
pub const ZOO: &str = "zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo wrong";
pub const LEGAL: &str =
    "legal winner thank year wave sausage worth useful legal winner thank yellow";

/// A wallet from a mnemonic (empty passphrase), and a software backend holding its seed.
pub fn wallet(
    name: &str,
    mnemonic: &str,
    network: bitcoin::Network,
    purpose: Purpose,
) -> (Wallet, SoftwareBackend) {
    let m = MnemonicSecret::parse(&SecretString::new(mnemonic.into())).unwrap();
    let seed = m.to_seed(&SecretString::new(String::new()));
    let master = MasterKey::from_seed(&seed).unwrap();
    let net = Network::Bitcoin(network);
    let account =
        AccountKey::from_master(&master, net, AccountPath::new(net, purpose, 0).unwrap()).unwrap();
    let seed_id = SeedId(format!("seed-{name}"));
    let backend = SoftwareBackend::new();
    backend.load(seed_id.clone(), master);
    (
        Wallet {
            name: name.into(),
            seed: seed_id,
            account,
        },
        backend,
    )
}

pub fn script(w: &Wallet, change: bool, index: u32) -> ScriptBuf {
    w.account.script_pubkey(change, index).unwrap().unwrap()
}

/// A previous transaction paying `value` to `script` at output `vout` (other outputs pad).
pub fn funding(script: ScriptBuf, value: u64, salt: u32, vout: u32) -> Transaction {
    let mut output: Vec<TxOut> = (0..vout)
        .map(|i| TxOut {
            value: Amount::from_sat(1_000 + u64::from(i)),
            script_pubkey: ScriptBuf::new_op_return([salt as u8]),
        })
        .collect();
    output.push(TxOut {
        value: Amount::from_sat(value),
        script_pubkey: script,
    });
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(
                Txid::from_raw_hash(bitcoin::hashes::Hash::hash(&salt.to_le_bytes())),
                0,
            ),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output,
    }
}

/// Builds a PSBT the way an independent wallet does.
#[derive(Default)]
pub struct Builder {
    pub inputs: Vec<(TxIn, Input)>,
    pub outputs: Vec<(TxOut, Output)>,
    pub salt: u32,
}

fn origin(w: &Wallet, change: bool, index: u32) -> (Fingerprint, DerivationPath) {
    (
        w.account.master_fingerprint,
        w.account.child_path(change, index),
    )
}

impl Builder {
    pub fn new() -> Self {
        Self::default()
    }

    /// An input of wallet `w` at `change/index` worth `value`, with key origin, witness_utxo and
    /// non_witness_utxo (as Bitcoin Core fills them).
    pub fn ours(mut self, w: &Wallet, change: bool, index: u32, value: u64) -> Self {
        let spk = script(w, change, index);
        self.salt += 1;
        let prev = funding(spk.clone(), value, self.salt + 1000 * index, self.salt % 3);
        let vout = self.salt % 3;
        let mut input = Input {
            non_witness_utxo: Some(prev.clone()),
            ..Input::default()
        };
        if !spk.is_p2pkh() {
            input.witness_utxo = Some(prev.output[vout as usize].clone());
        }
        let pk = w.account.public_key(change, index).unwrap();
        match w.account.path.purpose {
            Purpose::Bip86 => {
                let (x, _) = pk.x_only_public_key();
                input.tap_internal_key = Some(x);
                input.tap_key_origins = BTreeMap::from([(x, (vec![], origin(w, change, index)))]);
            }
            purpose => {
                if purpose == Purpose::Bip49 {
                    input.redeem_script = Some(ScriptBuf::new_p2wpkh(
                        &bitcoin::CompressedPublicKey(pk).wpubkey_hash(),
                    ));
                }
                input.bip32_derivation = BTreeMap::from([(pk, origin(w, change, index))]);
            }
        }
        self.inputs.push((txin(prev.compute_txid(), vout), input));
        self
    }

    /// A foreign input (someone else's script) with only witness_utxo.
    pub fn foreign(mut self, spk: ScriptBuf, value: u64) -> Self {
        self.salt += 1;
        let prev = funding(spk, value, self.salt + 50_000, 0);
        let input = Input {
            witness_utxo: Some(prev.output[0].clone()),
            ..Input::default()
        };
        self.inputs.push((txin(prev.compute_txid(), 0), input));
        self
    }

    pub fn raw_input(mut self, txin: TxIn, input: Input) -> Self {
        self.inputs.push((txin, input));
        self
    }

    /// A payment to `spk`.
    pub fn pay(mut self, spk: ScriptBuf, value: u64) -> Self {
        self.outputs.push((
            TxOut {
                value: Amount::from_sat(value),
                script_pubkey: spk,
            },
            Output::default(),
        ));
        self
    }

    /// A change output of `w` at `1/index`, with its key origin.
    pub fn change(mut self, w: &Wallet, index: u32, value: u64) -> Self {
        let spk = script(w, true, index);
        let output = change_output_meta(w, true, index);
        self.outputs.push((
            TxOut {
                value: Amount::from_sat(value),
                script_pubkey: spk,
            },
            output,
        ));
        self
    }

    pub fn build(self) -> Psbt {
        let tx = Transaction {
            version: Version::TWO,
            lock_time: LockTime::ZERO,
            input: self.inputs.iter().map(|(t, _)| t.clone()).collect(),
            output: self.outputs.iter().map(|(t, _)| t.clone()).collect(),
        };
        let mut psbt = Psbt::from_unsigned_tx(tx).unwrap();
        psbt.inputs = self.inputs.into_iter().map(|(_, i)| i).collect();
        psbt.outputs = self.outputs.into_iter().map(|(_, o)| o).collect();
        psbt
    }
}

/// The PSBT output fields a wallet writes for its own output at `change/index`.
pub fn change_output_meta(w: &Wallet, change: bool, index: u32) -> Output {
    let pk = w.account.public_key(change, index).unwrap();
    let mut output = Output::default();
    match w.account.path.purpose {
        Purpose::Bip86 => {
            let (x, _) = pk.x_only_public_key();
            output.tap_internal_key = Some(x);
            output.tap_key_origins = BTreeMap::from([(x, (vec![], origin(w, change, index)))]);
        }
        purpose => {
            if purpose == Purpose::Bip49 {
                output.redeem_script = Some(ScriptBuf::new_p2wpkh(
                    &bitcoin::CompressedPublicKey(pk).wpubkey_hash(),
                ));
            }
            output.bip32_derivation = BTreeMap::from([(pk, origin(w, change, index))]);
        }
    }
    output
}

fn txin(txid: Txid, vout: u32) -> TxIn {
    TxIn {
        previous_output: OutPoint::new(txid, vout),
        script_sig: ScriptBuf::new(),
        sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
        witness: Witness::new(),
    }
}

/// The outputs a PSBT's inputs spend (from witness_utxo or non_witness_utxo).
pub fn spent_outputs(psbt: &Psbt) -> Vec<TxOut> {
    psbt.inputs
        .iter()
        .zip(&psbt.unsigned_tx.input)
        .map(|(i, txin)| match (&i.witness_utxo, &i.non_witness_utxo) {
            (Some(w), _) => w.clone(),
            (None, Some(prev)) => prev.output[txin.previous_output.vout as usize].clone(),
            _ => panic!("no utxo"),
        })
        .collect()
}

/// Runs input `index` of `tx` through Bitcoin Core's script interpreter (libbitcoinconsensus 26)
/// with every spent output, so taproot is verified too.
pub fn consensus_verify_input(tx: &[u8], spent: &[TxOut], index: usize) -> Result<(), String> {
    let utxos: Vec<bitcoinconsensus::Utxo> = spent
        .iter()
        .map(|o| bitcoinconsensus::Utxo {
            script_pubkey: o.script_pubkey.as_bytes().as_ptr(),
            script_pubkey_len: o.script_pubkey.len() as u32,
            value: o.value.to_sat() as i64,
        })
        .collect();
    bitcoinconsensus::verify_with_flags(
        spent[index].script_pubkey.as_bytes(),
        spent[index].value.to_sat(),
        tx,
        Some(&utxos),
        index,
        bitcoinconsensus::VERIFY_ALL_PRE_TAPROOT | bitcoinconsensus::VERIFY_TAPROOT,
    )
    .map_err(|e| format!("input {index}: {e:?}"))
}

/// Verifies every input of a raw transaction.
pub fn consensus_verify(raw_tx_hex: &str, spent: &[TxOut]) {
    let tx = hex::decode(raw_tx_hex).unwrap();
    let parsed: Transaction = bitcoin::consensus::deserialize(&tx).unwrap();
    assert_eq!(parsed.input.len(), spent.len());
    for i in 0..spent.len() {
        consensus_verify_input(&tx, spent, i).unwrap();
    }
}
