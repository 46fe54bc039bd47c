//! `custos bench signer --state postgres`: the replica run over one PostgreSQL database signs
//! every request and reports its figures (round trips included) beside the sled run's, on a
//! database given by URL (the test cluster, a fresh schema made by the benchmark) and on a
//! throwaway cluster of its own; the database password never reaches the output.

mod pg_support;

use std::process::{Command, Output};

fn bench(extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custos"))
        .args([
            "bench",
            "signer",
            "--state",
            "postgres",
            "--replicas",
            "2",
            "--clients",
            "2",
            "--requests",
            "20",
        ])
        .args(extra)
        .env("CUSTOS_UNSAFE_KDF_MEMORY_KIB", "64")
        .env_remove("CUSTOS_STATE_PASSWORD")
        .output()
        .unwrap()
}

/// The line of `stdout` that starts (after its indent) with `label`.
fn line<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no line {label:?} in\n{stdout}"))
}

/// Checks the figures of a successful run; returns its stdout.
fn check(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The sled run, then the replicas', each with its 20 measured requests signed.
    assert!(
        line(&stdout, "end to end").contains("(20 signed in"),
        "{stdout}"
    );
    let header = line(&stdout, "postgres ");
    assert!(
        header.contains("2 replica(s) over one database"),
        "{stdout}"
    );
    let pg = line(&stdout, "pg end to end");
    assert!(pg.contains("(20 signed in"), "{stdout}");
    assert!(pg.contains("0 refused"), "{stdout}");
    // Every signature took at least one round trip with the database, in transactions.
    let trips = line(&stdout, "pg round trips");
    let per_signature: f64 = trips
        .split_whitespace()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no round-trip figure in {trips:?}"));
    assert!(per_signature >= 1.0, "{trips}");
    assert!(trips.contains("per transaction"), "{trips}");
    assert!(trips.contains("re-runs"), "{trips}");
    let ratio = line(&stdout, "pg ratio");
    assert!(ratio.contains("postgres / sled = "), "{ratio}");
    assert!(line(&stdout, "pg latency").contains("p99 "), "{stdout}");
    stdout
}

#[test]
fn replicas_over_a_given_database_sign_everything_and_count_round_trips() {
    let (url, password_file, password) = {
        let cluster = pg_support::cluster();
        (
            cluster.url(),
            cluster.password_file(),
            cluster.password().unwrap(),
        )
    };
    let out = bench(&[
        "--postgres-url",
        &url,
        "--postgres-password-file",
        password_file.to_str().unwrap(),
    ]);
    let stdout = check(&out);
    let header = line(&stdout, "postgres ");
    let host = url.split('@').nth(1).unwrap();
    assert!(header.contains(host), "{header}");
    assert!(header.contains("schema bench_"), "{header}");
    let secret = password.expose_secret();
    assert!(!secret.is_empty());
    assert!(!stdout.contains(secret));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(secret));
}

#[test]
fn replicas_over_a_throwaway_cluster_sign_everything() {
    let out = bench(&[]);
    let stdout = check(&out);
    assert!(
        line(&stdout, "postgres ").contains("throwaway cluster on 127.0.0.1:"),
        "{stdout}"
    );
}

#[test]
fn postgres_options_without_state_postgres_are_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_custos"))
        .args([
            "bench",
            "signer",
            "--postgres-url",
            "postgres://custos@127.0.0.1:1/custos",
        ])
        .env("CUSTOS_UNSAFE_KDF_MEMORY_KIB", "64")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--state postgres"), "{stderr}");
}

#[test]
fn a_wrong_database_password_is_refused_without_being_echoed() {
    let url = pg_support::cluster().url();
    let dir = tempfile::tempdir().unwrap();
    let wrong = "not-the-password-5f3a9c";
    let file = dir.path().join("pw");
    std::fs::write(&file, wrong).unwrap();
    let out = bench(&[
        "--postgres-url",
        &url,
        "--postgres-password-file",
        file.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !stdout.contains(wrong) && !stderr.contains(wrong),
        "{stdout}\n{stderr}"
    );
    // The replicas never served.
    assert!(!stdout.contains("pg end to end"), "{stdout}");
}
