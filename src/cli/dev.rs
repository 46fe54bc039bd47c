//! `custos dev env DIR [--import-mnemonic-file F] [--policy F] [--port N]`: a ready development
//! environment, consistent with its policy.
//!
//! It writes into `DIR`:
//! - `policy.toml`: a copy of the policy (default: the example `policies/exchange.toml`, built in);
//! - `tls/`: a development CA, a server certificate for loopback, and one client certificate per
//!   principal the policy's `[roles]` name — a SAN URI for `spiffe://…`-style principals, a SAN DNS
//!   name otherwise (prefix patterns ending in `*` and host principals such as `local:sighup` get
//!   none) — and a `client-<name>.toml` for each,
//!   where `<name>` is the principal's path (`spiffe://exchange.example/officers/alice` →
//!   `officers-alice`) or first DNS label (`ops-admin.exchange.example` → `ops-admin`);
//! - `passphrase` (0600): a random **development** passphrase, so `serve` starts unsealed;
//! - `store/`: a key store with the imported mnemonic, or a new one (shown once), and one wallet
//!   per wallet name the policy's rules mention (see [`plan_wallets`] for how chain and network
//!   are chosen);
//! - `approver-keys/<name>.pem` (0600): a fresh signing key for every principal that can vote
//!   (Ed25519 and P-256 alternately), enrolled under `[approver_keys]` in the environment's
//!   `policy.toml` (replacing the policy's own table), and named as `approver_key` in that
//!   principal's client configuration, so `custos approve` signs with it;
//! - `compliance/compliance-1.pem`, `compliance-2.pem` (0600): two compliance officers; the policy
//!   is signed by both (`policy.toml.sig`) and `custos.toml` requires both (`[compliance]`);
//! - `state/` (created by the server) and `custos.toml`: gRPC on `127.0.0.1:PORT`, metrics on
//!   `127.0.0.1:PORT+1`, the approval console on `127.0.0.1:PORT+2` (all port 0 — any free
//!   port — with `--port 0`).
//!
//! With `--hsm`, the environment runs on SoftHSM2 (see [`super::dev_hsm`]): the wallets' keys are
//! imported into a token in `DIR/hsm/`, and the server unseals itself through the token instead
//! of a passphrase file.
//!
//! Then it prints how to start the server and a first command. Development keys only: never fund
//! the wallets of a dev environment.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use crate::cli::common::{keystore_error, read_secret_file, with_spinner, UnsafeKdfArgs};
use crate::cli::{CliError, CliResult};
use crate::keys::MnemonicSecret;
use crate::keys::{AccountPath, Chain, Network, Purpose};
use crate::keystore::{ensure_vacant, KeyStore};
use crate::policy::Policy;
use crate::secret::SecretString;
use crate::service::devcerts::{write_file, write_issued, DevCa};
use crate::signing::contract::LOCAL_SCHEME;

pub mod governance;

/// The example policy, built in as the default of `--policy`.
pub const EXAMPLE_POLICY: &str = include_str!("../../policies/exchange.toml");

/// `custos dev ...`.
#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Write a development environment (certificates, key store, wallets, configuration).
    Env(EnvArgs),
    /// Start (or stop) a throwaway PostgreSQL on 127.0.0.1 for the state.
    Postgres(super::dev_postgres::PostgresArgs),
}

/// Where a development environment keeps its state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DevState {
    /// The embedded database, in `state/`.
    #[default]
    Sled,
    /// PostgreSQL: `--postgres-url`, or a throwaway cluster started in `postgres/`.
    Postgres,
}

