//! Time buckets of the limit ledger: key encoding, bucket values, and the decomposition of a
//! window into the fewest aligned buckets.

use crate::amount::Amount;
use crate::policy::limits::{LedgerKey, Usage};
use crate::policy::model::Scope;

/// Bucket sizes in minutes; each divides the next, so aligned buckets nest.
pub const LEVELS: [i64; 5] = [1, 10, 60, 360, 1440];

/// The bytes of a ledger key (scope, name, asset), length-prefixed so no two keys collide.
pub fn key_prefix(key: &LedgerKey) -> Vec<u8> {
    let tag = match key.scope {
        Scope::Wallet => b'w',
        Scope::Principal => b'p',
        Scope::Rule => b'r',
    };
    let mut out = Vec::with_capacity(10 + key.name.len() + key.asset.len());
    out.push(tag);
    for part in [&key.name, &key.asset] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// The sled key of one bucket: prefix, level, start minute (order-preserving).
pub fn bucket_key(prefix: &[u8], level: usize, start_minute: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + 9);
    write_bucket_key(&mut out, prefix, level, start_minute);
    out
}

/// Appends the key of [`bucket_key`] to `out` (reads that make many keys reuse one buffer).
pub fn write_bucket_key(out: &mut Vec<u8>, prefix: &[u8], level: usize, start_minute: i64) {
    out.extend_from_slice(prefix);
    out.push(level as u8);
    out.extend_from_slice(&((start_minute as u64) ^ (1 << 63)).to_be_bytes());
}

/// The minute containing unix second `t`.
pub fn minute_of(t: i64) -> i64 {
    t.div_euclid(60)
}

/// The bucket of each level that contains `minute`: (level, start minute).
pub fn buckets_containing(minute: i64) -> impl Iterator<Item = (usize, i64)> {
    LEVELS
        .iter()
        .enumerate()
        .map(move |(i, size)| (i, minute.div_euclid(*size) * size))
}

/// The fewest aligned buckets exactly covering minutes `first..=last`.
pub fn cover(first: i64, last: i64) -> Vec<(usize, i64)> {
    let mut out = Vec::new();
    let mut cur = first;
    while cur <= last {
        let (level, size) = LEVELS
            .iter()
            .enumerate()
            .rev()
            .find(|(_, size)| cur.rem_euclid(**size) == 0 && cur + **size - 1 <= last)
            .map(|(i, s)| (i, *s))
            .expect("level 0 (one minute) always fits");
        out.push((level, cur));
        cur += size;
    }
    out
}

/// The buckets to read for the window `(from, to]` in unix seconds: the minutes from the one
/// containing `from + 1` to the one containing `to` (the first minute counted whole).
pub fn window_buckets(from: i64, to: i64) -> Vec<(usize, i64)> {
    if to <= from {
        return Vec::new();
    }
    cover(minute_of(from.saturating_add(1)), minute_of(to))
}

/// The buckets of [`window_buckets`] grouped into runs of one level: (level, first start minute,
/// last start minute). The buckets of a run are adjacent, so their keys are one contiguous key
/// range (a run is read with one range scan; keys absent from the tree are empty buckets).
pub fn window_runs(from: i64, to: i64) -> Vec<(usize, i64, i64)> {
    let mut runs: Vec<(usize, i64, i64)> = Vec::with_capacity(2 * LEVELS.len());
    for (level, start) in window_buckets(from, to) {
        match runs.last_mut() {
            Some((l, _, last)) if *l == level && *last + LEVELS[level] == start => *last = start,
            _ => runs.push((level, start, start)),
        }
    }
    runs
}

/// Encodes a bucket's usage: 32-byte big-endian sum, 8-byte big-endian count.
pub fn encode(u: Usage) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..32].copy_from_slice(&u.sum.to_be_bytes::<32>());
    out[32..].copy_from_slice(&u.count.to_be_bytes());
    out
}

/// Decodes a bucket's usage.
pub fn decode(bytes: &[u8]) -> Option<Usage> {
    if bytes.len() != 40 {
        return None;
    }
    let sum = Amount::from_be_slice(&bytes[..32]);
    let count = u64::from_be_bytes(bytes[32..].try_into().ok()?);
    Some(Usage { sum, count })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cover_is_exact_and_small() {
        for (first, last) in [(0, 0), (5, 1444), (1, 10_079), (17, 17 + 1439), (-100, 50)] {
            let c = cover(first, last);
            let mut m = first;
            for (level, start) in &c {
                assert_eq!(*start, m);
                m += LEVELS[*level];
            }
            assert_eq!(m, last + 1);
        }
        // A 24 h window anywhere reads few buckets; a 7 d one too.
        for offset in 0..1440 {
            assert!(window_buckets(offset * 60 + 7, offset * 60 + 7 + 86_400).len() <= 44);
            assert!(window_buckets(offset * 60 + 7, offset * 60 + 7 + 7 * 86_400).len() <= 52);
        }
    }

    #[test]
    fn runs_are_the_cover_grouped() {
        for (from, to) in [
            (0, 60),
            (7, 7 + 86_400),
            (-1000, 5_000_000),
            (1_750_000_123, 1_750_000_123 + 7 * 86_400),
            (5, 5),
        ] {
            let mut expanded = Vec::new();
            for (level, first, last) in window_runs(from, to) {
                let mut m = first;
                while m <= last {
                    expanded.push((level, m));
                    m += LEVELS[level];
                }
            }
            assert_eq!(expanded, window_buckets(from, to));
            assert!(window_runs(from, to).len() < 2 * LEVELS.len());
        }
    }

    #[test]
    fn values_round_trip() {
        let u = Usage {
            sum: Amount::MAX - Amount::from(5u8),
            count: 7,
        };
        assert_eq!(decode(&encode(u)), Some(u));
    }
}
