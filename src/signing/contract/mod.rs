//! The contract between the edges and the transport-free signing core.
//!
//! An edge — the gRPC handlers in `crate::service`, the host commands in `crate::cli` — establishes
//! who is calling (a [`Principal`]), translates its own request format into the plain types of
//! [`model`], calls one [`SignerCore`] method and translates the answer back. A [`CoreError`]
//! carries a stable code that the edge maps to its own status (gRPC: `crate::service::status`).
//! Nothing here knows protobuf, TLS or HTTP; the edge depends on this module, never the other way.
//!
//! - [`core`]: the [`SignerCore`] trait, [`Privilege`]s and the [`AccessMap`] that grants them;
//! - [`error`]: [`CoreError`] and its stable codes;
//! - [`model`]: requests and answers (sign, approvals, outbox, admin) in plain Rust;
//! - [`principal`]: the authenticated caller.

pub mod core;
pub mod error;
pub mod model;
pub mod principal;

pub use self::core::{AccessMap, Privilege, SignerCore};
pub use error::{CoreError, CoreResult};
pub use model::*;
pub use principal::{Principal, PrincipalSource, LOCAL_SCHEME};
