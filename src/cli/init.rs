//! `custos init`: the key ceremony that creates a store — with a new seed (optionally with
//! operator dice), a restored mnemonic, or a whole store restored from a backup — unsealed by a
//! passphrase or by M-of-N Shamir shares. The store's ceremony log starts with this ceremony.
//!
//! ```text
//! custos init --store DIR [--operator NAME]                         # passphrase
//! custos init --store DIR --shares 3/5 [--share-dir DIR] [--dice]   # 3 of 5 custodians
//! custos init --store DIR --import-mnemonic-file F [...]            # a recovery ceremony
//! custos init --store DIR --from-backup FILE [--share-file F ...]   # restore, verified
//! ```
//!
//! The store is written before anything secret is shown, so nobody copies down a seed or a share
//! that was not kept; if the display is interrupted, delete the new store and run `init` again.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use clap::Args;

use super::common::{
    keystore_error, read_passphrase, read_secret_file, with_spinner, UnsafeKdfArgs,
};
use super::share_display::{deliver, Delivery};
use super::unsealer::{unseal_open, OperatorArgs, ShareArgs};
use super::{CliError, CliResult};
use crate::ceremony::verify::check_backup;
use crate::ceremony::{
    self, entropy, CeremonyEvent, Operator, SeedFact, ShareSetFact, UnsealersFact, WalletFact,
};
use crate::keys::MnemonicSecret;
use crate::keystore::backup::BackupFile;
use crate::keystore::{ensure_vacant, InitialUnsealer, KeyStore};
use crate::secret::{SecretBytes, SecretString};
use crate::shares::parse_threshold;

/// The most bytes of operator entropy read.
const MAX_DICE_TEXT: u64 = 64 * 1024;

/// `custos init --store DIR …`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory of the new key store (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// File holding the new store passphrase (else CUSTOS_PASSPHRASE, else a prompt); with
    /// --from-backup, the passphrase the backup opens with.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Unseal by Shamir shares instead of a passphrase: M of N custodians (e.g. 3/5).
    #[arg(long, value_name = "M/N", conflicts_with_all = ["passphrase_file", "from_backup"])]
    pub shares: Option<String>,
    /// Write one file per custodian here (0600) instead of showing the shares on the terminal.
    #[arg(long, value_name = "DIR", requires = "shares")]
    pub share_dir: Option<PathBuf>,
    /// Restore this mnemonic (a recovery ceremony) instead of generating a new one.
    #[arg(long, value_name = "FILE", conflicts_with = "from_backup")]
    pub import_mnemonic_file: Option<PathBuf>,
    /// File holding a BIP39 passphrase ("25th word") for the seed.
    #[arg(long, value_name = "FILE", conflicts_with = "from_backup")]
    pub bip39_passphrase_file: Option<PathBuf>,
    /// Mix operator entropy (dice rolls, or any text) into the OS randomness for the new seed:
    /// typed without echo on a terminal, else read from stdin. It can only add entropy.
    #[arg(long, conflicts_with_all = ["import_mnemonic_file", "from_backup"])]
    pub dice: bool,
    /// Restore a store exported by `custos backup export`; it is verified before this says done.
    #[arg(long, value_name = "FILE")]
    pub from_backup: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub restore_shares: ShareArgs,
    /// Do not show the new mnemonic (for scripted tests; without the paper backup the keys are
    /// lost with the store).
    #[arg(long)]
    pub no_display: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub operator: OperatorArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub kdf: UnsafeKdfArgs,
}

