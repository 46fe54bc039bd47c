//! The TLS side of the listener: accepts TCP connections and runs each handshake with the
//! server's rustls configuration, whose client-certificate verifier is the reloadable
//! [`ClientTrust`] (tonic's own `ServerTlsConfig` takes only a fixed CA, no verifier, so the server
//! hands tonic connections that are already TLS).
//!
//! Handshakes run concurrently, each bounded by [`HANDSHAKE_TIMEOUT`]: a client that stalls
//! mid-handshake holds its own task, never the accept loop. A refused handshake is logged (the
//! verifier says why) and dropped; the stream of connections never ends with an error.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use super::tls::{TlsError, TlsMaterial};
use super::trust::ClientTrust;

/// How long one client may take to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections waiting for the server to pick them up.
const BACKLOG: usize = 64;

/// The server's rustls configuration: our identity, client certificates verified by `trust`,
/// HTTP/2 by ALPN.
pub fn server_config(
    material: &TlsMaterial,
    trust: &Arc<ClientTrust>,
) -> Result<rustls::ServerConfig, TlsError> {
    let invalid = |reason: String| TlsError::Config { reason };
    let certs = CertificateDer::pem_slice_iter(&material.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("server certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(&material.key_pem)
        .map_err(|e| invalid(format!("server key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_client_cert_verifier(trust.verifier())
        .with_single_cert(certs, key)
        .map_err(|e| invalid(format!("server certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Accepts on `listener` and yields the connections whose handshake succeeded. The task ends
/// when the stream is dropped (or aborted through the returned handle).
pub fn accept_tls(
    listener: TcpListener,
    config: rustls::ServerConfig,
) -> (
    ReceiverStream<Result<TlsStream<TcpStream>, std::io::Error>>,
    JoinHandle<()>,
) {
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let (sender, receiver) = mpsc::channel(BACKLOG);
    let task = tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: pause instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = sender.closed() => return,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let sender = sender.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = sender.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    (ReceiverStream::new(receiver), task)
}
