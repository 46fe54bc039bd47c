//! The conformance suite: the same tests, unchanged, against every state engine (sled and
//! PostgreSQL; `tests/state_conformance.rs` runs each test once per engine). The engine contract
//! (atomic multi-tree transactions, read-your-writes, ordered range reads, re-runs on conflicts,
//! serial order under concurrency), the state steps on it (caps never exceeded by concurrent
//! reservations, gapless audit chain and outbox, exclusive nonce claims, tampering caught), and the
//! signing core over it (signing into the outbox, approvals reaching one quorum, expiry, a failed
//! step leaving nothing, retries answered from the state after a reopen).
#![allow(dead_code)]

use std::ops::Bound;
use std::sync::Arc;

use custos::amount::Amount;
use custos::policy::limits::{LedgerKey, ReservationPlan, UsageView, WindowCheck};
use custos::policy::model::Scope;
use custos::secret::Secret32;
use custos::signing::contract::{CoreError, RequestRef, RequestState, SignOutcome, SignerCore};
use custos::signing::now_unix;
use custos::state::audit::{self, AuditEntry, VerifyOutcome};
use custos::state::auth::StateAuth;
use custos::state::engine::{Engine, Scan, TxError};
use custos::state::ledger::reserve_in;
use custos::state::nonces::{self, ClaimOutcome, NonceClaim};
use custos::state::outbox::{self, StoredOutboxEntry};
use custos::state::sled::SledEngine;
use custos::state::{verify, ReserveOutcome, State, StateError, Tree};
use tokio_stream::StreamExt;

use crate::core_support::*;
use crate::pg_support;

/// An engine under test.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sled,
    Postgres,
}

impl Backend {
    /// A fresh, empty engine.
    pub fn engine(self) -> Arc<dyn Engine> {
        match self {
            Backend::Sled => Arc::new(SledEngine::temporary().unwrap()),
            Backend::Postgres => Arc::new(pg_support::fresh_engine()),
        }
    }

    /// A fresh, unsealed state under a fixed test key.
    pub fn state(self) -> Arc<State> {
        let state = State::new(self.engine());
        state.set_auth(Some(StateAuth::new(Secret32::new([7; 32]))));
        Arc::new(state)
    }

    /// A signing-core environment (key store, policy) with its state on this engine.
    pub fn env(self) -> Env {
        match self {
            Backend::Sled => Env::new(),
            Backend::Postgres => Env::with_postgres(pg_support::fresh_settings()),
        }
    }
}

fn k(bytes: &[u8]) -> Vec<u8> {
    bytes.to_vec()
}

// ---- the engine contract -------------------------------------------------------------------

pub fn transactions_are_atomic(b: Backend) {
    let e = b.engine();
    // Aborted after writes in three trees: nothing is kept.
    let r = e.transact_raw(&mut |tx| {
        tx.insert(Tree::Requests, b"r", k(b"1"))?;
        tx.insert(Tree::Meta, b"m", k(b"1"))?;
        tx.insert(Tree::Outbox, &1u64.to_be_bytes(), k(b"o"))?;
        Err(TxError::Abort(StateError::Storage("stop".into())))
    });
    assert_eq!(r, Err(StateError::Storage("stop".into())));
    for tree in [Tree::Requests, Tree::Meta, Tree::Outbox] {
        assert_eq!(e.count(tree).unwrap(), 0, "{tree:?}");
    }
    // Committed: all of it; inside, reads see the transaction's own writes.
    e.transact_raw(&mut |tx| {
        assert_eq!(tx.insert(Tree::Requests, b"r", k(b"1"))?, None);
        assert_eq!(tx.insert(Tree::Requests, b"r", k(b"2"))?, Some(k(b"1")));
        assert_eq!(tx.get(Tree::Requests, b"r")?, Some(k(b"2")));
        tx.insert(Tree::Meta, b"m", k(b"1"))?;
        assert_eq!(tx.remove(Tree::Meta, b"m")?, Some(k(b"1")));
        assert_eq!(tx.get(Tree::Meta, b"m")?, None);
        assert_eq!(tx.remove(Tree::Meta, b"never")?, None);
        tx.insert(Tree::Outbox, &1u64.to_be_bytes(), k(b"o"))?;
        Ok(())
    })
    .unwrap();
    assert_eq!(e.get_raw(Tree::Requests, b"r").unwrap(), Some(k(b"2")));
    assert_eq!(e.get_raw(Tree::Meta, b"m").unwrap(), None);
    assert_eq!(e.count(Tree::Outbox).unwrap(), 1);
    // A later transaction sees, replaces and removes what an earlier one committed.
    e.transact_raw(&mut |tx| {
        assert_eq!(tx.get(Tree::Requests, b"r")?, Some(k(b"2")));
        assert_eq!(tx.get(Tree::Outbox, &1u64.to_be_bytes())?, Some(k(b"o")));
        assert_eq!(tx.get(Tree::Outbox, &2u64.to_be_bytes())?, None);
        tx.remove(Tree::Requests, b"r")?;
        Ok(())
    })
    .unwrap();
    assert_eq!(e.get_raw(Tree::Requests, b"r").unwrap(), None);
    // Values are kept byte for byte (empty, binary, large).
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    e.transact_raw(&mut |tx| {
        tx.insert(Tree::Pending, b"empty", Vec::new())?;
        tx.insert(Tree::Pending, &[0, 0xff, 0], big.clone())?;
        Ok(())
    })
    .unwrap();
    assert_eq!(
        e.get_raw(Tree::Pending, b"empty").unwrap(),
        Some(Vec::new())
    );
    assert_eq!(e.get_raw(Tree::Pending, &[0, 0xff, 0]).unwrap(), Some(big));
}

