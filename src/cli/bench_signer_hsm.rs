//! The HSM half of `custos bench signer --backend pkcs11`: a SoftHSM2 token in the throwaway
//! directory holding the benchmark wallets' keys, and the figures printed beside the software
//! path — the end-to-end rate with the keys in the token, the token's raw rate through the
//! backend (one thread, and every core), and raw libsecp256k1 (a fixed key, no derivation, no
//! backend: the ceiling of both paths).
//!
//! What the HSM path costs on top of the software one: a `CKM_ECDSA` call into the token per
//! signature (two on average for Bitcoin, which grinds for low R by signing again), a session
//! from the pool, the low-S normalisation and the verification against the wallet's key (and, for
//! Ethereum, finding the recovery id by recovery), and signing on the blocking pool.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bitcoin::secp256k1::{Message, SecretKey};

use super::bench_signer::{ms, op, raw_backend, Report};
use super::CliError;
use crate::backend::pkcs11::ceremony::import_wallet;
use crate::backend::pkcs11::provision::{init_token, write_softhsm_config, SOFTHSM2_CONF_ENV};
use crate::backend::pkcs11::{HsmWallets, Pkcs11Backend, TokenSelector, TokenSettings};
use crate::keys::secp;
use crate::keystore::Unsealed;
use crate::secret::SecretString;
use crate::wallet::Wallet;

const TOKEN: &str = "custos-bench";

/// A SoftHSM2 token in `dir/hsm` with `wallets`' keys at address 0 (receive and change).
pub fn provision(
    dir: &Path,
    module: &Path,
    sessions: usize,
    unsealed: &Unsealed,
    wallets: &[&Wallet],
) -> Result<Arc<Pkcs11Backend>, CliError> {
    if !module.is_file() {
        return Err(op(format!(
            "the pkcs#11 module {} is not installed (Debian: apt-get install softhsm2)",
            module.display()
        )));
    }
    let conf = write_softhsm_config(&dir.join("hsm")).map_err(op)?;
    std::env::set_var(SOFTHSM2_CONF_ENV, &conf);
    let pin = SecretString::new(format!("bench-{:016x}", rand::random::<u64>()));
    let so = SecretString::new(format!("bench-so-{:016x}", rand::random::<u64>()));
    init_token(module, TOKEN, &so, &pin).map_err(op)?;
    let backend = Arc::new(
        Pkcs11Backend::open(TokenSettings {
            module: module.to_owned(),
            token: TokenSelector::Label(TOKEN.into()),
            pin,
            sessions,
        })
        .map_err(op)?,
    );
    for wallet in wallets {
        let master = unsealed
            .master_key(&wallet.seed)
            .map_err(super::common::keystore_error)?;
        import_wallet(&backend, wallet, &master, 0..1, &|| {}).map_err(op)?;
    }
    Ok(backend)
}

/// Raw libsecp256k1: `n` signatures with a fixed key, half low-R ECDSA, half recoverable.
fn raw_libsecp(n: usize) -> f64 {
    let key = SecretKey::from_slice(&[0x42; 32]).expect("a valid scalar");
    let t = Instant::now();
    for i in 0..n {
        let mut digest = [0u8; 32];
        digest[..8].copy_from_slice(&(i as u64).to_le_bytes());
        digest[31] = 2;
        let message = Message::from_digest(digest);
        if i % 2 == 0 {
            std::hint::black_box(secp().sign_ecdsa_recoverable(&message, &key));
        } else {
            std::hint::black_box(secp().sign_ecdsa_low_r(&message, &key));
        }
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// Prints the HSM path's figures after the software path's.
pub(crate) fn report(
    token: &Arc<Pkcs11Backend>,
    btc: &Wallet,
    eth: &Wallet,
    raw_n: usize,
    software_rate: f64,
    hsm: &Report,
    flushes: u64,
) -> Result<(), CliError> {
    let wallets = HsmWallets::new(token.clone());
    wallets.add(btc.clone()).map_err(op)?;
    wallets.add(eth.clone()).map_err(op)?;
    let raw = raw_backend(&wallets, btc, eth, raw_n)?;
    let libsecp = raw_libsecp(raw_n.max(20_000));
    let rate = hsm.count as f64 / hsm.wall.as_secs_f64();
    let (_, sessions) = token.status().sessions;
    println!();
    println!(
        "hsm path (SoftHSM2 via PKCS#11, {} sessions, {}):",
        sessions,
        token.token().name()
    );
    println!(
        "  end to end       {rate:>10.0} signatures/s  ({} signed in {:.2} s)",
        hsm.count,
        hsm.wall.as_secs_f64()
    );
    println!(
        "  latency          p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(hsm.p50),
        ms(hsm.p99),
        ms(hsm.max)
    );
    println!(
        "  group commit     {flushes} flushes ({:.1} requests per flush)",
        hsm.count as f64 / flushes.max(1) as f64
    );
    println!(
        "  hsm backend      {:>10.0} signatures/s on one thread, {:.0} on {} threads (low-S, verified, recovery id; Bitcoin grinds low R)",
        raw.single, raw.parallel, raw.threads
    );
    println!(
        "  hsm / software   end to end = {:.1}% of the software path",
        100.0 * rate / software_rate
    );
    println!(
        "raw libsecp256k1   {libsecp:>10.0} signatures/s on one thread (fixed key, no derivation, no backend)"
    );
    Ok(())
}
