//! Unsealing the signing core with Shamir shares, one `Admin.Unseal` call per custodian: each
//! share checked as it arrives and refused by name, progress (indexes, expiry) in the status,
//! partial progress forgotten when it expires (driven with an explicit clock, never by waiting)
//! or by a seal, and the completed unseal recorded — who gave which share — in the audit chain and
//! the store's ceremony log.

use std::path::{Path, PathBuf};

use custos::ceremony::{CeremonyEvent, Contribution};
use custos::keys::{MnemonicSecret, Network, Purpose};
use custos::keystore::{CeremonyDraft, InitialUnsealer, KeyStore, LogCheck};
use custos::secret::SecretString;
use custos::shares::text::{encode, parse};
use custos::shares::ShareValue;
use custos::signing::contract::{
    CoreError, Principal, PrincipalSource, Privilege, SealState, SignerCore, UnsealSecret,
};
use custos::signing::{now_unix, CoreConfig, SigningCore};
use custos::state::audit;
use custos::state::auth::StateAuth;
use custos::state::State;

const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
const C1: &str = "spiffe://t/custodians/c1";
const C2: &str = "spiffe://t/custodians/c2";
const C3: &str = "spiffe://t/custodians/c3";
const ADMIN: &str = "admin.t";
const OUTSIDER: &str = "spiffe://t/nobody";

fn principal(name: &str) -> Principal {
    let source = if name.contains("://") {
        PrincipalSource::SanUri
    } else {
        PrincipalSource::SanDns
    };
    Principal::new(name, source)
}

struct Env {
    _dir: tempfile::TempDir,
    store: PathBuf,
    state: PathBuf,
    policy: PathBuf,
    shares: Vec<SecretString>,
}

fn shares_store(dir: &Path, threshold: u8, count: u8) -> Vec<SecretString> {
    let mnemonic = MnemonicSecret::parse(&SecretString::new(ABANDON.into())).unwrap();
    let created = KeyStore::create_recorded(
        dir,
        &InitialUnsealer::Shares { threshold, count },
        &mnemonic,
        &SecretString::new(String::new()),
        |_| CeremonyDraft {
            at: now_unix(),
            operator: "test".into(),
            event: serde_json::json!({"event": "init"}),
        },
    )
    .unwrap();
    let texts: Vec<SecretString> = created
        .shares
        .as_ref()
        .unwrap()
        .texts()
        .iter()
        .map(SecretString::duplicate)
        .collect();
    // A wallet, created with the shares.
    let mut c = created.store.share_collector().unwrap();
    for t in texts.iter().take(usize::from(threshold)) {
        c.offer(t).unwrap();
    }
    let unsealed = created.store.unseal_with_shares(&c).unwrap();
    unsealed
        .create_wallet(
            "btc",
            Network::Bitcoin(bitcoin::Network::Regtest),
            Purpose::Bip84,
            0,
        )
        .unwrap();
    texts
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let shares = shares_store(&store, 2, 3);
        let policy = dir.path().join("policy.toml");
        std::fs::write(
            &policy,
            format!(
                r#"
[policy]
name = "custodians"
[roles]
custodian = ["{C1}", "{C2}", "{C3}"]
admin = ["{ADMIN}"]
"#
            ),
        )
        .unwrap();
        Env {
            state: dir.path().join("state"),
            store,
            policy,
            shares,
            _dir: dir,
        }
    }

    fn open(&self) -> SigningCore {
        SigningCore::open(CoreConfig::new(
            self.store.clone(),
            self.state.clone(),
            self.policy.clone(),
        ))
        .unwrap()
    }

    fn share(&self, i: usize) -> UnsealSecret {
        UnsealSecret::Share(self.shares[i - 1].duplicate())
    }
}

fn code(e: &CoreError) -> String {
    e.code().to_owned()
}

/// A well-formed share of `text`'s store and set whose value is not on the polynomial.
fn forged_from(text: &SecretString, index: u8) -> SecretString {
    let parsed = parse(text).unwrap();
    let value = ShareValue::from_parts(index, &[0x11; 32]).unwrap();
    encode(parsed.store_tag, parsed.set_id, parsed.threshold, &value)
}

