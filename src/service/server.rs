//! Assembles and runs the gRPC server: the three Custos services, standard health checking
//! (`grpc.health.v1`, NOT_SERVING while sealed) and server reflection (v1 and v1alpha, so grpcurl
//! and generated clients in other languages can discover the API), all behind mutual TLS; and the
//! metrics responder on its own listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use super::acceptor::{accept_tls, server_config};
use super::admin::AdminService;
use super::edge::Edge;
use super::message_limit::MessageLimitStatus;
use super::metrics_http;
use super::outbox::OutboxService;
use super::proto::admin_server::{self, AdminServer};
use super::proto::outbox_server::{self, OutboxServer};
use super::proto::signer_server::{self, SignerServer};
use super::signer::SignerService;
use super::tls::{TlsError, TlsMaterial};
use super::trust::{ClientTrust, Revocation, TrustError};
use crate::signing::contract::SealState;
use crate::signing::contract::SignerCore;
use crate::signing::input_limits::InputLimits;
use crate::signing::metrics::Metrics;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The TLS configuration was refused, or the transport failed.
    #[error("grpc transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The reflection service could not be built from the descriptor sets.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// A listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS configuration was refused.
    #[error("tls: {0}")]
    Tls(#[from] TlsError),
    /// The client CA or the revocation list was refused.
    #[error("client trust: {0}")]
    Trust(#[from] TrustError),
    /// The server task panicked or was cancelled.
    #[error("server task: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A running server. Dropping it does not stop it; call [`RunningServer::shutdown`].
#[derive(Debug)]
pub struct RunningServer {
    /// The gRPC address (with the real port when bound to port 0).
    pub addr: SocketAddr,
    /// The metrics address, when a metrics listener was given.
    pub metrics_addr: Option<SocketAddr>,
    /// The shared metrics.
    pub metrics: Arc<Metrics>,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    side_tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Stops accepting connections, lets calls in flight finish for up to ten seconds, then
    /// closes what is still open (server streams such as `Outbox.StreamSigned` and health watches
    /// never finish on their own).
    pub async fn shutdown(self) -> Result<(), ServeError> {
        self.shutdown_within(Duration::from_secs(10)).await
    }

    /// [`RunningServer::shutdown`] with a chosen grace period.
    pub async fn shutdown_within(mut self, grace: Duration) -> Result<(), ServeError> {
        let _ = self.shutdown.send(());
        let result = match tokio::time::timeout(grace, &mut self.server).await {
            Ok(joined) => joined
                .map_err(ServeError::from)
                .and_then(|served| served.map_err(ServeError::from)),
            Err(_) => {
                tracing::warn!(
                    ?grace,
                    "calls still open after the grace period; closing them"
                );
                self.server.abort();
                Ok(())
            }
        };
        for task in &self.side_tasks {
            task.abort();
        }
        result
    }

    /// Waits until the server stops on its own (a transport error), without asking it to.
    pub async fn wait(&mut self) -> Result<(), ServeError> {
        (&mut self.server).await??;
        Ok(())
    }
}

/// Health status of the overall server ("") and of `custos.v1.Signer` for a seal state: both
/// NOT_SERVING unless unsealed. Admin stays SERVING (it is how an operator unseals) and so does
/// the Outbox (already signed transactions can still be delivered).
fn signing_health(state: SealState) -> ServingStatus {
    if state.is_unsealed() {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    }
}

async fn apply_seal_state(reporter: &HealthReporter, metrics: &Metrics, state: SealState) {
    let status = signing_health(state);
    reporter.set_service_status("", status).await;
    reporter
        .set_service_status(signer_server::SERVICE_NAME, status)
        .await;
    metrics.set_sealed(!state.is_unsealed());
    tracing::info!(seal_state = state.as_str(), "seal state");
}

/// How the server treats what arrives (from `[limits]` of `custos.toml`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerOptions {
    /// The largest request message any service decodes, bytes; a larger one is refused unread
    /// with `RESOURCE_EXHAUSTED message-too-large` ([`super::message_limit`]).
    pub max_message_bytes: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_message_bytes: InputLimits::default().grpc_message_bytes(),
        }
    }
}

