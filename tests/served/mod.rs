//! Running the real `custos` binary as an operator would: `dev env`, then `serve` on an ephemeral
//! loopback port. Shared by the tests that spawn the server (grpc_serve, crash_restart).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_custos");

/// The public test mnemonic the environments are created from (demo keys).
const ABANDON: &str =
    "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";

fn p(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

/// `custos dev env` into `dir/env` with the test mnemonic, a fast (unsafe) KDF, port 0 and
/// `policy` (else the built-in example policy). Returns the environment and what it printed.
pub fn dev_env(dir: &Path, policy: Option<&str>) -> (PathBuf, String) {
    let env = dir.join("env");
    let mnemonic = dir.join("mnemonic.txt");
    std::fs::write(&mnemonic, ABANDON).unwrap();
    let mut command = Command::new(BIN);
    command
        .args(["dev", "env", p(&env), "--port", "0"])
        .args(["--import-mnemonic-file", p(&mnemonic)])
        .env("CUSTOS_UNSAFE_KDF_MEMORY_KIB", "1024")
        .env_remove("CUSTOS_PASSPHRASE");
    if let Some(policy) = policy {
        let policy_path = dir.join("policy-in.toml");
        std::fs::write(&policy_path, policy).unwrap();
        command.args(["--policy", p(&policy_path)]);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (env, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Spawns `custos serve` on `env` with its log in `log`; returns the child and the port it printed
/// in its first line (port 0 in the configuration: a fresh port each start). Stdout keeps being
/// drained so the server never blocks on a full pipe.
pub fn spawn_serve(env: &Path, log: &Path) -> (Child, u16) {
    let mut child = Command::new(BIN)
        .args(["serve", "--config", p(&env.join("custos.toml"))])
        .env_remove("CUSTOS_PASSPHRASE")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let port = line
        .strip_prefix("custos listening on ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|addr| addr.rsplit(':').next())
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

/// Points every `client-*.toml` of `env` at `port` (the environment was made with `--port 0`).
pub fn point_clients_at(env: &Path, port: u16) {
    for entry in std::fs::read_dir(env).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("client-") && name.ends_with(".toml") {
            let config = std::fs::read_to_string(&path).unwrap();
            std::fs::write(
                &path,
                config.replace("localhost:0\"", &format!("localhost:{port}\"")),
            )
            .unwrap();
        }
    }
}
