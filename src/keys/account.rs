//! The public face of one HD account: what a watch-only system may hold.
//!
//! - The account xpub in the form its purpose conventionally uses (SLIP-132): xpub/tpub for BIP44
//!   and BIP86, ypub/upub for BIP49, zpub/vpub for BIP84.
//! - Output descriptors with key origin (BIP380–386), `pkh(...)`, `sh(wpkh(...))`, `wpkh(...)`,
//!   `tr(...)`, with their checksum, through the `miniscript` crate so that Bitcoin Core and BDK
//!   read them as written. Descriptors always carry xpub/tpub: SLIP-132 prefixes are not valid there.
//! - Addresses: P2PKH, P2SH-P2WPKH, P2WPKH, P2TR (BIP86 key tweak, no script tree) on Bitcoin;
//!   EIP-55 checksummed addresses on Ethereum.
//!
//! Everything here is derived from the account xpub alone, so chains can check "is this script
//! really ours at this path?" without touching a private key.
//!
//! An account can also be a list of public keys generated inside an HSM ([`AccountKeys::Generated`],
//! `custos hsm keygen`): not HD, so it has no xpub and no descriptor, only the addresses of its
//! keys, by index, on the receive chain. Its path keeps the purpose and coin type (the script
//! type and the network's coin); its "master fingerprint" is the fingerprint of its first key.

use std::str::FromStr;

use bitcoin::base58;
use bitcoin::bip32::{ChildNumber, DerivationPath, Fingerprint, Xpub};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::PublicKey;
use bitcoin::{Address, CompressedPublicKey, NetworkKind, ScriptBuf};

use super::extended::{check_extended_key, ExtendedKind};
use super::path::{AccountPath, Purpose};
use super::secp;
use super::xpriv::MasterKey;
use crate::network::Network;

/// Why an account's public data could not be produced or read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccountKeyError {
    /// BIP32 derivation failed (an index at or above 2^31 on a public key, or an invalid child).
    #[error("bip32 derivation failed: {0}")]
    Derivation(String),
    /// The stored xpub text does not parse.
    #[error("invalid extended public key: {0}")]
    InvalidXpub(String),
    /// Descriptors exist only for Bitcoin accounts.
    #[error("{0} accounts have no output descriptor")]
    NoDescriptor(&'static str),
}

/// The most keys a generated (non-HD) account holds.
pub const MAX_GENERATED_KEYS: usize = 10_000;

/// Where an account's public keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountKeys {
    /// An HD account: the extended public key at the account path.
    Xpub(Xpub),
    /// Keys generated one by one inside an HSM, by address index (receive chain only).
    Generated(std::sync::Arc<Vec<PublicKey>>),
}

/// The public data of one account: network, path, master fingerprint, account xpub (or the
/// generated keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountKey {
    /// The wallet's network.
    pub network: Network,
    /// `m/purpose'/coin'/account'`.
    pub path: AccountPath,
    /// Fingerprint of the master key (the key origin); of the first key for generated accounts.
    pub master_fingerprint: Fingerprint,
    /// The account xpub, or the generated keys.
    pub keys: AccountKeys,
}

impl AccountKey {
    /// Derives the account's public data from the master key.
    pub fn from_master(
        master: &MasterKey,
        network: Network,
        path: AccountPath,
    ) -> Result<Self, AccountKeyError> {
        let node = master
            .derive(&path.to_derivation_path())
            .map_err(|e| AccountKeyError::Derivation(e.to_string()))?;
        Ok(AccountKey {
            network,
            path,
            master_fingerprint: master.fingerprint(),
            keys: AccountKeys::Xpub(node.to_xpub(network_kind(network))),
        })
    }

    /// A generated (non-HD) Ethereum account holding `keys` (address `i` is key `i`). Refuses
    /// Bitcoin networks (their wallets are HD: PSBT key origins and descriptors need an xpub),
    /// an empty list and more than [`MAX_GENERATED_KEYS`].
    pub fn generated(network: Network, keys: Vec<PublicKey>) -> Result<Self, AccountKeyError> {
        if !matches!(network, Network::Ethereum { .. }) {
            return Err(AccountKeyError::Derivation(
                "only ethereum accounts can hold generated (non-HD) keys".into(),
            ));
        }
        if keys.is_empty() || keys.len() > MAX_GENERATED_KEYS {
            return Err(AccountKeyError::Derivation(format!(
                "a generated account holds 1 to {MAX_GENERATED_KEYS} keys, not {}",
                keys.len()
            )));
        }
        let path = AccountPath::new(network, Purpose::Bip44, 0)
            .map_err(|e| AccountKeyError::Derivation(e.to_string()))?;
        let hash = bitcoin::hashes::hash160::Hash::hash(&keys[0].serialize());
        let mut fingerprint = [0u8; 4];
        fingerprint.copy_from_slice(&hash[..4]);
        Ok(AccountKey {
            network,
            path,
            master_fingerprint: Fingerprint::from(fingerprint),
            keys: AccountKeys::Generated(std::sync::Arc::new(keys)),
        })
    }