pub fn scans_follow_key_order_and_bounds(b: Backend) {
    let e = b.engine();
    let keys: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x00],
        vec![0x01],
        vec![0x01, 0x00],
        vec![0x01, 0xff],
        vec![0x02],
        vec![0x7f, 0x80],
        vec![0xff],
        vec![0xff, 0xff],
    ];
    e.transact_raw(&mut |tx| {
        for (i, key) in keys.iter().rev().enumerate() {
            tx.insert(Tree::Nonces, key, vec![i as u8])?;
        }
        // Another tree's keys never show in this one.
        tx.insert(Tree::Cursors, &[0x01], k(b"x"))?;
        Ok(())
    })
    .unwrap();
    let got = |scan: Scan| -> Vec<Vec<u8>> {
        e.scan_raw(&scan)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(got(Scan::all(Tree::Nonces, 100)), keys);
    assert_eq!(got(Scan::all(Tree::Nonces, 3)), keys[..3].to_vec());
    assert_eq!(got(Scan::all(Tree::Nonces, 0)), Vec::<Vec<u8>>::new());
    assert_eq!(
        got(Scan::prefix(Tree::Nonces, &[0x01], 100)),
        vec![vec![0x01], vec![0x01, 0x00], vec![0x01, 0xff]]
    );
    assert_eq!(
        got(Scan::prefix(Tree::Nonces, &[0xff], 100)),
        vec![vec![0xff], vec![0xff, 0xff]]
    );
    assert_eq!(
        got(Scan::after(Tree::Nonces, &[0x01], 2)),
        vec![vec![0x01, 0x00], vec![0x01, 0xff]]
    );
    let range = |from, to, reverse, limit| Scan {
        tree: Tree::Nonces,
        from,
        to,
        reverse,
        limit,
    };
    assert_eq!(
        got(range(
            Bound::Included(vec![0x01]),
            Bound::Included(vec![0x02]),
            false,
            100
        )),
        vec![vec![0x01], vec![0x01, 0x00], vec![0x01, 0xff], vec![0x02]]
    );
    assert_eq!(
        got(range(
            Bound::Excluded(vec![0x01]),
            Bound::Excluded(vec![0x02]),
            false,
            100
        )),
        vec![vec![0x01, 0x00], vec![0x01, 0xff]]
    );
    assert_eq!(
        got(range(
            Bound::Unbounded,
            Bound::Excluded(vec![0x01]),
            true,
            100
        )),
        vec![vec![0x00], vec![]]
    );
    assert_eq!(
        got(range(
            Bound::Included(vec![0x02]),
            Bound::Unbounded,
            true,
            2
        )),
        vec![vec![0xff, 0xff], vec![0xff]]
    );
    assert_eq!(
        got(range(
            Bound::Included(vec![0x05]),
            Bound::Included(vec![0x03]),
            false,
            100
        )),
        Vec::<Vec<u8>>::new()
    );
    // Several at once: the same answers, in order.
    let scans = vec![
        Scan::prefix(Tree::Nonces, &[0x01], 100),
        Scan::all(Tree::Cursors, 10),
        Scan::after(Tree::Nonces, &[0x7f, 0x80], 100),
    ];
    let many = e.scan_many_raw(&scans).unwrap();
    assert_eq!(many.len(), 3);
    for (scan, entries) in scans.iter().zip(&many) {
        assert_eq!(&e.scan_raw(scan).unwrap(), entries);
    }
    assert_eq!(e.count(Tree::Nonces).unwrap(), keys.len() as u64);
    assert_eq!(e.count(Tree::Cursors).unwrap(), 1);
}

