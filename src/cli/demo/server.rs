//! The server steps of `custos demo`: the gRPC signer with the example policy
//! (`policies/exchange.toml`), driven over loopback mutual TLS as the exchange's services would
//! drive it.
//!
//! A second key store (`signer/store`, the same demo mnemonic) is sealed with the demo's KDF; a
//! development CA issues the server certificate and one client certificate per principal the
//! policy names (kept in memory: nothing here outlives the demo). The signing core opens it, the
//! server starts on 127.0.0.1:0, the admin creates the policy's wallets through `Admin`, and then:
//! the withdrawals service signs a PSBT and an Ethereum transfer, is refused by a limit; the
//! treasury asks for a move that two officers approve; the broadcaster streams the signed
//! transactions and acks; the server stops and the audit chain is verified. The policy's wallets
//! are on mainnet: demo keys, never fund them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};

use super::{field, Runner, WorkDir, DEMO_MNEMONIC, DEMO_PASSPHRASE};
use crate::cli::client::code_name;
use crate::cli::common::{keystore_error, with_spinner};
use crate::cli::dev::{plan_clients, plan_wallets, EXAMPLE_POLICY};
use crate::cli::sample::{eth_transfer, external_script, p2wpkh_psbt};
use crate::cli::CliError;
use crate::keys::{Chain, MnemonicSecret};
use crate::keystore::{KdfParams, KeyStore};
use crate::policy::Policy;
use crate::secret::SecretString;
use crate::service::devcerts::DevCa;
use crate::service::proto::admin_client::AdminClient;
use crate::service::proto::outbox_client::OutboxClient;
use crate::service::proto::signer_client::SignerClient;
use crate::service::proto::{
    self, sign_request::Payload, sign_response::Outcome, signed, AckRequest, ApproveRequest,
    BitcoinPsbtPayload, CreateWalletRequest, EthereumTransactionPayload, SignRequest, SignResponse,
    StatusRequest, StreamSignedRequest,
};
use crate::service::tls::client_tls;
use crate::service::{RunningServer, TlsMaterial};
use crate::signing::{CoreConfig, SigningCore};
use crate::state::audit::{self, VerifyOutcome};

/// How many steps [`run`] numbers.
pub(super) const STEPS: usize = 8;

const ETH: u128 = 1_000_000_000_000_000_000;
const ETH_PAYEE: &str = "0x3535353535353535353535353535353535353535";

/// The running signer and the certificates of the policy's principals.
struct Signer {
    core: Arc<SigningCore>,
    server: Option<RunningServer>,
    server_tls: TlsMaterial,
    /// File-style name (`withdrawals`, `officers-alice`) -> (principal, certificate, key).
    clients: BTreeMap<String, (String, TlsMaterial)>,
}

impl Signer {
    fn port(&self) -> u16 {
        self.server.as_ref().map_or(0, |s| s.addr.port())
    }

    async fn channel(&self, who: &str) -> Result<Channel, CliError> {
        let (_, tls) = self
            .clients
            .get(who)
            .ok_or_else(|| CliError::operational(format!("no certificate for {who}")))?;
        Endpoint::from_shared(format!("https://localhost:{}", self.port()))
            .map_err(CliError::operational)?
            .tls_config(client_tls(tls, "localhost"))
            .map_err(CliError::operational)?
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| CliError::operational(format!("cannot connect as {who}: {e}")))
    }

    async fn signer(&self, who: &str) -> Result<SignerClient<Channel>, CliError> {
        Ok(SignerClient::new(self.channel(who).await?))
    }

    fn principal<'a>(&'a self, who: &'a str) -> &'a str {
        self.clients.get(who).map_or(who, |(p, _)| p.as_str())
    }
}

/// Runs the server steps with `steps`' numbering.
pub(super) fn run(steps: &mut Runner, workdir: &WorkDir, kdf: KdfParams) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::operational(format!("cannot start the async runtime: {e}")))?;
    let mut signer = steps.run(
        "signer: the example policy, a dev CA, mTLS certificates, a key store",
        || setup(workdir, kdf),
    )?;
    steps.run(
        "signer: start the gRPC server on loopback (mutual TLS), create the wallets",
        || runtime.block_on(start(&mut signer)),
    )?;
    steps.run(
        "signer: the withdrawals service signs a Bitcoin PSBT",
        || runtime.block_on(sign_psbt(&signer)),
    )?;
    steps.run(
        "signer: the withdrawals service signs an Ethereum transfer",
        || runtime.block_on(sign_eth(&signer)),
    )?;
    steps.run("signer: a request refused by a limit", || {
        runtime.block_on(refused(&signer))
    })?;
    steps.run("signer: a treasury move approved by two officers", || {
        runtime.block_on(approved(&signer))
    })?;
    steps.run(
        "signer: the broadcaster streams the signed transactions",
        || runtime.block_on(broadcast(&signer)),
    )?;
    steps.run("signer: stop the server, verify the audit chain", || {
        runtime.block_on(stop_and_verify(&mut signer))
    })?;
    Ok(())
}

