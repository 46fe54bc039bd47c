//! Compliance signatures on policy files: the detached signature file, and the check `custos
//! serve`, SIGHUP and `Admin.ReloadPolicy` make before a policy takes effect.
//!
//! A compliance officer signs the policy's canonical hash ([`crate::policy::hash`]: comments,
//! layout and spelling do not change it; meaning does) with `custos policy sign FILE --key K`.
//! The signed statement is, in the encoding of [`super::encoding`]:
//!
//! ```text
//! str("custos/policy/v1") ‖ str(policy hash, "sha256:<64 hex digits>")
//! ```
//!
//! Signatures go into `FILE.sig` beside the policy (TOML):
//!
//! ```toml
//! policy_hash = "sha256:…"          # what the signatures are for
//! [[signatures]]
//! key = "ed25519:…"                 # the officer's public key
//! signature = "…"                   # 64 bytes, hex
//! signer = "dana"                   # a label for people; never trusted
//! ```
//!
//! `custos.toml` pins the officers' keys and a threshold ([`PolicyTrust`]); a policy takes effect
//! only with signatures by at least `threshold` distinct pinned officers over its own hash. A
//! signature by a key that is not pinned, one that does not verify, or one over another version
//! counts for nothing and is named in the refusal.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::encoding::Statement;
use super::keyfile::SecretSigningKey;
use super::keys::PublicKey;

/// The domain of policy statements.
pub const POLICY_DOMAIN: &str = "custos/policy/v1";

/// The bytes a compliance officer signs for a policy hash.
pub fn policy_statement(policy_hash: &str) -> Vec<u8> {
    let mut s = Statement::new(POLICY_DOMAIN).expect("the domain is short");
    s.str(policy_hash).expect("a policy hash is short");
    s.into_bytes()
}

/// Where the signatures of the policy at `policy` are kept: `<file name>.sig` beside it.
pub fn signature_path(policy: &Path) -> PathBuf {
    let mut name = policy
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".sig");
    policy.with_file_name(name)
}

/// One officer's signature, as the file keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySignature {
    /// The officer's public key, canonical text.
    pub key: String,
    /// The signature, hex.
    pub signature: String,
    /// A label for people (never trusted: the key decides who signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
}

/// The detached signature file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    /// The policy hash the signatures are for.
    pub policy_hash: String,
    /// The signatures.
    #[serde(default)]
    pub signatures: Vec<PolicySignature>,
}

/// Why a signature file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureFileError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// Not a signature file.
    #[error("{path}: not a policy signature file: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What the parser said.
        reason: String,
    },
}

impl SignatureFile {
    /// An empty file for `policy_hash`.
    pub fn new(policy_hash: &str) -> Self {
        SignatureFile {
            policy_hash: policy_hash.to_owned(),
            signatures: Vec::new(),
        }
    }

    /// Reads a signature file; `Ok(None)` when there is none.
    pub fn read(path: &Path) -> Result<Option<Self>, SignatureFileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(SignatureFileError::Io {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        toml::from_str(&text)
            .map(Some)
            .map_err(|e| SignatureFileError::Invalid {
                path: path.display().to_string(),
                reason: e.message().trim().to_owned(),
            })
    }

    /// Writes the file (replacing it atomically).
    pub fn write(&self, path: &Path) -> Result<(), SignatureFileError> {
        let io = |source| SignatureFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut text = String::from(
            "# Compliance signatures over the policy's canonical hash (`custos policy sign`).\n",
        );
        text.push_str(&toml::to_string(self).expect("a signature file always serialises"));
        let tmp = path.with_extension("sig.tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Adds `key`'s signature over this file's policy hash (replacing an earlier one by the same
    /// key).
    pub fn sign(&mut self, key: &SecretSigningKey, label: Option<&str>) {
        let public = key.public().to_text();
        let signature = hex::encode(key.sign(&policy_statement(&self.policy_hash)));
        self.signatures.retain(|s| {
            PublicKey::parse(&s.key).map_or(s.key != public, |k| k.to_text() != public)
        });
        self.signatures.push(PolicySignature {
            key: public,
            signature,
            signer: label.map(str::to_owned),
        });
    }
}

/// A pinned compliance officer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Officer {
    /// A name for messages and the audit.
    pub name: String,
    /// The officer's public key.
    pub key: PublicKey,
}

/// Which policies may take effect: signed by `threshold` of `officers`, or — development only —
/// any valid policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyTrust {
    officers: Vec<Officer>,
    threshold: usize,
    allow_unsigned: bool,
}

/// Why a trust configuration makes no sense.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustConfigError {
    /// Threshold outside 1..=officers.
    #[error("threshold {threshold} with {officers} officer key(s): expected 1 to {officers}")]
    Threshold {
        /// Given.
        threshold: usize,
        /// Officers pinned.
        officers: usize,
    },
    /// The same key pinned twice.
    #[error("officers '{0}' and '{1}' have the same key: one key, one officer")]
    DuplicateKey(String, String),
    /// The same name twice.
    #[error("officer name '{0}' is used twice")]
    DuplicateName(String),
}

