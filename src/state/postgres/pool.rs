//! The engine's own async runtime and its connection pool, and the bridge from the synchronous
//! [`crate::state::engine::Engine`] calls to them.
//!
//! The engine is called synchronously, from threads of the caller's tokio runtime (a
//! multi-threaded one in `serve`, a current-thread one in many tests) and from plain threads.
//! Blocking on a future of the caller's runtime from there panics or deadlocks (`block_on` inside
//! a runtime, `block_in_place` on a current-thread runtime), so the engine owns a small runtime of
//! its own: each database exchange is spawned onto it and the caller waits on a channel. The
//! connections (tokio-postgres, pooled by deadpool-postgres) live on that runtime. Every exchange
//! is bounded by a client-side timeout, above the server's `statement_timeout`, so a database that
//! stopped answering yields an error, never a hang.

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

use super::settings::PgSettings;
use crate::state::StateError;

/// The runtime, the pool and the bounds.
pub struct Connections {
    runtime: Option<tokio::runtime::Runtime>,
    /// Exchanges with the database so far (each one network round trip, pipelined statements
    /// included; a statement's first preparation on a connection adds one).
    pub(crate) round_trips: std::sync::atomic::AtomicU64,
    pub(crate) pool: Pool,
    pub(crate) timeout: Duration,
    pub(crate) description: String,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("database", &self.description)
            .finish_non_exhaustive()
    }
}

impl Drop for Connections {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its tasks stop, which panics inside another runtime:
        // let its threads wind down in the background instead.
        self.pool.close();
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Why a database exchange failed, as the transaction logic needs to know it.
#[derive(Debug)]
pub enum PgFailure {
    /// The server refused or failed the statement; nothing of the transaction is committed.
    Db(tokio_postgres::Error),
    /// A serialization failure or deadlock: the transaction is rolled back and may be re-run.
    Retry(tokio_postgres::Error),
    /// The connection was lost or timed out (the exchange's outcome is unknown).
    Lost(String),
    /// No connection could be had (pool timeout, server down).
    Unavailable(String),
}

impl PgFailure {
    pub(crate) fn from_pg(e: tokio_postgres::Error) -> PgFailure {
        match e.code() {
            Some(code)
                if *code == SqlState::T_R_SERIALIZATION_FAILURE
                    || *code == SqlState::T_R_DEADLOCK_DETECTED =>
            {
                PgFailure::Retry(e)
            }
            Some(_) => PgFailure::Db(e),
            None if e.is_closed() => PgFailure::Lost(e.to_string()),
            None => PgFailure::Lost(e.to_string()),
        }
    }

    /// Whether the connection can no longer be trusted (drop it rather than pool it).
    pub(crate) fn connection_broken(&self) -> bool {
        matches!(self, PgFailure::Lost(_))
    }
}

impl std::fmt::Display for PgFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PgFailure::Db(e) | PgFailure::Retry(e) => match e.as_db_error() {
                Some(db) => write!(f, "{}: {}", db.code().code(), db.message()),
                None => write!(f, "{e}"),
            },
            PgFailure::Lost(why) => write!(f, "connection lost: {why}"),
            PgFailure::Unavailable(why) => write!(f, "{why}"),
        }
    }
}

impl Connections {
    /// A runtime and a pool for `settings` (no connection is opened yet).
    pub fn new(settings: &PgSettings) -> Result<Connections, StateError> {
        let config = settings.driver_config().map_err(StateError::Storage)?;
        let description = describe(&config);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("custos-postgres")
            .enable_all()
            .build()
            .map_err(|e| StateError::Storage(format!("cannot start the database runtime: {e}")))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(settings.client_timeout()))
            .create_timeout(Some(settings.connect_timeout))
            .recycle_timeout(Some(settings.connect_timeout))
            .build()
            .map_err(|e| StateError::Storage(format!("cannot build the connection pool: {e}")))?;
        Ok(Connections {
            runtime: Some(runtime),
            round_trips: std::sync::atomic::AtomicU64::new(0),
            pool,
            timeout: settings.client_timeout(),
            description,
        })
    }

    /// Runs `fut` on the engine's runtime and waits for it (bounded by the client timeout).
    pub fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, PgFailure> {
        let runtime = self
            .runtime
            .as_ref()
            .ok_or_else(|| PgFailure::Unavailable("the database engine is closed".into()))?;
        self.round_trips
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let timeout = self.timeout;
        runtime.spawn(async move {
            let outcome = tokio::time::timeout(timeout, fut).await;
            let _ = tx.send(outcome);
        });
        match rx.recv() {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(PgFailure::Lost(format!(
                "the database did not answer within {} ms",
                timeout.as_millis()
            ))),
            Err(_) => Err(PgFailure::Unavailable(
                "the database task ended without an answer".into(),
            )),
        }
    }

    /// Spawns `fut` without waiting (clean-ups whose outcome the caller does not need).
    pub fn detach(&self, fut: impl Future<Output = ()> + Send + 'static) {
        if let Some(runtime) = &self.runtime {
            let timeout = self.timeout;
            runtime.spawn(async move {
                let _ = tokio::time::timeout(timeout, fut).await;
            });
        }
    }

    /// A pooled connection (to be used inside a future given to [`Connections::block`]).
    pub async fn get(pool: &Pool) -> Result<Lease, PgFailure> {
        pool.get().await.map(|o| Lease(Some(o))).map_err(|e| {
            PgFailure::Unavailable(format!("no connection to the database: {}", pool_error(e)))
        })
    }
}

/// A connection taken from the pool. It goes back only through [`Lease::release`], called once
/// the connection is known to be idle outside any transaction; dropped any other way (an error,
/// a timeout that dropped the future holding it) it is closed, so that no connection in an
/// unknown state is ever handed to another transaction.
pub struct Lease(Option<Object>);

impl Lease {
    /// Back to the pool (the connection is idle, outside a transaction).
    pub fn release(mut self) {
        drop(self.0.take());
    }
}

impl std::ops::Deref for Lease {
    type Target = deadpool_postgres::ClientWrapper;

    fn deref(&self) -> &Self::Target {
        self.0
            .as_ref()
            .expect("a lease holds its connection until dropped")
    }
}

impl std::ops::DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.0
            .as_mut()
            .expect("a lease holds its connection until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(Object::take(object));
        }
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> String {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Backend(e) => match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        },
        PoolError::Timeout(_) => "timed out waiting for a connection".into(),
        other => other.to_string(),
    }
}

/// `user@host:port/db` for messages (no password, which the URL never holds).
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "?".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("?"),
        config.get_dbname().unwrap_or("?")
    )
}

/// A storage error naming the database.
pub fn storage(connections: &Connections, what: &str, failure: &PgFailure) -> StateError {
    StateError::Storage(format!(
        "PostgreSQL {} ({what}): {failure}",
        connections.description
    ))
}
