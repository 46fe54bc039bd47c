//! What a Bitcoin signing request may do: safe by default, every weakening named `allow_*` with
//! the attack it lets through (BDK's `SignOptions` habit).

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
    /// Require the full previous transaction (`non_witness_utxo`) for segwit v0 inputs we sign, not
    /// only `witness_utxo`. Default false: BIP174 lets segwit inputs carry only `witness_utxo`,
    /// and the issue this module implements accepts it (Bitcoin Core and BDK include both anyway).
    ///
    /// Attack it closes: a BIP143 signature commits to its own input's amount only, so a requester
    /// can obtain signatures over the same transaction in two requests that each understate a
    /// different input, then combine them into a transaction paying a larger fee than either
    /// request showed (CVE-2020-14199). Taproot signatures commit to every amount and are immune.
    pub require_non_witness_utxo: bool,
}

impl Default for SignOptions {
    fn default() -> Self {
        SignOptions {
            max_fee_sat: 10_000_000,
            max_fee_rate_sat_per_vb: 1_000,
            allow_all_sighashes: false,
            require_non_witness_utxo: false,
        }
    }
}
