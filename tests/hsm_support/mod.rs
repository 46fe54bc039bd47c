//! SoftHSM2 for the HSM tests: one configuration per test process (SoftHSM2 reads it once, at
//! `C_Initialize`), a fresh token with its own label and PINs per test, and wallets from the
//! public test mnemonic. The tokens live in a temporary directory removed when the process ends
//! its tests (the directory handle is kept for the life of the process).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use custos::backend::pkcs11::module::Module;
use custos::backend::pkcs11::provision::{init_token, write_softhsm_config, SOFTHSM2_MODULE};
use custos::backend::pkcs11::{Pkcs11Backend, TokenSelector, TokenSettings};
use custos::backend::SeedId;
use custos::keys::{AccountKey, AccountPath, MasterKey, MnemonicSecret, Network, Purpose};
use custos::secret::SecretString;
use custos::wallet::Wallet;

/// The public test mnemonic (demo keys only).
pub const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

/// The SoftHSM2 token directory of this test process (created, and `SOFTHSM2_CONF` set, once).
pub fn softhsm_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let conf = write_softhsm_config(dir.path()).expect("softhsm2.conf");
        // Set before the module is loaded by any test of this process.
        std::env::set_var("SOFTHSM2_CONF", &conf);
        dir
    })
    .path()
}

/// A token made for one test.
pub struct TestToken {
    pub label: String,
    pub pin: String,
}

impl TestToken {
    /// Settings for this token with `sessions` pooled sessions.
    pub fn settings(&self, sessions: usize) -> TokenSettings {
        TokenSettings {
            module: PathBuf::from(SOFTHSM2_MODULE),
            token: TokenSelector::Label(self.label.clone()),
            pin: SecretString::new(self.pin.clone()),
            sessions,
        }
    }

    /// The backend on this token.
    pub fn backend(&self, sessions: usize) -> Arc<Pkcs11Backend> {
        Arc::new(Pkcs11Backend::open(self.settings(sessions)).expect("module loads"))
    }

    /// This token's directory under the token store (SoftHSM2 names it by a UUID; the token's
    /// label is in its `token.object`).
    pub fn directory(&self) -> PathBuf {
        let tokens = softhsm_dir().join("tokens");
        for entry in std::fs::read_dir(&tokens).unwrap() {
            let path = entry.unwrap().path();
            let object = std::fs::read(path.join("token.object")).unwrap_or_default();
            let padded = format!("{:<32}", self.label);
            if object.windows(padded.len()).any(|w| w == padded.as_bytes()) {
                return path;
            }
        }
        panic!("no directory for token {}", self.label);
    }
}

/// A new token labelled `<name>-<pid>-<n>` with random PINs, made as operators make one: by
/// `softhsm2-util --init-token` in another process. This process's module is then re-initialised
/// to see it (SoftHSM2 reads its token directory at `C_Initialize`); the other tests' sessions
/// reconnect transparently, which exercises the reconnection path on every token.
pub fn new_token(name: &str) -> TestToken {
    // One token initialisation at a time in this process: softhsm2-util reads every token
    // directory while it looks for a free slot, and a token another test is writing at that
    // moment makes it fail ("Could not get info about the token in slot N").
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (label, pin, so) = labels(name);
    // Other tests of this process write their tokens' object files meanwhile, which softhsm2-util
    // can meet half-written while it reads every token; it then fails before creating anything,
    // so a few attempts are safe (a token it did create would make the label appear twice).
    let mut out;
    let mut attempts = 0;
    loop {
        attempts += 1;
        out = std::process::Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", &label])
            .args(["--so-pin", &so, "--pin", &pin])
            .env("SOFTHSM2_CONF", softhsm_dir().join("softhsm2.conf"))
            .output()
            .expect("softhsm2-util runs (installed by .ci/install-tools)");
        let busy =
            String::from_utf8_lossy(&out.stderr).contains("Could not get info about the token");
        if out.status.success() || !busy || attempts == 5 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        out.status.success(),
        "softhsm2-util: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let module = Module::load(Path::new(SOFTHSM2_MODULE)).expect("module loads");
    module.reinitialize(module.generation());
    TestToken { label, pin }
}

/// A new token made inside this process (`C_InitToken`, `C_InitPIN`), as `custos dev env --hsm`
/// makes one.
pub fn new_token_in_process(name: &str) -> TestToken {
    let (label, pin, so) = labels(name);
    init_token(
        Path::new(SOFTHSM2_MODULE),
        &label,
        &SecretString::new(so),
        &SecretString::new(pin.clone()),
    )
    .expect("token initialised");
    TestToken { label, pin }
}

fn labels(name: &str) -> (String, String, String) {
    softhsm_dir();
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let label = format!("{name}-{}-{n}", std::process::id());
    assert!(label.len() <= 32, "token labels have at most 32 characters");
    let pin = format!("user-{:016x}", rand::random::<u64>());
    let so = format!("so-{:016x}", rand::random::<u64>());
    (label, pin, so)
}

/// The master key of the test mnemonic.
pub fn master() -> MasterKey {
    let m = MnemonicSecret::parse(&SecretString::new(ABANDON.into())).unwrap();
    MasterKey::from_seed(&m.to_seed(&SecretString::new(String::new()))).unwrap()
}

/// The seed id of the test mnemonic (its master fingerprint).
pub fn seed_id() -> SeedId {
    custos::keystore::seed_id_of(&master())
}

/// A wallet of the test mnemonic.
pub fn wallet(name: &str, network: Network, purpose: Purpose, account: u32) -> Wallet {
    let path = AccountPath::new(network, purpose, account).unwrap();
    Wallet {
        name: name.into(),
        seed: seed_id(),
        account: AccountKey::from_master(&master(), network, path).unwrap(),
    }
}