impl PolicyTrust {
    /// Policies need `threshold` distinct signatures among `officers`.
    pub fn new(officers: Vec<Officer>, threshold: usize) -> Result<Self, TrustConfigError> {
        if threshold == 0 || threshold > officers.len() {
            return Err(TrustConfigError::Threshold {
                threshold,
                officers: officers.len(),
            });
        }
        for (i, a) in officers.iter().enumerate() {
            for b in &officers[..i] {
                if a.key == b.key {
                    return Err(TrustConfigError::DuplicateKey(
                        b.name.clone(),
                        a.name.clone(),
                    ));
                }
                if a.name == b.name {
                    return Err(TrustConfigError::DuplicateName(a.name.clone()));
                }
            }
        }
        Ok(PolicyTrust {
            officers,
            threshold,
            allow_unsigned: false,
        })
    }

    /// Development mode: policies take effect unsigned (said loudly at start and in the audit).
    /// Signatures by `officers`, if any, are still checked and reported.
    pub fn development(officers: Vec<Officer>) -> Self {
        PolicyTrust {
            threshold: officers.len().max(1),
            officers,
            allow_unsigned: true,
        }
    }

    /// Whether unsigned policies are accepted.
    pub fn is_development(&self) -> bool {
        self.allow_unsigned
    }

    /// The pinned officers.
    pub fn officers(&self) -> &[Officer] {
        &self.officers
    }

    /// The threshold.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Checks the signatures of the policy whose canonical hash is `policy_hash`.
    pub fn check(&self, policy_hash: &str, file: Option<&SignatureFile>) -> TrustReport {
        let mut signers: Vec<String> = Vec::new();
        let mut problems = Vec::new();
        match file {
            None => problems.push("there is no signature file".to_owned()),
            Some(f) if f.policy_hash != policy_hash => problems.push(format!(
                "the signature file is for policy {}, not this one: the policy changed after it was signed",
                f.policy_hash
            )),
            Some(_) => {}
        }
        let statement = policy_statement(policy_hash);
        for sig in file.map(|f| f.signatures.as_slice()).unwrap_or_default() {
            let key = match PublicKey::parse(&sig.key) {
                Ok(k) => k,
                Err(e) => {
                    problems.push(format!("a signature names an unreadable key: {e}"));
                    continue;
                }
            };
            let Some(officer) = self.officers.iter().find(|o| o.key == key) else {
                problems.push(format!(
                    "a signature by {} ({}) whose key is not pinned in custos.toml",
                    key.fingerprint(),
                    sig.signer.as_deref().unwrap_or("no label")
                ));
                continue;
            };
            let verified = hex::decode(&sig.signature)
                .ok()
                .is_some_and(|bytes| key.verify(&statement, &bytes).is_ok());
            if !verified {
                problems.push(format!(
                    "the signature by {} does not verify over this policy",
                    officer.name
                ));
            } else if !signers.contains(&officer.name) {
                signers.push(officer.name.clone());
            }
        }
        TrustReport {
            policy_hash: policy_hash.to_owned(),
            missing: self
                .officers
                .iter()
                .filter(|o| !signers.contains(&o.name))
                .map(|o| o.name.clone())
                .collect(),
            signers,
            threshold: self.threshold,
            problems,
            development: self.allow_unsigned,
        }
    }
}

/// What [`PolicyTrust::check`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustReport {
    /// The policy's hash.
    pub policy_hash: String,
    /// Officers with a valid signature.
    pub signers: Vec<String>,
    /// Pinned officers without one.
    pub missing: Vec<String>,
    /// Signatures required.
    pub threshold: usize,
    /// Signatures that count for nothing, and why.
    pub problems: Vec<String>,
    /// Development mode (unsigned policies accepted).
    pub development: bool,
}

impl TrustReport {
    /// Whether the threshold is met.
    pub fn threshold_met(&self) -> bool {
        self.signers.len() >= self.threshold
    }

    /// Whether the policy may take effect.
    pub fn accepted(&self) -> bool {
        self.threshold_met() || self.development
    }

    /// One line for logs and the audit: who signed, or that the policy is unsigned.
    pub fn summary(&self) -> String {
        if self.threshold_met() {
            format!(
                "policy signed by {} ({} of {} required)",
                self.signers.join(", "),
                self.signers.len(),
                self.threshold
            )
        } else {
            format!(
                "policy NOT signed by compliance ({} of {} signatures: {}); DEVELOPMENT MODE \
                 (allow_unsigned_policy): anyone who can write the policy file decides what is signed",
                self.signers.len(),
                self.threshold,
                if self.signers.is_empty() {
                    "none".to_owned()
                } else {
                    self.signers.join(", ")
                }
            )
        }
    }

