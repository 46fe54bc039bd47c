//! The ceremony operations of [`Pkcs11Backend`]: key pairs generated inside the token, keys
//! imported into it, the Custos objects it holds, and what it can do. Each runs in one read-write
//! session outside the signing pool; none is on the signing path.

use bitcoin::secp256k1::PublicKey;
use cryptoki::error::Error as CkError;
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::ObjectHandle;
use cryptoki::session::Session;

use super::error::{rv_name, Pkcs11Error};
use super::{keys, Capabilities, ImportItem, ImportReport, KeyObject, Pkcs11Backend};

impl Pkcs11Backend {
    /// Generates one key pair per label inside the token. Returns the public keys in order;
    /// `progress` is called after each key. A label that exists already is refused — unless
    /// `adopt` and its key was itself generated on the token and never extractable (what an
    /// interrupted keygen leaves), in which case that key is kept.
    pub fn generate(
        &self,
        labels: &[String],
        adopt: bool,
        progress: &dyn Fn(),
    ) -> Result<Vec<PublicKey>, Pkcs11Error> {
        let mut out = Vec::with_capacity(labels.len());
        let result = self
            .token
            .with_rw_session("generating keys", |session| {
                for label in labels {
                    let existing = keys::find_private(session, label)?;
                    if let Some(handle) = existing.first() {
                        match self.adoptable(session, *handle, label, adopt)? {
                            Ok(key) => {
                                out.push(key);
                                progress();
                                continue;
                            }
                            Err(e) => return Ok(Err(e)),
                        }
                    }
                    match keys::generate(session, label) {
                        Ok(Ok(key)) => out.push(key),
                        Ok(Err(reason)) => {
                            return Ok(Err(Pkcs11Error::BadObject {
                                token: self.token.name().to_owned(),
                                label: label.clone(),
                                reason,
                            }))
                        }
                        Err(e) => return Ok(Err(self.keygen_error(label, &e))),
                    }
                    progress();
                }
                Ok(Ok(()))
            })?
            .map_err(|e| self.refused("generating keys".into(), &e))?;
        result.map(|()| out)
    }

    /// The public key of an existing key pair that `generate` may keep, or why not.
    fn adoptable(
        &self,
        session: &Session,
        handle: ObjectHandle,
        label: &str,
        adopt: bool,
    ) -> Result<Result<PublicKey, Pkcs11Error>, CkError> {
        let refuse = |reason: String| {
            Ok(Err(Pkcs11Error::Invalid(format!(
                "{} already holds a key labelled '{label}'{reason}",
                self.token.name()
            ))))
        };
        if !adopt {
            return refuse(String::new());
        }
        let object = keys::describe(session, handle, "private")?;
        if object.local != Some(true) || object.never_extractable != Some(true) {
            return refuse(" that was not generated on the token (or was once extractable)".into());
        }
        if let Err(reason) = keys::check_private(session, handle)? {
            return refuse(format!(": {reason}"));
        }
        match keys::read_public(session, label)? {
            Some(Ok(key)) => Ok(Ok(key)),
            Some(Err(reason)) => refuse(format!(": {reason}")),
            None => refuse(" without its public key object".into()),
        }
    }

    /// A refusal to create a secp256k1 object: unsupported curve (naming the module), or another
    /// refusal.
    fn keygen_error(&self, label: &str, e: &CkError) -> Pkcs11Error {
        use cryptoki::error::RvError::*;
        match e {
            CkError::Pkcs11(
                CurveNotSupported
                | DomainParamsInvalid
                | AttributeValueInvalid
                | TemplateInconsistent
                | MechanismInvalid
                | KeySizeRange,
                _,
            ) => Pkcs11Error::Unsupported {
                module: self.token.module_path().to_owned(),
                what: "secp256k1 keys (CKA_EC_PARAMS = OID 1.3.132.0.10)".into(),
                reason: rv_name(e),
            },
            other => self.refused(format!("creating the key '{label}'"), other),
        }
    }

    /// Imports keys derived elsewhere. A label already present is checked (its public key must
    /// be the expected one) and skipped, so an interrupted import can be run again.
    pub fn import(
        &self,
        items: &mut dyn Iterator<Item = Result<ImportItem, Pkcs11Error>>,
        progress: &dyn Fn(),
    ) -> Result<ImportReport, Pkcs11Error> {
        let mut report = ImportReport::default();
        let result = self
            .token
            .with_rw_session("importing keys", |session| {
                for item in &mut *items {
                    let item = match item {
                        Ok(item) => item,
                        Err(e) => return Ok(Err(e)),
                    };
                    if !keys::find_private(session, &item.label)?.is_empty() {
                        match keys::read_public(session, &item.label)? {
                            Some(Ok(found)) if found == item.public => {
                                report.present += 1;
                                progress();
                                continue;
                            }
                            found => {
                                return Ok(Err(Pkcs11Error::KeyMismatch {
                                    token: self.token.name().to_owned(),
                                    label: item.label.clone(),
                                    expected: item.public.to_string(),
                                    found: match found {
                                        Some(Ok(k)) => k.to_string(),
                                        Some(Err(reason)) => reason,
                                        None => {
                                            "a private key without its public key object".into()
                                        }
                                    },
                                }))
                            }
                        }
                    }
                    if let Err(e) = keys::import(session, &item.label, &item.secret, &item.public) {
                        return Ok(Err(self.keygen_error(&item.label, &e)));
                    }
                    report.created += 1;
                    progress();
                }
                Ok(Ok(()))
            })?
            .map_err(|e| self.refused("importing keys".into(), &e))?;
        result.map(|()| report)
    }

    /// The Custos key objects whose label starts with `prefix` (`custos/` for all).
    pub fn list(&self, prefix: &str) -> Result<Vec<KeyObject>, Pkcs11Error> {
        self.token
            .run("listing key objects", |session, _| {
                keys::list(session, prefix)
            })?
            .map_err(|e| self.refused("listing key objects".into(), &e))
    }

    /// The mechanisms the token lists, and whether it really makes secp256k1 keys (a session key
    /// pair, generated and destroyed).
    pub fn capabilities(&self) -> Result<Capabilities, Pkcs11Error> {
        let listed = self.token.with_context(|ctx, slot| {
            ctx.get_mechanism_list(slot)
                .map_err(|e| self.refused("listing mechanisms".into(), &e))
        })?;
        let has = |m: MechanismType| listed.contains(&m);
        let secp256k1 = self
            .token
            .with_rw_session("probing secp256k1", |session| {
                let public = [
                    cryptoki::object::Attribute::Token(false),
                    cryptoki::object::Attribute::EcParams(keys::SECP256K1_OID_DER.to_vec()),
                ];
                let private = [
                    cryptoki::object::Attribute::Token(false),
                    cryptoki::object::Attribute::Sign(true),
                ];
                let (p, s) =
                    session.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)?;
                let _ = session.destroy_object(s);
                let _ = session.destroy_object(p);
                Ok(())
            })?
            .map_err(|e| rv_name(&e));
        Ok(Capabilities {
            ecdsa: has(MechanismType::ECDSA),
            ec_keygen: has(MechanismType::ECC_KEY_PAIR_GEN),
            secp256k1,
            aes_keygen: has(MechanismType::AES_KEY_GEN),
            aes_gcm: has(MechanismType::AES_GCM),
        })
    }
}
