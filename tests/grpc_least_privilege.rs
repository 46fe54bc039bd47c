//! Least privilege on every read, replayed as the attacks of issue 10 over loopback mutual TLS:
//! any certificate from the company CA — one the policy gives no role, or a role that has nothing
//! to do with a request or a wallet — must learn nothing about other principals' requests,
//! wallets or addresses, and must not get a payload read, stored or audited with its bytes.

mod exchange;
#[allow(dead_code)]
mod served;

use custos::service::proto::{
    self, sign_request::Payload, sign_response::Outcome, EthereumTransactionPayload,
    GetAddressRequest, GetRequestRequest, ListPendingRequest, ListWalletsRequest,
    PersonalMessagePayload, SignRequest,
};
use custos::state::{audit, requests};
use exchange::{Exchange, Options};
use tonic::Code;

const ETH: u128 = 1_000_000_000_000_000_000;
const ETH_PAYEE: &str = "0x3535353535353535353535353535353535353535";

/// An EIP-1559 transfer of `wei` on Ethereum mainnet (the example policy's wallets).
fn eth_tx(wallet: &str, id: &str, nonce: u64, wei: u128) -> SignRequest {
    let tx = serde_json::json!({
        "type": "0x2",
        "chainId": "0x1",
        "nonce": format!("{nonce:#x}"),
        "gas": "0x5208",
        "maxFeePerGas": "0x77359400",
        "maxPriorityFeePerGas": "0x3b9aca00",
        "to": ETH_PAYEE,
        "value": format!("{wei:#x}"),
        "data": "0x",
    });
    SignRequest {
        request_id: id.into(),
        wallet: wallet.into(),
        payload: Some(Payload::EthereumTransaction(EthereumTransactionPayload {
            unsigned_tx: serde_json::to_vec(&tx).unwrap(),
            address_index: None,
            replacement: false,
        })),
    }
}

fn message(wallet: &str, id: &str, bytes: &[u8]) -> SignRequest {
    SignRequest {
        request_id: id.into(),
        wallet: wallet.into(),
        payload: Some(Payload::PersonalMessage(PersonalMessagePayload {
            message: bytes.to_vec(),
            address_index: None,
        })),
    }
}

fn code_of(status: &tonic::Status) -> &str {
    status
        .metadata()
        .get("custos-code")
        .expect("custos-code metadata")
        .to_str()
        .unwrap()
}

/// The treasury's pending 100 ETH move (needs two officers) and a signed hot withdrawal.
async fn with_requests(x: &Exchange) {
    let reply = x
        .signer("treasury")
        .await
        .sign(eth_tx("eth-treasury", "t-1", 0, 100 * ETH))
        .await
        .unwrap()
        .into_inner();
    assert!(
        matches!(reply.outcome, Some(Outcome::Pending(_))),
        "{reply:?}"
    );
    let reply = x
        .signer("withdrawals")
        .await
        .sign(eth_tx("eth-hot", "h-1", 0, ETH))
        .await
        .unwrap()
        .into_inner();
    assert!(
        matches!(reply.outcome, Some(Outcome::Signed(_))),
        "{reply:?}"
    );
}

async fn pending_ids(x: &Exchange, who: &str) -> Result<Vec<String>, tonic::Status> {
    let page = x
        .signer(who)
        .await
        .list_pending(ListPendingRequest::default())
        .await?
        .into_inner();
    Ok(page.requests.into_iter().map(|r| r.request_id).collect())
}

