//! `custos state migrate | verify | prune | accept-rollback`: the state database, checked and kept.
//!
//! Where the state is: `--state DIR` (sled), `--state postgres://USER@HOST:PORT/DB` (the password
//! from `--state-password-file` or `CUSTOS_STATE_PASSWORD`, the schema from `--state-schema`), or
//! `--config custos.toml` (the server's `state_dir` or `[state]`). A sled database is locked while
//! a server runs on it, so these commands run with the server stopped; a PostgreSQL state can be
//! checked and pruned while replicas serve (the check reads one consistent snapshot; pruning runs
//! in transactions like any step).
//!
//! - `migrate` (PostgreSQL) applies the schema migrations the database lacks; a server refuses to
//!   start on a schema it does not know.
//! - `verify` authenticates every record, recomputes the digest over all of them, walks the audit
//!   chain and checks it against the head anchored in the key store; it lists every bad record
//!   (tree, key, why) and exits 1 if anything is wrong.
//! - `prune --before DATE` removes finished requests (signed, denied, rejected, expired, failed)
//!   last changed before DATE, with their payloads; the audit chain stays whole and verifiable.
//! - `accept-rollback` is the explicit, audited operator override for a state that is behind its
//!   anchor (a backup restored on purpose): it records both heads in the audit chain and moves the
//!   anchor to the state's head. The next unseal then serves that state.
//!
//! Each needs the key store's passphrase: the state's records are authenticated under a key
//! derived from it.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::common::{read_secret_file, StoreArgs};
use super::{CliError, CliResult};
use crate::config::{Config, STATE_PASSWORD_ENV};
use crate::keystore::{StateAnchor, Unsealed};
use crate::policy::eval::{format_time, parse_time};
use crate::secret::SecretString;
use crate::state::anchor::{self, format_head};
use crate::state::audit::{self, AuditEntry};
use crate::state::auth::StateAuth;
use crate::state::engine::Engine;
use crate::state::postgres::{PgEngine, PgSettings};
use crate::state::{prune, verify, State};

/// `custos state …`
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Apply the PostgreSQL schema migrations the database lacks.
    Migrate {
        #[command(flatten)]
        #[allow(missing_docs)]
        state: StateArgs,
    },
    /// Check every record, the digest, the audit chain and the anchor; list every problem.
    Verify {
        #[command(flatten)]
        #[allow(missing_docs)]
        state: StateArgs,
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove finished requests (and their payloads) last changed before a date.
    Prune {
        #[command(flatten)]
        #[allow(missing_docs)]
        state: StateArgs,
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
        /// RFC 3339 time or date (`2026-11-01`, `2026-11-01T00:00:00Z`).
        #[arg(long, value_name = "DATE")]
        before: String,
        /// Who runs it (recorded in the audit chain).
        #[arg(long, default_value = "operator")]
        operator: String,
    },
    /// Accept a state that is behind the key store's anchor (audited), and re-anchor to it.
    AcceptRollback {
        #[command(flatten)]
        #[allow(missing_docs)]
        state: StateArgs,
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
        /// Who accepts it (recorded in the audit chain).
        #[arg(long)]
        operator: String,
    },
}

/// Where the state is: `--state DIR|URL` or `--config FILE`.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// The state: a sled directory, or a PostgreSQL URL `postgres://USER@HOST:PORT/DB` (never with
    /// a password in it).
    #[arg(long, value_name = "DIR|URL", required_unless_present = "config")]
    pub state: Option<String>,
    /// The server's configuration file: its `state_dir` or `[state]` say where the state is.
    #[arg(long, value_name = "FILE", conflicts_with = "state")]
    pub config: Option<PathBuf>,
    /// With a PostgreSQL URL: a file holding the password (else CUSTOS_STATE_PASSWORD).
    #[arg(long, value_name = "FILE")]
    pub state_password_file: Option<PathBuf>,
    /// With a PostgreSQL URL: the schema of Custos' tables.
    #[arg(long, value_name = "NAME")]
    pub state_schema: Option<String>,
}

/// Where a state is.
#[derive(Debug)]
pub enum StateLocation {
    /// A sled directory.
    Sled(PathBuf),
    /// A PostgreSQL database.
    Postgres(PgSettings),
}