/// Arguments of `custos dev env`.
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The directory to create or fill.
    pub dir: PathBuf,
    /// gRPC port on 127.0.0.1 (metrics on the next one); 0 picks free ports at start.
    #[arg(long, default_value_t = 50051)]
    pub port: u16,
    /// The policy (default: the example policies/exchange.toml).
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Restore this mnemonic into the store instead of generating a new one.
    #[arg(long, value_name = "FILE")]
    pub import_mnemonic_file: Option<PathBuf>,
    /// Put the wallets' keys in a SoftHSM2 token in DIR/hsm and unseal through it at start.
    #[arg(long)]
    pub hsm: bool,
    /// The PKCS#11 module for `--hsm`.
    #[arg(long, value_name = "PATH", default_value = crate::backend::pkcs11::provision::SOFTHSM2_MODULE)]
    pub hsm_module: PathBuf,
    /// Where the server keeps its state.
    #[arg(long, value_enum, default_value_t = DevState::Sled)]
    pub state: DevState,
    /// With `--state postgres`: an existing database (no password in the URL; migrated here).
    /// Without it, a throwaway cluster is started in DIR/postgres.
    #[arg(long, value_name = "URL")]
    pub postgres_url: Option<String>,
    /// With `--postgres-url`: a file holding its password.
    #[arg(long, value_name = "FILE")]
    pub postgres_password_file: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub kdf: UnsafeKdfArgs,
}

/// Runs a `dev` subcommand.
pub fn run(command: DevCommand) -> CliResult {
    match command {
        DevCommand::Env(args) => env(&args),
        DevCommand::Postgres(args) => super::dev_postgres::run(&args),
    }
}

/// The `state_dir` line or `[state]` section of the environment's configuration; for PostgreSQL,
/// the database migrated (and started, when the environment brings its own).
fn state_config(dir: &Path, args: &EnvArgs) -> Result<(String, String), CliError> {
    if args.state == DevState::Sled {
        if args.postgres_url.is_some() || args.postgres_password_file.is_some() {
            return Err(CliError::usage(
                "--postgres-url and --postgres-password-file go with --state postgres",
            ));
        }
        return Ok(("state_dir = \"state\"\n".into(), String::new()));
    }
    match &args.postgres_url {
        Some(url) => {
            let mut settings = crate::state::postgres::PgSettings::new(url.clone());
            if let Some(file) = &args.postgres_password_file {
                settings.password = Some(read_secret_file(file)?);
            }
            crate::state::postgres::PgEngine::migrate(&settings)
                .map_err(|e| CliError::operational(format!("cannot migrate {url}: {e}")))?;
            let password = match &args.postgres_password_file {
                Some(file) => format!("password_file = \"{}\"\n", file.display()),
                None => String::new(),
            };
            Ok((
                String::new(),
                format!("\n[state]\nengine = \"postgres\"\nurl = \"{url}\"\n{password}"),
            ))
        }
        None => {
            let cluster = super::dev_postgres::start(&dir.join("postgres"))?;
            println!(
                "PostgreSQL started in {} on 127.0.0.1:{} (stop: custos dev postgres {} --stop)",
                cluster.dir().display(),
                cluster.port(),
                dir.join("postgres").display()
            );
            Ok((
                String::new(),
                format!(
                    "\n{}",
                    super::dev_postgres::state_section(&cluster.url(), &cluster.password_file())
                ),
            ))
        }
    }
}

/// One client certificate to issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevClient {
    /// File stem (`withdrawals`, `officers-alice`, `ops-admin`).
    pub name: String,
    /// The principal as the policy writes it.
    pub principal: String,
    /// Whether it goes into a SAN URI (else a SAN DNS name).
    pub uri: bool,
}

/// One wallet to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevWallet {
    /// Wallet name.
    pub name: String,
    /// Network.
    pub network: Network,
    /// Account index, distinct per account path family (purpose and coin type), so two wallets
    /// never share keys: every EVM network derives from `m/44'/60'/account'` and every Bitcoin
    /// test network from coin type 1, and the key store refuses a second wallet on a path.
    pub account: u32,
}

