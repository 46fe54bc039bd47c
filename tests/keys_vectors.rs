//! Official BIP39 / BIP32 / BIP44-49-84-86 vectors against `custos::keys`, plus cross-checks with
//! independent implementations (the `bip32` crate for derivation, miniscript for descriptors, a
//! BIP380 checksum written here from the specification).
//! Sources of every data file: tests/data/keys/README.md.

use std::str::FromStr;

use custos::keys::path::parse_derivation_path;
use custos::keys::{AccountKey, AccountPath, Chain, MasterKey, MnemonicSecret, Network, Purpose};
use custos::secret::{SecretBytes, SecretString};
use serde_json::Value;

const TREZOR: &str = include_str!("data/keys/bip39-trezor-vectors.json");
const BIP32: &str = include_str!("data/keys/bip32-vectors.json");
const ACCOUNTS: &str = include_str!("data/keys/account-vectors.json");
const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

fn secret(s: &str) -> SecretString {
    SecretString::new(s.to_owned())
}

fn master_of(mnemonic: &str, passphrase: &str) -> MasterKey {
    let m = MnemonicSecret::parse(&secret(mnemonic)).unwrap();
    MasterKey::from_seed(&m.to_seed(&secret(passphrase))).unwrap()
}

#[test]
fn bip39_trezor_vectors() {
    let vectors: Value = serde_json::from_str(TREZOR).unwrap();
    let english = vectors["english"].as_array().unwrap();
    assert!(english.len() >= 24, "expected the full English vector set");
    for v in english {
        let entropy = hex::decode(v[0].as_str().unwrap()).unwrap();
        let phrase = v[1].as_str().unwrap();
        let seed = v[2].as_str().unwrap();
        let xprv = v[3].as_str().unwrap();

        let from_entropy = MnemonicSecret::from_entropy(SecretBytes::new(entropy.clone())).unwrap();
        assert_eq!(from_entropy.phrase().expose_secret(), phrase);

        let parsed = MnemonicSecret::parse(&secret(phrase)).unwrap();
        assert_eq!(parsed.entropy().expose_secret(), entropy.as_slice());
        let derived_seed = parsed.to_seed(&secret("TREZOR"));
        assert_eq!(hex::encode(derived_seed.expose_secret()), seed);

        let master = MasterKey::from_seed(&derived_seed).unwrap();
        assert_eq!(
            master
                .to_xprv_string(bitcoin::NetworkKind::Main)
                .expose_secret(),
            xprv
        );
    }
}

#[test]
fn bip32_valid_vectors() {
    let vectors: Value = serde_json::from_str(BIP32).unwrap();
    let valid = vectors["valid"].as_array().unwrap();
    assert_eq!(valid.len(), 4);
    for v in valid {
        let seed = SecretBytes::new(hex::decode(v["seed"].as_str().unwrap()).unwrap());
        let master = MasterKey::from_seed(&seed).unwrap();
        for chain in v["chains"].as_array().unwrap() {
            let path = parse_derivation_path(chain[0].as_str().unwrap()).unwrap();
            let node = master.derive(&path).unwrap();
            assert_eq!(
                node.to_xpub(bitcoin::NetworkKind::Main).to_string(),
                chain[1].as_str().unwrap(),
                "xpub at {}",
                chain[0]
            );
            assert_eq!(
                node.to_xprv_string(bitcoin::NetworkKind::Main)
                    .expose_secret(),
                chain[2].as_str().unwrap(),
                "xprv at {}",
                chain[0]
            );
            // Reading the serialized xprv back gives the same node.
            let again = MasterKey::from_xprv_str(&secret(chain[2].as_str().unwrap())).unwrap();
            assert_eq!(again.public_key(), node.public_key());
        }
    }
}

#[test]
fn bip32_vector_5_invalid_keys_are_rejected() {
    let vectors: Value = serde_json::from_str(BIP32).unwrap();
    let invalid = vectors["invalid"].as_array().unwrap();
    assert_eq!(invalid.len(), 16);
    let network = Network::Bitcoin(bitcoin::Network::Bitcoin);
    let path = AccountPath::new(network, Purpose::Bip84, 0).unwrap();
    for v in invalid {
        let key = v[0].as_str().unwrap();
        let reason = v[1].as_str().unwrap();
        assert!(
            MasterKey::from_xprv_str(&secret(key)).is_err(),
            "accepted as xprv: {key} ({reason})"
        );
        assert!(
            AccountKey::from_parts(network, path, Default::default(), key).is_err(),
            "accepted as xpub: {key} ({reason})"
        );
    }
}

