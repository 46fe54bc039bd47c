//! `custos hsm keygen --wallet W --count N --network NET`: a wallet whose keys are generated
//! inside the token and never leave it.
//!
//! The keys are generated first (`CKM_EC_KEY_PAIR_GEN`, labels `custos/W/0/0..N`), then the
//! wallet — their public keys — is sealed into the store. If the command dies in between, running
//! it again keeps the keys already generated (only keys the token itself generated and never let
//! out, checked by `CKA_LOCAL` and `CKA_NEVER_EXTRACTABLE`) and makes the rest. Ethereum only (see
//! [`crate::keystore::generated`]); Bitcoin wallets on an HSM are HD and imported.
//!
//! The wallet and its ceremony-log entry (token, module, labels, public keys, first address, who
//! ran it, how the store was unsealed) are written in one key-store transaction, after the token
//! made the keys.

use super::common::keystore_error;
use super::hsm::{ethereum_network, progress_bar, CeremonyArgs};
use super::unsealer::Opened;
use super::{CliError, CliResult};
use crate::backend::pkcs11::key_label;
use crate::ceremony::{self, CeremonyEvent, HsmKeyFact, HsmKeygen, KeyDigest};
use crate::keys::account::MAX_GENERATED_KEYS;
use crate::keys::{Chain, Network};
use crate::keystore::KeystoreError;

/// Runs `custos hsm keygen`.
pub fn keygen(args: &CeremonyArgs, wallet: &str, count: u32, network: &str) -> CliResult {
    if Network::parse(Chain::Bitcoin, network).is_ok() && ethereum_network(network).is_err() {
        return Err(CliError::usage(
            "keygen makes Ethereum wallets: Bitcoin wallets on the HSM are HD (PSBT key origins, \
             change detection and descriptors need the account xpub); create the wallet and use \
             `custos hsm import --wallet W --range A..B`",
        ));
    }
    let network = ethereum_network(network)?;
    if count == 0 || count as usize > MAX_GENERATED_KEYS {
        return Err(CliError::usage(format!(
            "--count is 1 to {MAX_GENERATED_KEYS}"
        )));
    }
    let ceremony = args.begin()?;
    let backend = &ceremony.backend;
    let Opened { unsealed, by } = ceremony.unseal(args)?;
    match unsealed.wallet(wallet) {
        Ok(_) => {
            return Err(keystore_error(KeystoreError::DuplicateWallet(
                wallet.into(),
            )))
        }
        Err(KeystoreError::UnknownWallet(_)) => {}
        Err(e) => return Err(keystore_error(e)),
    }
    crate::keystore::record::validate_wallet_name(wallet).map_err(CliError::usage)?;
    let labels: Vec<String> = (0..count).map(|i| key_label(wallet, false, i)).collect();
    let bar = progress_bar(u64::from(count), "generating keys in the token");
    let tick = || {
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    };
    let keys = backend
        .generate(&labels, true, &tick)
        .map_err(CliError::operational)?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let mut digest = KeyDigest::default();
    for (label, key) in labels.iter().zip(&keys) {
        digest.push(HsmKeyFact {
            label: label.clone(),
            wallet: Some(wallet.to_owned()),
            path: None,
            public_key: key.to_string(),
        });
    }
    let summary = digest.finish();
    let created = unsealed
        .create_generated_wallet_recorded(wallet, network, keys, |created| {
            ceremony::draft(
                &ceremony.operator,
                &CeremonyEvent::HsmKeygen(HsmKeygen {
                    token: ceremony.token_fact(),
                    module: ceremony.module_fact(),
                    wallet: created.name.clone(),
                    chain: created.chain().to_string(),
                    network: created.network().name(),
                    seed: created.seed.0.clone(),
                    first_address: created
                        .address(false, 0)
                        .unwrap_or_else(|e| format!("(cannot derive: {e})")),
                    key_count: summary.count,
                    keys: summary.listed,
                    keys_sha256: summary.sha256,
                    unsealed_by: by,
                }),
            )
        })
        .map_err(keystore_error)?;
    println!(
        "created wallet {wallet} ({} {}): {count} key(s) generated inside {}, never extractable",
        created.chain(),
        created.network(),
        backend.token().name()
    );
    println!(
        "first address {} (no xpub and no seed: back the token up, it is the only copy of these keys)",
        created.address(false, 0).map_err(CliError::operational)?
    );
    if !ceremony.hsm.wallets.iter().any(|w| w == wallet || w == "*") {
        println!(
            "(wallets with generated keys always sign on the hsm; [hsm] wallets need not name it)"
        );
    }
    Ok(())
}