pub fn conflicts_rerun_the_step(b: Backend) {
    let e = b.engine();
    let mut attempts = 0;
    e.transact_raw(&mut |tx| {
        attempts += 1;
        tx.insert(Tree::Meta, b"n", vec![attempts])?;
        if attempts == 1 {
            return Err(TxError::Conflict);
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(attempts, 2);
    assert_eq!(e.get_raw(Tree::Meta, b"n").unwrap(), Some(vec![2]));
}

/// Threads each adding one to a counter and appending a record at the counter's new value:
/// exactly one record per increment, no gap, no double — the transactions ran in a serial order.
pub fn concurrent_transactions_are_serial(b: Backend) {
    let e = b.engine();
    const THREADS: u64 = 4;
    const EACH: u64 = 40;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let e = e.clone();
            s.spawn(move || {
                for _ in 0..EACH {
                    e.transact_raw(&mut |tx| {
                        let n = tx
                            .get(Tree::Meta, b"counter")?
                            .map(|v| u64::from_be_bytes(v.try_into().unwrap()))
                            .unwrap_or(0)
                            + 1;
                        tx.insert(Tree::Meta, b"counter", n.to_be_bytes().to_vec())?;
                        let old = tx.insert(Tree::Audit, &n.to_be_bytes(), vec![t as u8])?;
                        assert_eq!(old, None, "sequence {n} given twice");
                        Ok(())
                    })
                    .unwrap();
                }
            });
        }
    });
    let total = THREADS * EACH;
    assert_eq!(
        e.get_raw(Tree::Meta, b"counter").unwrap(),
        Some(total.to_be_bytes().to_vec())
    );
    let seqs: Vec<u64> = e
        .scan_raw(&Scan::all(Tree::Audit, usize::MAX))
        .unwrap()
        .into_iter()
        .map(|(k, _)| u64::from_be_bytes(k.try_into().unwrap()))
        .collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
}

// ---- the state steps on the engine ---------------------------------------------------------

fn wallet_key() -> LedgerKey {
    LedgerKey {
        scope: Scope::Wallet,
        name: "hot".into(),
        asset: "BTC".into(),
    }
}

fn plan(at: i64, amount: u64, cap_sum: u64, cap_count: u64) -> ReservationPlan {
    ReservationPlan {
        at,
        amount: Amount::from(amount),
        keys: vec![wallet_key()],
        checks: vec![WindowCheck {
            key: wallet_key(),
            period_secs: 86_400,
            max_sum: Some(Amount::from(cap_sum)),
            max_count: Some(cap_count),
            decimals: 8,
            rule: "cap".into(),
            label: "24h wallet window".into(),
        }],
    }
}

fn entry(event: &str) -> AuditEntry {
    AuditEntry {
        at: now_unix(),
        event: event.into(),
        principal: "test".into(),
        policy_hash: "-".into(),
        ..AuditEntry::default()
    }
}

