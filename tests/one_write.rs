//! An allowed request is one durable write, released after its flush; overload is refused, not
//! queued.
//!
//! - While the one flush of an allowed request is held (debug builds can hold flushes), the
//!   signature has left nowhere: the `Sign` call has not answered, `GetRequest` does not show the
//!   result, no outbox stream delivers it. A crash image taken then (the state directory copied
//!   while the flush is held) restarts into a state where a retry answers one signature, with one
//!   outbox entry, the limits counted once and an audit chain that verifies.
//! - Past `max_requests_in_flight`, `Sign` is refused at once with `overloaded`
//!   (RESOURCE_EXHAUSTED), nothing stored; the admitted request completes, and once it has, the
//!   next request is admitted again.
//!
//! No test here measures time: every wait is for a state to be reached.

mod bitcoin_support;
mod core_support;

use std::sync::Arc;
use std::time::Duration;

use core_support::*;
use custos::signing::contract::{CoreError, RequestRef, SignerCore};
use custos::state::audit::{self, VerifyOutcome};
use custos::state::Tree;
use tokio_stream::StreamExt;

/// Waits (polling, without a time bound that could fail the test) until `done` holds.
async fn until(mut done: impl FnMut() -> bool) {
    while !done() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn request_ref(id: &str) -> RequestRef {
    RequestRef {
        request_id: id.into(),
        requester: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_flush_releases_nothing_and_a_retry_signs_once() {
    let env = Env::new();
    let core = Arc::new(env.open());
    let mut stream = core
        .stream_signed(&principal(BROADCASTER), Some(0))
        .await
        .unwrap();
    let psbt = env.psbt(2, 1_000_000, 7);
    // The one flush of the allowed request is held.
    core.hold_flushes(Some(0));
    let signer = core.clone();
    let request = btc_request("c-1", &psbt);
    let signing = tokio::spawn(async move { signer.sign(&principal(PAYER), request).await });
    // The single transaction committed: request signed, outbox entry, audit — not yet durable.
    until(|| core.state().count(Tree::Outbox).unwrap() == 1).await;
    assert_eq!(core.state().count(Tree::Requests).unwrap(), 1);
    assert!(!signing.is_finished(), "answered before its flush");
    assert_eq!(core.durable_outbox_head(), 0, "not durable yet");
    // GetRequest waits for the flush too: it does not answer while the flush is held.
    let reader = core.clone();
    let reading = tokio::spawn(async move {
        reader
            .get_request(&principal(PAYER), &request_ref("c-1"))
            .await
    });
    // Nothing reaches the broadcaster either.
    let early = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
    assert!(early.is_err(), "delivered before durable: {early:?}");
    assert!(
        !reading.is_finished(),
        "GetRequest showed a result before its flush"
    );
    assert!(!signing.is_finished(), "answered before its flush");

    // The crash image: what is on disk now (the flush never ran).
    let image = tempfile::tempdir().unwrap();
    copy_dir(&env.state, image.path());
    // The process dies: the calls never answer.
    signing.abort();
    reading.abort();
    assert!(signing.await.unwrap_err().is_cancelled());
    assert!(reading.await.unwrap_err().is_cancelled());
    drop(stream);
    let core = Arc::try_unwrap(core).unwrap_or_else(|_| panic!("the core is still shared"));
    drop(core);

    // Restart over the crash image: the request is either there (signed, never released) or
    // absent; either way the retry answers one signature, stored once.
    let image_dir = image.path().to_path_buf();
    let core = env.open_sealed_with(|c| c.state_dir = image_dir);
    unseal(&core);
    let had_it = core.state().count(Tree::Requests).unwrap() == 1;
    let reply = core
        .sign(&principal(PAYER), btc_request("c-1", &psbt))
        .await
        .unwrap();
    let (output, sequence) = signed(&reply);
    let again = core
        .sign(&principal(PAYER), btc_request("c-1", &psbt))
        .await
        .unwrap();
    assert_eq!(
        signed(&again).0,
        output,
        "a retry answers the same signature"
    );
    assert_eq!(
        outbox_len(&core),
        1,
        "one outbox entry (stored before: {had_it})"
    );
    assert_eq!(sequence, Some(1));
    let (count, _) = wallet_usage(core.state());
    assert_eq!(count, 1, "the limits count the request once");
    let events = audit_events(&core);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.as_str() == "sign.signed")
            .count(),
        1,
        "{events:?}"
    );
    let key = env.audit_key_of_copy();
    assert!(matches!(
        audit::verify(core.state(), &key).unwrap(),
        VerifyOutcome::Intact { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_bound_sign_is_refused_at_once_and_nothing_is_stored() {
    let env = Env::new();
    let core = Arc::new(env.open_sealed_with(|c| c.max_requests_in_flight = 1));
    unseal(&core);
    let psbt = env.psbt(2, 1_000_000, 1);
    core.hold_flushes(Some(0));
    let signer = core.clone();
    let first = btc_request("o-1", &psbt);
    let signing = tokio::spawn(async move { signer.sign(&principal(PAYER), first).await });
    // Admitted, committed, waiting for its flush.
    until(|| outbox_len(&core) == 1).await;
    assert_eq!(core.requests_in_flight(), 1);
    let audited = audit_events(&core).len();

    let refused = core
        .sign(
            &principal(PAYER),
            btc_request("o-2", &env.psbt(3, 1_000_000, 2)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, CoreError::Overloaded { limit: 1 }),
        "{refused:?}"
    );
    assert_eq!(refused.code(), "overloaded");
    assert!(
        refused.to_string().contains("max_requests_in_flight"),
        "{refused}"
    );
    assert_eq!(
        custos::service::status::grpc_code(&refused),
        tonic::Code::ResourceExhausted
    );
    // Nothing of the refused request was stored or audited.
    let missing = core
        .get_request(&principal(PAYER), &request_ref("o-2"))
        .await;
    assert!(
        matches!(missing, Err(CoreError::NotFound { .. })),
        "{missing:?}"
    );
    assert_eq!(audit_events(&core).len(), audited, "nothing audited");
    assert_eq!(core.state().count(Tree::Requests).unwrap(), 1);

    core.hold_flushes(None);
    signing.await.unwrap().unwrap();
    assert_eq!(core.requests_in_flight(), 0, "the slot is given back");
    // The refused request, sent again, is admitted now.
    let reply = core
        .sign(
            &principal(PAYER),
            btc_request("o-2", &env.psbt(3, 1_000_000, 2)),
        )
        .await
        .unwrap();
    signed(&reply);
    assert_eq!(outbox_len(&core), 2);
}

#[tokio::test]
async fn a_refused_call_gives_its_slot_back() {
    let env = Env::new();
    let core = env.open_sealed_with(|c| c.max_requests_in_flight = 2);
    // Sealed: every call is refused after admission, and its slot comes back.
    for i in 0..5 {
        let e = core
            .sign(
                &principal(PAYER),
                btc_request(&format!("s-{i}"), &env.psbt(2, 1_000_000, i)),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, CoreError::Sealed), "{e:?}");
        assert_eq!(core.requests_in_flight(), 0);
    }
}
