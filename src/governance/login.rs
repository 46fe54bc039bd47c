//! The approval console's sign-in statement: the console proves that its user holds an enrolled
//! approver key by signing a fresh, single-use challenge the server issued.
//!
//! ```text
//! str("custos/console-login/v1") ‖ str(challenge, 64 lower-case hex digits) ‖ str(public key text)
//! ```
//!
//! The domain keeps a sign-in signature from ever verifying as a vote or a policy signature,
//! and a vote from ever signing anyone in.

use super::encoding::Statement;

/// The domain of sign-in statements.
pub const LOGIN_DOMAIN: &str = "custos/console-login/v1";

/// The bytes the console signs to sign in with `key` (canonical text) for `challenge` (hex).
pub fn login_statement(challenge: &str, key: &str) -> Vec<u8> {
    let mut s = Statement::new(LOGIN_DOMAIN).expect("the domain is short");
    s.str(challenge)
        .and_then(|s| s.str(key))
        .expect("a challenge and a key text are short");
    s.into_bytes()
}