/// Many threads reserving against one rolling-window cap: exactly what fits is reserved, the
/// ledger's usage is the sum reserved, and the state verifies (digest, chain).
pub fn concurrent_reservations_never_exceed_a_cap(b: Backend) {
    let state = b.state();
    let audit_key = Secret32::new([9; 32]);
    let at = now_unix();
    const THREADS: usize = 4;
    const EACH: usize = 12;
    // 3 units each under a cap of 100: 33 fit (the count cap of 40 does not bind).
    let outcomes: Vec<ReserveOutcome> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let state = state.clone();
                let audit_key = audit_key.duplicate();
                s.spawn(move || {
                    (0..EACH)
                        .map(|i| {
                            let id = format!("r-{t}-{i}");
                            state
                                .transact(|tx| {
                                    let out = reserve_in(tx, &id, &plan(at, 3, 100, 40), None)?;
                                    audit::append_in(tx, &audit_key, &entry("reserve"))?;
                                    Ok(out)
                                })
                                .unwrap()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let reserved = outcomes
        .iter()
        .filter(|o| **o == ReserveOutcome::Reserved)
        .count();
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, ReserveOutcome::LimitExceeded { .. }))
        .count();
    assert_eq!(reserved, 33);
    assert_eq!(refused, THREADS * EACH - 33);
    let usage = state
        .usage(&wallet_key(), at - 86_400, at + 86_400)
        .unwrap();
    assert_eq!(usage.sum, Amount::from(99u64));
    assert_eq!(usage.count, 33);
    let report = verify::verify(&state, &audit_key, None).unwrap();
    assert!(report.is_intact(), "{:?}", report.problems());
    assert_eq!(
        report.audit,
        VerifyOutcome::Intact {
            records: (THREADS * EACH) as u64
        }
    );
}

/// Concurrent appends: the audit chain verifies and has every record; the outbox sequences are
/// 1..=n without a gap, each entry carrying the audit head of its own transaction; cursors only
/// move forward.
pub fn audit_and_outbox_are_gapless_under_concurrency(b: Backend) {
    let state = b.state();
    let audit_key = Secret32::new([9; 32]);
    const THREADS: usize = 4;
    const EACH: usize = 15;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let state = state.clone();
            let audit_key = audit_key.duplicate();
            s.spawn(move || {
                for i in 0..EACH {
                    state
                        .transact(|tx| {
                            let (seq, mac) =
                                audit::append_with_mac_in(tx, &audit_key, &entry("sign.signed"))?;
                            outbox::push_in(
                                tx,
                                &StoredOutboxEntry {
                                    sequence: 0,
                                    request_id: format!("r-{t}-{i}"),
                                    chain: custos::network::Chain::Bitcoin,
                                    network: "regtest".into(),
                                    wallet: "btc".into(),
                                    raw_tx_hex: "00".into(),
                                    tx_id: format!("{t}-{i}"),
                                    signed_at: 0,
                                    audit_sequence: seq,
                                    audit_mac: hex::encode(mac),
                                },
                            )?;
                            Ok(())
                        })
                        .unwrap();
                }
            });
        }
    });
    let n = (THREADS * EACH) as u64;
    assert_eq!(
        audit::verify(&state, &audit_key).unwrap(),
        VerifyOutcome::Intact { records: n }
    );
    assert_eq!(outbox::head(&state).unwrap(), n);
    let entries = outbox::read_after(&state, 0, n, usize::MAX).unwrap();
    assert_eq!(
        entries.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    let mut audit_seqs: Vec<u64> = entries.iter().map(|e| e.audit_sequence).collect();
    audit_seqs.sort();
    audit_seqs.dedup();
    assert_eq!(
        audit_seqs.len() as u64,
        n,
        "each entry has its own audit record"
    );
    // Paging from a cursor.
    assert_eq!(
        outbox::read_after(&state, 10, n, 5).unwrap()[0].sequence,
        11
    );
    state
        .transact(|tx| outbox::ack_in(tx, "b", 7).map(|_| ()))
        .unwrap();
    let back = state.transact(|tx| outbox::ack_in(tx, "b", 3)).unwrap();
    assert_eq!(back, 7, "a cursor never moves back");
    assert_eq!(outbox::cursor(&state, "b").unwrap(), 7);
}

