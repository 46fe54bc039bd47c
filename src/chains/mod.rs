//! Chain modules, one per chain family: payload -> [`crate::intent::Intent`]; digests to sign;
//! the signed result assembled. Chains see wallets' public data and ask a
//! [`crate::backend::KeyBackend`] for signatures; they never see the key store.

pub mod bitcoin;
pub mod ethereum;
