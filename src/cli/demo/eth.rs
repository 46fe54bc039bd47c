//! The Ethereum steps of `custos demo`, on the Sepolia wallet `eth-hot`: an EIP-1559 transfer and
//! an ERC-20 `transfer` (decoded, signed, the signer recovered from the raw transaction), a
//! `personal_sign` message (signer recovered from the signature), and a payload for another chain
//! (refused).

use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::TxEnvelope;
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{keccak256, Address, Signature};
use serde_json::json;

use super::{field, print_intent, Demo, SEPOLIA_USDC};
use crate::chains::ethereum::{decode, sign, EthError, EthPayload, EthSigned};
use crate::cli::CliError;
use crate::intent::ActionKind;

/// The payee of the demo transfers (the recipient of EIP-155's own example).
const PAYEE: &str = "0x3535353535353535353535353535353535353535";
/// Sepolia's chain id (EIP-155).
const SEPOLIA: u64 = 11_155_111;

/// Step: 0.01 ETH to [`PAYEE`], EIP-1559 fees.
pub(super) fn native_transfer(demo: &Demo) -> Result<(), CliError> {
    let tx = json!({
        "type": "0x2",
        "chainId": format!("{SEPOLIA:#x}"),
        "nonce": "0x0",
        "gas": "0x5208",
        "maxFeePerGas": "0x77359400",
        "maxPriorityFeePerGas": "0x3b9aca00",
        "to": PAYEE,
        "value": "0x2386f26fc10000",
        "data": "0x",
    });
    sign_transaction(demo, "eth-transfer.json", &tx, ActionKind::Transfer)
}

/// Step: 25 USDC (Circle's Sepolia test token, in the demo's registry) to [`PAYEE`].
pub(super) fn token_transfer(demo: &Demo) -> Result<(), CliError> {
    // transfer(address,uint256): selector, then each argument as a 32-byte word.
    let data = format!(
        "0xa9059cbb{:0>64}{:0>64x}",
        PAYEE.trim_start_matches("0x"),
        25_000_000u64
    );
    let tx = json!({
        "type": "0x2",
        "chainId": format!("{SEPOLIA:#x}"),
        "nonce": "0x1",
        "gas": "0xfde8",
        "maxFeePerGas": "0x77359400",
        "maxPriorityFeePerGas": "0x3b9aca00",
        "to": SEPOLIA_USDC,
        "value": "0x0",
        "data": data,
    });
    println!("  The token registry knows USDC at {SEPOLIA_USDC} on Sepolia (6 decimals),");
    println!("  so the calldata becomes a token transfer, not an opaque contract call.");
    sign_transaction(demo, "erc20-transfer.json", &tx, ActionKind::TokenTransfer)
}

/// Decodes, signs and checks one transaction.
fn sign_transaction(
    demo: &Demo,
    file: &str,
    tx: &serde_json::Value,
    expected: ActionKind,
) -> Result<(), CliError> {
    let wallet = &demo.eth_hot;
    let bytes = serde_json::to_vec_pretty(tx).expect("JSON values serialize");
    let path = demo.write(file, &bytes)?;
    field("payload", &path.display().to_string());
    let decoded =
        decode(wallet, 0, EthPayload::Transaction(&bytes), &demo.tokens).map_err(refused)?;
    let intent = decoded.intent();
    print_intent(intent);
    if intent.kind != expected {
        return Err(CliError::operational(format!(
            "decoded as {}, expected {expected}",
            intent.kind
        )));
    }
    field(
        "max fee",
        &format!("{} wei (gas limit × max fee per gas)", intent.fee),
    );
    field(
        "signing hash",
        &format!("0x{}", hex::encode(decoded.signing_hash())),
    );
    let signed = sign(decoded, wallet, &demo.backend).map_err(sign_failed)?;
    let EthSigned::Transaction {
        raw_tx_hex,
        tx_hash,
    } = signed
    else {
        return Err(CliError::operational("a transaction signed as a message"));
    };
    field("raw tx", &raw_tx_hex);
    field("tx hash", &tx_hash);

    // Independently of the signing code: parse the raw transaction, recover its signer.
    let raw = hex::decode(raw_tx_hex.trim_start_matches("0x")).map_err(CliError::operational)?;
    if format!("{:#x}", keccak256(&raw)) != tx_hash {
        return Err(CliError::operational(
            "the tx hash is not keccak256 of the raw tx",
        ));
    }
    let envelope = TxEnvelope::decode_2718(&mut raw.as_slice())
        .map_err(|e| CliError::operational(format!("the raw tx does not parse: {e}")))?;
    let signer = envelope
        .recover_signer()
        .map_err(|e| CliError::operational(format!("no signer recovers: {e}")))?;
    report_signer(demo, signer)
}

