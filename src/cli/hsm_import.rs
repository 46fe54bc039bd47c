//! `custos hsm import --wallet W --range A..B`: an HD wallet's keys derived on this host from its
//! seed and imported into the token (receive and, for Bitcoin, change addresses), so the wallet
//! signs on the HSM with the same xpub and addresses. See [`crate::backend::pkcs11::ceremony`]
//! for what an import means for where the seed has been.
//!
//! The ceremony log gets one entry once the token holds every key: token, module, wallet, seed
//! fingerprint, xpub, range, counts, the keys' labels, paths and public keys (re-derived from the
//! xpub; bounded, with a digest of all, see [`crate::ceremony::hsm`]), who ran it and how the
//! store was unsealed.

use std::ops::Range;

use super::common::keystore_error;
use super::hsm::{progress_bar, CeremonyArgs};
use super::unsealer::Opened;
use super::{CliError, CliResult};
use crate::backend::pkcs11::ceremony::{import_plan, import_wallet};
use crate::backend::pkcs11::key_label;
use crate::ceremony::{self, HsmImport, HsmKeyFact, KeyDigest};
use crate::keys::Chain;
use crate::wallet::Wallet;

/// Runs `custos hsm import`.
pub fn import(args: &CeremonyArgs, wallet_name: &str, range: Range<u32>) -> CliResult {
    let ceremony = args.begin()?;
    let backend = &ceremony.backend;
    let Opened { unsealed, by } = ceremony.unseal(args)?;
    let wallet = unsealed.wallet(wallet_name).map_err(keystore_error)?;
    if wallet.account.is_generated() {
        return Err(CliError::usage(format!(
            "wallet '{wallet_name}' has keys generated in an hsm: there is nothing to derive and import"
        )));
    }
    let plan = import_plan(&wallet, &range).map_err(CliError::usage)?;
    crate::backend::pkcs11::wallets::check_supported(&wallet).map_err(CliError::usage)?;
    let master = unsealed.master_key(&wallet.seed).map_err(keystore_error)?;
    let bar = progress_bar(plan.len() as u64, "importing keys");
    let tick = || {
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    };
    let report = import_wallet(backend, &wallet, &master, range.clone(), &tick)
        .map_err(CliError::operational)?;
    drop(master);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let chains = match wallet.chain() {
        Chain::Bitcoin => "receive and change",
        Chain::Ethereum => "receive",
    };
    println!(
        "wallet {wallet_name}: {} key(s) imported, {} already present, into {} ({chains} addresses {}..{})",
        report.created,
        report.present,
        backend.token().name(),
        range.start,
        range.end
    );
    println!(
        "the keys were derived from seed {} on this host: the seed remains the wallet's backup, keep it offline",
        wallet.seed
    );
    // The import changes the token, not the store: there is no store transaction to share, so
    // the entry is written once the token has every key. A crash in between leaves the keys
    // without an entry; rerunning the same import (the keys are found present) records it.
    let keys = imported_keys(&wallet, &plan)?;
    let event = HsmImport {
        token: ceremony.token_fact(),
        module: Some(ceremony.module_fact()),
        keys: keys.listed,
        wallet: Some(wallet.name.clone()),
        seed: Some(wallet.seed.0.clone()),
        xpub: Some(wallet.account.slip132_xpub()),
        range: Some(format!("{}..{}", range.start, range.end)),
        chains: Some(chains.to_owned()),
        created: Some(report.created as u64),
        present: Some(report.present as u64),
        key_count: Some(keys.count),
        keys_sha256: Some(keys.sha256),
        unsealed_by: Some(by),
    };
    let seq = ceremony::record_hsm_import(&unsealed, &ceremony.operator, event).map_err(|e| {
        CliError::operational(format!(
            "the keys are in the token, but the ceremony log entry was not written ({e}); \
             run the same import again to record it"
        ))
    })?;
    println!("recorded in the ceremony log as entry {seq}");
    Ok(())
}

/// The public facts of the keys an import put in the token: re-derived from the wallet's xpub
/// (never from the seed), in the order of the plan.
fn imported_keys(wallet: &Wallet, plan: &[(bool, u32)]) -> Result<ceremony::KeySummary, CliError> {
    let mut digest = KeyDigest::default();
    for &(change, index) in plan {
        let public = wallet
            .account
            .public_key(change, index)
            .map_err(CliError::operational)?;
        digest.push(HsmKeyFact {
            label: key_label(&wallet.name, change, index),
            wallet: Some(wallet.name.clone()),
            // `m/…`, as the wallet facts of the log write account paths.
            path: Some(format!("m/{}", wallet.account.child_path(change, index))),
            public_key: public.to_string(),
        });
    }
    Ok(digest.finish())
}