#[test]
fn account_vectors_for_abandon_about() {
    let vectors: Value = serde_json::from_str(ACCOUNTS).unwrap();
    let master = master_of(vectors["mnemonic"].as_str().unwrap(), "");
    assert_eq!(master.fingerprint().to_string(), "73c5da0a");
    for a in vectors["accounts"].as_array().unwrap() {
        let chain = Chain::from_str(a["chain"].as_str().unwrap()).unwrap();
        let network = Network::parse(chain, a["network"].as_str().unwrap()).unwrap();
        let purpose = Purpose::try_from(a["purpose"].as_u64().unwrap() as u32).unwrap();
        let path =
            AccountPath::new(network, purpose, a["account"].as_u64().unwrap() as u32).unwrap();
        let account = AccountKey::from_master(&master, network, path).unwrap();
        if let Some(xpub) = a.get("account_xpub") {
            assert_eq!(
                account.slip132_xpub(),
                xpub.as_str().unwrap(),
                "{}",
                a["source"]
            );
        }
        for entry in a["addresses"].as_array().unwrap() {
            let change = entry[0].as_bool().unwrap();
            let index = entry[1].as_u64().unwrap() as u32;
            assert_eq!(
                account.address_string(change, index).unwrap(),
                entry[2].as_str().unwrap(),
                "{} {change}/{index}",
                a["source"]
            );
        }
        for entry in a
            .get("pubkeys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let change = entry[0].as_bool().unwrap();
            let index = entry[1].as_u64().unwrap() as u32;
            assert_eq!(
                account.public_key(change, index).unwrap().to_string(),
                entry[2].as_str().unwrap()
            );
        }
        for entry in a
            .get("internal_keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let change = entry[0].as_bool().unwrap();
            let index = entry[1].as_u64().unwrap() as u32;
            let key = account.public_key(change, index).unwrap();
            assert_eq!(
                key.x_only_public_key().0.to_string(),
                entry[2].as_str().unwrap()
            );
        }
    }
}

/// The `bip32` crate (a separate implementation on k256) derives the same keys.
#[test]
fn derivation_agrees_with_independent_bip32_crate() {
    let mnemonic = MnemonicSecret::parse(&secret(ABANDON)).unwrap();
    for passphrase in ["", "TREZOR", "correct horse battery staple"] {
        let seed = mnemonic.to_seed(&secret(passphrase));
        let master = MasterKey::from_seed(&seed).unwrap();
        for (network, purpose, account) in [
            (
                Network::Bitcoin(bitcoin::Network::Bitcoin),
                Purpose::Bip44,
                0,
            ),
            (
                Network::Bitcoin(bitcoin::Network::Bitcoin),
                Purpose::Bip49,
                1,
            ),
            (
                Network::Bitcoin(bitcoin::Network::Testnet),
                Purpose::Bip84,
                2,
            ),
            (
                Network::Bitcoin(bitcoin::Network::Signet),
                Purpose::Bip86,
                0,
            ),
            (Network::Ethereum { chain_id: 1 }, Purpose::Bip44, 0),
            (
                Network::Ethereum {
                    chain_id: 11_155_111,
                },
                Purpose::Bip44,
                5,
            ),
        ] {
            let path = AccountPath::new(network, purpose, account).unwrap();
            let ours = AccountKey::from_master(&master, network, path).unwrap();
            for (change, index) in [(false, 0), (false, 7), (true, 3)] {
                let full = path.child(change, index).to_string();
                let theirs = bip32::XPrv::derive_from_path(
                    seed.expose_secret(),
                    &format!("m/{full}").parse().unwrap(),
                )
                .unwrap();
                let theirs_pub = theirs.public_key().to_bytes();
                assert_eq!(
                    ours.public_key(change, index).unwrap().serialize(),
                    theirs_pub,
                    "{network:?} {full}"
                );
            }
        }
    }
    // The Ethereum address of m/44'/60'/0'/0/0 from the independent derivation.
    let seed = mnemonic.to_seed(&secret(""));
    let key =
        bip32::XPrv::derive_from_path(seed.expose_secret(), &"m/44'/60'/0'/0/0".parse().unwrap())
            .unwrap();
    let point = key.public_key().public_key().to_encoded_point(false);
    let address = alloy_primitives::Address::from_raw_public_key(&point.as_bytes()[1..]);
    assert_eq!(
        address.to_checksum(None),
        "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
    );
}

/// BIP380 descriptor checksum, written here from the specification (independent of miniscript).
fn bip380_checksum(desc: &str) -> String {
    const INPUT: &str = "0123456789()[],'/*abcdefgh@:$%{}IJKLMNOPQRSTUVWXYZ&+-.;<=>?!^_|~ijklmnopqrstuvwxyzABCDEFGH`#\"\\ ";
    const CHARS: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    fn polymod(c: u64, val: u64) -> u64 {
        let c0 = c >> 35;
        let mut c = ((c & 0x7ffffffff) << 5) ^ val;
        for (bit, k) in [
            0xf5dee51989u64,
            0xa9fdca3312,
            0x1bab10e32d,
            0x3706b1677a,
            0x644d626ffd,
        ]
        .iter()
        .enumerate()
        {
            if c0 & (1 << bit) != 0 {
                c ^= k;
            }
        }
        c
    }
    let (mut c, mut cls, mut clscount) = (1u64, 0u64, 0);
    for ch in desc.chars() {
        let pos = INPUT.find(ch).expect("descriptor character") as u64;
        c = polymod(c, pos & 31);
        cls = cls * 3 + (pos >> 5);
        clscount += 1;
        if clscount == 3 {
            c = polymod(c, cls);
            cls = 0;
            clscount = 0;
        }
    }
    if clscount > 0 {
        c = polymod(c, cls);
    }
    for _ in 0..8 {
        c = polymod(c, 0);
    }
    c ^= 1;
    (0..8)
        .map(|j| CHARS[((c >> (5 * (7 - j))) & 31) as usize] as char)
        .collect()
}

