//! `custos approve | reject --config CLIENT.toml --request-id ID [--key FILE]`: a vote signed
//! with the approver's own key.
//!
//! The command reads the pending request (`GetRequest`), shows on stderr the decoded intent it
//! is about to sign, builds the vote statement from the server's vote context, the caller's
//! principal (from its client certificate), its key, the decision, the reason and the time
//! ([`crate::governance::vote`]), signs it with the key file (`--key`, else `approver_key` in
//! the client configuration), and sends the signature with the vote. It prints the request
//! record the server answers with as JSON. `--unsigned` sends a vote without a signature, which
//! counts only where the policy sets `allow_unsigned_votes` for an approver without a key.

use std::path::PathBuf;

use clap::Args;

use super::client::{block_on, status_error, ClientConfig};
use super::host::ClientArgs;
use super::sign::{print_json, record_json};
use super::{CliError, CliResult};
use crate::governance::{SecretSigningKey, VoteContext, VoteDecision, VoteStatement};
use crate::service::identity::principal_from_certificate_der;
use crate::service::proto::signer_client::SignerClient;
use crate::service::proto::{self, ApproveRequest, GetRequestRequest, RejectRequest};
use crate::signing::now_unix;

/// Arguments of `custos approve` and `custos reject`.
#[derive(Debug, Args)]
pub struct VoteArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientArgs,
    /// The pending request.
    #[arg(long)]
    pub request_id: String,
    /// The requester, when requests of several services share the id.
    #[arg(long, value_name = "PRINCIPAL", default_value = "")]
    pub requester: String,
    /// Why (signed with the vote, recorded in the audit log; required for a rejection).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub reason: String,
    /// The approver's key file (PKCS#8 PEM, from `custos approver keygen`); default: the client
    /// configuration's `approver_key`.
    #[arg(long, value_name = "FILE", conflicts_with = "unsigned")]
    pub key: Option<PathBuf>,
    /// Send the vote without a signature (counts only under the policy's allow_unsigned_votes).
    #[arg(long)]
    pub unsigned: bool,
}

/// `Signer.Approve`, signed.
pub fn approve(args: VoteArgs) -> CliResult {
    vote(args, VoteDecision::Approve)
}

/// `Signer.Reject`, signed.
pub fn reject(args: VoteArgs) -> CliResult {
    vote(args, VoteDecision::Reject)
}

/// The caller's principal, as the server will read it from the client certificate.
fn principal_of(config: &ClientConfig) -> Result<String, CliError> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(&config.tls.cert)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", config.tls.cert.display())))?;
    let der = rustls::pki_types::CertificateDer::pem_slice_iter(&pem)
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| {
            CliError::usage(format!("{}: no PEM certificate", config.tls.cert.display()))
        })?;
    principal_from_certificate_der(der.as_ref())
        .map(|p| p.as_str().to_owned())
        .map_err(CliError::usage)
}

fn context_of(c: &proto::VoteContext) -> VoteContext {
    VoteContext {
        custody: c.custody.clone(),
        request_id: c.request_id.clone(),
        requester: c.requester.clone(),
        wallet: c.wallet.clone(),
        payload_sha256: c.payload_sha256.clone(),
        intent: c.intent.clone(),
    }
}

fn vote(args: VoteArgs, decision: VoteDecision) -> CliResult {
    let config = ClientConfig::load(&args.client.config)?;
    let key = if args.unsigned {
        None
    } else {
        let path = args.key.clone().or(config.approver_key.clone()).ok_or_else(|| {
            CliError::usage(
                "no approver key: pass --key FILE or set approver_key in the client configuration (`custos approver keygen` makes one)",
            )
        })?;
        Some(SecretSigningKey::load(&path).map_err(CliError::usage)?)
    };
    let principal = principal_of(&config)?;
    let record = block_on(async {
        let mut signer = SignerClient::new(config.connect().await?);
        let current = signer
            .get_request(GetRequestRequest {
                request_id: args.request_id.clone(),
                requester: args.requester.clone(),
            })
            .await
            .map_err(status_error)?
            .into_inner()
            .request
            .ok_or_else(|| CliError::operational("GetRequest answered without the request"))?;
        let signature = match &key {
            None => None,
            Some(key) => {
                let ctx = current.vote_context.as_ref().ok_or_else(|| {
                    CliError::operational(format!(
                        "request '{}' is not waiting for votes ({})",
                        current.request_id,
                        current.state().as_str_name()
                    ))
                })?;
                let at = now_unix();
                let public = key.public();
                let statement = VoteStatement {
                    context: context_of(ctx),
                    approver: principal.clone(),
                    key: public.to_text(),
                    decision,
                    reason: args.reason.clone(),
                    at,
                }
                .encode()
                .map_err(CliError::usage)?;
                eprintln!(
                    "{} request '{}' of {} (wallet {}, payload sha256 {}) as {principal} with {}:",
                    decision.as_str(),
                    ctx.request_id,
                    ctx.requester,
                    ctx.wallet,
                    ctx.payload_sha256,
                    public.fingerprint()
                );
                for line in &ctx.intent {
                    eprintln!("  {line}");
                }
                Some(proto::VoteSignature {
                    at,
                    key: public.to_text(),
                    signature: key.sign(&statement),
                })
            }
        };
        // Vote on exactly the request whose context was signed.
        let (request_id, requester) = (current.request_id.clone(), current.requester.clone());
        let reason = args.reason.clone();
        match decision {
            VoteDecision::Approve => signer
                .approve(ApproveRequest {
                    request_id,
                    reason,
                    requester,
                    signature,
                })
                .await
                .map(|reply| reply.into_inner().request),
            VoteDecision::Reject => signer
                .reject(RejectRequest {
                    request_id,
                    reason,
                    requester,
                    signature,
                })
                .await
                .map(|reply| reply.into_inner().request),
        }
        .map_err(status_error)
    })?;
    print_json(&record.as_ref().map_or(serde_json::Value::Null, record_json));
    Ok(())
}
