//! Governance people can trust: approvers' votes are signatures by their own keys, and a policy
//! takes effect only with a threshold of compliance officers' signatures. The server records
//! both and can forge neither.
//!
//! Transport-free, like the signing core: no gRPC, no HTTP, no files but key and signature files.
//!
//! - [`encoding`]: the byte encoding every statement is signed in (versioned, domain-separated,
//!   length-prefixed);
//! - [`keys`]: approvers' and officers' public keys (Ed25519, ECDSA P-256) as text, and the
//!   signature check;
//! - [`keyfile`]: private keys in PKCS#8 PEM files (generate, read, sign; zeroized, redacted);
//! - [`intent_text`]: the decoded intent as approvers read it, line by line;
//! - [`vote`]: the vote statement (`custos/vote/v1`);
//! - [`policy_sig`]: compliance signatures on policies (`custos/policy/v1`), the signature file
//!   and the threshold check;
//! - [`login`]: the approval console's sign-in statement (`custos/console-login/v1`);
//! - [`proof`]: the proof file of one request (request, intent, votes, signatures) and its
//!   offline check.
//!
//! `docs/governance.md` describes the formats for an independent implementation.

pub mod encoding;
pub mod intent_text;
pub mod keyfile;
pub mod keys;
pub mod login;
pub mod policy_sig;
pub mod proof;
pub mod vote;

pub use keyfile::SecretSigningKey;
pub use keys::{Algorithm, PublicKey};
pub use vote::{VoteContext, VoteDecision, VoteStatement};
