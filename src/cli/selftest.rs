//! `custos selftest`: runs the known-answer self-tests ([`crate::selftest`]) and prints each
//! result; exits 1 if any fails. `custos serve` runs the same tests before it serves.

use clap::Args;

use crate::cli::{CliError, CliResult};
use crate::selftest::{run as run_checks, KNOWN_ANSWERS};

/// Arguments of `custos selftest` (none).
#[derive(Debug, Args)]
pub struct SelftestArgs {}

/// Runs the checks and prints one line per check.
pub fn run(_args: SelftestArgs) -> CliResult {
    let report = run_checks(&KNOWN_ANSWERS);
    for check in &report.checks {
        println!("{check}");
    }
    if report.passed() {
        println!("all {} self-tests passed", report.checks.len());
        Ok(())
    } else {
        let failed: Vec<&str> = report.failures().map(|c| c.name).collect();
        Err(CliError::operational(format!(
            "self-test failed: {}",
            failed.join(", ")
        )))
    }
}
