//! `custos init`: the key ceremony that creates a store, with a new seed or a restored one.

use std::path::PathBuf;

use clap::Args;

use super::common::{
    keystore_error, read_passphrase, read_secret_file, with_spinner, UnsafeKdfArgs,
};
use super::{CliError, CliResult};
use crate::keys::{MasterKey, MnemonicSecret};
use crate::keystore::{ensure_vacant, seed_id_of, KeyStore};
use crate::secret::SecretString;

/// `custos init --store DIR …`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory of the new key store (must not exist, or be empty).
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// File holding the new store passphrase (else CUSTOS_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Restore this mnemonic (a recovery ceremony) instead of generating a new one.
    #[arg(long, value_name = "FILE")]
    pub import_mnemonic_file: Option<PathBuf>,
    /// File holding a BIP39 passphrase ("25th word") for the seed.
    #[arg(long, value_name = "FILE")]
    pub bip39_passphrase_file: Option<PathBuf>,
    /// Do not show the new mnemonic (for scripted tests; without the paper backup the keys are
    /// lost with the store).
    #[arg(long)]
    pub no_display: bool,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub kdf: UnsafeKdfArgs,
}

/// Runs `custos init`.
pub fn run(args: InitArgs) -> CliResult {
    ensure_vacant(&args.store).map_err(keystore_error)?;
    let kdf = args.kdf.kdf_params()?;
    let (mnemonic, generated) = match &args.import_mnemonic_file {
        Some(path) => {
            let phrase = read_secret_file(path)?;
            let mnemonic = MnemonicSecret::parse(&phrase).map_err(|e| {
                CliError::operational(format!("the mnemonic in {}: {e}", path.display()))
            })?;
            (mnemonic, false)
        }
        None => (
            MnemonicSecret::generate().map_err(CliError::operational)?,
            true,
        ),
    };
    let bip39_passphrase = match &args.bip39_passphrase_file {
        Some(path) => read_secret_file(path)?,
        None => SecretString::new(String::new()),
    };
    let passphrase = read_passphrase(args.passphrase_file.as_deref(), true)?;
    let master = MasterKey::from_seed(&mnemonic.to_seed(&bip39_passphrase))
        .map_err(CliError::operational)?;
    let seed_id = seed_id_of(&master);
    drop(master);
    with_spinner("sealing the key store (argon2id)…", || {
        KeyStore::create(&args.store, &passphrase, kdf, &mnemonic, &bip39_passphrase)
    })
    .map_err(keystore_error)?;

    // Shown only once the store is durably written, so nobody copies down a seed that was not kept.
    if generated && !args.no_display {
        print_mnemonic(&mnemonic);
    }
    println!(
        "created key store {} with seed {seed_id} (master fingerprint {seed_id}), {kdf}",
        args.store.display()
    );
    Ok(())
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
