//! What the host can see and change on a running `custos serve` (the real binary, a dev
//! environment, loopback ports): the unseal passphrase given in `CUSTOS_PASSPHRASE` is gone from
//! `/proc/<pid>/environ`; a CRL rewritten and signalled with SIGHUP refuses the newly revoked
//! client while the others keep working (and an invalid CRL keeps the revocation set in force);
//! a `[bitcoin]` option that weakens a check is logged and written into the audit chain.

#[allow(dead_code)]
mod served;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use custos::service::devcerts::{write_issued, DevCa, IssuedCert};
use custos::service::proto::admin_client::AdminClient;
use custos::service::proto::StatusRequest;
use custos::service::tls::client_tls;
use custos::service::TlsMaterial;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

use served::BIN;

const ADMIN: &str = "ops-admin.exchange.example";
const WITHDRAWALS: &str = "spiffe://exchange.example/withdrawals";

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Adds `text` to the `[tls]` table of the environment's custos.toml (right under its header:
/// other tables, `[compliance]` and `[console]`, follow it).
fn add_to_tls(env: &Path, text: &str) {
    let path = env.join("custos.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    assert_eq!(config.matches("\n[tls]\n").count(), 1, "{config}");
    let config = config.replace("\n[tls]\n", &format!("\n[tls]\n{text}"));
    std::fs::write(path, config).unwrap();
}

/// Appends `text` (a table of its own) to the environment's custos.toml.
fn add_to_config(env: &Path, text: &str) {
    let path = env.join("custos.toml");
    let mut config = std::fs::read_to_string(&path).unwrap();
    config.push_str(text);
    std::fs::write(path, config).unwrap();
}

/// Spawns `serve` with extra environment variables; returns the child and its port.
fn spawn(env: &Path, log: &Path, vars: &[(&str, &str)]) -> (Child, u16) {
    use std::io::BufRead;
    let mut command = Command::new(BIN);
    command
        .args(["serve", "--config", p(&env.join("custos.toml"))])
        .env_remove("CUSTOS_PASSPHRASE")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap());
    for (k, v) in vars {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let port = line
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "unexpected first line {line:?}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        });
    std::thread::spawn(move || for _ in stdout.lines() {});
    (child, port)
}

fn wait_for_log(log: &Path, needle: &str, skip: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let logged = std::fs::read_to_string(log).unwrap();
        if logged.get(skip..).is_some_and(|tail| tail.contains(needle)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} not logged:\n{logged}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

fn stop(mut child: Child) {
    signal(&child, "TERM");
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
}

#[test]
fn the_passphrase_from_the_environment_is_removed_once_read() {
    let dir = tempfile::tempdir().unwrap();
    let (env, _) = served::dev_env(dir.path(), None);
    let config_path = env.join("custos.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    std::fs::write(
        &config_path,
        config.replace("passphrase_file = \"passphrase\"\n", ""),
    )
    .unwrap();
    let passphrase = std::fs::read_to_string(env.join("passphrase")).unwrap();
    let passphrase = passphrase.trim_end();
    let log = env.join("serve.log");
    let (child, _port) = spawn(&env, &log, &[("CUSTOS_PASSPHRASE", passphrase)]);
    wait_for_log(&log, "unsealed at start", 0);

    let environ = std::fs::read(format!("/proc/{}/environ", child.id())).unwrap();
    let shown = String::from_utf8_lossy(&environ);
    // (The messages do not print the environment: it may hold other secrets of the CI.)
    assert!(
        !shown.contains("CUSTOS_PASSPHRASE"),
        "CUSTOS_PASSPHRASE is still in /proc/<pid>/environ"
    );
    assert!(
        !shown.contains(passphrase),
        "the passphrase is still readable"
    );
    // The rest of the environment is intact.
    assert!(shown.contains("PATH="), "PATH is gone from the environment");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("source=CUSTOS_PASSPHRASE") || logged.contains("CUSTOS_PASSPHRASE"));
    assert!(!logged.contains(passphrase));
    stop(child);
}

/// A PKI of the test's own replacing the environment's (the test keeps the CA to issue CRLs).
struct Pki {
    ca: DevCa,
    admin: IssuedCert,
    withdrawals: IssuedCert,
    tls: PathBuf,
}

impl Pki {
    fn install(env: &Path) -> Pki {
        let tls = env.join("tls");
        let ca = DevCa::generate("serve host test CA").unwrap();
        std::fs::write(tls.join("ca.pem"), ca.cert_pem()).unwrap();
        let server = ca.server_cert(&["localhost", "127.0.0.1"]).unwrap();
        write_issued(&tls, "server", &server).unwrap();
        let admin = ca.client_cert_dns(ADMIN).unwrap();
        let withdrawals = ca.client_cert(WITHDRAWALS).unwrap();
        write_issued(&tls.join("clients"), "t-admin", &admin).unwrap();
        write_issued(&tls.join("clients"), "t-withdrawals", &withdrawals).unwrap();
        Pki {
            ca,
            admin,
            withdrawals,
            tls,
        }
    }

    fn material(&self, stem: &str) -> TlsMaterial {
        let clients = self.tls.join("clients");
        TlsMaterial::load(
            &clients.join(format!("{stem}.pem")),
            &clients.join(format!("{stem}.key")),
            &self.tls.join("ca.pem"),
        )
        .unwrap()
    }
}

async fn connect(port: u16, material: &TlsMaterial) -> Result<Channel, String> {
    Endpoint::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(client_tls(material, "localhost"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// Admin.Status on `channel`: Ok(principal) for the admin, PermissionDenied (authenticated, not
/// an admin) for others.
async fn status(channel: Channel) -> Result<String, tonic::Status> {
    AdminClient::new(channel)
        .status(StatusRequest {})
        .await
        .map(|r| r.into_inner().principal)
}

/// Whether a new connection with `material` is authenticated (admin or not).
async fn authenticated(port: u16, material: &TlsMaterial) -> bool {
    let Ok(channel) = connect(port, material).await else {
        return false;
    };
    match status(channel).await {
        Ok(_) => true,
        Err(s) => s.code() == Code::PermissionDenied,
    }
}

#[tokio::test]
async fn sighup_reloads_the_crl_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (env, _) = served::dev_env(dir.path(), None);
    let pki = Pki::install(&env);
    let crl = pki.tls.join("ca.crl");
    std::fs::write(&crl, pki.ca.crl(&[], 1).unwrap()).unwrap();
    add_to_tls(&env, "crl_file = \"tls/ca.crl\"\n");
    let log = env.join("serve.log");
    let (child, port) = spawn(&env, &log, &[]);

    let (admin, withdrawals) = (pki.material("t-admin"), pki.material("t-withdrawals"));
    assert!(authenticated(port, &admin).await);
    assert!(authenticated(port, &withdrawals).await);
    let open = connect(port, &withdrawals).await.unwrap();
    assert_eq!(
        status(open.clone()).await.unwrap_err().code(),
        Code::PermissionDenied
    );
    assert_eq!(
        status(connect(port, &admin).await.unwrap()).await.unwrap(),
        ADMIN
    );

    // The CA revokes the withdrawals certificate; the operator sends SIGHUP.
    std::fs::write(&crl, pki.ca.crl(&[&pki.withdrawals], 2).unwrap()).unwrap();
    let before = std::fs::read_to_string(&log).unwrap().len();
    signal(&child, "HUP");
    wait_for_log(&log, "client certificate revocation reloaded", before);
    assert!(!authenticated(port, &withdrawals).await);
    let refused = status(open).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(authenticated(port, &admin).await);

    // A broken CRL: logged, the set in force stays.
    std::fs::write(
        &crl,
        "-----BEGIN X509 CRL-----\nbroken\n-----END X509 CRL-----\n",
    )
    .unwrap();
    let before = std::fs::read_to_string(&log).unwrap().len();
    signal(&child, "HUP");
    wait_for_log(&log, "revocation reload refused", before);
    assert!(!authenticated(port, &withdrawals).await);
    assert!(authenticated(port, &admin).await);
    let _ = &pki.admin;
    stop(child);
}

#[test]
fn a_weakened_bitcoin_option_is_logged_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (env, _) = served::dev_env(dir.path(), None);
    add_to_config(&env, "\n[bitcoin]\nallow_witness_utxo_only = true\n");
    let log = env.join("serve.log");
    let (child, _port) = spawn(&env, &log, &[]);
    wait_for_log(&log, "weakened options recorded in the audit", 0);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("WEAKENED"), "{logged}");
    assert!(
        logged.contains("bitcoin.allow_witness_utxo_only"),
        "{logged}"
    );
    stop(child);

    let out = Command::new(BIN)
        .args(["audit", "tail", "--state", p(&env.join("state")), "--json"])
        .env_remove("CUSTOS_PASSPHRASE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let weakened: Vec<&serde_json::Value> = records
        .iter()
        .filter(|r| r["event"] == "config.weakened")
        .collect();
    assert_eq!(weakened.len(), 1, "{records:?}");
    assert_eq!(weakened[0]["principal"], "host");
    let detail = weakened[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("bitcoin.allow_witness_utxo_only = true"),
        "{detail}"
    );
    assert!(detail.contains("CVE-2020-14199"), "{detail}");
    // It follows the unseal record of this start.
    let unseal = records.iter().position(|r| r["event"] == "unseal").unwrap();
    let at = records
        .iter()
        .position(|r| r["event"] == "config.weakened")
        .unwrap();
    assert!(unseal < at);
}
