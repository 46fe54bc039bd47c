//! `custos state verify | prune | accept-rollback`: the state database, checked and kept, offline
//! (the server must not be running: the database is locked while it is).
//!
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

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::common::StoreArgs;
use super::{CliError, CliResult};
use crate::keystore::{StateAnchor, Unsealed};
use crate::policy::eval::{format_time, parse_time};
use crate::state::anchor::{self, format_head};
use crate::state::audit::{self, AuditEntry};
use crate::state::auth::StateAuth;
use crate::state::{prune, verify, State};

/// `custos state …`
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Check every record, the digest, the audit chain and the anchor; list every problem.
    Verify {
        /// The state directory of the signer.
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Remove finished requests (and their payloads) last changed before a date.
    Prune {
        /// The state directory of the signer.
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
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
        /// The state directory of the signer.
        #[arg(long, value_name = "DIR")]
        state: PathBuf,
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
        /// Who accepts it (recorded in the audit chain).
        #[arg(long)]
        operator: String,
    },
}

/// Opens the state database at `dir` (sealed).
pub fn open_state(dir: &Path) -> Result<State, CliError> {
    if !dir.join("conf").is_file() {
        return Err(CliError::operational(format!(
            "no state database at {}",
            dir.display()
        )));
    }
    State::open_sled(dir).map_err(|e| {
        CliError::operational(format!(
            "cannot open the state database {} (is the server running?): {e}",
            dir.display()
        ))
    })
}

/// Opens the state database and unseals its records with the key store's key.
pub fn open_state_unsealed(dir: &Path, store: &StoreArgs) -> Result<(Unsealed, State), CliError> {
    let state = open_state(dir)?;
    let unsealed = store.open()?.unsealed;
    state.set_auth(Some(StateAuth::new(unsealed.state_key())));
    Ok((unsealed, state))
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
