//! Shared helpers for gRPC tests: a development PKI in a temporary directory, an in-process
//! server on 127.0.0.1:0 with real mutual TLS, and clients with a chosen certificate.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use custos::service::devcerts::{dev_principal_uri, write_dev_pki, DevPkiPaths, DEV_PRINCIPALS};
use custos::service::{start, RunningServer, TlsMaterial};
use custos::signing::contract::SignerCore;
use tokio::net::TcpListener;
use tonic::transport::{Channel, Endpoint};

/// A PKI written into a temporary directory (deleted on drop).
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub paths: DevPkiPaths,
}

impl TestPki {
    /// A CA, a loopback server certificate and client certificates for the dev principals.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let clients: Vec<(String, String)> = DEV_PRINCIPALS
            .iter()
            .map(|name| ((*name).to_owned(), dev_principal_uri(name)))
            .collect();
        let paths = write_dev_pki(dir.path(), &clients).expect("dev PKI");
        TestPki { dir, paths }
    }

    /// The server's TLS material.
    pub fn server_material(&self) -> TlsMaterial {
        TlsMaterial::load(
            &self.paths.server_cert,
            &self.paths.server_key,
            &self.paths.ca_cert,
        )
        .expect("server TLS material")
    }

    /// A client's certificate and key paths by name (`payments`, `admin`, ...).
    pub fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        let client = self
            .paths
            .clients
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no client {name}"));
        (client.cert.clone(), client.key.clone())
    }

    /// TLS material for a client by name, trusting this PKI's CA.
    pub fn client_material(&self, name: &str) -> TlsMaterial {
        let (cert, key) = self.client(name);
        TlsMaterial::load(&cert, &key, &self.paths.ca_cert).expect("client TLS material")
    }

    pub fn ca_path(&self) -> &Path {
        &self.paths.ca_cert
    }
}

/// Starts a server for `core` on 127.0.0.1:0 (and metrics on another loopback port).
pub async fn start_server<C: SignerCore>(pki: &TestPki, core: Arc<C>) -> RunningServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let metrics = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind metrics");
    start(core, &pki.server_material(), listener, Some(metrics))
        .await
        .expect("server starts")
}

/// A channel to `server` presenting `material` (connects eagerly; the error is the handshake's).
pub async fn connect(
    server: &RunningServer,
    material: &TlsMaterial,
) -> Result<Channel, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("https://localhost:{}", server.addr.port()))
        .expect("endpoint")
        .tls_config(custos::service::tls::client_tls(material, "localhost"))?
        .connect_timeout(std::time::Duration::from_secs(5));
    endpoint.connect().await
}

/// A channel that presents no client certificate (trusting the server's CA).
pub async fn connect_without_certificate(
    server: &RunningServer,
    ca_pem: &[u8],
) -> Result<Channel, tonic::transport::Error> {
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    Endpoint::from_shared(format!("https://localhost:{}", server.addr.port()))
        .expect("endpoint")
        .tls_config(tls)?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
}
