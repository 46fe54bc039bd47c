//! Known-answer self-tests, run before the server serves (as HSM firmware runs its power-on
//! self-tests) and by `custos selftest`.
//!
//! Each check computes a value through the code paths the service signs with and compares it with
//! an answer fixed here, taken from a published vector or computed once with an independent
//! implementation:
//!
//! 1. **BIP32/BIP84 derivation**: the BIP39 test mnemonic (`abandon … about`) through
//!    [`MnemonicSecret`], [`MasterKey`] and [`AccountKey`] (the key store's path) gives the first
//!    receive address of [BIP84](https://github.com/bitcoin/bips/blob/master/bip-0084.mediawiki)'s
//!    test vector.
//! 2. **ECDSA (RFC 6979)**: the [`SoftwareBackend`] signs a fixed digest with the key at
//!    `m/84'/0'/0'/0/0` of that mnemonic (no low-R grinding: plain RFC 6979 nonce); the DER
//!    signature must equal one computed with RustCrypto's `k256` (see [`KNOWN_ANSWERS`]).
//! 3. **EIP-155**: the [EIP-155](https://eips.ethereum.org/EIPS/eip-155) example transaction
//!    (private key `0x4646…46`, nonce 9, 20 gwei, 21000 gas, to `0x3535…35`, 1 ether, chain 1),
//!    parsed from its unsigned RLP by the Ethereum chain module, signed recoverably, checked
//!    (low-S, recovers to the sender) and encoded, must be the EIP's signed transaction.
//! 4. **BIP340 Schnorr**: [BIP340](https://github.com/bitcoin/bips/blob/master/bip-0340/test-vectors.csv)
//!    test vector 0 (secret key 3, zero aux_rand, zero message), signed with libsecp256k1's
//!    `sign_schnorr_with_aux_rand` as the software backend does for taproot, must be the BIP's
//!    signature, and verify.
//!
//! Every check takes its expected value as a parameter ([`KnownAnswers`]), so a wrong expected
//! value makes it fail: that is how the failure path is tested. Nothing here touches a key store:
//! the keys are public test keys.

use std::fmt;
use std::str::FromStr;

use bitcoin::bip32::DerivationPath;
use bitcoin::key::Keypair;
use bitcoin::secp256k1::{Message, SecretKey};

use crate::backend::{KeyBackend, KeyRef, SeedId, SoftwareBackend};
use crate::chains::ethereum::sign::checked_signature;
use crate::chains::ethereum::tx;
use crate::keys::account::ethereum_address_of;
use crate::keys::{secp, AccountKey, AccountPath, MasterKey, MnemonicSecret, Network, Purpose};
use crate::secret::SecretString;

/// The BIP39/BIP84 test mnemonic (public; never holds funds).
pub const TEST_MNEMONIC: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

/// The expected value of each check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownAnswers {
    /// First receive address of BIP84 account 0 on mainnet for [`TEST_MNEMONIC`].
    pub bip84_address: &'static str,
    /// The 32-byte digest the ECDSA check signs, hex.
    pub ecdsa_digest_hex: &'static str,
    /// The DER ECDSA signature of that digest by the key at `m/84'/0'/0'/0/0`, hex.
    pub ecdsa_der_hex: &'static str,
    /// The EIP-155 example's unsigned transaction (RLP), hex.
    pub eip155_unsigned_hex: &'static str,
    /// The EIP-155 example's private key, hex (`0x4646…46`, public).
    pub eip155_key_hex: &'static str,
    /// The EIP-155 example's signed transaction, hex.
    pub eip155_signed_hex: &'static str,
    /// BIP340 vector 0: secret key, aux_rand, message and signature, hex.
    pub bip340_secret_hex: &'static str,
    /// BIP340 vector 0 aux_rand.
    pub bip340_aux_hex: &'static str,
    /// BIP340 vector 0 message.
    pub bip340_message_hex: &'static str,
    /// BIP340 vector 0 signature.
    pub bip340_signature_hex: &'static str,
}

/// The published and independently computed answers.
pub const KNOWN_ANSWERS: KnownAnswers = KnownAnswers {
    // BIP84 test vector, "Account 0, first receiving address = m/84'/0'/0'/0/0".
    bip84_address: "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu",
    // SHA-256 of the ASCII text "Custos known-answer self-test".
    ecdsa_digest_hex: "8d61ce118d12159f05f3ff85968227fcab48626bd415bcaf1ffd06c52c248163",
    // Computed once with RustCrypto k256 0.13.4 (an implementation independent of libsecp256k1):
    // `SigningKey::from_slice(key).sign_prehash(digest)` (RFC 6979), `normalize_s`, `to_der`,
    // where `key` = 4604b4b7…ce4fa3 is BIP84's WIF KyZpNDKnfs94vbrwhJneDi77V6jF64PWPF8x5cdJb8ifgg2DUc9d
    // for m/84'/0'/0'/0/0, decoded with a base58check routine in Python.
    ecdsa_der_hex: "30450221008a29cfe43acd235139d42d17813cb62f6bad89f8d1869080efaa7e02ef7b4b22\
                    022035eb193ccac5cc6d7d0d145eeb322f703f44ea822e27865f3ab413b5ee6df951",
    // EIP-155, "Example": the signing data before hashing.
    eip155_unsigned_hex:
        "ec098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a764000080018080",
    eip155_key_hex: "4646464646464646464646464646464646464646464646464646464646464646",
    // EIP-155, "Example": the signed transaction.
    eip155_signed_hex:
        "f86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3\
                        a76400008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa63\
                        6276a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83",
    // BIP340 test-vectors.csv, index 0.
    bip340_secret_hex: "0000000000000000000000000000000000000000000000000000000000000003",
    bip340_aux_hex: "0000000000000000000000000000000000000000000000000000000000000000",
    bip340_message_hex: "0000000000000000000000000000000000000000000000000000000000000000",
    bip340_signature_hex: "e907831f80848d1069a5371b402410364bdf1c5f8307b0084c55f1ce2dca8215\
                           25f66a4a85ea8b71e482a74f382d2ce5ebeee8fdb2172f477df4900d310536c0",
};

