//! The gRPC edge: tonic services over mutual TLS, a thin adapter over the transport-free core
//! ([`crate::signing`], through the contract in [`crate::signing::contract`]).
//!
//! - [`proto`]: the generated API (`proto/custos/v1/*.proto`) and its descriptor set;
//! - [`tls`]: server and client TLS from PEM files; client certificates are mandatory;
//! - [`trust`]: which client certificates are trusted (CA, CRL, revoked serials and principals),
//!   reloadable, checked at the handshake ([`acceptor`]) and at every call;
//! - [`verified_chains`]: the chains the trust in force accepted, remembered for their validity;
//! - [`identity`]: the caller's [`Principal`](crate::signing::contract::Principal) from its
//!   certificate (clientAuth required; SAN URI, else DNS name);
//! - [`convert`]: protobuf to and from the contract's plain types;
//! - [`signer`], [`outbox`], [`admin`]: the handlers; [`edge`]: what each handler does around
//!   its core call;
//! - [`status`]: the one mapping from errors to gRPC statuses (with the stable code);
//! - [`message_limit`]: the gRPC message size limit, refused with a stable code like the rest;
//! - [`metrics_http`]: the metrics registry served on its own listener;
//! - [`server`]: assembles the services, health and reflection, and runs them;
//! - [`standby`]: a core with nothing behind it, for tests of the transport alone;
//! - [`devcerts`]: a development CA and certificates for `custos dev env` and tests;
//! - [`console`]: the approval console, a web page on its own loopback address.

pub mod acceptor;
pub mod admin;
pub mod console;
pub mod convert;
pub mod devcerts;
pub mod edge;
pub mod identity;
pub mod message_limit;
pub mod metrics_http;
pub mod outbox;
pub mod proto;
pub mod server;
pub mod signer;
pub mod standby;
pub mod status;
pub mod tls;
pub mod trust;
pub mod verified_chains;

pub use server::{start, start_with, start_with_trust, RunningServer, ServeError, ServerOptions};
pub use standby::StandbyCore;
pub use tls::{TlsError, TlsMaterial};
pub use trust::{ClientTrust, Revocation};
