//! `custos hsm …`: the HSM ceremonies, against the token of a `custos.toml`'s `[hsm]` section.
//!
//! - `status`: the module, the token and what it can do (`CKM_ECDSA`, secp256k1 key generation
//!   tried for real, AES-GCM for the unseal slot), its Custos keys, the store's unseal slot.
//! - `list`: the key objects with the attributes that matter (sensitive, extractable, generated
//!   on the token or imported), as `pkcs11-tool --list-objects` would show them.
//! - `import --wallet W --range A..B`: an HD wallet's keys derived here and imported
//!   ([`super::hsm_import`]; see [`crate::backend::pkcs11::ceremony`] for what that means for
//!   the seed).
//! - `keygen --wallet W --count N --network NET`: a wallet whose keys are generated inside the
//!   token and never leave it (Ethereum: see [`crate::keystore::generated`]).
//! - `unseal-slot add|remove`: the AES key that lets a server unseal itself at start
//!   ([`super::hsm_unseal_slot`]).
//!
//! Commands that touch the store unseal it like the other ceremonies: the passphrase (file, then
//! `CUSTOS_PASSPHRASE`, then a prompt) or a threshold of Shamir shares (`--share-file F …`,
//! `CUSTOS_SHARE_FILES`, prompts), and need the server stopped (it holds the store's lock). Each
//! appends an entry to the store's ceremony log with the operator of `--operator` (public facts
//! only, [`crate::ceremony::hsm`]). The user PIN comes from `pin_file` or `pin_env` of the
//! configuration, never a flag, and is never recorded.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::common::{keystore_error, read_secret_file};
use super::unsealer::{unseal_store, Opened, OperatorArgs, ShareArgs};
use super::{CliError, CliResult};
use crate::backend::pkcs11::{Pkcs11Backend, TokenSelector, TokenSettings};
use crate::ceremony::Operator;
use crate::config::{Config, HsmConfig};
use crate::keys::{Chain, Network};
use crate::keystore::KeyStore;
use crate::secret::SecretString;

/// `custos hsm …`
#[derive(Debug, Subcommand)]
pub enum HsmCommand {
    /// The token: availability, mechanisms, secp256k1 support, Custos keys, the unseal slot.
    Status(ConfigArgs),
    /// The Custos key objects on the token and their attributes.
    List {
        #[command(flatten)]
        #[allow(missing_docs)]
        config: ConfigArgs,
        /// Only this wallet's keys.
        #[arg(long)]
        wallet: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Derive an HD wallet's keys here and import them into the token (receive and, for Bitcoin,
    /// change addresses), so the wallet signs on the HSM with the same xpub and addresses.
    Import {
        #[command(flatten)]
        #[allow(missing_docs)]
        ceremony: CeremonyArgs,
        /// The wallet (in the configuration's key store).
        #[arg(long)]
        wallet: String,
        /// Address indexes, `START..END` (END excluded).
        #[arg(long, value_parser = parse_range)]
        range: Range<u32>,
    },
    /// Create a wallet whose keys are generated inside the token and never leave it (not HD: no
    /// xpub, no seed backup; Ethereum).
    Keygen {
        #[command(flatten)]
        #[allow(missing_docs)]
        ceremony: CeremonyArgs,
        /// The new wallet's name.
        #[arg(long)]
        wallet: String,
        /// How many keys (addresses 0..N).
        #[arg(long)]
        count: u32,
        /// An Ethereum network: a chain id or a known name (mainnet, sepolia, holesky, …).
        #[arg(long, value_name = "NET")]
        network: String,
    },
    /// The store's HSM unseal slot (auto-unseal).
    #[command(subcommand)]
    UnsealSlot(UnsealSlotCommand),
}

/// `custos hsm unseal-slot …`
#[derive(Debug, Subcommand)]
pub enum UnsealSlotCommand {
    /// Generate an AES-256 key in the token and seal the store's data key with it.
    Add(CeremonyArgs),
    /// Remove the slot from the store and destroy its key in the token.
    Remove {
        #[command(flatten)]
        #[allow(missing_docs)]
        ceremony: CeremonyArgs,
        /// Keep the key in the token (only the store's record is removed).
        #[arg(long)]
        keep_key: bool,
    },
}

/// `--config F [--passphrase-file P]`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The server configuration (its `[hsm]` section and `store_dir`).
    #[arg(long, value_name = "FILE", default_value = "custos.toml")]
    pub config: PathBuf,
    /// File holding the store passphrase (else CUSTOS_PASSPHRASE, else a prompt).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

/// `--config F`, the store's unsealer (`--passphrase-file P`, or `--share-file S` per custodian)
/// and `--operator NAME`: for the ceremonies the ceremony log records.
#[derive(Debug, Args)]
pub struct CeremonyArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub config: ConfigArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub shares: ShareArgs,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub operator: OperatorArgs,
}