/// Runs `custos init`.
pub fn run(args: InitArgs) -> CliResult {
    ensure_vacant(&args.store).map_err(keystore_error)?;
    let operator = args.operator.operator()?;
    if let Some(backup) = &args.from_backup {
        return restore(&args, backup, &operator);
    }
    let shares = args
        .shares
        .as_deref()
        .map(parse_threshold)
        .transpose()
        .map_err(CliError::usage)?;
    let kdf = match shares {
        Some(_) => crate::keystore::KdfParams::default(),
        None => args.kdf.kdf_params()?,
    };
    let delivery = match shares {
        Some(_) => Some(Delivery::choose(args.share_dir.as_deref())?),
        None => None,
    };
    let (mnemonic, source, operator_entropy) = match &args.import_mnemonic_file {
        Some(path) => {
            let phrase = read_secret_file(path)?;
            let mnemonic = MnemonicSecret::parse(&phrase).map_err(|e| {
                CliError::operational(format!("the mnemonic in {}: {e}", path.display()))
            })?;
            (mnemonic, "imported mnemonic", None)
        }
        None if args.dice => {
            let text = read_dice()?;
            let mixed = entropy::with_operator_entropy(&text).map_err(|_| {
                CliError::operational("the operating system's random number generator failed")
            })?;
            let mnemonic =
                MnemonicSecret::from_entropy(SecretBytes::from_slice(mixed.expose_secret()))
                    .map_err(CliError::operational)?;
            (mnemonic, "generated", Some(entropy::describe(&text)))
        }
        None => (
            MnemonicSecret::generate().map_err(CliError::operational)?,
            "generated",
            None,
        ),
    };
    let generated = args.import_mnemonic_file.is_none();
    let bip39_passphrase = match &args.bip39_passphrase_file {
        Some(path) => read_secret_file(path)?,
        None => SecretString::new(String::new()),
    };
    let passphrase;
    let unsealer = match shares {
        Some((threshold, count)) => InitialUnsealer::Shares { threshold, count },
        None => {
            passphrase = read_passphrase(args.passphrase_file.as_deref(), true)?;
            InitialUnsealer::Passphrase {
                passphrase: &passphrase,
                kdf,
            }
        }
    };
    let words = mnemonic.word_count();
    let has_bip39 = !bip39_passphrase.is_empty();
    let delivered = delivery.as_ref().map(Delivery::describe);
    let created = with_spinner("creating the key store…", || {
        KeyStore::create_recorded(
            &args.store,
            &unsealer,
            &mnemonic,
            &bip39_passphrase,
            |facts| {
                ceremony::draft(
                    &operator,
                    &CeremonyEvent::Init {
                        store: hex::encode(facts.store_id),
                        seed_source: source.into(),
                        seed: SeedFact {
                            fingerprint: facts.seed.0.clone(),
                            words: Some(words),
                            bip39_passphrase: Some(has_bip39),
                        },
                        unsealers: UnsealersFact {
                            passphrase: facts.passphrase_kdf.map(|k| k.to_string()),
                            shares: facts
                                .shares
                                .as_ref()
                                .map(|s| ShareSetFact::of(s, delivered.clone())),
                        },
                        operator_entropy: operator_entropy.clone(),
                    },
                )
            },
        )
    })
    .map_err(keystore_error)?;
    let seed_id = created.facts.seed.clone();

    // Shown only once the store is durably written, so nobody copies down a seed that was not kept.
    if generated && !args.no_display {
        print_mnemonic(&mnemonic);
        if matches!(delivery, Some(Delivery::Terminal)) {
            super::share_display::wait_enter(
                "Press Enter once the words are written down; the screen is then cleared for the custodians. ",
            )?;
        }
    }
    drop(mnemonic);
    let mut files = Vec::new();
    if let (Some(set), Some(delivery)) = (&created.shares, &delivery) {
        files = deliver(set, delivery, &args.store)?;
    }
    let unsealed_by = match (&created.facts.shares, &created.facts.passphrase_kdf) {
        (Some(set), _) => format!(
            "{} of {} Shamir shares (share set {})",
            set.threshold,
            set.count,
            hex::encode(set.set_id)
        ),
        (None, Some(kdf)) => format!("a passphrase ({kdf})"),
        (None, None) => "nothing".into(),
    };
    println!(
        "created key store {} with seed {seed_id} (master fingerprint {seed_id}), unsealed by {unsealed_by}",
        args.store.display()
    );
    for f in files {
        println!("  wrote {}", f.display());
    }
    if let Some(e) = &operator_entropy {
        println!(
            "operator entropy: {} characters mixed into the OS randomness (recorded as a count only)",
            e.characters
        );
    }
    println!(
        "ceremony recorded in the store's log (custos ceremony report --store {})",
        args.store.display()
    );
    Ok(())
}

