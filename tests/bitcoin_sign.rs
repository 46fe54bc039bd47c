//! End to end: PSBTs built as an independent wallet builds them, decoded into an intent, signed
//! through the software backend, finalised, and every input verified by Bitcoin Core's script
//! interpreter (libbitcoinconsensus, taproot with all spent outputs).

#[path = "bitcoin_support/mod.rs"]
mod support;

use bitcoin::{Address, Network as BtcNetwork, Psbt, TxOut};
use custos::amount::Amount;
use custos::chains::bitcoin::{decode, sign, BitcoinSigned, SignOptions};
use custos::keys::Purpose;
use support::*;

fn external() -> bitcoin::ScriptBuf {
    // BIP173's example P2WPKH, someone else's.
    bitcoin::ScriptBuf::from_hex("0014751e76e8199196d454941c45d1b3a323f1433bd6").unwrap()
}

fn sign_final(
    psbt: &Psbt,
    w: &custos::wallet::Wallet,
    b: &custos::backend::SoftwareBackend,
) -> String {
    let decoded = decode(w, psbt.to_string().as_bytes(), &SignOptions::default()).unwrap();
    match sign(decoded, w, b).unwrap() {
        BitcoinSigned::Final {
            raw_tx_hex,
            txid,
            wtxid,
        } => {
            let tx: bitcoin::Transaction =
                bitcoin::consensus::deserialize(&hex::decode(&raw_tx_hex).unwrap()).unwrap();
            assert_eq!(tx.compute_txid().to_string(), txid);
            assert_eq!(tx.compute_wtxid().to_string(), wtxid);
            let mut stripped = tx.clone();
            for input in &mut stripped.input {
                input.script_sig = bitcoin::ScriptBuf::new();
                input.witness = bitcoin::Witness::new();
            }
            assert_eq!(
                stripped, psbt.unsigned_tx,
                "the transaction the psbt describes"
            );
            raw_tx_hex
        }
        other => panic!("expected a final transaction, got {other:?}"),
    }
}

#[test]
fn every_script_type_signs_and_verifies_on_every_network() {
    for network in [
        BtcNetwork::Bitcoin,
        BtcNetwork::Testnet,
        BtcNetwork::Signet,
        BtcNetwork::Regtest,
    ] {
        for purpose in [
            Purpose::Bip44,
            Purpose::Bip49,
            Purpose::Bip84,
            Purpose::Bip86,
        ] {
            let (w, b) = wallet("hot", ABANDON, network, purpose);
            let psbt = Builder::new()
                .ours(&w, false, 0, 50_000)
                .ours(&w, true, 3, 70_000)
                .pay(external(), 60_000)
                .change(&w, 4, 58_000)
                .build();
            let decoded = decode(&w, psbt.to_string().as_bytes(), &SignOptions::default()).unwrap();
            let intent = decoded.intent();
            assert_eq!(
                intent.network,
                custos::keys::Network::Bitcoin(network).name()
            );
            assert_eq!(intent.destinations.len(), 1);
            assert_eq!(
                intent.destinations[0].address,
                Address::from_script(&external(), network)
                    .unwrap()
                    .to_string()
            );
            assert_eq!(intent.amount, Amount::from(60_000u64));
            assert_eq!(intent.fee, Amount::from(2_000u64));
            assert_eq!(intent.change.len(), 1);
            assert_eq!(intent.change[0].address, w.address(true, 4).unwrap());
            assert!(intent.foreign_input_value.is_zero());
            let raw = sign_final(&psbt, &w, &b);
            consensus_verify(&raw, &spent_outputs(&psbt));

            // The predicted vsize is an upper bound that is exact or at most a byte per input off.
            let tx: bitcoin::Transaction =
                bitcoin::consensus::deserialize(&hex::decode(&raw).unwrap()).unwrap();
            let rate = intent.fee_rate_sat_per_kvb.unwrap();
            let actual = 2_000 * 1000 / tx.vsize() as u64;
            assert!(rate <= actual, "{purpose:?}: {rate} > {actual}");
            assert!(
                actual - rate <= actual / 50,
                "{purpose:?}: {rate} vs {actual}"
            );
        }
    }
}

#[test]
fn binary_base64_and_hex_payloads_decode_alike() {
    let (w, _) = wallet("hot", ABANDON, BtcNetwork::Regtest, Purpose::Bip84);
    let psbt = Builder::new()
        .ours(&w, false, 1, 10_000)
        .pay(external(), 9_000)
        .build();
    let opts = SignOptions::default();
    let a = decode(&w, &psbt.serialize(), &opts).unwrap();
    let b = decode(&w, format!("  {psbt}\n").as_bytes(), &opts).unwrap();
    let c = decode(&w, hex::encode(psbt.serialize()).as_bytes(), &opts).unwrap();
    assert_eq!(a.intent(), b.intent());
    assert_eq!(a.intent(), c.intent());
    assert_eq!(a.intent().fee, Amount::from(1_000u64));
    // 1 P2WPKH input (68 vB with a 71-byte signature... 110+ weight) and one output: 110 vB.
    assert_eq!(a.intent().fee_rate_sat_per_kvb, Some(1_000 * 1000 / 110));
}

