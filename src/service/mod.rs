//! The gRPC edge: tonic services over mutual TLS, a thin adapter over the transport-free core.
//!
//! - [`proto`]: the generated API (`proto/custos/v1/*.proto`) and its descriptor set;
//! - [`tls`]: server and client TLS from PEM files; client certificates are mandatory;
//! - [`principal`]: the caller's identity from its certificate (SAN URI, else DNS name);
//! - [`core`]: the [`SignerCore`] trait the handlers delegate to, its error type, and
//!   [`StandbyCore`] (status and seal state, nothing else) until the signing pipeline is wired;
//! - [`model`]: the core's plain request and result types; [`convert`]: to and from protobuf;
//! - [`signer`], [`outbox`], [`admin`]: the handlers; [`edge`]: what each handler does around
//!   its core call;
//! - [`status`]: the one mapping from errors to gRPC statuses (with the stable code);
//! - [`metrics`]: Prometheus exposition on its own listener;
//! - [`server`]: assembles the services, health and reflection, and runs them;
//! - [`devcerts`]: a development CA and certificates for `custos dev env` and tests.

pub mod admin;
pub mod convert;
pub mod core;
pub mod devcerts;
pub mod edge;
pub mod metrics;
pub mod model;
pub mod outbox;
pub mod principal;
pub mod proto;
pub mod server;
pub mod signer;
pub mod status;
pub mod tls;

pub use self::core::{AccessMap, CoreError, Privilege, SignerCore, StandbyCore};
pub use principal::{Principal, PrincipalSource};
pub use server::{start, RunningServer, ServeError};
pub use tls::{TlsError, TlsMaterial};
