//! The services' requests in the demo: the withdrawals service signs a PSBT (and retries it) and
//! an Ethereum transfer, and is refused by a per-transaction limit; the treasury asks for a move
//! that is held until two officers approve it, each vote a signature by the officer's own key
//! over the decoded request (the requester's own approval is refused); the move's proof is then
//! exported and verified offline.

use super::{op, status_line, Signer};
use crate::cli::demo::field;
use crate::cli::sample::{eth_transfer, external_script, p2wpkh_psbt};
use crate::cli::CliError;
use crate::governance::proof::Proof;
use crate::governance::{VoteContext, VoteDecision, VoteStatement};
use crate::service::proto::{
    self, sign_request::Payload, sign_response::Outcome, signed, ApproveRequest,
    BitcoinPsbtPayload, EthereumTransactionPayload, GetRequestRequest, SignRequest, SignResponse,
    VoteSignature,
};
use crate::signing::now_unix;

const ETH: u128 = 1_000_000_000_000_000_000;
const ETH_PAYEE: &str = "0x3535353535353535353535353535353535353535";

fn print_reply(reply: &SignResponse) {
    if let Some(decision) = &reply.decision {
        field(
            "decision",
            &format!("{:?} by rule '{}'", decision.outcome(), decision.rule),
        );
    }
    if let Some(intent) = &reply.intent {
        field("intent", &intent.summary);
    }
    match &reply.outcome {
        Some(Outcome::Signed(s)) => {
            match &s.result {
                Some(signed::Result::BitcoinTransaction(t)) => {
                    field(
                        "raw tx",
                        &format!(
                            "{}… ({} bytes)",
                            &t.raw_tx_hex[..32],
                            t.raw_tx_hex.len() / 2
                        ),
                    );
                    field("txid", &t.txid);
                }
                Some(signed::Result::EthereumTransaction(t)) => {
                    field(
                        "raw tx",
                        &format!(
                            "{}… ({} bytes)",
                            &t.raw_tx_hex[..32],
                            t.raw_tx_hex.len() / 2 - 1
                        ),
                    );
                    field("tx hash", &t.tx_hash);
                }
                other => field("signed", &format!("{other:?}")),
            }
            field("outbox", &format!("sequence {}", s.outbox_sequence));
        }
        Some(Outcome::Pending(p)) => {
            let quorum = p.quorum.clone().unwrap_or_default();
            field(
                "pending",
                &format!(
                    "needs {} approval(s) from role(s) {}",
                    quorum.required,
                    quorum.roles.join(", ")
                ),
            );
        }
        None => field("outcome", "none"),
    }
}

fn eth_request(id: &str, wallet: &str, nonce: u64, wei: u128) -> SignRequest {
    SignRequest {
        request_id: id.into(),
        wallet: wallet.into(),
        payload: Some(Payload::EthereumTransaction(EthereumTransactionPayload {
            unsigned_tx: eth_transfer(1, nonce, ETH_PAYEE, wei),
            address_index: None,
            replacement: false,
        })),
    }
}

pub(super) async fn sign_psbt(signer: &Signer) -> Result<(), CliError> {
    // The watch-only side (the exchange's wallet software) knows btc-hot's xpub and writes the
    // PSBT: a made-up 0.01 BTC coin, 0.0025 BTC out, change back, 20 sat/vB.
    let wallet = signer
        .core
        .keys()
        .and_then(|k| k.wallet("btc-hot"))
        .map_err(op)?;
    let psbt = p2wpkh_psbt(
        &wallet,
        1,
        1_000_000,
        &external_script(0x11),
        250_000,
        2_820,
    )?;
    println!("  As {}:", signer.principal("withdrawals"));
    println!("  Signer.Sign {{ request_id: \"withdrawal-1\", wallet: \"btc-hot\", psbt }}");
    let request = SignRequest {
        request_id: "withdrawal-1".into(),
        wallet: "btc-hot".into(),
        payload: Some(Payload::BitcoinPsbt(BitcoinPsbtPayload {
            psbt: psbt.serialize(),
        })),
    };
    let mut client = signer.signer("withdrawals").await?;
    let reply = client
        .sign(request.clone())
        .await
        .map_err(|s| op(status_line(&s)))?
        .into_inner();
    print_reply(&reply);
    let again = client
        .sign(request)
        .await
        .map_err(|s| op(status_line(&s)))?
        .into_inner();
    if again.outcome != reply.outcome {
        return Err(op("a retry of the same request id answered differently"));
    }
    println!("  Retried with the same request id: the same transaction, signed and counted once.");
    Ok(())
}

pub(super) async fn sign_eth(signer: &Signer) -> Result<(), CliError> {
    println!("  As {}:", signer.principal("withdrawals"));
    println!("  Signer.Sign {{ request_id: \"withdrawal-2\", wallet: \"eth-hot\", EIP-1559: 1 ETH, nonce 0 }}");
    let reply = signer
        .signer("withdrawals")
        .await?
        .sign(eth_request("withdrawal-2", "eth-hot", 0, ETH))
        .await
        .map_err(|s| op(status_line(&s)))?
        .into_inner();
    print_reply(&reply);
    Ok(())
}

