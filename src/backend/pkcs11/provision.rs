//! Making a token, for development and tests: SoftHSM2's configuration file, and the PKCS#11
//! initialisation of a free slot (`C_InitToken`, then `C_InitPIN` as the security officer).
//!
//! Production tokens are initialised with the vendor's tools during the HSM ceremony
//! (`hsm/README.md`); nothing in the server calls this. `custos dev env --hsm` and the tests do,
//! and `hsm/setup-softhsm.sh` does the same with `softhsm2-util`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

use super::error::{rv_name, Pkcs11Error};
use super::module::Module;
use crate::secret::SecretString;

/// Where Debian (and Ubuntu) install SoftHSM2's module.
pub const SOFTHSM2_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The environment variable SoftHSM2 reads its configuration file from.
pub const SOFTHSM2_CONF_ENV: &str = "SOFTHSM2_CONF";

/// Writes a SoftHSM2 configuration whose token directory is `dir/tokens` (created 0700) into
/// `dir/softhsm2.conf`; returns its path. The system-wide default needs the `softhsm` group, and
/// sharing it between environments would mix their tokens.
pub fn write_softhsm_config(dir: &Path) -> std::io::Result<PathBuf> {
    let tokens = dir.join("tokens");
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(&tokens)?;
    let tokens = std::fs::canonicalize(&tokens)?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "# SoftHSM2 configuration for one Custos environment.\n\
             directories.tokendir = {}\n\
             objectstore.backend = file\n\
             log.level = ERROR\n\
             slots.removable = false\n",
            tokens.display()
        ),
    )?;
    Ok(conf)
}

/// Initialises a new token labelled `label` on the first slot holding an uninitialised token, and
/// sets its user PIN. Refuses if a token with this label exists. (Serialised within the process:
/// two initialisations must not pick the same free slot.)
pub fn init_token(
    module: &Path,
    label: &str,
    so_pin: &SecretString,
    user_pin: &SecretString,
) -> Result<(), Pkcs11Error> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME
        .lock()
        .expect("token initialisation lock poisoned");
    let module = Module::load(module)?;
    let name = format!("token '{label}'");
    let refused = |operation: &str, e: &cryptoki::error::Error| Pkcs11Error::Refused {
        token: name.clone(),
        operation: operation.to_owned(),
        rv: rv_name(e),
    };
    module.with(&name, |ctx, _| {
        let slots = ctx
            .get_all_slots()
            .map_err(|e| refused("listing slots", &e))?;
        let mut free = None;
        for slot in slots {
            let Ok(info) = ctx.get_token_info(slot) else {
                continue;
            };
            if info.token_initialized() && info.label() == label {
                return Err(Pkcs11Error::Invalid(format!(
                    "a token labelled '{label}' exists already"
                )));
            }
            if !info.token_initialized() && free.is_none() {
                free = Some(slot);
            }
        }
        let slot = free.ok_or_else(|| {
            Pkcs11Error::Invalid(format!(
                "the pkcs#11 module {} has no free slot for a new token",
                module.path().display()
            ))
        })?;
        let so = AuthPin::new(so_pin.expose_secret().into());
        ctx.init_token(slot, &so, label)
            .map_err(|e| refused("initialising the token (C_InitToken)", &e))?;
        // SoftHSM2 moves the new token to another slot: find it by label.
        let slot = ctx
            .get_slots_with_token()
            .map_err(|e| refused("listing slots", &e))?
            .into_iter()
            .find(|s| ctx.get_token_info(*s).is_ok_and(|i| i.label() == label))
            .ok_or_else(|| Pkcs11Error::Unavailable {
                token: name.clone(),
                reason: "not found after initialisation".into(),
            })?;
        let session = ctx
            .open_rw_session(slot)
            .map_err(|e| refused("opening a session", &e))?;
        session
            .login(UserType::So, Some(&so))
            .map_err(|e| refused("logging in as security officer", &e))?;
        session
            .init_pin(&AuthPin::new(user_pin.expose_secret().into()))
            .map_err(|e| refused("setting the user pin (C_InitPIN)", &e))?;
        let _ = session.logout();
        Ok(())
    })
}
