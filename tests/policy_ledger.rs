//! The ledger never lets the allowed sum in a window exceed its cap: random sequences of requests,
//! idempotent retries, rejections (releases) and restarts (reopening the sled files), and
//! concurrent check-and-reserve from several threads.

use std::collections::BTreeMap;
use std::sync::Arc;

use custos::amount::Amount;
use custos::intent::{ActionKind, Asset, Destination, Intent};
use custos::keys::Chain;
use custos::policy::{Policy, PolicyRequest};
use custos::state::auth::StateAuth;
use custos::state::State;
use custos::state::{ReserveOutcome, StateStore};
use proptest::prelude::*;

const POLICY: &str = r#"
[policy]
name = "p"
[roles]
signer = ["svc"]
[assets.bitcoin.mainnet]
native = { symbol = "BTC", decimals = 8 }
[[rules]]
name = "a"
effect = "allow"
roles = ["signer"]
assets = ["BTC"]
max_amount = "3 BTC"
[rules.limits]
windows = [{ period = "1h", scope = "wallet", sum = "10 BTC", count = 6 }]
[[rules]]
name = "b"
effect = "allow"
roles = ["signer"]
assets = ["BTC"]
[rules.limits]
windows = [{ period = "1h", scope = "wallet", sum = "10 BTC" }]
"#;

const CAP: u64 = 10 * 100_000_000;

/// The ledger's database at `dir`, its records under a fixed test key (the same across reopens).
fn open_ledger(dir: &std::path::Path) -> State {
    let state = State::open_sled(dir).unwrap();
    state.set_auth(Some(StateAuth::new(custos::secret::Secret32::new([3; 32]))));
    state
}

fn req(sats: u64, at: i64) -> PolicyRequest {
    let amount = Amount::from(sats);
    PolicyRequest {
        principal: "svc".into(),
        at,
        intent: Intent {
            destinations: vec![Destination {
                address: "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4".into(),
                amount,
            }],
            amount,
            ..Intent::new(
                "hot",
                Chain::Bitcoin,
                "mainnet",
                ActionKind::Transfer,
                Asset::native("BTC", 8),
            )
        },
    }
}

#[derive(Clone, Debug)]
enum Op {
    Request { sats: u64, advance: i64 },
    Retry(usize),
    Reject(usize),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1u64..6 * 100_000_000, 0i64..900).prop_map(|(sats, advance)| Op::Request { sats, advance }),
        1 => any::<usize>().prop_map(Op::Retry),
        1 => any::<usize>().prop_map(Op::Reject),
        1 => Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn window_sum_never_exceeds_cap(ops in proptest::collection::vec(op(), 1..40)) {
        let policy = Policy::from_toml(POLICY).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut store = open_ledger(dir.path());
        let mut now = 1_700_000_000i64;
        // request id -> (time, amount, plan) of what is currently reserved.
        let mut live: BTreeMap<String, (i64, u64)> = BTreeMap::new();
        let mut issued: Vec<(String, u64, i64)> = Vec::new();
        for op in ops {
            match op {
                Op::Request { sats, advance } => {
                    now += advance;
                    let id = format!("r{}", issued.len());
                    issued.push((id.clone(), sats, now));
                    let d = policy.evaluate(&req(sats, now), &store).unwrap();
                    if let Some(plan) = d.reservation {
                        if store.reserve(&id, &plan, None).unwrap() == ReserveOutcome::Reserved {
                            live.insert(id, (now, sats));
                        }
                    }
                }
                Op::Retry(i) if !issued.is_empty() => {
                    let (id, sats, at) = issued[i % issued.len()].clone();
                    if let Some(plan) = policy.evaluate(&req(sats, at), &custos::policy::limits::EmptyLedger).unwrap().reservation {
                        let out = store.reserve(&id, &plan, None).unwrap();
                        // A retry never records twice.
                        prop_assert!(out != ReserveOutcome::Reserved || !live.contains_key(&id));
                        if out == ReserveOutcome::Reserved { live.insert(id, (at, sats)); }
                    }
                }
                Op::Reject(i) if !issued.is_empty() => {
                    let (id, _, _) = &issued[i % issued.len()];
                    store.release(id).unwrap();
                    live.remove(id);
                }
                Op::Restart => {
                    drop(store);
                    store = open_ledger(dir.path());
                }
                _ => {}
            }
            // Every 1h window ending at any reserved time holds at most the cap.
            for (t, _) in live.values() {
                let sum: u64 = live.values().filter(|(u, _)| *u > t - 3600 && *u <= *t).map(|(_, s)| *s).sum();
                prop_assert!(sum <= CAP, "window ending {t} holds {sum}");
            }
        }
    }
}

