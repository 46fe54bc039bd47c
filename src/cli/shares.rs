//! `custos shares …`: Shamir shares of an existing store.
//!
//! - `add --shares M/N`: a first share set for a store unsealed by its passphrase (the passphrase
//!   keeps working; remove it with `custos passphrase remove`, which needs a threshold of the new
//!   shares — so it can only be removed once the shares are proven to work).
//! - `rotate --shares M/N`: a threshold of the current shares unseals, a fresh secret is split,
//!   the new shares are handed out, and only then is the new set written — the old shares stop
//!   working and the ceremony log says so. Interrupted before the write, nothing changed.
//! - `check`: each share checked alone against the store's commitments, without unsealing and
//!   without any other custodian (a custodian can check their copy at any time).
//! - `info`: the store's unsealers and share set, public facts only.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::common::{keystore_error, open_store, read_secret_file, StoreArgs};
use super::share_display::{deliver, Delivery};
use super::unsealer::{set_line, Opened, OperatorArgs};
use super::{CliError, CliResult};
use crate::ceremony::{self, CeremonyEvent, ShareSetFact};
use crate::secret::SecretString;
use crate::shares::parse_threshold;

/// `--shares M/N [--share-dir DIR]` of `add` and `rotate`.
#[derive(Debug, Args)]
pub struct NewSharesArgs {
    /// The new split: M of N custodians (e.g. 3/5).
    #[arg(long = "shares", value_name = "M/N")]
    pub split: String,
    /// Write one file per custodian here (0600) instead of showing the shares on the terminal.
    #[arg(long, value_name = "DIR")]
    pub share_dir: Option<PathBuf>,
}

