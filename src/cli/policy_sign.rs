//! `custos policy sign | signatures`: compliance officers' signatures on a policy file.
//!
//! `sign FILE --key K [--signer NAME]` validates the policy, signs its canonical hash with the
//! officer's key file and adds the signature to `FILE.sig` (replacing an earlier one by the same
//! key; a file for another version of the policy is started afresh, and says so).
//! `signatures FILE --config custos.toml` checks them as `custos serve` will: which pinned
//! officers signed, how many are missing (exit 1 when the threshold is not met).

use std::path::{Path, PathBuf};

use super::{CliError, CliResult};
use crate::config::Config;
use crate::governance::policy_sig::{signature_path, SignatureFile};
use crate::governance::SecretSigningKey;
use crate::policy::Policy;

fn load(path: &Path) -> Result<Policy, CliError> {
    Policy::load(path).map_err(CliError::operational)
}

/// `custos policy sign`.
pub fn sign(
    file: &Path,
    key: &Path,
    signer: Option<&str>,
    signatures: Option<PathBuf>,
) -> CliResult {
    let policy = load(file)?;
    let hash = policy.hash();
    let key = SecretSigningKey::load(key).map_err(CliError::usage)?;
    let path = signatures.unwrap_or_else(|| signature_path(file));
    let mut sigs = match SignatureFile::read(&path).map_err(CliError::operational)? {
        Some(f) if f.policy_hash == hash => f,
        Some(f) => {
            eprintln!(
                "{} held signatures for another version ({}); starting afresh for {hash}",
                path.display(),
                f.policy_hash
            );
            SignatureFile::new(&hash)
        }
        None => SignatureFile::new(&hash),
    };
    sigs.sign(&key, signer);
    sigs.write(&path).map_err(CliError::operational)?;
    println!(
        "{}: {hash} signed by {} ({} signature(s) in {})",
        file.display(),
        key.public().fingerprint(),
        sigs.signatures.len(),
        path.display()
    );
    Ok(())
}

/// `custos policy signatures`.
pub fn signatures(file: &Path, config: &Path, signatures: Option<PathBuf>) -> CliResult {
    let policy = load(file)?;
    let config = Config::load(config).map_err(CliError::usage)?;
    let trust = config.policy_trust();
    let path = signatures
        .or_else(|| config.policy_signatures())
        .unwrap_or_else(|| signature_path(file));
    let sigs = SignatureFile::read(&path).map_err(CliError::operational)?;
    let report = trust.check(&policy.hash(), sigs.as_ref());
    if report.threshold_met() {
        println!("{}: {}", file.display(), report.summary());
        for p in &report.problems {
            println!("  ignored: {p}");
        }
        Ok(())
    } else if report.development {
        println!("{}: {}", file.display(), report.summary());
        Ok(())
    } else {
        Err(CliError::operational(report.refusal()))
    }
}
