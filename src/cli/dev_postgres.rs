//! `custos dev postgres DIR [--stop]`: a throwaway PostgreSQL for a newcomer, and the PostgreSQL
//! part of `custos dev env --state postgres`.
//!
//! `custos dev postgres DIR` creates a cluster in DIR if there is none (`initdb`; as the
//! `postgres` system user when run as root), starts it on 127.0.0.1 (the port of its last start if
//! free, else a free ephemeral one), applies Custos' schema, and prints the URL, the password file
//! and the `[state]` section to paste into `custos.toml`. `--stop` stops it. The binaries come from
//! Debian's `postgresql` package (`scripts/pg-dev install`).

use std::path::{Path, PathBuf};

use clap::Args;

use super::pgdev::Cluster;
use super::{CliError, CliResult};
use crate::state::postgres::PgEngine;

/// Arguments of `custos dev postgres`.
#[derive(Debug, Args)]
pub struct PostgresArgs {
    /// The cluster's directory (created if absent).
    pub dir: PathBuf,
    /// Stop the cluster instead of starting it.
    #[arg(long)]
    pub stop: bool,
}

/// Runs `custos dev postgres`.
pub fn run(args: &PostgresArgs) -> CliResult {
    if args.stop {
        Cluster::stop_dir(&args.dir).map_err(CliError::operational)?;
        println!("PostgreSQL in {} stopped", args.dir.display());
        return Ok(());
    }
    let cluster = start(&args.dir)?;
    println!("PostgreSQL running in {}", cluster.dir().display());
    println!("  url            {}", cluster.url());
    println!(
        "  password file  {} (0600)",
        cluster.password_file().display()
    );
    println!("  schema         migrated (custos state migrate)");
    println!("in custos.toml (instead of state_dir):");
    print!(
        "{}",
        state_section(&cluster.url(), &cluster.password_file())
    );
    println!(
        "stop it with: custos dev postgres {} --stop",
        args.dir.display()
    );
    Ok(())
}

/// Starts (creating if needed) the cluster in `dir`, migrated, left running.
pub fn start(dir: &Path) -> Result<Cluster, CliError> {
    let mut cluster = Cluster::start(dir).map_err(CliError::operational)?;
    cluster.keep_running();
    let settings = cluster.settings(None).map_err(CliError::operational)?;
    PgEngine::migrate(&settings)
        .map_err(|e| CliError::operational(format!("cannot migrate the new database: {e}")))?;
    Ok(cluster)
}

/// The `[state]` section for a database at `url` with its password in `password_file`.
pub fn state_section(url: &str, password_file: &Path) -> String {
    format!(
        "[state]\nengine = \"postgres\"\nurl = \"{url}\"\npassword_file = \"{}\"\n",
        password_file.display()
    )
}
