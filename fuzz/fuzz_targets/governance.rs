//! Fuzz what governance reads from outside: public key texts (policy files, custos.toml, votes,
//! the console), policy signature files, and proof files with their offline check (alone, and
//! judged by the example policy). Any input must give a value or an error, never a panic; a key
//! that parses round-trips through its canonical text; a proof, however forged, verifies or names
//! its problems.
#![no_main]

use std::sync::OnceLock;

use custos::policy::Policy;
use libfuzzer_sys::fuzz_target;

/// The example exchange policy, parsed once: the trusted policy proofs are judged by.
fn example_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        Policy::from_toml(include_str!("../../policies/exchange.toml"))
            .expect("the example policy is valid")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = custos::governance::PublicKey::parse(text) {
        let again = custos::governance::PublicKey::parse(&key.to_text()).expect("canonical text");
        assert_eq!(again, key);
        let _ = key.verify(data, &[0u8; 64]);
    }
    let _ = toml::from_str::<custos::governance::policy_sig::SignatureFile>(text);
    if let Ok(proof) = serde_json::from_str::<custos::governance::proof::Proof>(text) {
        let check = proof.verify(None);
        let _ = check.ok();
        // Judged by a trusted policy too: the enrolment and quorum checks.
        let judged = proof.verify(Some(example_policy()));
        let _ = judged.ok();
    }
});