#[test]
fn multi_party_psbt_keeps_foreign_inputs_and_completes_with_the_other_signer() {
    let (alice, alice_keys) = wallet("alice", ABANDON, BtcNetwork::Regtest, Purpose::Bip86);
    let (bob, bob_keys) = wallet("bob", ZOO, BtcNetwork::Regtest, Purpose::Bip84);
    let psbt = Builder::new()
        .ours(&alice, false, 0, 40_000)
        .ours(&bob, false, 7, 30_000)
        .pay(external(), 50_000)
        .change(&alice, 0, 19_000)
        .build();
    let opts = SignOptions::default();

    let decoded = decode(&alice, psbt.to_string().as_bytes(), &opts).unwrap();
    assert_eq!(
        decoded.intent().foreign_input_value,
        Amount::from(30_000u64)
    );
    assert_eq!(decoded.owned_inputs().count(), 1);
    let BitcoinSigned::Partial { psbt_base64 } = sign(decoded, &alice, &alice_keys).unwrap() else {
        panic!("bob's input is not signed yet");
    };
    let partial: Psbt = psbt_base64.parse().unwrap();
    assert!(partial.inputs[0].final_script_witness.is_some());
    assert_eq!(partial.inputs[1], psbt.inputs[1], "foreign input untouched");

    // Bob sees alice's change as a destination: it is not his.
    let decoded = decode(&bob, psbt_base64.as_bytes(), &opts).unwrap();
    assert_eq!(
        decoded.intent().foreign_input_value,
        Amount::from(40_000u64)
    );
    assert_eq!(decoded.intent().amount, Amount::from(69_000u64));
    let BitcoinSigned::Final { raw_tx_hex, .. } = sign(decoded, &bob, &bob_keys).unwrap() else {
        panic!("every input is final now");
    };
    consensus_verify(&raw_tx_hex, &spent_outputs(&psbt));
}

#[test]
fn backend_without_the_seed_leaves_the_psbt_partial() {
    let (w, _) = wallet("hot", ABANDON, BtcNetwork::Regtest, Purpose::Bip84);
    let (_, other_backend) = wallet("hot-other-seed", ZOO, BtcNetwork::Regtest, Purpose::Bip84);
    let psbt = Builder::new()
        .ours(&w, false, 0, 10_000)
        .pay(external(), 9_000)
        .build();
    let decoded = decode(&w, psbt.to_string().as_bytes(), &SignOptions::default()).unwrap();
    let BitcoinSigned::Partial { psbt_base64 } = sign(decoded, &w, &other_backend).unwrap() else {
        panic!("no key, no signature");
    };
    assert_eq!(psbt_base64, psbt.to_string());
}

#[test]
fn signing_with_another_wallet_is_refused() {
    let (w, b) = wallet("hot", ABANDON, BtcNetwork::Regtest, Purpose::Bip84);
    let (other, _) = wallet("cold", ABANDON, BtcNetwork::Regtest, Purpose::Bip84);
    let psbt = Builder::new()
        .ours(&w, false, 0, 10_000)
        .pay(external(), 9_000)
        .build();
    let decoded = decode(&w, psbt.to_string().as_bytes(), &SignOptions::default()).unwrap();
    assert!(sign(decoded, &other, &b).is_err());
}

#[test]
fn zero_value_op_return_is_a_visible_destination() {
    let (w, b) = wallet("hot", ABANDON, BtcNetwork::Signet, Purpose::Bip84);
    let op_return = bitcoin::ScriptBuf::new_op_return(b"custos");
    let psbt = Builder::new()
        .ours(&w, false, 0, 10_000)
        .pay(op_return.clone(), 0)
        .change(&w, 0, 9_000)
        .build();
    let decoded = decode(&w, psbt.to_string().as_bytes(), &SignOptions::default()).unwrap();
    let d = &decoded.intent().destinations;
    assert_eq!(d.len(), 1);
    assert_eq!(
        d[0].address,
        format!("OP_RETURN:{}", op_return.to_hex_string())
    );
    assert!(d[0].amount.is_zero());
    let raw = sign_final(&psbt, &w, &b);
    consensus_verify(&raw, &spent_outputs(&psbt));
}

#[test]
fn explicit_sighash_all_is_signed_with_it() {
    for purpose in [Purpose::Bip84, Purpose::Bip86, Purpose::Bip44] {
        let (w, b) = wallet("hot", LEGAL, BtcNetwork::Testnet, purpose);
        let mut psbt = Builder::new()
            .ours(&w, false, 0, 10_000)
            .pay(external(), 9_000)
            .build();
        psbt.inputs[0].sighash_type = Some(bitcoin::psbt::PsbtSighashType::from_u32(1));
        let raw = sign_final(&psbt, &w, &b);
        consensus_verify(&raw, &spent_outputs(&psbt));
    }
}

#[test]
fn a_corrupted_signature_fails_consensus() {
    // The verifier is not a rubber stamp: flip one bit of a valid transaction's signature.
    for purpose in [Purpose::Bip84, Purpose::Bip86] {
        let (w, b) = wallet("hot", ABANDON, BtcNetwork::Regtest, purpose);
        let psbt = Builder::new()
            .ours(&w, false, 0, 10_000)
            .pay(external(), 9_000)
            .build();
        let raw = sign_final(&psbt, &w, &b);
        let mut tx: bitcoin::Transaction =
            bitcoin::consensus::deserialize(&hex::decode(&raw).unwrap()).unwrap();
        let mut items: Vec<Vec<u8>> = tx.input[0].witness.iter().map(<[u8]>::to_vec).collect();
        items[0][10] ^= 1;
        tx.input[0].witness = bitcoin::Witness::from_slice(&items);
        let bytes = bitcoin::consensus::serialize(&tx);
        let spent: Vec<TxOut> = spent_outputs(&psbt);
        assert!(consensus_verify_input(&bytes, &spent, 0).is_err());
    }
}
