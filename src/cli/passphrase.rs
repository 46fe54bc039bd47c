//! `custos passphrase change`: rewraps the store's data key under a new passphrase (seeds and
//! wallets are not rewritten; see the key store's module doc for crash safety).

use std::path::PathBuf;

use clap::Subcommand;

use super::common::{
    keystore_error, open_unsealed, read_new_passphrase, with_spinner, StoreArgs, UnsafeKdfArgs,
};
use super::CliResult;

/// `custos passphrase …`
#[derive(Debug, Subcommand)]
pub enum PassphraseCommand {
    /// Change the store passphrase (old: --passphrase-file, CUSTOS_PASSPHRASE or a prompt; new:
    /// --new-passphrase-file, CUSTOS_NEW_PASSPHRASE or a prompt).
    Change {
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
        /// File holding the new passphrase.
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
        #[command(flatten)]
        #[allow(missing_docs)]
        kdf: UnsafeKdfArgs,
    },
}

/// Runs `custos passphrase …`.
pub fn run(command: PassphraseCommand) -> CliResult {
    match command {
        PassphraseCommand::Change {
            store,
            new_passphrase_file,
            kdf,
        } => {
            let kdf = kdf.kdf_params()?;
            // The old passphrase is checked before the new one is asked for.
            let unsealed = open_unsealed(&store.store, store.passphrase_file.as_deref())?;
            let new = read_new_passphrase(new_passphrase_file.as_deref())?;
            with_spinner("rewrapping the data key (argon2id)…", || {
                unsealed.change_passphrase(&new, kdf)
            })
            .map_err(keystore_error)?;
            println!(
                "passphrase of key store {} changed ({kdf})",
                store.store.display()
            );
            Ok(())
        }
    }
}
