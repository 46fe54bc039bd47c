//! `custos hsm unseal-slot add|remove`: the store's HSM unseal slot (an AES-256 key in the token
//! that seals the store's data key, so a server restarted beside its HSM unseals itself).
//!
//! Both unseal the store with its passphrase or a threshold of shares, and write their ceremony
//! log entry (token, module, the key's label, how the store was unsealed, who ran it) in the same
//! key-store transaction as the slot record they add or remove. Removal writes the record and
//! entry first, then destroys the key in the token (unless `--keep-key`).

use super::common::keystore_error;
use super::hsm::CeremonyArgs;
use super::unsealer::Opened;
use super::CliResult;
use crate::ceremony::{self, CeremonyEvent, HsmUnsealSlot};

/// `custos hsm unseal-slot add`.
pub fn add(args: &CeremonyArgs) -> CliResult {
    let ceremony = args.begin()?;
    let Opened { unsealed, by } = ceremony.unseal(args)?;
    let token = ceremony.backend.token();
    let label = unsealed
        .add_pkcs11_slot_recorded(token, |label| {
            ceremony::draft(
                &ceremony.operator,
                &CeremonyEvent::HsmUnsealSlotAdd(HsmUnsealSlot {
                    token: ceremony.token_fact(),
                    module: ceremony.module_fact(),
                    key_label: label.to_owned(),
                    key_destroyed: None,
                    unsealed_by: by.clone(),
                }),
            )
        })
        .map_err(keystore_error)?;
    println!(
        "unseal slot added: the store's data key is sealed by '{label}' in {}",
        token.name()
    );
    if !ceremony.hsm.auto_unseal {
        println!("set auto_unseal = true in [hsm] for the server to unseal itself at start");
    }
    Ok(())
}

/// `custos hsm unseal-slot remove [--keep-key]`.
pub fn remove(args: &CeremonyArgs, keep_key: bool) -> CliResult {
    let ceremony = args.begin()?;
    let Opened { unsealed, by } = ceremony.unseal(args)?;
    let token = (!keep_key).then(|| ceremony.backend.token());
    let removed = unsealed
        .remove_pkcs11_slot_recorded(token, |slot| {
            ceremony::draft(
                &ceremony.operator,
                &CeremonyEvent::HsmUnsealSlotRemove(HsmUnsealSlot {
                    token: ceremony.token_fact(),
                    module: ceremony.module_fact(),
                    key_label: slot.key_label.clone(),
                    key_destroyed: Some(!keep_key),
                    unsealed_by: by.clone(),
                }),
            )
        })
        .map_err(keystore_error)?;
    if removed {
        println!(
            "unseal slot removed{}",
            if keep_key {
                " (its key stays in the token)"
            } else {
                ", its key destroyed"
            }
        );
    } else {
        println!("the store has no unseal slot (nothing recorded)");
    }
    Ok(())
}