/// Starts the server on `listener` (and metrics on `metrics_listener`) with mutual TLS from
/// `tls`, nothing revoked and the default [`ServerOptions`], delegating to `core`. Returns once
/// the server accepts connections.
pub async fn start<C: SignerCore>(
    core: Arc<C>,
    tls: &TlsMaterial,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
) -> Result<RunningServer, ServeError> {
    start_with(
        core,
        tls,
        listener,
        metrics_listener,
        ServerOptions::default(),
    )
    .await
}

/// [`start`] with chosen [`ServerOptions`] and nothing revoked.
pub async fn start_with<C: SignerCore>(
    core: Arc<C>,
    tls: &TlsMaterial,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    options: ServerOptions,
) -> Result<RunningServer, ServeError> {
    let trust = ClientTrust::new(&tls.ca_pem, &Revocation::default())?;
    start_with_trust(core, tls, trust, listener, metrics_listener, options).await
}

/// [`start`] with the client trust and options given: the trust's CA and revocation set decide at
/// every handshake and every call, and [`ClientTrust::reload`] changes them while the server runs.
pub async fn start_with_trust<C: SignerCore>(
    core: Arc<C>,
    tls: &TlsMaterial,
    trust: Arc<ClientTrust>,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    options: ServerOptions,
) -> Result<RunningServer, ServeError> {
    let addr = listener.local_addr()?;
    let tls_config = server_config(tls, &trust)?;
    let metrics = Arc::new(Metrics::new());
    core.attach_metrics(metrics.clone());
    let edge = Edge {
        core: core.clone(),
        metrics: metrics.clone(),
        trust,
    };

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(admin_server::SERVICE_NAME, ServingStatus::Serving)
        .await;
    reporter
        .set_service_status(outbox_server::SERVICE_NAME, ServingStatus::Serving)
        .await;
    let mut seal: watch::Receiver<SealState> = core.seal_state();
    let initial = *seal.borrow_and_update();
    apply_seal_state(&reporter, &metrics, initial).await;
    let mut side_tasks = Vec::new();
    {
        let metrics = metrics.clone();
        side_tasks.push(tokio::spawn(async move {
            while seal.changed().await.is_ok() {
                let state = *seal.borrow_and_update();
                apply_seal_state(&reporter, &metrics, state).await;
            }
        }));
    }

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(super::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(super::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let metrics_addr = match metrics_listener {
        Some(listener) => {
            let addr = listener.local_addr()?;
            side_tasks.push(tokio::spawn(metrics_http::serve(listener, metrics.clone())));
            Some(addr)
        }
        None => None,
    };

    let limit = options.max_message_bytes;
    let router = Server::builder()
        .add_service(MessageLimitStatus::new(
            health.max_decoding_message_size(limit),
        ))
        .add_service(MessageLimitStatus::new(
            reflection_v1.max_decoding_message_size(limit),
        ))
        .add_service(MessageLimitStatus::new(
            reflection_v1alpha.max_decoding_message_size(limit),
        ))
        .add_service(MessageLimitStatus::new(
            SignerServer::new(SignerService::new(edge.clone())).max_decoding_message_size(limit),
        ))
        .add_service(MessageLimitStatus::new(
            OutboxServer::new(OutboxService::new(edge.clone())).max_decoding_message_size(limit),
        ))
        .add_service(MessageLimitStatus::new(
            AdminServer::new(AdminService::new(edge)).max_decoding_message_size(limit),
        ));
    let (shutdown, shutdown_rx) = oneshot::channel::<()>();
    let (incoming, accept_task) = accept_tls(listener, tls_config);
    side_tasks.push(accept_task);
    let server = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async move {
        let _ = shutdown_rx.await;
    }));
    tracing::info!(
        %addr,
        ?metrics_addr,
        max_message_bytes = limit,
        "custos gRPC server listening (mutual TLS)"
    );
    Ok(RunningServer {
        addr,
        metrics_addr,
        metrics,
        shutdown,
        server,
        side_tasks,
    })
}
