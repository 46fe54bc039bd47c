//! Feldman verifiable secret sharing over P-256, through vsss-rs: split a secret scalar M-of-N,
//! verify one share against the public commitments, combine M shares.
//!
//! Everything arithmetic is vsss-rs's (`feldman::split_secret`, `FeldmanVerifierSet::verify_share`,
//! `ReadableShareSet::combine`) on p256's scalar field and group; this file only converts between
//! their types and ours (fixed-size bytes, 1-based share indexes) and keeps secrets in types that
//! zeroize and print `[REDACTED]` (vsss-rs's own share and field types derive `Debug` with their
//! values, so they never leave this file).

use std::fmt;

use chacha20::rand_core::SeedableRng;
use chacha20::ChaCha20Rng;
use p256::elliptic_curve::group::{Group, GroupEncoding};
use p256::elliptic_curve::{Field, PrimeField};
use p256::{ProjectivePoint, Scalar};
use vsss_rs::{
    feldman, DefaultShare, FeldmanVerifierSet, IdentifierPrimeField, ReadableShareSet, Share,
    ShareVerifierGroup,
};
use zeroize::{Zeroize, Zeroizing};

use crate::secret::{Secret32, REDACTED};

type Element = IdentifierPrimeField<Scalar>;
type VShare = DefaultShare<Element, Element>;
type Verifier = ShareVerifierGroup<ProjectivePoint>;

/// Length of one commitment: a compressed SEC1 P-256 point.
pub const COMMITMENT_LEN: usize = 33;
/// Length of a share's value: a P-256 scalar, big-endian.
pub const VALUE_LEN: usize = 32;
/// The most shares one split makes (indexes are one byte, 1 to 255).
pub const MAX_SHARES: u8 = 255;
/// The smallest threshold: one share alone is no sharing at all.
pub const MIN_THRESHOLD: u8 = 2;

/// Why a split, a check or a combination failed. Carries indexes and counts, never a value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VssError {
    /// The threshold or count is outside what a split may use.
    #[error("a split needs 2 <= threshold <= shares <= 255, got {threshold} of {count}")]
    Parameters {
        /// M.
        threshold: u8,
        /// N.
        count: u8,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Rng,
    /// vsss-rs refused the split (it should not for valid parameters).
    #[error("the split failed: {0}")]
    Split(String),
    /// A stored commitment is not a valid point.
    #[error("commitment {position} is not a valid P-256 point")]
    BadCommitment {
        /// 0-based position.
        position: usize,
    },
    /// A share value is not a canonical scalar.
    #[error("share {index}: its value is not a valid scalar")]
    BadValue {
        /// The share's index.
        index: u8,
    },
    /// The share does not lie on the committed polynomial.
    #[error("share {index} does not match the commitments")]
    Mismatch {
        /// The share's index.
        index: u8,
    },
    /// Combination needs at least the threshold of distinct shares.
    #[error("{given} shares given, {threshold} needed")]
    TooFew {
        /// Shares given.
        given: usize,
        /// Shares needed.
        threshold: usize,
    },
    /// The combined secret does not match the commitment to it.
    #[error("the combined secret does not match the commitment to it")]
    Inconsistent,
}

/// The shared secret: a non-zero P-256 scalar. Zeroized on drop, never printed.
pub struct SharedSecret(Element);

impl SharedSecret {
    /// A uniformly random non-zero scalar from the OS random number generator.
    pub fn random() -> Result<Self, VssError> {
        let mut rng = os_seeded_rng()?;
        loop {
            let scalar = Scalar::random(&mut rng);
            if !bool::from(scalar.is_zero()) {
                return Ok(SharedSecret(IdentifierPrimeField(scalar)));
            }
        }
    }

    /// The secret as 32 big-endian bytes (the key material a KEK is derived from).
    pub fn to_secret_bytes(&self) -> Secret32 {
        let mut repr = self.0 .0.to_repr();
        let mut out = [0u8; 32];
        out.copy_from_slice(repr.as_ref());
        repr.as_mut_slice().zeroize();
        let secret = Secret32::new(out);
        out.zeroize();
        secret
    }

    /// The commitment to this secret (`G·s`), compressed.
    fn commitment(&self) -> [u8; COMMITMENT_LEN] {
        encode_point(&(ProjectivePoint::GENERATOR * self.0 .0))
    }
}