/// The principals of the policy's roles, with file names. Prefix patterns (`…*`) are skipped.
pub fn plan_clients(policy: &Policy) -> Vec<DevClient> {
    let principals: BTreeSet<&String> = policy.roles.values().flatten().collect();
    let mut taken = BTreeSet::new();
    let mut out = Vec::new();
    for principal in principals {
        if principal.ends_with('*') || principal.starts_with(LOCAL_SCHEME) {
            continue;
        }
        let uri = principal.contains(':');
        let base = if let Some((_, rest)) = principal.split_once("://") {
            let path = rest.split_once('/').map_or(rest, |(_, path)| path);
            path.trim_matches('/').replace('/', "-")
        } else if uri {
            principal.replace(':', "-")
        } else {
            principal.split('.').next().unwrap_or(principal).to_owned()
        };
        let base: String = base
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        let base = if base.is_empty() {
            "client".to_owned()
        } else {
            base
        };
        let mut name = base.clone();
        let mut n = 2;
        while !taken.insert(name.clone()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        out.push(DevClient {
            name,
            principal: principal.clone(),
            uri,
        });
    }
    out
}

/// The wallets the policy's rules name, each with a chain and network:
///
/// - the chain is the one the naming rules restrict to (`chains`, `networks`, or the chain whose
///   `[assets]` define the rules' `assets`); failing that, the name (`btc…`/`bitcoin…` or
///   `eth…`/`ethereum…`); a wallet whose chain cannot be told is skipped (returned in the second
///   list);
/// - the network is one a naming rule pins (`networks`), else the one the policy's `[assets]`
///   define the rules' assets on (a rule cannot allow an asset on a network without `[assets]`
///   for it), else the only network the policy lists for the chain; else a test network
///   (`regtest`, `sepolia`).
///
/// Account indexes count up per network in wallet-name order.
pub fn plan_wallets(policy: &Policy) -> (Vec<DevWallet>, Vec<String>) {
    #[derive(Default)]
    struct Seen {
        chains: BTreeSet<Chain>,
        networks: BTreeSet<(Chain, String)>,
        asset_networks: BTreeSet<(Chain, String)>,
    }
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    for rule in &policy.rules {
        let Some(wallets) = &rule.wallets else {
            continue;
        };
        for wallet in wallets {
            let entry = seen.entry(wallet.clone()).or_default();
            if let Some(chains) = &rule.chains {
                entry.chains.extend(chains.iter().copied());
            }
            if let Some(networks) = &rule.networks {
                entry.networks.extend(networks.iter().cloned());
                entry.chains.extend(networks.iter().map(|(c, _)| *c));
            }
            if let Some(assets) = &rule.assets {
                for na in &policy.assets {
                    let defines = std::iter::once(&na.native)
                        .chain(na.tokens.iter())
                        .any(|a| assets.contains(&a.symbol));
                    if defines {
                        entry.asset_networks.insert((na.chain, na.network.clone()));
                    }
                }
            }
        }
    }
    let mut planned = Vec::new();
    let mut skipped = Vec::new();
    // Counted per path family (the account path at account 0), not per network: Sepolia and
    // mainnet share m/44'/60'/…, testnet and regtest m/84'/1'/….
    let mut accounts: std::collections::HashMap<Option<AccountPath>, u32> =
        std::collections::HashMap::new();
    for (name, seen) in seen {
        let mut chains = seen.chains.clone();
        if chains.is_empty() {
            chains.extend(seen.asset_networks.iter().map(|(c, _)| *c));
        }
        let chain = match chains.len() {
            1 => chains.into_iter().next(),
            _ => chain_from_name(&name),
        };
        let Some(chain) = chain else {
            skipped.push(name);
            continue;
        };
        let of_chain = |set: &BTreeSet<(Chain, String)>| -> Vec<String> {
            set.iter()
                .filter(|(c, _)| *c == chain)
                .map(|(_, n)| n.clone())
                .collect()
        };
        let listed: BTreeSet<(Chain, String)> = policy
            .assets
            .iter()
            .map(|na| (na.chain, na.network.clone()))
            .collect();
        let candidates = [
            of_chain(&seen.networks),
            of_chain(&seen.asset_networks),
            of_chain(&listed),
        ];
        let network_name = candidates
            .iter()
            .find(|c| !c.is_empty())
            .map(|c| prefer_test_network(chain, c))
            .unwrap_or_else(|| default_test_network(chain).to_owned());
        let Ok(network) = Network::parse(chain, &network_name) else {
            skipped.push(name);
            continue;
        };
        let family = AccountPath::new(network, default_purpose(chain), 0).ok();
        let account = accounts.entry(family).or_insert(0);
        planned.push(DevWallet {
            name,
            network,
            account: *account,
        });
        *account += 1;
    }
    (planned, skipped)
}

/// The purpose a development wallet gets: BIP84 on Bitcoin, BIP44 on Ethereum.
fn default_purpose(chain: Chain) -> Purpose {
    match chain {
        Chain::Bitcoin => Purpose::Bip84,
        Chain::Ethereum => Purpose::Bip44,
    }
}

fn chain_from_name(name: &str) -> Option<Chain> {
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("btc") || lower.starts_with("bitcoin") {
        Some(Chain::Bitcoin)
    } else if lower.starts_with("eth") {
        Some(Chain::Ethereum)
    } else {
        None
    }
}

fn default_test_network(chain: Chain) -> &'static str {
    match chain {
        Chain::Bitcoin => "regtest",
        Chain::Ethereum => "sepolia",
    }
}

