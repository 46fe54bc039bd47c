//! `custos unseal | seal | status --config CLIENT.toml`: operating a running server over gRPC
//! (the `Admin` service; the client certificate must hold the policy's `admin` role).
//!
//! The unseal passphrase comes from `--passphrase-file F`, else `CUSTOS_PASSPHRASE`, else a
//! prompt; a Shamir share from `--share-file F`. Neither is ever printed. Exit codes: see
//! [`super::client`].

use std::path::PathBuf;

use clap::Args;

use super::client::{block_on, status_error, ClientConfig};
use super::common::{read_passphrase, read_secret_file};
use super::{CliError, CliResult};
use crate::service::proto::admin_client::AdminClient;
use crate::service::proto::{
    unseal_request, SealRequest, SealState, StatusRequest, StatusResponse, UnsealRequest,
};

/// `--config CLIENT.toml`, shared by every host command.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The client configuration (server address, CA, client certificate and key).
    #[arg(long, value_name = "CLIENT.toml")]
    pub config: PathBuf,
}

impl ClientArgs {
    /// Loads the configuration and connects.
    pub async fn connect(&self) -> Result<tonic::transport::Channel, CliError> {
        ClientConfig::load(&self.config)?.connect().await
    }
}

/// Arguments of `custos unseal`.
#[derive(Debug, Args)]
pub struct UnsealArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientArgs,
    /// File holding the store passphrase (else CUSTOS_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE", conflicts_with = "share_file")]
    pub passphrase_file: Option<PathBuf>,
    /// File holding one Shamir share (one call per share until the threshold is met).
    #[arg(long, value_name = "FILE")]
    pub share_file: Option<PathBuf>,
}

/// Arguments of `custos status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientArgs,
    /// Print JSON instead of lines.
    #[arg(long)]
    pub json: bool,
}

fn seal_name(state: i32) -> &'static str {
    match SealState::try_from(state) {
        Ok(SealState::Sealed) => "sealed",
        Ok(SealState::Unsealing) => "unsealing",
        Ok(SealState::Unsealed) => "unsealed",
        _ => "unspecified",
    }
}

/// `Admin.Unseal`.
pub fn unseal(args: UnsealArgs) -> CliResult {
    let secret = match &args.share_file {
        Some(path) => unseal_request::Secret::Share(read_secret_file(path)?.expose_secret().into()),
        None => unseal_request::Secret::Passphrase(
            read_passphrase(args.passphrase_file.as_deref(), false)?
                .expose_secret()
                .into(),
        ),
    };
    let reply = block_on(async {
        let mut admin = AdminClient::new(args.client.connect().await?);
        admin
            .unseal(UnsealRequest {
                secret: Some(secret),
            })
            .await
            .map_err(status_error)
    })?
    .into_inner();
    if reply.shares_threshold > 0 && reply.seal_state == SealState::Unsealing as i32 {
        println!(
            "unsealing: {} of {} shares given",
            reply.shares_given, reply.shares_threshold
        );
    } else {
        println!("{}", seal_name(reply.seal_state));
    }
    Ok(())
}

/// `Admin.Seal`.
pub fn seal(args: ClientArgs) -> CliResult {
    let reply = block_on(async {
        let mut admin = AdminClient::new(args.connect().await?);
        admin.seal(SealRequest {}).await.map_err(status_error)
    })?
    .into_inner();
    println!("{}", seal_name(reply.seal_state));
    Ok(())
}

/// `Admin.Status`.
pub fn status(args: StatusArgs) -> CliResult {
    let reply = block_on(async {
        let mut admin = AdminClient::new(args.client.connect().await?);
        admin.status(StatusRequest {}).await.map_err(status_error)
    })?
    .into_inner();
    if args.json {
        println!("{}", status_json(&reply));
    } else {
        print_status(&reply);
    }
    Ok(())
}

fn status_json(reply: &StatusResponse) -> serde_json::Value {
    serde_json::json!({
        "seal_state": seal_name(reply.seal_state),
        "shares_given": reply.shares_given,
        "shares_threshold": reply.shares_threshold,
        "policy_hash": reply.policy_hash,
        "version": reply.version,
        "api_version": reply.api_version,
        "principal": reply.principal,
        "roles": reply.roles,
        "outbox_head_sequence": reply.outbox_head_sequence,
        "seal_reason": reply.seal_reason,
        "hsm": reply.hsm.as_ref().map(|h| serde_json::json!({
            "token": h.token,
            "module": h.module,
            "available": h.available,
            "detail": h.detail,
            "wallets": h.wallets,
            "sessions_open": h.sessions_open,
            "sessions_max": h.sessions_max,
        })),
    })
}

fn print_status(reply: &StatusResponse) {
    let seal = seal_name(reply.seal_state);
    if reply.shares_threshold > 0 && seal == "unsealing" {
        println!(
            "seal state:   {seal} ({} of {} shares)",
            reply.shares_given, reply.shares_threshold
        );
    } else {
        println!("seal state:   {seal}");
    }
    if !reply.seal_reason.is_empty() {
        println!("sealed since: {}", reply.seal_reason);
    }
    let hash = if reply.policy_hash.is_empty() {
        "(none loaded)"
    } else {
        &reply.policy_hash
    };
    println!("policy hash:  {hash}");
    println!("version:      {} ({})", reply.version, reply.api_version);
    println!("principal:    {}", reply.principal);
    println!("roles:        {}", reply.roles.join(", "));
    println!("outbox head:  {}", reply.outbox_head_sequence);
    if let Some(hsm) = &reply.hsm {
        let state = if hsm.available {
            "available"
        } else {
            "UNAVAILABLE"
        };
        println!("hsm:          {} ({state}; {})", hsm.token, hsm.module);
        println!("              {}", hsm.detail);
        println!(
            "              sessions {}/{}; wallets: {}",
            hsm.sessions_open,
            hsm.sessions_max,
            if hsm.wallets.is_empty() {
                "(none)".to_owned()
            } else {
                hsm.wallets.join(", ")
            }
        );
    }
}
