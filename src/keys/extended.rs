//! Strict structural checks of serialized extended keys (BIP32 "Serialization format").
//!
//! rust-bitcoin parses xprv/xpub strings but does not enforce every rule BIP32 test vector 5
//! lists: a private key must carry the 0x00 padding byte, a master key (depth 0) must have a
//! zero parent fingerprint and child number. Keys arrive from operators and configuration, so
//! Custos checks all of them before handing the text to rust-bitcoin.

use bitcoin::base58;

/// Version bytes Custos accepts: xprv/tprv for private keys, xpub/tpub for public keys.
const XPRV: [u8; 4] = [0x04, 0x88, 0xad, 0xe4];
const TPRV: [u8; 4] = [0x04, 0x35, 0x83, 0x94];
const XPUB: [u8; 4] = [0x04, 0x88, 0xb2, 0x1e];
const TPUB: [u8; 4] = [0x04, 0x35, 0x87, 0xcf];

/// Which kind of extended key the caller expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtendedKind {
    /// xprv / tprv.
    Private,
    /// xpub / tpub.
    Public,
}

/// Checks the BIP32 structure of a serialized extended key: base58check, 78 bytes, a version of
/// the expected kind, key data of the right form (0x00 ‖ 32 bytes for private keys; 0x02/0x03
/// compressed point prefix for public keys) and the master-key rules for depth 0. The message
/// never includes key bytes.
pub fn check_extended_key(text: &str, kind: ExtendedKind) -> Result<(), String> {
    let bytes = base58::decode_check(text).map_err(|_| "invalid base58 or checksum".to_owned())?;
    if bytes.len() != 78 {
        return Err(format!(
            "extended keys are 78 bytes, this one is {}",
            bytes.len()
        ));
    }
    let version: [u8; 4] = bytes[..4].try_into().expect("length checked");
    let (expected, other) = match kind {
        ExtendedKind::Private => ([XPRV, TPRV], [XPUB, TPUB]),
        ExtendedKind::Public => ([XPUB, TPUB], [XPRV, TPRV]),
    };
    if !expected.contains(&version) {
        return Err(if other.contains(&version) {
            match kind {
                ExtendedKind::Private => {
                    "expected a private extended key (xprv/tprv), got a public one"
                }
                ExtendedKind::Public => {
                    "expected a public extended key (xpub/tpub), got a private one"
                }
            }
            .to_owned()
        } else {
            "unknown extended key version".to_owned()
        });
    }
    let depth = bytes[4];
    let parent_fingerprint = &bytes[5..9];
    let child_number = &bytes[9..13];
    if depth == 0 && parent_fingerprint != [0; 4] {
        return Err("master key (depth 0) with a non-zero parent fingerprint".to_owned());
    }
    if depth == 0 && child_number != [0; 4] {
        return Err("master key (depth 0) with a non-zero child number".to_owned());
    }
    let key_prefix = bytes[45];
    match kind {
        ExtendedKind::Private if key_prefix != 0x00 => {
            Err("private key data must start with 0x00".to_owned())
        }
        ExtendedKind::Public if key_prefix != 0x02 && key_prefix != 0x03 => {
            Err("public key data must be a compressed point (0x02 or 0x03)".to_owned())
        }
        _ => Ok(()),
    }
}
