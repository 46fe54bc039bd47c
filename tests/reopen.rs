//! Closing and reopening the embedded databases in one process, many times over: each reopen must
//! find the previous instance's file lock released and every write it flushed, however busy the
//! machine is (a reopen that finds the lock still held was a flaky failure of the restart steps
//! of the ledger's property test).

use custos::keys::{MnemonicSecret, Network, Purpose};
use custos::keystore::{KdfParams, KeyStore};
use custos::secret::SecretString;
use custos::state::auth::StateAuth;
use custos::state::{State, Tree};

const ROUNDS: usize = 200;
const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

fn secret(s: &str) -> SecretString {
    SecretString::new(s.into())
}

#[test]
fn key_store_reopens_two_hundred_times() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mnemonic = MnemonicSecret::parse(&secret(ABANDON)).unwrap();
    let weak = KdfParams::unsafe_weak(64, 1).unwrap();
    drop(KeyStore::create(&dir, &secret("pw"), weak, &mnemonic, &secret("")).unwrap());
    let regtest = Network::Bitcoin(bitcoin::Network::Regtest);
    for round in 0..ROUNDS {
        let store = KeyStore::open(&dir)
            .unwrap_or_else(|e| panic!("reopen {round} of the key store failed: {e}"));
        let unsealed = store.unseal(&secret("pw")).unwrap();
        assert_eq!(unsealed.wallets().unwrap().len(), round);
        unsealed
            .create_wallet(&format!("w{round}"), regtest, Purpose::Bip84, round as u32)
            .unwrap();
    }
    let store = KeyStore::open(&dir).unwrap();
    assert_eq!(
        store
            .unseal(&secret("pw"))
            .unwrap()
            .wallets()
            .unwrap()
            .len(),
        ROUNDS
    );
}

#[test]
fn state_database_reopens_two_hundred_times() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("state");
    let open = |round: u64| {
        let state = State::open_sled(&path)
            .unwrap_or_else(|e| panic!("reopen {round} of the state database failed: {e}"));
        state.set_auth(Some(StateAuth::new(custos::secret::Secret32::new([7; 32]))));
        state
    };
    for round in 0..ROUNDS as u64 {
        let state = open(round);
        let seen = state
            .get(Tree::Meta, b"rounds")
            .unwrap()
            .map(|v| u64::from_be_bytes(v.as_slice().try_into().expect("eight bytes")));
        assert_eq!(seen.unwrap_or(0), round);
        state
            .transact(|tx| tx.put(Tree::Meta, b"rounds", &(round + 1).to_be_bytes()))
            .unwrap();
        state.flush().unwrap();
    }
    let state = open(ROUNDS as u64);
    let v = state.get(Tree::Meta, b"rounds").unwrap().unwrap();
    assert_eq!(v.as_slice(), &(ROUNDS as u64).to_be_bytes());
}