impl StateLocation {
    /// Where a server configuration puts its state.
    pub fn of_config(config: &Config) -> Result<StateLocation, CliError> {
        match config.postgres_settings().map_err(CliError::operational)? {
            Some(settings) => Ok(StateLocation::Postgres(settings)),
            None => config
                .state_dir
                .clone()
                .map(StateLocation::Sled)
                .ok_or_else(|| CliError::usage("the configuration names no state_dir")),
        }
    }

    /// For messages.
    pub fn describe(&self) -> String {
        match self {
            StateLocation::Sled(dir) => dir.display().to_string(),
            StateLocation::Postgres(s) => s.url.clone(),
        }
    }

    /// Opens the engine (sled: the directory must hold a database; PostgreSQL: connected, schema
    /// version checked).
    pub fn open_engine(&self) -> Result<Arc<dyn Engine>, CliError> {
        self.open(false)
    }

    /// The same for a server: a sled database is created where there is none yet.
    pub fn open_engine_for_serving(&self) -> Result<Arc<dyn Engine>, CliError> {
        self.open(true)
    }

    fn open(&self, create: bool) -> Result<Arc<dyn Engine>, CliError> {
        match self {
            StateLocation::Sled(dir) => {
                if !create && !dir.join("conf").is_file() {
                    return Err(CliError::operational(format!(
                        "no state database at {}",
                        dir.display()
                    )));
                }
                let engine = crate::state::sled::SledEngine::open(dir).map_err(|e| {
                    CliError::operational(format!(
                        "cannot open the state database {} (is the server running?): {e}",
                        dir.display()
                    ))
                })?;
                Ok(Arc::new(engine))
            }
            StateLocation::Postgres(settings) => PgEngine::open(settings)
                .map(|e| Arc::new(e) as Arc<dyn Engine>)
                .map_err(|e| CliError::operational(format!("cannot open the state: {e}"))),
        }
    }
}

impl StateArgs {
    /// Where the arguments put the state.
    pub fn location(&self) -> Result<StateLocation, CliError> {
        if let Some(path) = &self.config {
            let config = Config::load(path).map_err(CliError::usage)?;
            return StateLocation::of_config(&config);
        }
        let Some(state) = &self.state else {
            return Err(CliError::usage("give --state DIR|URL or --config FILE"));
        };
        if state.starts_with("postgres://") || state.starts_with("postgresql://") {
            let mut settings = PgSettings::new(state.clone());
            settings.password = match &self.state_password_file {
                Some(file) => Some(read_secret_file(file)?),
                None => std::env::var(STATE_PASSWORD_ENV)
                    .ok()
                    .map(SecretString::new),
            };
            settings.schema = self.state_schema.clone();
            settings.driver_config().map_err(CliError::usage)?;
            return Ok(StateLocation::Postgres(settings));
        }
        if self.state_password_file.is_some() || self.state_schema.is_some() {
            return Err(CliError::usage(
                "--state-password-file and --state-schema go with a PostgreSQL URL in --state",
            ));
        }
        Ok(StateLocation::Sled(PathBuf::from(state)))
    }
}

/// Opens the state (sealed).
pub fn open_state(args: &StateArgs) -> Result<State, CliError> {
    Ok(State::new(args.location()?.open_engine()?))
}

/// Opens the state and unseals its records with the key store's key.
pub fn open_state_unsealed(
    args: &StateArgs,
    store: &StoreArgs,
) -> Result<(Unsealed, State), CliError> {
    let state = open_state(args)?;
    let unsealed = store.open()?.unsealed;
    state.set_auth(Some(StateAuth::new(unsealed.state_key())));
    Ok((unsealed, state))
}

/// `custos state migrate`.
fn migrate(args: &StateArgs) -> CliResult {
    match args.location()? {
        StateLocation::Sled(dir) => {
            println!(
                "{}: the sled engine has no schema to migrate",
                dir.display()
            );
            Ok(())
        }
        StateLocation::Postgres(settings) => {
            let report = PgEngine::migrate(&settings)
                .map_err(|e| CliError::operational(format!("migration failed: {e}")))?;
            for (version, description) in &report.applied {
                println!("applied migration {version}: {description}");
            }
            if report.applied.is_empty() {
                println!("schema up to date (version {})", report.to);
            } else {
                println!("schema at version {} (was {})", report.to, report.from);
            }
            Ok(())
        }
    }
}

fn parse_date(text: &str) -> Result<i64, CliError> {
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    parse_time(&full).map_err(|e| CliError::usage(format!("--before: {e}")))
}

