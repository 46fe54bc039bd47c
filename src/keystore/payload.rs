//! What sealed records hold once decrypted: a seed (BIP39 entropy and optional BIP39 passphrase)
//! or a wallet (public account data, sealed so that a tampered store cannot swap an xpub).
//!
//! Seed payload, version 1: `1 ‖ entropy length (u8: 16, 20, 24, 28 or 32) ‖ entropy ‖ passphrase
//! length (u16 BE) ‖ BIP39 passphrase (UTF-8)`. Built and parsed in zeroizing buffers only.
//!
//! Wallet payload, version 1: a JSON object (public data; JSON keeps it readable in a debugger and
//! extensible), see [`WalletPayload`].

use std::str::FromStr;

use bitcoin::bip32::Fingerprint;
use bitcoin::secp256k1::PublicKey;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::backend::SeedId;
use crate::keys::{AccountKey, AccountPath, Chain, MnemonicSecret, Network, Purpose};
use crate::secret::{SecretBytes, SecretString};
use crate::wallet::Wallet;

const SEED_PAYLOAD_VERSION: u8 = 1;
const WALLET_PAYLOAD_VERSION: u8 = 1;
/// The longest BIP39 passphrase the store accepts, in bytes.
pub const MAX_BIP39_PASSPHRASE: usize = 1024;

/// A decrypted seed: the mnemonic's entropy and the BIP39 passphrase.
pub struct SeedSecret {
    /// The mnemonic (as entropy).
    pub mnemonic: MnemonicSecret,
    /// The BIP39 passphrase ("25th word"), empty if none.
    pub bip39_passphrase: SecretString,
}

impl std::fmt::Debug for SeedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(crate::secret::REDACTED)
    }
}

/// Encodes a seed payload into a zeroizing buffer.
pub fn encode_seed(
    mnemonic: &MnemonicSecret,
    bip39_passphrase: &SecretString,
) -> Result<SecretBytes, String> {
    let entropy = mnemonic.entropy().expose_secret();
    let passphrase = bip39_passphrase.expose_secret().as_bytes();
    if passphrase.len() > MAX_BIP39_PASSPHRASE {
        return Err(format!(
            "the BIP39 passphrase is longer than {MAX_BIP39_PASSPHRASE} bytes"
        ));
    }
    let mut out = Zeroizing::new(Vec::with_capacity(4 + entropy.len() + passphrase.len()));
    out.push(SEED_PAYLOAD_VERSION);
    out.push(entropy.len() as u8);
    out.extend_from_slice(entropy);
    out.extend_from_slice(&(passphrase.len() as u16).to_be_bytes());
    out.extend_from_slice(passphrase);
    Ok(SecretBytes::from_slice(&out))
}

/// Decodes a seed payload. Errors describe the shape, never the content.
pub fn decode_seed(bytes: &SecretBytes) -> Result<SeedSecret, String> {
    let b = bytes.expose_secret();
    let version = *b.first().ok_or("empty seed payload")?;
    if version != SEED_PAYLOAD_VERSION {
        return Err(format!("unknown seed payload version {version}"));
    }
    let entropy_len = usize::from(*b.get(1).ok_or("truncated seed payload")?);
    let entropy = b.get(2..2 + entropy_len).ok_or("truncated seed payload")?;
    let mnemonic = MnemonicSecret::from_entropy(SecretBytes::from_slice(entropy))
        .map_err(|e| e.to_string())?;
    let at = 2 + entropy_len;
    let len_bytes = b.get(at..at + 2).ok_or("truncated seed payload")?;
    let pass_len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
    let pass = b
        .get(at + 2..at + 2 + pass_len)
        .ok_or("truncated seed payload")?;
    if b.len() != at + 2 + pass_len {
        return Err("unexpected bytes after the seed payload".into());
    }
    let pass = std::str::from_utf8(pass).map_err(|_| "the BIP39 passphrase is not UTF-8")?;
    Ok(SeedSecret {
        mnemonic,
        bip39_passphrase: SecretString::new(pass.to_owned()),
    })
}

/// A wallet as sealed in the store (version 1).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalletPayload {
    /// Payload version (1).
    pub version: u8,
    /// Wallet name (must equal the record id's name).
    pub name: String,
    /// Seed id.
    pub seed: String,
    /// `bitcoin` or `ethereum`.
    pub chain: Chain,
    /// Canonical network name ([`Network::name`]).
    pub network: String,
    /// 44, 49, 84 or 86.
    pub purpose: u32,
    /// Account index.
    pub account: u32,
    /// Master fingerprint, 8 hex digits.
    pub master_fingerprint: String,
    /// Account xpub in standard (xpub/tpub) form; absent for a generated wallet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xpub: Option<String>,
    /// The compressed public keys (hex) of a wallet whose keys were generated in an HSM, by
    /// address index; absent for an HD wallet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_keys: Option<Vec<String>>,
}

