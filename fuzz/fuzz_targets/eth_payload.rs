//! Arbitrary bytes into the Ethereum decoder, as each payload kind, for a fixed wallet: must never
//! panic (errors are fine).
#![no_main]

use std::sync::LazyLock;

use custos::assets::TokenRegistry;
use custos::backend::SeedId;
use custos::chains::ethereum::{decode, EthPayload};
use custos::keys::{AccountKey, AccountPath, MasterKey, MnemonicSecret, Network, Purpose};
use custos::secret::SecretString;
use custos::wallet::Wallet;
use libfuzzer_sys::fuzz_target;

static WALLET: LazyLock<Wallet> = LazyLock::new(|| {
    let mnemonic = MnemonicSecret::parse(&SecretString::new(
        "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
            .into(),
    ))
    .expect("valid test mnemonic");
    let master = MasterKey::from_seed(&mnemonic.to_seed(&SecretString::new(String::new())))
        .expect("valid seed");
    let network = Network::Ethereum { chain_id: 1 };
    let path = AccountPath::new(network, Purpose::Bip44, 0).expect("bip44 path");
    Wallet {
        name: "fuzz".into(),
        seed: SeedId("fuzz".into()),
        account: AccountKey::from_master(&master, network, path).expect("account"),
    }
});

static TOKENS: LazyLock<TokenRegistry> = LazyLock::new(TokenRegistry::well_known);

fuzz_target!(|data: &[u8]| {
    // The first byte picks the account index, so `from`/owner checks see other addresses too.
    let index = u32::from(data.first().copied().unwrap_or(0) % 3);
    for payload in [
        EthPayload::Transaction(data),
        EthPayload::TypedData(data),
        EthPayload::PersonalMessage(data),
    ] {
        if let Ok(decoded) = decode(&WALLET, index, payload, &TOKENS) {
            let _ = decoded.intent().summary();
        }
    }
});