/// Threads racing for one Ethereum nonce with different transactions: exactly one holds it.
pub fn nonce_claims_are_exclusive(b: Backend) {
    let state = b.state();
    let key = nonces::nonce_key(1, "0xABCD", 5);
    let winners: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let state = state.clone();
                let key = key.clone();
                s.spawn(move || {
                    let claim = NonceClaim {
                        request_id: format!("req-{i}"),
                        signing_hash: format!("0x{i:02}"),
                    };
                    state
                        .transact(|tx| match nonces::check_in(tx, &key, &claim, false)? {
                            ClaimOutcome::Claimed => {
                                nonces::claim_in(tx, &key, &claim)?;
                                Ok(1)
                            }
                            ClaimOutcome::Conflict { .. } => Ok(0),
                        })
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(winners, 1);
}

/// A row written or changed without the key, or deleted, is caught: the read fails as tampered,
/// the full check lists it and the digest no longer matches.
pub fn tampering_is_caught(b: Backend) {
    let state = b.state();
    let audit_key = Secret32::new([9; 32]);
    state
        .transact(|tx| {
            tx.put(Tree::Requests, b"a", b"{\"x\":1}")?;
            tx.put(Tree::Requests, b"b", b"{\"x\":2}")?;
            audit::append_in(tx, &audit_key, &entry("e"))?;
            Ok(())
        })
        .unwrap();
    assert!(verify::verify(&state, &audit_key, None)
        .unwrap()
        .is_intact());
    // Someone with write access to the database changes a row.
    let mut raw = state
        .engine()
        .get_raw(Tree::Requests, b"a")
        .unwrap()
        .unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    raw_put(&state, Tree::Requests, b"a", raw);
    assert!(matches!(
        state.get(Tree::Requests, b"a"),
        Err(StateError::Tampered { .. })
    ));
    let report = verify::verify(&state, &audit_key, None).unwrap();
    assert_eq!(report.bad_count, 1);
    assert!(!report.is_intact());
    // A row copied to another key fails too, and the digest (a sum over every record's MAC)
    // no longer matches: a record was injected.
    let moved = state
        .engine()
        .get_raw(Tree::Requests, b"b")
        .unwrap()
        .unwrap();
    raw_put(&state, Tree::Requests, b"c", moved);
    assert!(matches!(
        state.get(Tree::Requests, b"c"),
        Err(StateError::Tampered { .. })
    ));
    let report = verify::verify(&state, &audit_key, None).unwrap();
    assert_eq!(report.bad_count, 2);
    assert!(report.digest_problem.is_some());
    // A step reading a bad row aborts whole.
    let r = state.transact(|tx| {
        tx.put(Tree::Requests, b"d", b"{}")?;
        tx.get(Tree::Requests, b"a")
    });
    assert!(matches!(r, Err(StateError::Tampered { .. })));
    assert_eq!(state.engine().get_raw(Tree::Requests, b"d").unwrap(), None);
}

// ---- the signing core over the engine ------------------------------------------------------

pub async fn core_signs_into_the_outbox(b: Backend) {
    let env = b.env();
    let core = env.open();
    let psbt = env.psbt(1, 10_000_000, 1);
    let reply = core
        .sign(&principal(PAYER), btc_request("b-1", &psbt))
        .await
        .unwrap();
    assert_eq!(signed(&reply).1, Some(1));
    let reply = core
        .sign(
            &principal(PAYER),
            eth_request("e-1", 0, 10 * MILLI_ETH, false),
        )
        .await
        .unwrap();
    assert_eq!(signed(&reply).1, Some(2));
    // The same id again: the first result.
    let again = core
        .sign(&principal(PAYER), btc_request("b-1", &psbt))
        .await
        .unwrap();
    assert_eq!(signed(&again).1, Some(1));
    assert_eq!(outbox_len(&core), 2);
    assert_eq!(
        audit_events(&core),
        [
            "unseal",
            "sign.allow",
            "sign.signed",
            "sign.allow",
            "sign.signed"
        ]
    );
    let bcast = principal(BROADCASTER);
    let mut stream = core.stream_signed(&bcast, None).await.unwrap();
    assert_eq!(stream.next().await.unwrap().unwrap().sequence, 1);
    assert_eq!(stream.next().await.unwrap().unwrap().sequence, 2);
    let ack = core.ack(&bcast, 2).await.unwrap();
    assert_eq!((ack.acked, ack.head), (2, 2));
    core.sign(&principal(PAYER), eth_request("e-2", 1, MILLI_ETH, false))
        .await
        .unwrap();
    let third = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .expect("a live stream gets the new entry")
        .unwrap()
        .unwrap();
    assert_eq!(third.sequence, 3);
    assert!(matches!(
        audit::verify(core.state(), &env.audit_key_of_copy()).unwrap(),
        VerifyOutcome::Intact { records: 7 }
    ));
}

pub async fn core_concurrent_requests_never_exceed_the_cap(b: Backend) {
    let env = b.env();
    let core = Arc::new(env.open());
    let mut tasks = Vec::new();
    for i in 0..16u32 {
        let core = core.clone();
        let psbt = env.psbt(1, 15_000_000, 100 + i);
        tasks.push(tokio::spawn(async move {
            core.sign(&principal(PAYER), btc_request(&format!("c-{i}"), &psbt))
                .await
        }));
    }
    let mut signed_n = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(reply) => {
                signed(&reply);
                signed_n += 1;
            }
            Err(e) => assert_eq!(denied(e).1, "limit.window_sum"),
        }
    }
    assert_eq!(signed_n, 6, "six of 0.15 BTC fit under 1 BTC");
    assert_eq!(wallet_usage(core.state()), (6, "90000000".into()));
    assert_eq!(outbox_len(&core), 6);
}