/// Of several networks, a test one if listed (dev keys), else the first.
fn prefer_test_network(chain: Chain, names: &[String]) -> String {
    names
        .iter()
        .find(|n| Network::parse(chain, n).is_ok_and(|net| !net.is_mainnet()))
        .unwrap_or(&names[0])
        .clone()
}

fn random_passphrase() -> Result<SecretString, CliError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 24];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| CliError::operational(format!("random number generator failed: {e}")))?;
    // 24 characters from 57: about 140 bits (a slight modulo bias is irrelevant at this length).
    let text: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    bytes.fill(0);
    Ok(SecretString::new(text))
}

fn env(args: &EnvArgs) -> CliResult {
    let dir = &args.dir;
    if dir.join("custos.toml").exists() {
        return Err(CliError::usage(format!(
            "{} already holds an environment (custos.toml exists)",
            dir.display()
        )));
    }
    let store_dir = dir.join("store");
    ensure_vacant(&store_dir).map_err(keystore_error)?;
    let kdf = args.kdf.kdf_params()?;

    // The policy decides everything else: read and validate it first.
    let (policy_text, policy_source) = match &args.policy {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?,
            path.display().to_string(),
        ),
        None => (
            EXAMPLE_POLICY.to_owned(),
            "the example policy (policies/exchange.toml)".to_owned(),
        ),
    };
    // Every principal that can vote gets a fresh key, enrolled in the environment's policy.
    let approvers =
        governance::generate_approvers(&governance::approver_principals(&policy_text)?)?;
    let policy_text = governance::with_approver_keys(&policy_text, &approvers);
    let officers = governance::generate_officers()?;
    let policy = Policy::from_toml(&policy_text).map_err(|mut e| {
        e.file = Some(policy_source.clone());
        CliError::usage(e)
    })?;
    let clients = plan_clients(&policy);
    let (wallets, skipped) = plan_wallets(&policy);

    let mnemonic = match &args.import_mnemonic_file {
        Some(path) => MnemonicSecret::parse(&read_secret_file(path)?).map_err(|e| {
            CliError::operational(format!("the mnemonic in {}: {e}", path.display()))
        })?,
        None => MnemonicSecret::generate().map_err(CliError::operational)?,
    };

    write(dir, "policy.toml", &policy_text)?;
    governance::sign_policy(&dir.join("policy.toml"), &policy.hash(), &officers)?;
    for o in &officers {
        o.key
            .write_new(&dir.join("compliance").join(format!("{}.pem", o.name)))
            .map_err(CliError::operational)?;
    }
    let keyed = governance::by_principal(&approvers);
    for client in &clients {
        if let Some(a) = keyed.get(client.principal.as_str()) {
            a.key
                .write_new(&approver_key_path(dir, client))
                .map_err(CliError::operational)?;
        }
    }
    write_pki(dir, &clients)?;
    let passphrase = random_passphrase()?;
    write_file(
        &dir.join("passphrase"),
        format!("{}\n", passphrase.expose_secret()).as_bytes(),
        true,
    )
    .map_err(CliError::operational)?;

    let empty = SecretString::new(String::new());
    let store = with_spinner("sealing the key store (argon2id)…", || {
        KeyStore::create(&store_dir, &passphrase, kdf, &mnemonic, &empty)
    })
    .map_err(keystore_error)?;
    let unsealed = with_spinner("unsealing to create wallets (argon2id)…", || {
        store.unseal(&passphrase)
    })
    .map_err(keystore_error)?;
    let mut created = Vec::new();
    for w in &wallets {
        let purpose = default_purpose(w.network.chain());
        let wallet = unsealed
            .create_wallet(&w.name, w.network, purpose, w.account)
            .map_err(keystore_error)?;
        let address = wallet
            .address(false, 0)
            .map_err(|e| CliError::operational(format!("wallet {}: {e}", w.name)))?;
        created.push((wallet, address));
    }
    let hsm = if args.hsm {
        let wallets: Vec<_> = created.iter().map(|(w, _)| w.clone()).collect();
        Some(with_spinner(
            "making the SoftHSM2 token and importing keys…",
            || super::dev_hsm::set_up(dir, &args.hsm_module, &unsealed, &wallets),
        )?)
    } else {
        None
    };
    drop(unsealed);
    drop(store);

    let (state_line, state_section) = state_config(dir, args)?;
    let mut config = format!(
        "{}\n{}",
        server_config(args.port, hsm.is_none(), &state_line, &state_section),
        governance::compliance_toml(&officers)
    );
    if let Some(hsm) = &hsm {
        config.push_str(&super::dev_hsm::config_section(hsm));
    }
    write(dir, "custos.toml", &config)?;
    for client in &clients {
        let key = keyed
            .contains_key(client.principal.as_str())
            .then(|| format!("approver-keys/{}.pem", client.name));
        write(
            dir,
            &format!("client-{}.toml", client.name),
            &client_config(client, args.port, key.as_deref()),
        )?;
    }

    if args.import_mnemonic_file.is_none() {
        println!(
            "new development mnemonic (dev keys; never fund them): {}",
            mnemonic.phrase().expose_secret()
        );
    }
    println!("development environment written to {}", dir.display());
    println!(
        "  policy     policy.toml ({}, {})",
        policy.name,
        policy.hash()
    );
    match &hsm {
        None => println!(
            "  passphrase passphrase (a DEVELOPMENT passphrase, 0600; serve unseals with it)"
        ),
        Some(hsm) => {
            println!("  passphrase passphrase (a DEVELOPMENT passphrase, 0600; for ceremonies)");
            println!(
                "  hsm        hsm/ (SoftHSM2 token '{}', user pin in hsm/user-pin; serve unseals through it)",
                super::dev_hsm::DEV_TOKEN_LABEL
            );
            println!(
                "  hsm keys   {} (addresses 0..{} imported)",
                hsm.wallets.join(", "),
                super::dev_hsm::DEV_KEYS
            );
            for (name, why) in &hsm.skipped {
                println!("  software   {name}: {why}");
            }
        }
    }
    println!(
        "  compliance {} sign the policy (policy.toml.sig; keys in compliance/, threshold {})",
        officers
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>()
            .join(" and "),
        governance::DEV_COMPLIANCE_THRESHOLD
    );
    for a in &approvers {
        println!(
            "  approver   {}  key {} ({})",
            a.principal,
            a.key.public().fingerprint(),
            clients
                .iter()
                .find(|c| c.principal == a.principal)
                .map(|c| approver_key_path(Path::new(""), c).display().to_string())
                .unwrap_or_default()
        );
    }
    for client in &clients {
        println!(
            "  client     client-{}.toml  {}",
            client.name, client.principal
        );
    }
    for (wallet, address) in &created {
        let network = wallet.network();
        let warning = if network.is_mainnet() {
            "  (mainnet, as the policy says: dev keys, never fund)"
        } else {
            ""
        };
        println!(
            "  wallet     {:<14} {}/{} {}  first address {address}{warning}",
            wallet.name,
            network.chain(),
            network.name(),
            wallet.account.path,
        );
    }
    for name in &skipped {
        println!(
            "  skipped    wallet {name}: its chain cannot be told from the policy or its name"
        );
    }
    let config = dir.join("custos.toml");
    println!("next steps:");
    println!("  custos serve --config {}", config.display());
    if let Some(admin) = clients.iter().find(|c| {
        policy
            .roles
            .get("admin")
            .is_some_and(|r| r.contains(&c.principal))
    }) {
        println!(
            "  custos status --config {}",
            dir.join(format!("client-{}.toml", admin.name)).display()
        );
    }
    if let Some((wallet, signer)) = created.iter().find_map(|(w, _)| {
        let signer = clients
            .iter()
            .find(|c| may_sign(&policy, &c.principal, &w.name))?;
        Some((w, signer))
    }) {
        let flag = match wallet.network().chain() {
            Chain::Bitcoin => "--psbt tx.psbt",
            Chain::Ethereum => "--eth-tx tx.json",
        };
        println!(
            "  custos sign --config {} --wallet {} --request-id first-1 {flag}",
            dir.join(format!("client-{}.toml", signer.name)).display(),
            wallet.name,
        );
    }
    Ok(())
}

