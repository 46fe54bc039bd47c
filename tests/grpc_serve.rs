//! `custos dev env` then `custos serve` as an operator runs them: the binary listens with mutual
//! TLS, reports NOT_SERVING while sealed, and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use custos::service::tls::client_tls;
use custos::service::TlsMaterial;
use tonic::transport::Endpoint;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const BIN: &str = env!("CARGO_BIN_EXE_custos");

#[tokio::test]
async fn dev_env_then_serve_then_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let env_dir = dir.path().join("env");
    let out = Command::new(BIN)
        .args(["dev", "env"])
        .arg(&env_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("custos serve --config"));

    // Any free loopback ports: the server prints the address it got.
    let config_path = env_dir.join("custos.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    let config = config
        .lines()
        .map(|line| {
            if line.starts_with("listen =") {
                "listen = \"127.0.0.1:0\"".to_owned()
            } else if line.starts_with("metrics_listen =") {
                "metrics_listen = \"127.0.0.1:0\"".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config_path, config).unwrap();

    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .strip_prefix("custos listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    let port = addr.rsplit(':').next().unwrap();

    let tls = env_dir.join("tls");
    let material = TlsMaterial::load(
        &tls.join("clients/payments.pem"),
        &tls.join("clients/payments.key"),
        &tls.join("ca.pem"),
    )
    .unwrap();
    let channel = Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(client_tls(&material, "localhost"))
        .unwrap()
        .connect()
        .await
        .expect("mutual TLS to the daemon");
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .unwrap()
        .into_inner()
        .status();
    assert_eq!(status, ServingStatus::NotServing);

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // Wait off the runtime, so that the client's connection can answer the server's GOAWAY.
    let started = std::time::Instant::now();
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "shutdown drained idle connections at once"
    );
}
