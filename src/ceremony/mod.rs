//! Key ceremonies as records: who ran what, with which public results.
//!
//! Every ceremony that changes a store or proves something about it appends one entry to the
//! store's ceremony log ([`crate::keystore::ceremony_log`]: hash-chained, keyed with a key
//! derived from the data key, written in the same transaction as the change): init, restore,
//! shares add and rotate, passphrase change and removal, wallet create (CLI and server),
//! unseal and seal on the server (which also go into the server's audit chain), the HSM
//! ceremonies ([`hsm`]: import, keygen, unseal slot added or removed), backup export and verify. Entries are
//! [`CeremonyEvent`]s: ids, fingerprints, xpubs, first addresses, share set ids, thresholds and
//! the indexes of the shares used, file hashes, and the operator named on the command line —
//! never a share, passphrase, mnemonic or entropy.
//!
//! [`report`] turns the verified log into the transcript custodians sign off; [`verify`] holds
//! the backup checks; [`entropy`] mixes operator dice into a new seed.

pub mod entropy;
pub mod event;
pub mod hsm;
pub mod report;
pub mod verify;

pub use event::{
    CeremonyEvent, Contribution, EntropyFact, SeedFact, ShareSetFact, UnsealedBy, UnsealersFact,
    WalletFact,
};
pub use hsm::{HsmImport, HsmKeyFact, HsmKeygen, HsmUnsealSlot, KeyDigest, KeySummary};

use crate::keystore::{CeremonyDraft, KeystoreError, Unsealed};

/// The longest operator name kept.
pub const MAX_OPERATOR: usize = 128;

/// Who runs a ceremony: a name given on the command line (`--operator`), or the environment's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator(String);

impl Operator {
    /// A name as given; refuses empty names, control characters and names above 128 bytes.
    pub fn new(name: &str) -> Result<Self, String> {
        let name = name.trim();
        if name.is_empty() {
            return Err("the operator name is empty".into());
        }
        if name.len() > MAX_OPERATOR {
            return Err(format!(
                "the operator name is longer than {MAX_OPERATOR} bytes"
            ));
        }
        if name.chars().any(char::is_control) {
            return Err("the operator name has control characters".into());
        }
        Ok(Operator(name.to_owned()))
    }

    /// A name for records made without a human (`host`, a server principal); not checked.
    pub fn system(name: &str) -> Self {
        Operator(
            name.chars()
                .filter(|c| !c.is_control())
                .take(MAX_OPERATOR)
                .collect(),
        )
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The log draft of `event` by `operator`, now.
pub fn draft(operator: &Operator, event: &CeremonyEvent) -> CeremonyDraft {
    CeremonyDraft {
        at: now(),
        operator: operator.as_str().to_owned(),
        event: serde_json::to_value(event).expect("ceremony events serialize"),
    }
}

/// Appends `event` to the store's ceremony log; returns its sequence number.
pub fn record(
    unsealed: &Unsealed,
    operator: &Operator,
    event: &CeremonyEvent,
) -> Result<u64, KeystoreError> {
    unsealed.append_ceremony(&draft(operator, event))
}

/// Records an HSM import ceremony (for the PKCS#11 code: call it once the keys are in the token,
/// with their labels and public keys).
pub fn record_hsm_import(
    unsealed: &Unsealed,
    operator: &Operator,
    import: HsmImport,
) -> Result<u64, KeystoreError> {
    record(unsealed, operator, &CeremonyEvent::HsmImport(import))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators() {
        assert_eq!(Operator::new(" alice ").unwrap().as_str(), "alice");
        assert!(Operator::new("").is_err());
        assert!(Operator::new("a\u{7}b").is_err());
        assert!(Operator::new(&"x".repeat(129)).is_err());
        assert_eq!(Operator::system("a\nb").as_str(), "ab");
    }

    #[test]
    fn events_round_trip_through_json() {
        let events = vec![
            CeremonyEvent::Seal {
                place: "server".into(),
            },
            CeremonyEvent::HsmImport(HsmImport {
                token: "custos".into(),
                module: None,
                keys: vec![HsmKeyFact {
                    label: "k1".into(),
                    wallet: Some("hot".into()),
                    path: Some("m/84'/0'/0'/0/0".into()),
                    public_key: "02ab".into(),
                }],
                ..HsmImport::default()
            }),
            CeremonyEvent::HsmUnsealSlotRemove(HsmUnsealSlot {
                token: "custos".into(),
                module: "/usr/lib/softhsm/libsofthsm2.so".into(),
                key_label: "custos-unseal/00".into(),
                key_destroyed: Some(true),
                unsealed_by: UnsealedBy::passphrase(),
            }),
            CeremonyEvent::PassphraseRemove {
                unsealed_by: UnsealedBy {
                    method: "shares".into(),
                    share_indexes: vec![1, 3],
                    share_set: Some("7be1".into()),
                },
            },
        ];
        for event in events {
            let value = serde_json::to_value(&event).unwrap();
            assert_eq!(value["event"], event.name());
            let back: CeremonyEvent = serde_json::from_value(value).unwrap();
            assert_eq!(back, event);
        }
    }
}
