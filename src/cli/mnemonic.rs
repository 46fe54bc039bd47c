//! `custos mnemonic check`: validates a transcribed mnemonic before a recovery ceremony and prints
//! its master fingerprint, so custodians can compare it with the one recorded at `init`.

use std::path::PathBuf;

use clap::Subcommand;

use super::{CliError, CliResult};
use crate::keys::{MasterKey, MnemonicSecret};
use crate::secret::SecretString;

/// `custos mnemonic …`
#[derive(Debug, Subcommand)]
pub enum MnemonicCommand {
    /// Check the words and checksum of a mnemonic in a file; print its master fingerprint.
    Check {
        /// File holding the mnemonic words.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// File holding the BIP39 passphrase, if the seed has one (it changes the fingerprint).
        #[arg(long, value_name = "FILE")]
        bip39_passphrase_file: Option<PathBuf>,
    },
}

/// Runs `custos mnemonic …`.
pub fn run(command: MnemonicCommand) -> CliResult {
    match command {
        MnemonicCommand::Check {
            file,
            bip39_passphrase_file,
        } => {
            let phrase = SecretString::from_file(&file).map_err(|e| {
                CliError::operational(format!("cannot read {}: {e}", file.display()))
            })?;
            let mnemonic = MnemonicSecret::parse(&phrase).map_err(CliError::operational)?;
            let passphrase = match bip39_passphrase_file {
                Some(path) => SecretString::from_file(&path).map_err(|e| {
                    CliError::operational(format!("cannot read {}: {e}", path.display()))
                })?,
                None => SecretString::new(String::new()),
            };
            let master = MasterKey::from_seed(&mnemonic.to_seed(&passphrase))
                .map_err(CliError::operational)?;
            println!(
                "valid {}-word mnemonic; master fingerprint {}",
                mnemonic.word_count(),
                master.fingerprint()
            );
            Ok(())
        }
    }
}
