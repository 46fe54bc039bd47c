//! `custos backup export | verify`: backups of a store, and the proof that they restore it.
//!
//! ```text
//! custos backup export --store DIR --out FILE                  # encrypted copy of the store
//! custos backup verify --store DIR --mnemonic-file F           # the paper words restore it
//! custos backup verify --store DIR --backup FILE               # the file restores it exactly
//! custos backup verify --store DIR --share-file F …            # these shares restore it
//! custos backup verify --backup FILE --share-file F …          # the file, on another machine
//! ```
//!
//! Every check prints each seed and wallet (fingerprint, xpub, first address) and whether it
//! matches — never a secret — and exits 1 on any difference. Export and verify are recorded in
//! the store's ceremony log.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::common::{keystore_error, read_secret_file, StoreArgs};
use super::unsealer::{unseal_open, Opened, OperatorArgs, ShareArgs};
use super::{CliError, CliResult};
use crate::ceremony::verify::{check_backup, check_mnemonic, BackupCheck, WalletCheck};
use crate::ceremony::{self, CeremonyEvent, UnsealedBy, WalletFact};
use crate::keys::MnemonicSecret;
use crate::keystore::backup::BackupFile;
use crate::secret::SecretString;

/// `custos backup …`
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Write an encrypted copy of the whole store (it opens with the store's current unsealers).
    Export {
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
        /// The file to write (0600; refused if it exists).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        #[allow(missing_docs)]
        operator: OperatorArgs,
    },
    /// Prove that a mnemonic, a backup file or a threshold of shares restores exactly the store.
    Verify(VerifyArgs),
}

/// Arguments of `custos backup verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The key store (omit it to check a backup file alone).
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// File holding the store passphrase (or the backup's, without --store).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub shares: ShareArgs,
    /// The paper backup: a file holding the mnemonic.
    #[arg(long, value_name = "FILE", conflicts_with = "backup")]
    pub mnemonic_file: Option<PathBuf>,
    /// Type the mnemonic at a prompt (hidden) instead of a file.
    #[arg(long, conflicts_with_all = ["backup", "mnemonic_file"])]
    pub mnemonic_prompt: bool,
    /// File holding the BIP39 passphrase of the mnemonic, if it has one.
    #[arg(long, value_name = "FILE")]
    pub bip39_passphrase_file: Option<PathBuf>,
    /// A file written by `custos backup export`.
    #[arg(long, value_name = "FILE")]
    pub backup: Option<PathBuf>,
    /// JSON instead of lines.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub operator: OperatorArgs,
}

/// Runs `custos backup …`.
pub fn run(command: BackupCommand) -> CliResult {
    match command {
        BackupCommand::Export {
            store,
            out,
            operator,
        } => export(&store, &out, &operator),
        BackupCommand::Verify(args) => verify(&args),
    }
}

fn export(store: &StoreArgs, out: &Path, operator: &OperatorArgs) -> CliResult {
    let operator = operator.operator()?;
    if out.exists() {
        return Err(CliError::usage(format!(
            "{} exists: refusing to overwrite it",
            out.display()
        )));
    }
    let Opened { unsealed, by } = store.open()?;
    let (bytes, manifest) = unsealed
        .export_backup(ceremony::now())
        .map_err(keystore_error)?;
    write_new_private(out, &bytes)?;
    // Read back and parsed before it is recorded: what was written is a valid backup.
    let file = BackupFile::read(out).map_err(keystore_error)?;
    unsealed.open_manifest(&file, out).map_err(keystore_error)?;
    ceremony::record(
        &unsealed,
        &operator,
        &CeremonyEvent::BackupExport {
            file: out.display().to_string(),
            sha256: file.sha256.clone(),
            records: file.records.len(),
            seeds: manifest.seeds.clone(),
            wallets: manifest.wallets.iter().map(|w| w.name.clone()).collect(),
            unsealed_by: by,
        },
    )
    .map_err(keystore_error)?;
    println!(
        "wrote {} ({} bytes, sha256 {}): {} records, seeds {}, {} wallet(s)",
        out.display(),
        bytes.len(),
        file.sha256,
        file.records.len(),
        manifest.seeds.join(", "),
        manifest.wallets.len()
    );
    let unsealers = unsealed.store().unsealers().map_err(keystore_error)?;
    if let Some(set) = &unsealers.shares {
        println!(
            "it opens with {} of the {} shares of set {}{}",
            set.threshold,
            set.count,
            hex::encode(set.set_id),
            if unsealers.passphrase.is_some() {
                ", or the passphrase"
            } else {
                ""
            }
        );
    } else {
        println!("it opens with the store's passphrase");
    }
    println!(
        "check it: custos backup verify --store {} --backup {}",
        store.store.display(),
        out.display()
    );
    Ok(())
}

