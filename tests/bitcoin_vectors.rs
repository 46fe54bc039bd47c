//! Official vectors: BIP143 (native P2WPKH, P2SH-P2WPKH), BIP341 key-path spending, BIP86.
//! Sighashes are computed with the same rust-bitcoin calls the chain module makes; signed
//! transactions are checked by Bitcoin Core's script interpreter.

#[path = "bitcoin_support/mod.rs"]
mod support;

use bitcoin::hashes::Hash;
use bitcoin::key::{Keypair, TapTweak};
use bitcoin::secp256k1::{Message, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, Prevouts, SighashCache, TapSighashType};
use bitcoin::{Amount, ScriptBuf, Transaction, TxOut};
use custos::keys::{secp, Purpose};
use serde_json::Value;

fn tx(hex_text: &str) -> Transaction {
    bitcoin::consensus::deserialize(&hex::decode(hex_text).unwrap()).unwrap()
}

#[test]
fn bip143_sighashes_signatures_and_signed_transactions() {
    let data: Value =
        serde_json::from_str(include_str!("data/bitcoin/bip143-vectors.json")).unwrap();
    for v in data["vectors"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let unsigned = tx(v["unsigned_tx"].as_str().unwrap());
        let index = v["input_index"].as_u64().unwrap() as usize;
        let spk = ScriptBuf::from_hex(v["script_pubkey"].as_str().unwrap()).unwrap();
        let program = match v["redeem_script"].as_str() {
            Some(r) => ScriptBuf::from_hex(r).unwrap(),
            None => spk.clone(),
        };
        let amount = Amount::from_sat(v["amount_sat"].as_u64().unwrap());
        let sighash = SighashCache::new(&unsigned)
            .p2wpkh_signature_hash(index, &program, amount, EcdsaSighashType::All)
            .unwrap();
        assert_eq!(
            hex::encode(sighash.to_byte_array()),
            v["sighash"].as_str().unwrap(),
            "{name}"
        );

        let key = SecretKey::from_slice(&hex::decode(v["private_key"].as_str().unwrap()).unwrap())
            .unwrap();
        let pk = key.public_key(secp());
        assert_eq!(pk.to_string(), v["public_key"].as_str().unwrap(), "{name}");
        let msg = Message::from_digest(sighash.to_byte_array());
        let expected = bitcoin::secp256k1::ecdsa::Signature::from_der(
            &hex::decode(v["signature"].as_str().unwrap()).unwrap(),
        )
        .unwrap();
        secp().verify_ecdsa(&msg, &expected, &pk).unwrap();
        // RFC 6979 without grinding reproduces the BIP's signature byte for byte.
        assert_eq!(secp().sign_ecdsa(&msg, &key), expected, "{name}");
    }
}

#[test]
fn bip143_signed_inputs_verify_in_bitcoin_core() {
    // Each example's segwit input, alone, with its spent output. The native example's first
    // input (P2PK) is verified too, with the script and amount the BIP gives.
    let data: Value =
        serde_json::from_str(include_str!("data/bitcoin/bip143-vectors.json")).unwrap();
    let native = &data["vectors"][0];
    let signed = hex::decode(native["signed_tx"].as_str().unwrap()).unwrap();
    let spent = vec![
        TxOut {
            value: Amount::from_sat(625_000_000),
            script_pubkey: ScriptBuf::from_hex(
                "2103c9f4836b9a4f77fc0d81f7bcb01b7f1b35916864b9476c241ce9fc198bd25432ac",
            )
            .unwrap(),
        },
        TxOut {
            value: Amount::from_sat(600_000_000),
            script_pubkey: ScriptBuf::from_hex(native["script_pubkey"].as_str().unwrap()).unwrap(),
        },
    ];
    support::consensus_verify_input(&signed, &spent, 0).unwrap();
    support::consensus_verify_input(&signed, &spent, 1).unwrap();
    // A wrong amount fails: BIP143 commits to it.
    let mut wrong = spent.clone();
    wrong[1].value = Amount::from_sat(600_000_001);
    assert!(support::consensus_verify_input(&signed, &wrong, 1).is_err());

    let wrapped = &data["vectors"][1];
    let signed = hex::decode(wrapped["signed_tx"].as_str().unwrap()).unwrap();
    let spent = vec![TxOut {
        value: Amount::from_sat(1_000_000_000),
        script_pubkey: ScriptBuf::from_hex(wrapped["script_pubkey"].as_str().unwrap()).unwrap(),
    }];
    support::consensus_verify_input(&signed, &spent, 0).unwrap();
}

