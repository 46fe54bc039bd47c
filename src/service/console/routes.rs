//! The console's HTTP routes: the page and its three files, and a small JSON API over the
//! signing core ([`SignerCore`]), every call made as the signed-in approver.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `GET /`, `/app.js`, `/style.css` | | the page (embedded in the binary) |
//! | `POST /api/challenge` | | `{challenge}` |
//! | `POST /api/session` | `{key, challenge, signature}` | `{token, principal, key}` |
//! | `POST /api/logout` | | `{}` |
//! | `POST /api/pending` | `{page_token?}` | `{requests: [view], next_page_token}` |
//! | `POST /api/request` | `{requester, request_id}` | view |
//! | `POST /api/vote` | `{requester, request_id, decision, reason, at, key, signature}` | view |
//!
//! Refusals are `{error: {code, message}}` with the core's stable code and its sentence, and an
//! HTTP status (400 malformed, 401 not signed in, 403 not allowed, 404 unknown, 409 the request's
//! state or the vote refuses it, 503 the state cannot be written).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::session::{Session, Sessions};
use super::view;
use crate::governance::login::login_statement;
use crate::governance::{PublicKey, VoteDecision};
use crate::signing::contract::{
    CoreError, ListPending, Principal, PrincipalSource, Privilege, RequestRef, SignerCore,
    VoteInput, VoteSignature,
};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");

/// What every handler shares.
pub struct App<C> {
    /// The signing core.
    pub core: Arc<C>,
    /// Challenges and sessions.
    pub sessions: Sessions,
}