/// Why one check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelfTestError {
    /// The computed value differs from the known answer.
    #[error("expected {expected}, computed {got}")]
    Mismatch {
        /// The known answer.
        expected: String,
        /// What this build computed.
        got: String,
    },
    /// The computation itself failed.
    #[error("{0}")]
    Failed(String),
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Short name (`bip84-derivation`, `ecdsa-rfc6979`, `eip155-sign`, `bip340-schnorr`).
    pub name: &'static str,
    /// What it checks, in words.
    pub description: &'static str,
    /// Passed, or why not.
    pub outcome: Result<(), SelfTestError>,
}

impl fmt::Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Ok(()) => write!(f, "ok    {:<18} {}", self.name, self.description),
            Err(e) => write!(f, "FAIL  {:<18} {}: {e}", self.name, self.description),
        }
    }
}

/// All results of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfTestReport {
    /// One per check, in order.
    pub checks: Vec<CheckResult>,
}

impl SelfTestReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.outcome.is_ok())
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|c| c.outcome.is_err())
    }
}

/// Runs every check against `answers` (use [`KNOWN_ANSWERS`]).
pub fn run(answers: &KnownAnswers) -> SelfTestReport {
    SelfTestReport {
        checks: vec![
            CheckResult {
                name: "bip84-derivation",
                description: "BIP32/BIP84 derivation of the BIP84 test vector address",
                outcome: check_bip84(answers.bip84_address),
            },
            CheckResult {
                name: "ecdsa-rfc6979",
                description: "deterministic ECDSA (RFC 6979) through the software backend",
                outcome: check_ecdsa(answers.ecdsa_digest_hex, answers.ecdsa_der_hex),
            },
            CheckResult {
                name: "eip155-sign",
                description: "EIP-155 example transaction through the Ethereum chain module",
                outcome: check_eip155(
                    answers.eip155_unsigned_hex,
                    answers.eip155_key_hex,
                    answers.eip155_signed_hex,
                ),
            },
            CheckResult {
                name: "bip340-schnorr",
                description: "BIP340 Schnorr signature, test vector 0",
                outcome: check_bip340(
                    answers.bip340_secret_hex,
                    answers.bip340_aux_hex,
                    answers.bip340_message_hex,
                    answers.bip340_signature_hex,
                ),
            },
        ],
    }
}

fn failed(what: &str) -> impl Fn(String) -> SelfTestError + '_ {
    move |e| SelfTestError::Failed(format!("{what}: {e}"))
}

fn compare(expected: &str, got: String) -> Result<(), SelfTestError> {
    if expected.eq_ignore_ascii_case(&got) {
        Ok(())
    } else {
        Err(SelfTestError::Mismatch {
            expected: expected.to_owned(),
            got,
        })
    }
}

fn hex32(what: &str, text: &str) -> Result<[u8; 32], SelfTestError> {
    let bytes = hex::decode(text).map_err(|e| failed(what)(e.to_string()))?;
    bytes
        .try_into()
        .map_err(|_| failed(what)("expected 32 bytes".into()))
}

/// The test mnemonic's master key (the seed derivation the key store uses).
fn test_master() -> Result<MasterKey, SelfTestError> {
    let mnemonic = MnemonicSecret::parse(&SecretString::new(TEST_MNEMONIC.to_owned()))
        .map_err(|e| failed("mnemonic")(e.to_string()))?;
    let seed = mnemonic.to_seed(&SecretString::new(String::new()));
    MasterKey::from_seed(&seed).map_err(|e| failed("master key")(e.to_string()))
}

/// BIP84 account 0 on mainnet, first receive address, as the key store derives wallets.
pub fn check_bip84(expected_address: &str) -> Result<(), SelfTestError> {
    let master = test_master()?;
    let network = Network::Bitcoin(bitcoin::Network::Bitcoin);
    let path = AccountPath::new(network, Purpose::Bip84, 0)
        .map_err(|e| failed("account path")(e.to_string()))?;
    let account = AccountKey::from_master(&master, network, path)
        .map_err(|e| failed("account key")(e.to_string()))?;
    let address = account
        .address_string(false, 0)
        .map_err(|e| failed("address")(e.to_string()))?;
    compare(expected_address, address)
}

