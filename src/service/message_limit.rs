//! The gRPC message size limit, answered like every other refusal.
//!
//! Each service decodes at most `[limits] grpc_message_bytes` per request message
//! (`max_decoding_message_size`, set in [`super::server`]): tonic reads the 5-byte frame header,
//! sees the announced length above the limit and refuses before buffering the message, so a 4 MB
//! payload costs the server its header, not its bytes. Tonic answers that with `OUT_OF_RANGE`
//! ("decoded message length too large: found N bytes, the limit is: L bytes"). gRPC's own
//! implementations answer an oversized message with `RESOURCE_EXHAUSTED`, and Custos answers
//! every refusal with a stable code; [`MessageLimitStatus`] wraps each service and rewrites that
//! one answer: `RESOURCE_EXHAUSTED`, message `[message-too-large] decoded message length too
//! large: found N bytes, the limit is: L bytes`, metadata `custos-code: message-too-large`.
//!
//! The rewrite is exact, not a guess: the core never answers `OUT_OF_RANGE` (see
//! [`super::status::grpc_code`]), so on these services that code can only come from tonic's
//! decoder refusing a message above the limit.

use std::convert::Infallible;

use tonic::body::Body;
use tonic::codegen::http::{HeaderValue, Request, Response};
use tonic::codegen::{BoxFuture, Context, Poll, Service};
use tonic::server::NamedService;

use super::status::CODE_METADATA;

/// The stable code of a request message above the gRPC limit.
pub const MESSAGE_TOO_LARGE: &str = "message-too-large";

const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: &str = "8";

/// A service whose "message too large" answer carries Custos's code (see the module docs).
#[derive(Clone, Debug)]
pub struct MessageLimitStatus<S> {
    inner: S,
}

impl<S> MessageLimitStatus<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        MessageLimitStatus { inner }
    }
}

impl<S: NamedService> NamedService for MessageLimitStatus<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<Request<Body>> for MessageLimitStatus<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Response<Body>, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let answer = self.inner.call(request);
        Box::pin(async move { answer.await.map(rewrite) })
    }
}

/// Rewrites a trailers-only `OUT_OF_RANGE` answer (how tonic refuses a request it could not
/// decode) into `RESOURCE_EXHAUSTED` with the stable code; every other answer passes unchanged.
fn rewrite(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    if headers.get("grpc-status").and_then(|v| v.to_str().ok()) != Some(OUT_OF_RANGE) {
        return response;
    }
    headers.insert("grpc-status", HeaderValue::from_static(RESOURCE_EXHAUSTED));
    let message = headers
        .get("grpc-message")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let message = message
        .strip_prefix(b"Error, ")
        .map(<[u8]>::to_vec)
        .unwrap_or(message);
    let mut text = format!("[{MESSAGE_TOO_LARGE}] ").into_bytes();
    text.extend_from_slice(&message);
    if let Ok(value) = HeaderValue::from_bytes(&text) {
        headers.insert("grpc-message", value);
    }
    headers.insert(CODE_METADATA, HeaderValue::from_static(MESSAGE_TOO_LARGE));
    tracing::info!(
        code = MESSAGE_TOO_LARGE,
        detail = %String::from_utf8_lossy(&message),
        "request message above the gRPC limit refused unread"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: &str, message: &str) -> Response<Body> {
        let mut response = Response::new(Body::empty());
        response
            .headers_mut()
            .insert("grpc-status", HeaderValue::from_str(status).unwrap());
        response
            .headers_mut()
            .insert("grpc-message", HeaderValue::from_str(message).unwrap());
        response
    }

    #[test]
    fn an_oversized_message_becomes_resource_exhausted_with_the_code() {
        let r = rewrite(answer(
            "11",
            "Error, decoded message length too large: found 4000000 bytes, the limit is: 1114112 bytes",
        ));
        let h = r.headers();
        assert_eq!(h.get("grpc-status").unwrap(), "8");
        assert_eq!(h.get(CODE_METADATA).unwrap(), MESSAGE_TOO_LARGE);
        assert_eq!(
            h.get("grpc-message").unwrap(),
            "[message-too-large] decoded message length too large: found 4000000 bytes, \
             the limit is: 1114112 bytes"
        );
    }

    #[test]
    fn other_answers_pass_unchanged() {
        for status in ["0", "3", "7", "14"] {
            let r = rewrite(answer(status, "whatever"));
            assert_eq!(r.headers().get("grpc-status").unwrap(), status);
            assert_eq!(r.headers().get("grpc-message").unwrap(), "whatever");
            assert!(r.headers().get(CODE_METADATA).is_none());
        }
        let r = rewrite(Response::new(Body::empty()));
        assert!(r.headers().is_empty());
    }
}
