//! Custos: a multi-currency key custody and signing service.
//!
//! Backend services ask Custos (over gRPC with mutual TLS) to sign transactions; every request is
//! decoded into a chain-neutral [`intent::Intent`], checked against a reviewed policy, recorded
//! durably, signed with keys that never leave the sealed store or the HSM, and handed to a separate
//! broadcaster through an outbox. Operators run key ceremonies with the admin CLI.
//!
//! The modules, and which way the arrows run (see `DESIGN.md` of the project):
//! `service` and `cli` call into the transport-free core; chains never see the key store; a key
//! backend never sees a transaction, only digests; the policy engine sees intents, never keys.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod amount;
pub mod assets;
pub mod backend;
pub mod ceremony;
pub mod chains;
pub mod cli;
pub mod config;
pub mod embedded_db;
pub mod governance;
pub mod intent;
pub mod keys;
pub mod keystore;
pub mod network;
pub mod policy;
pub mod secret;
pub mod selftest;
pub mod service;
pub mod shares;
pub mod signing;
pub mod state;
pub mod wallet;
