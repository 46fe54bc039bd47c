//! The HSM step of `custos demo`: eth-hot's first key imported into a SoftHSM2 token made in the
//! demo directory, and the same EIP-1559 transfer signed **inside the token** (`CKM_ECDSA`), its
//! `r ‖ s` normalised to low S, its recovery id found by recovery, and its signer recovered from
//! the raw transaction by alloy. When SoftHSM2 is not installed the step says how to get it and
//! is skipped (`custos dev env DIR --hsm` and the tests need it; the rest of the demo does not).

use std::sync::Arc;

use alloy_consensus::transaction::SignerRecoverable;
use alloy_consensus::TxEnvelope;
use alloy_eips::eip2718::Decodable2718;
use serde_json::json;

use super::{field, Demo};
use crate::backend::pkcs11::ceremony::import_wallet;
use crate::backend::pkcs11::provision::{
    init_token, write_softhsm_config, SOFTHSM2_CONF_ENV, SOFTHSM2_MODULE,
};
use crate::backend::pkcs11::{key_label, HsmWallets, Pkcs11Backend, TokenSelector, TokenSettings};
use crate::chains::ethereum::{decode, sign, EthPayload, EthSigned};
use crate::cli::CliError;
use crate::secret::SecretString;

const TOKEN: &str = "custos-demo";

fn op(e: impl std::fmt::Display) -> CliError {
    CliError::operational(e)
}

/// Step: an Ethereum transfer signed inside a SoftHSM2 token.
pub(super) fn sign_inside(demo: &Demo) -> Result<(), CliError> {
    let module = std::path::Path::new(SOFTHSM2_MODULE);
    if !module.is_file() {
        println!("  skipped: SoftHSM2 is not installed ({SOFTHSM2_MODULE}); run");
        println!("  hsm/setup-softhsm.sh DIR (or apt-get install softhsm2) to see this step.");
        return Ok(());
    }
    let conf = write_softhsm_config(&demo.dir.join("hsm")).map_err(op)?;
    // SoftHSM2 reads its configuration when the module is loaded: this process has not yet.
    std::env::set_var(SOFTHSM2_CONF_ENV, &conf);
    let pin = SecretString::new(format!("demo-{:016x}", rand::random::<u64>()));
    let so_pin = SecretString::new(format!("demo-so-{:016x}", rand::random::<u64>()));
    init_token(module, TOKEN, &so_pin, &pin).map_err(op)?;
    let backend = Arc::new(
        Pkcs11Backend::open(TokenSettings {
            module: module.to_owned(),
            token: TokenSelector::Label(TOKEN.into()),
            pin,
            sessions: 1,
        })
        .map_err(op)?,
    );
    field(
        "hsm token",
        &format!("'{TOKEN}' (SoftHSM2, {})", demo.dir.join("hsm").display()),
    );
    let wallet = &demo.eth_hot;
    import_wallet(&backend, wallet, &demo.master, 0..1, &|| {}).map_err(op)?;
    let label = key_label(&wallet.name, false, 0);
    let object = backend
        .list(&label)
        .map_err(op)?
        .into_iter()
        .find(|o| o.class == "private")
        .ok_or_else(|| op("the imported key is not in the token"))?;
    field(
        "hsm key",
        &format!(
            "{label}: secp256k1, sensitive={}, extractable={}, CKA_VALUE {}",
            object.sensitive == Some(true),
            object.extractable == Some(true),
            if object.value_readable {
                "READABLE"
            } else {
                "unreadable"
            }
        ),
    );
    let hsm = HsmWallets::new(backend.clone());
    hsm.add(wallet.clone()).map_err(op)?;

    let tx = json!({
        "type": "0x2", "chainId": "0xaa36a7", "nonce": "0x0", "gas": "0x5208",
        "maxFeePerGas": "0x77359400", "maxPriorityFeePerGas": "0x3b9aca00",
        "to": "0x3535353535353535353535353535353535353535", "value": "0x2386f26fc10000",
        "data": "0x",
    });
    let bytes = serde_json::to_vec(&tx).expect("JSON values serialize");
    let decoded = decode(wallet, 0, EthPayload::Transaction(&bytes), &demo.tokens)
        .map_err(|e| op(format!("refused: {e}")))?;
    let hash = decoded.signing_hash();
    let signed = sign(decoded.clone(), wallet, &hsm).map_err(op)?;
    let software = sign(decoded, wallet, &demo.backend).map_err(op)?;
    let (
        EthSigned::Transaction { raw_tx_hex, .. },
        EthSigned::Transaction {
            raw_tx_hex: soft, ..
        },
    ) = (signed, software)
    else {
        return Err(op("a transaction signed as a message"));
    };
    let parse = |raw: &str| -> Result<TxEnvelope, CliError> {
        let bytes = hex::decode(raw.trim_start_matches("0x")).map_err(op)?;
        TxEnvelope::decode_2718(&mut bytes.as_slice()).map_err(op)
    };
    let (in_hsm, in_software) = (parse(&raw_tx_hex)?, parse(&soft)?);
    field("signing hash", &format!("0x{}", hex::encode(hash)));
    field("signed in hsm", &raw_tx_hex);
    let signer = in_hsm.recover_signer().map_err(op)?.to_checksum(None);
    let ours = wallet.address(false, 0).map_err(op)?;
    if signer != ours {
        return Err(op(format!(
            "the hsm's signature recovers to {signer}, not {ours}"
        )));
    }
    field(
        "hsm signer",
        &format!("{signer} equals {}'s address", wallet.name),
    );
    let same_tx = in_hsm.as_eip1559().map(|t| t.tx()) == in_software.as_eip1559().map(|t| t.tx());
    if !same_tx {
        return Err(op(
            "the hsm and the software backend signed different transactions",
        ));
    }
    println!("  Same unsigned transaction and signer as the software backend; the token chose its");
    println!(
        "  own nonce (PKCS#11 has no RFC 6979), so r and s differ. Custos normalised s to the"
    );
    println!("  low half and found the recovery id by recovering the wallet's key.");
    Ok(())
}
