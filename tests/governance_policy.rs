//! A policy takes effect only with a threshold of compliance officers' signatures: the core
//! refuses to open without them (so `custos serve` refuses to start), and a reload — SIGHUP or
//! `Admin.ReloadPolicy` — without them keeps the running policy. Refusals say which keys signed
//! and how many are missing; the audit records the signers; development mode says so.

mod bitcoin_support;
mod core_support;

use core_support::*;
use custos::governance::policy_sig::{signature_path, Officer, PolicyTrust, SignatureFile};
use custos::governance::{Algorithm, SecretSigningKey};
use custos::policy::Policy;
use custos::signing::contract::SignerCore;
use custos::signing::policy_load::PolicyLoadError;
use custos::signing::{CoreConfig, SigningCore, SigningOpenError};
use custos::state::audit;

fn officer(seed: u8, alg: Algorithm) -> SecretSigningKey {
    SecretSigningKey::from_seed(alg, &[seed; 32]).unwrap()
}

struct Compliance {
    dana: SecretSigningKey,
    erin: SecretSigningKey,
    trust: PolicyTrust,
}

fn compliance() -> Compliance {
    let dana = officer(0xd1, Algorithm::Ed25519);
    let erin = officer(0xe1, Algorithm::P256);
    let trust = PolicyTrust::new(
        vec![
            Officer {
                name: "dana".into(),
                key: dana.public(),
            },
            Officer {
                name: "erin".into(),
                key: erin.public(),
            },
        ],
        2,
    )
    .unwrap();
    Compliance { dana, erin, trust }
}

fn sign(env: &Env, keys: &[&SecretSigningKey]) {
    let hash = Policy::load(&env.policy).unwrap().hash();
    let mut file = SignatureFile::new(&hash);
    for k in keys {
        file.sign(k, None);
    }
    file.write(&signature_path(&env.policy)).unwrap();
}

fn open(env: &Env, trust: &PolicyTrust) -> Result<SigningCore, SigningOpenError> {
    let mut config = CoreConfig::new(env.store.clone(), env.state.clone(), env.policy.clone());
    config.policy_trust = trust.clone();
    SigningCore::open(config)
}

fn refusal(r: Result<SigningCore, SigningOpenError>) -> String {
    match r {
        Err(SigningOpenError::Policy(e @ PolicyLoadError::Unsigned(_))) => e.to_string(),
        Err(other) => panic!("refused otherwise: {other}"),
        Ok(_) => panic!("opened"),
    }
}

#[test]
fn a_policy_without_its_signatures_is_refused_at_open() {
    let env = Env::new();
    let c = compliance();
    let why = refusal(open(&env, &c.trust));
    assert!(
        why.contains("0 valid compliance signature(s), 2 required: signed by nobody; 2 more needed (from dana, erin)"),
        "{why}"
    );
    assert!(why.contains("there is no signature file"), "{why}");

    // One officer, and a stranger who is not pinned.
    let stranger = officer(0x5e, Algorithm::Ed25519);
    sign(&env, &[&c.dana, &stranger]);
    let why = refusal(open(&env, &c.trust));
    assert!(why.contains("1 valid compliance signature(s), 2 required: signed by dana; 1 more needed (from erin)"), "{why}");
    assert!(why.contains("not pinned"), "{why}");

    // A signature file for another version of the policy.
    sign(&env, &[&c.dana, &c.erin]);
    let text = std::fs::read_to_string(&env.policy).unwrap();
    std::fs::write(
        &env.policy,
        text.replace("per_tx = \"1 ETH\"", "per_tx = \"100 ETH\""),
    )
    .unwrap();
    let why = refusal(open(&env, &c.trust));
    assert!(why.contains("changed after it was signed"), "{why}");

    // Both officers, over this version: it opens, and the unseal record names them.
    sign(&env, &[&c.dana, &c.erin]);
    let core = open(&env, &c.trust).unwrap();
    unseal(&core);
    let unseal_record = audit::tail(core.state(), 5)
        .unwrap()
        .into_iter()
        .find(|r| r.event == "unseal")
        .unwrap();
    assert!(unseal_record
        .detail
        .unwrap()
        .contains("policy signed by dana, erin (2 of 2 required)"),);
}

#[tokio::test]
async fn a_reload_needs_the_signatures_too() {
    let env = Env::new();
    let c = compliance();
    sign(&env, &[&c.dana, &c.erin]);
    let core = open(&env, &c.trust).unwrap();
    unseal(&core);
    let running = core.status(&principal(ADMIN)).await.unwrap().policy_hash;

    // A changed policy, not signed again: refused, the running policy stays.
    let text = std::fs::read_to_string(&env.policy).unwrap();
    let raised = text.replace("per_tx = \"1 ETH\"", "per_tx = \"100 ETH\"");
    std::fs::write(&env.policy, &raised).unwrap();
    let e = core
        .reload_policy_from_host("local:sighup")
        .await
        .unwrap_err();
    assert_eq!(e.code(), "policy-unsigned");
    assert!(e.to_string().contains("the running one stays"), "{e}");
    assert!(e.to_string().contains("changed after it was signed"), "{e}");
    let e = core.reload_policy(&principal(ADMIN)).await.unwrap_err();
    assert_eq!(e.code(), "policy-unsigned");
    assert_eq!(
        core.status(&principal(ADMIN)).await.unwrap().policy_hash,
        running
    );
    let refused = audit::tail(core.state(), 5)
        .unwrap()
        .into_iter()
        .filter(|r| r.event == "policy.reload.refused")
        .count();
    assert_eq!(refused, 2);

    // One signature of two: still refused, naming who is missing.
    sign(&env, &[&c.erin]);
    let e = core
        .reload_policy_from_host("local:sighup")
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("signed by erin; 1 more needed (from dana)"),
        "{e}"
    );

    // Both: it takes effect, and the audit names the signers.
    sign(&env, &[&c.dana, &c.erin]);
    let reload = core.reload_policy_from_host("local:sighup").await.unwrap();
    assert_ne!(Some(reload.hash.clone()), running);
    let record = audit::tail(core.state(), 1).unwrap().remove(0);
    assert_eq!(record.event, "policy.reload");
    assert!(record
        .detail
        .unwrap()
        .contains("policy signed by dana, erin (2 of 2 required)"));
}

#[test]
fn development_mode_loads_an_unsigned_policy_and_says_so() {
    let env = Env::new();
    // CoreConfig::new is development mode.
    let core = env.open();
    let record = audit::tail(core.state(), 5)
        .unwrap()
        .into_iter()
        .find(|r| r.event == "unseal")
        .unwrap();
    let detail = record.detail.unwrap();
    assert!(detail.contains("NOT signed by compliance"), "{detail}");
    assert!(detail.contains("DEVELOPMENT MODE"), "{detail}");
}
