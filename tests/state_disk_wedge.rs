//! A state database that sled can no longer flush must not hang the signer's calls.
//!
//! Its own test binary: the database this test wedges on purpose takes sled's process-wide
//! concurrency control with it (measured: afterwards, transactions of *another* sled database in
//! the same process never return either), so it must not share a process with other tests. See
//! `src/signing/storage.rs` for what sled does and why the disk guard keeps it from happening.

mod tmpfs;

use std::sync::Arc;
use std::time::Duration;

use custos::signing::input_limits::{KIB, MIB};
use custos::signing::storage::{GuardedEngine, Storage};
use custos::state::engine::Engine;
use custos::state::sled::SledEngine;
use custos::state::Tree;
use tmpfs::Tmpfs;

/// Bounds a call that must answer: a hang fails the test instead of hanging it.
async fn bounded<T>(call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the call answered instead of hanging")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_sled_cannot_finish_fails_within_its_bound_and_wedges_the_store() {
    let disk = Tmpfs::mount(4 * MIB);
    let dir = disk.path().join("state");
    let sled = Arc::new(SledEngine::open(&dir).unwrap());
    sled.transact_raw(&mut |raw| raw.insert(Tree::Meta, b"small", vec![1; 100]).map(drop))
        .unwrap();
    sled.flush().unwrap();
    let _filler = disk.fill();
    // A page above sled's blob threshold (a quarter of a 512 KiB segment) goes to a blob file of
    // its own; on a full disk that write fails and leaves the log buffer unwritable, so a plain
    // `flush` would wait forever.
    let _ = sled.transact_raw(&mut |raw| {
        raw.insert(Tree::Requests, b"big", vec![2; 300 * KIB])
            .map(drop)
    });
    let storage = Arc::new(Storage::new(dir, 0, Duration::from_secs(2)));
    let engine = Arc::new(GuardedEngine::new(storage, sled, None));
    let flushing = engine.clone();
    let e = bounded(tokio::task::spawn_blocking(move || flushing.flush()))
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("restart the server") || e.contains("No space left"),
        "{e}"
    );
    // Whatever sled does next, nothing waits on it again without a bound.
    let again = engine.clone();
    bounded(tokio::task::spawn_blocking(move || again.flush()))
        .await
        .unwrap()
        .unwrap_err();
    let reading = engine.clone();
    bounded(tokio::task::spawn_blocking(move || {
        reading.get_raw(Tree::Meta, b"small")
    }))
    .await
    .unwrap()
    .unwrap_err();
}
