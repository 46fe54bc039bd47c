//! `custos eth inspect`: what an Ethereum payload would do, decoded exactly as the signer decodes
//! it, without signing anything.
//!
//! The wallet comes from the key store (`--store`, `--wallet`, `--passphrase-file`); tokens from
//! [`TokenRegistry::well_known`] plus an optional `--tokens FILE`:
//!
//! ```toml
//! [[token]]
//! chain_id = 1
//! contract = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
//! symbol = "USDC"
//! decimals = 6
//! ```

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Deserialize;

use super::CliError;
use crate::assets::{TokenInfo, TokenRegistry};
use crate::chains::ethereum::{decode, EthPayload};
use crate::wallet::Wallet;

/// Ethereum tools.
#[derive(Debug, Subcommand)]
pub enum EthCommand {
    /// Print the intent of a transaction, personal message or typed data (nothing is signed).
    Inspect(InspectArgs),
}

/// Arguments of `custos eth inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The key store directory.
    #[arg(long)]
    pub store: PathBuf,
    /// The wallet's name.
    #[arg(long)]
    pub wallet: String,
    /// The account index of the sending address (0 is the wallet's first address).
    #[arg(long, default_value_t = 0)]
    pub index: u32,
    /// A file holding the store passphrase (else it is asked for).
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub shares: super::unsealer::ShareArgs,
    /// A transaction: JSON fields, unsigned RLP bytes, or 0x-hex RLP.
    #[arg(long, group = "payload", required = true)]
    pub tx: Option<PathBuf>,
    /// EIP-712 typed data (eth_signTypedData_v4 JSON).
    #[arg(long, group = "payload")]
    pub typed_data: Option<PathBuf>,
    /// A personal_sign message: the file's exact bytes.
    #[arg(long, group = "payload")]
    pub message: Option<PathBuf>,
    /// Extra tokens (TOML list of [[token]] chain_id, contract, symbol, decimals).
    #[arg(long)]
    pub tokens: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Opens a wallet from the key store (the CLI passes `cli::common::open_wallet`).
pub type OpenWallet<'a> =
    &'a dyn Fn(&Path, &str, Option<&Path>, &super::unsealer::ShareArgs) -> Result<Wallet, CliError>;

/// Runs an `eth` command, opening the wallet with `open`.
pub fn run(command: EthCommand, open: OpenWallet<'_>) -> Result<(), CliError> {
    match command {
        EthCommand::Inspect(args) => {
            let wallet = open(
                &args.store,
                &args.wallet,
                args.passphrase_file.as_deref(),
                &args.shares,
            )?;
            print!("{}", inspect(&args, &wallet)?);
            Ok(())
        }
    }
}

/// The text (or JSON) `inspect` prints for `wallet`.
pub fn inspect(args: &InspectArgs, wallet: &Wallet) -> Result<String, CliError> {
    let mut tokens = TokenRegistry::well_known();
    if let Some(path) = &args.tokens {
        for token in load_tokens(path)? {
            tokens.insert(token);
        }
    }
    let read = |p: &Path| {
        std::fs::read(p)
            .map_err(|e| CliError::operational(format!("cannot read {}: {e}", p.display())))
    };
    let (bytes, kind) = match (&args.tx, &args.typed_data, &args.message) {
        (Some(p), _, _) => (read(p)?, 0),
        (_, Some(p), _) => (read(p)?, 1),
        (_, _, Some(p)) => (read(p)?, 2),
        _ => {
            return Err(CliError::usage(
                "give one of --tx, --typed-data or --message",
            ))
        }
    };
    let payload = match kind {
        0 => EthPayload::Transaction(&bytes),
        1 => EthPayload::TypedData(&bytes),
        _ => EthPayload::PersonalMessage(&bytes),
    };
    let decoded = decode(wallet, args.index, payload, &tokens)
        .map_err(|e| CliError::operational(format!("refused: {e}")))?;
    let intent = decoded.intent();
    let hash = format!("0x{}", hex::encode(decoded.signing_hash()));
    let from = decoded.from_address().to_checksum(None);
    if args.json {
        let out = serde_json::json!({
            "from": from,
            "index": args.index,
            "signing_hash": hash,
            "summary": intent.summary(),
            "intent": intent,
        });
        let text = serde_json::to_string_pretty(&out)
            .map_err(|e| CliError::operational(format!("cannot print json: {e}")))?;
        return Ok(format!("{text}\n"));
    }
    let mut out = format!("{}\n", intent.summary());
    out.push_str(&format!("kind:          {}\n", intent.kind));
    out.push_str(&format!("from:          {from} (index {})\n", args.index));
    out.push_str(&format!("asset:         {}\n", intent.asset.symbol));
    for d in &intent.destinations {
        out.push_str(&format!(
            "destination:   {} {}\n",
            d.address,
            intent.asset.format(d.amount)
        ));
    }
    if let Some(owner) = &intent.token_owner {
        out.push_str(&format!("token owner:   {owner}\n"));
    }
    if let Some(contract) = &intent.contract {
        out.push_str(&format!("contract:      {contract}\n"));
    }
    if let Some(selector) = &intent.selector {
        out.push_str(&format!("selector:      {selector}\n"));
    }
    if let Some(nonce) = intent.nonce {
        out.push_str(&format!("nonce:         {nonce}\n"));
        out.push_str(&format!("max fee:       {} wei\n", intent.fee));
    }
    if let Some(deadline) = intent.deadline {
        out.push_str(&format!("deadline:      {deadline}\n"));
    }
    if let Some(m) = &intent.message {
        for (label, value) in [
            ("domain name", m.domain_name.clone()),
            ("domain chain", m.domain_chain_id.map(|c| c.to_string())),
            ("verifying", m.verifying_contract.clone()),
            ("primary type", m.primary_type.clone()),
            ("message", m.preview.clone()),
        ] {
            if let Some(v) = value {
                out.push_str(&format!("{:<15}{v}\n", format!("{label}:")));
            }
        }
    }
    out.push_str(&format!("signing hash:  {hash}\n"));
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    chain_id: u64,
    contract: String,
    symbol: String,
    decimals: u8,
}

/// Reads a `--tokens` file.
pub fn load_tokens(path: &Path) -> Result<Vec<TokenInfo>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::operational(format!("cannot read {}: {e}", path.display())))?;
    let file: TokenFile =
        toml::from_str(&text).map_err(|e| CliError::usage(format!("{}: {e}", path.display())))?;
    file.token
        .into_iter()
        .map(|t| {
            let digits = t.contract.strip_prefix("0x").unwrap_or("");
            if digits.len() != 40 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(CliError::usage(format!(
                    "{}: token {} contract '{}' is not a 0x-hex address of 20 bytes",
                    path.display(),
                    t.symbol,
                    t.contract
                )));
            }
            Ok(TokenInfo {
                chain_id: t.chain_id,
                contract: t.contract.to_ascii_lowercase(),
                symbol: t.symbol,
                decimals: t.decimals,
            })
        })
        .collect()
}
