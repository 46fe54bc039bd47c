//! What a checked PSBT really does, as the chain-neutral [`Intent`] the policy engine sees.
//!
//! - An output is change only if a key origin of ours names a path inside the wallet's account and
//!   the script re-derived there is the output's script. Anything else — including claimed change
//!   that does not verify — is an external destination, so the intent never understates what is
//!   sent.
//! - Destinations are addresses as rust-bitcoin prints them for the wallet's network. A zero-value
//!   OP_RETURN output is listed as a destination `OP_RETURN:<script hex>` with amount 0 (visible to
//!   approvers, moves no value); an OP_RETURN with value would burn it and is refused; any other
//!   script without an address form is refused.
//! - Fee is inputs minus outputs, from the checked previous outputs. The fee rate is the fee over
//!   the vsize of the finalised transaction, see [`super::weight`].

use bitcoin::{Address, Amount as BtcAmount, TxOut};

use super::error::PsbtError;
use super::options::SignOptions;
use super::psbt::{derive_at, Checked};
use super::weight;
use crate::amount::Amount;
use crate::intent::{ActionKind, Asset, Destination, Intent};
use crate::keys::Chain;
use crate::wallet::Wallet;

/// Builds the intent of a checked PSBT and applies the fee caps.
pub(crate) fn build(
    wallet: &Wallet,
    checked: &Checked,
    options: &SignOptions,
) -> Result<Intent, PsbtError> {
    let network = super::psbt::bitcoin_network(wallet)?;
    let tx = &checked.psbt.unsigned_tx;

    let mut total_in = BtcAmount::ZERO;
    let mut foreign = BtcAmount::ZERO;
    for (i, prevout) in checked.prevouts.iter().enumerate() {
        let location = || format!("input {i}");
        check_range(prevout.value, location)?;
        total_in = add(total_in, prevout.value, || "inputs total".into())?;
        if checked.owned[i].is_none() {
            foreign = add(foreign, prevout.value, || "foreign inputs total".into())?;
        }
    }

    let mut total_out = BtcAmount::ZERO;
    let mut sent = BtcAmount::ZERO;
    let mut destinations = Vec::new();
    let mut change = Vec::new();
    for (o, output) in tx.output.iter().enumerate() {
        check_range(output.value, || format!("output {o}"))?;
        total_out = add(total_out, output.value, || "outputs total".into())?;
        let address = output_address(o, output, network)?;
        let entry = Destination {
            address,
            amount: Amount::from(output.value.to_sat()),
        };
        if is_our_change(wallet, &checked.psbt.outputs[o], output)? {
            change.push(entry);
        } else {
            sent = add(sent, output.value, || "destinations total".into())?;
            destinations.push(entry);
        }
    }

    let fee = total_in
        .checked_sub(total_out)
        .ok_or(PsbtError::OutputsExceedInputs {
            inputs: total_in.to_sat(),
            outputs: total_out.to_sat(),
        })?;
    if fee.to_sat() > options.max_fee_sat {
        return Err(PsbtError::AbsurdFee {
            fee: fee.to_sat(),
            max: options.max_fee_sat,
        });
    }
    let vsize = weight::finalised(checked).to_vbytes_ceil().max(1);
    let rate_sat_per_kvb = fee.to_sat().saturating_mul(1000) / vsize;
    if rate_sat_per_kvb > options.max_fee_rate_sat_per_vb.saturating_mul(1000) {
        return Err(PsbtError::AbsurdFeeRate {
            rate_sat_per_kvb,
            max_sat_per_vb: options.max_fee_rate_sat_per_vb,
        });
    }

    let (symbol, decimals) = wallet.network().native_asset();
    Ok(Intent {
        destinations,
        amount: Amount::from(sent.to_sat()),
        fee: Amount::from(fee.to_sat()),
        fee_rate_sat_per_kvb: Some(rate_sat_per_kvb),
        change,
        foreign_input_value: Amount::from(foreign.to_sat()),
        ..Intent::new(
            wallet.name.clone(),
            Chain::Bitcoin,
            wallet.network().name(),
            ActionKind::Transfer,
            Asset::native(symbol, decimals),
        )
    })
}

/// The address text of output `o`, refusing dust, burnt value and scripts without an address.
fn output_address(
    o: usize,
    output: &TxOut,
    network: bitcoin::Network,
) -> Result<String, PsbtError> {
    let script = &output.script_pubkey;
    if script.is_op_return() {
        if output.value != BtcAmount::ZERO {
            return Err(PsbtError::BurntValue {
                output: o,
                value: output.value.to_sat(),
            });
        }
        return Ok(format!("OP_RETURN:{}", script.to_hex_string()));
    }
    let min = script.minimal_non_dust();
    if output.value < min {
        return Err(PsbtError::Dust {
            output: o,
            value: output.value.to_sat(),
            min: min.to_sat(),
        });
    }
    Address::from_script(script, network)
        .map(|a| a.to_string())
        .map_err(|_| PsbtError::UnknownOutputScript {
            output: o,
            script: script.to_hex_string(),
        })
}

/// Whether an output verifiably pays this wallet: some key origin of ours names a path in the
/// account whose script is the output's. Claims that do not verify make it a destination.
fn is_our_change(
    wallet: &Wallet,
    meta: &bitcoin::psbt::Output,
    output: &TxOut,
) -> Result<bool, PsbtError> {
    let fingerprint = wallet.account.master_fingerprint;
    let paths = meta
        .bip32_derivation
        .values()
        .chain(meta.tap_key_origins.values().map(|(_, source)| source))
        .filter(|(f, _)| *f == fingerprint)
        .map(|(_, path)| path);
    for path in paths {
        if let Some((_, _, script)) = derive_at(wallet, path)? {
            if script == output.script_pubkey {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

fn check_range(value: BtcAmount, location: impl Fn() -> String) -> Result<(), PsbtError> {
    if value > BtcAmount::MAX_MONEY {
        return Err(PsbtError::ValueOutOfRange {
            location: location(),
            value: value.to_sat(),
        });
    }
    Ok(())
}

fn add(a: BtcAmount, b: BtcAmount, location: impl Fn() -> String) -> Result<BtcAmount, PsbtError> {
    let sum = a.checked_add(b).ok_or_else(|| PsbtError::ValueOutOfRange {
        location: location(),
        value: u64::MAX,
    })?;
    check_range(sum, location)?;
    Ok(sum)
}