#[tokio::test]
async fn custodians_unseal_one_share_each_and_bad_shares_are_named() {
    let env = Env::new();
    let core = env.open();
    let (c1, c2, c3) = (principal(C1), principal(C2), principal(C3));

    // Custodians may unseal and read the status; nothing else of the Admin service.
    core.authorize(&c1, Privilege::Unseal).unwrap();
    core.authorize(&principal(ADMIN), Privilege::Unseal)
        .unwrap();
    assert!(core.authorize(&c1, Privilege::Admin).is_err());
    assert!(core
        .authorize(&principal(OUTSIDER), Privilege::Unseal)
        .is_err());

    let status = core.status(&c1).await.unwrap();
    assert_eq!(status.seal, SealState::Sealed);
    assert_eq!(
        (
            status.unsealers.passphrase,
            status.unsealers.share_threshold,
            status.unsealers.share_count
        ),
        (false, 2, 3)
    );

    // A passphrase does not unseal a shares-only store.
    let err = core
        .unseal(&c1, UnsealSecret::Passphrase(SecretString::new("x".into())))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "no-passphrase");

    // The first share.
    let state = core.unseal(&c1, env.share(1)).await.unwrap();
    let SealState::Unsealing {
        given,
        threshold,
        indexes,
        expires_at,
    } = state
    else {
        panic!("{state:?}")
    };
    assert_eq!((given, threshold, indexes.to_vec()), (1, 2, vec![1]));
    assert!(expires_at > now_unix());
    assert_eq!(*core.seal_state().borrow(), state);

    // Refused, each by name, and the progress stays.
    // One character of group 16 changed.
    let mut groups: Vec<String> = env.shares[1]
        .expose_secret()
        .split(' ')
        .map(str::to_owned)
        .collect();
    let first = if groups[16].starts_with('q') {
        "p"
    } else {
        "q"
    };
    groups[16].replace_range(0..1, first);
    let typo = groups.join(" ");
    let err = core
        .unseal(&c2, UnsealSecret::Share(SecretString::new(typo)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CoreError::InvalidArgument { reason, .. } if reason.contains("group 16")),
        "{err}"
    );
    let other = tempfile::tempdir().unwrap();
    let foreign = shares_store(&other.path().join("s"), 2, 3);
    let err = core
        .unseal(&c2, UnsealSecret::Share(foreign[1].duplicate()))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "share-foreign-store", "{err}");
    let err = core
        .unseal(&c2, UnsealSecret::Share(forged_from(&env.shares[1], 2)))
        .await
        .unwrap_err();
    assert_eq!(code(&err), "share-forged", "{err}");
    assert!(err.to_string().contains("share 2"), "{err}");
    let err = core.unseal(&c2, env.share(1)).await.unwrap_err();
    assert_eq!(code(&err), "share-duplicate", "{err}");
    let status = core.status(&c2).await.unwrap();
    assert!(matches!(status.seal, SealState::Unsealing { given: 1, .. }));

    // The second custodian completes it.
    assert_eq!(
        core.unseal(&c3, env.share(3)).await.unwrap(),
        SealState::Unsealed
    );
    assert_eq!(*core.seal_state().borrow(), SealState::Unsealed);
    // A share after the unseal is not used and changes nothing.
    assert_eq!(
        core.unseal(&c2, env.share(2)).await.unwrap(),
        SealState::Unsealed
    );
    core.seal(&principal(ADMIN)).await.unwrap();
    drop(core);

    // The audit chain says who gave which share, and what was refused meanwhile.
    let unsealed = {
        let ks = KeyStore::open(&env.store).unwrap();
        let mut c = ks.share_collector().unwrap();
        c.offer(&env.shares[0]).unwrap();
        c.offer(&env.shares[1]).unwrap();
        ks.unseal_with_shares(&c).unwrap()
    };
    let state = State::open_sled(&env.state).unwrap();
    state.set_auth(Some(StateAuth::new(unsealed.state_key())));
    let records = audit::tail(&state, 50).unwrap();
    let unseal = records.iter().find(|r| r.event == "unseal").unwrap();
    let detail = unseal.detail.as_deref().unwrap();
    assert!(detail.contains(&format!("share 1 by {C1}")), "{detail}");
    assert!(detail.contains(&format!("share 3 by {C3}")), "{detail}");
    assert!(detail.contains("share-forged"), "{detail}");
    assert!(detail.contains("share-foreign-store"), "{detail}");
    assert_eq!(unseal.principal, C3);
    assert!(matches!(
        audit::verify(&state, &unsealed.audit_key()).unwrap(),
        audit::VerifyOutcome::Intact { .. }
    ));
    // The ceremony log has the unseal (with each contribution) and the seal, chain intact.
    let entries = unsealed.store().ceremony_entries().unwrap();
    let events: Vec<CeremonyEvent> = entries
        .iter()
        .filter_map(|e| serde_json::from_value(e.entry.event.clone()).ok())
        .collect();
    let contributions: Vec<(String, u8)> = events
        .iter()
        .find_map(|e| match e {
            CeremonyEvent::Unseal { contributions, .. } => Some(
                contributions
                    .iter()
                    .map(
                        |Contribution {
                             principal, index, ..
                         }| (principal.clone(), *index),
                    )
                    .collect(),
            ),
            _ => None,
        })
        .unwrap();
    assert_eq!(contributions, vec![(C1.into(), 1), (C3.into(), 3)]);
    assert!(events
        .iter()
        .any(|e| matches!(e, CeremonyEvent::Seal { .. })));
    assert!(matches!(
        unsealed.verify_ceremony_log().unwrap(),
        LogCheck::Intact { .. }
    ));
    // Nothing secret reached the records: no share text or value anywhere in them.
    let everything = format!(
        "{records:?}{}",
        serde_json::to_string(&entries.iter().map(|e| &e.entry).collect::<Vec<_>>()).unwrap()
    );
    for share in &env.shares {
        let value = hex::encode(*parse(share).unwrap().share.value_bytes());
        assert!(!everything.contains(&value));
        for group in share
            .expose_secret()
            .split(' ')
            .skip(1)
            .collect::<Vec<_>>()
            .chunks(3)
        {
            assert!(!everything.contains(&group.concat()));
        }
    }
}