#[test]
fn bip341_key_path_sighashes_and_signatures() {
    let data: Value =
        serde_json::from_str(include_str!("data/bitcoin/bip341-wallet-test-vectors.json")).unwrap();
    let mut checked = 0;
    for case in data["keyPathSpending"].as_array().unwrap() {
        let unsigned = tx(case["given"]["rawUnsignedTx"].as_str().unwrap());
        let spent: Vec<TxOut> = case["given"]["utxosSpent"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| TxOut {
                value: Amount::from_sat(u["amountSats"].as_u64().unwrap()),
                script_pubkey: ScriptBuf::from_hex(u["scriptPubKey"].as_str().unwrap()).unwrap(),
            })
            .collect();
        let mut signed = unsigned.clone();
        let mut cache = SighashCache::new(&unsigned);
        for input in case["inputSpending"].as_array().unwrap() {
            let given = &input["given"];
            let index = given["txinIndex"].as_u64().unwrap() as usize;
            let hash_type =
                TapSighashType::from_consensus_u8(given["hashType"].as_u64().unwrap() as u8)
                    .unwrap();
            let sighash = cache
                .taproot_key_spend_signature_hash(index, &Prevouts::All(&spent), hash_type)
                .unwrap();
            assert_eq!(
                hex::encode(sighash.to_byte_array()),
                input["intermediary"]["sigHash"].as_str().unwrap(),
                "input {index}"
            );

            let key = SecretKey::from_slice(
                &hex::decode(given["internalPrivkey"].as_str().unwrap()).unwrap(),
            )
            .unwrap();
            // The JSON gives the root's bytes as BIP341 hashes them into the tweak.
            let merkle_root = given["merkleRoot"].as_str().map(|h| {
                bitcoin::TapNodeHash::from_byte_array(hex::decode(h).unwrap().try_into().unwrap())
            });
            let tweaked = Keypair::from_secret_key(secp(), &key)
                .tap_tweak(secp(), merkle_root)
                .to_keypair();
            assert_eq!(
                hex::encode(tweaked.secret_bytes()),
                input["intermediary"]["tweakedPrivkey"].as_str().unwrap(),
                "input {index}"
            );
            // BIP340 with all-zero auxiliary randomness, as the vectors were made.
            let msg = Message::from_digest(sighash.to_byte_array());
            let sig = secp().sign_schnorr_with_aux_rand(&msg, &tweaked, &[0u8; 32]);
            let mut witness_sig = sig.as_ref().to_vec();
            if hash_type != TapSighashType::Default {
                witness_sig.push(hash_type as u8);
            }
            let expected = input["expected"]["witness"][0].as_str().unwrap();
            assert_eq!(hex::encode(&witness_sig), expected, "input {index}");
            signed.input[index].witness = bitcoin::Witness::from_slice(&[witness_sig]);
            checked += 1;
        }
        // Bitcoin Core's interpreter accepts each vector's witness, given all spent outputs.
        let bytes = bitcoin::consensus::serialize(&signed);
        for input in case["inputSpending"].as_array().unwrap() {
            let index = input["given"]["txinIndex"].as_u64().unwrap() as usize;
            support::consensus_verify_input(&bytes, &spent, index).unwrap();
        }
    }
    assert!(checked >= 7, "checked {checked} inputs");
}

#[test]
fn bip86_and_bip84_addresses_of_the_reference_mnemonic() {
    // BIP86 and BIP84 test vectors: "abandon … about", first receive and change addresses.
    let (w86, _) = support::wallet(
        "t",
        support::ABANDON,
        bitcoin::Network::Bitcoin,
        Purpose::Bip86,
    );
    assert_eq!(
        w86.address(false, 0).unwrap(),
        "bc1p5cyxnuxmeuwuvkwfem96lqzszd02n6xdcjrs20cac6yqjjwudpxqkedrcr"
    );
    assert_eq!(
        w86.address(true, 0).unwrap(),
        "bc1p3qkhfews2uk44qtvauqyr2ttdsw7svhkl9nkm9s9c3x4ax5h60wqwruhk7"
    );
    let (w84, _) = support::wallet(
        "t",
        support::ABANDON,
        bitcoin::Network::Bitcoin,
        Purpose::Bip84,
    );
    assert_eq!(
        w84.address(false, 0).unwrap(),
        "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"
    );
}
