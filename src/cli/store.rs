//! `custos store verify`: decrypts and checks every record of a key store (a backup drill), and
//! prints what it holds without a secret.

use clap::Subcommand;

use super::common::{keystore_error, StoreArgs};
use super::{CliError, CliResult};

/// `custos store …`
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Decrypt and check every record; print seeds, wallets and first addresses.
    Verify {
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
    },
}

/// Runs `custos store …`.
pub fn run(command: StoreCommand) -> CliResult {
    match command {
        StoreCommand::Verify { store } => {
            let unsealed = store.open()?.unsealed;
            let report = unsealed.verify().map_err(keystore_error)?;
            println!(
                "key store {}: format {}, {} records",
                store.store.display(),
                report.format_version,
                report.records,
            );
            match &report.kdf {
                Some(kdf) => println!("passphrase slot: {kdf}"),
                None => println!("passphrase slot: none"),
            }
            match &report.shares {
                Some(set) => println!(
                    "shares: set {}, {} of {}",
                    hex::encode(set.set_id),
                    set.threshold,
                    set.count
                ),
                None => println!("shares: none"),
            }
            match &report.ceremony {
                crate::keystore::LogCheck::Intact { entries, .. } => {
                    println!("ceremony log: intact, {entries} entries")
                }
                crate::keystore::LogCheck::Broken { message, .. } => {
                    return Err(CliError::operational(format!(
                        "ceremony log broken: {message}"
                    )))
                }
            }
            println!("seeds: {}", report.seeds.len());
            for seed in &report.seeds {
                println!(
                    "  seed {}: {} words, BIP39 passphrase {}, master fingerprint {}",
                    seed.id,
                    seed.words,
                    if seed.has_bip39_passphrase {
                        "set"
                    } else {
                        "none"
                    },
                    seed.id
                );
            }
            println!("wallets: {}", report.wallets.len());
            for w in &report.wallets {
                let wallet = &w.wallet;
                println!(
                    "  {}: {} {} {} seed {} fingerprint {}, first address {}",
                    wallet.name,
                    wallet.chain(),
                    wallet.network(),
                    wallet.account.path_text(),
                    wallet.seed,
                    wallet.account.master_fingerprint,
                    w.first_address
                );
            }
            if report.kdf.is_some_and(|k| !k.meets_minimum()) {
                println!("warning: the passphrase slot uses argon2id parameters below the minimum; run `custos passphrase change`");
            }
            println!("ok: every record decrypted and checked");
            Ok(())
        }
    }
}