/// `custos shares …`
#[derive(Debug, Subcommand)]
pub enum SharesCommand {
    /// Create a first share set for a store (unsealed with its passphrase).
    Add {
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
        #[command(flatten)]
        #[allow(missing_docs)]
        new: NewSharesArgs,
        #[command(flatten)]
        #[allow(missing_docs)]
        operator: OperatorArgs,
    },
    /// Re-split after a threshold of the current shares is given: old shares stop working.
    Rotate {
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
        #[command(flatten)]
        #[allow(missing_docs)]
        new: NewSharesArgs,
        #[command(flatten)]
        #[allow(missing_docs)]
        operator: OperatorArgs,
    },
    /// Check shares one by one against the store's commitments (no unseal, nothing written).
    Check {
        /// The key store directory.
        #[arg(long, value_name = "DIR")]
        store: PathBuf,
        /// Files holding one share each (else one share is read at a prompt).
        #[arg(long = "share-file", value_name = "FILE")]
        share_files: Vec<PathBuf>,
    },
    /// The store's unsealers and share set (public facts; nothing is unsealed).
    Info {
        /// The key store directory.
        #[arg(long, value_name = "DIR")]
        store: PathBuf,
        /// JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `custos shares …`.
pub fn run(command: SharesCommand) -> CliResult {
    match command {
        SharesCommand::Add {
            store,
            new,
            operator,
        } => add(store, new, operator),
        SharesCommand::Rotate {
            mut store,
            new,
            operator,
        } => {
            // A rotation is decided by the current custodians: unseal with their shares.
            store.shares.with_shares = true;
            rotate(store, new, operator)
        }
        SharesCommand::Check { store, share_files } => check(store, share_files),
        SharesCommand::Info { store, json } => info(store, json),
    }
}

fn add(store: StoreArgs, new: NewSharesArgs, operator: OperatorArgs) -> CliResult {
    let operator = operator.operator()?;
    let (threshold, count) = parse_threshold(&new.split).map_err(CliError::usage)?;
    let delivery = Delivery::choose(new.share_dir.as_deref())?;
    {
        let keystore = open_store(&store.store)?;
        if keystore.shamir_slot().map_err(keystore_error)?.is_some() {
            return Err(CliError::usage(
                "this key store has shares already: use `custos shares rotate` to re-split",
            ));
        }
    }
    let Opened { unsealed, by } = store.open()?;
    let set = unsealed
        .prepare_share_set(threshold, count)
        .map_err(keystore_error)?;
    let info = set.info();
    delivery.prepare(&hex::encode(&info.store_id[..4]))?;
    let files = deliver(&set, &delivery, &store.store)?;
    let event = CeremonyEvent::SharesAdd {
        share_set: ShareSetFact::of(&info, Some(delivery.describe())),
        passphrase_kept: true,
        unsealed_by: by,
    };
    commit_or_discard(&unsealed, &set, &event, &operator, &files)?;
    println!(
        "key store {}: new share set {} — any {threshold} of the {count} shares unseal it",
        store.store.display(),
        hex::encode(info.set_id)
    );
    for f in &files {
        println!("  wrote {}", f.display());
    }
    println!("the passphrase still unseals it too; once the custodians have checked their shares, remove it with `custos passphrase remove --store {}` (it needs {threshold} of the new shares)", store.store.display());
    Ok(())
}

fn rotate(store: StoreArgs, new: NewSharesArgs, operator: OperatorArgs) -> CliResult {
    let operator = operator.operator()?;
    let (threshold, count) = parse_threshold(&new.split).map_err(CliError::usage)?;
    let delivery = Delivery::choose(new.share_dir.as_deref())?;
    let Opened { unsealed, by } = store.open()?;
    let old = unsealed
        .store()
        .unsealers()
        .map_err(keystore_error)?
        .shares
        .ok_or_else(|| CliError::usage("this key store has no shares: use `custos shares add`"))?;
    let set = unsealed
        .prepare_share_set(threshold, count)
        .map_err(keystore_error)?;
    let info = set.info();
    delivery.prepare(&hex::encode(&info.store_id[..4]))?;
    eprintln!(
        "unsealed with {}; handing out the new shares (nothing changes until all are handed out)",
        by.describe()
    );
    let files = deliver(&set, &delivery, &store.store)?;
    let event = CeremonyEvent::SharesRotate {
        retired: ShareSetFact::of(&old, None),
        share_set: ShareSetFact::of(&info, Some(delivery.describe())),
        unsealed_by: by,
    };
    commit_or_discard(&unsealed, &set, &event, &operator, &files)?;
    println!(
        "key store {}: share set {} ({} of {}) retired — its shares no longer work",
        store.store.display(),
        hex::encode(old.set_id),
        old.threshold,
        old.count
    );
    println!(
        "new share set {}: any {threshold} of the {count} shares unseal it",
        hex::encode(info.set_id)
    );
    for f in &files {
        println!("  wrote {}", f.display());
    }
    println!("backups exported before now still open with the old shares: export a new backup, then destroy the old backups and shares");
    Ok(())
}

/// Writes the new set with its log entry; if that fails, the shares just handed out are useless:
/// remove their files and say so (the old unsealers still work).
fn commit_or_discard(
    unsealed: &crate::keystore::Unsealed,
    set: &crate::keystore::NewShareSet,
    event: &CeremonyEvent,
    operator: &ceremony::Operator,
    files: &[PathBuf],
) -> Result<u64, CliError> {
    unsealed
        .commit_share_set(set, false, &ceremony::draft(operator, event))
        .map_err(|e| {
            for f in files {
                let _ = std::fs::remove_file(f);
            }
            CliError::operational(format!(
                "{}; the new shares were NOT saved — destroy any copy of them; the store's unsealers are unchanged",
                keystore_error(e)
            ))
        })
}

fn check(store: PathBuf, share_files: Vec<PathBuf>) -> CliResult {
    let keystore = open_store(&store)?;
    let mut collector = keystore.share_collector().map_err(keystore_error)?;
    println!("{}", set_line(collector.info()));
    let mut failed = 0;
    let inputs: Vec<(String, SecretString)> = if share_files.is_empty() {
        let text = rpassword::prompt_password("Type the share to check (input hidden): ")
            .map_err(|_| CliError::usage("no terminal to prompt on: give --share-file FILE"))?;
        vec![("the share typed".into(), SecretString::new(text))]
    } else {
        share_files
            .iter()
            .map(|p| Ok((format!("share file {}", p.display()), read_secret_file(p)?)))
            .collect::<Result<_, CliError>>()?
    };
    for (label, text) in inputs {
        // A fresh collection per share: each is checked alone, duplicates included.
        collector = keystore.share_collector().map_err(keystore_error)?;
        match collector.offer(&text) {
            Ok(index) => println!(
                "{label}: share {index} of set {} is valid for this store",
                hex::encode(collector.info().set_id)
            ),
            Err(refusal) => {
                failed += 1;
                println!("{label}: REFUSED: {refusal}");
            }
        }
    }
    if failed > 0 {
        return Err(CliError::operational(format!("{failed} share(s) refused")));
    }
    Ok(())
}

fn info(store: PathBuf, json: bool) -> CliResult {
    let keystore = open_store(&store)?;
    let unsealers = keystore.unsealers().map_err(keystore_error)?;
    let store_id = hex::encode(
        unsealers
            .shares
            .as_ref()
            .map(|s| s.store_id)
            .unwrap_or_default(),
    );
    if json {
        let value = serde_json::json!({
            "passphrase": unsealers.passphrase.map(|k| k.to_string()),
            "shares": unsealers.shares.as_ref().map(|s| serde_json::json!({
                "store_id": hex::encode(s.store_id),
                "set": hex::encode(s.set_id),
                "threshold": s.threshold,
                "count": s.count,
                "retired_sets": s.retired.iter().map(hex::encode).collect::<Vec<_>>(),
            })),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("JSON values serialize")
        );
        return Ok(());
    }
    match &unsealers.passphrase {
        Some(kdf) => println!("passphrase: unseals the store ({kdf})"),
        None => println!("passphrase: none"),
    }
    match &unsealers.shares {
        Some(s) => {
            println!(
                "shares: any {} of {} (share set {}, store {store_id})",
                s.threshold,
                s.count,
                hex::encode(s.set_id)
            );
            if !s.retired.is_empty() {
                let retired: Vec<String> = s.retired.iter().map(hex::encode).collect();
                println!(
                    "retired share sets (their shares no longer work): {}",
                    retired.join(", ")
                );
            }
        }
        None => println!("shares: none"),
    }
    Ok(())
}
