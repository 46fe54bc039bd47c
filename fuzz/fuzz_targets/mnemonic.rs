//! Mnemonic parsing: any text is parsed or refused, never a panic; a parsed mnemonic round-trips.
#![no_main]

use custos::keys::MnemonicSecret;
use custos::secret::SecretString;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(mnemonic) = MnemonicSecret::parse(&SecretString::new(text.to_owned())) {
        let again = MnemonicSecret::parse(&mnemonic.phrase()).expect("a phrase we print parses");
        assert_eq!(again.entropy(), mnemonic.entropy());
    }
});
