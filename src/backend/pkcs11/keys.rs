//! secp256k1 key objects on the token: how they are named, created, found and checked.
//!
//! # Naming
//!
//! Every key is a pair of token objects sharing one label and one `CKA_ID`:
//! `custos/<wallet>/<change>/<index>` (`custos/eth-hsm/0/7`), found by label, wallet and
//! derivation index as operators read them in `pkcs11-tool --list-objects`. The label is the
//! lookup key; what makes a found key *the wallet's* key is its public key, which Custos checks
//! against the wallet's own (derived from the account xpub, or recorded at generation) before it
//! signs with it, and again by verifying every signature.
//!
//! # Attributes
//!
//! Private keys: `CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE` true, `CKA_EXTRACTABLE` false,
//! `CKA_SIGN` true and nothing else (no derive, decrypt, unwrap), `CKA_EC_PARAMS` the DER OID of
//! secp256k1 (1.3.132.0.10). Keys generated inside the token are also `CKA_LOCAL`,
//! `CKA_ALWAYS_SENSITIVE` and `CKA_NEVER_EXTRACTABLE`; imported keys are not (the token is told
//! the truth: they existed outside it once). A private key found without sensitive/non-extractable
//! is refused, never used.
//!
//! Public keys: `CKA_TOKEN`, `CKA_VERIFY`, public (`CKA_PRIVATE` false), `CKA_EC_POINT` as PKCS#11
//! specifies it: the uncompressed point wrapped in a DER OCTET STRING (SoftHSM2 requires the
//! wrapping; [`decode_ec_point`] accepts both forms on reading, as some modules return it bare).

use bitcoin::secp256k1::PublicKey;
use cryptoki::error::Error as CkError;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::Session;
use zeroize::Zeroize;

use crate::keys::SecretPrivateKey;

/// DER encoding of the secp256k1 OID, 1.3.132.0.10 (SEC 2), as `CKA_EC_PARAMS` carries it.
pub const SECP256K1_OID_DER: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];

/// The prefix of every label Custos writes.
pub const LABEL_PREFIX: &str = "custos/";

/// The label (and `CKA_ID`) of a wallet's key at `change/index`.
pub fn key_label(wallet: &str, change: bool, index: u32) -> String {
    format!("{LABEL_PREFIX}{wallet}/{}/{index}", u8::from(change))
}

/// `CKA_EC_POINT` of `key`: a DER OCTET STRING around the 65-byte uncompressed point.
pub fn encode_ec_point(key: &PublicKey) -> Vec<u8> {
    let point = key.serialize_uncompressed();
    let mut out = Vec::with_capacity(2 + point.len());
    out.push(0x04);
    out.push(point.len() as u8);
    out.extend_from_slice(&point);
    out
}

/// A public key from `CKA_EC_POINT`, DER-wrapped (as the standard says) or bare.
pub fn decode_ec_point(bytes: &[u8]) -> Result<PublicKey, String> {
    let point = match bytes {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() && matches!(len, 33 | 65) => rest,
        other => other,
    };
    PublicKey::from_slice(point).map_err(|e| format!("CKA_EC_POINT is not a secp256k1 point: {e}"))
}

/// What an operator (and `custos hsm list`) sees of one key object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyObject {
    /// The label.
    pub label: String,
    /// `private` or `public`.
    pub class: &'static str,
    /// Whether the curve is secp256k1.
    pub secp256k1: bool,
    /// CKA_SENSITIVE (private keys).
    pub sensitive: Option<bool>,
    /// CKA_EXTRACTABLE (private keys).
    pub extractable: Option<bool>,
    /// CKA_PRIVATE.
    pub private: Option<bool>,
    /// CKA_LOCAL: generated on the token.
    pub local: Option<bool>,
    /// CKA_NEVER_EXTRACTABLE.
    pub never_extractable: Option<bool>,
    /// Whether CKA_VALUE can be read (it must not be, for a private key).
    pub value_readable: bool,
}