/// Whether some allow rule for one of `principal`'s roles names `wallet`.
fn may_sign(policy: &Policy, principal: &str, wallet: &str) -> bool {
    let roles = policy.roles_of(principal);
    policy.rules.iter().any(|rule| {
        rule.effect == crate::policy::model::Effect::Allow
            && rule
                .roles
                .as_ref()
                .is_some_and(|rs| rs.iter().any(|r| roles.contains(r.as_str())))
            && rule.wallets.as_ref().is_some_and(|ws| ws.contains(wallet))
    })
}

fn write_pki(dir: &Path, clients: &[DevClient]) -> CliResult {
    let tls = dir.join("tls");
    let ca = DevCa::generate("Custos development CA").map_err(CliError::operational)?;
    write_file(&tls.join("ca.pem"), ca.cert_pem().as_bytes(), false)
        .map_err(CliError::operational)?;
    write_file(
        &tls.join("ca.key"),
        ca.key_pem().expose_secret().as_bytes(),
        true,
    )
    .map_err(CliError::operational)?;
    let server = ca
        .server_cert(&["localhost", "127.0.0.1", "::1"])
        .map_err(CliError::operational)?;
    write_issued(&tls, "server", &server).map_err(CliError::operational)?;
    for client in clients {
        let issued = if client.uri {
            ca.client_cert(&client.principal)
        } else {
            ca.client_cert_dns(&client.principal)
        }
        .map_err(CliError::operational)?;
        write_issued(&tls.join("clients"), &client.name, &issued).map_err(CliError::operational)?;
    }
    Ok(())
}

