//! The signer's life in the demo: the environment (the example policy, a development CA, one
//! client certificate per principal, a sealed key store, the signing core), the server's start on
//! loopback with the policy's wallets created through `Admin`, and at the end its stop and the
//! verification of the audit chain it wrote.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::{op, status_line, Signer};
use crate::cli::common::{keystore_error, with_spinner};
use crate::cli::demo::{field, WorkDir, DEMO_MNEMONIC, DEMO_PASSPHRASE};
use crate::cli::dev::governance as dev_governance;
use crate::cli::dev::{plan_clients, plan_wallets, EXAMPLE_POLICY};
use crate::cli::CliError;
use crate::keys::{Chain, MnemonicSecret};
use crate::keystore::{KdfParams, KeyStore};
use crate::policy::Policy;
use crate::secret::SecretString;
use crate::service::devcerts::DevCa;
use crate::service::proto::admin_client::AdminClient;
use crate::service::proto::signer_client::SignerClient;
use crate::service::proto::{self, CreateWalletRequest, StatusRequest};
use crate::service::TlsMaterial;
use crate::signing::{CoreConfig, SigningCore};
use crate::state::audit::{self, VerifyOutcome};

pub(super) fn setup(workdir: &WorkDir, kdf: KdfParams) -> Result<Signer, CliError> {
    let dir = workdir.path.join("signer");
    std::fs::create_dir_all(&dir).map_err(op)?;
    let policy_path = dir.join("policy.toml");
    // Fresh keys for the approvers, enrolled in the policy; two compliance officers sign it.
    let approvers =
        dev_governance::generate_approvers(&dev_governance::approver_principals(EXAMPLE_POLICY)?)?;
    let policy_text = dev_governance::with_approver_keys(EXAMPLE_POLICY, &approvers);
    std::fs::write(&policy_path, &policy_text).map_err(op)?;
    let policy = Policy::from_toml(&policy_text).map_err(op)?;
    field("policy", &format!("{} ({})", policy.name, policy.hash()));
    if let Some(description) = &policy.description {
        field("", description);
    }
    for a in &approvers {
        field(
            "approver key",
            &format!("{}  {}", a.principal, a.key.public()),
        );
    }
    let officers = dev_governance::generate_officers()?;
    dev_governance::sign_policy(&policy_path, &policy.hash(), &officers)?;
    let trust = dev_governance::trust_of(&officers);
    let report = trust.check(
        &policy.hash(),
        crate::governance::policy_sig::SignatureFile::read(
            &crate::governance::policy_sig::signature_path(&policy_path),
        )
        .map_err(op)?
        .as_ref(),
    );
    field("compliance", &report.summary());
    println!("  Each approver holds their own key; a vote counts only as a signature by it. The");
    println!("  policy takes effect only with the signatures of both compliance officers.");

    let ca = DevCa::generate("Custos demo CA").map_err(op)?;
    let mut clients = BTreeMap::new();
    let mut approver_keys = BTreeMap::new();
    let mut approvers = approvers;
    for client in plan_clients(&policy) {
        if let Some(i) = approvers
            .iter()
            .position(|a| a.principal == client.principal)
        {
            approver_keys.insert(client.name.clone(), approvers.swap_remove(i).key);
        }
        let issued = if client.uri {
            ca.client_cert(&client.principal)
        } else {
            ca.client_cert_dns(&client.principal)
        }
        .map_err(op)?;
        let roles: Vec<&str> = policy
            .roles_of(&client.principal)
            .into_iter()
            .collect::<Vec<_>>();
        field(
            "certificate",
            &format!(
                "{:<15} {}  roles: {}",
                client.name,
                client.principal,
                roles.join(", ")
            ),
        );
        clients.insert(
            client.name.clone(),
            (
                client.principal.clone(),
                TlsMaterial {
                    cert_pem: issued.cert_pem.into_bytes(),
                    key_pem: issued.key_pem.expose_secret().as_bytes().to_vec(),
                    ca_pem: ca.cert_pem().as_bytes().to_vec(),
                },
            ),
        );
    }
    let server = ca.server_cert(&["localhost", "127.0.0.1"]).map_err(op)?;
    let server_tls = TlsMaterial {
        cert_pem: server.cert_pem.into_bytes(),
        key_pem: server.key_pem.expose_secret().as_bytes().to_vec(),
        ca_pem: ca.cert_pem().as_bytes().to_vec(),
    };
    println!("  One development CA signs the server's certificate and one client certificate per");
    println!("  principal: the certificate's identity is who the policy sees.");

    let mnemonic = MnemonicSecret::parse(&SecretString::new(DEMO_MNEMONIC.into())).map_err(op)?;
    let store = with_spinner("sealing the signer's key store (argon2id)…", || {
        KeyStore::create(
            &dir.join("store"),
            &SecretString::new(DEMO_PASSPHRASE.into()),
            kdf,
            &mnemonic,
            &SecretString::new(String::new()),
        )
    })
    .map_err(keystore_error)?;
    drop(store);
    field(
        "key store",
        &format!("{} (the demo mnemonic again)", dir.join("store").display()),
    );

    let core = SigningCore::open(CoreConfig {
        store_dir: dir.join("store"),
        state_dir: dir.join("state"),
        policy_path,
        policy_trust: trust,
        ..CoreConfig::new(Default::default(), Default::default(), Default::default())
    })
    .map_err(op)?;
    Ok(Signer {
        core: Arc::new(core),
        server: None,
        server_tls,
        clients,
        approver_keys,
        policy,
        dir: workdir.path.clone(),
    })
}

