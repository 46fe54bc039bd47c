//! From a token's raw `CKM_ECDSA` output to a signature Custos releases.
//!
//! `CKM_ECDSA` over a 32-byte digest returns `r ‖ s` (64 bytes) and nothing else. Tokens sign with
//! a random nonce (SoftHSM2 does; RFC 6979 is not in PKCS#11), do not normalise S, and give no
//! recovery id. So, for every signature:
//!
//! 1. parse `r ‖ s` (both below the group order, or it is refused);
//! 2. normalise to low S (`s := n − s` when `s > n/2`): BIP 62/146 standardness and EIP-2 demand
//!    it, and libsecp256k1 verifies only low-S signatures;
//! 3. verify it over the digest against the **wallet's** public key (derived from the account xpub
//!    or recorded at generation, never read back from the token): a token that signed with another
//!    key, or returned garbage, gets its signature refused, never released;
//! 4. for Ethereum, find the recovery id by recovering the public key for ids 0 and 1 (2 and 3
//!    need `r ≥ n − p`, probability about 2⁻¹²⁸, and are tried too) and keeping the one that gives
//!    the wallet's key.
//!
//! # Low R (Bitcoin)
//!
//! Bitcoin Core grinds its nonce until R is below 2²⁵⁵, so that the DER signature is at most 71
//! bytes (R needs no 0x00 padding byte); fee estimates assume it. A token picks its nonce itself,
//! so the only way to grind is to **sign again**: each signature has R low with probability ½.
//! Custos asks at most [`LOW_R_MAX_TRIES`] (32) signatures; the chance that none is low-R is
//! 2⁻³² (about once in four billion signatures). In that case the last signature is used as it
//! is: it is valid and standard, one byte longer (72 bytes), and a warning is logged. On average a
//! Bitcoin ECDSA signature costs the token two signing operations; Ethereum signatures need no
//! grinding (one operation).

use bitcoin::secp256k1::ecdsa::{RecoverableSignature, RecoveryId, Signature as EcdsaSignature};
use bitcoin::secp256k1::{Message, PublicKey};

use crate::backend::Digest32;
use crate::keys::secp;

/// The most signing operations asked of the token for one low-R signature.
pub const LOW_R_MAX_TRIES: u32 = 32;

/// Parses a token's `r ‖ s`, normalises it to low S and verifies it over `digest` against
/// `expected`. The error says what was wrong (never key material: there is none here).
pub fn normalise(
    raw: &[u8],
    digest: &Digest32,
    expected: &PublicKey,
) -> Result<EcdsaSignature, String> {
    if raw.len() != 64 {
        return Err(format!(
            "expected 64 bytes (r ‖ s), the token returned {}",
            raw.len()
        ));
    }
    let mut signature = EcdsaSignature::from_compact(raw)
        .map_err(|e| format!("r ‖ s is not a valid secp256k1 signature: {e}"))?;
    signature.normalize_s();
    secp()
        .verify_ecdsa(&Message::from_digest(*digest), &signature, expected)
        .map_err(|_| format!("it does not verify against the wallet's key {expected}"))?;
    Ok(signature)
}

/// Whether R is below 2²⁵⁵ (its DER encoding needs no padding byte).
pub fn is_low_r(signature: &EcdsaSignature) -> bool {
    signature.serialize_compact()[0] < 0x80
}

/// The recoverable form of a verified low-S signature: the recovery id that recovers `expected`.
pub fn recoverable(
    signature: &EcdsaSignature,
    digest: &Digest32,
    expected: &PublicKey,
) -> Result<RecoverableSignature, String> {
    let compact = signature.serialize_compact();
    let message = Message::from_digest(*digest);
    for id in 0..4 {
        let recid = RecoveryId::from_i32(id).expect("recovery ids 0 to 3 exist");
        let Ok(candidate) = RecoverableSignature::from_compact(&compact, recid) else {
            continue;
        };
        if secp().recover_ecdsa(&message, &candidate).as_ref() == Ok(expected) {
            return Ok(candidate);
        }
    }
    Err(format!(
        "no recovery id recovers the wallet's key {expected}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::SecretKey;

    fn key() -> (SecretKey, PublicKey) {
        let sk = SecretKey::from_slice(&[0x42; 32]).unwrap();
        (sk, sk.public_key(secp()))
    }

    /// A high-S copy of a signature: s' = n - s, as a token may return it.
    fn high_s(sig: &EcdsaSignature) -> [u8; 64] {
        let compact = sig.serialize_compact();
        let n = hex::decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
            .unwrap();
        let mut out = compact;
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let d = i16::from(n[i]) - i16::from(compact[32 + i]) - borrow;
            out[32 + i] = d.rem_euclid(256) as u8;
            borrow = i16::from(d < 0);
        }
        out
    }

    #[test]
    fn high_s_is_normalised_and_verified() {
        let (sk, pk) = key();
        let digest = [7u8; 32];
        let sig = secp().sign_ecdsa(&Message::from_digest(digest), &sk);
        let raw = high_s(&sig);
        assert_ne!(&raw[..], &sig.serialize_compact()[..]);
        let normalised = normalise(&raw, &digest, &pk).unwrap();
        assert_eq!(normalised, sig);
        assert_eq!(
            normalise(&sig.serialize_compact(), &digest, &pk).unwrap(),
            sig
        );
    }

    #[test]
    fn wrong_key_digest_or_shape_is_refused() {
        let (sk, pk) = key();
        let digest = [7u8; 32];
        let sig = secp()
            .sign_ecdsa(&Message::from_digest(digest), &sk)
            .serialize_compact();
        let other = SecretKey::from_slice(&[0x43; 32])
            .unwrap()
            .public_key(secp());
        assert!(normalise(&sig, &digest, &other)
            .unwrap_err()
            .contains("does not verify"));
        assert!(normalise(&sig, &[8u8; 32], &pk).is_err());
        assert!(normalise(&sig[..63], &digest, &pk)
            .unwrap_err()
            .contains("64 bytes"));
        assert!(normalise(&[0xff; 64], &digest, &pk).is_err());
        assert!(normalise(&[0; 64], &digest, &pk).is_err());
    }

    #[test]
    fn recovery_id_recovers_the_key() {
        let (sk, pk) = key();
        for i in 0..16u8 {
            let digest = [i; 32];
            let expected = secp().sign_ecdsa_recoverable(&Message::from_digest(digest), &sk);
            let plain = expected.to_standard();
            let got = recoverable(&plain, &digest, &pk).unwrap();
            assert_eq!(got, expected);
        }
        let other = SecretKey::from_slice(&[0x43; 32])
            .unwrap()
            .public_key(secp());
        let sig = secp().sign_ecdsa(&Message::from_digest([1; 32]), &sk);
        assert!(recoverable(&sig, &[1; 32], &other).is_err());
    }

    #[test]
    fn low_r_is_the_top_bit() {
        let (sk, _) = key();
        let low = secp().sign_ecdsa_low_r(&Message::from_digest([3; 32]), &sk);
        assert!(is_low_r(&low));
        assert!(low.serialize_der().len() <= 71);
        let mut compact = low.serialize_compact();
        compact[0] |= 0x80;
        if let Ok(high) = EcdsaSignature::from_compact(&compact) {
            assert!(!is_low_r(&high));
        }
    }
}