pub(super) async fn refused(signer: &Signer) -> Result<(), CliError> {
    println!("  60 ETH from eth-hot, whose rule allows at most 50 ETH per transaction:");
    let err = match signer
        .signer("withdrawals")
        .await?
        .sign(eth_request("withdrawal-3", "eth-hot", 1, 60 * ETH))
        .await
    {
        Ok(reply) => return Err(op(format!("not refused: {reply:?}"))),
        Err(status) => status,
    };
    if err.code() != tonic::Code::PermissionDenied {
        return Err(op(format!("refused otherwise: {}", status_line(&err))));
    }
    field("refused", &status_line(&err));
    let meta = |key: &str| {
        err.metadata()
            .get(key)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    field("custos-code", &meta("custos-code"));
    field("custos-rule", &meta("custos-rule"));
    println!("  The stable code is in the status metadata for programs, and in the message.");
    Ok(())
}

pub(super) async fn approved(signer: &Signer) -> Result<(), CliError> {
    println!(
        "  As {}: 100 ETH out of eth-treasury",
        signer.principal("treasury")
    );
    let mut treasury = signer.signer("treasury").await?;
    let reply = treasury
        .sign(eth_request("treasury-1", "eth-treasury", 0, 100 * ETH))
        .await
        .map_err(|s| op(status_line(&s)))?
        .into_inner();
    print_reply(&reply);
    if !matches!(reply.outcome, Some(Outcome::Pending(_))) {
        return Err(op("the treasury move was not held for approval"));
    }
    let approve = |who: &'static str| async move {
        let mut client = signer.signer(who).await?;
        // The officer's client reads what it is asked to approve, and signs exactly that.
        let record = client
            .get_request(GetRequestRequest {
                request_id: "treasury-1".into(),
                requester: signer.principal("treasury").to_owned(),
            })
            .await
            .map_err(|s| op(status_line(&s)))?
            .into_inner()
            .request
            .unwrap_or_default();
        let signature = match (signer.approver_keys.get(who), &record.vote_context) {
            (Some(key), Some(ctx)) => {
                let statement = VoteStatement {
                    context: VoteContext {
                        custody: ctx.custody.clone(),
                        request_id: ctx.request_id.clone(),
                        requester: ctx.requester.clone(),
                        wallet: ctx.wallet.clone(),
                        payload_sha256: ctx.payload_sha256.clone(),
                        intent: ctx.intent.clone(),
                    },
                    approver: signer.principal(who).to_owned(),
                    key: key.public().to_text(),
                    decision: VoteDecision::Approve,
                    reason: "matches the treasury ticket".into(),
                    at: now_unix(),
                };
                let bytes = statement.encode().map_err(op)?;
                let sig = key.sign(&bytes);
                Some((statement, sig))
            }
            _ => None,
        };
        let reply = client
            .approve(ApproveRequest {
                request_id: "treasury-1".into(),
                reason: "matches the treasury ticket".into(),
                requester: signer.principal("treasury").to_owned(),
                signature: signature.as_ref().map(|(st, sig)| VoteSignature {
                    at: st.at,
                    key: st.key.clone(),
                    signature: sig.clone(),
                }),
            })
            .await
            .map(|r| r.into_inner().request.unwrap_or_default())
            .map_err(|s| op(status_line(&s)))?;
        Ok::<_, CliError>((reply, signature))
    };
    match approve("treasury").await {
        Err(e) => field(
            "treasury",
            &format!("approves its own request: {}", e.message),
        ),
        Ok(_) => return Err(op("the requester approved its own request")),
    }
    let show = |who: &str, signed: &Option<(VoteStatement, Vec<u8>)>| {
        if let Some((statement, sig)) = signed {
            field(who, &format!("signs with {}", statement.key));
            for line in &statement.context.intent {
                field("", &format!("  {line}"));
            }
            field("", &format!("signature {}", hex::encode(sig)));
        }
    };
    let (first, signed) = approve("officers-alice").await?;
    show("officer alice", &signed);
    field(
        "",
        &format!(
            "-> {:?}, {} of 2 signed approvals",
            first.state(),
            first
                .pending
                .map_or(0, |p| p.approvals.iter().filter(|v| v.counted).count())
        ),
    );
    let (second, signed) = approve("officers-bob").await?;
    show("officer bob", &signed);
    field("", &format!("-> {:?}", second.state()));
    if second.state() != proto::RequestState::Signed {
        return Err(op("two approvals did not sign the request"));
    }
    if let Some(signed::Result::EthereumTransaction(t)) = second.result.and_then(|r| r.result) {
        field("tx hash", &t.tx_hash);
    }
    Ok(())
}

pub(super) async fn proof(signer: &Signer) -> Result<(), CliError> {
    let json = signer
        .signer("officers-carol")
        .await?
        .get_proof(GetRequestRequest {
            request_id: "treasury-1".into(),
            requester: signer.principal("treasury").to_owned(),
        })
        .await
        .map_err(|s| op(status_line(&s)))?
        .into_inner()
        .proof_json;
    let path = signer.dir.join("treasury-1.proof.json");
    std::fs::write(&path, format!("{json}\n")).map_err(op)?;
    field(
        "proof",
        &format!("{} (Signer.GetProof, as officer carol)", path.display()),
    );
    let proof: Proof = serde_json::from_str(&json).map_err(op)?;
    let check = proof.verify(Some(&signer.policy));
    println!(
        "  `custos request verify {} --policy policy.toml`:",
        path.display()
    );
    for line in &check.passed {
        field("ok", line);
    }
    for line in &check.problems {
        field("FAIL", line);
    }
    if !check.ok() {
        return Err(op("the proof does not verify"));
    }
    println!(
        "  Anyone holding the proof and the policy can re-check the votes without the server;"
    );
    println!("  tests/governance/verify_proof.py does it with an independent implementation.");
    Ok(())
}