/// RFC 6979 ECDSA over `digest_hex` by the software backend with the key at `m/84'/0'/0'/0/0`.
pub fn check_ecdsa(digest_hex: &str, expected_der_hex: &str) -> Result<(), SelfTestError> {
    let digest = hex32("digest", digest_hex)?;
    let backend = SoftwareBackend::new();
    let seed = SeedId("selftest".into());
    backend.load(seed.clone(), test_master()?);
    let key = KeyRef {
        seed,
        path: DerivationPath::from_str("m/84'/0'/0'/0/0")
            .map_err(|e| failed("path")(e.to_string()))?,
    };
    let signature = backend
        .sign_ecdsa(&key, &digest, false)
        .map_err(|e| failed("software backend")(e.to_string()))?
        .ok_or_else(|| failed("software backend")("the test seed is not loaded".into()))?;
    backend.seal();
    compare(expected_der_hex, hex::encode(signature.serialize_der()))
}

/// The EIP-155 example: parse the unsigned RLP, sign its hash recoverably, check, encode.
pub fn check_eip155(
    unsigned_hex: &str,
    key_hex: &str,
    expected_signed_hex: &str,
) -> Result<(), SelfTestError> {
    let unsigned = hex::decode(unsigned_hex).map_err(|e| failed("unsigned tx")(e.to_string()))?;
    let parsed =
        tx::parse(&unsigned, 1).map_err(|e| failed("ethereum chain module")(e.to_string()))?;
    let secret = SecretKey::from_slice(&hex32("private key", key_hex)?)
        .map_err(|e| failed("private key")(e.to_string()))?;
    let sender = ethereum_address_of(&secret.public_key(secp()));
    let digest = parsed.tx.signing_hash();
    let recoverable = secp().sign_ecdsa_recoverable(&Message::from_digest(digest.0), &secret);
    let signature = checked_signature(&recoverable, &digest, &sender)
        .map_err(|e| failed("signature check")(e.to_string()))?;
    let (raw, _hash) = parsed.tx.encode_signed(&signature);
    compare(expected_signed_hex, hex::encode(raw))
}

/// BIP340 with the given secret key, aux_rand and message; the signature must also verify.
pub fn check_bip340(
    secret_hex: &str,
    aux_hex: &str,
    message_hex: &str,
    expected_signature_hex: &str,
) -> Result<(), SelfTestError> {
    let secret = SecretKey::from_slice(&hex32("secret key", secret_hex)?)
        .map_err(|e| failed("secret key")(e.to_string()))?;
    let aux = hex32("aux_rand", aux_hex)?;
    let message = Message::from_digest(hex32("message", message_hex)?);
    let keypair = Keypair::from_secret_key(secp(), &secret);
    let signature = secp().sign_schnorr_with_aux_rand(&message, &keypair, &aux);
    let (xonly, _) = keypair.x_only_public_key();
    secp()
        .verify_schnorr(&signature, &message, &xonly)
        .map_err(|e| failed("verification")(e.to_string()))?;
    compare(expected_signature_hex, hex::encode(signature.serialize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_answer_passes() {
        let report = run(&KNOWN_ANSWERS);
        for check in &report.checks {
            assert!(check.outcome.is_ok(), "{check}");
        }
        assert!(report.passed());
        assert_eq!(report.checks.len(), 4);
    }

    #[test]
    fn a_wrong_expected_value_fails_that_check_only() {
        let mut answers = KNOWN_ANSWERS;
        // One bit flipped in the last byte of the ECDSA signature.
        answers.ecdsa_der_hex = "30450221008a29cfe43acd235139d42d17813cb62f6bad89f8d1869080efaa7e02ef7b4b22\
                                 022035eb193ccac5cc6d7d0d145eeb322f703f44ea822e27865f3ab413b5ee6df950";
        let report = run(&answers);
        assert!(!report.passed());
        let failures: Vec<_> = report.failures().map(|c| c.name).collect();
        assert_eq!(failures, ["ecdsa-rfc6979"]);
        let text = report.checks[1].to_string();
        assert!(text.starts_with("FAIL  ecdsa-rfc6979"), "{text}");
        assert!(
            text.contains("expected") && text.contains("computed"),
            "{text}"
        );
    }

    #[test]
    fn each_check_fails_on_a_wrong_answer() {
        assert!(check_bip84("bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyv").is_err());
        assert!(check_eip155(
            KNOWN_ANSWERS.eip155_unsigned_hex,
            KNOWN_ANSWERS.eip155_key_hex,
            &KNOWN_ANSWERS.eip155_signed_hex.replace("6d83", "6d84"),
        )
        .is_err());
        assert!(check_bip340(
            KNOWN_ANSWERS.bip340_secret_hex,
            "0000000000000000000000000000000000000000000000000000000000000001",
            KNOWN_ANSWERS.bip340_message_hex,
            KNOWN_ANSWERS.bip340_signature_hex,
        )
        .is_err());
    }
}
