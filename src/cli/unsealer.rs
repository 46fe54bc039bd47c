//! Unsealing a store for an offline command: with the passphrase, or with a threshold of Shamir
//! shares from files and prompts — each share checked the moment it is given.
//!
//! Shares come from `--share-file F` (repeat it, one file per custodian), else from the
//! `CUSTOS_SHARE_FILES` environment variable (paths separated by `:`), else — when the store has
//! no passphrase, or with `--with-shares` — from prompts on the terminal, one custodian after the
//! other, input hidden. A refused share names itself and why (mistyped and in which group,
//! another store's, a retired set's, forged, a duplicate); at a prompt the custodian simply
//! tries again, a refused file stops the command. Fewer shares than the threshold unseal
//! nothing.

use std::path::{Path, PathBuf};

use clap::Args;

use super::common::{keystore_error, open_store, read_passphrase, read_secret_file, with_spinner};
use super::CliError;
use crate::ceremony::{Operator, UnsealedBy};
use crate::keystore::{KeyStore, Unsealed};
use crate::secret::SecretString;
use crate::shares::{Collector, ShareSetInfo};

/// The environment variable listing share files (separated by `:`).
pub const SHARE_FILES_ENV: &str = "CUSTOS_SHARE_FILES";
/// The environment variable naming the operator.
pub const OPERATOR_ENV: &str = "CUSTOS_OPERATOR";

/// `--share-file F …` and `--with-shares`, for every command that unseals a store.
#[derive(Clone, Debug, Default, Args)]
pub struct ShareArgs {
    /// A file holding one Shamir share; repeat for each custodian's file (else CUSTOS_SHARE_FILES,
    /// else prompts when the store is unsealed by shares).
    #[arg(long = "share-file", value_name = "FILE")]
    pub share_files: Vec<PathBuf>,
    /// Unseal with shares typed at prompts even though the store also has a passphrase.
    #[arg(long)]
    pub with_shares: bool,
}

impl ShareArgs {
    fn files(&self) -> Result<Vec<PathBuf>, CliError> {
        if !self.share_files.is_empty() {
            return Ok(self.share_files.clone());
        }
        match std::env::var_os(SHARE_FILES_ENV) {
            Some(v) => Ok(std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()),
            None => Ok(Vec::new()),
        }
    }
}

/// `--operator NAME`, for every command that records a ceremony.
#[derive(Clone, Debug, Default, Args)]
pub struct OperatorArgs {
    /// Who runs this ceremony, for the ceremony log (else CUSTOS_OPERATOR, else the system user).
    #[arg(long, value_name = "NAME", env = OPERATOR_ENV)]
    pub operator: Option<String>,
}

impl OperatorArgs {
    /// The operator: as given, else the system user (marked as such).
    pub fn operator(&self) -> Result<Operator, CliError> {
        match &self.operator {
            Some(name) => Operator::new(name).map_err(CliError::usage),
            None => {
                let user = std::env::var("USER")
                    .or_else(|_| std::env::var("LOGNAME"))
                    .unwrap_or_else(|_| "unknown".into());
                Ok(Operator::system(&format!(
                    "{user} (system user; no --operator given)"
                )))
            }
        }
    }
}

/// A store unsealed for a command, and how.
#[derive(Debug)]
pub struct Opened {
    /// The unsealed store.
    pub unsealed: Unsealed,
    /// How it was unsealed (for the ceremony log).
    pub by: UnsealedBy,
}

/// Opens and unseals `store`: shares when files are given (or asked for, or the store has no
/// passphrase), else the passphrase.
pub fn unseal_store(
    store: &Path,
    passphrase_file: Option<&Path>,
    shares: &ShareArgs,
) -> Result<Opened, CliError> {
    let keystore = open_store(store)?;
    unseal_open(&keystore, passphrase_file, shares)
}