pub async fn core_approvals_reach_one_quorum(b: Backend) {
    let env = b.env();
    let core = env.open();
    let psbt = env.psbt(2, 80_000_000, 1);
    let reply = core
        .sign(&principal(PAYER), btc_request("a-1", &psbt))
        .await
        .unwrap();
    assert!(matches!(reply.outcome, SignOutcome::Pending(_)));
    assert_eq!(wallet_usage(core.state()), (1, "80000000".into()));
    let r = approve_as(&core, BOB, &RequestRef::id("a-1"), "ok")
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::PendingApproval);
    let r = approve_as(&core, CAROL, &RequestRef::id("a-1"), "ok")
        .await
        .unwrap();
    assert_eq!(r.state, RequestState::Signed);
    assert_eq!(
        wallet_usage(core.state()).0,
        1,
        "the hold became the reservation"
    );
    assert_eq!(outbox_len(&core), 1);
    // Expiry releases a hold.
    core.sign(
        &principal(PAYER),
        btc_request("x-1", &env.psbt(3, 70_000_000, 2)),
    )
    .await
    .unwrap();
    assert_eq!(wallet_usage(core.state()).0, 2);
    assert_eq!(core.expire_pending(now_unix() + 3_601).unwrap(), 1);
    assert_eq!(wallet_usage(core.state()).0, 1);
    let e = approve_as(&core, BOB, &RequestRef::id("x-1"), "late")
        .await
        .unwrap_err();
    assert_eq!(e.code(), "not-pending");
}

pub async fn core_failed_step_leaves_nothing(b: Backend) {
    let env = b.env();
    let core = env.open();
    core.faults().fail_audit(true);
    let e = core
        .sign(
            &principal(PAYER),
            btc_request("f-1", &env.psbt(1, 1_000_000, 1)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, CoreError::StateUnavailable { .. }), "{e:?}");
    assert_eq!(outbox_len(&core), 0);
    assert_eq!(core.state().count(Tree::LedgerReservations).unwrap(), 0);
    assert_eq!(core.state().count(Tree::Requests).unwrap(), 0);
    core.faults().fail_audit(false);
    let reply = core
        .sign(
            &principal(PAYER),
            btc_request("f-1", &env.psbt(1, 1_000_000, 1)),
        )
        .await
        .unwrap();
    signed(&reply);
}

pub async fn core_answers_retries_after_a_reopen(b: Backend) {
    let env = b.env();
    let psbt = env.psbt(1, 10_000_000, 1);
    let first = {
        let core = env.open();
        core.sign(&principal(PAYER), btc_request("r-1", &psbt))
            .await
            .unwrap()
    };
    let core = env.open();
    let again = core
        .sign(&principal(PAYER), btc_request("r-1", &psbt))
        .await
        .unwrap();
    assert_eq!(signed(&first).0, signed(&again).0);
    assert_eq!(outbox_len(&core), 1);
    assert_eq!(wallet_usage(core.state()).0, 1);
    drop(core);
    let state = env.open_state();
    let report = verify::verify(&state, &env.audit_key(), None).unwrap();
    assert!(report.is_intact(), "{:?}", report.problems());
}
