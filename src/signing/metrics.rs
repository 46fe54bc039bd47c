//! The service's metrics registry and its Prometheus text exposition. The edge serves it on its own
//! listener (`crate::service::metrics_http`, loopback by default).
//!
//! - `custos_requests_total{method, outcome}`: gRPC calls by outcome (`succeeded`, `denied` for
//!   policy and identity refusals, `failed` for everything else);
//! - `custos_decisions_total{rule, outcome}`: policy decisions by the rule that made them;
//! - `custos_sign_seconds`: latency histogram of signing calls that signed;
//! - `custos_sealed`: 1 while sealed or unsealing, 0 when unsealed;
//! - `custos_outbox_lag`: entries signed but not yet acknowledged by the broadcaster;
//! - `custos_state_tampered_total{tree}`: state records that failed authentication (never acted
//!   on; `tree="verify"` counts unseals refused by the full check).
//!
//! The edge counts requests; the signing core, which the server hands these metrics at start
//! ([`crate::signing::contract::SignerCore::attach_metrics`]), counts decisions (once per decision made: a
//! retry answered from the stored result is not a new one), observes signing latency and keeps
//! the outbox lag (head minus the slowest broadcaster's cursor) current on signing and on acks.
//!
//! Counters are plain atomics and small maps: a few dozen series, no metrics framework needed.
//! No label ever carries a request payload, an address or a secret: methods and rule names only.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How a call ended, for `custos_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Answered OK.
    Succeeded,
    /// Refused by policy or identity (PERMISSION_DENIED, UNAUTHENTICATED).
    Denied,
    /// Any other error.
    Failed,
}

impl Outcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Denied => "denied",
            Outcome::Failed => "failed",
        }
    }
}

/// Upper bounds of the signing latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The service's metrics. Shared by the handlers through an `Arc`.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, Outcome), u64>>,
    decisions: Mutex<BTreeMap<(String, &'static str), u64>>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    sealed: AtomicU64,
    outbox_lag: AtomicU64,
    tampered: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// All zero; sealed.
    pub fn new() -> Self {
        let metrics = Metrics::default();
        metrics.sealed.store(1, Ordering::Relaxed);
        metrics
    }

    /// Counts one call of `method` (the RPC name, e.g. "Sign").
    pub fn record_request(&self, method: &'static str, outcome: Outcome) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((method, outcome)).or_default() += 1;
    }

    /// Counts one policy decision: `outcome` is "allow", "deny" or "needs_approval".
    pub fn record_decision(&self, rule: &str, outcome: &'static str) {
        let mut map = self.decisions.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((rule.to_owned(), outcome)).or_default() += 1;
    }

    /// Counts a state record that failed authentication (by tree; `verify` for a failed full
    /// check at unseal).
    pub fn record_tampered(&self, tree: &'static str) {
        let mut map = self.tampered.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry(tree).or_default() += 1;
    }

    /// Observes the latency of one signing call that signed.
    pub fn observe_sign_latency(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Sets the seal gauge.
    pub fn set_sealed(&self, sealed: bool) {
        self.sealed.store(u64::from(sealed), Ordering::Relaxed);
    }

    /// Sets the outbox lag gauge (head minus acknowledged).
    pub fn set_outbox_lag(&self, lag: u64) {
        self.outbox_lag.store(lag, Ordering::Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP custos_requests_total gRPC calls by method and outcome.\n");
        out.push_str("# TYPE custos_requests_total counter\n");
        for ((method, outcome), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "custos_requests_total{{method=\"{method}\",outcome=\"{}\"}} {n}",
                outcome.as_str()
            );
        }
        out.push_str("# HELP custos_decisions_total Policy decisions by rule and outcome.\n");
        out.push_str("# TYPE custos_decisions_total counter\n");
        for ((rule, outcome), n) in self
            .decisions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "custos_decisions_total{{rule=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape_label(rule)
            );
        }
        out.push_str("# HELP custos_sign_seconds Latency of signing calls that signed.\n");
        out.push_str("# TYPE custos_sign_seconds histogram\n");
        for (bucket, bound) in self.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            let _ = writeln!(
                out,
                "custos_sign_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(out, "custos_sign_seconds_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "custos_sign_seconds_sum {sum}");
        let _ = writeln!(out, "custos_sign_seconds_count {count}");
        out.push_str("# HELP custos_sealed 1 while the key store is sealed, 0 when unsealed.\n");
        out.push_str("# TYPE custos_sealed gauge\n");
        let _ = writeln!(out, "custos_sealed {}", self.sealed.load(Ordering::Relaxed));
        out.push_str("# HELP custos_outbox_lag Signed entries not yet acknowledged.\n");
        out.push_str("# TYPE custos_outbox_lag gauge\n");
        let _ = writeln!(
            out,
            "custos_outbox_lag {}",
            self.outbox_lag.load(Ordering::Relaxed)
        );
        out.push_str(
            "# HELP custos_state_tampered_total State records that failed authentication.\n",
        );
        out.push_str("# TYPE custos_state_tampered_total counter\n");
        for (tree, n) in self
            .tampered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(out, "custos_state_tampered_total{{tree=\"{tree}\"}} {n}");
        }
        out
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_gauges() {
        let metrics = Metrics::new();
        metrics.record_request("Sign", Outcome::Succeeded);
        metrics.record_request("Sign", Outcome::Denied);
        metrics.record_decision("hot-small", "allow");
        metrics.observe_sign_latency(Duration::from_millis(3));
        metrics.set_sealed(false);
        let text = metrics.render();
        assert!(text.contains("custos_requests_total{method=\"Sign\",outcome=\"succeeded\"} 1"));
        assert!(text.contains("custos_requests_total{method=\"Sign\",outcome=\"denied\"} 1"));
        assert!(text.contains("custos_decisions_total{rule=\"hot-small\",outcome=\"allow\"} 1"));
        assert!(text.contains("custos_sign_seconds_bucket{le=\"0.0025\"} 0"));
        assert!(text.contains("custos_sign_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("custos_sign_seconds_count 1"));
        assert!(text.contains("custos_sealed 0"));
    }
}
