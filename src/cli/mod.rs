//! The `custos` command line: the daemon and the admin commands as clap subcommands.
//!
//! One file per command group, each a thin layer: parse arguments, call into the library, print.
//! Errors go to stderr as one sentence; exit codes are 0 ok, 1 operational error, 2 usage.

pub mod dev;
pub mod error;
pub mod mnemonic;
pub mod serve;

use clap::{Parser, Subcommand};

pub use error::{CliError, CliResult};

/// Custos: key custody and signing.
#[derive(Debug, Parser)]
#[command(name = "custos", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a mnemonic before a recovery ceremony (nothing is stored).
    #[command(subcommand)]
    Mnemonic(mnemonic::MnemonicCommand),
    /// Run the gRPC signer (mutual TLS) with a configuration file.
    Serve(serve::ServeArgs),
    /// Development helpers (a ready environment with certificates).
    #[command(subcommand)]
    Dev(dev::DevCommand),
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Mnemonic(command) => mnemonic::run(command),
        Command::Serve(args) => serve::run(args),
        Command::Dev(command) => dev::run(command),
    }
}
