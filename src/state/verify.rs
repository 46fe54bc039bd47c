//! The full check of a state database: every record authenticated, the digest recomputed, the
//! audit chain walked, and (given one) the anchored head found. `custos state verify` prints it;
//! the signing core runs it at unseal and refuses a state that fails.
//!
//! Unlike a read on the hot path, which stops at the first record that fails, this lists every bad
//! record (tree, key, why), so an operator sees the extent of the damage.

use super::anchor::{self, Head};
use super::audit::{self, VerifyOutcome};
use super::engine::Scan;
use super::tree::Tree;
use super::tx::{computed_digest, recorded_digest, State};
use super::StateError;
use crate::secret::Secret32;

/// At most this many bad records are listed (the count goes on).
pub const MAX_LISTED: usize = 1000;

/// One record that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRecord {
    /// The tree.
    pub tree: &'static str,
    /// The key (printable form).
    pub key: String,
    /// Why.
    pub reason: String,
}

/// What [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records per tree.
    pub counts: Vec<(&'static str, u64)>,
    /// Records that fail authentication (the first [`MAX_LISTED`]).
    pub bad: Vec<BadRecord>,
    /// How many failed in all.
    pub bad_count: u64,
    /// `None` if the recorded digest matches the records; else what is wrong.
    pub digest_problem: Option<String>,
    /// The audit chain.
    pub audit: VerifyOutcome,
    /// The anchor check, if an anchor was given: `None` if it holds.
    pub anchor_problem: Option<String>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_intact(&self) -> bool {
        self.bad_count == 0
            && self.digest_problem.is_none()
            && matches!(self.audit, VerifyOutcome::Intact { .. })
            && self.anchor_problem.is_none()
    }

    /// One line per problem (empty when intact).
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .bad
            .iter()
            .map(|b| format!("{}/{}: {}", b.tree, b.key, b.reason))
            .collect();
        if self.bad_count > self.bad.len() as u64 {
            out.push(format!(
                "... and {} more bad records",
                self.bad_count - self.bad.len() as u64
            ));
        }
        out.extend(self.digest_problem.clone());
        if let VerifyOutcome::Broken { message, .. } = &self.audit {
            out.push(format!("audit chain: {message}"));
        }
        out.extend(self.anchor_problem.clone());
        out
    }
}

/// Verifies everything (needs the state unsealed, and the audit key).
pub fn verify(
    state: &State,
    audit_key: &Secret32,
    anchor: Option<Head>,
) -> Result<VerifyReport, StateError> {
    const PAGE: usize = 4096;
    // Every read of the check at one point in time: replicas may be writing meanwhile, and a
    // digest summed over pages read at different moments would not match the recorded one.
    let snapshot = state.snapshot()?;
    let state = &snapshot;
    let auth = state.auth()?;
    let mut counts = Vec::new();
    let mut bad = Vec::new();
    let mut bad_count = 0u64;
    for tree in Tree::ALL {
        let mut n = 0u64;
        let mut scan = Scan::all(tree, PAGE);
        loop {
            let page = state.engine().scan_raw(&scan)?;
            let full = page.len() == PAGE;
            let last = page.last().map(|(k, _)| k.clone());
            for (key, value) in &page {
                n += 1;
                if tree == Tree::Audit {
                    continue;
                }
                if let Err(StateError::Tampered { tree, key, reason }) = auth.open(tree, key, value)
                {
                    bad_count += 1;
                    if bad.len() < MAX_LISTED {
                        bad.push(BadRecord { tree, key, reason });
                    }
                }
            }
            match last {
                Some(k) if full => scan = Scan::after(tree, &k, PAGE),
                _ => break,
            }
        }
        counts.push((tree.name(), n));
    }
    let digest_problem = match recorded_digest(state) {
        Ok(recorded) => {
            let computed = computed_digest(state)?;
            (recorded != computed).then(|| {
                "the digest of all records does not match the recorded one: records were \
                 deleted, injected or rolled back individually"
                    .to_owned()
            })
        }
        Err(e) => Some(format!("the recorded digest cannot be read: {e}")),
    };
    let audit = audit::verify(state, audit_key)?;
    let anchor_problem = match anchor {
        Some(head) => match anchor::check(state, head) {
            Ok(()) => None,
            Err(StateError::Rollback(m)) => Some(m),
            Err(e) => Some(e.to_string()),
        },
        None => None,
    };
    Ok(VerifyReport {
        counts,
        bad,
        bad_count,
        digest_problem,
        audit,
        anchor_problem,
    })
}
