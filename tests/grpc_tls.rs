//! The gRPC server over real loopback TCP with real mutual TLS: who gets in, who is who, and what
//! health and reflection report.

mod common;

use std::sync::Arc;

use common::{connect, connect_without_certificate, start_server, TestPki};
use custos::service::devcerts::{dev_principal_uri, write_issued, DevCa};
use custos::service::proto::admin_client::AdminClient;
use custos::service::proto::signer_client::SignerClient;
use custos::service::proto::{self, StatusRequest};
use custos::service::{StandbyCore, TlsMaterial};
use custos::signing::contract::SealState;
use custos::signing::contract::{AccessMap, Privilege};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

fn access() -> AccessMap {
    AccessMap::new()
        .grant(dev_principal_uri("admin"), Privilege::Admin)
        .grant(dev_principal_uri("approver-1"), Privilege::Approve)
        .grant(dev_principal_uri("broadcaster"), Privilege::StreamOutbox)
}

/// The server's TLS alert reached the client: the refusal came from the handshake, not from a
/// handler.
fn assert_refused_by_tls(error: &str, alert: &str) {
    assert!(
        error.contains(&format!("received fatal alert: {alert}")),
        "expected the TLS alert {alert}, got {error}"
    );
}

async fn next_status(
    watch: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
) -> ServingStatus {
    tokio::time::timeout(std::time::Duration::from_secs(10), watch.next())
        .await
        .expect("a health update within 10 s")
        .expect("the watch stream stays open")
        .expect("a health answer")
        .status()
}

async fn health(channel: tonic::transport::Channel, service: &str) -> ServingStatus {
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .expect("health check answers");
    response.into_inner().status()
}