impl Drop for SharedSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// One share: its index (the x coordinate, 1 to 255) and its value (secret). Zeroized on drop.
pub struct ShareValue {
    index: u8,
    value: Element,
}

impl ShareValue {
    /// A share from its index and value bytes; refuses index 0 and non-canonical or zero values.
    pub fn from_parts(index: u8, value: &[u8; VALUE_LEN]) -> Result<Self, VssError> {
        let mut repr = p256::FieldBytes::default();
        repr.copy_from_slice(value);
        let scalar: Option<Scalar> = Scalar::from_repr(repr).into();
        repr.as_mut_slice().zeroize();
        match scalar {
            Some(s) if index != 0 && !bool::from(s.is_zero()) => Ok(ShareValue {
                index,
                value: IdentifierPrimeField(s),
            }),
            _ => Err(VssError::BadValue { index }),
        }
    }

    /// The index (public).
    pub fn index(&self) -> u8 {
        self.index
    }

    /// The value's 32 big-endian bytes, in a zeroizing buffer.
    pub fn value_bytes(&self) -> Zeroizing<[u8; VALUE_LEN]> {
        let mut repr = self.value.0.to_repr();
        let mut out = Zeroizing::new([0u8; VALUE_LEN]);
        out.copy_from_slice(repr.as_ref());
        repr.as_mut_slice().zeroize();
        out
    }

    fn to_vsss(&self) -> VShare {
        VShare::with_identifier_and_value(identifier(self.index), self.value)
    }
}

impl Drop for ShareValue {
    fn drop(&mut self) {
        self.value.zeroize();
    }
}

impl fmt::Debug for ShareValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ShareValue {{ index: {}, value: {REDACTED} }}",
            self.index
        )
    }
}

/// The public Feldman commitments of one split: `G·a_0 … G·a_{M-1}` for the polynomial's
/// coefficients (`a_0` is the secret). Their number is the threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commitments(Vec<[u8; COMMITMENT_LEN]>);

impl Commitments {
    /// Commitments from stored bytes; each must be a valid, non-identity point.
    pub fn from_stored(points: Vec<[u8; COMMITMENT_LEN]>) -> Result<Self, VssError> {
        for (position, bytes) in points.iter().enumerate() {
            decode_point(bytes).ok_or(VssError::BadCommitment { position })?;
        }
        Ok(Commitments(points))
    }

    /// The encoded points, in order.
    pub fn points(&self) -> &[[u8; COMMITMENT_LEN]] {
        &self.0
    }

    /// The threshold these commitments define.
    pub fn threshold(&self) -> usize {
        self.0.len()
    }

    fn verifier_set(&self) -> Result<Vec<Verifier>, VssError> {
        let mut set = Vec::with_capacity(self.0.len() + 1);
        set.push(ShareVerifierGroup::from(ProjectivePoint::GENERATOR));
        for (position, bytes) in self.0.iter().enumerate() {
            let point = decode_point(bytes).ok_or(VssError::BadCommitment { position })?;
            set.push(ShareVerifierGroup::from(point));
        }
        Ok(set)
    }

    /// Checks that `share` lies on the committed polynomial (Feldman's check, by vsss-rs).
    pub fn verify(&self, share: &ShareValue) -> Result<(), VssError> {
        let set = self.verifier_set()?;
        FeldmanVerifierSet::<VShare, Verifier>::verify_share(&set, &share.to_vsss())
            .map_err(|_| VssError::Mismatch { index: share.index })
    }
}

