//! `custos demo`: the README's first command. An offline walkthrough of the key store and the
//! chain modules, then the main story: the gRPC signer with the example policy, driven over
//! loopback mutual TLS as real clients drive it (`server`).
//!
//! One offline step signs inside a SoftHSM2 token ([`hsm`]) when SoftHSM2 is installed.
//!
//! It works in a throwaway directory (or `--dir DIR`, kept), with demo keys from the BIP39 test
//! mnemonic "abandon ×11 about" and a demo passphrase printed in clear — both public, for a
//! demonstration only. Each step is a small named function that prints one section; the runner
//! numbers them and turns the first failure into a non-zero exit naming the step. The payload
//! files are written to the directory so they can be replayed through `custos psbt inspect` and
//! `custos eth inspect`.
//!
//! Files: `demo/btc.rs` and `demo/eth.rs` hold the offline chain steps; `demo/server.rs` runs the
//! signer steps, which live beside it in `demo/server/` (`lifecycle.rs`: environment, start, stop
//! and audit check; `sign.rs`: the services' requests and approvals; `broadcast.rs`: the
//! broadcaster).

mod btc;
mod eth;
mod hsm;
mod server;

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;

use super::common::{keystore_error, with_spinner, UnsafeKdfArgs};
use super::{CliError, CliResult};
use crate::amount::format_decimal;
use crate::assets::{TokenInfo, TokenRegistry};
use crate::backend::SoftwareBackend;
use crate::intent::Intent;
use crate::keys::{MnemonicSecret, Network, Purpose};
use crate::keystore::{ensure_vacant, KdfParams, KeyStore, Unsealed};
use crate::secret::SecretString;
use crate::wallet::Wallet;

/// The BIP39 test mnemonic every wallet library knows: its keys are public.
pub const DEMO_MNEMONIC: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
/// The demo store passphrase, printed in clear.
pub const DEMO_PASSPHRASE: &str = "custos-demo-passphrase";
/// Circle's USDC on Ethereum Sepolia (chain id 11155111), 6 decimals.
pub const SEPOLIA_USDC: &str = "0x1c7d4b196cb0c7b01d743fbc6116a902379c7238";

/// `custos demo [--dir DIR]`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo key store and payload files in DIR (absent or empty) instead of a temporary
    /// directory removed at the end.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub kdf: UnsafeKdfArgs,
}

/// What the signing steps share once the store is set up.
pub(crate) struct Demo {
    /// Where payload files go.
    pub dir: PathBuf,
    /// The software key backend holding the unsealed seed.
    pub backend: SoftwareBackend,
    /// bitcoin regtest BIP84.
    pub btc_hot: Wallet,
    /// ethereum sepolia.
    pub eth_hot: Wallet,
    /// Tokens the Ethereum steps decode.
    pub tokens: TokenRegistry,
    /// The demo seed's master key (the HSM step imports a key derived from it).
    pub master: crate::keys::MasterKey,
}

impl Demo {
    /// Writes a payload file into the demo directory; returns its path.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, CliError> {
        let path = self.dir.join(name);
        std::fs::write(&path, bytes)
            .map_err(|e| CliError::operational(format!("cannot write {}: {e}", path.display())))?;
        Ok(path)
    }
}

