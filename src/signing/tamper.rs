//! What the core does with a state record that fails authentication: never act on it, and make
//! sure an operator hears of it — once per record, in the log, the metric
//! `custos_state_tampered_total{tree}` and an audit record `state.tampered`.
//!
//! Reports come from two places: a read the core needed (the call gets DATA_LOSS
//! `state-tampered`, [`super::SigningCore::fail`]) and a lenient scan that skipped the record (a
//! listing, the recovery pass, an expiry sweep, an outbox stream: the others go on). The scan
//! reports through the state's observer, which must not write to the state it is reading, so
//! reports are queued here and audited at the next safe point (right after the call that found
//! them, and by the periodic sweep).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};

use crate::signing::metrics::Metrics;
use crate::state::StateError;

/// Records reported so far (by tree and key) and those not yet audited.
#[derive(Default)]
pub(crate) struct TamperReports {
    seen: Mutex<BTreeSet<String>>,
    unaudited: Mutex<Vec<String>>,
    pub(crate) metrics: OnceLock<Arc<Metrics>>,
}

impl TamperReports {
    /// Logs and counts `error` the first time its record is seen, and queues it for the audit.
    pub(crate) fn report(&self, error: &StateError) {
        let StateError::Tampered { tree, key, reason } = error else {
            return;
        };
        let id = format!("{tree}/{key}");
        if !self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id)
        {
            return;
        }
        tracing::error!(tree, key = %key, reason = %reason, "state record fails authentication; it is not acted on");
        if let Some(metrics) = self.metrics.get() {
            metrics.record_tampered(tree);
        }
        self.unaudited
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(error.to_string());
    }

    /// Takes the reports not yet audited.
    pub(crate) fn take_unaudited(&self) -> Vec<String> {
        std::mem::take(&mut *self.unaudited.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts reports back (their audit could not be written).
    pub(crate) fn requeue(&self, reports: Vec<String>) {
        self.unaudited
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(reports);
    }
}
