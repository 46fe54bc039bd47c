//! `custos bench policy`: how long one evaluation takes against a large policy and ledger.
//!
//! Builds a synthetic policy of `--rules` allow rules (each with a per-transaction limit and two
//! rolling windows) and a sled ledger of `--entries` reservations spread over the last 7 days,
//! then evaluates a request that only the last rule matches (its two windows are read; the
//! reference path that examines every rule is timed too), and finally times check-and-reserve (with its flush) and release.

use std::time::Instant;

use clap::Subcommand;

use super::{CliError, CliResult};
use crate::amount::Amount;
use crate::intent::{ActionKind, Asset, Destination, Intent};
use crate::keys::Chain;
use crate::policy::limits::{EmptyLedger, LedgerKey, ReservationPlan};
use crate::policy::model::Scope;
use crate::policy::{Policy, PolicyRequest};
use crate::state::State;
use crate::state::StateStore;

/// `custos bench …`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Policy evaluation against a large policy and ledger.
    Policy {
        /// Number of rules.
        #[arg(long, default_value_t = 1000)]
        rules: usize,
        /// Number of ledger entries (reservations).
        #[arg(long, default_value_t = 1_000_000)]
        entries: usize,
        /// Evaluations to time.
        #[arg(long, default_value_t = 20_000)]
        iterations: usize,
    },
    /// End-to-end signatures per second through the gRPC signer (see `bench_signer`).
    Signer(super::bench_signer::SignerArgs),
}

const ADDR: &str = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu";

/// A synthetic policy of `rules` rules, one per wallet `w<i>`.
pub fn synthetic_policy(rules: usize) -> String {
    let mut text = String::from(
        "[policy]\nname = \"bench\"\n[roles]\nsigner = [\"spiffe://bench/*\"]\n[assets.bitcoin.mainnet]\nnative = { symbol = \"BTC\", decimals = 8 }\n[address_books.payees]\nchain = \"bitcoin\"\naddresses = [\"",
    );
    text.push_str(ADDR);
    text.push_str("\"]\n");
    for i in 0..rules {
        text.push_str(&format!(
            "[[rules]]\nname = \"rule {i}\"\neffect = \"allow\"\nroles = [\"signer\"]\nwallets = [\"w{i}\"]\nchains = [\"bitcoin\"]\nkinds = [\"transfer\"]\nassets = [\"BTC\"]\ndestinations = [\"payees\"]\n[rules.limits]\nper_tx = \"5 BTC\"\nwindows = [ {{ period = \"24h\", scope = \"wallet\", sum = \"100000 BTC\", count = 1000000 }}, {{ period = \"7d\", scope = \"rule\", sum = \"1000000 BTC\" }} ]\n"
        ));
    }
    text
}

fn request(wallet: &str, at: i64) -> PolicyRequest {
    let amount = Amount::from(10_000_000u64);
    PolicyRequest {
        principal: "spiffe://bench/payouts".into(),
        at,
        intent: Intent {
            destinations: vec![Destination {
                address: ADDR.into(),
                amount,
            }],
            amount,
            fee: Amount::from(1000u64),
            fee_rate_sat_per_kvb: Some(10_000),
            ..Intent::new(
                wallet,
                Chain::Bitcoin,
                "mainnet",
                ActionKind::Transfer,
                Asset::native("BTC", 8),
            )
        },
    }
}