/// One signing step: a title and what it does.
type Step = (&'static str, fn(&Demo) -> Result<(), CliError>);

/// The steps after set-up, in order.
const STEPS: &[Step] = &[
    (
        "bitcoin: sign a payment built by another wallet",
        btc::payment,
    ),
    ("bitcoin: a PSBT with fake change", btc::fake_change),
    ("ethereum: an EIP-1559 transfer", eth::native_transfer),
    ("ethereum: an ERC-20 transfer", eth::token_transfer),
    ("ethereum: a personal_sign message", eth::personal_message),
    ("ethereum: a payload for another chain", eth::wrong_chain),
    (
        "hsm: the same transfer signed inside a SoftHSM2 token",
        hsm::sign_inside,
    ),
];

/// Set-up steps before [`STEPS`]: store, wallets, backend.
const SETUP_STEPS: usize = 3;

/// Runs `custos demo`.
pub fn run(args: DemoArgs) -> CliResult {
    let kdf = args.kdf.kdf_params()?;
    // Declared first so it is dropped last, after the store (and its lock) is closed.
    let workdir = WorkDir::new(args.dir)?;
    intro(&workdir);
    let mut steps = Runner::new(SETUP_STEPS + STEPS.len() + server::STEPS);

    let unsealed = steps.run("key store: import the test mnemonic, seal, unseal", || {
        create_store(&workdir, kdf)
    })?;
    let (btc_hot, eth_hot) = steps.run("wallets: HD accounts, addresses, xpubs", || {
        create_wallets(&unsealed)
    })?;
    let backend = steps.run("software key backend", || load_backend(&unsealed))?;
    let master = unsealed.master_key(&eth_hot.seed).map_err(keystore_error)?;
    drop(unsealed);
    let demo = Demo {
        dir: workdir.path.clone(),
        backend,
        btc_hot,
        eth_hot,
        tokens: demo_tokens(),
        master,
    };
    write_tokens_file(&demo)?;

    for (title, step) in STEPS {
        steps.run(title, || step(&demo))?;
    }
    drop(demo);
    // The main story: the same kinds of requests through the gRPC signer, with a policy.
    server::run(&mut steps, &workdir, kdf)?;
    outro(&workdir);
    Ok(())
}

/// Numbers the steps, prints their headers, and names the step that failed.
struct Runner {
    done: usize,
    total: usize,
}

impl Runner {
    fn new(total: usize) -> Self {
        Runner { done: 0, total }
    }

    fn run<T>(
        &mut self,
        title: &str,
        step: impl FnOnce() -> Result<T, CliError>,
    ) -> Result<T, CliError> {
        self.done += 1;
        println!();
        println!("== [{}/{}] {title} ==", self.done, self.total);
        step().map_err(|e| CliError {
            message: format!("demo step {} ({title}) failed: {}", self.done, e.message),
            exit_code: e.exit_code,
        })
    }
}

/// The demo's directory: temporary (removed on drop) or the operator's `--dir` (kept).
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn new(dir: Option<PathBuf>) -> Result<WorkDir, CliError> {
        let (path, keep) = match dir {
            Some(dir) => {
                ensure_vacant(&dir).map_err(keystore_error)?;
                (dir, true)
            }
            None => {
                let name = format!(
                    "custos-demo-{}-{:08x}",
                    std::process::id(),
                    rand::random::<u32>()
                );
                (std::env::temp_dir().join(name), false)
            }
        };
        std::fs::create_dir_all(&path)
            .map_err(|e| CliError::operational(format!("cannot create {}: {e}", path.display())))?;
        Ok(WorkDir { path, keep })
    }

    fn store(&self) -> PathBuf {
        self.path.join("store")
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn intro(workdir: &WorkDir) {
    println!("Custos demo: the key store and the chain modules offline, then the gRPC signer with");
    println!("the example policy, driven over loopback mutual TLS as real clients would drive it.");
    println!("Nothing leaves this machine; every transaction spends made-up coins.");
    field(
        "directory",
        &format!(
            "{} ({})",
            workdir.path.display(),
            if workdir.keep {
                "kept"
            } else {
                "temporary, removed at the end; --dir DIR keeps it"
            }
        ),
    );
}

fn outro(workdir: &WorkDir) {
    println!();
    println!("== done ==");
    println!("Every step passed.");
    if workdir.keep {
        let dir = workdir.path.display();
        println!(
            "Replay the payloads as an approver would (the passphrase is in {dir}/passphrase):"
        );
        println!(
            "  custos psbt inspect --store {dir}/store --passphrase-file {dir}/passphrase --wallet btc-hot --psbt {dir}/fake-change.psbt"
        );
        println!(
            "  custos eth inspect --store {dir}/store --passphrase-file {dir}/passphrase --wallet eth-hot --tokens {dir}/tokens.toml --tx {dir}/erc20-transfer.json"
        );
    }
}

/// Step: a store holding the test mnemonic, sealed with the real KDF (unless the hidden unsafe
/// option says otherwise), then unsealed as the service does at start.
fn create_store(workdir: &WorkDir, kdf: KdfParams) -> Result<Unsealed, CliError> {
    let mnemonic = MnemonicSecret::parse(&SecretString::new(DEMO_MNEMONIC.into()))
        .map_err(CliError::operational)?;
    let passphrase = SecretString::new(DEMO_PASSPHRASE.into());
    field("mnemonic", "abandon ×11 about (the BIP39 test vector)");
    println!("  These are DEMO KEYS: the whole world knows them. Never send real coins to them.");
    field("passphrase", &format!("'{DEMO_PASSPHRASE}'"));
    println!(
        "  A demo passphrase, printed in clear. Never do this in production: real passphrases"
    );
    println!("  come from a file or a prompt, and are never shown.");
    let passphrase_file = workdir.path.join("passphrase");
    write_private(&passphrase_file, DEMO_PASSPHRASE.as_bytes())?;

    let store_dir = workdir.store();
    println!("  sealing with argon2id ({kdf})…");
    let started = Instant::now();
    let store = with_spinner("sealing the key store (argon2id)…", || {
        KeyStore::create(
            &store_dir,
            &passphrase,
            kdf,
            &mnemonic,
            &SecretString::new(String::new()),
        )
    })
    .map_err(keystore_error)?;
    field(
        "store",
        &format!(
            "{} sealed in {:.2} s",
            store_dir.display(),
            started.elapsed().as_secs_f64()
        ),
    );

    println!("  unsealing (argon2id again, as the signer does at start)…");
    let started = Instant::now();
    let unsealed = with_spinner("unsealing the key store (argon2id)…", || {
        store.unseal(&passphrase)
    })
    .map_err(keystore_error)?;
    let seeds = unsealed.seed_ids().map_err(keystore_error)?;
    let seeds: Vec<String> = seeds.iter().map(|s| s.0.clone()).collect();
    field(
        "unsealed",
        &format!(
            "in {:.2} s; seed {} (its BIP32 master fingerprint)",
            started.elapsed().as_secs_f64(),
            seeds.join(", ")
        ),
    );
    Ok(unsealed)
}

/// Step: the three demo wallets; returns the two the signing steps use.
fn create_wallets(unsealed: &Unsealed) -> Result<(Wallet, Wallet), CliError> {
    let regtest = Network::Bitcoin(bitcoin::Network::Regtest);
    let sepolia = Network::Ethereum {
        chain_id: 11_155_111,
    };
    let mut created = Vec::new();
    for (name, network, purpose) in [
        ("btc-hot", regtest, Purpose::Bip84),
        ("btc-taproot", regtest, Purpose::Bip86),
        ("eth-hot", sepolia, Purpose::Bip44),
    ] {
        let wallet = unsealed
            .create_wallet(name, network, purpose, 0)
            .map_err(keystore_error)?;
        print_wallet(&wallet)?;
        created.push(wallet);
    }
    let eth_hot = created.pop().expect("three wallets were created");
    let btc_hot = created.swap_remove(0);
    Ok((btc_hot, eth_hot))
}

fn print_wallet(wallet: &Wallet) -> Result<(), CliError> {
    println!();
    println!(
        "  wallet {}: {} {} {}",
        wallet.name,
        wallet.chain(),
        wallet.network(),
        wallet.account.path
    );
    let address = |change, index| wallet.address(change, index).map_err(CliError::operational);
    match wallet.network() {
        Network::Bitcoin(_) => {
            field("receive 0/0", &address(false, 0)?);
            field("receive 0/1", &address(false, 1)?);
            field("change 1/0", &address(true, 0)?);
            field("xpub", &wallet.account.slip132_xpub());
            for (label, change) in [("receive desc", false), ("change desc", true)] {
                let descriptor = wallet
                    .account
                    .descriptor(change)
                    .map_err(CliError::operational)?;
                field(label, &descriptor);
            }
        }
        Network::Ethereum { chain_id } => {
            field("address 0", &address(false, 0)?);
            field("address 1", &address(false, 1)?);
            field("chain id", &chain_id.to_string());
            field("xpub", &wallet.account.slip132_xpub());
        }
    }
    Ok(())
}

/// Step: the unsealed seed goes into the software backend, which signs digests by key reference.
fn load_backend(unsealed: &Unsealed) -> Result<SoftwareBackend, CliError> {
    let backend = SoftwareBackend::new();
    let count = unsealed.load_into(&backend).map_err(keystore_error)?;
    field("backend", &format!("software, {count} seed(s) in memory"));
    println!("  Chains hand it (seed, path, digest) and get a signature back: it never sees a");
    println!("  transaction, and the chain modules never see a key.");
    Ok(backend)
}

/// The registry of the Ethereum steps: the well-known mainnet tokens and Sepolia USDC.
fn demo_tokens() -> TokenRegistry {
    let mut tokens = TokenRegistry::well_known();
    tokens.insert(TokenInfo {
        chain_id: 11_155_111,
        contract: SEPOLIA_USDC.into(),
        symbol: "USDC".into(),
        decimals: 6,
    });
    tokens
}

/// The same registry in `custos eth inspect --tokens` form, for replaying the payloads.
fn write_tokens_file(demo: &Demo) -> Result<(), CliError> {
    let text = format!(
        "# Circle's USDC on Ethereum Sepolia\n[[token]]\nchain_id = 11155111\ncontract = \"{SEPOLIA_USDC}\"\nsymbol = \"USDC\"\ndecimals = 6\n"
    );
    demo.write("tokens.toml", text.as_bytes()).map(drop)
}

/// Writes `bytes` to `path`, readable by the owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let fail =
        |e: std::io::Error| CliError::operational(format!("cannot write {}: {e}", path.display()));
    std::fs::write(path, bytes).map_err(fail)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    }
    Ok(())
}

/// One `label  value` line, indented.
pub(crate) fn field(label: &str, value: &str) {
    println!("  {label:<14} {value}");
}

/// Prints what an intent says: the lines an approver reads.
pub(crate) fn print_intent(intent: &Intent) {
    field("intent", &intent.summary());
    field("kind", intent.kind.as_str());
    for d in &intent.destinations {
        field(
            "destination",
            &format!("{}  {}", d.address, intent.asset.format(d.amount)),
        );
    }
    field("total sent", &intent.asset.format(intent.amount));
    for c in &intent.change {
        field(
            "change",
            &format!(
                "{}  {} (verified: ours)",
                c.address,
                intent.asset.format(c.amount)
            ),
        );
    }
    if let Some(contract) = &intent.contract {
        field("contract", contract);
    }
    if let Some(selector) = &intent.selector {
        field("selector", selector);
    }
    if let Some(nonce) = intent.nonce {
        field("nonce", &nonce.to_string());
    }
    if let Some(rate) = intent.fee_rate_sat_per_kvb {
        field(
            "fee",
            &format!(
                "{} BTC ({}.{:03} sat/vB)",
                format_decimal(intent.fee, 8),
                rate / 1000,
                rate % 1000
            ),
        );
    }
}
