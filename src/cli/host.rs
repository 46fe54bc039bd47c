//! `custos unseal | seal | status --config CLIENT.toml`: operating a running server over gRPC
//! (the `Admin` service; the client certificate must hold the policy's `admin` role).
//!
//! The unseal passphrase comes from `--passphrase-file F`, else `CUSTOS_PASSPHRASE`, else a
//! prompt; a Shamir share from `--share-file F`, or a hidden prompt (`--share`, or by default when
//! the server's store is unsealed by shares only). One call gives one share: each custodian runs
//! `custos unseal` with their own client certificate (role `custodian` or `admin`), and the
//! server checks each share as it arrives and says how far the unseal is — how many of M, which
//! indexes, until when. Neither secret is ever printed. Exit codes: see [`super::client`].

use std::path::PathBuf;

use clap::Args;

use super::client::{block_on, status_error, ClientConfig};
use super::common::{read_passphrase, read_secret_file, PASSPHRASE_ENV};
use super::{CliError, CliResult};
use crate::secret::SecretString;
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
    #[arg(long, value_name = "FILE", conflicts_with = "share")]
    pub share_file: Option<PathBuf>,
    /// Type one Shamir share at a hidden prompt.
    #[arg(long, conflicts_with = "passphrase_file")]
    pub share: bool,
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

/// What the caller gives.
enum Given {
    Passphrase,
    Share,
}

/// `Admin.Unseal`.
pub fn unseal(args: UnsealArgs) -> CliResult {
    let reply = block_on(async {
        let mut admin = AdminClient::new(args.client.connect().await?);
        let given = if args.share_file.is_some() || args.share {
            Given::Share
        } else if args.passphrase_file.is_some() || std::env::var_os(PASSPHRASE_ENV).is_some() {
            Given::Passphrase
        } else {
            // Ask the server what unseals its store, and prompt for that.
            let status = admin
                .status(StatusRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            if status.seal_state == SealState::Unsealed as i32 {
                return Ok(None);
            }
            if status.shares_threshold > 0 && !status.passphrase_unseals {
                eprintln!(
                    "{}",
                    progress_line(
                        &status.share_indexes,
                        status.shares_threshold,
                        status.shares_total,
                        status.shares_expire_at
                    )
                );
                Given::Share
            } else {
                Given::Passphrase
            }
        };
        let secret = match given {
            Given::Share => {
                let text = match &args.share_file {
                    Some(path) => read_secret_file(path)?,
                    None => SecretString::new(
                        rpassword::prompt_password("Custodian: type your share (input hidden): ")
                            .map_err(|_| {
                            CliError::usage("no terminal to prompt on: give --share-file FILE")
                        })?,
                    ),
                };
                unseal_request::Secret::Share(text.expose_secret().into())
            }
            Given::Passphrase => unseal_request::Secret::Passphrase(
                read_passphrase(args.passphrase_file.as_deref(), false)?
                    .expose_secret()
                    .into(),
            ),
        };
        admin
            .unseal(UnsealRequest {
                secret: Some(secret),
            })
            .await
            .map_err(status_error)
            .map(|r| Some(r.into_inner()))
    })?;
    let Some(reply) = reply else {
        println!("unsealed (already)");
        return Ok(());
    };
    if reply.seal_state == SealState::Unsealing as i32 {
        println!(
            "share accepted: {}",
            progress_line(
                &reply.share_indexes,
                reply.shares_threshold,
                0,
                reply.shares_expire_at
            )
        );
    } else {
        println!("{}", seal_name(reply.seal_state));
    }
    Ok(())
}

/// `2 of 3 shares given (indexes 1, 4); 1 more needed before 10:32:05Z (in 14m 20s)`.
fn progress_line(indexes: &[u32], threshold: u32, total: u32, expires_at: i64) -> String {
    let given = indexes.len() as u32;
    let list: Vec<String> = indexes.iter().map(u32::to_string).collect();
    let of = if total > 0 {
        format!(" (any {threshold} of {total})")
    } else {
        String::new()
    };
    if given == 0 {
        return format!("unsealing needs {threshold} shares{of}; none given yet");
    }
    let left = expires_at - crate::ceremony::now();
    format!(
        "{given} of {threshold} shares given{of} (indexes {}); {} more needed before {} (in {}m {}s), or the shares given are forgotten",
        list.join(", "),
        threshold.saturating_sub(given),
        crate::policy::eval::format_time(expires_at),
        left.max(0) / 60,
        left.max(0) % 60
    )
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
        "shares_total": reply.shares_total,
        "share_indexes": reply.share_indexes,
        "shares_expire_at": reply.shares_expire_at,
        "passphrase_unseals": reply.passphrase_unseals,
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
    if seal == "unsealing" {
        println!(
            "seal state:   {seal}: {}",
            progress_line(
                &reply.share_indexes,
                reply.shares_threshold,
                reply.shares_total,
                reply.shares_expire_at
            )
        );
    } else {
        println!("seal state:   {seal}");
    }
    if !reply.seal_reason.is_empty() {
        println!("sealed since: {}", reply.seal_reason);
    }
    let mut unsealers = Vec::new();
    if reply.passphrase_unseals {
        unsealers.push("the passphrase".to_owned());
    }
    if reply.shares_threshold > 0 {
        unsealers.push(format!(
            "any {} of {} Shamir shares",
            reply.shares_threshold, reply.shares_total
        ));
    }
    if !unsealers.is_empty() {
        println!("unsealed by:  {}", unsealers.join(" or "));
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
