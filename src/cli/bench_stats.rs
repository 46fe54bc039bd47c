//! Measuring for the benchmarks: a latency histogram of constant size, the process's resident
//! memory and CPU time (Linux `/proc`), and the raw libsecp256k1 ECDSA rate on every core.

use std::time::{Duration, Instant};

use bitcoin::secp256k1::{Message, SecretKey};

use super::CliError;
use crate::backend::{KeyBackend, KeyRef};
use crate::keys::secp;
use crate::wallet::Wallet;

/// Sub-buckets per power of two: values are kept to within 1/64 (about 1.6 %).
const SUB: u64 = 64;
const SUB_BITS: u32 = 6;

/// Latencies in microseconds, log-linear buckets: constant memory whatever the number of samples
/// (a million-request run must not grow its own measuring).
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; (64 * SUB) as usize],
            total: 0,
            max: 0,
        }
    }
}

fn bucket(v: u64) -> usize {
    if v < SUB {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros(); // >= SUB_BITS
    let shift = exp - SUB_BITS;
    let mantissa = (v >> shift) - SUB; // 0..SUB
    ((u64::from(shift) + 1) * SUB + mantissa) as usize
}

fn lower_bound(b: usize) -> u64 {
    let b = b as u64;
    if b < SUB {
        return b;
    }
    let shift = b / SUB - 1;
    (SUB + b % SUB) << shift
}

impl Histogram {
    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket(us)] += 1;
        self.total += 1;
        self.max = self.max.max(us);
    }

    /// Adds another histogram's samples.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The `q` quantile (0..=1), to within one bucket.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.total == 0 {
            return Duration::ZERO;
        }
        let rank = ((self.total as f64 * q).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (b, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_micros(lower_bound(b).min(self.max));
            }
        }
        Duration::from_micros(self.max)
    }

    /// The largest sample.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max)
    }
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Resident memory of this process, KiB (`VmRSS`), where `/proc` has it.
pub fn rss_kib() -> Option<u64> {
    status_kib("VmRSS:")
}

/// Peak resident memory of this process, KiB (`VmHWM`).
pub fn peak_rss_kib() -> Option<u64> {
    status_kib("VmHWM:")
}

/// User + system time of a `/proc/…/stat` text.
fn stat_cpu(stat: &str) -> Option<Duration> {
    // Fields after the command name (which may contain spaces), from its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // The kernel reports clock ticks; USER_HZ is 100 on every Linux architecture we run on.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// CPU time (user + system) this process used so far, where `/proc` has it.
pub fn cpu_time() -> Option<Duration> {
    stat_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// CPU time used so far by this process's live threads named `name` (a runtime's threads all
/// carry its name), where `/proc` has it.
pub fn threads_cpu_time(name: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            if let Some(cpu) = std::fs::read_to_string(dir.join("stat"))
                .ok()
                .and_then(|s| stat_cpu(&s))
            {
                total += cpu;
            }
        }
    }
    Some(total)
}

/// Raw libsecp256k1 ECDSA signing (RFC 6979 nonces, no grinding), one fixed key over distinct
/// digests: what the curve allows on this machine, now.
#[derive(Clone, Copy, Debug)]
pub struct RawEcdsa {
    /// Signatures per second on one thread.
    pub one_core: f64,
    /// Signatures per second with one thread per core.
    pub all_cores: f64,
    /// Threads used for `all_cores`.
    pub threads: usize,
}

/// Measures [`RawEcdsa`] with `n` signatures per measurement.
pub fn raw_ecdsa(n: usize) -> RawEcdsa {
    let key = SecretKey::from_slice(&[0x5a; 32]).expect("a valid secret key");
    let sign = |from: usize, to: usize| {
        let mut last = None;
        for i in from..to {
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&(i as u64).to_le_bytes());
            digest[31] = 1;
            last = Some(secp().sign_ecdsa(&Message::from_digest(digest), &key));
        }
        std::hint::black_box(last);
    };
    let t = Instant::now();
    sign(0, n);
    let one_core = n as f64 / t.elapsed().as_secs_f64();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = n.div_ceil(threads);
    let t = Instant::now();
    std::thread::scope(|s| {
        for k in 0..threads {
            s.spawn(move || sign(k * per, ((k + 1) * per).min(n)));
        }
    });
    let all_cores = n as f64 / t.elapsed().as_secs_f64();
    RawEcdsa {
        one_core,
        all_cores,
        threads,
    }
}