#[tokio::test]
async fn admin_with_good_certificate_gets_status_and_its_principal() {
    let pki = TestPki::new();
    let server = start_server(&pki, Arc::new(StandbyCore::new(access()))).await;
    let channel = connect(&server, &pki.client_material("admin"))
        .await
        .expect("mutual TLS handshake");
    let status = AdminClient::new(channel)
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.principal, "spiffe://custos.dev/admin");
    assert_eq!(status.seal_state(), proto::SealState::Sealed);
    assert_eq!(status.api_version, "custos.v1");
    assert_eq!(status.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(status.roles, vec!["admin".to_owned()]);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn non_admin_is_refused_admin_calls_with_a_stable_code() {
    let pki = TestPki::new();
    let server = start_server(&pki, Arc::new(StandbyCore::new(access()))).await;
    let channel = connect(&server, &pki.client_material("payments"))
        .await
        .expect("handshake");
    let error = AdminClient::new(channel)
        .status(StatusRequest {})
        .await
        .expect_err("payments is not an admin");
    assert_eq!(error.code(), Code::PermissionDenied);
    assert_eq!(error.metadata().get("custos-code").unwrap(), "forbidden");
    assert!(
        error.message().contains("spiffe://custos.dev/payments"),
        "{}",
        error.message()
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn sign_while_sealed_is_failed_precondition_sealed() {
    let pki = TestPki::new();
    let server = start_server(&pki, Arc::new(StandbyCore::new(access()))).await;
    let channel = connect(&server, &pki.client_material("payments"))
        .await
        .unwrap();
    let mut signer = SignerClient::new(channel);
    let request = proto::SignRequest {
        request_id: "r-1".into(),
        wallet: "hot".into(),
        payload: Some(proto::sign_request::Payload::PersonalMessage(
            proto::PersonalMessagePayload {
                message: b"hello".to_vec(),
                address_index: None,
            },
        )),
    };
    let error = signer.sign(request.clone()).await.expect_err("sealed");
    assert_eq!(error.code(), Code::FailedPrecondition);
    assert_eq!(error.metadata().get("custos-code").unwrap(), "sealed");

    // A malformed request is refused at the edge, before the core.
    let mut bad = request;
    bad.request_id = "has spaces".into();
    let error = signer.sign(bad).await.expect_err("bad request id");
    assert_eq!(error.code(), Code::InvalidArgument);
    assert_eq!(
        error.metadata().get("custos-code").unwrap(),
        "invalid-argument"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn client_without_certificate_fails_the_handshake() {
    let pki = TestPki::new();
    let server = start_server(&pki, Arc::new(StandbyCore::new(access()))).await;
    let ca = std::fs::read(pki.ca_path()).unwrap();
    // With TLS 1.3 the client may finish its side of the handshake before the server's alert
    // arrives, so the refusal shows either at connect or at the first call; never as an answer.
    match connect_without_certificate(&server, &ca).await {
        Err(error) => assert_refused_by_tls(&format!("{error:?}"), "CertificateRequired"),
        Ok(channel) => {
            let result = HealthClient::new(channel)
                .check(HealthCheckRequest::default())
                .await;
            let error = result.expect_err("no client certificate: no service");
            assert_refused_by_tls(&format!("{error:?}"), "CertificateRequired");
        }
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn client_with_certificate_from_another_ca_fails_the_handshake() {
    let pki = TestPki::new();
    let server = start_server(&pki, Arc::new(StandbyCore::new(access()))).await;
    // Same principal name, but issued by a CA the server does not trust.
    let rogue = DevCa::generate("rogue CA").unwrap();
    let issued = rogue.client_cert(&dev_principal_uri("admin")).unwrap();
    let (cert, key) = write_issued(pki.dir.path(), "rogue-admin", &issued).unwrap();
    let material = TlsMaterial::load(&cert, &key, pki.ca_path()).unwrap();
    match connect(&server, &material).await {
        Err(error) => assert_refused_by_tls(&format!("{error:?}"), "UnknownCA"),
        Ok(channel) => {
            let error = AdminClient::new(channel)
                .status(StatusRequest {})
                .await
                .expect_err("untrusted client certificate: no service");
            assert_refused_by_tls(&format!("{error:?}"), "UnknownCA");
        }
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn health_is_not_serving_while_sealed_and_serving_when_unsealed() {
    let pki = TestPki::new();
    let core = Arc::new(StandbyCore::new(access()));
    let server = start_server(&pki, core.clone()).await;
    let channel = connect(&server, &pki.client_material("payments"))
        .await
        .unwrap();
    assert_eq!(health(channel.clone(), "").await, ServingStatus::NotServing);
    assert_eq!(
        health(channel.clone(), "custos.v1.Signer").await,
        ServingStatus::NotServing
    );
    // Admin stays reachable while sealed: it is how an operator unseals.
    assert_eq!(
        health(channel.clone(), "custos.v1.Admin").await,
        ServingStatus::Serving
    );

    // Health follows the seal state as it changes.
    let mut watch = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_status(&mut watch).await, ServingStatus::NotServing);
    core.set_seal_state(SealState::Unsealed);
    assert_eq!(next_status(&mut watch).await, ServingStatus::Serving);
    assert_eq!(
        health(channel.clone(), "custos.v1.Signer").await,
        ServingStatus::Serving
    );

    // Admin.Seal turns it off again.
    AdminClient::new(
        connect(&server, &pki.client_material("admin"))
            .await
            .unwrap(),
    )
    .seal(proto::SealRequest {})
    .await
    .expect("admin may seal");
    assert_eq!(next_status(&mut watch).await, ServingStatus::NotServing);
    // The watch is a stream that never ends: close it so shutdown drains at once.
    drop(watch);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn reflection_lists_the_services() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let pki = TestPki::new();
    let server = start_server(&pki, Arc::new(StandbyCore::new(access()))).await;
    let channel = connect(&server, &pki.client_material("payments"))
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    for expected in [
        "custos.v1.Admin",
        "custos.v1.Outbox",
        "custos.v1.Signer",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }

    // The file defining Signer resolves, so grpcurl can describe and call it.
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "custos.v1.Signer".into(),
        )),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.next().await.unwrap().unwrap();
    assert!(
        matches!(
            response.message_response,
            Some(MessageResponse::FileDescriptorResponse(ref files)) if !files.file_descriptor_proto.is_empty()
        ),
        "{response:?}"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn metrics_are_served_on_their_own_listener() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let pki = TestPki::new();
    let server = start_server(&pki, Arc::new(StandbyCore::new(access()))).await;
    let channel = connect(&server, &pki.client_material("payments"))
        .await
        .unwrap();
    let _ = AdminClient::new(channel).status(StatusRequest {}).await;

    let mut stream = tokio::net::TcpStream::connect(server.metrics_addr.unwrap())
        .await
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(body.contains("custos_sealed 1"), "{body}");
    assert!(
        body.contains("custos_requests_total{method=\"Status\",outcome=\"denied\"} 1"),
        "{body}"
    );
    server.shutdown().await.unwrap();
}
