//! What the key-store commands share: where passphrases come from, opening and unsealing the
//! store with a spinner, and turning key-store errors into one sentence and an exit code.
//!
//! A passphrase comes from `--passphrase-file F`, else the `CUSTOS_PASSPHRASE` environment
//! variable, else an interactive prompt on the terminal (twice when it is new). A store unsealed
//! by Shamir shares takes them from `--share-file F` (repeated), `CUSTOS_SHARE_FILES` or prompts
//! ([`super::unsealer`]). A new passphrase
//! for `passphrase change` comes from `--new-passphrase-file F`, else `CUSTOS_NEW_PASSPHRASE`,
//! else the prompt.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::unsealer::{unseal_store, Opened, ShareArgs};
use super::CliError;
use crate::keystore::{KdfParams, KeyStore, KeystoreError, Unsealed};
use crate::secret::SecretString;
use crate::wallet::Wallet;

/// The environment variable holding the store passphrase.
pub const PASSPHRASE_ENV: &str = "CUSTOS_PASSPHRASE";
/// The environment variable holding the new passphrase for `passphrase change`.
pub const NEW_PASSPHRASE_ENV: &str = "CUSTOS_NEW_PASSPHRASE";
/// The environment variable behind the hidden `--unsafe-kdf-memory-kib`.
pub const UNSAFE_KDF_MEMORY_ENV: &str = "CUSTOS_UNSAFE_KDF_MEMORY_KIB";

/// `--store DIR [--passphrase-file F | --share-file F …]`, shared by the commands that unseal.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The key store directory.
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// File holding the store passphrase (else CUSTOS_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub shares: ShareArgs,
}

impl StoreArgs {
    /// Opens and unseals the store with the passphrase or shares (see [`super::unsealer`]).
    pub fn open(&self) -> Result<Opened, CliError> {
        unseal_store(&self.store, self.passphrase_file.as_deref(), &self.shares)
    }
}

/// `--unsafe-kdf-memory-kib N` (hidden): argon2id memory below the 64 MiB minimum.
#[derive(Debug, Args)]
pub struct UnsafeKdfArgs {
    /// UNSAFE, for tests only: argon2id memory in KiB below the 64 MiB minimum. A store sealed
    /// this way falls to an offline guess of its passphrase far faster.
    #[arg(long, value_name = "KIB", hide = true, env = UNSAFE_KDF_MEMORY_ENV)]
    pub unsafe_kdf_memory_kib: Option<u32>,
}

impl UnsafeKdfArgs {
    /// The parameters for a new passphrase slot: the safe default, unless the unsafe option is set
    /// (then with a warning on stderr).
    pub fn kdf_params(&self) -> Result<KdfParams, CliError> {
        match self.unsafe_kdf_memory_kib {
            None => Ok(KdfParams::default()),
            Some(kib) => {
                eprintln!(
                    "warning: UNSAFE argon2id memory of {kib} KiB (below the 64 MiB minimum): for tests only"
                );
                KdfParams::unsafe_weak(kib, KdfParams::MIN_ITERATIONS).map_err(CliError::usage)
            }
        }
    }
}

/// Reads the store passphrase: `file`, else `CUSTOS_PASSPHRASE`, else a prompt (twice when
/// `confirm_new`, for a passphrase being set).
pub fn read_passphrase(file: Option<&Path>, confirm_new: bool) -> Result<SecretString, CliError> {
    let prompt = if confirm_new {
        "New key store passphrase: "
    } else {
        "Key store passphrase: "
    };
    read_secret(
        file,
        PASSPHRASE_ENV,
        "--passphrase-file",
        prompt,
        confirm_new,
    )
}

/// Reads the new passphrase of `passphrase change`: `file`, else `CUSTOS_NEW_PASSPHRASE`, else a
/// prompt with confirmation.
pub fn read_new_passphrase(file: Option<&Path>) -> Result<SecretString, CliError> {
    read_secret(
        file,
        NEW_PASSPHRASE_ENV,
        "--new-passphrase-file",
        "New key store passphrase: ",
        true,
    )
}

