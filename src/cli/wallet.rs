//! `custos wallet …`: create wallets (HD accounts), list them, show addresses and xpubs.
//!
//! Wallets are sealed in the store, so every subcommand unseals it (passphrase or shares).
//! `create` is a ceremony: recorded in the store's log with the wallet's xpub and first address.

use clap::{Subcommand, ValueEnum};

use super::common::{keystore_error, StoreArgs};
use super::unsealer::{Opened, OperatorArgs};
use super::{CliError, CliResult};
use crate::ceremony::{self, CeremonyEvent, WalletFact};
use crate::keys::{AccountPath, Chain, Network, Purpose};
use crate::wallet::Wallet;

/// `--chain`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ChainArg {
    /// Bitcoin (mainnet, testnet, signet, regtest).
    Bitcoin,
    /// Ethereum and EVM chains.
    Ethereum,
}

impl From<ChainArg> for Chain {
    fn from(c: ChainArg) -> Chain {
        match c {
            ChainArg::Bitcoin => Chain::Bitcoin,
            ChainArg::Ethereum => Chain::Ethereum,
        }
    }
}

/// `custos wallet …`
#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Create a wallet: an HD account on one network.
    Create {
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
        /// Unique wallet name (letters, digits, '-', '_', '.').
        #[arg(long)]
        name: String,
        /// Chain family.
        #[arg(long, value_enum)]
        chain: ChainArg,
        /// Bitcoin: mainnet, testnet, signet, regtest. Ethereum: a chain id or a known name
        /// (mainnet, sepolia, holesky, …).
        #[arg(long, value_name = "NET")]
        network: String,
        /// BIP purpose: 44, 49, 84 or 86 (default 84 on Bitcoin; Ethereum takes only 44).
        #[arg(long)]
        purpose: Option<u32>,
        /// Account index.
        #[arg(long, default_value_t = 0)]
        account: u32,
        #[command(flatten)]
        #[allow(missing_docs)]
        operator: OperatorArgs,
    },
    /// List the wallets.
    List {
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
        /// JSON (an array of objects) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print one address of a wallet (and nothing else).
    Address {
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
        /// Wallet name.
        #[arg(long)]
        name: String,
        /// Address index.
        #[arg(long)]
        index: u32,
        /// From the change chain (Bitcoin only).
        #[arg(long)]
        change: bool,
    },
    /// Print the account xpub (SLIP-132 form) and, for Bitcoin, the receive and change
    /// descriptors: one per line, in that order.
    Xpub {
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
        /// Wallet name.
        #[arg(long)]
        name: String,
    },
}

/// Runs `custos wallet …`.
pub fn run(command: WalletCommand) -> CliResult {
    match command {
        WalletCommand::Create {
            store,
            name,
            chain,
            network,
            purpose,
            account,
            operator,
        } => {
            let operator = operator.operator()?;
            let chain = Chain::from(chain);
            let network = Network::parse(chain, &network).map_err(CliError::usage)?;
            let purpose = match (purpose, chain) {
                (Some(n), _) => Purpose::try_from(n).map_err(CliError::usage)?,
                (None, Chain::Bitcoin) => Purpose::Bip84,
                (None, Chain::Ethereum) => Purpose::Bip44,
            };
            AccountPath::new(network, purpose, account).map_err(CliError::usage)?;
            let Opened { unsealed, by } = store.open()?;
            let wallet = unsealed
                .create_wallet_recorded(None, &name, network, purpose, account, |wallet| {
                    ceremony::draft(
                        &operator,
                        &CeremonyEvent::WalletCreate {
                            wallet: WalletFact::of(wallet),
                            place: "command line".into(),
                            unsealed_by: Some(by.clone()),
                        },
                    )
                })
                .map_err(keystore_error)?;
            println!(
                "created wallet {} ({} {} {}), first address {}",
                wallet.name,
                wallet.chain(),
                wallet.network(),
                wallet.account.path,
                first_address(&wallet)?
            );
            Ok(())
        }
        WalletCommand::List { store, json } => {
            let wallets = store.open()?.unsealed.wallets().map_err(keystore_error)?;
            if json {
                let list: Vec<serde_json::Value> = wallets.iter().map(wallet_json).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).expect("JSON values serialize")
                );
            } else {
                print_table(&wallets);
            }
            Ok(())
        }
        WalletCommand::Address {
            store,
            name,
            index,
            change,
        } => {
            let wallet = store
                .open()?
                .unsealed
                .wallet(&name)
                .map_err(keystore_error)?;
            let address = wallet.address(change, index).map_err(CliError::usage)?;
            println!("{address}");
            Ok(())
        }
        WalletCommand::Xpub { store, name } => {
            let wallet = store
                .open()?
                .unsealed
                .wallet(&name)
                .map_err(keystore_error)?;
            if wallet.account.is_generated() {
                return Err(CliError::operational(format!(
                    "wallet {name} has keys generated in an hsm: it is not HD and has no xpub or \
                     descriptor (list its addresses with `custos wallet address`)"
                )));
            }
            println!("{}", wallet.account.slip132_xpub());
            if wallet.chain() == Chain::Bitcoin {
                for change in [false, true] {
                    let descriptor = wallet
                        .account
                        .descriptor(change)
                        .map_err(CliError::operational)?;
                    println!("{descriptor}");
                }
            }
            Ok(())
        }
    }
}

fn first_address(wallet: &Wallet) -> Result<String, CliError> {
    wallet.address(false, 0).map_err(CliError::operational)
}

fn wallet_json(w: &Wallet) -> serde_json::Value {
    serde_json::json!({
        "name": w.name,
        "chain": w.chain().as_str(),
        "network": w.network().name(),
        "chain_id": w.network().chain_id(),
        "purpose": w.account.path.purpose.number(),
        "account": w.account.path.account,
        "path": w.account.path_text(),
        "seed": w.seed.0,
        "master_fingerprint": w.account.master_fingerprint.to_string(),
        "xpub": w.account.xpub().map(|_| w.account.slip132_xpub()),
        "generated_keys": w.account.generated_keys().map(<[_]>::len),
    })
}

fn print_table(wallets: &[Wallet]) {
    let header = ["NAME", "CHAIN", "NETWORK", "PATH", "SEED"];
    let rows: Vec<[String; 5]> = wallets
        .iter()
        .map(|w| {
            [
                w.name.clone(),
                w.chain().to_string(),
                w.network().name(),
                w.account.path_text(),
                w.seed.0.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
}