    /// The account xpub, for HD accounts.
    pub fn xpub(&self) -> Option<&Xpub> {
        match &self.keys {
            AccountKeys::Xpub(xpub) => Some(xpub),
            AccountKeys::Generated(_) => None,
        }
    }

    /// The generated keys, for accounts that are not HD.
    pub fn generated_keys(&self) -> Option<&[PublicKey]> {
        match &self.keys {
            AccountKeys::Xpub(_) => None,
            AccountKeys::Generated(keys) => Some(keys),
        }
    }

    /// The account path as listings show it, or `generated (N keys)` for a generated account.
    pub fn path_text(&self) -> String {
        match &self.keys {
            AccountKeys::Xpub(_) => self.path.to_string(),
            AccountKeys::Generated(keys) => format!("generated ({} keys)", keys.len()),
        }
    }

    /// Whether the account's keys were generated one by one (in an HSM) rather than derived.
    pub fn is_generated(&self) -> bool {
        matches!(self.keys, AccountKeys::Generated(_))
    }

    /// Rebuilds the public data from stored parts (the key store keeps the xpub in standard
    /// xpub/tpub form).
    pub fn from_parts(
        network: Network,
        path: AccountPath,
        master_fingerprint: Fingerprint,
        xpub: &str,
    ) -> Result<Self, AccountKeyError> {
        check_extended_key(xpub, ExtendedKind::Public).map_err(AccountKeyError::InvalidXpub)?;
        let xpub = Xpub::from_str(xpub).map_err(|e| AccountKeyError::InvalidXpub(e.to_string()))?;
        Ok(AccountKey {
            network,
            path,
            master_fingerprint,
            keys: AccountKeys::Xpub(xpub),
        })
    }

    /// The account xpub in standard BIP32 form (xpub on mainnet, tpub elsewhere); empty for a
    /// generated account, which has none.
    pub fn standard_xpub(&self) -> String {
        self.xpub().map(ToString::to_string).unwrap_or_default()
    }

    /// The account xpub with the SLIP-132 version its purpose conventionally uses; empty for a
    /// generated account, which has none.
    pub fn slip132_xpub(&self) -> String {
        let Some(xpub) = self.xpub() else {
            return String::new();
        };
        let mainnet = network_kind(self.network) == NetworkKind::Main;
        let version: [u8; 4] = match (self.path.purpose, mainnet) {
            (Purpose::Bip49, true) => [0x04, 0x9d, 0x7c, 0xb2], // ypub
            (Purpose::Bip49, false) => [0x04, 0x4a, 0x52, 0x62], // upub
            (Purpose::Bip84, true) => [0x04, 0xb2, 0x47, 0x46], // zpub
            (Purpose::Bip84, false) => [0x04, 0x5f, 0x1c, 0xf6], // vpub
            (_, true) => [0x04, 0x88, 0xb2, 0x1e],              // xpub
            (_, false) => [0x04, 0x35, 0x87, 0xcf],             // tpub
        };
        let mut bytes = xpub.encode();
        bytes[..4].copy_from_slice(&version);
        base58::encode_check(&bytes)
    }

    /// The key origin and key as descriptors write them: `[fingerprint/84'/0'/0']xpub…`.
    fn origin_key(&self, xpub: &Xpub) -> String {
        let path = self.path.to_string();
        format!(
            "[{}{}]{}",
            self.master_fingerprint,
            path.trim_start_matches('m'),
            xpub
        )
    }

    /// The output descriptor (with checksum) for the receive (`change == false`) or change chain.
    pub fn descriptor(&self, change: bool) -> Result<String, AccountKeyError> {
        if !matches!(self.network, Network::Bitcoin(_)) {
            return Err(AccountKeyError::NoDescriptor("ethereum"));
        }
        let Some(xpub) = self.xpub() else {
            return Err(AccountKeyError::NoDescriptor("generated (non-HD)"));
        };
        let key = format!("{}/{}/*", self.origin_key(xpub), u8::from(change));
        let body = match self.path.purpose {
            Purpose::Bip44 => format!("pkh({key})"),
            Purpose::Bip49 => format!("sh(wpkh({key}))"),
            Purpose::Bip84 => format!("wpkh({key})"),
            Purpose::Bip86 => format!("tr({key})"),
        };
        let descriptor = miniscript::Descriptor::<miniscript::DescriptorPublicKey>::from_str(&body)
            .map_err(|e| AccountKeyError::InvalidXpub(e.to_string()))?;
        Ok(descriptor.to_string())
    }

