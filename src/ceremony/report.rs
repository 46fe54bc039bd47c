//! The ceremony transcript: the verified log as text for custodians to read and sign off, or as
//! JSON for tools. Only what the log holds (public facts) is printed.

use serde_json::json;

use super::event::{CeremonyEvent, ShareSetFact, UnsealedBy, WalletFact};
use crate::keystore::{LogCheck, StoredEntry};
use crate::policy::eval::format_time;
use crate::shares::ShareSetInfo;

/// What a transcript is made of.
#[derive(Clone, Debug)]
pub struct Transcript {
    /// The store id, hex.
    pub store_id: String,
    /// Where the store is.
    pub store_dir: String,
    /// The chain check.
    pub check: LogCheck,
    /// The entries, in order.
    pub entries: Vec<StoredEntry>,
    /// The store's current share set, for the sign-off lines.
    pub shares: Option<ShareSetInfo>,
    /// When it is printed (Unix seconds).
    pub printed_at: i64,
}

impl Transcript {
    /// The transcript as text.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line("CUSTOS KEY CEREMONY TRANSCRIPT".into());
        line(format!(
            "key store   {}  ({})",
            self.store_id, self.store_dir
        ));
        line(format!("printed     {}", format_time(self.printed_at)));
        match &self.check {
            LogCheck::Intact { entries, head_mac } => {
                line(format!(
                    "chain       INTACT: {entries} entries, each chained to the one before by HMAC-SHA256 under a key derived from the store's data key"
                ));
                if *entries > 0 {
                    line(format!("head        entry {entries}, mac {head_mac}"));
                    line("            Write the head on the sign-off sheet: every later transcript must contain".into());
                    line(format!(
                        "            entry {entries} with this mac, or the log was rolled back."
                    ));
                }
            }
            LogCheck::Broken { seq, message } => {
                line(format!(
                    "chain       BROKEN at entry {seq}: {message}. Entries from {seq} on cannot be trusted."
                ));
            }
        }
        line(String::new());
        for stored in &self.entries {
            let e = &stored.entry;
            let name = e
                .event
                .get("event")
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_uppercase();
            line(format!(
                "#{:<3} {}  {}  by {}",
                e.seq,
                format_time(e.at),
                name,
                e.operator
            ));
            match serde_json::from_value::<CeremonyEvent>(e.event.clone()) {
                Ok(event) => {
                    for l in describe(&event) {
                        line(format!("      {l}"));
                    }
                }
                Err(_) => line(format!("      {}", e.event)),
            }
            line(format!("      mac {}", stored.mac));
            line(String::new());
        }
        line("SIGN-OFF".into());
        line(
            "I have read this transcript and it is what happened at the ceremonies I attended."
                .into(),
        );
        line(String::new());
        if let Some(set) = &self.shares {
            for i in 1..=set.count {
                line(format!(
                    "  custodian of share {i} (set {}): name ____________________  signature ____________________  date __________",
                    hex::encode(set.set_id)
                ));
            }
        }
        let mut operators: Vec<&str> = self
            .entries
            .iter()
            .map(|e| e.entry.operator.as_str())
            .collect();
        operators.sort_unstable();
        operators.dedup();
        for op in operators {
            line(format!(
                "  operator {op}: signature ____________________  date __________"
            ));
        }
        line(
            "  auditor: name ____________________  signature ____________________  date __________"
                .into(),
        );
        out
    }

    /// The transcript as one JSON document.
    pub fn to_json(&self) -> serde_json::Value {
        let chain = match &self.check {
            LogCheck::Intact { entries, head_mac } => {
                json!({ "status": "intact", "entries": entries, "head_mac": head_mac })
            }
            LogCheck::Broken { seq, message } => {
                json!({ "status": "broken", "at_entry": seq, "reason": message })
            }
        };
        json!({
            "store_id": self.store_id,
            "store_dir": self.store_dir,
            "printed_at": self.printed_at,
            "chain": chain,
            "entries": self.entries.iter().map(|s| json!({
                "seq": s.entry.seq,
                "at": s.entry.at,
                "operator": s.entry.operator,
                "event": s.entry.event,
                "mac": s.mac,
            })).collect::<Vec<_>>(),
            "share_set": self.shares.as_ref().map(|s| json!({
                "set": hex::encode(s.set_id),
                "threshold": s.threshold,
                "count": s.count,
            })),
        })
    }
}

fn set_text(s: &ShareSetFact) -> String {
    let mut text = format!("share set {}: {} of {} shares", s.set, s.threshold, s.count);
    if let Some(d) = &s.delivered {
        text.push_str(&format!(", delivered {d}"));
    }
    text
}

fn wallet_lines(w: &WalletFact) -> Vec<String> {
    vec![
        format!(
            "wallet {}: {} {} {}, seed {}",
            w.name, w.chain, w.network, w.path, w.seed
        ),
        format!("  xpub {}", w.xpub),
        format!("  first address {}", w.first_address),
    ]
}

fn by(u: &UnsealedBy) -> String {
    format!("unsealed with {}", u.describe())
}