/// Splits `secret` into `count` shares (indexes 1..=count), any `threshold` of which recover it,
/// and the commitments that let each share be checked alone.
pub fn split(
    secret: &SharedSecret,
    threshold: u8,
    count: u8,
) -> Result<(Vec<ShareValue>, Commitments), VssError> {
    if threshold < MIN_THRESHOLD || threshold > count {
        return Err(VssError::Parameters { threshold, count });
    }
    let mut rng = os_seeded_rng()?;
    let (shares, verifiers) = feldman::split_secret::<VShare, Verifier>(
        usize::from(threshold),
        usize::from(count),
        &secret.0,
        None,
        &mut rng,
    )
    .map_err(|e| VssError::Split(e.to_string()))?;
    let mut out = Vec::with_capacity(shares.len());
    for (n, mut share) in shares.into_iter().enumerate() {
        let index = u8::try_from(n + 1).expect("at most 255 shares");
        // vsss-rs numbers participants 1, 2, 3, … by default: check rather than assume.
        if *share.identifier() != identifier(index) {
            share.value_mut().zeroize();
            return Err(VssError::Split(format!(
                "share {index} came back with another identifier"
            )));
        }
        out.push(ShareValue {
            index,
            value: *share.value(),
        });
        share.value_mut().zeroize();
    }
    // verifiers[0] is the generator; the commitments follow.
    let points: Vec<[u8; COMMITMENT_LEN]> = verifiers
        .iter()
        .skip(1)
        .map(|v| encode_point(&v.0))
        .collect();
    if points.len() != usize::from(threshold) || points[0] != secret.commitment() {
        return Err(VssError::Split("unexpected commitments".into()));
    }
    let commitments = Commitments::from_stored(points)?;
    for share in &out {
        commitments.verify(share)?;
    }
    Ok((out, commitments))
}

/// Recovers the secret from at least `commitments.threshold()` shares with distinct indexes,
/// each of which should have been verified; the result is checked against the commitment to the
/// secret, so a wrong combination is an error, never a wrong key.
pub fn combine(commitments: &Commitments, shares: &[ShareValue]) -> Result<SharedSecret, VssError> {
    let threshold = commitments.threshold();
    let mut indexes: Vec<u8> = shares.iter().map(|s| s.index).collect();
    indexes.sort_unstable();
    indexes.dedup();
    if indexes.len() != shares.len() || shares.len() < threshold {
        return Err(VssError::TooFew {
            given: indexes.len(),
            threshold,
        });
    }
    let mut set: Vec<VShare> = shares.iter().map(ShareValue::to_vsss).collect();
    let combined = set.combine();
    for share in &mut set {
        share.value_mut().zeroize();
    }
    let secret = SharedSecret(combined.map_err(|_| VssError::Inconsistent)?);
    if bool::from(secret.0 .0.is_zero()) || secret.commitment() != commitments.0[0] {
        return Err(VssError::Inconsistent);
    }
    Ok(secret)
}

fn identifier(index: u8) -> Element {
    IdentifierPrimeField(Scalar::from(u64::from(index)))
}

fn encode_point(point: &ProjectivePoint) -> [u8; COMMITMENT_LEN] {
    let bytes = point.to_bytes();
    let mut out = [0u8; COMMITMENT_LEN];
    out.copy_from_slice(bytes.as_ref());
    out
}

fn decode_point(bytes: &[u8; COMMITMENT_LEN]) -> Option<ProjectivePoint> {
    let mut repr = <ProjectivePoint as GroupEncoding>::Repr::default();
    AsMut::<[u8]>::as_mut(&mut repr).copy_from_slice(bytes);
    let point: Option<ProjectivePoint> =
        <ProjectivePoint as GroupEncoding>::from_bytes(&repr).into();
    point.filter(|p| !bool::from(p.is_identity()))
}