/// Private key objects labelled `label`.
pub(crate) fn find_private(session: &Session, label: &str) -> Result<Vec<ObjectHandle>, CkError> {
    session.find_objects(&[
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(KeyType::EC),
        Attribute::Label(label.as_bytes().to_vec()),
    ])
}

/// The public key of the public key object labelled `label`, if there is one.
pub(crate) fn read_public(
    session: &Session,
    label: &str,
) -> Result<Option<Result<PublicKey, String>>, CkError> {
    let found = session.find_objects(&[
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(KeyType::EC),
        Attribute::Label(label.as_bytes().to_vec()),
    ])?;
    let Some(handle) = found.first() else {
        return Ok(None);
    };
    Ok(Some(point_of(session, *handle)?))
}

fn point_of(session: &Session, handle: ObjectHandle) -> Result<Result<PublicKey, String>, CkError> {
    let attrs = session.get_attributes(handle, &[AttributeType::EcPoint])?;
    Ok(match attrs.first() {
        Some(Attribute::EcPoint(bytes)) => decode_ec_point(bytes),
        _ => Err("the public key object has no CKA_EC_POINT".into()),
    })
}

/// Checks that a private key object may be used: secp256k1, sensitive, not extractable, private.
pub(crate) fn check_private(
    session: &Session,
    handle: ObjectHandle,
) -> Result<Result<(), String>, CkError> {
    let object = describe(session, handle, "private")?;
    let mut wrong = Vec::new();
    if !object.secp256k1 {
        wrong.push("its curve is not secp256k1");
    }
    if object.sensitive != Some(true) {
        wrong.push("CKA_SENSITIVE is not true");
    }
    if object.extractable != Some(false) {
        wrong.push("CKA_EXTRACTABLE is not false");
    }
    if object.private != Some(true) {
        wrong.push("CKA_PRIVATE is not true");
    }
    if object.value_readable {
        wrong.push("CKA_VALUE can be read");
    }
    Ok(if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join(", "))
    })
}

/// The attributes of one object, as far as the token reveals them.
pub(crate) fn describe(
    session: &Session,
    handle: ObjectHandle,
    class: &'static str,
) -> Result<KeyObject, CkError> {
    let attrs = session.get_attributes(
        handle,
        &[
            AttributeType::Label,
            AttributeType::EcParams,
            AttributeType::Sensitive,
            AttributeType::Extractable,
            AttributeType::Private,
            AttributeType::Local,
            AttributeType::NeverExtractable,
        ],
    )?;
    let mut object = KeyObject {
        label: String::new(),
        class,
        secp256k1: false,
        sensitive: None,
        extractable: None,
        private: None,
        local: None,
        never_extractable: None,
        value_readable: false,
    };
    for attr in attrs {
        match attr {
            Attribute::Label(l) => object.label = String::from_utf8_lossy(&l).into_owned(),
            Attribute::EcParams(p) => object.secp256k1 = p == SECP256K1_OID_DER,
            Attribute::Sensitive(b) => object.sensitive = Some(b),
            Attribute::Extractable(b) => object.extractable = Some(b),
            Attribute::Private(b) => object.private = Some(b),
            Attribute::Local(b) => object.local = Some(b),
            Attribute::NeverExtractable(b) => object.never_extractable = Some(b),
            _ => {}
        }
    }
    if class != "public" {
        let info = session.get_attribute_info(handle, &[AttributeType::Value])?;
        object.value_readable = matches!(info.first(), Some(AttributeInfo::Available(_)));
    }
    Ok(object)
}

/// Every Custos key object (label under [`LABEL_PREFIX`] and `prefix`), private and public.
pub(crate) fn list(session: &Session, prefix: &str) -> Result<Vec<KeyObject>, CkError> {
    let mut out = Vec::new();
    for (class, name) in [
        (ObjectClass::PRIVATE_KEY, "private"),
        (ObjectClass::PUBLIC_KEY, "public"),
    ] {
        for handle in
            session.find_objects(&[Attribute::Class(class), Attribute::KeyType(KeyType::EC)])?
        {
            let object = describe(session, handle, name)?;
            if object.label.starts_with(LABEL_PREFIX) && object.label.starts_with(prefix) {
                out.push(object);
            }
        }
    }
    out.sort_by(|a, b| {
        natural(&a.label)
            .cmp(&natural(&b.label))
            .then(a.class.cmp(b.class))
    });
    Ok(out)
}

