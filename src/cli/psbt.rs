//! `custos psbt inspect`: what a PSBT really does for one wallet, without signing — what an
//! approver reads before approving. Ownership and change are re-derived from the wallet, exactly
//! as the signer will see them; the same checks refuse the same PSBTs.
//!
//! Not yet declared in `cli/mod.rs` nor in `Command`: it loads wallets through
//! `cli::common::open_wallet`, which the key-store work provides. To wire it: `pub mod psbt;` and
//! `#[command(subcommand)] Psbt(psbt::PsbtCommand)` => `psbt::run(command)`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::{CliError, CliResult};
use crate::amount::format_decimal;
use crate::chains::bitcoin::{decode, SignOptions};
use crate::wallet::Wallet;

/// PSBT commands.
#[derive(Debug, Subcommand)]
pub enum PsbtCommand {
    /// Print the intent of a PSBT (destinations, amounts, fee, change) without signing.
    Inspect(InspectArgs),
}

/// Arguments of `custos psbt inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The key store directory.
    #[arg(long)]
    pub store: PathBuf,
    /// The wallet the PSBT is for.
    #[arg(long)]
    pub wallet: String,
    /// The PSBT file (binary, base64 or hex).
    #[arg(long)]
    pub psbt: PathBuf,
    /// File holding the store passphrase (otherwise asked on the terminal, if needed).
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub shares: super::unsealer::ShareArgs,
    /// Print the intent as JSON (the form the policy engine and the audit log use).
    #[arg(long)]
    pub json: bool,
}

/// Runs a `psbt` command.
pub fn run(command: PsbtCommand) -> CliResult {
    match command {
        PsbtCommand::Inspect(args) => {
            let wallet = super::common::open_wallet(
                &args.store,
                &args.wallet,
                args.passphrase_file.as_deref(),
                &args.shares,
            )?;
            let payload = read_payload(&args.psbt)?;
            print!("{}", inspect(&wallet, &payload, args.json)?);
            Ok(())
        }
    }
}

fn read_payload(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path)
        .map_err(|e| CliError::operational(format!("cannot read {}: {e}", path.display())))
}

/// The text (or JSON) `psbt inspect` prints for `payload` sent to `wallet`.
pub fn inspect(wallet: &Wallet, payload: &[u8], json: bool) -> Result<String, CliError> {
    let decoded = decode(wallet, payload, &SignOptions::default())
        .map_err(|e| CliError::operational(format!("psbt refused: {e}")))?;
    let intent = decoded.intent();
    if json {
        let mut text = serde_json::to_string_pretty(intent)
            .map_err(|e| CliError::operational(format!("cannot encode the intent: {e}")))?;
        text.push('\n');
        return Ok(text);
    }
    let btc = |amount| format!("{} {}", format_decimal(amount, 8), intent.asset.symbol);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{}", intent.summary());
    let _ = writeln!(
        out,
        "wallet:       {} ({}/{})",
        intent.wallet, intent.chain, intent.network
    );
    let _ = writeln!(out, "sends:        {}", btc(intent.amount));
    for d in &intent.destinations {
        let _ = writeln!(out, "  to          {}  {}", d.address, btc(d.amount));
    }
    let _ = writeln!(out, "fee:          {}", btc(intent.fee));
    if let Some(rate) = intent.fee_rate_sat_per_kvb {
        let _ = writeln!(
            out,
            "fee rate:     {}.{:03} sat/vB",
            rate / 1000,
            rate % 1000
        );
    }
    for c in &intent.change {
        let _ = writeln!(out, "change        {}  {}", c.address, btc(c.amount));
    }
    if !intent.foreign_input_value.is_zero() {
        let _ = writeln!(
            out,
            "others' inputs: {} (not this wallet's)",
            btc(intent.foreign_input_value)
        );
    }
    let signed: Vec<String> = decoded
        .owned_inputs()
        .map(|i| format!("{} (m/{})", i.index, i.key.path))
        .collect();
    let _ = writeln!(out, "signs inputs: {}", signed.join(", "));
    Ok(out)
}