/// A ChaCha20 generator (the `rand_core` 0.10 kind vsss-rs takes) seeded with 32 bytes from the
/// operating system; a failing OS generator is an error, not a panic.
fn os_seeded_rng() -> Result<ChaCha20Rng, VssError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::getrandom(seed.as_mut()).map_err(|_| VssError::Rng)?;
    Ok(ChaCha20Rng::from_seed(*seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subsets(n: u8) -> impl Iterator<Item = Vec<u8>> {
        (1u32..(1 << n)).map(move |mask| (1..=n).filter(|i| mask & (1 << (i - 1)) != 0).collect())
    }

    fn pick(shares: &[ShareValue], indexes: &[u8]) -> Vec<ShareValue> {
        indexes
            .iter()
            .map(|i| {
                let s = &shares[usize::from(*i) - 1];
                ShareValue::from_parts(s.index, &s.value_bytes()).unwrap()
            })
            .collect()
    }

    /// Every threshold M of every N up to 5, every subset of the shares: a subset of M or more
    /// recovers exactly the secret; a smaller one never does.
    #[test]
    fn every_threshold_and_every_subset() {
        for count in 2u8..=5 {
            for threshold in 2..=count {
                let secret = SharedSecret::random().unwrap();
                let (shares, commitments) = split(&secret, threshold, count).unwrap();
                assert_eq!(shares.len(), usize::from(count));
                assert_eq!(commitments.threshold(), usize::from(threshold));
                for share in &shares {
                    commitments.verify(share).unwrap();
                }
                for subset in subsets(count) {
                    let chosen = pick(&shares, &subset);
                    let result = combine(&commitments, &chosen);
                    if subset.len() >= usize::from(threshold) {
                        let got = result
                            .unwrap_or_else(|e| panic!("{threshold}/{count} {subset:?}: {e}"));
                        assert_eq!(got.to_secret_bytes(), secret.to_secret_bytes());
                    } else {
                        assert!(
                            matches!(result, Err(VssError::TooFew { .. })),
                            "{threshold}/{count} {subset:?}"
                        );
                    }
                }
            }
        }
    }

    /// Fewer than M shares interpolate to something other than the secret (what a tool that
    /// skipped the count check would compute): the commitment check refuses it.
    #[test]
    fn below_threshold_interpolation_is_not_the_secret() {
        let secret = SharedSecret::random().unwrap();
        let (shares, commitments) = split(&secret, 3, 5).unwrap();
        let two = pick(&shares, &[1, 4]);
        let set: Vec<VShare> = two.iter().map(ShareValue::to_vsss).collect();
        let wrong = SharedSecret(set.combine().unwrap());
        assert_ne!(wrong.to_secret_bytes(), secret.to_secret_bytes());
        assert_ne!(wrong.commitment(), commitments.points()[0]);
    }

    #[test]
    fn tampered_shares_fail_the_commitments() {
        let secret = SharedSecret::random().unwrap();
        let (shares, commitments) = split(&secret, 2, 3).unwrap();
        // Another value at the same index.
        let mut bytes = shares[1].value_bytes();
        bytes[31] ^= 1;
        let forged = ShareValue::from_parts(2, &bytes).unwrap();
        assert_eq!(
            commitments.verify(&forged),
            Err(VssError::Mismatch { index: 2 })
        );
        // The right value under another index.
        let moved = ShareValue::from_parts(3, &shares[1].value_bytes()).unwrap();
        assert_eq!(
            commitments.verify(&moved),
            Err(VssError::Mismatch { index: 3 })
        );
        // A share of another split.
        let (other, _) = split(&SharedSecret::random().unwrap(), 2, 3).unwrap();
        assert!(commitments.verify(&other[0]).is_err());
        // Combining a forged share with a good one is refused, not a wrong key.
        let mixed = vec![pick(&shares, &[1]).remove(0), forged];
        assert_eq!(
            combine(&commitments, &mixed).err(),
            Some(VssError::Inconsistent)
        );
    }

    #[test]
    fn parameters_and_encodings() {
        let secret = SharedSecret::random().unwrap();
        for (m, n) in [(1, 3), (0, 0), (4, 3), (2, 1)] {
            assert_eq!(
                split(&secret, m, n).err(),
                Some(VssError::Parameters {
                    threshold: m,
                    count: n
                })
            );
        }
        assert!(ShareValue::from_parts(0, &[1; 32]).is_err());
        assert!(ShareValue::from_parts(1, &[0; 32]).is_err());
        assert!(
            ShareValue::from_parts(1, &[0xff; 32]).is_err(),
            "above the group order"
        );
        assert!(Commitments::from_stored(vec![[0; 33]]).is_err());
        assert!(Commitments::from_stored(vec![encode_point(&ProjectivePoint::GENERATOR)]).is_ok());
        // An x coordinate above the field prime is no point.
        let mut off_curve = [0xff; COMMITMENT_LEN];
        off_curve[0] = 0x02;
        assert!(Commitments::from_stored(vec![off_curve]).is_err());
        let (shares, _) = split(&secret, 2, 255).unwrap();
        assert_eq!(shares.last().unwrap().index(), 255);
        assert_eq!(format!("{secret:?}"), REDACTED);
        assert!(!format!("{:?}", shares[0]).contains(&hex::encode(*shares[0].value_bytes())));
    }

    #[test]
    fn duplicates_do_not_count_twice() {
        let secret = SharedSecret::random().unwrap();
        let (shares, commitments) = split(&secret, 3, 4).unwrap();
        let twice = pick(&shares, &[2, 2, 3]);
        assert!(matches!(
            combine(&commitments, &twice),
            Err(VssError::TooFew { given: 2, .. })
        ));
    }
}