fn read_secret(
    file: Option<&Path>,
    env: &str,
    flag: &str,
    prompt: &str,
    confirm: bool,
) -> Result<SecretString, CliError> {
    let from_env = take_secret_env(env)?;
    let secret = if let Some(path) = file {
        read_secret_file(path)?
    } else if let Some(secret) = from_env {
        secret
    } else {
        let no_terminal = |_| {
            CliError::usage(format!(
                "no passphrase: give {flag} FILE or set {env} (there is no terminal to prompt on)"
            ))
        };
        let first = SecretString::new(rpassword::prompt_password(prompt).map_err(no_terminal)?);
        if confirm {
            let again = SecretString::new(
                rpassword::prompt_password("Repeat the passphrase: ").map_err(no_terminal)?,
            );
            if first != again {
                return Err(CliError::usage("the two passphrases do not match"));
            }
        }
        first
    };
    if secret.is_empty() {
        return Err(CliError::usage("the passphrase is empty"));
    }
    Ok(secret)
}

/// Takes the secret in environment variable `name` out of the process environment: removed from
/// the environment children inherit, and its bytes wiped from the block `/proc/<pid>/environ`
/// shows ([`super::environ`]). `None` when unset. Call it before any thread is started.
pub fn take_secret_env(name: &str) -> Result<Option<SecretString>, CliError> {
    let Some(value) = std::env::var_os(name) else {
        return Ok(None);
    };
    std::env::remove_var(name);
    if let Err(e) = super::environ::wipe_initial(name) {
        // The variable is gone from the live environment; only the copy in the initial block
        // the kernel shows may remain. Say so, without the value.
        eprintln!("warning: could not wipe {name} from /proc/self/environ: {e}");
    }
    let text = value
        .into_string()
        .map_err(|_| CliError::usage(format!("the {name} environment variable is not UTF-8")))?;
    Ok(Some(SecretString::new(text)))
}

/// Reads a secret from a file (one trailing line ending dropped), with an error naming the file.
pub fn read_secret_file(path: &Path) -> Result<SecretString, CliError> {
    SecretString::from_file(path)
        .map_err(|e| CliError::operational(format!("cannot read {}: {e}", path.display())))
}

/// Runs `work` with a spinner and `message` on stderr when stderr is a terminal.
pub fn with_spinner<T>(message: &str, work: impl FnOnce() -> T) -> T {
    if !std::io::stderr().is_terminal() {
        return work();
    }
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(message.to_owned());
    spinner.enable_steady_tick(Duration::from_millis(100));
    let out = work();
    spinner.finish_and_clear();
    out
}

/// One sentence and an exit code for a key-store error: a malformed wallet name is a usage
/// error (2), everything else operational (1).
pub fn keystore_error(error: KeystoreError) -> CliError {
    match error {
        KeystoreError::InvalidWalletName { .. } => CliError::usage(error),
        _ => CliError::operational(error),
    }
}

/// Opens the store (its lock held until the value drops).
pub fn open_store(store: &Path) -> Result<KeyStore, CliError> {
    KeyStore::open(store).map_err(keystore_error)
}

/// Opens the store and unseals it: with the passphrase (a spinner while argon2id runs), or with
/// Shamir shares from `CUSTOS_SHARE_FILES` or prompts when the store has no passphrase.
pub fn open_unsealed(store: &Path, passphrase_file: Option<&Path>) -> Result<Unsealed, CliError> {
    unseal_store(store, passphrase_file, &ShareArgs::default()).map(|o| o.unsealed)
}

/// Opens and unseals the store (passphrase or shares) and reads one wallet.
pub fn open_wallet(
    store: &Path,
    wallet: &str,
    passphrase_file: Option<&Path>,
    shares: &ShareArgs,
) -> Result<Wallet, CliError> {
    unseal_store(store, passphrase_file, shares)?
        .unsealed
        .wallet(wallet)
        .map_err(keystore_error)
}
