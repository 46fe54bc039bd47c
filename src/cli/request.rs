//! `custos request proof | verify`: a request's proof file, and its offline check.
//!
//! `proof --config CLIENT.toml --request-id ID [--requester P] [--out FILE]` asks the server for
//! the proof (`Signer.GetProof`: the request, its payload and intent, every vote with its key,
//! statement and signature) and writes it (JSON, `custos-proof/v1`; stdout without `--out`).
//! `verify FILE [--policy POLICY]` re-checks it with nothing but the file (and the policy the
//! verifier trusts): the payload hash, the intent lines, each vote statement rebuilt from the
//! proof's fields and its signature, and — with the policy — that each key is enrolled for its
//! approver and the quorum was met. Exit 1 when anything fails.

use std::path::PathBuf;

use clap::Subcommand;

use super::client::{block_on, status_error, ClientConfig};
use super::host::ClientArgs;
use super::{CliError, CliResult};
use crate::governance::proof::Proof;
use crate::policy::Policy;
use crate::service::proto::signer_client::SignerClient;
use crate::service::proto::GetRequestRequest;

/// `custos request …`
#[derive(Debug, Subcommand)]
pub enum RequestCommand {
    /// Export a request's proof (request, intent, votes, signatures) from a running server.
    Proof {
        #[command(flatten)]
        #[allow(missing_docs)]
        client: ClientArgs,
        /// The request id.
        #[arg(long)]
        request_id: String,
        /// The requester, when several share the id.
        #[arg(long, value_name = "PRINCIPAL", default_value = "")]
        requester: String,
        /// Where to write the proof (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Re-check a proof file offline.
    Verify {
        /// The proof file.
        file: PathBuf,
        /// The policy to check the approvers' keys and the quorum against.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
}

/// Runs `custos request …`.
pub fn run(command: RequestCommand) -> CliResult {
    match command {
        RequestCommand::Proof {
            client,
            request_id,
            requester,
            out,
        } => {
            let config = ClientConfig::load(&client.config)?;
            let json = block_on(async {
                let mut signer = SignerClient::new(config.connect().await?);
                signer
                    .get_proof(GetRequestRequest {
                        request_id,
                        requester,
                    })
                    .await
                    .map(|r| r.into_inner().proof_json)
                    .map_err(status_error)
            })?;
            match out {
                Some(path) => {
                    std::fs::write(&path, format!("{json}\n")).map_err(|e| {
                        CliError::operational(format!("cannot write {}: {e}", path.display()))
                    })?;
                    eprintln!("proof written to {}", path.display());
                }
                None => println!("{json}"),
            }
            Ok(())
        }
        RequestCommand::Verify { file, policy } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| CliError::usage(format!("cannot read {}: {e}", file.display())))?;
            let proof: Proof = serde_json::from_str(&text).map_err(|e| {
                CliError::usage(format!(
                    "{}:{}:{}: not a proof file: {e}",
                    file.display(),
                    e.line(),
                    e.column()
                ))
            })?;
            let policy = match &policy {
                Some(p) => Some(Policy::load(p).map_err(CliError::usage)?),
                None => None,
            };
            let check = proof.verify(policy.as_ref());
            println!(
                "request '{}' of {} on wallet {} ({}), custody {}",
                proof.request_id, proof.requester, proof.wallet, proof.state, proof.custody
            );
            for line in &check.passed {
                println!("ok    {line}");
            }
            for line in &check.problems {
                println!("FAIL  {line}");
            }
            if check.ok() {
                println!("proof verified");
                Ok(())
            } else {
                Err(CliError::operational(format!(
                    "{}: {} problem(s)",
                    file.display(),
                    check.problems.len()
                )))
            }
        }
    }
}
