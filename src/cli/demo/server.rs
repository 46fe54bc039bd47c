//! The server steps of `custos demo`: the gRPC signer with the example policy
//! (`policies/exchange.toml`), driven over loopback mutual TLS as the exchange's services would
//! drive it.
//!
//! A second key store (`signer/store`, the same demo mnemonic) is sealed with the demo's KDF; a
//! development CA issues the server certificate and one client certificate per principal the
//! policy names (kept in memory: nothing here outlives the demo). The signing core opens it, the
//! server starts on 127.0.0.1:0, the admin creates the policy's wallets through `Admin`, and then:
//! the withdrawals service signs a PSBT and an Ethereum transfer, is refused by a limit; the
//! treasury asks for a move that two officers approve, each with a signature by their own key;
//! the request's proof is exported and verified offline; the broadcaster streams the signed
//! transactions and acks; the server stops and the audit chain is verified. The policy carries
//! fresh approver keys and the signatures of two compliance officers (demo keys, in memory). The policy's wallets
//! are on mainnet: demo keys, never fund them.
//!
//! This file runs the steps in order and holds what they share: the running signer, its
//! certificates and a channel to it as any principal. The steps themselves: `lifecycle` (the
//! environment: policy, dev CA and certificates, key store, core; the server's start with the
//! wallets; its stop with the audit chain verified), `sign` (the services' requests: signed,
//! refused by a limit, held for and released by approvals), `broadcast` (the broadcaster streams
//! the outbox and acks).

mod broadcast;
mod lifecycle;
mod sign;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::{Runner, WorkDir};
use crate::cli::client::code_name;
use crate::cli::CliError;
use crate::governance::SecretSigningKey;
use crate::keystore::KdfParams;
use crate::policy::Policy;
use crate::service::proto::signer_client::SignerClient;
use crate::service::tls::client_tls;
use crate::service::{RunningServer, TlsMaterial};
use crate::signing::SigningCore;

/// How many steps [`run`] numbers.
pub(super) const STEPS: usize = 9;

/// The running signer and the certificates of the policy's principals.
struct Signer {
    core: Arc<SigningCore>,
    server: Option<RunningServer>,
    server_tls: TlsMaterial,
    /// File-style name (`withdrawals`, `officers-alice`) -> (principal, certificate, key).
    clients: BTreeMap<String, (String, TlsMaterial)>,
    /// File-style name -> the approver's own signing key (demo keys, in memory).
    approver_keys: BTreeMap<String, SecretSigningKey>,
    /// The policy in force (the example, with the demo's approver keys enrolled).
    policy: Policy,
    /// Where the demo writes its files.
    dir: std::path::PathBuf,
}

impl Signer {
    fn port(&self) -> u16 {
        self.server.as_ref().map_or(0, |s| s.addr.port())
    }

    async fn channel(&self, who: &str) -> Result<Channel, CliError> {
        let (_, tls) = self
            .clients
            .get(who)
            .ok_or_else(|| CliError::operational(format!("no certificate for {who}")))?;
        Endpoint::from_shared(format!("https://localhost:{}", self.port()))
            .map_err(CliError::operational)?
            .tls_config(client_tls(tls, "localhost"))
            .map_err(CliError::operational)?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| CliError::operational(format!("cannot connect as {who}: {e}")))
    }

    async fn signer(&self, who: &str) -> Result<SignerClient<Channel>, CliError> {
        Ok(SignerClient::new(self.channel(who).await?))
    }

    fn principal<'a>(&'a self, who: &'a str) -> &'a str {
        self.clients.get(who).map_or(who, |(p, _)| p.as_str())
    }
}

/// Runs the server steps with `steps`' numbering.
pub(super) fn run(steps: &mut Runner, workdir: &WorkDir, kdf: KdfParams) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::operational(format!("cannot start the async runtime: {e}")))?;
    let mut signer = steps.run(
        "signer: the example policy, a dev CA, mTLS certificates, a key store",
        || lifecycle::setup(workdir, kdf),
    )?;
    steps.run(
        "signer: start the gRPC server on loopback (mutual TLS), create the wallets",
        || runtime.block_on(lifecycle::start(&mut signer)),
    )?;
    steps.run(
        "signer: the withdrawals service signs a Bitcoin PSBT",
        || runtime.block_on(sign::sign_psbt(&signer)),
    )?;
    steps.run(
        "signer: the withdrawals service signs an Ethereum transfer",
        || runtime.block_on(sign::sign_eth(&signer)),
    )?;
    steps.run("signer: a request refused by a limit", || {
        runtime.block_on(sign::refused(&signer))
    })?;
    steps.run(
        "signer: a treasury move approved by two officers' signed votes",
        || runtime.block_on(sign::approved(&signer)),
    )?;
    steps.run(
        "signer: the move's proof, exported and verified offline",
        || runtime.block_on(sign::proof(&signer)),
    )?;
    steps.run(
        "signer: the broadcaster streams the signed transactions",
        || runtime.block_on(broadcast::broadcast(&signer)),
    )?;
    steps.run("signer: stop the server, verify the audit chain", || {
        runtime.block_on(lifecycle::stop_and_verify(&mut signer))
    })?;
    Ok(())
}

/// Any failure, as the demo reports it.
fn op(e: impl std::fmt::Display) -> CliError {
    CliError::operational(e)
}

/// A refusal as the client sees it: `PERMISSION_DENIED [code] message`.
fn status_line(status: &tonic::Status) -> String {
    format!("{} {}", code_name(status.code()), status.message())
}