/// What an HSM ceremony runs with: the configuration, its token, who runs it.
pub struct Ceremony {
    /// The server configuration.
    pub config: Config,
    /// Its `[hsm]` section.
    pub hsm: HsmConfig,
    /// The token.
    pub backend: Arc<Pkcs11Backend>,
    /// Who runs the ceremony.
    pub operator: Operator,
}

impl CeremonyArgs {
    /// The operator (checked first: a bad name changes nothing), the configuration and the token.
    pub fn begin(&self) -> Result<Ceremony, CliError> {
        let operator = self.operator.operator()?;
        let config = Config::load(&self.config.config).map_err(CliError::usage)?;
        let hsm = hsm_section(&config, &self.config.config)?;
        let backend = open_backend(&hsm)?;
        Ok(Ceremony {
            config,
            hsm,
            backend,
            operator,
        })
    }
}

impl Ceremony {
    /// Opens and unseals the configuration's store, with the passphrase or shares of `args`.
    pub fn unseal(&self, args: &CeremonyArgs) -> Result<Opened, CliError> {
        unseal_store(
            &self.config.store_dir,
            args.config.passphrase_file.as_deref(),
            &args.shares,
        )
    }

    /// The token as the ceremony log names it: its label, or `slot N`.
    pub fn token_fact(&self) -> String {
        match (&self.hsm.token_label, self.hsm.slot) {
            (Some(label), _) => label.clone(),
            (None, Some(slot)) => format!("slot {slot}"),
            (None, None) => self.backend.token().name().to_owned(),
        }
    }

    /// The module path, for the log.
    pub fn module_fact(&self) -> String {
        self.hsm.module.display().to_string()
    }
}

fn parse_range(text: &str) -> Result<Range<u32>, String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("expected START..END, got '{text}'"))?;
    let start: u32 = a
        .trim()
        .parse()
        .map_err(|e| format!("range start '{a}': {e}"))?;
    let end: u32 = b
        .trim()
        .parse()
        .map_err(|e| format!("range end '{b}': {e}"))?;
    if start >= end {
        return Err(format!("the range {start}..{end} is empty"));
    }
    Ok(start..end)
}

/// The `[hsm]` section of `config`, or a usage error.
pub fn hsm_section(config: &Config, path: &Path) -> Result<HsmConfig, CliError> {
    config
        .hsm
        .clone()
        .ok_or_else(|| CliError::usage(format!("{} has no [hsm] section", path.display())))
}

/// Sets the module's environment (before it is loaded) and reads the user PIN: the settings to
/// open the token with.
pub fn token_settings(hsm: &HsmConfig) -> Result<TokenSettings, CliError> {
    for (name, value) in &hsm.module_env {
        // Set before any thread uses the module; the CLI and `serve` are single-threaded here.
        std::env::set_var(name, value);
    }
    let pin = match (&hsm.pin_file, &hsm.pin_env) {
        (Some(file), _) => read_secret_file(file)?,
        (None, Some(var)) => {
            let value = std::env::var_os(var).ok_or_else(|| {
                CliError::usage(format!("[hsm] pin_env names {var}, which is not set"))
            })?;
            SecretString::new(value.into_string().map_err(|_| {
                CliError::usage(format!("the {var} environment variable is not UTF-8"))
            })?)
        }
        (None, None) => return Err(CliError::usage("[hsm] sets neither pin_file nor pin_env")),
    };
    if pin.is_empty() {
        return Err(CliError::usage("the hsm user pin is empty"));
    }
    Ok(TokenSettings {
        module: hsm.module.clone(),
        token: match (&hsm.token_label, hsm.slot) {
            (Some(label), _) => TokenSelector::Label(label.clone()),
            (None, Some(slot)) => TokenSelector::Slot(slot),
            (None, None) => return Err(CliError::usage("[hsm] sets neither token_label nor slot")),
        },
        pin,
        sessions: hsm.sessions,
    })
}

/// Opens the token of `hsm` (a module that cannot be loaded is an error; a token absent now is
/// reported by the operations).
pub fn open_backend(hsm: &HsmConfig) -> Result<Arc<Pkcs11Backend>, CliError> {
    let settings = token_settings(hsm)?;
    Pkcs11Backend::open(settings)
        .map(Arc::new)
        .map_err(CliError::operational)
}

fn load(args: &ConfigArgs) -> Result<(Config, Arc<Pkcs11Backend>), CliError> {
    let config = Config::load(&args.config).map_err(CliError::usage)?;
    let hsm = hsm_section(&config, &args.config)?;
    let backend = open_backend(&hsm)?;
    Ok((config, backend))
}

