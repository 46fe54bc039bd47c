//! What sled 0.34 alone allows for the signer's pattern of writes, with no Custos code at all: one
//! transaction per "request" over six trees, inserting what one allowed request stores (the
//! request, two audit records, an outbox entry, a reservation, a nonce claim) and `BUCKETS`
//! limit-ledger buckets (30 today: 5 time levels for each of 6 ledger keys), with sled's page
//! cache bounded as the signer bounds it (64 MiB) and a flush every 1,000 transactions (the signer
//! flushes more often, so this is the more generous case).
//!
//! It prints transactions per second and resident memory after each tenth, so two bounds of
//! `custos bench signer` can be checked apart from the signer: the rate the state engine allows
//! for this many records per request, and how its memory grows with the database.
//!
//! ```sh
//! cargo run --release --example sled_write_ceiling -- 300000 30   # transactions, buckets each
//! cargo run --release --example sled_write_ceiling -- 50000 12
//! ```
//!
//! The database is made in a fresh temporary directory and removed at the end.

use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

/// Resident memory of this process, MiB (Linux).
fn resident_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let transactions: u64 = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let buckets: u64 = args.next().map_or(Ok(30), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(64 << 20)
        .open()?;
    let names = [
        "requests",
        "audit",
        "outbox",
        "reservations",
        "nonces",
        "buckets",
    ];
    let trees: Vec<sled::Tree> = names
        .iter()
        .map(|n| db.open_tree(n))
        .collect::<Result<_, _>>()?;
    // Sizes of the signer's records, roughly: a request with its payload and signed result, an
    // audit record, a bucket (40 bytes of usage behind a 33-byte authentication header).
    let (request, record, bucket) = (vec![7u8; 3000], vec![9u8; 300], [1u8; 73]);
    let started = std::time::Instant::now();
    let tenth = (transactions / 10).max(1);
    for i in 0..transactions {
        let id = format!("spiffe://bench/client\u{0}bench-{i:010}");
        (
            &trees[0], &trees[1], &trees[2], &trees[3], &trees[4], &trees[5],
        )
            .transaction(|(requests, audit, outbox, reservations, nonces, ledger)| {
                requests.insert(id.as_bytes(), request.as_slice())?;
                audit.insert(&(2 * i).to_be_bytes(), record.as_slice())?;
                audit.insert(&(2 * i + 1).to_be_bytes(), record.as_slice())?;
                outbox.insert(&i.to_be_bytes(), request.as_slice())?;
                reservations.insert(id.as_bytes(), record.as_slice())?;
                nonces.insert(format!("nonce-{i}").as_bytes(), record.as_slice())?;
                // Buckets are rewritten, not added: a new minute every 60 requests.
                for b in 0..buckets {
                    ledger.insert(&(b * 1_000_000 + i / 60).to_be_bytes(), &bucket[..])?;
                }
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .map_err(|e| format!("transaction {i}: {e:?}"))?;
        if i % 1000 == 999 {
            db.flush()?;
        }
        if (i + 1) % tenth == 0 {
            println!(
                "{:>8} transactions: {:>6.0} per second, {} MiB resident",
                i + 1,
                (i + 1) as f64 / started.elapsed().as_secs_f64(),
                resident_mib()
            );
        }
    }
    db.flush()?;
    Ok(())
}