fn op(e: impl std::fmt::Display) -> CliError {
    CliError::operational(e)
}

/// A refusal as the client sees it: `PERMISSION_DENIED [code] message`.
fn status_line(status: &tonic::Status) -> String {
    format!("{} {}", code_name(status.code()), status.message())
}

fn setup(workdir: &WorkDir, kdf: KdfParams) -> Result<Signer, CliError> {
    let dir = workdir.path.join("signer");
    std::fs::create_dir_all(&dir).map_err(op)?;
    let policy_path = dir.join("policy.toml");
    std::fs::write(&policy_path, EXAMPLE_POLICY).map_err(op)?;
    let policy = Policy::from_toml(EXAMPLE_POLICY).map_err(op)?;
    field("policy", &format!("{} ({})", policy.name, policy.hash()));
    if let Some(description) = &policy.description {
        field("", description);
    }

    let ca = DevCa::generate("Custos demo CA").map_err(op)?;
    let mut clients = BTreeMap::new();
    for client in plan_clients(&policy) {
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
        bitcoin: Default::default(),
        limits: Default::default(),
    })
    .map_err(op)?;
    Ok(Signer {
        core: Arc::new(core),
        server: None,
        server_tls,
        clients,
    })
}

async fn start(signer: &mut Signer) -> Result<(), CliError> {
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

fn print_reply(reply: &SignResponse) {
    if let Some(decision) = &reply.decision {
        field(
            "decision",
            &format!("{:?} by rule '{}'", decision.outcome(), decision.rule),
        );
    }
    if let Some(intent) = &reply.intent {
        field("intent", &intent.summary);
    }
    match &reply.outcome {
        Some(Outcome::Signed(s)) => {
            match &s.result {
                Some(signed::Result::BitcoinTransaction(t)) => {
                    field(
                        "raw tx",
                        &format!(
                            "{}… ({} bytes)",
                            &t.raw_tx_hex[..32],
                            t.raw_tx_hex.len() / 2
                        ),
                    );
                    field("txid", &t.txid);
                }
                Some(signed::Result::EthereumTransaction(t)) => {
                    field(
                        "raw tx",
                        &format!(
                            "{}… ({} bytes)",
                            &t.raw_tx_hex[..32],
                            t.raw_tx_hex.len() / 2 - 1
                        ),
                    );
                    field("tx hash", &t.tx_hash);
                }
                other => field("signed", &format!("{other:?}")),
            }
            field("outbox", &format!("sequence {}", s.outbox_sequence));
        }
        Some(Outcome::Pending(p)) => {
            let quorum = p.quorum.clone().unwrap_or_default();
            field(
                "pending",
                &format!(
                    "needs {} approval(s) from role(s) {}",
                    quorum.required,
                    quorum.roles.join(", ")
                ),
            );
        }
        None => field("outcome", "none"),
    }
}

fn eth_request(id: &str, wallet: &str, nonce: u64, wei: u128) -> SignRequest {
    SignRequest {
        request_id: id.into(),
        wallet: wallet.into(),
        payload: Some(Payload::EthereumTransaction(EthereumTransactionPayload {
            unsigned_tx: eth_transfer(1, nonce, ETH_PAYEE, wei),
            address_index: None,
            replacement: false,
        })),
    }
}

async fn sign_psbt(signer: &Signer) -> Result<(), CliError> {
    // The watch-only side (the exchange's wallet software) knows btc-hot's xpub and writes the
    // PSBT: a made-up 0.01 BTC coin, 0.0025 BTC out, change back, 20 sat/vB.
    let wallet = signer
        .core
        .keys()
        .and_then(|k| k.wallet("btc-hot"))
        .map_err(op)?;
    let psbt = p2wpkh_psbt(
        &wallet,
        1,
        1_000_000,
        &external_script(0x11),
        250_000,
        2_820,
    )?;
    println!("  As {}:", signer.principal("withdrawals"));
    println!("  Signer.Sign {{ request_id: \"withdrawal-1\", wallet: \"btc-hot\", psbt }}");
    let request = SignRequest {
        request_id: "withdrawal-1".into(),
        wallet: "btc-hot".into(),
        payload: Some(Payload::BitcoinPsbt(BitcoinPsbtPayload {
            psbt: psbt.serialize(),
        })),
    };
    let mut client = signer.signer("withdrawals").await?;
    let reply = client
        .sign(request.clone())
        .await
        .map_err(|s| op(status_line(&s)))?
        .into_inner();
    print_reply(&reply);
    let again = client
        .sign(request)
        .await
        .map_err(|s| op(status_line(&s)))?
        .into_inner();
    if again.outcome != reply.outcome {
        return Err(op("a retry of the same request id answered differently"));
    }
    println!("  Retried with the same request id: the same transaction, signed and counted once.");
    Ok(())
}

async fn sign_eth(signer: &Signer) -> Result<(), CliError> {
    println!("  As {}:", signer.principal("withdrawals"));
    println!("  Signer.Sign {{ request_id: \"withdrawal-2\", wallet: \"eth-hot\", EIP-1559: 1 ETH, nonce 0 }}");
    let reply = signer
        .signer("withdrawals")
        .await?
        .sign(eth_request("withdrawal-2", "eth-hot", 0, ETH))
        .await
        .map_err(|s| op(status_line(&s)))?
        .into_inner();
    print_reply(&reply);
    Ok(())
}

async fn refused(signer: &Signer) -> Result<(), CliError> {
    println!("  60 ETH from eth-hot, whose rule allows at most 50 ETH per transaction:");
    let err = match signer
        .signer("withdrawals")
        .await?
        .sign(eth_request("withdrawal-3", "eth-hot", 1, 60 * ETH))
        .await
    {
        Ok(reply) => return Err(op(format!("not refused: {reply:?}"))),
        Err(status) => status,
    };
    if err.code() != tonic::Code::PermissionDenied {
        return Err(op(format!("refused otherwise: {}", status_line(&err))));
    }
    field("refused", &status_line(&err));
    let meta = |key: &str| {
        err.metadata()
            .get(key)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    field("custos-code", &meta("custos-code"));
    field("custos-rule", &meta("custos-rule"));
    println!("  The stable code is in the status metadata for programs, and in the message.");
    Ok(())
}

async fn approved(signer: &Signer) -> Result<(), CliError> {
    println!(
        "  As {}: 100 ETH out of eth-treasury",
        signer.principal("treasury")
    );
    let mut treasury = signer.signer("treasury").await?;
    let reply = treasury
        .sign(eth_request("treasury-1", "eth-treasury", 0, 100 * ETH))
        .await
        .map_err(|s| op(status_line(&s)))?
        .into_inner();
    print_reply(&reply);
    if !matches!(reply.outcome, Some(Outcome::Pending(_))) {
        return Err(op("the treasury move was not held for approval"));
    }
    let approve = |who: &'static str| async move {
        signer
            .signer(who)
            .await?
            .approve(ApproveRequest {
                request_id: "treasury-1".into(),
                reason: "matches the treasury ticket".into(),
            })
            .await
            .map(|r| r.into_inner().request.unwrap_or_default())
            .map_err(|s| op(status_line(&s)))
    };
    match approve("treasury").await {
        Err(e) => field(
            "treasury",
            &format!("approves its own request: {}", e.message),
        ),
        Ok(_) => return Err(op("the requester approved its own request")),
    }
    let first = approve("officers-alice").await?;
    field(
        "officer alice",
        &format!(
            "approves: {:?}, {} of 2",
            first.state(),
            first.pending.map_or(0, |p| p.approvals.len())
        ),
    );
    let second = approve("officers-bob").await?;
    field("officer bob", &format!("approves: {:?}", second.state()));
    if second.state() != proto::RequestState::Signed {
        return Err(op("two approvals did not sign the request"));
    }
    if let Some(signed::Result::EthereumTransaction(t)) = second.result.and_then(|r| r.result) {
        field("tx hash", &t.tx_hash);
    }
    Ok(())
}

async fn broadcast(signer: &Signer) -> Result<(), CliError> {
    println!(
        "  As {}: Outbox.StreamSigned from sequence 0",
        signer.principal("broadcaster")
    );
    let mut outbox = OutboxClient::new(signer.channel("broadcaster").await?);
    let mut stream = outbox
        .stream_signed(StreamSignedRequest {
            after_sequence: Some(0),
        })
        .await
        .map_err(|s| op(status_line(&s)))?
        .into_inner();
    let mut last = 0;
    for _ in 0..3 {
        let entry = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .map_err(|_| op("the outbox stream stalled"))?
            .ok_or_else(|| op("the outbox stream ended"))?
            .map_err(|s| op(status_line(&s)))?;
        field(
            &format!("entry {}", entry.sequence),
            &format!(
                "{:<13} {:<12} {} {}",
                entry.request_id, entry.wallet, entry.network, entry.tx_id
            ),
        );
        last = entry.sequence;
    }
    drop(stream);
    let ack = outbox
        .ack(AckRequest { sequence: last })
        .await
        .map_err(|s| op(status_line(&s)))?
        .into_inner();
    field(
        "Outbox.Ack",
        &format!(
            "acked {} of {}: a restarted broadcaster resumes after it",
            ack.acked_sequence, ack.head_sequence
        ),
    );
    Ok(())
}

async fn stop_and_verify(signer: &mut Signer) -> Result<(), CliError> {
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
        field(&format!("record {}", r.seq), &line);
    }
    println!("  Every record is chained and keyed with the store's audit key: rewriting history");
    println!("  needs the seal. `custos audit verify` does the same check offline.");
    Ok(())
}
