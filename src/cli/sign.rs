//! `custos sign | pending --config CLIENT.toml`: the `Signer` service from the command line,
//! printing results as JSON on stdout (`approve` and `reject`, which sign votes, are in
//! [`super::vote`]).
//!
//! `custos sign --wallet W --request-id ID (--psbt F | --eth-tx F | --message F | --typed-data F)`
//! sends one payload (`--index N` picks the Ethereum address index, `--replacement` marks a
//! deliberate same-nonce replacement) and prints the signed result or the pending approval. A
//! PSBT file may be binary or base64/hex text (it is sent as BIP174 binary); an Ethereum
//! transaction file is sent as it is (unsigned RLP, 0x-hex, or the JSON fields the chain module
//! reads); a message file is signed byte for byte; typed data is EIP-712 JSON.
//!
//! A refusal is not an answer: the gRPC code and message go to stderr and the exit code is 1
//! (see [`super::client`] for all exit codes). A request that needs approval exits 0 with
//! `"status": "pending"`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use clap::Args;
use serde_json::{json, Value};

use super::client::{block_on, status_error};
use super::host::ClientArgs;
use super::{CliError, CliResult};
use crate::service::proto::signer_client::SignerClient;
use crate::service::proto::{
    self, sign_request, signed, BitcoinPsbtPayload, EthereumTransactionPayload, ListPendingRequest,
    PersonalMessagePayload, SignRequest, TypedDataPayload,
};

/// Arguments of `custos sign`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("payload").required(true).args(["psbt", "eth_tx", "message", "typed_data"])))]
pub struct SignArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientArgs,
    /// Wallet name.
    #[arg(long)]
    pub wallet: String,
    /// Idempotency key: the same id with the same payload returns the stored result.
    #[arg(long)]
    pub request_id: String,
    /// A Bitcoin PSBT (binary, base64 or hex).
    #[arg(long, value_name = "FILE")]
    pub psbt: Option<PathBuf>,
    /// An unsigned Ethereum transaction (RLP, 0x-hex, or JSON fields).
    #[arg(long, value_name = "FILE")]
    pub eth_tx: Option<PathBuf>,
    /// A personal message (EIP-191), signed byte for byte.
    #[arg(long, value_name = "FILE")]
    pub message: Option<PathBuf>,
    /// EIP-712 typed data (JSON).
    #[arg(long, value_name = "FILE")]
    pub typed_data: Option<PathBuf>,
    /// Ethereum address index below the wallet's account (default 0).
    #[arg(long, value_name = "N")]
    pub index: Option<u32>,
    /// The Ethereum transaction deliberately replaces one with the same nonce.
    #[arg(long, requires = "eth_tx")]
    pub replacement: bool,
}

/// Arguments of `custos pending`.
#[derive(Debug, Args)]
pub struct PendingArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub client: ClientArgs,
    /// Only this wallet's requests.
    #[arg(long)]
    pub wallet: Option<String>,
}

fn read_input(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))
}

/// A PSBT file as BIP174 binary: binary as it is, else base64 or hex text.
pub fn psbt_bytes(path: &Path, bytes: Vec<u8>) -> Result<Vec<u8>, CliError> {
    if bytes.starts_with(b"psbt\xff") {
        return Ok(bytes);
    }
    let text = std::str::from_utf8(&bytes)
        .map(str::trim)
        .map_err(|_| not_a_psbt(path))?;
    let decoded = if text.starts_with("70736274ff") {
        hex::decode(text).map_err(|_| not_a_psbt(path))?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| not_a_psbt(path))?
    };
    if decoded.starts_with(b"psbt\xff") {
        Ok(decoded)
    } else {
        Err(not_a_psbt(path))
    }
}

fn not_a_psbt(path: &Path) -> CliError {
    CliError::usage(format!(
        "{}: not a PSBT (expected BIP174 binary, base64 or hex)",
        path.display()
    ))
}

fn payload(args: &SignArgs) -> Result<sign_request::Payload, CliError> {
    use sign_request::Payload;
    if let Some(path) = &args.psbt {
        return Ok(Payload::BitcoinPsbt(BitcoinPsbtPayload {
            psbt: psbt_bytes(path, read_input(path)?)?,
        }));
    }
    if let Some(path) = &args.eth_tx {
        return Ok(Payload::EthereumTransaction(EthereumTransactionPayload {
            unsigned_tx: read_input(path)?,
            address_index: args.index,
            replacement: args.replacement,
        }));
    }
    if let Some(path) = &args.message {
        return Ok(Payload::PersonalMessage(PersonalMessagePayload {
            message: read_input(path)?,
            address_index: args.index,
        }));
    }
    if let Some(path) = &args.typed_data {
        let json = String::from_utf8(read_input(path)?)
            .map_err(|_| CliError::usage(format!("{}: not UTF-8 JSON", path.display())))?;
        return Ok(Payload::TypedData(TypedDataPayload {
            json,
            address_index: args.index,
        }));
    }
    Err(CliError::usage(
        "give one of --psbt, --eth-tx, --message, --typed-data",
    ))
}