/// Sorts `custos/w/0/10` after `custos/w/0/9`.
fn natural(label: &str) -> (String, u64, u64) {
    let mut parts = label.rsplitn(3, '/');
    let index = parts
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(u64::MAX);
    let change = parts
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(u64::MAX);
    (parts.next().unwrap_or("").to_owned(), change, index)
}

fn private_template(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Derive(false),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(label.as_bytes().to_vec()),
    ]
}

fn public_template(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::Encrypt(false),
        Attribute::Wrap(false),
        Attribute::Derive(false),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(label.as_bytes().to_vec()),
    ]
}

/// Generates a key pair inside the token (`CKM_EC_KEY_PAIR_GEN`); returns its public key.
pub(crate) fn generate(
    session: &Session,
    label: &str,
) -> Result<Result<PublicKey, String>, CkError> {
    let mut public = public_template(label);
    public.push(Attribute::EcParams(SECP256K1_OID_DER.to_vec()));
    let (public_handle, _) =
        session.generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private_template(label))?;
    point_of(session, public_handle)
}

/// Creates the private key object (from `secret`) and the public key object (`public`) under
/// `label`. The copy of the scalar handed to the module is zeroized before returning.
pub(crate) fn import(
    session: &Session,
    label: &str,
    secret: &SecretPrivateKey,
    public: &PublicKey,
) -> Result<(), CkError> {
    let mut private = private_template(label);
    private.extend([
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(KeyType::EC),
        Attribute::EcParams(SECP256K1_OID_DER.to_vec()),
        Attribute::Value(secret.to_secret_bytes().expose_secret().to_vec()),
    ]);
    let created = session.create_object(&private);
    for attr in &mut private {
        if let Attribute::Value(v) = attr {
            v.zeroize();
        }
    }
    let private_handle = created?;
    // Some modules (YubiHSM 2) expose the public half of a private key object by themselves.
    if let Some(Ok(found)) = read_public(session, label)? {
        if found == *public {
            return Ok(());
        }
    }
    let mut public_attrs = public_template(label);
    public_attrs.extend([
        Attribute::Class(ObjectClass::PUBLIC_KEY),
        Attribute::KeyType(KeyType::EC),
        Attribute::EcParams(SECP256K1_OID_DER.to_vec()),
        Attribute::EcPoint(encode_ec_point(public)),
    ]);
    if let Err(e) = session.create_object(&public_attrs) {
        // Leave no private key without its public half: the next import retries both.
        let _ = session.destroy_object(private_handle);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_points() {
        assert_eq!(key_label("eth-hsm", false, 7), "custos/eth-hsm/0/7");
        assert_eq!(key_label("btc", true, 0), "custos/btc/1/0");
        let key = PublicKey::from_slice(
            &hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
                .unwrap(),
        )
        .unwrap();
        let wrapped = encode_ec_point(&key);
        assert_eq!(wrapped.len(), 67);
        assert_eq!(&wrapped[..3], &[0x04, 0x41, 0x04]);
        assert_eq!(decode_ec_point(&wrapped).unwrap(), key);
        assert_eq!(decode_ec_point(&wrapped[2..]).unwrap(), key);
        let compressed = key.serialize();
        let mut wrapped33 = vec![0x04, 33];
        wrapped33.extend_from_slice(&compressed);
        assert_eq!(decode_ec_point(&wrapped33).unwrap(), key);
        assert!(decode_ec_point(&[0x04, 0x41]).is_err());
        assert!(decode_ec_point(&[]).is_err());
        assert!(natural("custos/w/0/9") < natural("custos/w/0/10"));
    }
}
