//! `custos ceremony report --store DIR [--json]`: the store's ceremony log as a transcript for
//! custodians to sign off, with its chain verified (which needs the store unsealed: the log is
//! keyed with a key derived from its data key). A broken chain is printed as such and the
//! command exits 1.
//!
//! `--unverified` prints the entries without unsealing, under a banner saying they are not
//! authenticated (for a first look; the signed-off transcript is the verified one).

use clap::Subcommand;

use super::common::{keystore_error, open_store, StoreArgs};
use super::{CliError, CliResult};
use crate::ceremony::report::Transcript;
use crate::keystore::LogCheck;

/// `custos ceremony …`
#[derive(Debug, Subcommand)]
pub enum CeremonyCommand {
    /// Print the ceremony log as a transcript to sign off, after verifying its chain.
    Report {
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// Do not unseal: print the entries unauthenticated, under a warning.
        #[arg(long)]
        unverified: bool,
    },
}

/// Runs `custos ceremony …`.
pub fn run(command: CeremonyCommand) -> CliResult {
    match command {
        CeremonyCommand::Report {
            store,
            json,
            unverified,
        } => {
            let (keystore, check, shares, _guard) = if unverified {
                let keystore = open_store(&store.store)?;
                let shares = keystore.unsealers().map_err(keystore_error)?.shares;
                let check = LogCheck::Broken {
                    seq: 0,
                    message: "NOT VERIFIED: printed without unsealing; these entries are not authenticated".into(),
                };
                (keystore, check, shares, None)
            } else {
                let opened = store.open()?;
                let check = opened
                    .unsealed
                    .verify_ceremony_log()
                    .map_err(keystore_error)?;
                let keystore = opened.unsealed.store().clone();
                let shares = keystore.unsealers().map_err(keystore_error)?.shares;
                (keystore, check, shares, Some(opened))
            };
            let entries = keystore.ceremony_entries().map_err(keystore_error)?;
            let store_id = keystore.store_id_hex();
            let transcript = Transcript {
                store_id,
                store_dir: store.store.display().to_string(),
                check: check.clone(),
                entries,
                shares,
                printed_at: crate::ceremony::now(),
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&transcript.to_json())
                        .expect("JSON values serialize")
                );
            } else {
                print!("{}", transcript.to_text());
            }
            match check {
                LogCheck::Broken { message, .. } if !unverified => Err(CliError::operational(
                    format!("the ceremony log is broken: {message}"),
                )),
                _ => Ok(()),
            }
        }
    }
}
