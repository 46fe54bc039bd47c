//! The conformance suite (`tests/conformance/`) run unchanged against each engine: sled (a
//! temporary database per test) and PostgreSQL (a real server started by the project's own code,
//! one per test binary, a fresh schema per test).

mod bitcoin_support;
mod conformance;
mod core_support;
mod pg_support;

macro_rules! suite {
    ($name:ident, $backend:expr) => {
        mod $name {
            use crate::conformance::{self, Backend};
            const B: Backend = $backend;

            #[test]
            fn transactions_are_atomic() {
                conformance::transactions_are_atomic(B)
            }
            #[test]
            fn scans_follow_key_order_and_bounds() {
                conformance::scans_follow_key_order_and_bounds(B)
            }
            #[test]
            fn conflicts_rerun_the_step() {
                conformance::conflicts_rerun_the_step(B)
            }
            #[test]
            fn concurrent_transactions_are_serial() {
                conformance::concurrent_transactions_are_serial(B)
            }
            #[test]
            fn concurrent_reservations_never_exceed_a_cap() {
                conformance::concurrent_reservations_never_exceed_a_cap(B)
            }
            #[test]
            fn audit_and_outbox_are_gapless_under_concurrency() {
                conformance::audit_and_outbox_are_gapless_under_concurrency(B)
            }
            #[test]
            fn nonce_claims_are_exclusive() {
                conformance::nonce_claims_are_exclusive(B)
            }
            #[test]
            fn tampering_is_caught() {
                conformance::tampering_is_caught(B)
            }
            #[tokio::test]
            async fn core_signs_into_the_outbox() {
                conformance::core_signs_into_the_outbox(B).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn core_concurrent_requests_never_exceed_the_cap() {
                conformance::core_concurrent_requests_never_exceed_the_cap(B).await
            }
            #[tokio::test]
            async fn core_approvals_reach_one_quorum() {
                conformance::core_approvals_reach_one_quorum(B).await
            }
            #[tokio::test]
            async fn core_failed_step_leaves_nothing() {
                conformance::core_failed_step_leaves_nothing(B).await
            }
            #[tokio::test]
            async fn core_answers_retries_after_a_reopen() {
                conformance::core_answers_retries_after_a_reopen(B).await
            }
        }
    };
}

suite!(sled, Backend::Sled);
suite!(postgres, Backend::Postgres);