/// Runs `custos hsm …`.
pub fn run(command: HsmCommand) -> CliResult {
    match command {
        HsmCommand::Status(args) => status(&args),
        HsmCommand::List {
            config,
            wallet,
            json,
        } => list(&config, wallet.as_deref(), json),
        HsmCommand::Import {
            ceremony,
            wallet,
            range,
        } => super::hsm_import::import(&ceremony, &wallet, range),
        HsmCommand::Keygen {
            ceremony,
            wallet,
            count,
            network,
        } => super::hsm_keygen::keygen(&ceremony, &wallet, count, &network),
        HsmCommand::UnsealSlot(UnsealSlotCommand::Add(args)) => super::hsm_unseal_slot::add(&args),
        HsmCommand::UnsealSlot(UnsealSlotCommand::Remove { ceremony, keep_key }) => {
            super::hsm_unseal_slot::remove(&ceremony, keep_key)
        }
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "NO"
    }
}

fn status(args: &ConfigArgs) -> CliResult {
    let (config, backend) = load(args)?;
    let status = backend.status();
    println!("module:       {}", status.module.display());
    println!("token:        {}", status.token);
    println!(
        "state:        {}",
        if status.available {
            status.detail.clone()
        } else {
            format!("UNAVAILABLE: {}", status.detail)
        }
    );
    if !status.available {
        return Err(CliError::operational(status.detail));
    }
    let caps = backend.capabilities().map_err(CliError::operational)?;
    println!("CKM_ECDSA:    {}", yes(caps.ecdsa));
    println!("EC keygen:    {}", yes(caps.ec_keygen));
    match &caps.secp256k1 {
        Ok(()) => println!("secp256k1:    yes (a session key pair was generated and destroyed)"),
        Err(rv) => println!("secp256k1:    NO ({rv})"),
    }
    println!(
        "AES-GCM:      {} (unseal slot)",
        yes(caps.aes_gcm && caps.aes_keygen)
    );
    let objects = backend.list("custos/").map_err(CliError::operational)?;
    let private = objects.iter().filter(|o| o.class == "private").count();
    println!("custos keys:  {private} private key object(s)");
    match KeyStore::open(&config.store_dir) {
        Ok(store) => match store.pkcs11_slot().map_err(keystore_error)? {
            Some(slot) => println!("unseal slot:  yes (key '{}')", slot.key_label),
            None => println!("unseal slot:  no"),
        },
        Err(e) => println!("unseal slot:  (store not readable: {e})"),
    }
    if !(caps.ecdsa && caps.secp256k1.is_ok()) {
        return Err(CliError::operational(format!(
            "the pkcs#11 module {} cannot sign with secp256k1 keys",
            status.module.display()
        )));
    }
    Ok(())
}

fn list(args: &ConfigArgs, wallet: Option<&str>, json: bool) -> CliResult {
    let (_, backend) = load(args)?;
    let prefix = match wallet {
        Some(w) => format!("custos/{w}/"),
        None => "custos/".to_owned(),
    };
    let objects = backend.list(&prefix).map_err(CliError::operational)?;
    let flag = |b: Option<bool>| b.map_or("-", |b| if b { "true" } else { "false" });
    if json {
        let rows: Vec<serde_json::Value> = objects
            .iter()
            .map(|o| {
                serde_json::json!({
                    "label": o.label,
                    "class": o.class,
                    "secp256k1": o.secp256k1,
                    "sensitive": o.sensitive,
                    "extractable": o.extractable,
                    "private": o.private,
                    "local": o.local,
                    "never_extractable": o.never_extractable,
                    "value_readable": o.value_readable,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("JSON values serialize")
        );
        return Ok(());
    }
    println!(
        "{:<32} {:<8} {:<9} {:<11} {:<8} {:<6} VALUE",
        "LABEL", "CLASS", "SENSITIVE", "EXTRACTABLE", "PRIVATE", "LOCAL"
    );
    for o in &objects {
        println!(
            "{:<32} {:<8} {:<9} {:<11} {:<8} {:<6} {}",
            o.label,
            o.class,
            flag(o.sensitive),
            flag(o.extractable),
            flag(o.private),
            flag(o.local),
            if o.class == "public" {
                "-"
            } else if o.value_readable {
                "READABLE"
            } else {
                "unreadable"
            }
        );
    }
    Ok(())
}

/// A progress bar on stderr when it is a terminal; `None` otherwise.
pub fn progress_bar(len: u64, message: &str) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_message(message.to_owned());
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} ({eta})")
    {
        bar.set_style(style);
    }
    Some(bar)
}

/// The Ethereum network of `keygen`, or a usage error.
pub fn ethereum_network(text: &str) -> Result<Network, CliError> {
    Network::parse(Chain::Ethereum, text).map_err(CliError::usage)
}