/// A refusal as the page sees it.
pub struct Refusal {
    status: StatusCode,
    code: String,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Refusal {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

impl From<CoreError> for Refusal {
    fn from(e: CoreError) -> Self {
        let status = match &e {
            CoreError::InvalidArgument { .. } | CoreError::InvalidPayload { .. } => {
                StatusCode::BAD_REQUEST
            }
            CoreError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            CoreError::Forbidden { .. } | CoreError::PolicyDenied { .. } => StatusCode::FORBIDDEN,
            CoreError::NotFound { .. } => StatusCode::NOT_FOUND,
            CoreError::RequestIdConflict { .. }
            | CoreError::Sealed
            | CoreError::Precondition { .. } => StatusCode::CONFLICT,
            CoreError::StateUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            CoreError::NotImplemented { .. } => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Refusal::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        json_response(
            self.status,
            json!({ "error": { "code": self.code, "message": self.message } }),
        )
    }
}

fn json_response(status: StatusCode, value: Value) -> Response {
    let mut response = (status, value.to_string()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// `GET /`.
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// `GET /app.js`.
pub async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// `GET /style.css`.
pub async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

type Answer = Result<Response, Refusal>;

fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, Refusal> {
    let body = if body.is_empty() { &b"{}"[..] } else { body };
    serde_json::from_slice(body).map_err(|e| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid-argument",
            format!("the request body is not what this call takes: {e}"),
        )
    })
}

fn principal(name: &str) -> Principal {
    let source = if name.contains(':') {
        PrincipalSource::SanUri
    } else {
        PrincipalSource::SanDns
    };
    Principal::new(name, source)
}

impl<C: SignerCore> App<C> {
    /// The caller's session: a bearer token for a live session whose key the policy in force
    /// still enrols for its principal.
    fn session(&self, headers: &HeaderMap) -> Result<(Session, String), Refusal> {
        let unauthenticated =
            |m: &str| Refusal::new(StatusCode::UNAUTHORIZED, "unauthenticated", m);
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthenticated("sign in first: the console needs your approver key"))?;
        let session = self
            .sessions
            .get(token, Instant::now())
            .ok_or_else(|| unauthenticated("your session ended: sign in again"))?;
        if self.core.approver_of_key(&session.key).as_deref() != Some(&session.principal) {
            self.sessions.close(token);
            return Err(unauthenticated(
                "your key is no longer enrolled for you under the policy in force: sign in again",
            ));
        }
        Ok((session, token.to_owned()))
    }
}

/// `POST /api/challenge`.
pub async fn challenge<C: SignerCore>(State(app): State<Arc<App<C>>>) -> Answer {
    let challenge = app
        .sessions
        .challenge(Instant::now())
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
    Ok(json_response(
        StatusCode::OK,
        json!({ "challenge": challenge }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    key: String,
    challenge: String,
    signature: String,
}

/// `POST /api/session`: sign in with a signature over a fresh challenge.
pub async fn session<C: SignerCore>(State(app): State<Arc<App<C>>>, body: Bytes) -> Answer {
    let req: SignIn = parse(&body)?;
    let bad = |m: String| Refusal::new(StatusCode::BAD_REQUEST, "invalid-argument", m);
    let key = PublicKey::parse(&req.key).map_err(|e| bad(format!("key: {e}")))?;
    let key_text = key.to_text();
    if !app.sessions.take_challenge(&req.challenge, Instant::now()) {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the sign-in challenge is unknown, used or expired: try again",
        ));
    }
    let signature = hex::decode(&req.signature).map_err(|_| bad("signature: not hex".into()))?;
    key.verify(&login_statement(&req.challenge, &key_text), &signature)
        .map_err(|e| {
            Refusal::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                format!("the sign-in signature does not verify: {e}"),
            )
        })?;
    let principal = app.core.approver_of_key(&key_text).ok_or_else(|| {
        Refusal::new(
            StatusCode::FORBIDDEN,
            "key-not-enrolled",
            format!(
                "this key ({}) is not enrolled for any approver under the policy in force: compliance must add it under [approver_keys] and sign the policy",
                key.fingerprint()
            ),
        )
    })?;
    let token = app
        .sessions
        .open(&principal, &key_text, Instant::now())
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
    tracing::info!(principal = %principal, key = %key.fingerprint(), "console sign-in");
    Ok(json_response(
        StatusCode::OK,
        json!({ "token": token, "principal": principal, "key": key_text }),
    ))
}

/// `POST /api/logout`.
pub async fn logout<C: SignerCore>(State(app): State<Arc<App<C>>>, headers: HeaderMap) -> Answer {
    if let Ok((_, token)) = app.session(&headers) {
        app.sessions.close(&token);
    }
    Ok(json_response(StatusCode::OK, json!({})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    #[serde(default)]
    page_token: Option<String>,
}

/// `POST /api/pending`: the requests waiting for votes, as the core lets this approver see them.
pub async fn pending<C: SignerCore>(
    State(app): State<Arc<App<C>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let (session, _) = app.session(&headers)?;
    let q: PageQuery = parse(&body)?;
    let page = app
        .core
        .list_pending(
            &principal(&session.principal),
            ListPending {
                wallet: None,
                page_size: 100,
                page_token: q.page_token,
            },
        )
        .await?;
    Ok(json_response(
        StatusCode::OK,
        json!({
            "requests": page.requests.iter().map(view::request).collect::<Vec<_>>(),
            "next_page_token": page.next_page_token,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Which {
    requester: String,
    request_id: String,
}

/// `POST /api/request`: one request.
pub async fn request<C: SignerCore>(
    State(app): State<Arc<App<C>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let (session, _) = app.session(&headers)?;
    let w: Which = parse(&body)?;
    let record = app
        .core
        .get_request(
            &principal(&session.principal),
            &RequestRef::of(w.requester, w.request_id),
        )
        .await?;
    Ok(json_response(StatusCode::OK, view::request(&record)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vote {
    requester: String,
    request_id: String,
    decision: String,
    #[serde(default)]
    reason: String,
    at: i64,
    key: String,
    signature: String,
}

/// `POST /api/vote`: a vote the page signed with the approver's key.
pub async fn vote<C: SignerCore>(
    State(app): State<Arc<App<C>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let (session, _) = app.session(&headers)?;
    let v: Vote = parse(&body)?;
    let bad = |m: &str| Refusal::new(StatusCode::BAD_REQUEST, "invalid-argument", m);
    let decision = VoteDecision::parse(&v.decision)
        .ok_or_else(|| bad("decision: expected 'approve' or 'reject'"))?;
    if decision == VoteDecision::Reject && v.reason.trim().is_empty() {
        return Err(bad("a rejection needs a reason"));
    }
    let signature = hex::decode(&v.signature).map_err(|_| bad("signature: not hex"))?;
    let input = VoteInput {
        reason: v.reason,
        signature: Some(VoteSignature {
            at: v.at,
            key: v.key,
            signature,
        }),
    };
    let who = principal(&session.principal);
    // The same privilege the gRPC edge requires of Approve and Reject.
    app.core.authorize(&who, Privilege::Approve)?;
    let rref = RequestRef::of(v.requester, v.request_id);
    let record = match decision {
        VoteDecision::Approve => app.core.approve(&who, &rref, &input).await,
        VoteDecision::Reject => app.core.reject(&who, &rref, &input).await,
    }
    .inspect_err(
        |e| tracing::info!(principal = %who, code = e.code(), error = %e, "console vote refused"),
    )?;
    Ok(json_response(StatusCode::OK, view::request(&record)))
}
