//! One throwaway PostgreSQL cluster per test binary, started by the project's own code
//! (`custos::cli::pgdev`) on an ephemeral loopback port; a watchdog stops it and removes its
//! directory when the test process ends. Each test gets a fresh, migrated schema of its own.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use custos::cli::pgdev::Cluster;
use custos::state::postgres::{PgEngine, PgSettings};

fn shared() -> &'static Mutex<Cluster> {
    static SHARED: OnceLock<Mutex<Cluster>> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir: PathBuf = std::env::temp_dir().join(format!(
            "custos-pg-test-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let cluster = Cluster::start(&dir.join("cluster"))
            .unwrap_or_else(|e| panic!("cannot start the test PostgreSQL cluster: {e}"));
        cluster
            .stop_when_process_ends(std::process::id(), &dir)
            .expect("the cluster's watchdog");
        Mutex::new(cluster)
    })
}

/// The cluster (started on first use). Tests that stop and start it hold this guard meanwhile.
pub fn cluster() -> MutexGuard<'static, Cluster> {
    shared().lock().unwrap_or_else(|e| e.into_inner())
}

/// A fresh schema name.
pub fn fresh_schema() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}_{}_{:04x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst),
        rand::random::<u16>()
    )
}

/// Settings for a fresh, migrated schema of its own.
pub fn fresh_settings() -> PgSettings {
    let schema = fresh_schema();
    let settings = cluster().settings(Some(&schema)).expect("cluster settings");
    PgEngine::migrate(&settings).expect("migrate a fresh schema");
    settings
}

/// An engine over a fresh schema.
pub fn fresh_engine() -> PgEngine {
    PgEngine::open(&fresh_settings()).expect("open the engine")
}