#[test]
fn descriptors_have_key_origin_valid_checksum_and_derive_our_addresses() {
    use miniscript::{Descriptor, DescriptorPublicKey};
    let master = master_of(ABANDON, "");
    for (network, purpose, prefix) in [
        (
            bitcoin::Network::Bitcoin,
            Purpose::Bip44,
            "pkh([73c5da0a/44'/0'/0']xpub",
        ),
        (
            bitcoin::Network::Bitcoin,
            Purpose::Bip49,
            "sh(wpkh([73c5da0a/49'/0'/0']xpub",
        ),
        (
            bitcoin::Network::Bitcoin,
            Purpose::Bip84,
            "wpkh([73c5da0a/84'/0'/0']xpub",
        ),
        (
            bitcoin::Network::Bitcoin,
            Purpose::Bip86,
            "tr([73c5da0a/86'/0'/0']xpub",
        ),
        (
            bitcoin::Network::Testnet,
            Purpose::Bip84,
            "wpkh([73c5da0a/84'/1'/0']tpub",
        ),
        (
            bitcoin::Network::Regtest,
            Purpose::Bip86,
            "tr([73c5da0a/86'/1'/0']tpub",
        ),
    ] {
        let net = Network::Bitcoin(network);
        let account =
            AccountKey::from_master(&master, net, AccountPath::new(net, purpose, 0).unwrap())
                .unwrap();
        for change in [false, true] {
            let text = account.descriptor(change).unwrap();
            assert!(text.starts_with(prefix), "{text}");
            let (body, checksum) = text.split_once('#').unwrap();
            assert!(body.contains(&format!("/{}/*", u8::from(change))), "{text}");
            assert_eq!(bip380_checksum(body), checksum, "{text}");
            let parsed = Descriptor::<DescriptorPublicKey>::from_str(&text).unwrap();
            for index in 0..5 {
                let derived = parsed.at_derivation_index(index).unwrap();
                assert_eq!(
                    derived.address(network).unwrap().to_string(),
                    account.address_string(change, index).unwrap()
                );
            }
        }
    }
    let eth = Network::Ethereum { chain_id: 1 };
    let account = AccountKey::from_master(
        &master,
        eth,
        AccountPath::new(eth, Purpose::Bip44, 0).unwrap(),
    )
    .unwrap();
    assert!(account.descriptor(false).is_err());
}

#[test]
fn slip132_prefixes_per_purpose_and_network() {
    let master = master_of(ABANDON, "");
    for (network, purpose, prefix) in [
        (bitcoin::Network::Bitcoin, Purpose::Bip44, "xpub"),
        (bitcoin::Network::Bitcoin, Purpose::Bip49, "ypub"),
        (bitcoin::Network::Bitcoin, Purpose::Bip84, "zpub"),
        (bitcoin::Network::Bitcoin, Purpose::Bip86, "xpub"),
        (bitcoin::Network::Testnet, Purpose::Bip44, "tpub"),
        (bitcoin::Network::Signet, Purpose::Bip49, "upub"),
        (bitcoin::Network::Regtest, Purpose::Bip84, "vpub"),
        (bitcoin::Network::Testnet, Purpose::Bip86, "tpub"),
    ] {
        let net = Network::Bitcoin(network);
        let account =
            AccountKey::from_master(&master, net, AccountPath::new(net, purpose, 0).unwrap())
                .unwrap();
        assert!(
            account.slip132_xpub().starts_with(prefix),
            "{network} {purpose}"
        );
        assert!(account
            .standard_xpub()
            .starts_with(if network == bitcoin::Network::Bitcoin {
                "xpub"
            } else {
                "tpub"
            }));
    }
}

#[test]
fn coin_type_is_1_on_every_test_network() {
    for network in ["testnet", "signet", "regtest"] {
        let net = Network::parse(Chain::Bitcoin, network).unwrap();
        for purpose in [
            Purpose::Bip44,
            Purpose::Bip49,
            Purpose::Bip84,
            Purpose::Bip86,
        ] {
            let path = AccountPath::new(net, purpose, 0).unwrap();
            assert_eq!(path.coin_type, 1);
        }
    }
}
