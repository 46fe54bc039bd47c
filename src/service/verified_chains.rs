//! The client certificate chains the trust in force has already accepted: a bounded memo of
//! [`super::trust::ClientTrust::authenticate`], so the chain of an open connection is not
//! verified again (signatures, path building, CRL lookup) at every call.
//!
//! What a verification depends on, and how the memo keeps each:
//! - **the chain**: entries are keyed by the SHA-256 of every certificate of the chain as presented
//!   (leaf first, each length-prefixed), so a different chain is a different entry;
//! - **the revocation set** (CRL, revoked serials and principals): the memo lives in the trust
//!   state it was filled under, and a reload replaces the state — and with it the memo — whole;
//! - **the time**: an entry holds the intersection of the validity periods of every certificate of
//!   the chain, and answers only for a time inside it (webpki's own test: `not_before <= now <=
//!   not_after`); outside it the chain is verified afresh, and refused.
//!
//! Only acceptances are kept; a refused chain is verified (and refused) again each time. The memo
//! holds at most [`CAPACITY`] chains; when full it is emptied (an open connection costs one
//! verification more), so a client presenting endless fresh chains cannot grow it.

use std::collections::HashMap;
use std::sync::Mutex;

use rustls::pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::signing::contract::Principal;

/// The most chains remembered.
pub const CAPACITY: usize = 4096;

/// The digest that names a chain.
pub type ChainId = [u8; 32];

/// What an acceptance established, and for when.
#[derive(Clone, Debug)]
struct Accepted {
    principal: Principal,
    /// Unix seconds: the latest `not_before` of the chain.
    from: u64,
    /// Unix seconds: the earliest `not_after` of the chain.
    until: u64,
}

/// The memo (see the module docs).
#[derive(Debug, Default)]
pub struct VerifiedChains {
    accepted: Mutex<HashMap<ChainId, Accepted>>,
}

/// The name of a chain: SHA-256 over each certificate, length-prefixed, leaf first.
pub fn chain_id(chain: &[CertificateDer<'_>]) -> ChainId {
    let mut h = Sha256::new();
    for cert in chain {
        h.update((cert.len() as u64).to_be_bytes());
        h.update(cert.as_ref());
    }
    h.finalize().into()
}

/// The period in which every certificate of `chain` is valid (unix seconds), if they all parse
/// and the period is not empty.
fn common_validity(chain: &[CertificateDer<'_>]) -> Option<(u64, u64)> {
    let mut from = 0u64;
    let mut until = u64::MAX;
    for der in chain {
        let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
        let validity = cert.validity();
        from = from.max(u64::try_from(validity.not_before.timestamp()).unwrap_or(0));
        until = until.min(u64::try_from(validity.not_after.timestamp()).ok()?);
    }
    (from <= until).then_some((from, until))
}

impl VerifiedChains {
    /// The principal of chain `id` if it was accepted and `now` is inside its validity.
    pub fn get(&self, id: &ChainId, now: UnixTime) -> Option<Principal> {
        let now = now.as_secs();
        let accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        accepted
            .get(id)
            .filter(|a| a.from <= now && now <= a.until)
            .map(|a| a.principal.clone())
    }

    /// Remembers that `chain` (named `id`) was accepted as `principal`.
    pub fn insert(&self, id: ChainId, chain: &[CertificateDer<'_>], principal: &Principal) {
        let Some((from, until)) = common_validity(chain) else {
            return;
        };
        let mut accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        if accepted.len() >= CAPACITY {
            accepted.clear();
        }
        accepted.insert(
            id,
            Accepted {
                principal: principal.clone(),
                from,
                until,
            },
        );
    }

    /// How many chains are remembered (tests).
    pub fn len(&self) -> usize {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Whether none is (tests).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
