//! `custos dev env DIR --hsm`: the development environment on SoftHSM2.
//!
//! Into `DIR/hsm/`: a SoftHSM2 configuration whose token directory is `DIR/hsm/tokens`, a token
//! labelled `custos` initialised through PKCS#11 (`C_InitToken`, `C_InitPIN`) with random SO and
//! user PINs in `so-pin` and `user-pin` (0600). Then every wallet of the environment that an HSM
//! can hold has its first keys imported into the token (receive and change addresses
//! `0..KEYS`), the store gets its HSM unseal slot, and `custos.toml` gets an `[hsm]` section with
//! `auto_unseal = true` and no `passphrase_file`: the server unseals itself through the token at
//! start. The passphrase stays in `DIR/passphrase` for ceremonies (`custos hsm import ...`).
//!
//! Development keys only: the mnemonic of a dev environment is not a secret worth an HSM.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::pkcs11::ceremony::import_wallet;
use crate::backend::pkcs11::provision::{init_token, write_softhsm_config, SOFTHSM2_CONF_ENV};
use crate::backend::pkcs11::wallets::check_supported;
use crate::backend::pkcs11::{Pkcs11Backend, TokenSelector, TokenSettings};
use crate::cli::CliError;
use crate::keystore::Unsealed;
use crate::secret::SecretString;
use crate::service::devcerts::write_file;
use crate::wallet::Wallet;

/// The token label of a development environment.
pub const DEV_TOKEN_LABEL: &str = "custos";
/// Address indexes imported per chain in a development environment.
pub const DEV_KEYS: u32 = 5;

/// What the environment's HSM holds.
pub struct DevHsm {
    /// The module.
    pub module: PathBuf,
    /// `DIR/hsm/softhsm2.conf`.
    pub conf: PathBuf,
    /// Wallets whose keys were imported.
    pub wallets: Vec<String>,
    /// Wallets left on the software backend, with why.
    pub skipped: Vec<(String, String)>,
}

fn op(e: impl std::fmt::Display) -> CliError {
    CliError::operational(e)
}

fn random_pin() -> Result<SecretString, CliError> {
    let mut bytes = [0u8; 12];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| op(format!("random number generator failed: {e}")))?;
    let pin = SecretString::new(hex::encode(bytes));
    bytes.fill(0);
    Ok(pin)
}

/// Makes the token, imports the wallets' first keys and adds the unseal slot.
pub fn set_up(
    dir: &Path,
    module: &Path,
    unsealed: &Unsealed,
    wallets: &[Wallet],
) -> Result<DevHsm, CliError> {
    if !module.is_file() {
        return Err(op(format!(
            "the pkcs#11 module {} is not installed (Debian: apt-get install softhsm2; or run \
             hsm/setup-softhsm.sh)",
            module.display()
        )));
    }
    let hsm_dir = dir.join("hsm");
    let conf = write_softhsm_config(&hsm_dir)
        .map_err(|e| op(format!("cannot write {}: {e}", hsm_dir.display())))?;
    let conf = std::fs::canonicalize(&conf).map_err(op)?;
    // SoftHSM2 reads its configuration when the module is initialised: set it first.
    std::env::set_var(SOFTHSM2_CONF_ENV, &conf);
    let so_pin = random_pin()?;
    let user_pin = random_pin()?;
    write_file(
        &hsm_dir.join("so-pin"),
        format!("{}\n", so_pin.expose_secret()).as_bytes(),
        true,
    )
    .map_err(op)?;
    write_file(
        &hsm_dir.join("user-pin"),
        format!("{}\n", user_pin.expose_secret()).as_bytes(),
        true,
    )
    .map_err(op)?;
    init_token(module, DEV_TOKEN_LABEL, &so_pin, &user_pin).map_err(op)?;
    let backend = Arc::new(
        Pkcs11Backend::open(TokenSettings {
            module: module.to_owned(),
            token: TokenSelector::Label(DEV_TOKEN_LABEL.into()),
            pin: user_pin,
            sessions: 1,
        })
        .map_err(op)?,
    );
    let mut imported = Vec::new();
    let mut skipped = Vec::new();
    for wallet in wallets {
        if let Err(e) = check_supported(wallet) {
            skipped.push((wallet.name.clone(), e.to_string()));
            continue;
        }
        let master = unsealed
            .master_key(&wallet.seed)
            .map_err(crate::cli::common::keystore_error)?;
        import_wallet(&backend, wallet, &master, 0..DEV_KEYS, &|| {}).map_err(op)?;
        imported.push(wallet.name.clone());
    }
    unsealed
        .add_pkcs11_slot(backend.token())
        .map_err(crate::cli::common::keystore_error)?;
    Ok(DevHsm {
        module: module.to_owned(),
        conf,
        wallets: imported,
        skipped,
    })
}

/// The `[hsm]` section of the environment's `custos.toml`.
pub fn config_section(hsm: &DevHsm) -> String {
    format!(
        r#"
# SoftHSM2 (development): the wallets' keys are in the token, and the token unseals the store.
[hsm]
module = "{module}"
token_label = "{DEV_TOKEN_LABEL}"
pin_file = "hsm/user-pin"
sessions = 4
wallets = ["*"]
auto_unseal = true

[hsm.module_env]
{SOFTHSM2_CONF_ENV} = "{conf}"
"#,
        module = hsm.module.display(),
        conf = hsm.conf.display(),
    )
}
