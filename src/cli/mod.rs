//! The `custos` command line: the daemon and the admin commands as clap subcommands.
//!
//! One file per command group, each a thin layer: parse arguments, call into the library, print.
//! Errors go to stderr as one sentence; exit codes are 0 ok, 1 operational error, 2 usage. The
//! host commands (`unseal`, `seal`, `status`, `sign`, `approve`, `reject`, `pending`) talk to a
//! running server; a refusal prints `GRPC_CODE: message` and exits 1 ([`client`]).

pub mod approver;
pub mod audit;
pub mod backup;
pub mod bench;
pub mod bench_load;
pub mod bench_report;
pub mod bench_signer;
pub mod bench_signer_hsm;
pub mod bench_signer_pg;
pub mod bench_stats;
pub mod ceremony;
pub mod client;
pub mod common;
pub mod demo;
pub mod dev;
pub mod dev_hsm;
pub mod dev_postgres;
pub mod environ;
pub mod error;
pub mod eth;
pub mod host;
pub mod hsm;
pub mod hsm_import;
pub mod hsm_keygen;
pub mod hsm_unseal_slot;
pub mod init;
pub mod mnemonic;
pub mod passphrase;
pub mod pgdev;
pub mod policy;
pub mod policy_sign;
pub mod psbt;
pub mod request;
pub mod sample;
pub mod selftest;
pub mod serve;
pub mod share_display;
pub mod shares;
pub mod sign;
pub mod state;
pub mod store;
pub mod unsealer;
pub mod vote;
pub mod wallet;

use clap::{Parser, Subcommand};

pub use error::{CliError, CliResult};

/// Custos: key custody and signing.
#[derive(Debug, Parser)]
#[command(name = "custos", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a mnemonic before a recovery ceremony (nothing is stored).
    #[command(subcommand)]
    Mnemonic(mnemonic::MnemonicCommand),
    /// Create a key store with a new (or restored) seed.
    Init(init::InitArgs),
    /// Create and inspect wallets.
    #[command(subcommand)]
    Wallet(wallet::WalletCommand),
    /// Check a key store.
    #[command(subcommand)]
    Store(store::StoreCommand),
    /// Change or remove the key store passphrase (recorded in the ceremony log).
    #[command(subcommand)]
    Passphrase(passphrase::PassphraseCommand),
    /// Shamir shares: add a first set, rotate, check a share alone, show the set.
    #[command(subcommand)]
    Shares(shares::SharesCommand),
    /// The ceremony log: a verified transcript to sign off.
    #[command(subcommand)]
    Ceremony(ceremony::CeremonyCommand),
    /// Backups: export an encrypted copy; prove a mnemonic, a file or shares restore the store.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Inspect Bitcoin PSBTs: what a transaction really does, without signing.
    #[command(subcommand)]
    Psbt(psbt::PsbtCommand),
    /// Inspect Ethereum transactions and messages, without signing.
    #[command(subcommand)]
    Eth(eth::EthCommand),
    /// Policy tooling: check, test, explain, diff, hash.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// An offline walkthrough: a demo key store, wallets, and signed Bitcoin and Ethereum
    /// transactions (demo keys; never fund them).
    Demo(demo::DemoArgs),
    /// Run the gRPC signer (mutual TLS) with a configuration file.
    Serve(serve::ServeArgs),
    /// Development helpers (a ready environment with certificates).
    #[command(subcommand)]
    Dev(dev::DevCommand),
    /// Run the known-answer self-tests (derivation, ECDSA, EIP-155, BIP340) and print each result.
    Selftest(selftest::SelftestArgs),
    /// Unseal a running server (Admin.Unseal) with the passphrase or one Shamir share per call.
    Unseal(host::UnsealArgs),
    /// Seal a running server (Admin.Seal): it forgets every key at once.
    Seal(host::ClientArgs),
    /// A running server's seal state, policy hash and version (Admin.Status).
    Status(host::StatusArgs),
    /// Ask a running server to sign a payload (Signer.Sign); prints the result as JSON.
    Sign(sign::SignArgs),
    /// Approve a pending request (Signer.Approve), signing the vote with the approver's key.
    Approve(vote::VoteArgs),
    /// Reject a pending request (Signer.Reject), signing the vote with the approver's key.
    Reject(vote::VoteArgs),
    /// Approvers' signing keys: generate one, show its public key.
    #[command(subcommand)]
    Approver(approver::ApproverCommand),
    /// A request's proof (request, intent, votes, signatures): export it, check it offline.
    #[command(subcommand)]
    Request(request::RequestCommand),
    /// List the requests waiting for approval (Signer.ListPending), as JSON.
    Pending(sign::PendingArgs),
    /// The audit chain: verify it, show the newest records.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// HSM ceremonies (PKCS#11): status, key import and generation, the auto-unseal slot.
    #[command(subcommand)]
    Hsm(hsm::HsmCommand),
    /// The state database: verify every record, prune old requests, accept a rollback.
    #[command(subcommand)]
    State(state::StateCommand),
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Mnemonic(command) => mnemonic::run(command),
        Command::Init(args) => init::run(args),
        Command::Wallet(command) => wallet::run(command),
        Command::Store(command) => store::run(command),
        Command::Passphrase(command) => passphrase::run(command),
        Command::Shares(command) => shares::run(command),
        Command::Ceremony(command) => ceremony::run(command),
        Command::Backup(command) => backup::run(command),
        Command::Psbt(command) => psbt::run(command),
        Command::Eth(command) => eth::run(command, &common::open_wallet),
        Command::Policy(command) => policy::run(command),
        Command::Bench(command) => bench::run(command),
        Command::Demo(args) => demo::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Dev(command) => dev::run(command),
        Command::Selftest(args) => selftest::run(args),
        Command::Unseal(args) => host::unseal(args),
        Command::Seal(args) => host::seal(args),
        Command::Status(args) => host::status(args),
        Command::Sign(args) => sign::sign(args),
        Command::Approve(args) => vote::approve(args),
        Command::Reject(args) => vote::reject(args),
        Command::Approver(command) => approver::run(command),
        Command::Request(command) => request::run(command),
        Command::Pending(args) => sign::pending(args),
        Command::Audit(command) => audit::run(command),
        Command::Hsm(command) => hsm::run(command),
        Command::State(command) => state::run(command),
    }
}
