//! Derivation-path parsing: any text is parsed or refused, never a panic; a parsed path stays
//! within the depth limit and round-trips through its canonical form.
#![no_main]

use custos::keys::path::{parse_derivation_path, MAX_PATH_DEPTH};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(path) = parse_derivation_path(text) {
        assert!(path.len() <= MAX_PATH_DEPTH);
        let canonical = format!("m/{path}");
        let canonical = canonical.trim_end_matches('/');
        let again = parse_derivation_path(canonical).expect("canonical form parses");
        assert_eq!(again, path);
    }
});
