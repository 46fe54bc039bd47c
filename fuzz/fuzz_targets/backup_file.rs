//! Backup file parsing: whatever bytes a backup file holds (truncated, damaged, hostile), parsing
//! gives a checked file or an error naming what is wrong, never a panic or an unbounded
//! allocation. The bytes are tried as they are and again with a correct trailing checksum, so the
//! fuzzer reaches the structure behind it.
#![no_main]

use std::path::Path;

use custos::keystore::backup::BackupFile;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.backup");
    let _ = BackupFile::parse(data, path);
    let mut framed = b"custos-backup\0\0\0".to_vec();
    framed.extend_from_slice(data);
    let check: [u8; 32] = Sha256::digest(&framed).into();
    framed.extend_from_slice(&check);
    let _ = BackupFile::parse(&framed, path);
});
