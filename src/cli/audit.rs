//! `custos audit verify` and `custos audit tail`: the audit chain in the state directory.
//!
//! `verify` needs the key store passphrase (the chain is keyed with the store's audit key) and
//! walks every record: "audit chain intact: N records", or the first break ("record 17: mac
//! mismatch", "record 17 missing", "record 17: prev does not match record 16") and exit 1.
//! `tail` prints the newest records and needs no key (they hold nothing secret; `verify` is what
//! authenticates them). Both open the state (`--state DIR|URL` or `--config FILE`, see
//! `super::state`): a sled database only while its server is stopped, PostgreSQL at any time.
//! `verify --expect-head SEQ:MAC` also checks that the chain contains a head an operator (or the
//! broadcaster, from an outbox entry) kept: a truncated or rewritten chain fails it.

use clap::Subcommand;

use super::common::StoreArgs;
use super::state::{open_state, open_state_unsealed, StateArgs};
use super::{CliError, CliResult};
use crate::policy::eval::format_time;
use crate::state::anchor::{self, format_head, parse_head};
use crate::state::audit::{self, VerifyOutcome};

/// `custos audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the whole chain with the store's audit key; report the first break.
    Verify {
        #[command(flatten)]
        #[allow(missing_docs)]
        state: StateArgs,
        #[command(flatten)]
        #[allow(missing_docs)]
        store: StoreArgs,
        /// A head an operator kept (`SEQ:MAC`, as the outbox entries and `verify` print it): the
        /// chain must contain it, or it was truncated or rewritten since.
        #[arg(long, value_name = "SEQ:MAC")]
        expect_head: Option<String>,
    },
    /// Print the newest records (not authenticated: run `verify` for that).
    Tail {
        #[command(flatten)]
        #[allow(missing_docs)]
        state: StateArgs,
        /// How many records.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `custos audit …`.
pub fn run(command: AuditCommand) -> CliResult {
    match command {
        AuditCommand::Verify {
            state,
            store,
            expect_head,
        } => {
            let expected = expect_head
                .as_deref()
                .map(parse_head)
                .transpose()
                .map_err(|e| CliError::usage(format!("--expect-head: {e}")))?;
            let (unsealed, db) = open_state_unsealed(&state, &store)?;
            let key = unsealed.audit_key();
            match audit::verify(&db, &key).map_err(CliError::operational)? {
                VerifyOutcome::Intact { records } => {
                    if let Some(head) = expected {
                        anchor::check(&db, head).map_err(|e| {
                            CliError::operational(format!(
                                "audit chain does not contain the expected head {}: {e}",
                                format_head(head)
                            ))
                        })?;
                    }
                    let head = audit::head_with_mac(&db).map_err(CliError::operational)?;
                    println!(
                        "audit chain intact: {records} records, head {}",
                        format_head(head)
                    );
                    Ok(())
                }
                VerifyOutcome::Broken { message, .. } => Err(CliError::operational(format!(
                    "audit chain broken: {message}"
                ))),
            }
        }
        AuditCommand::Tail { state, lines, json } => {
            let db = open_state(&state)?;
            for r in audit::tail(&db, lines).map_err(CliError::operational)? {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string(&r).map_err(CliError::operational)?
                    );
                    continue;
                }
                let mut line = format!(
                    "{:>6} {} {} by {}",
                    r.seq,
                    format_time(r.at),
                    r.event,
                    r.principal
                );
                let fields = [
                    ("request", &r.request_id),
                    ("wallet", &r.wallet),
                    ("decision", &r.decision),
                    ("rule", &r.rule),
                    ("code", &r.code),
                    ("tx", &r.tx_id),
                    ("intent", &r.intent),
                    ("detail", &r.detail),
                ];
                for (name, value) in fields {
                    if let Some(v) = value {
                        line.push_str(&format!(" {name}={v:?}"));
                    }
                }
                line.push_str(&format!(" policy={}", r.policy_hash));
                println!("{line}");
            }
            Ok(())
        }
    }
}
