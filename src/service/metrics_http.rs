//! `GET /metrics` on its own listener (loopback by default, so metrics are not exposed with the
//! gRPC port), and how a gRPC status counts as an [`Outcome`].

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::signing::metrics::{Metrics, Outcome};

/// The outcome of a call that ended with `code`.
pub fn outcome_of(code: tonic::Code) -> Outcome {
    match code {
        tonic::Code::Ok => Outcome::Succeeded,
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => Outcome::Denied,
        _ => Outcome::Failed,
    }
}

/// Serves `GET /metrics` on `listener` until the task is dropped or aborted. Anything else gets a
/// 404; each connection answers one request and closes (what Prometheus scrapers expect).
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            // Read the request head (bounded in size and time; the body, if any, is ignored).
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while len < buf.len() {
                    let n = stream.read(&mut buf[len..]).await?;
                    if n == 0 {
                        break;
                    }
                    len += n;
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let head = &buf[..len];
            let response = if head.starts_with(b"GET /metrics ") || head.starts_with(b"GET / ") {
                let body = metrics.render();
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_owned()
            };
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
