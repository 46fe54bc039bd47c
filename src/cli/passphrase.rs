//! `custos passphrase change | remove`: the passphrase unsealer of a store, recorded in its
//! ceremony log.
//!
//! `change` rewraps the store's data key under a new passphrase (seeds and wallets are not
//! rewritten; see the key store's module doc for crash safety); on a store unsealed by shares it
//! adds a passphrase. `remove` deletes the passphrase slot of a store that has shares, and needs
//! a threshold of those shares — so the passphrase can only go once the shares are proven to
//! unseal.

use std::path::PathBuf;

use clap::Subcommand;

use super::common::{keystore_error, read_new_passphrase, with_spinner, StoreArgs, UnsafeKdfArgs};
use super::unsealer::{Opened, OperatorArgs};
use super::{CliError, CliResult};
use crate::ceremony::{self, CeremonyEvent};

/// `custos passphrase …`
#[derive(Debug, Subcommand)]
pub enum PassphraseCommand {
    /// Change the store passphrase (old: --passphrase-file, CUSTOS_PASSPHRASE or a prompt, or
    /// shares; new: --new-passphrase-file, CUSTOS_NEW_PASSPHRASE or a prompt).
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
        #[command(flatten)]
        #[allow(missing_docs)]
        operator: OperatorArgs,
    },
    /// Remove the passphrase of a store that has shares (unsealed with a threshold of them).
    Remove {
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
        #[command(flatten)]
        #[allow(missing_docs)]
        operator: OperatorArgs,
    },
}

/// Runs `custos passphrase …`.
pub fn run(command: PassphraseCommand) -> CliResult {
    match command {
        PassphraseCommand::Change {
            store,
            new_passphrase_file,
            kdf,
            operator,
        } => {
            let operator = operator.operator()?;
            let kdf = kdf.kdf_params()?;
            // The old unsealer is checked before the new passphrase is asked for.
            let Opened { unsealed, by } = store.open()?;
            let replaced = unsealed
                .store()
                .unsealers()
                .map_err(keystore_error)?
                .passphrase
                .is_some();
            let new = read_new_passphrase(new_passphrase_file.as_deref())?;
            let draft = ceremony::draft(
                &operator,
                &CeremonyEvent::PassphraseChange {
                    kdf: kdf.to_string(),
                    replaced,
                    unsealed_by: by,
                },
            );
            with_spinner("rewrapping the data key (argon2id)…", || {
                unsealed.set_passphrase_recorded(&new, kdf, &draft)
            })
            .map_err(keystore_error)?;
            println!(
                "passphrase of key store {} {} ({kdf})",
                store.store.display(),
                if replaced { "changed" } else { "set" }
            );
            Ok(())
        }
        PassphraseCommand::Remove {
            mut store,
            operator,
        } => {
            let operator = operator.operator()?;
            store.shares.with_shares = true;
            let Opened { unsealed, by } = store.open()?;
            if unsealed
                .store()
                .unsealers()
                .map_err(keystore_error)?
                .passphrase
                .is_none()
            {
                return Err(CliError::usage("this key store has no passphrase"));
            }
            let draft = ceremony::draft(
                &operator,
                &CeremonyEvent::PassphraseRemove { unsealed_by: by },
            );
            unsealed.remove_passphrase(&draft).map_err(keystore_error)?;
            println!(
                "passphrase of key store {} removed: only its shares unseal it now",
                store.store.display()
            );
            Ok(())
        }
    }
}