#[tokio::test]
async fn partial_progress_expires_and_a_seal_forgets_it() {
    let env = Env::new();
    let core = env.open();
    core.set_share_timeout(600);
    let c1 = principal(C1);
    let state = core.unseal(&c1, env.share(2)).await.unwrap();
    let SealState::Unsealing { expires_at, .. } = state else {
        panic!("{state:?}")
    };
    // Before its time nothing expires; at its time it does (an explicit clock, no waiting).
    assert!(!core.expire_share_session(expires_at - 1));
    assert!(core.expire_share_session(expires_at));
    assert_eq!(*core.seal_state().borrow(), SealState::Sealed);
    assert_eq!(core.status(&c1).await.unwrap().seal, SealState::Sealed);
    // The share given before the expiry no longer counts: one more is not enough.
    let state = core.unseal(&principal(C2), env.share(3)).await.unwrap();
    assert!(
        matches!(state, SealState::Unsealing { given: 1, indexes, .. } if indexes.to_vec() == vec![3]),
        "{state:?}"
    );
    // A seal forgets the partial progress too.
    assert_eq!(core.seal(&c1).await.unwrap(), SealState::Sealed);
    let state = core.unseal(&c1, env.share(1)).await.unwrap();
    assert!(
        matches!(state, SealState::Unsealing { given: 1, .. }),
        "{state:?}"
    );
    assert_eq!(
        core.unseal(&principal(C3), env.share(2)).await.unwrap(),
        SealState::Unsealed
    );
}

/// Custodians racing: every share of the threshold sent at once from separate tasks; exactly the
/// threshold is used, the store ends unsealed, nobody gets an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_shares_unseal_once() {
    let env = Env::new();
    let core = std::sync::Arc::new(env.open());
    let mut tasks = Vec::new();
    for (i, who) in [(1, C1), (2, C2), (3, C3)] {
        let core = core.clone();
        let share = env.share(i);
        tasks.push(tokio::spawn(async move {
            core.unseal(&principal(who), share).await
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    for r in &results {
        assert!(
            matches!(
                r,
                Ok(SealState::Unsealed)
                    | Ok(SealState::Unsealing { .. })
                    | Err(CoreError::Precondition { .. })
            ),
            "{r:?}"
        );
    }
    assert!(results.iter().any(|r| matches!(r, Ok(SealState::Unsealed))));
    assert_eq!(*core.seal_state().borrow(), SealState::Unsealed);
}

/// A store without shares refuses a share by saying so, and a share of no store is mistyped.
#[tokio::test]
async fn a_passphrase_store_refuses_shares_by_name() {
    let env = Env::new();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mnemonic = MnemonicSecret::parse(&SecretString::new(ABANDON.into())).unwrap();
    KeyStore::create(
        &store,
        &SecretString::new("pw".into()),
        custos::keystore::KdfParams::unsafe_weak(64, 1).unwrap(),
        &mnemonic,
        &SecretString::new(String::new()),
    )
    .unwrap();
    let core = SigningCore::open(CoreConfig::new(
        store,
        dir.path().join("state"),
        env.policy.clone(),
    ))
    .unwrap();
    let err = core.unseal(&principal(C1), env.share(1)).await.unwrap_err();
    assert_eq!(code(&err), "no-shares", "{err}");
    assert_eq!(*core.seal_state().borrow(), SealState::Sealed);
    let status = core.status(&principal(C1)).await.unwrap();
    assert_eq!(
        (
            status.unsealers.passphrase,
            status.unsealers.share_threshold
        ),
        (true, 0)
    );
    assert_eq!(
        core.unseal(
            &principal(C1),
            UnsealSecret::Passphrase(SecretString::new("pw".into()))
        )
        .await
        .unwrap(),
        SealState::Unsealed
    );
}