/// [`unseal_store`] for a store already open.
pub fn unseal_open(
    keystore: &KeyStore,
    passphrase_file: Option<&Path>,
    shares: &ShareArgs,
) -> Result<Opened, CliError> {
    let unsealers = keystore.unsealers().map_err(keystore_error)?;
    let files = shares.files()?;
    let by_shares = !files.is_empty() || shares.with_shares || unsealers.passphrase.is_none();
    if !by_shares {
        let passphrase = read_passphrase(passphrase_file, false)?;
        let unsealed = with_spinner("unsealing the key store (argon2id)…", || {
            keystore.unseal(&passphrase)
        })
        .map_err(keystore_error)?;
        return Ok(Opened {
            unsealed,
            by: UnsealedBy::passphrase(),
        });
    }
    if passphrase_file.is_some() && unsealers.passphrase.is_none() {
        return Err(CliError::usage(
            "this key store has no passphrase: it is unsealed by Shamir shares (give --share-file)",
        ));
    }
    let mut collector = keystore.share_collector().map_err(keystore_error)?;
    for path in &files {
        if collector.progress().complete() {
            eprintln!(
                "share file {}: not needed (the threshold is met); not read",
                path.display()
            );
            continue;
        }
        offer_file(&mut collector, path)?;
    }
    if !collector.progress().complete() {
        prompt_shares(&mut collector, !files.is_empty())?;
    }
    let indexes = collector.progress().indexes;
    let unsealed = keystore
        .unseal_with_shares(&collector)
        .map_err(keystore_error)?;
    Ok(Opened {
        by: UnsealedBy::shares(indexes, collector.info()),
        unsealed,
    })
}

/// Offers the share in `path`; a refusal names the file and the share.
pub fn offer_file(collector: &mut Collector, path: &Path) -> Result<u8, CliError> {
    let text = read_secret_file(path)?;
    collector.offer(&text).map_err(|refusal| {
        CliError::operational(format!("share file {}: {refusal}", path.display()))
    })
}

/// One line naming the share set, for prompts.
pub fn set_line(info: &ShareSetInfo) -> String {
    format!(
        "This key store ({}…) is unsealed by {} of {} Shamir shares (share set {}).",
        hex::encode(&info.store_id[..4]),
        info.threshold,
        info.count,
        hex::encode(info.set_id)
    )
}

/// Prompts for shares on the terminal until the threshold is met: one custodian after the other,
/// input hidden; a refused share is named and may be typed again.
pub fn prompt_shares(collector: &mut Collector, after_files: bool) -> Result<(), CliError> {
    let info = collector.info().clone();
    let progress = collector.progress();
    let no_terminal = |_| {
        CliError::usage(format!(
            "{} {} given; give --share-file FILE for each share (there is no terminal to prompt on)",
            set_line(&info),
            progress
        ))
    };
    eprintln!("{}", set_line(&info));
    if after_files {
        eprintln!("From the files: {progress}.");
    }
    let limit = 2 * usize::from(info.threshold) + 3;
    let mut refused = 0;
    let mut entry = 0;
    while !collector.progress().complete() {
        entry += 1;
        let given = collector.progress().given();
        let prompt = format!(
            "Custodian {} of {}: type your share (input hidden; empty line to stop): ",
            given + 1,
            info.threshold
        );
        let text = SecretString::new(rpassword::prompt_password(prompt).map_err(no_terminal)?);
        if text.expose_secret().trim().is_empty() {
            return Err(CliError::operational(format!(
                "stopped with {}: the store stays sealed",
                collector.progress()
            )));
        }
        match collector.offer(&text) {
            Ok(index) => eprintln!("  accepted share {index} — {}", collector.progress()),
            Err(refusal) => {
                refused += 1;
                eprintln!("  refused (entry {entry}): {refusal}");
                if refused >= limit {
                    return Err(CliError::operational(format!(
                        "{refused} shares refused: stopping; the store stays sealed"
                    )));
                }
            }
        }
    }
    Ok(())
}