/// One path's figures as the HSM half of the benchmark prints them.
pub(crate) struct Report {
    pub(crate) count: usize,
    pub(crate) wall: Duration,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
}

impl Report {
    /// From a measured run.
    pub(crate) fn of(m: &super::bench_load::Measured) -> Self {
        Report {
            count: usize::try_from(m.signed).unwrap_or(usize::MAX),
            wall: m.wall,
            p50: m.latency.quantile(0.50),
            p99: m.latency.quantile(0.99),
            max: m.latency.max(),
        }
    }
}

/// A key backend's raw rate.
pub(crate) struct RawRate {
    pub(crate) single: f64,
    pub(crate) parallel: f64,
    pub(crate) threads: usize,
}

/// A key backend alone: `n` signatures over distinct digests, half `sign_ecdsa` (low-R, the
/// Bitcoin key at 0/0) and half `sign_ecdsa_recoverable` (the Ethereum key at 0/0), on one
/// thread and on every core.
pub(crate) fn raw_backend(
    backend: &dyn KeyBackend,
    btc: &Wallet,
    eth: &Wallet,
    n: usize,
) -> Result<RawRate, CliError> {
    let keys = [
        KeyRef {
            seed: btc.seed.clone(),
            path: btc.account.child_path(false, 0),
        },
        KeyRef {
            seed: eth.seed.clone(),
            path: eth.account.child_path(false, 0),
        },
    ];
    let sign = |from: usize, to: usize| -> Result<(), CliError> {
        for i in from..to {
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&(i as u64).to_le_bytes());
            digest[31] = 1;
            let signed = if i % 2 == 0 {
                backend
                    .sign_ecdsa_recoverable(&keys[1], &digest)
                    .map_err(CliError::operational)?
                    .is_some()
            } else {
                backend
                    .sign_ecdsa(&keys[0], &digest, true)
                    .map_err(CliError::operational)?
                    .is_some()
            };
            if !signed {
                return Err(CliError::operational(
                    "the backend does not hold the benchmark keys",
                ));
            }
        }
        Ok(())
    };
    let t = Instant::now();
    sign(0, n)?;
    let single = n as f64 / t.elapsed().as_secs_f64();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = n.div_ceil(threads);
    let t = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| s.spawn(move || sign(k * per, ((k + 1) * per).min(n))))
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .map_err(|_| CliError::operational("a signing thread panicked"))?
        })
    })?;
    let parallel = n as f64 / t.elapsed().as_secs_f64();
    Ok(RawRate {
        single,
        parallel,
        threads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_trip_within_their_resolution() {
        for v in [
            0u64,
            1,
            63,
            64,
            65,
            127,
            128,
            1000,
            12_345,
            1 << 40,
            u64::MAX / 2,
        ] {
            let low = lower_bound(bucket(v));
            assert!(low <= v, "{v}: {low}");
            assert!(v - low <= v / SUB + 1, "{v}: {low}");
        }
    }

    #[test]
    fn quantiles_of_a_known_spread() {
        let mut h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.count(), 1000);
        let p50 = h.quantile(0.5).as_micros() as u64;
        let p99 = h.quantile(0.99).as_micros() as u64;
        assert!((490..=500).contains(&p50), "{p50}");
        assert!((975..=990).contains(&p99), "{p99}");
        assert_eq!(h.max(), Duration::from_micros(1000));
        let mut other = Histogram::default();
        other.record(Duration::from_millis(5));
        h.merge(&other);
        assert_eq!(h.max(), Duration::from_millis(5));
        assert_eq!(h.count(), 1001);
    }

    #[test]
    fn process_figures_are_read() {
        assert!(rss_kib().unwrap() > 0);
        assert!(peak_rss_kib().unwrap() >= rss_kib().unwrap() / 2);
        assert!(cpu_time().is_some());
    }
}