async fn get(x: &Exchange, who: &str, id: &str) -> Result<proto::RequestRecord, tonic::Status> {
    Ok(x.signer(who)
        .await
        .get_request(GetRequestRequest {
            request_id: id.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .request
        .expect("a record"))
}

async fn wallet_names(x: &Exchange, who: &str) -> Result<Vec<String>, tonic::Status> {
    let mut names: Vec<String> = x
        .signer(who)
        .await
        .list_wallets(ListWalletsRequest {})
        .await?
        .into_inner()
        .wallets
        .into_iter()
        .map(|w| w.name)
        .collect();
    names.sort();
    Ok(names)
}

async fn address(x: &Exchange, who: &str, wallet: &str) -> Result<String, tonic::Status> {
    Ok(x.signer(who)
        .await
        .get_address(GetAddressRequest {
            wallet: wallet.into(),
            index: 0,
            change: false,
        })
        .await?
        .into_inner()
        .address)
}

#[tokio::test]
async fn a_certificate_without_a_role_reads_nothing() {
    let x = Exchange::start(Options::default()).await;
    with_requests(&x).await;
    for who in ["intruder", "visitor"] {
        let e = pending_ids(&x, who).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        assert_eq!(code_of(&e), "policy-no-role");
        // The same answer for an id that exists and one that does not: nothing is confirmed.
        let known = get(&x, who, "t-1").await.unwrap_err();
        let unknown = get(&x, who, "no-such-id").await.unwrap_err();
        assert_eq!(known.code(), Code::PermissionDenied, "{known:?}");
        assert_eq!(code_of(&known), "policy-no-role");
        assert_eq!(known.message(), unknown.message());
        let e = wallet_names(&x, who).await.unwrap_err();
        assert_eq!(code_of(&e), "policy-no-role");
        for wallet in ["eth-treasury", "btc-treasury", "eth-hot", "no-such-wallet"] {
            let e = address(&x, who, wallet).await.unwrap_err();
            assert_eq!(e.code(), Code::PermissionDenied, "{wallet}: {e:?}");
            assert_eq!(code_of(&e), "policy-no-role");
        }
    }
}

#[tokio::test]
async fn approvers_see_what_they_may_vote_on_requesters_their_own_admins_all() {
    let x = Exchange::start(Options::default()).await;
    with_requests(&x).await;
    // The officers hold the quorum's role: they see the pending move, and may open it.
    assert_eq!(pending_ids(&x, "alice").await.unwrap(), ["t-1"]);
    assert_eq!(
        get(&x, "alice", "t-1").await.unwrap().requester,
        "spiffe://exchange.example/treasury"
    );
    // The requester sees its own; the admin sees everything.
    assert_eq!(pending_ids(&x, "treasury").await.unwrap(), ["t-1"]);
    assert_eq!(pending_ids(&x, "ops-admin").await.unwrap(), ["t-1"]);
    get(&x, "ops-admin", "h-1").await.unwrap();
    // Principals with roles unrelated to the request see nothing of it: an empty page, and
    // NOT_FOUND word for word as for an id that was never used.
    let never = get(&x, "withdrawals", "never-used").await.unwrap_err();
    assert_eq!(never.code(), Code::NotFound);
    for who in ["withdrawals", "market-maker", "broadcaster"] {
        assert!(pending_ids(&x, who).await.unwrap().is_empty(), "{who}");
        let e = get(&x, who, "t-1").await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{who}: {e:?}");
        assert_eq!(
            e.message(),
            never.message().replace("never-used", "t-1"),
            "{who}"
        );
    }
    // A request that never needed approval is the requester's (and the admin's) alone: officers
    // have nothing to vote on there.
    get(&x, "withdrawals", "h-1").await.unwrap();
    for who in ["alice", "treasury", "market-maker"] {
        let e = get(&x, who, "h-1").await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{who}: {e:?}");
    }
    // Filtering by wallet cannot widen the view.
    let page = x
        .signer("withdrawals")
        .await
        .list_pending(ListPendingRequest {
            wallet: "eth-treasury".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(page.requests.is_empty());
}

#[tokio::test]
async fn wallets_and_addresses_only_for_principals_a_rule_reaches() {
    let x = Exchange::start(Options::default()).await;
    let all = wallet_names(&x, "ops-admin").await.unwrap();
    assert!(all.len() >= 5, "{all:?}");
    assert_eq!(
        wallet_names(&x, "withdrawals").await.unwrap(),
        ["btc-hot", "eth-hot"]
    );
    assert_eq!(
        wallet_names(&x, "treasury").await.unwrap(),
        ["btc-treasury", "eth-treasury"]
    );
    assert_eq!(wallet_names(&x, "market-maker").await.unwrap(), ["eth-mm"]);
    // Approvers vote, broadcasters deliver: neither requests signatures from any wallet.
    assert!(wallet_names(&x, "alice").await.unwrap().is_empty());
    assert!(wallet_names(&x, "broadcaster").await.unwrap().is_empty());

    // The treasury's addresses: for the treasury and the admin, NOT_FOUND for everyone else,
    // exactly as for a wallet that does not exist.
    let treasury = address(&x, "treasury", "eth-treasury").await.unwrap();
    assert_eq!(
        address(&x, "ops-admin", "eth-treasury").await.unwrap(),
        treasury
    );
    let missing = address(&x, "withdrawals", "no-such-wallet")
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    for who in ["withdrawals", "alice", "broadcaster", "market-maker"] {
        let e = address(&x, who, "eth-treasury").await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{who}: {e:?}");
        assert_eq!(
            e.message(),
            missing.message().replace("no-such-wallet", "eth-treasury")
        );
    }
    address(&x, "withdrawals", "btc-hot").await.unwrap();
}

#[tokio::test]
async fn a_sign_no_rule_could_allow_is_refused_unread_audited_and_leaves_the_id_free() {
    let x = Exchange::start(Options::default()).await;
    let marker = b"intruder-marker-0123456789";
    let audit_before = audit::head(x.core.state()).unwrap();
    // No role at all; a role without a signing rule (an officer); a signer on another's wallet.
    let cases = [
        ("intruder", "eth-hot", "shared-1"),
        ("visitor", "no-such-wallet", "shared-2"),
        ("alice", "eth-treasury", "shared-3"),
        ("withdrawals", "eth-treasury", "shared-4"),
        ("ops-admin", "eth-hot", "shared-5"),
    ];
    for (who, wallet, id) in cases {
        let e = x
            .signer(who)
            .await
            .sign(message(wallet, id, marker))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{who}: {e:?}");
        assert_eq!(code_of(&e), "policy-no-rule-for-principal", "{who}");
        assert!(e.message().contains(wallet), "{e:?}");
        // Refused before parsing: garbage gets the same answer, never INVALID_ARGUMENT.
        let mut garbage = eth_tx(wallet, &format!("{id}-garbage"), 0, 1);
        garbage.payload = Some(Payload::EthereumTransaction(EthereumTransactionPayload {
            unsigned_tx: b"\xff not a transaction".to_vec(),
            address_index: None,
            replacement: false,
        }));
        let e = x.signer(who).await.sign(garbage).await.unwrap_err();
        assert_eq!(code_of(&e), "policy-no-rule-for-principal", "{who}");
        // Nothing stored under the id.
        assert!(
            requests::keys_with_id(x.core.state(), id)
                .unwrap()
                .is_empty(),
            "{id}"
        );
    }
    // Every refusal audited, with the payload's kind and size, never its bytes.
    let records = audit::tail(x.core.state(), 100).unwrap();
    let refused: Vec<_> = records
        .iter()
        .filter(|r| r.seq > audit_before && r.event == "sign.refused")
        .collect();
    assert_eq!(refused.len(), 2 * cases.len(), "{records:?}");
    let hex_marker = hex::encode(marker);
    for r in &refused {
        assert_eq!(r.code.as_deref(), Some("policy-no-rule-for-principal"));
        assert_eq!(r.decision.as_deref(), Some("deny"));
        let text = format!("{r:?}");
        assert!(!text.contains("intruder-marker"), "{text}");
        assert!(!text.contains(&hex_marker), "{text}");
    }
    let first = refused[0];
    assert_eq!(first.principal, "spiffe://exchange.example/intruder");
    assert_eq!(first.request_id.as_deref(), Some("shared-1"));
    assert_eq!(first.wallet.as_deref(), Some("eth-hot"));
    assert_eq!(
        first.detail.as_deref(),
        Some(format!("personal message of {} bytes refused unread", marker.len()).as_str())
    );
    // The ids stay free: the principal a rule allows uses one next.
    let reply = x
        .signer("withdrawals")
        .await
        .sign(eth_tx("eth-hot", "shared-1", 0, ETH))
        .await
        .unwrap()
        .into_inner();
    assert!(
        matches!(reply.outcome, Some(Outcome::Signed(_))),
        "{reply:?}"
    );
    // A principal a rule reaches still gets NOT_FOUND for a wallet that does not exist only if
    // a rule could reach it on a wallet of that name; the example's rules all name their
    // wallets, so that too is the refusal, not a confirmation that no such wallet exists.
    let e = x
        .signer("withdrawals")
        .await
        .sign(eth_tx("no-such-wallet", "w-9", 0, ETH))
        .await
        .unwrap_err();
    assert_eq!(code_of(&e), "policy-no-rule-for-principal");
}