/// Where the approver key of `client` is written.
fn approver_key_path(dir: &Path, client: &DevClient) -> PathBuf {
    dir.join("approver-keys")
        .join(format!("{}.pem", client.name))
}

fn server_config(
    port: u16,
    with_passphrase: bool,
    state_line: &str,
    state_section: &str,
) -> String {
    let metrics = if port == 0 { 0 } else { port.wrapping_add(1) };
    let passphrase = if with_passphrase {
        "# A development passphrase, so that `custos serve` starts unsealed. In production leave this out\n\
         # and unseal with `custos unseal` (or use Shamir shares / an HSM).\n\
         passphrase_file = \"passphrase\"\n"
    } else {
        "# No passphrase file: the server unseals itself through the HSM ([hsm] auto_unseal).\n"
    };
    let console = if port == 0 { 0 } else { port.wrapping_add(2) };
    format!(
        r#"# Custos development environment (generated by `custos dev env`).
listen = "127.0.0.1:{port}"
metrics_listen = "127.0.0.1:{metrics}"
store_dir = "store"
{state_line}policy_file = "policy.toml"
{passphrase}log_format = "human"

[tls]
cert = "tls/server.pem"
key = "tls/server.key"
client_ca = "tls/ca.pem"

# The approval console: a web page for approvers, on loopback.
[console]
listen = "127.0.0.1:{console}"
{state_section}"#
    )
}

fn client_config(client: &DevClient, port: u16, approver_key: Option<&str>) -> String {
    let key = approver_key
        .map(|k| format!("# The key `custos approve` signs votes with.\napprover_key = \"{k}\"\n"))
        .unwrap_or_default();
    format!(
        r#"# Client configuration for {principal}
endpoint = "https://localhost:{port}"
server_name = "localhost"
{key}
[tls]
cert = "tls/clients/{name}.pem"
key = "tls/clients/{name}.key"
ca = "tls/ca.pem"
"#,
        principal = client.principal,
        name = client.name,
    )
}