/// Writes `bytes` to a new file, 0600, durably: to a temporary name first, then renamed.
fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let io =
        |e: std::io::Error| CliError::operational(format!("cannot write {}: {e}", path.display()));
    let tmp = path.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = options.open(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    if path.exists() {
        let _ = std::fs::remove_file(&tmp);
        return Err(CliError::usage(format!(
            "{} appeared meanwhile",
            path.display()
        )));
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// A scratch directory for a restored copy (only encrypted records land there), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, CliError> {
        let mut suffix = [0u8; 8];
        getrandom::getrandom(&mut suffix)
            .map_err(|_| CliError::operational("the OS random number generator failed"))?;
        Ok(Scratch(std::env::temp_dir().join(format!(
            "custos-backup-check-{}",
            hex::encode(suffix)
        ))))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn verify(args: &VerifyArgs) -> CliResult {
    let operator = args.operator.operator()?;
    let Some(store_dir) = &args.store else {
        return verify_file_alone(args);
    };
    let store = StoreArgs {
        store: store_dir.clone(),
        passphrase_file: args.passphrase_file.clone(),
        shares: args.shares.clone(),
    };
    let Opened { unsealed, by } = store.open()?;
    let (evidence, sha, seeds, wallets, ok) =
        if args.mnemonic_file.is_some() || args.mnemonic_prompt {
            let phrase = match &args.mnemonic_file {
                Some(path) => read_secret_file(path)?,
                None => SecretString::new(
                    rpassword::prompt_password("Mnemonic (words separated by spaces; hidden): ")
                        .map_err(|_| {
                            CliError::usage("no terminal to prompt on: give --mnemonic-file")
                        })?,
                ),
            };
            let mnemonic = MnemonicSecret::parse(&phrase)
                .map_err(|e| CliError::operational(format!("the mnemonic: {e}")))?;
            drop(phrase);
            let bip39 = match &args.bip39_passphrase_file {
                Some(p) => read_secret_file(p)?,
                None => SecretString::new(String::new()),
            };
            let check = check_mnemonic(&unsealed, &mnemonic, &bip39).map_err(keystore_error)?;
            if args.json {
                println!("{}", mnemonic_json(&check));
            } else {
                println!(
                    "mnemonic ({} words): master fingerprint {}",
                    check.words, check.fingerprint
                );
                if check.seed_matches {
                    println!(
                        "  seed {}: in the store, same master key",
                        check.fingerprint
                    );
                } else {
                    println!(
                        "  seed {}: NOT a seed of this store (its seeds: {})",
                        check.fingerprint,
                        unsealed
                            .seed_ids()
                            .map_err(keystore_error)?
                            .iter()
                            .map(|s| s.0.clone())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                print_wallets(&check.wallets);
                for other in &check.other_seeds {
                    println!(
                        "  seed {other}: another seed of the store, not restored by this mnemonic"
                    );
                }
            }
            let ok = check.ok();
            (
                "mnemonic".to_owned(),
                None,
                if ok {
                    vec![check.fingerprint.clone()]
                } else {
                    Vec::new()
                },
                check.wallets,
                ok,
            )
        } else if let Some(path) = &args.backup {
            let file = BackupFile::read(path).map_err(keystore_error)?;
            let scratch = Scratch::new()?;
            let check =
                check_backup(&unsealed, &file, path, &scratch.0, true).map_err(keystore_error)?;
            print_backup(&check, args.json);
            let ok = check.ok();
            (
                "backup file".to_owned(),
                Some(check.sha256.clone()),
                check.seeds.clone(),
                check.wallets,
                ok,
            )
        } else {
            // The unsealer alone: unsealing worked; now every record must decrypt and check.
            let report = unsealed.verify().map_err(keystore_error)?;
            let wallets: Vec<WalletCheck> = report
                .wallets
                .iter()
                .map(|w| WalletCheck {
                    wallet: WalletFact::from(w),
                    xpub_matches: true,
                    first_address_matches: true,
                })
                .collect();
            let seeds: Vec<String> = report.seeds.iter().map(|s| s.id.0.clone()).collect();
            if !args.json {
                println!(
                    "{} open the store: every record decrypted and checked",
                    by.describe()
                );
                for s in &seeds {
                    println!("  seed {s}: restored (its master fingerprint matches its id)");
                }
                print_wallets(&wallets);
            } else {
                println!(
                    "{}",
                    serde_json::json!({ "evidence": by.method, "ok": true, "seeds": seeds,
                    "wallets": wallets.iter().map(wallet_json).collect::<Vec<_>>() })
                );
            }
            (by.method.clone(), None, seeds, wallets, true)
        };
    if !ok {
        return Err(CliError::operational(format!(
            "the {evidence} does NOT restore this store exactly (see above)"
        )));
    }
    ceremony::record(
        &unsealed,
        &operator,
        &CeremonyEvent::BackupVerify {
            evidence: evidence.clone(),
            backup_sha256: sha,
            seeds: seeds.clone(),
            wallets: wallets.iter().map(|w| w.wallet.clone()).collect(),
            unsealed_by: by,
        },
    )
    .map_err(keystore_error)?;
    if !args.json {
        println!(
            "ok: the {evidence} restores exactly seed(s) {} and all {} wallet(s) on them; recorded in the ceremony log",
            seeds.join(", "),
            wallets.len()
        );
    }
    Ok(())
}

/// A backup file checked on its own: restored into a scratch directory, unsealed with the
/// backup's own unsealer, every record and the manifest checked. Nothing is recorded (there is
/// no store to record in).
fn verify_file_alone(args: &VerifyArgs) -> CliResult {
    let Some(path) = &args.backup else {
        return Err(CliError::usage(
            "give --store DIR (with --mnemonic-file, --backup or shares), or --backup FILE alone",
        ));
    };
    let file = BackupFile::read(path).map_err(keystore_error)?;
    let scratch = Scratch::new()?;
    let copy = file.restore_to(&scratch.0).map_err(keystore_error)?;
    let Opened { unsealed, by } =
        unseal_open(&copy, args.passphrase_file.as_deref(), &args.shares)?;
    let check = check_backup(&unsealed, &file, path, &scratch.0, false).map_err(keystore_error)?;
    print_backup(&check, args.json);
    drop(unsealed);
    drop(copy);
    if !check.ok() {
        return Err(CliError::operational(
            "the backup does NOT restore what it says it holds (see above)",
        ));
    }
    if !args.json {
        println!(
            "ok: backup {} opens with {} and restores store {} exactly as exported",
            path.display(),
            UnsealedBy::describe(&by),
            hex::encode(file.store_id)
        );
    }
    Ok(())
}

fn wallet_json(w: &WalletCheck) -> serde_json::Value {
    serde_json::json!({
        "name": w.wallet.name,
        "chain": w.wallet.chain,
        "network": w.wallet.network,
        "path": w.wallet.path,
        "seed": w.wallet.seed,
        "xpub": w.wallet.xpub,
        "first_address": w.wallet.first_address,
        "xpub_matches": w.xpub_matches,
        "first_address_matches": w.first_address_matches,
    })
}

fn mnemonic_json(check: &crate::ceremony::verify::MnemonicCheck) -> serde_json::Value {
    serde_json::json!({
        "evidence": "mnemonic",
        "ok": check.ok(),
        "fingerprint": check.fingerprint,
        "words": check.words,
        "seed_matches": check.seed_matches,
        "wallets": check.wallets.iter().map(wallet_json).collect::<Vec<_>>(),
        "other_seeds": check.other_seeds,
    })
}

fn print_wallets(wallets: &[WalletCheck]) {
    if wallets.is_empty() {
        println!("  no wallets on it");
    }
    for w in wallets {
        let mark = |ok: bool| if ok { "matches" } else { "DIFFERS" };
        println!(
            "  wallet {}: {} {} {}, seed {}",
            w.wallet.name, w.wallet.chain, w.wallet.network, w.wallet.path, w.wallet.seed
        );
        println!("    xpub {} — {}", w.wallet.xpub, mark(w.xpub_matches));
        println!(
            "    first address {} — {}",
            w.wallet.first_address,
            mark(w.first_address_matches)
        );
    }
}

fn print_backup(check: &BackupCheck, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({
                "evidence": "backup file",
                "ok": check.ok(),
                "sha256": check.sha256,
                "created_at": check.created_at,
                "records": check.records,
                "seeds": check.seeds,
                "wallets": check.wallets.iter().map(wallet_json).collect::<Vec<_>>(),
                "unsealers": check.unsealers,
                "problems": check.problems,
                "notes": check.notes,
            })
        );
        return;
    }
    println!(
        "backup sha256 {}, exported {}: {} records",
        check.sha256,
        crate::policy::eval::format_time(check.created_at),
        check.records
    );
    for s in &check.seeds {
        println!("  seed {s}: restored");
    }
    print_wallets(&check.wallets);
    if let Some(k) = &check.unsealers.passphrase {
        println!("  opens with: the passphrase it had at export ({k})");
    }
    if let Some(s) = &check.unsealers.shares {
        println!(
            "  opens with: {} of the {} shares of set {}",
            s.threshold, s.count, s.set
        );
    }
    for n in &check.notes {
        println!("  note: {n}");
    }
    for p in &check.problems {
        println!("  PROBLEM: {p}");
    }
}
