//! The sled run's figures of `custos bench signer`: throughput, latency, group commit, CPU, raw
//! ECDSA and the ratio to it, resident memory.

use std::time::Duration;

use super::bench_load::Measured;
use super::bench_signer::{ms, CpuSplit, SignerArgs, StageMeans};
use super::bench_stats::{peak_rss_kib, RawEcdsa};

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Prints the sled run's figures.
/// Prints a run's latency percentiles under `label` (open loop: from the scheduled send time).
pub(crate) fn print_latency(label: &str, m: &Measured, open_loop: bool) {
    let from = if open_loop {
        "from the scheduled send time"
    } else {
        "send to answer"
    };
    println!(
        "  {label} p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms ({from})",
        ms(m.latency.quantile(0.50)),
        ms(m.latency.quantile(0.90)),
        ms(m.latency.quantile(0.99)),
        ms(m.latency.quantile(0.999)),
        ms(m.latency.max())
    );
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn report(
    args: &SignerArgs,
    clients: usize,
    requests: usize,
    warmup: usize,
    rules: usize,
    m: &Measured,
    flushes: u64,
    cpu: Option<CpuSplit>,
    stages: StageMeans,
    before: RawEcdsa,
    after: RawEcdsa,
) {
    let rate = m.signed as f64 / m.wall.as_secs_f64();
    println!();
    match args.rate {
        None => println!(
            "custos bench signer: closed loop, {clients} mTLS clients, {requests} requests \
             (after {warmup} warm-up), half EIP-1559 transfers, half P2WPKH PSBTs"
        ),
        Some(r) => println!(
            "custos bench signer: open loop at {r:.0} requests/s over {clients} mTLS connections, \
             {requests} requests (after {warmup} warm-up), half EIP-1559, half P2WPKH"
        ),
    }
    println!(
        "  policy           {rules} rules: deny rules, per-tx and fee limits, address books, \
         24h and 1h windows on every request"
    );
    println!(
        "  end to end       {rate:>9.0} signatures/s  ({} signed in {:.2} s; {} refused as overloaded)",
        m.signed,
        m.wall.as_secs_f64(),
        m.refused
    );
    print_latency("latency         ", m, args.rate.is_some());
    if args.rate.is_some() {
        println!(
            "  sender           largest lag of a send behind its schedule: {:.2} ms",
            ms(m.send_lag)
        );
    }
    println!(
        "  group commit     {flushes} flushes, {:.1} requests per flush (one durable write per signed request)",
        m.signed as f64 / flushes.max(1) as f64
    );
    if let Some(cpu) = cpu {
        let per_request = |d: Duration| d.as_secs_f64() * 1e6 / m.signed.max(1) as f64;
        let server = cpu.total.saturating_sub(cpu.clients);
        println!(
            "  CPU              {:.2} s for server and clients: {:.0} µs per request, {:.2} cores busy",
            cpu.total.as_secs_f64(),
            per_request(cpu.total),
            cpu.total.as_secs_f64() / m.wall.as_secs_f64()
        );
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!(
            "                   server {:.0} µs per request, clients {:.0} µs per request \
             (the server alone on {cores} cores could sign at most {:.0}/s)",
            per_request(server),
            per_request(cpu.clients),
            cores as f64 * 1e6 / per_request(server).max(1.0)
        );
    }
    let parts: Vec<String> = crate::signing::stages::Stage::ALL
        .iter()
        .zip(stages)
        .map(|(stage, mean)| format!("{} {:.0}", stage.name(), mean.as_secs_f64() * 1e6))
        .collect();
    println!(
        "  in the core      mean µs per signed request: {} (total {:.0})",
        parts.join(", "),
        stages.iter().sum::<Duration>().as_secs_f64() * 1e6
    );
    let raw_one = (before.one_core + after.one_core) / 2.0;
    let raw_all = (before.all_cores + after.all_cores) / 2.0;
    println!(
        "  raw ECDSA        libsecp256k1 sign_ecdsa: {raw_one:.0}/s on one core, {raw_all:.0}/s on {} cores \
         (before {:.0}, after {:.0})",
        before.threads, before.all_cores, after.all_cores
    );
    println!(
        "  ratio            end to end / raw ECDSA on every core = {:.1}% (on one core: {:.1}%)",
        100.0 * rate / raw_all,
        100.0 * rate / raw_one
    );
    let samples: Vec<String> = m
        .rss
        .iter()
        .map(|(done, kib)| format!("{}k:{:.0}", done / 1000, mib(*kib)))
        .collect();
    println!(
        "  memory (MiB)     resident after each tenth (requests:MiB) {}; peak {:.0}",
        samples.join(" "),
        peak_rss_kib().map_or(0.0, mib)
    );
}