/// `Signer.Sign`.
pub fn sign(args: SignArgs) -> CliResult {
    let request = SignRequest {
        request_id: args.request_id.clone(),
        wallet: args.wallet.clone(),
        payload: Some(payload(&args)?),
    };
    let reply = block_on(async {
        let mut signer = SignerClient::new(args.client.connect().await?);
        signer.sign(request).await.map_err(status_error)
    })?
    .into_inner();
    print_json(&sign_response_json(&reply));
    Ok(())
}

/// `Signer.ListPending`, every page.
pub fn pending(args: PendingArgs) -> CliResult {
    let requests = block_on(async {
        let mut signer = SignerClient::new(args.client.connect().await?);
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let page = signer
                .list_pending(ListPendingRequest {
                    wallet: args.wallet.clone().unwrap_or_default(),
                    page_size: 0,
                    page_token: token.clone(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            all.extend(page.requests);
            if page.next_page_token.is_empty() || page.next_page_token == token {
                break;
            }
            token = page.next_page_token;
        }
        Ok(all)
    })?;
    print_json(&Value::Array(requests.iter().map(record_json).collect()));
    Ok(())
}

/// Prints pretty JSON on stdout.
pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("a JSON value always serialises")
    );
}

fn timestamp(t: Option<&prost_types::Timestamp>) -> Value {
    let Some(t) = t else { return Value::Null };
    time::OffsetDateTime::from_unix_timestamp(t.seconds)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or(Value::Null, Value::String)
}

fn enum_name<E: TryFrom<i32>>(value: i32, name: impl Fn(E) -> &'static str) -> Value {
    E::try_from(value).map_or(Value::Null, |e| json!(name(e)))
}

/// The JSON of a sign answer: `status` is `signed` or `pending`.
pub fn sign_response_json(reply: &proto::SignResponse) -> Value {
    let mut out = json!({ "request_id": reply.request_id });
    match &reply.outcome {
        Some(proto::sign_response::Outcome::Signed(s)) => {
            out["status"] = json!("signed");
            out["signed"] = signed_json(s);
        }
        Some(proto::sign_response::Outcome::Pending(p)) => {
            out["status"] = json!("pending");
            out["pending"] = pending_json(p);
        }
        None => out["status"] = Value::Null,
    }
    out["intent"] = reply.intent.as_ref().map_or(Value::Null, intent_json);
    out["decision"] = reply.decision.as_ref().map_or(Value::Null, decision_json);
    out
}

fn signed_json(s: &proto::Signed) -> Value {
    let mut out = match &s.result {
        Some(signed::Result::BitcoinTransaction(t)) => json!({
            "kind": "bitcoin_transaction",
            "raw_tx_hex": t.raw_tx_hex,
            "txid": t.txid,
            "wtxid": t.wtxid,
        }),
        Some(signed::Result::SignedPsbt(p)) => json!({
            "kind": "signed_psbt",
            "psbt_base64": base64::engine::general_purpose::STANDARD.encode(&p.psbt),
            "not_final_reason": p.not_final_reason,
        }),
        Some(signed::Result::EthereumTransaction(t)) => json!({
            "kind": "ethereum_transaction",
            "raw_tx_hex": t.raw_tx_hex,
            "tx_hash": t.tx_hash,
        }),
        Some(signed::Result::EthereumSignature(sig)) => json!({
            "kind": "ethereum_signature",
            "signature_hex": format!("0x{}", hex::encode(&sig.signature)),
            "signer": sig.signer,
            "digest_hex": sig.digest_hex,
        }),
        None => json!({ "kind": null }),
    };
    out["outbox_sequence"] = json!(s.outbox_sequence);
    out
}

fn pending_json(p: &proto::Pending) -> Value {
    json!({
        "required": p.quorum.as_ref().map(|q| q.required),
        "roles": p.quorum.as_ref().map(|q| q.roles.clone()).unwrap_or_default(),
        "approvals": p.approvals.iter().map(|a| json!({
            "principal": a.principal,
            "decision": a.decision,
            "at": timestamp(a.at.as_ref()),
            "reason": a.reason,
            "key": if a.key.is_empty() { Value::Null } else { json!(a.key) },
            "signature_hex": if a.signature.is_empty() { Value::Null } else { json!(hex::encode(&a.signature)) },
            "counted": a.counted,
            "note": if a.note.is_empty() { Value::Null } else { json!(a.note) },
        })).collect::<Vec<_>>(),
        "expires_at": timestamp(p.expires_at.as_ref()),
    })
}

