//! Where the time of an allowed `Sign` goes inside the core: a running sum per stage of the
//! one-write path ([`super::pipeline::sign`]), read by `custos bench signer` to print the
//! breakdown beside its end-to-end figures.
//!
//! The stages, in order: **admit** (access, size limits, disk guard, the request's own lock),
//! **decide** (idempotency read, decode, intent, policy evaluation with its window reads),
//! **sign** (in memory, the signature verified), **commit** (the one transaction, re-checking the
//! caps; it waits for any other transaction first), **flush** (waiting for the group commit to
//! make it durable). Only requests that were signed are counted. Each stage costs two clock
//! reads and one relaxed atomic add: cheap enough to stay on in production.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A stage of the one-write path (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Access, size limits, disk guard, the request's lock.
    Admit,
    /// Idempotency read, decode, intent, policy evaluation.
    Decide,
    /// Signing in memory (verified).
    Sign,
    /// The one durable transaction.
    Commit,
    /// Waiting for the group commit's flush.
    Flush,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 5] = [
        Stage::Admit,
        Stage::Decide,
        Stage::Sign,
        Stage::Commit,
        Stage::Flush,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Admit => "admit",
            Stage::Decide => "decide",
            Stage::Sign => "sign",
            Stage::Commit => "commit",
            Stage::Flush => "flush",
        }
    }
}

/// Running sums of the stages' wall time, and how many signed requests they cover.
#[derive(Debug, Default)]
pub struct StageTimes {
    nanos: [AtomicU64; 5],
    signed: AtomicU64,
}

/// A copy of the sums at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageSnapshot {
    /// Per stage, in [`Stage::ALL`] order.
    pub totals: [Duration; 5],
    /// Signed requests covered.
    pub signed: u64,
}

impl StageSnapshot {
    /// The sums between `earlier` and this one, and their mean per signed request.
    pub fn mean_since(&self, earlier: &StageSnapshot) -> [Duration; 5] {
        let n =
            u32::try_from(self.signed.saturating_sub(earlier.signed).max(1)).unwrap_or(u32::MAX);
        let mut out = [Duration::ZERO; 5];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = self.totals[i].saturating_sub(earlier.totals[i]) / n;
        }
        out
    }
}

/// The clock of one request: marks the end of each stage in turn.
#[derive(Debug)]
pub struct StageClock {
    last: Instant,
    spent: [Duration; 5],
}

impl StageClock {
    /// Starts at `at` (the request's arrival in the core).
    pub fn start(at: Instant) -> Self {
        StageClock {
            last: at,
            spent: [Duration::ZERO; 5],
        }
    }

    /// `stage` ended now (time since the previous mark).
    pub fn mark(&mut self, stage: Stage) {
        let now = Instant::now();
        self.spent[stage as usize] += now.saturating_duration_since(self.last);
        self.last = now;
    }
}

impl StageTimes {
    /// Adds a signed request's stages.
    pub fn record(&self, clock: &StageClock) {
        for (sum, spent) in self.nanos.iter().zip(clock.spent) {
            sum.fetch_add(
                u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
        }
        self.signed.fetch_add(1, Ordering::Relaxed);
    }

    /// The sums now.
    pub fn snapshot(&self) -> StageSnapshot {
        let mut totals = [Duration::ZERO; 5];
        for (slot, sum) in totals.iter_mut().zip(&self.nanos) {
            *slot = Duration::from_nanos(sum.load(Ordering::Relaxed));
        }
        StageSnapshot {
            totals,
            signed: self.signed.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_add_up_per_stage_and_means_divide_by_requests() {
        let times = StageTimes::default();
        let before = times.snapshot();
        let t0 = Instant::now();
        for _ in 0..2 {
            let mut clock = StageClock::start(t0);
            clock.mark(Stage::Admit);
            std::thread::sleep(Duration::from_millis(2));
            clock.mark(Stage::Commit);
            times.record(&clock);
        }
        let after = times.snapshot();
        assert_eq!(after.signed, 2);
        let mean = after.mean_since(&before);
        assert!(mean[Stage::Commit as usize] >= Duration::from_millis(2));
        assert_eq!(mean[Stage::Sign as usize], Duration::ZERO);
        let total: Duration = after.totals.iter().sum();
        assert!(total >= Duration::from_millis(4));
    }
}