    /// The public key at `change/index` below the account.
    pub fn public_key(&self, change: bool, index: u32) -> Result<PublicKey, AccountKeyError> {
        let xpub = match &self.keys {
            AccountKeys::Xpub(xpub) => xpub,
            AccountKeys::Generated(keys) => {
                if change {
                    return Err(AccountKeyError::Derivation(
                        "a generated account has no change keys".into(),
                    ));
                }
                return keys.get(index as usize).copied().ok_or_else(|| {
                    AccountKeyError::Derivation(format!(
                        "index {index}: this account holds {} generated keys",
                        keys.len()
                    ))
                });
            }
        };
        let path = DerivationPath::from(vec![
            ChildNumber::from_normal_idx(u32::from(change))
                .map_err(|e| AccountKeyError::Derivation(e.to_string()))?,
            ChildNumber::from_normal_idx(index)
                .map_err(|e| AccountKeyError::Derivation(e.to_string()))?,
        ]);
        let child = xpub
            .derive_pub(secp(), &path)
            .map_err(|e| AccountKeyError::Derivation(e.to_string()))?;
        Ok(child.public_key)
    }

    /// The full derivation path of `change/index` from the master key.
    pub fn child_path(&self, change: bool, index: u32) -> DerivationPath {
        self.path.child(change, index)
    }

    /// The Bitcoin address at `change/index` (None for Ethereum accounts).
    pub fn bitcoin_address(
        &self,
        change: bool,
        index: u32,
    ) -> Result<Option<Address>, AccountKeyError> {
        let Network::Bitcoin(network) = self.network else {
            return Ok(None);
        };
        let key = CompressedPublicKey(self.public_key(change, index)?);
        Ok(Some(match self.path.purpose {
            Purpose::Bip44 => Address::p2pkh(key, network),
            Purpose::Bip49 => Address::p2shwpkh(&key, network),
            Purpose::Bip84 => Address::p2wpkh(&key, network),
            Purpose::Bip86 => Address::p2tr(secp(), key.0.x_only_public_key().0, None, network),
        }))
    }

    /// The Bitcoin scriptPubKey at `change/index` (None for Ethereum accounts).
    pub fn script_pubkey(
        &self,
        change: bool,
        index: u32,
    ) -> Result<Option<ScriptBuf>, AccountKeyError> {
        Ok(self
            .bitcoin_address(change, index)?
            .map(|a| a.script_pubkey()))
    }

    /// The Ethereum address at `m/44'/60'/account'/0/index` (None for Bitcoin accounts).
    pub fn ethereum_address(
        &self,
        index: u32,
    ) -> Result<Option<alloy_primitives::Address>, AccountKeyError> {
        if !matches!(self.network, Network::Ethereum { .. }) {
            return Ok(None);
        }
        let key = self.public_key(false, index)?;
        Ok(Some(ethereum_address_of(&key)))
    }

    /// The address at `change/index` as text: Bitcoin address, or EIP-55 Ethereum address (where
    /// `change` must be false: Ethereum has no change chain).
    pub fn address_string(&self, change: bool, index: u32) -> Result<String, AccountKeyError> {
        match self.network {
            Network::Bitcoin(_) => Ok(self
                .bitcoin_address(change, index)?
                .expect("bitcoin account")
                .to_string()),
            Network::Ethereum { .. } => {
                if change {
                    return Err(AccountKeyError::Derivation(
                        "ethereum accounts have no change addresses".into(),
                    ));
                }
                Ok(self
                    .ethereum_address(index)?
                    .expect("ethereum account")
                    .to_checksum(None))
            }
        }
    }
}

/// The Ethereum address of a secp256k1 public key: the last 20 bytes of keccak256 of the
/// uncompressed point without its 0x04 prefix.
pub fn ethereum_address_of(key: &PublicKey) -> alloy_primitives::Address {
    let uncompressed = key.serialize_uncompressed();
    alloy_primitives::Address::from_raw_public_key(&uncompressed[1..])
}

/// xpub (mainnet) or tpub (everything else, including EVM test networks: Ethereum has no
/// convention, and BIP32 tools expect xpub for mainnet).
fn network_kind(network: Network) -> NetworkKind {
    match network {
        Network::Bitcoin(n) => NetworkKind::from(n),
        Network::Ethereum { .. } => NetworkKind::Main,
    }
}
