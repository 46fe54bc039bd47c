//! Share text parsing: whatever a custodian types or a file holds, parsing gives a share or an
//! error naming what is wrong (and where), never a panic; a share that parses encodes back to a
//! text that parses to the same share.
#![no_main]

use custos::secret::SecretString;
use custos::shares::text::{encode, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = SecretString::new(String::from_utf8_lossy(data).into_owned());
    if let Ok(share) = parse(&text) {
        let again = encode(share.store_tag, share.set_id, share.threshold, &share.share);
        let back = parse(&again).expect("an encoded share parses");
        assert_eq!(back.share.index(), share.share.index());
        assert_eq!(*back.share.value_bytes(), *share.share.value_bytes());
    }
});