/// Encodes a wallet payload.
pub fn encode_wallet(wallet: &Wallet) -> Vec<u8> {
    let payload = WalletPayload {
        version: WALLET_PAYLOAD_VERSION,
        name: wallet.name.clone(),
        seed: wallet.seed.0.clone(),
        chain: wallet.chain(),
        network: wallet.network().name(),
        purpose: wallet.account.path.purpose.number(),
        account: wallet.account.path.account,
        master_fingerprint: wallet.account.master_fingerprint.to_string(),
        xpub: wallet.account.xpub().map(ToString::to_string),
        generated_keys: wallet
            .account
            .generated_keys()
            .map(|keys| keys.iter().map(ToString::to_string).collect()),
    };
    serde_json::to_vec(&payload).expect("a struct of strings and integers serializes")
}

/// Decodes a wallet payload stored under the wallet name `name`.
pub fn decode_wallet(name: &str, bytes: &[u8]) -> Result<Wallet, String> {
    let p: WalletPayload =
        serde_json::from_slice(bytes).map_err(|e| format!("wallet payload: {e}"))?;
    if p.version != WALLET_PAYLOAD_VERSION {
        return Err(format!("unknown wallet payload version {}", p.version));
    }
    if p.name != name {
        return Err("the wallet inside is named differently from its record".into());
    }
    let network = Network::parse(p.chain, &p.network).map_err(|e| e.to_string())?;
    let purpose = Purpose::try_from(p.purpose).map_err(|e| e.to_string())?;
    let path = AccountPath::new(network, purpose, p.account).map_err(|e| e.to_string())?;
    let fingerprint = Fingerprint::from_str(&p.master_fingerprint).map_err(|e| e.to_string())?;
    let account = match (&p.xpub, &p.generated_keys) {
        (Some(xpub), None) => {
            let account = AccountKey::from_parts(network, path, fingerprint, xpub)
                .map_err(|e| e.to_string())?;
            if account.xpub().map(|x| x.depth) != Some(3) {
                return Err("the account xpub is not at depth 3".into());
            }
            account
        }
        (None, Some(keys)) => {
            let keys = keys
                .iter()
                .map(|k| PublicKey::from_str(k).map_err(|e| format!("generated key {k}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            let account = AccountKey::generated(network, keys).map_err(|e| e.to_string())?;
            if account.path != path || account.master_fingerprint != fingerprint {
                return Err(
                    "the generated wallet's path or fingerprint does not match its keys".into(),
                );
            }
            account
        }
        _ => return Err("a wallet holds either an xpub or generated keys".into()),
    };
    let wallet = Wallet {
        name: p.name,
        seed: SeedId(p.seed),
        account,
    };
    if wallet.account.is_generated() {
        super::generated::check_generated(&wallet)?;
    }
    Ok(wallet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::MasterKey;

    #[test]
    fn seed_round_trip_and_damage() {
        let m = MnemonicSecret::from_entropy(SecretBytes::new(vec![9; 32])).unwrap();
        let p = SecretString::new("TREZOR".into());
        let bytes = encode_seed(&m, &p).unwrap();
        let back = decode_seed(&bytes).unwrap();
        assert_eq!(back.mnemonic.entropy(), m.entropy());
        assert_eq!(back.bip39_passphrase, p);
        let raw = bytes.expose_secret();
        for len in 0..raw.len() {
            assert!(decode_seed(&SecretBytes::from_slice(&raw[..len])).is_err());
        }
        let mut longer = raw.to_vec();
        longer.push(0);
        assert!(decode_seed(&SecretBytes::new(longer)).is_err());
    }

    #[test]
    fn wallet_round_trip() {
        let master = MasterKey::from_seed(&SecretBytes::new(vec![1; 64])).unwrap();
        for (network, purpose) in [
            (Network::Bitcoin(bitcoin::Network::Bitcoin), Purpose::Bip84),
            (Network::Bitcoin(bitcoin::Network::Signet), Purpose::Bip86),
            (Network::Ethereum { chain_id: 1 }, Purpose::Bip44),
            (Network::Ethereum { chain_id: 31337 }, Purpose::Bip44),
        ] {
            let path = AccountPath::new(network, purpose, 2).unwrap();
            let wallet = Wallet {
                name: "w".into(),
                seed: SeedId("0a0b0c0d".into()),
                account: AccountKey::from_master(&master, network, path).unwrap(),
            };
            let bytes = encode_wallet(&wallet);
            assert_eq!(decode_wallet("w", &bytes).unwrap(), wallet);
            assert!(decode_wallet("other", &bytes).is_err());
        }
        assert!(decode_wallet("w", b"{").is_err());
        assert!(decode_wallet("w", b"\xff\xfe").is_err());
    }
}
