//! The example exchange, served for attack tests: `custos dev env` with the example policy
//! (its wallets from the test mnemonic — dev keys, never funded) for the key store; a fresh PKI
//! from the development CA with a client certificate for each of the policy's principals **and for
//! principals the policy never names** (what any certificate from the company CA looks like to
//! the signer); the real signing core with chosen limits and state directory; the real server on
//! 127.0.0.1:0 over mutual TLS.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use custos::secret::SecretString;
use custos::service::devcerts::{write_file, write_issued, DevCa};
use custos::service::proto::admin_client::AdminClient;
use custos::service::proto::signer_client::SignerClient;
use custos::service::tls::client_tls;
use custos::service::{start_with, RunningServer, ServerOptions, TlsMaterial};
use custos::signing::input_limits::InputLimits;
use custos::signing::{CoreConfig, SigningCore};
use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};

use crate::served;

/// (client file stem, principal, whether the principal is a URI SAN).
pub const CLIENTS: [(&str, &str, bool); 9] = [
    ("withdrawals", "spiffe://exchange.example/withdrawals", true),
    ("treasury", "spiffe://exchange.example/treasury", true),
    (
        "market-maker",
        "spiffe://exchange.example/market-maker",
        true,
    ),
    ("alice", "spiffe://exchange.example/officers/alice", true),
    ("bob", "spiffe://exchange.example/officers/bob", true),
    ("ops-admin", "ops-admin.exchange.example", false),
    ("broadcaster", "broadcaster.exchange.example", false),
    // Certificates from the same CA that the policy gives no role at all.
    ("intruder", "spiffe://exchange.example/intruder", true),
    ("visitor", "visitor.exchange.example", false),
];

/// How to run the exchange.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The core's `[limits]`.
    pub limits: InputLimits,
    /// The state directory (default: `state` in the environment).
    pub state_dir: Option<PathBuf>,
    /// The gRPC message limit (default: the one `limits` implies).
    pub max_message_bytes: Option<usize>,
}

/// The environment, its core and its server.
pub struct Exchange {
    pub dir: tempfile::TempDir,
    pub env: PathBuf,
    pub pki: PathBuf,
    pub state_dir: PathBuf,
    pub options: Options,
    pub core: Arc<SigningCore>,
    pub server: RunningServer,
}

fn write_pki(dir: &Path) {
    let ca = DevCa::generate("exchange test CA").unwrap();
    write_file(&dir.join("ca.pem"), ca.cert_pem().as_bytes(), false).unwrap();
    let server = ca.server_cert(&["localhost", "127.0.0.1"]).unwrap();
    write_issued(dir, "server", &server).unwrap();
    for (stem, principal, uri) in CLIENTS {
        let issued = if uri {
            ca.client_cert(principal)
        } else {
            ca.client_cert_dns(principal)
        }
        .unwrap();
        write_issued(dir, stem, &issued).unwrap();
    }
}

fn open_core(env: &Path, state_dir: &Path, limits: &InputLimits) -> Arc<SigningCore> {
    let core = SigningCore::open(CoreConfig {
        limits: limits.clone(),
        ..CoreConfig::new(
            env.join("store"),
            state_dir.to_owned(),
            env.join("policy.toml"),
        )
    })
    .unwrap();
    let passphrase = std::fs::read_to_string(env.join("passphrase")).unwrap();
    core.unseal_with_passphrase(&SecretString::new(passphrase.trim().to_owned()))
        .unwrap();
    Arc::new(core)
}

async fn serve(pki: &Path, core: Arc<SigningCore>, options: &Options) -> RunningServer {
    let tls = TlsMaterial::load(
        &pki.join("server.pem"),
        &pki.join("server.key"),
        &pki.join("ca.pem"),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_options = ServerOptions {
        max_message_bytes: options
            .max_message_bytes
            .unwrap_or_else(|| options.limits.grpc_message_bytes()),
    };
    start_with(core, &tls, listener, None, server_options)
        .await
        .unwrap()
}

impl Exchange {
    pub async fn start(options: Options) -> Exchange {
        let dir = tempfile::tempdir().unwrap();
        let (env, _) = served::dev_env(dir.path(), None);
        let pki = dir.path().join("pki");
        write_pki(&pki);
        let state_dir = options
            .state_dir
            .clone()
            .unwrap_or_else(|| env.join("state"));
        let core = open_core(&env, &state_dir, &options.limits);
        let server = serve(&pki, core.clone(), &options).await;
        Exchange {
            dir,
            env,
            pki,
            state_dir,
            options,
            core,
            server,
        }
    }

    /// Stops the server and the core, then opens and unseals the core again (a restart of the
    /// process, minus the process) and serves it on a new port.
    pub async fn restart(self) -> Exchange {
        let Exchange {
            dir,
            env,
            pki,
            state_dir,
            options,
            core,
            server,
        } = self;
        server
            .shutdown_within(Duration::from_secs(5))
            .await
            .unwrap();
        drop(core);
        // The reopen waits (bounded) for the old instance's file locks (`custos::embedded_db`).
        let core = open_core(&env, &state_dir, &options.limits);
        let server = serve(&pki, core.clone(), &options).await;
        Exchange {
            dir,
            env,
            pki,
            state_dir,
            options,
            core,
            server,
        }
    }

    pub async fn channel(&self, client: &str) -> Channel {
        let material = TlsMaterial::load(
            &self.pki.join(format!("{client}.pem")),
            &self.pki.join(format!("{client}.key")),
            &self.pki.join("ca.pem"),
        )
        .unwrap();
        Endpoint::from_shared(format!("https://localhost:{}", self.server.addr.port()))
            .unwrap()
            .tls_config(client_tls(&material, "localhost"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("mutual TLS")
    }

    /// A Signer client; its decoding limit is raised so that the server's own limit is what
    /// answers oversized requests.
    pub async fn signer(&self, client: &str) -> SignerClient<Channel> {
        SignerClient::new(self.channel(client).await)
            .max_encoding_message_size(64 << 20)
            .max_decoding_message_size(64 << 20)
    }

    pub async fn admin(&self, client: &str) -> AdminClient<Channel> {
        AdminClient::new(self.channel(client).await)
    }

    /// Bytes of every file under the state directory.
    pub fn state_bytes(&self) -> u64 {
        dir_bytes(&self.state_dir)
    }
}

/// Bytes of every file under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            dir_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}