    /// Why the policy was refused: which keys signed, how many are missing, what did not count.
    pub fn refusal(&self) -> String {
        let short = self.threshold.saturating_sub(self.signers.len());
        let mut out = format!(
            "policy {} has {} valid compliance signature(s), {} required: signed by {}; {} more needed (from {})",
            self.policy_hash,
            self.signers.len(),
            self.threshold,
            if self.signers.is_empty() {
                "nobody".to_owned()
            } else {
                self.signers.join(", ")
            },
            short,
            if self.missing.is_empty() {
                "no other pinned officer".to_owned()
            } else {
                self.missing.join(", ")
            }
        );
        for p in &self.problems {
            out.push_str("; ");
            out.push_str(p);
        }
        out.push_str(". Sign it with `custos policy sign FILE --key K`.");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::keys::Algorithm;

    fn officer(name: &str, alg: Algorithm) -> (Officer, SecretSigningKey) {
        let key = SecretSigningKey::generate(alg).unwrap();
        (
            Officer {
                name: name.into(),
                key: key.public(),
            },
            key,
        )
    }

    #[test]
    fn threshold_of_distinct_pinned_officers() {
        let (dana, dana_key) = officer("dana", Algorithm::Ed25519);
        let (erin, erin_key) = officer("erin", Algorithm::P256);
        let (_, stranger) = officer("mallory", Algorithm::Ed25519);
        let trust = PolicyTrust::new(vec![dana, erin], 2).unwrap();
        let hash = format!("sha256:{}", "ab".repeat(32));

        let none = trust.check(&hash, None);
        assert!(!none.accepted());
        assert!(none
            .refusal()
            .contains("signed by nobody; 2 more needed (from dana, erin)"));

        let mut file = SignatureFile::new(&hash);
        file.sign(&dana_key, Some("dana"));
        file.sign(&dana_key, Some("dana again"));
        file.sign(&stranger, Some("erin"));
        let one = trust.check(&hash, Some(&file));
        assert_eq!(one.signers, ["dana"]);
        assert_eq!(file.signatures.len(), 2, "a key signs once");
        let why = one.refusal();
        assert!(
            why.contains("1 valid compliance signature(s), 2 required"),
            "{why}"
        );
        assert!(why.contains("1 more needed (from erin)"), "{why}");
        assert!(why.contains("not pinned"), "{why}");

        file.sign(&erin_key, None);
        let both = trust.check(&hash, Some(&file));
        assert!(both.accepted(), "{both:?}");
        assert_eq!(
            both.summary(),
            "policy signed by dana, erin (2 of 2 required)"
        );

        // The same signatures over another version count for nothing.
        let other = format!("sha256:{}", "cd".repeat(32));
        let moved = trust.check(&other, Some(&file));
        assert!(moved.signers.is_empty());
        assert!(moved.refusal().contains("changed after it was signed"));

        // One officer's signature copied into the file by hand, under another label, still
        // counts once: two entries of dana's do not make a quorum of two.
        let mut doubled = SignatureFile::new(&hash);
        doubled.sign(&dana_key, Some("dana"));
        let mut copy = doubled.signatures[0].clone();
        copy.signer = Some("erin".into());
        doubled.signatures.push(copy);
        let once = trust.check(&hash, Some(&doubled));
        assert_eq!(once.signers, ["dana"]);
        assert!(!once.accepted(), "{once:?}");
        assert!(once.refusal().contains("1 more needed (from erin)"));

        // A tampered signature does not verify.
        // (A different first digit: writing "00" over digits that already read "00" would
        // change nothing.)
        let first = file.signatures[0].signature.as_bytes()[0];
        let other_digit = if first == b'0' { "1" } else { "0" };
        file.signatures[0]
            .signature
            .replace_range(0..1, other_digit);
        let tampered = trust.check(&hash, Some(&file));
        assert_eq!(tampered.signers.len(), 1);
        assert!(tampered.refusal().contains("does not verify"));
    }

    #[test]
    fn nonsense_configurations_are_refused() {
        let (dana, _) = officer("dana", Algorithm::Ed25519);
        assert!(PolicyTrust::new(vec![dana.clone()], 2).is_err());
        assert!(PolicyTrust::new(vec![dana.clone()], 0).is_err());
        let twin = Officer {
            name: "twin".into(),
            key: dana.key.clone(),
        };
        assert!(matches!(
            PolicyTrust::new(vec![dana, twin], 1),
            Err(TrustConfigError::DuplicateKey(..))
        ));
    }

    #[test]
    fn the_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = signature_path(&dir.path().join("policy.toml"));
        assert!(path.ends_with("policy.toml.sig"));
        assert_eq!(SignatureFile::read(&path).unwrap(), None);
        let (_, key) = officer("dana", Algorithm::P256);
        let mut file = SignatureFile::new("sha256:00");
        file.sign(&key, Some("dana"));
        file.write(&path).unwrap();
        assert_eq!(SignatureFile::read(&path).unwrap(), Some(file));
        std::fs::write(&path, "policy_hash = 1").unwrap();
        assert!(SignatureFile::read(&path).is_err());
    }
}