/// Reads operator entropy: hidden on a terminal, else all of stdin (bounded).
fn read_dice() -> Result<SecretString, CliError> {
    let text = if std::io::stdin().is_terminal() {
        SecretString::new(
            rpassword::prompt_password(
                "Operator entropy: type dice rolls (e.g. 99 rolls: 3 6 1 …) or any text, then Enter (hidden): ",
            )
            .map_err(CliError::operational)?,
        )
    } else {
        let mut buf = zeroize::Zeroizing::new(String::new());
        std::io::stdin()
            .take(MAX_DICE_TEXT)
            .read_to_string(&mut buf)
            .map_err(|e| CliError::usage(format!("operator entropy from stdin: {e}")))?;
        SecretString::new(buf.trim_end_matches(['\n', '\r']).to_owned())
    };
    if text.expose_secret().trim().is_empty() {
        return Err(CliError::usage(
            "--dice: no operator entropy was typed (or piped on stdin)",
        ));
    }
    Ok(text)
}

/// `init --from-backup`: restore, unseal the copy with the backup's unsealer, verify everything
/// against the sealed manifest, record, and only then say done. On any failure the new directory
/// is removed.
fn restore(args: &InitArgs, backup: &Path, operator: &Operator) -> CliResult {
    let file = BackupFile::read(backup).map_err(keystore_error)?;
    let existed = args.store.exists();
    let result = (|| {
        let store = file.restore_to(&args.store).map_err(keystore_error)?;
        let opened = unseal_open(
            &store,
            args.passphrase_file.as_deref(),
            &args.restore_shares,
        )?;
        let check = check_backup(&opened.unsealed, &file, backup, &args.store, false)
            .map_err(keystore_error)?;
        if !check.ok() {
            return Err(CliError::operational(format!(
                "the restored store does not match its backup:\n  {}",
                check.problems.join("\n  ")
            )));
        }
        let wallets: Vec<WalletFact> = check.wallets.iter().map(|w| w.wallet.clone()).collect();
        ceremony::record(
            &opened.unsealed,
            operator,
            &CeremonyEvent::Restore {
                store: hex::encode(file.store_id),
                backup_sha256: file.sha256.clone(),
                backup_created_at: file.created_at,
                seeds: check
                    .seeds
                    .iter()
                    .map(|s| SeedFact {
                        fingerprint: s.clone(),
                        words: None,
                        bip39_passphrase: None,
                    })
                    .collect(),
                wallets,
                unsealed_by: opened.by.clone(),
            },
        )
        .map_err(keystore_error)?;
        Ok(check)
    })();
    match result {
        Err(e) => {
            let _ = std::fs::remove_dir_all(&args.store);
            if existed {
                let _ = std::fs::create_dir(&args.store);
            }
            Err(e)
        }
        Ok(check) => {
            println!(
                "restored key store {} from {} (sha256 {}, exported {}) and verified:",
                args.store.display(),
                backup.display(),
                check.sha256,
                crate::policy::eval::format_time(check.created_at)
            );
            println!(
                "  {} records, every one decrypted and checked",
                check.records
            );
            for s in &check.seeds {
                println!("  seed {s}: restored");
            }
            for w in &check.wallets {
                println!(
                    "  wallet {}: {} {} {}, xpub and first address {} match",
                    w.wallet.name,
                    w.wallet.chain,
                    w.wallet.network,
                    w.wallet.path,
                    w.wallet.first_address
                );
            }
            println!("  ceremony log intact; the restore is recorded in it");
            Ok(())
        }
    }
}

/// Prints the words for the paper backup, numbered, four to a line.
fn print_mnemonic(mnemonic: &MnemonicSecret) {
    let phrase = mnemonic.phrase();
    println!(
        "Write down these {} words, in order, on paper; keep them offline. They are shown only once:",
        mnemonic.word_count()
    );
    let words: Vec<&str> = phrase.expose_secret().split(' ').collect();
    for (row, chunk) in words.chunks(4).enumerate() {
        let line: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(i, word)| format!("{:>2}. {word:<10}", row * 4 + i + 1))
            .collect();
        println!("  {}", line.join(" ").trim_end());
    }
    println!();
}
