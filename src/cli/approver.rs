//! `custos approver keygen | pubkey`: an approver's (or compliance officer's) signing key.
//!
//! `keygen --out FILE [--algorithm ed25519|p256] [--principal P]` writes a new private key as
//! PKCS#8 PEM, mode 0600, never overwriting a file, and prints only the public key — with the
//! `[approver_keys]` line to put into the policy when a principal is given. The private key is
//! never printed and is zeroized when the command ends. `pubkey --key FILE` prints the public
//! key of an existing file (the console's "import key file" reads the same files).

use std::path::PathBuf;

use clap::Subcommand;

use super::{CliError, CliResult};
use crate::governance::{Algorithm, SecretSigningKey};

/// `custos approver …`
#[derive(Debug, Subcommand)]
pub enum ApproverCommand {
    /// Generate a signing key file (0600) and print its public key.
    Keygen {
        /// Where to write the key (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// ed25519 or p256 (P-256 is what browsers' WebCrypto and hardware keys hold).
        #[arg(long, default_value = "ed25519")]
        algorithm: String,
        /// The principal the key is for: prints the policy line that enrols it.
        #[arg(long, value_name = "PRINCIPAL")]
        principal: Option<String>,
    },
    /// Print the public key of a key file.
    Pubkey {
        /// The key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
    },
}

/// Runs `custos approver …`.
pub fn run(command: ApproverCommand) -> CliResult {
    match command {
        ApproverCommand::Keygen {
            out,
            algorithm,
            principal,
        } => {
            let algorithm = Algorithm::parse(&algorithm).map_err(CliError::usage)?;
            let key = SecretSigningKey::generate(algorithm).map_err(CliError::operational)?;
            key.write_new(&out).map_err(|e| match e {
                crate::governance::keyfile::KeyFileError::Exists { .. } => CliError::usage(e),
                other => CliError::operational(other),
            })?;
            let public = key.public().to_text();
            println!("{public}");
            eprintln!("private key written to {} (0600)", out.display());
            if let Some(p) = principal {
                eprintln!("enrol it in the policy (then have compliance sign the policy):");
                eprintln!("  [approver_keys]");
                eprintln!("  {} = \"{public}\"", toml_key(&p));
            }
            Ok(())
        }
        ApproverCommand::Pubkey { key } => {
            let key = SecretSigningKey::load(&key).map_err(CliError::usage)?;
            println!("{}", key.public());
            Ok(())
        }
    }
}

/// A TOML key for `text` (quoted: principals contain ':' and '/').
pub fn toml_key(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}
