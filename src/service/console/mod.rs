//! The approval console: a web page, served by `custos serve` on its own loopback address
//! (`[console] listen`), where approvers see the requests waiting for them — decoded: the
//! destinations and amounts in units, the fee, the rule, the quorum, who has voted and whether
//! each vote counts, the expiry — and approve or reject them with a signature made **in the
//! browser** by their own enrolled key (WebCrypto: Ed25519 or ECDSA P-256). The key is imported
//! from the approver's key file (`custos approver keygen`) or generated in the browser (kept,
//! non-extractable, in the browser's IndexedDB) and enrolled by compliance.
//!
//! # Who may do what
//!
//! - **The page itself** (HTML, script, style: embedded in the binary, no external asset) is
//!   served to anyone who can reach the loopback address; it holds nothing.
//! - **Signing in** proves possession of an enrolled approver key: the server issues a fresh,
//!   single-use challenge; the page signs `custos/console-login/v1` over it
//!   ([`crate::governance::login`]); a key the policy in force enrols for a principal opens a
//!   session for that principal (bearer token, 15 minutes, kept by the page in memory only). No
//!   password, no client certificate (which browsers make hard to provision and to test): the
//!   approver's key is the credential, as it is for the vote.
//! - **Listing and reading** requests are the core's `ListPending` and `GetRequest` as that
//!   principal — the same least-privilege rules as over gRPC; and a key removed from the policy
//!   ends its sessions at their next call.
//! - **A vote** needs the `approver` privilege (as `Signer.Approve`) and is judged by the core
//!   exactly as a gRPC vote: the signature must cover the request's statement, by a key
//!   enrolled for the session's principal; the requester is refused; and the core re-verifies
//!   every stored vote when it counts them. The session authenticates the caller; the signature
//!   is what counts.
//!
//! # Defences of a loopback web server
//!
//! Only a loopback listen address is accepted (`crate::config`). Requests whose `Host` is not
//! this console's own address are refused (DNS rebinding), as are cross-origin `POST`s. Every
//! answer carries a strict Content-Security-Policy (`default-src 'self'`, no inline script,
//! `frame-ancestors 'none'`), `X-Content-Type-Options: nosniff` and `Referrer-Policy:
//! no-referrer`. Bodies are limited to 64 KiB; the session and challenge tables are bounded.
//! Not defended: another local user of the machine who can reach the loopback port can use a
//! stolen bearer token until it expires (the token never leaves the page's memory).
//!
//! Files: [`routes`] (the page and the JSON API), [`session`] (challenges and sessions),
//! [`view`] (a request as the page shows it), `assets/` (the page).

pub mod routes;
pub mod session;
pub mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::signing::contract::SignerCore;
use routes::App;
use session::Sessions;

/// The largest request body the console reads.
pub const MAX_BODY: usize = 64 * 1024;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// A running console.
#[derive(Debug)]
pub struct RunningConsole {
    /// Where it listens (with the real port when bound to port 0).
    pub addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl RunningConsole {
    /// Stops accepting connections and waits for the server task.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(());
        let _ = self.task.await;
    }
}

/// Refuses a foreign `Host` (anything but this console's own `127.0.0.1:PORT` or
/// `localhost:PORT`: a page elsewhere cannot reach it through DNS rebinding) or a cross-origin
/// `POST`, and adds the security headers.
async fn guard(State(hosts): State<Arc<Vec<String>>>, request: Request, next: Next) -> Response {
    let host_ok = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| hosts.iter().any(|ok| ok.eq_ignore_ascii_case(h)));
    let origin_ok = request.method() != Method::POST
        || request
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .is_none_or(|o| {
                hosts
                    .iter()
                    .any(|h| o.eq_ignore_ascii_case(&format!("http://{h}")))
            });
    let mut response = if !host_ok {
        (
            StatusCode::MISDIRECTED_REQUEST,
            "this console answers only to its own loopback address",
        )
            .into_response()
    } else if !origin_ok {
        (StatusCode::FORBIDDEN, "cross-origin requests are refused").into_response()
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Serves the console on `listener` (a loopback address) over `core`, until
/// [`RunningConsole::shutdown`]. Must be called inside a Tokio runtime.
pub fn start<C: SignerCore>(
    core: Arc<C>,
    listener: TcpListener,
) -> Result<RunningConsole, std::io::Error> {
    let addr = listener.local_addr()?;
    let mut hosts = vec![addr.to_string(), format!("localhost:{}", addr.port())];
    if addr.ip().is_ipv4() {
        hosts.push(format!("127.0.0.1:{}", addr.port()));
    }
    hosts.dedup();
    let app = Arc::new(App {
        core,
        sessions: Sessions::default(),
    });
    let router = Router::new()
        .route("/", get(routes::index))
        .route("/app.js", get(routes::app_js))
        .route("/style.css", get(routes::style_css))
        .route("/api/challenge", post(routes::challenge::<C>))
        .route("/api/session", post(routes::session::<C>))
        .route("/api/logout", post(routes::logout::<C>))
        .route("/api/pending", post(routes::pending::<C>))
        .route("/api/request", post(routes::request::<C>))
        .route("/api/vote", post(routes::vote::<C>))
        .with_state(app)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(Arc::new(hosts), guard));
    let (shutdown, stop) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stop.await;
            })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "approval console stopped");
        }
    });
    tracing::info!(%addr, "approval console listening (loopback HTTP)");
    Ok(RunningConsole {
        addr,
        shutdown,
        task,
    })
}
