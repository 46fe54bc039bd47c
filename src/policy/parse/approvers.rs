//! `[approver_keys]`: each approver's public key(s), next to its principal, and the check that
//! every approval quorum can be met with signed votes.
//!
//! ```toml
//! [approver_keys]
//! "spiffe://exchange.example/officers/alice" = "ed25519:3d40…"
//! "spiffe://exchange.example/officers/bob" = ["p256:02a1…", "ed25519:77c2…"]   # two devices
//! ```
//!
//! Refused, each at its line: a key that does not parse (the parser says why); a principal that
//! is a prefix pattern, a host (`local:`) principal or holds no role; a key enrolled twice (one
//! key, one approver: otherwise two principals' votes could be one person's); and — unless
//! `[policy] allow_unsigned_votes = true` — a `require_approval` rule whose quorum cannot be
//! met because fewer holders of its roles than the quorum have an enrolled key.

use std::collections::{BTreeMap, BTreeSet};

use toml::Spanned;

use super::validate::Validator;
use crate::governance::keys::PublicKey;
use crate::policy::eval::principal_matches;
use crate::policy::file::RuleFile;

impl Validator<'_> {
    /// Validates `[approver_keys]` against the roles; returns principal -> canonical key texts.
    pub(super) fn approver_keys(
        &mut self,
        raw: &BTreeMap<Spanned<String>, Spanned<toml::Value>>,
        roles: &BTreeMap<String, BTreeSet<String>>,
    ) -> BTreeMap<String, BTreeSet<String>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut owner: BTreeMap<String, (String, usize)> = BTreeMap::new();
        for (principal, value) in raw {
            let name = principal.get_ref().trim();
            if name.is_empty() || name.contains('*') {
                self.err(
                    principal.span(),
                    format!("'{name}': a key is enrolled for one exact principal, not a pattern"),
                );
                continue;
            }
            // Host principals (`local:sighup`) are actions of the host, never a person.
            if name.starts_with("local:") {
                self.err(
                    principal.span(),
                    format!("'{name}' is a host principal; it never votes"),
                );
                continue;
            }
            if !roles
                .values()
                .any(|members| members.iter().any(|m| principal_matches(m, name)))
            {
                self.err(
                    principal.span(),
                    format!(
                        "'{name}' has an enrolled key but holds no role under [roles]: a typo?"
                    ),
                );
            }
            let texts: Vec<String> = match value.get_ref() {
                toml::Value::String(s) => vec![s.clone()],
                toml::Value::Array(items) if !items.is_empty() => {
                    let strings: Option<Vec<String>> = items
                        .iter()
                        .map(|i| i.as_str().map(str::to_owned))
                        .collect();
                    match strings {
                        Some(s) => s,
                        None => {
                            self.err(value.span(), "expected key texts such as \"ed25519:…\"");
                            continue;
                        }
                    }
                }
                _ => {
                    self.err(
                        value.span(),
                        format!(
                            "the key of '{name}' is written \"ed25519:<hex>\" or \"p256:<hex>\", or a list of them"
                        ),
                    );
                    continue;
                }
            };
            let line = self.line_of(principal.span());
            for text in texts {
                match PublicKey::parse(&text) {
                    Err(e) => self.err(value.span(), format!("key of '{name}': {e}")),
                    Ok(key) => {
                        let canonical = key.to_text();
                        if let Some((other, other_line)) = owner.get(&canonical) {
                            self.err(
                                value.span(),
                                format!(
                                    "key {} is enrolled for '{other}' (line {other_line}) and for '{name}': one key, one approver",
                                    key.fingerprint()
                                ),
                            );
                            continue;
                        }
                        owner.insert(canonical.clone(), (name.to_owned(), line));
                        out.entry(name.to_owned()).or_default().insert(canonical);
                    }
                }
            }
        }
        out
    }

    /// Every `require_approval` quorum must be reachable with signed votes: at least `quorum`
    /// principals holding one of its roles have an enrolled key.
    pub(super) fn signed_quorums(
        &mut self,
        rules: &[RuleFile],
        roles: &BTreeMap<String, BTreeSet<String>>,
        keys: &BTreeMap<String, BTreeSet<String>>,
    ) {
        for rule in rules {
            let Some(approval) = &rule.approval else {
                continue;
            };
            let a = approval.get_ref();
            let wanted: BTreeSet<&str> = a.roles.iter().map(|r| r.get_ref().as_str()).collect();
            let keyed: Vec<&str> = keys
                .keys()
                .filter(|p| {
                    roles.iter().any(|(role, members)| {
                        wanted.contains(role.as_str())
                            && members.iter().any(|m| principal_matches(m, p))
                    })
                })
                .map(String::as_str)
                .collect();
            let need = *a.quorum.get_ref() as usize;
            if keyed.len() < need {
                self.err(
                    approval.span(),
                    format!(
                        "rule '{}': a quorum of {need} from role(s) {} cannot be met with signed votes: {} of their holders have an enrolled key{}; enrol keys under [approver_keys], or set [policy] allow_unsigned_votes = true (development only: unsigned votes can be forged by whoever controls the server or its state database)",
                        rule.name.get_ref(),
                        wanted.iter().copied().collect::<Vec<_>>().join(", "),
                        keyed.len(),
                        if keyed.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", keyed.join(", "))
                        }
                    ),
                );
            }
        }
    }
}
