//! TOML text -> validated [`Policy`], with every problem reported at its line and column.
//!
//! Syntax and shape errors (unknown field, wrong type) come from the TOML deserializer with its
//! span; meaning errors (unknown role, too many decimals, a rule that can never fire) are checked
//! against the spans the file structs keep. All meaning errors are collected, so one run of
//! `custos policy check` lists every problem, in file order.
//!
//! Files: `span` places problems in the text (line and column, the error types); validation
//! is `validate` (the policy as a whole: names, roles, amounts, shadowed rules), `assets`
//! (`[assets]` and `[address_books]`), `rule` (one `[[rules]]` entry), `schedule` (a rule's
//! schedule) and `approvers` (`[approver_keys]`, and quorums that signed votes can meet).

mod approvers;
mod assets;
mod rule;
mod schedule;
mod span;
mod validate;

pub use assets::{canonical_address, eth_address};
pub use span::{line_col, PolicyError, PolicyErrors};

use super::file::PolicyFile;
use super::model::Policy;

/// Parses and validates a policy.
pub fn parse_policy(text: &str) -> Result<Policy, PolicyErrors> {
    let raw: PolicyFile = toml::from_str(text).map_err(|e| span::toml_error(text, &e))?;
    validate::validate(text, raw)
}