/// Runs `custos state …`.
pub fn run(command: StateCommand) -> CliResult {
    match command {
        StateCommand::Migrate { state } => migrate(&state),
        StateCommand::Verify { state, store, json } => {
            let (unsealed, db) = open_state_unsealed(&state, &store)?;
            let anchor = unsealed
                .state_anchor()
                .map_err(CliError::operational)?
                .map(|a| (a.audit_sequence, a.audit_mac));
            let report = verify::verify(&db, &unsealed.audit_key(), anchor)
                .map_err(CliError::operational)?;
            let problems = report.problems();
            if json {
                let value = serde_json::json!({
                    "intact": report.is_intact(),
                    "records": report.counts.iter().map(|(t, n)| (t.to_string(), *n)).collect::<std::collections::BTreeMap<_, _>>(),
                    "bad_records": report.bad.iter().map(|b| serde_json::json!({"tree": b.tree, "key": b.key, "reason": b.reason})).collect::<Vec<_>>(),
                    "bad_count": report.bad_count,
                    "problems": problems,
                    "anchor": anchor.map(format_head),
                });
                println!("{value}");
            } else {
                for (tree, n) in &report.counts {
                    println!("{tree:<20} {n} records");
                }
                match anchor {
                    Some(head) => println!("anchored head        {}", format_head(head)),
                    None => println!("anchored head        none yet"),
                }
                for line in &problems {
                    println!("BAD  {line}");
                }
            }
            if report.is_intact() {
                if !json {
                    println!("state intact");
                }
                Ok(())
            } else {
                Err(CliError::operational(format!(
                    "state verification failed: {} problem(s)",
                    problems.len()
                )))
            }
        }
        StateCommand::Prune {
            state,
            store,
            before,
            operator,
        } => {
            let cutoff = parse_date(&before)?;
            let (unsealed, db) = open_state_unsealed(&state, &store)?;
            let now = crate::signing::now_unix();
            let report = prune::prune(
                &db,
                &unsealed.audit_key(),
                cutoff,
                &format!("local:{operator}"),
                "-",
                now,
            )
            .map_err(CliError::operational)?;
            anchor_to_head(&unsealed, &db)?;
            println!(
                "removed {} of {} requests last changed before {}",
                report.removed,
                report.examined,
                format_time(cutoff)
            );
            Ok(())
        }
        StateCommand::AcceptRollback {
            state,
            store,
            operator,
        } => {
            let (unsealed, db) = open_state_unsealed(&state, &store)?;
            let anchor = unsealed.state_anchor().map_err(CliError::operational)?;
            let head = audit::head_with_mac(&db).map_err(CliError::operational)?;
            let Some(anchor) = anchor else {
                println!("no anchor yet: nothing to accept");
                return Ok(());
            };
            let anchored = (anchor.audit_sequence, anchor.audit_mac);
            let why = match anchor::check(&db, anchored) {
                Ok(()) => {
                    println!(
                        "the state is not behind its anchor ({}): nothing to accept",
                        format_head(anchored)
                    );
                    return Ok(());
                }
                Err(e) => e.to_string(),
            };
            let entry = AuditEntry {
                at: crate::signing::now_unix(),
                event: "state.rollback_accepted".into(),
                principal: format!("local:{operator}"),
                policy_hash: "-".into(),
                detail: Some(format!(
                    "{why}; anchored head {}, state head {}; accepted by the operator",
                    format_head(anchored),
                    format_head(head)
                )),
                ..AuditEntry::default()
            };
            db.transact(|tx| audit::append_in(tx, &unsealed.audit_key(), &entry))
                .and_then(|_| db.flush())
                .map_err(CliError::operational)?;
            anchor_to_head(&unsealed, &db)?;
            println!(
                "accepted: the anchor moved from {} to this state's head",
                format_head(anchored)
            );
            Ok(())
        }
    }
}

/// Moves the key store's anchor to the state's current audit head.
pub fn anchor_to_head(unsealed: &Unsealed, db: &State) -> Result<(), CliError> {
    let (seq, mac) = audit::head_with_mac(db).map_err(CliError::operational)?;
    unsealed
        .set_state_anchor(&StateAnchor {
            audit_sequence: seq,
            audit_mac: mac,
            written_at: crate::signing::now_unix(),
        })
        .map_err(CliError::operational)
}
