//! Crash points for the crash tests (debug builds only; compiled out of release builds).
//!
//! When the environment variable `CUSTOS_UNSAFE_TEST_CRASH_AT` names a point, the process aborts
//! there: no destructor runs and sled flushes nothing more, as after `kill -9` or a power cut.
//! `tests/cli_keystore.rs` uses it to stop `custos passphrase change` between its steps.

/// The variable that names the crash point.
pub const CRASH_AT_ENV: &str = "CUSTOS_UNSAFE_TEST_CRASH_AT";

/// Aborts the process if `CUSTOS_UNSAFE_TEST_CRASH_AT` equals `point` (debug builds only).
#[inline]
pub(crate) fn crash_point(point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var_os(CRASH_AT_ENV).is_some_and(|v| v == point) {
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}
