//! Fuzz target: PSBT parsing, checks and intent extraction for a fixed wallet must never panic,
//! whatever the bytes (binary, base64 or hex text, truncated, hostile).
#![no_main]

use std::sync::OnceLock;

use custos::chains::bitcoin::{decode, SignOptions};
use custos::keys::{AccountKey, AccountPath, Chain, MasterKey, MnemonicSecret, Network, Purpose};
use custos::secret::SecretString;
use custos::wallet::Wallet;
use libfuzzer_sys::fuzz_target;

fn wallets() -> &'static [Wallet] {
    static WALLETS: OnceLock<Vec<Wallet>> = OnceLock::new();
    WALLETS.get_or_init(|| {
        let phrase = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
        let mnemonic = MnemonicSecret::parse(&SecretString::new(phrase.into())).expect("valid mnemonic");
        let master = MasterKey::from_seed(&mnemonic.to_seed(&SecretString::new(String::new())))
            .expect("valid seed");
        let network = Network::parse(Chain::Bitcoin, "regtest").expect("known network");
        [Purpose::Bip44, Purpose::Bip49, Purpose::Bip84, Purpose::Bip86]
            .into_iter()
            .map(|purpose| Wallet {
                name: format!("fuzz-{purpose}"),
                seed: custos::backend::SeedId("fuzz".into()),
                account: AccountKey::from_master(
                    &master,
                    network,
                    AccountPath::new(network, purpose, 0).expect("valid path"),
                )
                .expect("derivable account"),
            })
            .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let options = SignOptions::default();
    for wallet in wallets() {
        if let Ok(decoded) = decode(wallet, data, &options) {
            let intent = decoded.intent();
            // What decode accepts adds up: the amount is the sum of the destinations.
            let sum = intent
                .destinations
                .iter()
                .fold(custos::amount::Amount::ZERO, |a, d| a + d.amount);
            assert_eq!(sum, intent.amount);
            let _ = intent.summary();
        }
    }
});
