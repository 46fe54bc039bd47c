//! Fuzz the policy parser: arbitrary bytes as UTF-8 text must give a policy or errors with
//! positions, never a panic; a policy that parses must hash and diff against itself as unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match custos::policy::Policy::from_toml(text) {
        Ok(policy) => {
            let _ = policy.hash();
            assert!(custos::policy::diff::diff(&policy, &policy).is_empty());
            let _ = policy.token_registry();
        }
        Err(errors) => {
            assert!(!errors.errors.is_empty());
            let _ = errors.to_string();
        }
    }
});