pub(super) async fn start(signer: &mut Signer) -> Result<(), CliError> {
    let core = signer.core.clone();
    let state = tokio::task::spawn_blocking(move || {
        with_spinner("unsealing (argon2id)…", || {
            core.unseal_with_passphrase(&SecretString::new(DEMO_PASSPHRASE.into()))
        })
    })
    .await
    .map_err(op)?
    .map_err(op)?;
    field(
        "seal state",
        &format!("{} (the demo passphrase)", state.as_str()),
    );

    let listener = TcpListener::bind("127.0.0.1:0").await.map_err(op)?;
    let metrics = TcpListener::bind("127.0.0.1:0").await.map_err(op)?;
    let server = crate::service::start(
        signer.core.clone(),
        &signer.server_tls,
        listener,
        Some(metrics),
    )
    .await
    .map_err(op)?;
    field("listening", &format!("{} (mutual TLS)", server.addr));
    if let Some(addr) = server.metrics_addr {
        field("metrics", &format!("http://{addr}/metrics"));
    }
    signer.server = Some(server);

    let mut admin = AdminClient::new(signer.channel("ops-admin").await?);
    let status = admin
        .status(StatusRequest {})
        .await
        .map_err(|s| op(status_line(&s)))?
        .into_inner();
    field(
        "Admin.Status",
        &format!(
            "as {}: {:?}, policy {}",
            status.principal,
            status.seal_state(),
            status.policy_hash
        ),
    );

    let policy = Policy::from_toml(EXAMPLE_POLICY).map_err(op)?;
    let (wallets, _) = plan_wallets(&policy);
    for w in wallets {
        let chain = w.network.chain();
        let created = admin
            .create_wallet(CreateWalletRequest {
                name: w.name.clone(),
                chain: match chain {
                    Chain::Bitcoin => proto::Chain::Bitcoin,
                    Chain::Ethereum => proto::Chain::Ethereum,
                }
                .into(),
                network: w.network.name().to_owned(),
                purpose: match chain {
                    Chain::Bitcoin => 84,
                    Chain::Ethereum => 44,
                },
                account: w.account,
                seed: String::new(),
            })
            .await
            .map_err(|s| op(status_line(&s)))?
            .into_inner()
            .wallet
            .ok_or_else(|| op("CreateWallet answered without the wallet"))?;
        let address = SignerClient::new(signer.channel("ops-admin").await?)
            .get_address(proto::GetAddressRequest {
                wallet: w.name.clone(),
                index: 0,
                change: false,
            })
            .await
            .map_err(|s| op(status_line(&s)))?
            .into_inner()
            .address;
        field(
            "wallet",
            &format!(
                "{:<13} {} {} {}  {address}",
                created.name, chain, created.network, created.account_path
            ),
        );
    }
    println!("  Admin.CreateWallet, as ops-admin. The example policy's wallets are on MAINNET:");
    println!("  these are the demo keys, known to everyone. Never send real coins to them.");
    Ok(())
}

pub(super) async fn stop_and_verify(signer: &mut Signer) -> Result<(), CliError> {
    if let Some(server) = signer.server.take() {
        server
            .shutdown_within(Duration::from_secs(5))
            .await
            .map_err(op)?;
    }
    field("server", "stopped");
    let keys = signer.core.keys().map_err(op)?;
    let state = signer.core.state();
    match audit::verify(state, &keys.audit_key).map_err(op)? {
        VerifyOutcome::Intact { records } => {
            field("audit chain", &format!("intact: {records} records"))
        }
        VerifyOutcome::Broken { message, .. } => {
            return Err(op(format!("audit chain broken: {message}")))
        }
    }
    for r in audit::tail(state, 50).map_err(op)? {
        let mut line = format!("{:<14} by {}", r.event, r.principal);
        if let Some(id) = &r.request_id {
            line.push_str(&format!(" request={id}"));
        }
        if let Some(rule) = &r.rule {
            line.push_str(&format!(" rule='{rule}'"));
        }
        if r.event == "approve" {
            // The vote's key and signature are in the record itself.
            if let Some(detail) = &r.detail {
                let short: String = detail.chars().take(72).collect();
                line.push_str(&format!("\n{:>17}{short}…", ""));
            }
        }
        field(&format!("record {}", r.seq), &line);
    }
    println!("  Every record is chained and keyed with the store's audit key: rewriting history");
    println!("  needs the seal. `custos audit verify` does the same check offline.");
    Ok(())
}
