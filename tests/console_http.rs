//! The approval console's HTTP edge, spoken to byte by byte: it answers only to its own loopback
//! address, refuses cross-origin posts, sets a strict Content-Security-Policy, serves a page that
//! loads nothing from elsewhere, bounds bodies, and refuses every API call without a session —
//! and a sign-in with a key nobody enrolled, or with a challenge used before. (The signed-in
//! paths are driven in a real browser by tests/console_browser.rs.)

use std::net::SocketAddr;
use std::sync::Arc;

use custos::governance::login::login_statement;
use custos::governance::{Algorithm, SecretSigningKey};
use custos::service::console;
use custos::service::StandbyCore;
use custos::signing::contract::AccessMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Answer {
    status: u16,
    head: String,
    body: String,
}

async fn http(addr: SocketAddr, request: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Answer {
        status: head.split_whitespace().nth(1).unwrap().parse().unwrap(),
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

fn get(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

fn post(addr: SocketAddr, path: &str, extra: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn the_console_edge_refuses_what_it_must() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = console::start(Arc::new(StandbyCore::new(AccessMap::new())), listener).unwrap();
    let addr = running.addr;
    let host = addr.to_string();

    // The page: strict CSP, nothing from elsewhere.
    let page = http(addr, &get("/", &host)).await;
    assert_eq!(page.status, 200);
    assert!(
        page.head
            .contains("content-security-policy: default-src 'self'"),
        "{}",
        page.head
    );
    assert!(page.head.contains("x-content-type-options: nosniff"));
    assert!(page.body.contains("Custos approvals"));
    for asset in ["/", "/app.js", "/style.css"] {
        let a = http(addr, &get(asset, &host)).await;
        assert_eq!(a.status, 200, "{asset}");
        for external in ["src=\"http", "href=\"http", "url(http", "import(", "cdn"] {
            assert!(!a.body.contains(external), "{asset} refers to {external}");
        }
    }
    let localhost = http(addr, &get("/", &format!("localhost:{}", addr.port()))).await;
    assert_eq!(localhost.status, 200);

    // DNS rebinding: another name for the same address is refused.
    let rebound = http(addr, &get("/", &format!("evil.example:{}", addr.port()))).await;
    assert_eq!(rebound.status, 421);
    assert!(rebound.head.contains("content-security-policy"));

    // No session, no data; a cross-origin post is refused before it reaches a handler.
    let listing = http(addr, &post(addr, "/api/pending", "", "{}")).await;
    assert_eq!(listing.status, 401);
    assert!(
        listing.body.contains("\"code\":\"unauthenticated\""),
        "{}",
        listing.body
    );
    assert!(listing.body.contains("sign in first"), "{}", listing.body);
    let forged = http(
        addr,
        &post(addr, "/api/pending", "Authorization: Bearer 00\r\n", "{}"),
    )
    .await;
    assert_eq!(forged.status, 401);
    let cross = http(
        addr,
        &post(
            addr,
            "/api/challenge",
            "Origin: http://evil.example\r\n",
            "{}",
        ),
    )
    .await;
    assert_eq!(cross.status, 403);

    // Malformed and oversized bodies.
    let bad = http(addr, &post(addr, "/api/session", "", "{\"key\": 1}")).await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.body.contains("not what this call takes"),
        "{}",
        bad.body
    );
    let huge = "x".repeat(console::MAX_BODY + 1);
    let big = http(addr, &post(addr, "/api/session", "", &huge)).await;
    assert_eq!(big.status, 413);

    // A correct sign-in signature by a key nobody enrolled: refused, in words; its challenge
    // cannot be used again.
    let key = SecretSigningKey::from_seed(Algorithm::P256, &[9; 32]).unwrap();
    let c = http(addr, &post(addr, "/api/challenge", "", "")).await;
    let challenge = serde_json::from_str::<serde_json::Value>(&c.body).unwrap()["challenge"]
        .as_str()
        .unwrap()
        .to_owned();
    let signature = hex::encode(key.sign(&login_statement(&challenge, &key.public().to_text())));
    let body = serde_json::json!({
        "key": key.public().to_text(),
        "challenge": challenge,
        "signature": signature,
    })
    .to_string();
    let refused = http(addr, &post(addr, "/api/session", "", &body)).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("key-not-enrolled"),
        "{}",
        refused.body
    );
    let replayed = http(addr, &post(addr, "/api/session", "", &body)).await;
    assert_eq!(replayed.status, 401);
    assert!(
        replayed.body.contains("unknown, used or expired"),
        "{}",
        replayed.body
    );

    running.shutdown().await;
}
