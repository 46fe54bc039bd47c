//! `custos policy …`: check, test, explain, diff and hash policy files, and sign them
//! (compliance tooling; signing is in [`super::policy_sign`]).

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::{CliError, CliResult};
use crate::policy::limits::EmptyLedger;
use crate::policy::tests_file::{run_tests, TestFile};
use crate::policy::{Policy, PolicyRequest};

/// `custos policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file; errors are printed as file:line:column: message.
    Check {
        /// The policy file.
        file: PathBuf,
    },
    /// Run the test cases beside the policy (X.tests.toml, or [policy] tests).
    Test {
        /// The policy file.
        file: PathBuf,
        /// Test file (default: found beside the policy).
        #[arg(long)]
        tests: Option<PathBuf>,
    },
    /// Show the decision on a request and why every rule matched or not.
    Explain {
        /// The policy file.
        file: PathBuf,
        /// The request: {"principal", "at" (RFC 3339 or unix seconds), "intent"}.
        #[arg(long)]
        request: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Describe what changed between two versions of a policy.
    Diff {
        /// The old version.
        old: PathBuf,
        /// The new version.
        new: PathBuf,
    },
    /// Print the canonical hash audit records carry.
    Hash {
        /// The policy file.
        file: PathBuf,
    },
    /// Sign the policy's canonical hash as a compliance officer (adds to FILE.sig).
    Sign {
        /// The policy file.
        file: PathBuf,
        /// The officer's key file (PKCS#8 PEM, from `custos approver keygen`).
        #[arg(long, value_name = "K")]
        key: PathBuf,
        /// A label for people reading the signature file (never trusted).
        #[arg(long, value_name = "NAME")]
        signer: Option<String>,
        /// The signature file (default: FILE.sig).
        #[arg(long, value_name = "FILE")]
        signatures: Option<PathBuf>,
    },
    /// Check the policy's compliance signatures as `custos serve` will.
    Signatures {
        /// The policy file.
        file: PathBuf,
        /// The server configuration pinning the officers' keys and the threshold.
        #[arg(long, value_name = "custos.toml")]
        config: PathBuf,
        /// The signature file (default: [compliance] signatures, else FILE.sig).
        #[arg(long, value_name = "FILE")]
        signatures: Option<PathBuf>,
    },
}

fn load(path: &Path) -> Result<Policy, CliError> {
    Policy::load(path).map_err(|e| {
        CliError::operational(format!(
            "{e}\n{} problem(s) in {}",
            e.errors.len(),
            path.display()
        ))
    })
}

/// Runs `custos policy …`.
pub fn run(command: PolicyCommand) -> CliResult {
    match command {
        PolicyCommand::Check { file } => {
            let p = load(&file)?;
            println!(
                "{}: ok, {} rule(s), {} enrolled approver key(s), {}",
                file.display(),
                p.rules.len(),
                p.approver_keys.values().map(|k| k.len()).sum::<usize>(),
                p.hash()
            );
            if p.allow_unsigned_votes {
                println!(
                    "warning: allow_unsigned_votes = true: votes of approvers without a key count unsigned (development only)"
                );
            }
            Ok(())
        }
        PolicyCommand::Sign {
            file,
            key,
            signer,
            signatures,
        } => super::policy_sign::sign(&file, &key, signer.as_deref(), signatures),
        PolicyCommand::Signatures {
            file,
            config,
            signatures,
        } => super::policy_sign::signatures(&file, &config, signatures),
        PolicyCommand::Hash { file } => {
            println!("{}", load(&file)?.hash());
            Ok(())
        }
        PolicyCommand::Diff { old, new } => {
            let (o, n) = (load(&old)?, load(&new)?);
            let changes = crate::policy::diff::diff(&o, &n);
            println!("{} -> {}", o.hash(), n.hash());
            if changes.is_empty() {
                println!("no change of meaning");
            }
            for c in changes {
                println!("- {c}");
            }
            Ok(())
        }
        PolicyCommand::Explain {
            file,
            request,
            json,
        } => {
            let p = load(&file)?;
            let text = std::fs::read_to_string(&request).map_err(|e| {
                CliError::operational(format!("cannot read {}: {e}", request.display()))
            })?;
            let req: PolicyRequest = serde_json::from_str(&text).map_err(|e| {
                CliError::operational(format!(
                    "{}:{}:{}: {e}",
                    request.display(),
                    e.line(),
                    e.column()
                ))
            })?;
            let explanation = p
                .explain(&req, &EmptyLedger)
                .map_err(CliError::operational)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&explanation).expect("explanations serialize")
                );
            } else {
                println!(
                    "request: {} by {} at {}",
                    req.intent.summary(),
                    req.principal,
                    crate::policy::eval::format_time(req.at)
                );
                print!("{}", explanation.render());
                println!("(limits are evaluated against an empty ledger)");
            }
            Ok(())
        }
        PolicyCommand::Test { file, tests } => {
            let p = load(&file)?;
            let path = tests.unwrap_or_else(|| p.tests_path(&file));
            let text = std::fs::read_to_string(&path).map_err(|e| {
                CliError::operational(format!(
                    "cannot read the test cases {}: {e}",
                    path.display()
                ))
            })?;
            let cases: TestFile = toml::from_str(&text).map_err(|e| {
                let (l, c) = e
                    .span()
                    .map_or((0, 0), |s| crate::policy::parse::line_col(&text, s.start));
                CliError::operational(format!(
                    "{}:{l}:{c}: {}",
                    path.display(),
                    e.message().trim()
                ))
            })?;
            let results = run_tests(&p, &cases).map_err(CliError::operational)?;
            let failed = results.iter().filter(|r| !r.passed).count();
            for r in &results {
                println!(
                    "{} {}: {}",
                    if r.passed { "ok  " } else { "FAIL" },
                    r.name,
                    r.detail
                );
            }
            println!(
                "{} passed, {failed} failed ({})",
                results.len() - failed,
                path.display()
            );
            if failed > 0 {
                return Err(CliError::operational(format!(
                    "{failed} policy test(s) failed"
                )));
            }
            Ok(())
        }
    }
}