/// Runs `custos bench …`.
pub fn run(command: BenchCommand) -> CliResult {
    let (rules, entries, iterations) = match command {
        BenchCommand::Policy {
            rules,
            entries,
            iterations,
        } => (rules, entries, iterations),
        BenchCommand::Signer(args) => return super::bench_signer::run(args),
    };
    let rules = rules.max(1);
    fn op(e: impl std::fmt::Display) -> CliError {
        CliError::operational(e)
    }
    let t = Instant::now();
    let policy = Policy::from_toml(&synthetic_policy(rules)).map_err(op)?;
    println!(
        "parsed and validated {rules} rules in {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let store = State::scratch().map_err(op)?;
    let now: i64 = 1_750_000_000;
    let t = Instant::now();
    let plans = (0..entries).map(|i| {
        let wallet = format!("w{}", i % rules);
        let at = now - (i as i64 * 7919) % (7 * 86_400);
        let mut keys = Vec::with_capacity(6);
        for (scope, name) in [
            (Scope::Wallet, wallet),
            (Scope::Principal, format!("spiffe://bench/p{}", i % 10)),
            (Scope::Rule, format!("rule {}", i % rules)),
        ] {
            for asset in ["BTC", LedgerKey::ALL_ASSETS] {
                keys.push(LedgerKey {
                    scope,
                    name: name.clone(),
                    asset: asset.into(),
                });
            }
        }
        (
            format!("req-{i}"),
            ReservationPlan {
                at,
                amount: Amount::from(1000u64),
                keys,
                checks: Vec::new(),
            },
        )
    });
    store.load_unchecked(plans).map_err(op)?;
    store.flush().map_err(op)?;
    println!(
        "loaded {} ledger entries ({} buckets) in {:.1} s",
        store.reservation_count().map_err(op)?,
        store.count(crate::state::Tree::LedgerBuckets).map_err(op)?,
        t.elapsed().as_secs_f64()
    );

    let last = format!("w{}", rules - 1);
    let d = policy.evaluate(&request(&last, now), &store).map_err(op)?;
    println!(
        "decision: {} by {:?} ({})",
        d.outcome.as_str(),
        d.rule,
        d.message
    );
    let mut times = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let req = request(&last, now + (i as i64 % 3600));
        let t = Instant::now();
        let d = policy.evaluate(&req, &store).map_err(op)?;
        times.push(t.elapsed().as_nanos() as f64 / 1e3);
        std::hint::black_box(d);
    }
    report(
        "evaluate (1 request, last of the rules matches, 2 windows read)",
        &mut times,
    );
    let mut times = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let req = request(&last, now + (i as i64 % 3600));
        let t = Instant::now();
        let d = policy.evaluate(&req, &EmptyLedger).map_err(op)?;
        times.push(t.elapsed().as_nanos() as f64 / 1e3);
        std::hint::black_box(d);
    }
    report(
        "evaluate against an empty ledger (rule matching only)",
        &mut times,
    );
    let mut times = Vec::with_capacity(iterations.min(2000));
    for i in 0..iterations.min(2000) {
        let req = request(&last, now + (i as i64 % 3600));
        let t = Instant::now();
        let d = policy.evaluate_every_rule(&req, &store).map_err(op)?;
        times.push(t.elapsed().as_nanos() as f64 / 1e3);
        std::hint::black_box(d);
    }
    report(
        "evaluate_every_rule (reference path: every rule examined, as `explain`)",
        &mut times,
    );
    let key = LedgerKey {
        scope: Scope::Wallet,
        name: last.clone(),
        asset: "BTC".into(),
    };
    let mut times = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let at = now + (i as i64 % 3600);
        let t = Instant::now();
        let u = store
            .window_usage(&key, at - 86_400, at + 86_400)
            .map_err(op)?;
        times.push(t.elapsed().as_nanos() as f64 / 1e3);
        std::hint::black_box(u);
    }
    report("window read (24h wallet window, range scans)", &mut times);

    let mut times = Vec::new();
    let mut rel = Vec::new();
    for i in 0..200 {
        let req = request(&last, now + i);
        let d = policy.evaluate(&req, &store).map_err(op)?;
        let plan = d
            .reservation
            .ok_or_else(|| op("the benchmark request was not allowed"))?;
        let t = Instant::now();
        store
            .reserve(&format!("bench-{i}"), &plan, None)
            .map_err(op)?;
        times.push(t.elapsed().as_nanos() as f64 / 1e3);
        let t = Instant::now();
        store.release(&format!("bench-{i}")).map_err(op)?;
        rel.push(t.elapsed().as_nanos() as f64 / 1e3);
    }
    report(
        "reserve (check-and-reserve transaction + flush)",
        &mut times,
    );
    report("release (transaction + flush)", &mut rel);
    Ok(())
}

fn report(what: &str, times: &mut [f64]) {
    times.sort_by(f64::total_cmp);
    let n = times.len().max(1);
    let mean = times.iter().sum::<f64>() / n as f64;
    let p = |q: f64| {
        times
            .get(((n as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "{what}: mean {mean:.1} µs, median {:.1} µs, p99 {:.1} µs over {n}",
        p(0.5),
        p(0.99)
    );
}
