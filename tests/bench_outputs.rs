//! `custos bench signer --outputs` checked by verifiers the signer does not use: every Bitcoin
//! transaction through Bitcoin Core's script interpreter (libbitcoinconsensus) against the outputs
//! its PSBT spends, every Ethereum transaction's signer recovered with RustCrypto's `k256` (the
//! signer signs and checks with libsecp256k1) and compared with the wallet's address.

mod bitcoin_support;

use std::process::Command;

use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::TxEnvelope;
use alloy_eips::eip2718::Decodable2718;
use bitcoin_support::{consensus_verify, spent_outputs};

fn recover_with_k256(envelope: &TxEnvelope) -> alloy_primitives::Address {
    let (hash, signature) = match envelope {
        TxEnvelope::Eip1559(signed) => (signed.signature_hash(), *signed.signature()),
        other => panic!("expected an EIP-1559 transaction, got {other:?}"),
    };
    let mut rs = [0u8; 64];
    rs[..32].copy_from_slice(&signature.r().to_be_bytes::<32>());
    rs[32..].copy_from_slice(&signature.s().to_be_bytes::<32>());
    let sig = k256::ecdsa::Signature::from_slice(&rs).unwrap();
    assert!(sig.normalize_s().is_none(), "high s");
    let id = k256::ecdsa::RecoveryId::from_byte(u8::from(signature.v())).unwrap();
    let key = k256::ecdsa::VerifyingKey::recover_from_prehash(hash.as_slice(), &sig, id).unwrap();
    let point = key.to_encoded_point(false);
    alloy_primitives::Address::from_raw_public_key(&point.as_bytes()[1..])
}

#[test]
fn every_signed_output_of_a_bench_run_verifies_independently() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("outputs.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args([
            "bench",
            "signer",
            "--clients",
            "2",
            "--requests",
            "24",
            "--outputs",
        ])
        .arg(&file)
        .env("CUSTOS_UNSAFE_KDF_MEMORY_KIB", "64")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    let (mut btc, mut eth) = (0, 0);
    let mut ids = std::collections::HashSet::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            ids.insert(v["request_id"].as_str().unwrap().to_owned()),
            "{line}"
        );
        let raw = v["raw_tx_hex"].as_str().unwrap();
        match v["chain"].as_str().unwrap() {
            "bitcoin" => {
                let psbt = bitcoin::Psbt::deserialize(
                    &hex::decode(v["psbt_hex"].as_str().unwrap()).unwrap(),
                )
                .unwrap();
                consensus_verify(raw, &spent_outputs(&psbt));
                let tx: bitcoin::Transaction =
                    bitcoin::consensus::deserialize(&hex::decode(raw).unwrap()).unwrap();
                assert_eq!(tx.compute_txid().to_string(), v["txid"].as_str().unwrap());
                assert_eq!(tx.compute_txid(), psbt.unsigned_tx.compute_txid());
                btc += 1;
            }
            "ethereum" => {
                let bytes = hex::decode(raw.trim_start_matches("0x")).unwrap();
                let envelope = TxEnvelope::decode_2718(&mut bytes.as_slice()).unwrap();
                let from: alloy_primitives::Address = v["from"].as_str().unwrap().parse().unwrap();
                assert_eq!(recover_with_k256(&envelope), from, "{line}");
                // alloy's own recovery agrees.
                assert_eq!(envelope.recover_signer().unwrap(), from);
                assert_eq!(
                    format!("{:#x}", envelope.tx_hash()),
                    v["tx_hash"].as_str().unwrap().to_lowercase()
                );
                eth += 1;
            }
            other => panic!("unknown chain {other}"),
        }
    }
    assert_eq!((btc, eth), (12, 12), "every signed result was written");
}
