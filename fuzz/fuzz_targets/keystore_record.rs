//! Key-store record decoding: whatever bytes sit under a record id, decoding gives a record or an
//! error naming the record, never a panic. The first byte picks the record id; the rest is tried
//! as stored bytes, and again with a correct integrity check appended so the fuzzer reaches the
//! decoder behind the check.
#![no_main]

use custos::keystore::record::{check_value, decode_record, encode_record};
use libfuzzer_sys::fuzz_target;

const IDS: [&str; 9] = [
    "header",
    "slot/passphrase",
    "slot/shamir",
    "slot/pkcs11",
    "seed/73c5da0a",
    "wallet/hot",
    "ceremony/00000000000000000001",
    "ceremony/head",
    "bogus",
];

fuzz_target!(|data: &[u8]| {
    let Some((selector, content)) = data.split_first() else {
        return;
    };
    let id = IDS[usize::from(*selector) % IDS.len()];
    let _ = decode_record(id, content);
    let mut checked = content.to_vec();
    checked.extend_from_slice(&check_value(id, content));
    if let Ok(record) = decode_record(id, &checked) {
        let again = encode_record(id, &record);
        decode_record(id, &again).expect("a record we encode decodes");
    }
});