fn destinations_json(list: &[proto::Destination]) -> Value {
    list.iter()
        .map(|d| json!({ "address": d.address, "amount": d.amount }))
        .collect()
}

fn intent_json(i: &proto::Intent) -> Value {
    json!({
        "summary": i.summary,
        "wallet": i.wallet,
        "chain": enum_name(i.chain, |c: proto::Chain| c.as_str_name()),
        "network": i.network,
        "kind": enum_name(i.kind, |k: proto::ActionKind| k.as_str_name()),
        "asset": i.asset.as_ref().map(|a| json!({
            "symbol": a.symbol,
            "decimals": a.decimals,
            "contract": if a.contract.is_empty() { Value::Null } else { json!(a.contract) },
        })),
        "destinations": destinations_json(&i.destinations),
        "amount": i.amount,
        "fee": i.fee,
        "fee_rate_sat_per_kvb": i.fee_rate_sat_per_kvb,
        "change": destinations_json(&i.change),
        "foreign_input_value": i.foreign_input_value,
        "nonce": i.nonce,
        "contract": i.contract,
        "selector": i.selector,
        "deadline": i.deadline,
        "unlimited": i.unlimited,
    })
}

fn decision_json(d: &proto::Decision) -> Value {
    json!({
        "outcome": enum_name(d.outcome, |o: proto::decision::Outcome| o.as_str_name()),
        "rule": d.rule,
        "code": d.code,
        "reason": d.reason,
        "policy_hash": d.policy_hash,
    })
}

/// The JSON of a request record.
pub fn record_json(r: &proto::RequestRecord) -> Value {
    json!({
        "request_id": r.request_id,
        "wallet": r.wallet,
        "requester": r.requester,
        "state": enum_name(r.state, |s: proto::RequestState| s.as_str_name()),
        "intent": r.intent.as_ref().map_or(Value::Null, intent_json),
        "decision": r.decision.as_ref().map_or(Value::Null, decision_json),
        "pending": r.pending.as_ref().map_or(Value::Null, pending_json),
        "result": r.result.as_ref().map_or(Value::Null, signed_json),
        "created_at": timestamp(r.created_at.as_ref()),
        "updated_at": timestamp(r.updated_at.as_ref()),
        "error": if r.error.is_empty() { Value::Null } else { json!(r.error) },
        "payload_sha256": r.payload_sha256,
        "vote_context": r.vote_context.as_ref().map_or(Value::Null, |c| json!({
            "custody": c.custody,
            "request_id": c.request_id,
            "requester": c.requester,
            "wallet": c.wallet,
            "payload_sha256": c.payload_sha256,
            "intent": c.intent,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psbt_files_in_three_forms() {
        let binary = b"psbt\xff\x01\x00".to_vec();
        let p = Path::new("x.psbt");
        assert_eq!(psbt_bytes(p, binary.clone()).unwrap(), binary);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&binary);
        assert_eq!(
            psbt_bytes(p, format!("{b64}\n").into_bytes()).unwrap(),
            binary
        );
        assert_eq!(
            psbt_bytes(p, hex::encode(&binary).into_bytes()).unwrap(),
            binary
        );
        let err = psbt_bytes(p, b"hello".to_vec()).unwrap_err();
        assert_eq!(err.exit_code, 2);
    }

    #[test]
    fn signed_bitcoin_answer_as_json() {
        let reply = proto::SignResponse {
            request_id: "r1".into(),
            outcome: Some(proto::sign_response::Outcome::Signed(proto::Signed {
                result: Some(signed::Result::BitcoinTransaction(
                    proto::BitcoinTransaction {
                        raw_tx_hex: "02".into(),
                        txid: "ab".into(),
                        wtxid: "cd".into(),
                    },
                )),
                outbox_sequence: 7,
            })),
            intent: None,
            decision: Some(proto::Decision {
                outcome: proto::decision::Outcome::Allow as i32,
                rule: "r".into(),
                code: "allow".into(),
                reason: String::new(),
                policy_hash: "sha256:00".into(),
            }),
        };
        let v = sign_response_json(&reply);
        assert_eq!(v["status"], "signed");
        assert_eq!(v["signed"]["txid"], "ab");
        assert_eq!(v["signed"]["outbox_sequence"], 7);
        assert_eq!(v["decision"]["outcome"], "OUTCOME_ALLOW");
    }
}
