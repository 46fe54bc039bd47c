//! The CLI's error: one sentence for stderr and an exit code (1 operational, 2 usage).

use std::fmt;

/// Exit code for an operational failure (wrong passphrase, corrupt store, I/O).
pub const EXIT_OPERATIONAL: u8 = 1;
/// Exit code for a usage error (bad arguments), as clap uses.
pub const EXIT_USAGE: u8 = 2;

/// A failed command: what to print and how to exit.
#[derive(Debug)]
pub struct CliError {
    /// One sentence, no secrets.
    pub message: String,
    /// Process exit code.
    pub exit_code: u8,
}

impl CliError {
    /// An operational failure (exit 1).
    pub fn operational(message: impl fmt::Display) -> Self {
        CliError {
            message: message.to_string(),
            exit_code: EXIT_OPERATIONAL,
        }
    }

    /// A usage error (exit 2).
    pub fn usage(message: impl fmt::Display) -> Self {
        CliError {
            message: message.to_string(),
            exit_code: EXIT_USAGE,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// What every command returns.
pub type CliResult = Result<(), CliError>;