#[test]
fn concurrent_reservations_cannot_both_pass_a_cap() {
    let policy = Arc::new(Policy::from_toml(POLICY).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open_ledger(dir.path()));
    let at = 1_700_000_000;
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let (policy, store) = (policy.clone(), store.clone());
            std::thread::spawn(move || {
                let mut won = 0u64;
                for i in 0..5 {
                    // Every thread evaluates against the same (stale) view, then races to reserve.
                    let d = policy.evaluate(&req(300_000_000, at), &*store).unwrap();
                    if let Some(plan) = d.reservation {
                        if store.reserve(&format!("t{t}-{i}"), &plan, None).unwrap()
                            == ReserveOutcome::Reserved
                        {
                            won += 300_000_000;
                        }
                    }
                }
                won
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(
        total,
        9 * 100_000_000,
        "three 3 BTC requests fit under 10 BTC"
    );
}

#[test]
fn holds_expire_and_release_is_exact() {
    let policy = Policy::from_toml(POLICY).unwrap();
    let store = State::scratch().unwrap();
    let at = 1_700_000_000;
    let plan = policy
        .evaluate(&req(900_000_000, at), &store)
        .unwrap()
        .reservation
        .unwrap();
    assert_eq!(
        store.reserve("held", &plan, Some(at + 60)).unwrap(),
        ReserveOutcome::Reserved
    );
    assert_eq!(
        store.reserve("held", &plan, Some(at + 60)).unwrap(),
        ReserveOutcome::AlreadyReserved
    );
    let d = policy.evaluate(&req(200_000_000, at + 10), &store).unwrap();
    assert_eq!(d.code, "limit.window_sum", "{}", d.message);
    assert!(store.release_expired(at + 59).unwrap().is_empty());
    assert_eq!(
        store.release_expired(at + 60).unwrap(),
        vec!["held".to_owned()]
    );
    let d = policy.evaluate(&req(200_000_000, at + 70), &store).unwrap();
    assert_eq!(d.code, "allow");
    assert_eq!(
        store.reserve("held", &plan, None).unwrap(),
        ReserveOutcome::AlreadyReleased
    );
}

/// Window sums read through the verified cache (cold: from sled; warm: from the cache) equal a
/// sum made by hand over the reservations, for windows of many lengths and offsets, before and
/// after releases.
#[test]
fn window_sums_equal_the_reservations_summed_by_hand() {
    use custos::policy::limits::{LedgerKey, ReservationPlan};
    use custos::policy::model::Scope;
    let dir = tempfile::tempdir().unwrap();
    let store = open_ledger(dir.path());
    let key = LedgerKey {
        scope: Scope::Wallet,
        name: "w".into(),
        asset: "BTC".into(),
    };
    let base: i64 = 1_750_000_000;
    let seed = std::cell::Cell::new(0x9e37_79b9_7f4a_7c15_u64);
    let next = |n: u64| {
        let s = seed
            .get()
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        seed.set(s);
        (s >> 33) % n
    };
    let mut entries: Vec<(String, i64, u64)> = Vec::new();
    for i in 0..300 {
        let at = base + next(3 * 86_400) as i64;
        let amount = 1 + next(1_000_000);
        let plan = ReservationPlan {
            at,
            amount: Amount::from(amount),
            keys: vec![key.clone()],
            checks: Vec::new(),
        };
        let id = format!("r{i}");
        assert_eq!(
            store.reserve(&id, &plan, None).unwrap(),
            ReserveOutcome::Reserved
        );
        entries.push((id, at, amount));
    }
    let by_hand = |entries: &[(String, i64, u64)], from: i64, to: i64| -> (u64, u64) {
        // The ledger counts whole minutes: from the one holding `from + 1` to the one holding `to`.
        let (first, last) = ((from + 1).div_euclid(60), to.div_euclid(60));
        let inside = entries
            .iter()
            .filter(|(_, at, _)| (first..=last).contains(&at.div_euclid(60)));
        inside.fold((0, 0), |(s, c), (_, _, a)| (s + a, c + 1))
    };
    let check = |entries: &[(String, i64, u64)]| {
        for _ in 0..60 {
            let from = base - 3600 + next(4 * 86_400) as i64;
            let period =
                [60, 600, 3599, 3600, 86_400, 2 * 86_400 + 17, 7 * 86_400][next(7) as usize];
            let to = from + period;
            let (sum, count) = by_hand(entries, from, to);
            for read in ["cold or warm", "warm"] {
                let u = store.window_usage(&key, from, to).unwrap();
                assert_eq!(u.sum, Amount::from(sum), "{read} sum over ({from}, {to}]");
                assert_eq!(u.count, count, "{read} count over ({from}, {to}]");
            }
        }
    };
    check(&entries);
    for _ in 0..100 {
        let i = next(entries.len() as u64) as usize;
        let (id, ..) = entries.swap_remove(i);
        store.release(&id).unwrap();
    }
    check(&entries);
}