/// Step: an EIP-191 `personal_sign` signature.
pub(super) fn personal_message(demo: &Demo) -> Result<(), CliError> {
    let wallet = &demo.eth_hot;
    let message = b"Custos demo: eth-hot proves it controls this address.";
    demo.write("message.txt", message)?;
    let decoded = decode(
        wallet,
        0,
        EthPayload::PersonalMessage(message),
        &demo.tokens,
    )
    .map_err(refused)?;
    field("intent", &decoded.intent().summary());
    field(
        "eip-191 hash",
        &format!("0x{}", hex::encode(decoded.signing_hash())),
    );
    let signed = sign(decoded, wallet, &demo.backend).map_err(sign_failed)?;
    let EthSigned::Message { signature_hex } = signed else {
        return Err(CliError::operational("a message signed as a transaction"));
    };
    field("signature", &signature_hex);
    let bytes =
        hex::decode(signature_hex.trim_start_matches("0x")).map_err(CliError::operational)?;
    let signer = Signature::from_raw(&bytes)
        .and_then(|s| s.recover_address_from_msg(message))
        .map_err(|e| CliError::operational(format!("no signer recovers: {e}")))?;
    report_signer(demo, signer)
}

/// Step: a transfer for chain 1 sent to the Sepolia wallet is refused, with the reason.
pub(super) fn wrong_chain(demo: &Demo) -> Result<(), CliError> {
    let tx = json!({
        "type": "0x2",
        "chainId": "0x1",
        "nonce": "0x2",
        "gas": "0x5208",
        "maxFeePerGas": "0x77359400",
        "maxPriorityFeePerGas": "0x3b9aca00",
        "to": PAYEE,
        "value": "0x2386f26fc10000",
    });
    let bytes = serde_json::to_vec_pretty(&tx).expect("JSON values serialize");
    let path = demo.write("wrong-chain.json", &bytes)?;
    println!("  The same kind of transfer, but for Ethereum mainnet (chain id 1): a signature");
    println!("  would be valid there, so the Sepolia wallet must refuse it.");
    field("payload", &path.display().to_string());
    match decode(
        &demo.eth_hot,
        0,
        EthPayload::Transaction(&bytes),
        &demo.tokens,
    ) {
        Err(error @ EthError::ChainIdMismatch { .. }) => {
            field("refused", &error.to_string());
            Ok(())
        }
        Err(other) => Err(CliError::operational(format!(
            "refused for another reason than the chain id: {other}"
        ))),
        Ok(_) => Err(CliError::operational(
            "a transaction for chain 1 was accepted by a sepolia wallet",
        )),
    }
}

fn report_signer(demo: &Demo, signer: Address) -> Result<(), CliError> {
    let ours = demo
        .eth_hot
        .address(false, 0)
        .map_err(CliError::operational)?;
    let signer = signer.to_checksum(None);
    if signer != ours {
        return Err(CliError::operational(format!(
            "recovered signer {signer} is not {}'s address {ours}",
            demo.eth_hot.name
        )));
    }
    field(
        "signer",
        &format!(
            "recovered signer {signer} equals {}'s address",
            demo.eth_hot.name
        ),
    );
    Ok(())
}

fn refused(e: EthError) -> CliError {
    CliError::operational(format!("refused: {e}"))
}

fn sign_failed(e: EthError) -> CliError {
    CliError::operational(format!("signing failed: {e}"))
}