/// The lines that describe one event.
pub fn describe(event: &CeremonyEvent) -> Vec<String> {
    let mut out = Vec::new();
    match event {
        CeremonyEvent::Init {
            store,
            seed_source,
            seed,
            unsealers,
            operator_entropy,
        } => {
            out.push(format!("created key store {store}"));
            let mut s = format!("seed {} ({seed_source}", seed.fingerprint);
            if let Some(w) = seed.words {
                s.push_str(&format!(", {w} words"));
            }
            if seed.bip39_passphrase == Some(true) {
                s.push_str(", with a BIP39 passphrase");
            }
            s.push(')');
            out.push(s);
            match operator_entropy {
                Some(e) => out.push(match e.dice_rolls {
                    Some(n) => format!(
                        "operator entropy mixed into the OS randomness: {n} dice rolls (about {} bits)",
                        n * super::entropy::MILLIBITS_PER_ROLL / 1000
                    ),
                    None => format!(
                        "operator entropy mixed into the OS randomness: {} characters typed",
                        e.characters
                    ),
                }),
                None => out.push("entropy: the operating system's generator".into()),
            }
            if let Some(k) = &unsealers.passphrase {
                out.push(format!("unsealed by a passphrase ({k})"));
            }
            if let Some(s) = &unsealers.shares {
                out.push(format!("unsealed by {}", set_text(s)));
            }
        }
        CeremonyEvent::Restore {
            store,
            backup_sha256,
            backup_created_at,
            seeds,
            wallets,
            unsealed_by,
        } => {
            out.push(format!(
                "restored key store {store} from a backup exported {} (sha256 {backup_sha256}), verified",
                format_time(*backup_created_at)
            ));
            out.push(by(unsealed_by));
            for s in seeds {
                out.push(format!("seed {}", s.fingerprint));
            }
            for w in wallets {
                out.extend(wallet_lines(w));
            }
        }
        CeremonyEvent::SharesAdd {
            share_set,
            passphrase_kept,
            unsealed_by,
        } => {
            out.push(format!("new {}", set_text(share_set)));
            out.push(if *passphrase_kept {
                "the passphrase still unseals the store too".into()
            } else {
                "the passphrase was removed: only shares unseal the store".into()
            });
            out.push(by(unsealed_by));
        }
        CeremonyEvent::SharesRotate {
            retired,
            share_set,
            unsealed_by,
        } => {
            out.push(format!(
                "share set {} ({} of {}) RETIRED: its shares no longer work",
                retired.set, retired.threshold, retired.count
            ));
            out.push(format!("new {}", set_text(share_set)));
            out.push(by(unsealed_by));
        }
        CeremonyEvent::PassphraseRemove { unsealed_by } => {
            out.push("the passphrase was removed: only shares unseal the store".into());
            out.push(by(unsealed_by));
        }
        CeremonyEvent::PassphraseChange {
            kdf,
            replaced,
            unsealed_by,
        } => {
            out.push(if *replaced {
                format!("passphrase changed ({kdf})")
            } else {
                format!("passphrase set ({kdf}): it now unseals the store too")
            });
            out.push(by(unsealed_by));
        }
        CeremonyEvent::Unseal {
            method,
            place,
            contributions,
            share_set,
            seeds,
            wallets,
        } => {
            out.push(format!(
                "unsealed by {method} on the {place}: {seeds} seed(s), {wallets} wallet(s) loaded"
            ));
            if let Some(set) = share_set {
                out.push(format!("share set {set}"));
            }
            for c in contributions {
                out.push(format!(
                    "share {} given by {} at {}",
                    c.index,
                    c.principal,
                    format_time(c.at)
                ));
            }
        }
        CeremonyEvent::Seal { place } => out.push(format!("sealed on the {place}")),
        CeremonyEvent::WalletCreate {
            wallet,
            place,
            unsealed_by,
        } => {
            out.extend(wallet_lines(wallet));
            out.push(format!("created on the {place}"));
            if let Some(u) = unsealed_by {
                out.push(by(u));
            }
        }
        CeremonyEvent::HsmImport(import) => out.extend(import.lines()),
        CeremonyEvent::HsmKeygen(keygen) => out.extend(keygen.lines()),
        CeremonyEvent::HsmUnsealSlotAdd(slot) => out.extend(slot.lines(false)),
        CeremonyEvent::HsmUnsealSlotRemove(slot) => out.extend(slot.lines(true)),
        CeremonyEvent::BackupExport {
            file,
            sha256,
            records,
            seeds,
            wallets,
            unsealed_by,
        } => {
            out.push(format!("backup written to {file}"));
            out.push(format!("sha256 {sha256}, {records} records"));
            out.push(format!(
                "seeds {}; wallets {}",
                seeds.join(", "),
                if wallets.is_empty() {
                    "none".into()
                } else {
                    wallets.join(", ")
                }
            ));
            out.push(by(unsealed_by));
        }
        CeremonyEvent::BackupVerify {
            evidence,
            backup_sha256,
            seeds,
            wallets,
            unsealed_by,
        } => {
            out.push(format!(
                "verified: the {evidence} restores exactly seed(s) {} and {} wallet(s)",
                seeds.join(", "),
                wallets.len()
            ));
            if let Some(h) = backup_sha256 {
                out.push(format!("backup sha256 {h}"));
            }
            for w in wallets {
                out.extend(wallet_lines(w));
            }
            out.push(by(unsealed_by));
        }
    }
    out
}
