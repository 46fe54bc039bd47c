//! Which key store a state database belongs to.
//!
//! `meta/identity` holds the key store's id, authenticated under the key derived from that store
//! (like every record). At unseal, [`check_or_init`] finds one of three things: the record is there
//! and authenticates — the state is this store's; it is there and does not — the state belongs to
//! another installation (or was tampered with), and nothing is served from it; it is absent — a
//! new, empty state is adopted, but a state that holds records without an identity is refused
//! (records written before authentication existed, or an identity deleted to hide a transplant).

use super::engine::{abort, Scan};
use super::tree::Tree;
use super::tx::State;
use super::StateError;

/// The `meta` key of the identity record.
pub const IDENTITY_KEY: &[u8] = b"identity";

/// What the check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// The state was this store's already.
    Known,
    /// The state was empty and now names this store.
    Adopted,
}

/// Checks (or, on an empty state, writes) the identity record. Needs the state unsealed.
pub fn check_or_init(state: &State, store_id: &[u8; 16]) -> Result<Identity, StateError> {
    match state.get(Tree::Meta, IDENTITY_KEY) {
        Ok(Some(body)) if body.as_slice() == store_id.as_slice() => Ok(Identity::Known),
        Ok(Some(_)) => Err(StateError::Rollback(
            "the state database names another key store: it belongs to another installation".into(),
        )),
        Err(StateError::Tampered { .. }) => Err(StateError::Rollback(
            "the state database's records do not authenticate under this key store: it belongs \
             to another installation, or was tampered with"
                .into(),
        )),
        Err(e) => Err(e),
        Ok(None) => {
            for tree in Tree::ALL {
                if !state.engine().scan_raw(&Scan::all(tree, 1))?.is_empty() {
                    return Err(StateError::Rollback(format!(
                        "the state database holds records (tree '{}') but no identity: it \
                         predates authenticated state, or its identity was removed",
                        tree.name()
                    )));
                }
            }
            state.transact(|tx| {
                if tx.get(Tree::Meta, IDENTITY_KEY)?.is_some() {
                    return Err(abort(StateError::Storage(
                        "identity written concurrently".into(),
                    )));
                }
                tx.put(Tree::Meta, IDENTITY_KEY, store_id)
            })?;
            state.flush()?;
            Ok(Identity::Adopted)
        }
    }
}
