//! What a Bitcoin signing request may do: safe by default, every weakening named `allow_*` with
//! the attack it lets through (BDK's `SignOptions` habit).
//!
//! `custos serve` reads these from the `[bitcoin]` section of `custos.toml`
//! ([`crate::config::BitcoinConfig`]); [`SignOptions::weakenings`] lists what an operator set
//! below the defaults, which the server logs and audits at start.

/// Options for [`super::decode`] and [`super::sign`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignOptions {
    /// Refuse a PSBT whose fee is above this many satoshis. Default 10 000 000 (0.1 BTC, Bitcoin
    /// Core's `-maxtxfee`).
    ///
    /// Attack: a requester (or a tampered PSBT) leaves out the change output, so the difference
    /// between inputs and outputs goes to the miner. Set `u64::MAX` to disable.
    pub max_fee_sat: u64,
    /// Refuse a PSBT whose fee rate (fee / vsize of the finalised transaction) is above this many
    /// satoshi per virtual byte. Default 1 000 sat/vB: several times the highest rates the
    /// mempool has sustained, yet it stops a small payment that burns a large input as fee long
    /// before `max_fee_sat` does. Set `u64::MAX` to disable.
    ///
    /// Attack: same as `max_fee_sat`, for amounts below the absolute cap. There is deliberately no
    /// cap relative to the amount sent: consolidations send nothing and still pay a fee.
    pub max_fee_rate_sat_per_vb: u64,
    /// Sign inputs whose PSBT sighash type is not SIGHASH_ALL (or SIGHASH_DEFAULT for taproot):
    /// NONE, SINGLE and the ANYONECANPAY variants. Default false.
    ///
    /// Attack: a SIGHASH_NONE signature commits to no output, so whoever holds it can send the
    /// coins anywhere; SINGLE and ANYONECANPAY let others change the rest of the transaction. With
    /// them, the intent the policy approved no longer describes what the signature allows.
    pub allow_all_sighashes: bool,
    /// Sign segwit v0 inputs (P2WPKH, P2SH-P2WPKH) that carry only `witness_utxo`, without the
    /// full previous transaction (`non_witness_utxo`). Default false: every segwit v0 input the
    /// wallet signs must carry the transaction it spends, whose txid must be the outpoint's and
    /// whose output must equal `witness_utxo` when both are given.
    ///
    /// Attack it lets through (CVE-2020-14199): a BIP143 signature commits to its own input's
    /// amount only, and `witness_utxo` is whatever the requester wrote. Two requests over the same
    /// transaction, each understating a different input, each show a small fee; the signature
    /// of the truthful input of each request combines into one valid transaction that pays the
    /// difference to the miner, far above any fee cap or policy limit. Taproot (BIP341)
    /// signatures commit to every input's amount and script, so P2TR inputs never need the full
    /// transaction; P2PKH (legacy) inputs always do.
    pub allow_witness_utxo_only: bool,
}

impl Default for SignOptions {
    fn default() -> Self {
        SignOptions {
            max_fee_sat: 10_000_000,
            max_fee_rate_sat_per_vb: 1_000,
            allow_all_sighashes: false,
            allow_witness_utxo_only: false,
        }
    }
}

/// One option set below its safe default, with the attack that this lets through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Weakening {
    /// The option's name as `custos.toml` spells it (`bitcoin.allow_witness_utxo_only`).
    pub option: &'static str,
    /// The value in force, and the default, as text.
    pub value: String,
    /// What it lets through.
    pub risk: &'static str,
}

impl std::fmt::Display for Weakening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {} ({})", self.option, self.value, self.risk)
    }
}

impl SignOptions {
    /// Every option weaker than its default: `allow_*` switched on, a fee cap raised. Empty for
    /// the defaults (or stricter settings).
    pub fn weakenings(&self) -> Vec<Weakening> {
        let defaults = SignOptions::default();
        let mut out = Vec::new();
        if self.allow_witness_utxo_only {
            out.push(Weakening {
                option: "bitcoin.allow_witness_utxo_only",
                value: "true (default false)".into(),
                risk: "segwit v0 inputs signed without their previous transaction: split requests can burn any amount as fee (CVE-2020-14199)",
            });
        }
        if self.allow_all_sighashes {
            out.push(Weakening {
                option: "bitcoin.allow_all_sighashes",
                value: "true (default false)".into(),
                risk: "SIGHASH_NONE/SINGLE/ANYONECANPAY signatures let others change what is paid",
            });
        }
        if self.max_fee_sat > defaults.max_fee_sat {
            out.push(Weakening {
                option: "bitcoin.max_fee_sat",
                value: format!("{} (default {})", self.max_fee_sat, defaults.max_fee_sat),
                risk: "a larger fee may be paid to miners by one transaction",
            });
        }
        if self.max_fee_rate_sat_per_vb > defaults.max_fee_rate_sat_per_vb {
            out.push(Weakening {
                option: "bitcoin.max_fee_rate_sat_per_vb",
                value: format!(
                    "{} (default {})",
                    self.max_fee_rate_sat_per_vb, defaults.max_fee_rate_sat_per_vb
                ),
                risk: "a higher fee rate may be paid to miners",
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_safe_and_weakenings_are_named() {
        assert!(SignOptions::default().weakenings().is_empty());
        let stricter = SignOptions {
            max_fee_sat: 1_000,
            max_fee_rate_sat_per_vb: 10,
            ..SignOptions::default()
        };
        assert!(stricter.weakenings().is_empty());
        let loose = SignOptions {
            max_fee_sat: 20_000_000,
            max_fee_rate_sat_per_vb: 1_001,
            allow_all_sighashes: true,
            allow_witness_utxo_only: true,
        };
        let named: Vec<&str> = loose.weakenings().iter().map(|w| w.option).collect();
        assert_eq!(
            named,
            [
                "bitcoin.allow_witness_utxo_only",
                "bitcoin.allow_all_sighashes",
                "bitcoin.max_fee_sat",
                "bitcoin.max_fee_rate_sat_per_vb"
            ]
        );
        let text = loose.weakenings()[0].to_string();
        assert!(text.contains("CVE-2020-14199"), "{text}");
    }
}