fn write(dir: &Path, name: &str, text: &str) -> CliResult {
    write_file(&dir.join(name), text.as_bytes(), false).map_err(CliError::operational)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_policy_principals_and_wallets() {
        let policy = Policy::from_toml(EXAMPLE_POLICY).unwrap();
        let clients = plan_clients(&policy);
        let names: Vec<(&str, bool)> = clients.iter().map(|c| (c.name.as_str(), c.uri)).collect();
        assert!(names.contains(&("withdrawals", true)), "{names:?}");
        assert!(names.contains(&("officers-alice", true)), "{names:?}");
        assert!(names.contains(&("ops-admin", false)), "{names:?}");
        assert!(names.contains(&("broadcaster", false)), "{names:?}");

        let (wallets, skipped) = plan_wallets(&policy);
        assert!(skipped.is_empty(), "{skipped:?}");
        let got: Vec<(String, String, u32)> = wallets
            .iter()
            .map(|w| (w.name.clone(), w.network.to_string(), w.account))
            .collect();
        let want = [
            ("btc-hot", "mainnet", 0),
            ("btc-treasury", "mainnet", 1),
            ("eth-hot", "mainnet", 0),
            ("eth-mm", "mainnet", 1),
            ("eth-treasury", "mainnet", 2),
        ];
        let want: Vec<(String, String, u32)> = want
            .iter()
            .map(|(n, net, a)| ((*n).to_owned(), (*net).to_owned(), *a))
            .collect();
        assert_eq!(got, want);
        assert_eq!(wallets[0].network.chain(), Chain::Bitcoin);
        assert_eq!(wallets[2].network.chain(), Chain::Ethereum);
    }

    #[test]
    fn unpinned_wallets_get_test_networks() {
        let policy = Policy::from_toml(
            r#"
[policy]
name = "t"
[roles]
signer = ["spiffe://t/svc"]
[[rules]]
name = "a"
effect = "allow"
roles = ["signer"]
wallets = ["btc-dev", "eth-dev", "mystery"]
"#,
        )
        .unwrap();
        let (wallets, skipped) = plan_wallets(&policy);
        assert_eq!(skipped, ["mystery"]);
        assert_eq!(wallets[0].network.to_string(), "regtest");
        assert_eq!(wallets[1].network.to_string(), "sepolia");
    }

    #[test]
    fn wallets_on_networks_sharing_a_path_get_distinct_accounts() {
        let policy = Policy::from_toml(
            r#"
[policy]
name = "t"
[roles]
signer = ["spiffe://t/svc"]
[[rules]]
name = "eth main"
effect = "allow"
roles = ["signer"]
wallets = ["eth-main"]
chains = ["ethereum"]
networks = ["mainnet"]
[[rules]]
name = "eth test"
effect = "allow"
roles = ["signer"]
wallets = ["eth-test"]
chains = ["ethereum"]
networks = ["sepolia"]
[[rules]]
name = "btc test"
effect = "allow"
roles = ["signer"]
wallets = ["btc-test"]
chains = ["bitcoin"]
networks = ["testnet"]
[[rules]]
name = "btc reg"
effect = "allow"
roles = ["signer"]
wallets = ["btc-reg"]
chains = ["bitcoin"]
networks = ["regtest"]
"#,
        )
        .unwrap();
        let (wallets, _) = plan_wallets(&policy);
        let paths: Vec<(String, String)> = wallets
            .iter()
            .map(|w| {
                let path =
                    AccountPath::new(w.network, default_purpose(w.network.chain()), w.account)
                        .unwrap();
                (w.name.clone(), path.to_string())
            })
            .collect();
        assert_eq!(paths.len(), 4, "{paths:?}");
        let unique: BTreeSet<&String> = paths.iter().map(|(_, p)| p).collect();
        assert_eq!(unique.len(), paths.len(), "{paths:?}");
    }
}
