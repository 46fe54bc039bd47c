//! The database schema and its versioned migrations, embedded in the binary.
//!
//! `custos state migrate` applies the migrations the database lacks, in order, each in its own
//! transaction with its row in `custos_migrations`. A server (and every command that opens the
//! state) checks the version first and refuses a database it does not know: no schema yet, an
//! older one (run `custos state migrate`), or a newer one (this binary is older than the database:
//! upgrade it).
//!
//! Version 1:
//! - `custos_records (tree SMALLINT, key BYTEA, value BYTEA, PRIMARY KEY (tree, key))`: every
//!   record of every tree, as the layer above stores it (`version ‖ MAC ‖ body`, or a self-
//!   authenticating audit record): nothing the sealed store protects is held in clear. `tree` is
//!   the tree's stable id ([`crate::state::Tree::id`]); keys sort byte-wise, as in sled.
//! - `custos_lock (id SMALLINT PRIMARY KEY)` with the single row `1`: every transaction locks it
//!   first (`SELECT … FOR UPDATE`), which orders all transactions of all replicas (see the engine
//!   docs for why a row lock and not serializable isolation).
//!
//! The SQL keeps to what CockroachDB also has (no advisory locks, no stored procedures, no
//! `LOCK TABLE`).

use super::pool::{Connections, Lease, PgFailure};
use crate::state::StateError;

/// One migration.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Its version (1, 2, …).
    pub version: i32,
    /// What it does, in words.
    pub description: &'static str,
    /// The statements, in order.
    pub statements: &'static [&'static str],
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "records by (tree, key); the state lock row",
    statements: &[
        "CREATE TABLE custos_records (\
            tree SMALLINT NOT NULL, \
            key BYTEA NOT NULL, \
            value BYTEA NOT NULL, \
            PRIMARY KEY (tree, key))",
        "CREATE TABLE custos_lock (id SMALLINT PRIMARY KEY)",
        "INSERT INTO custos_lock (id) VALUES (1)",
    ],
}];

/// The version this binary serves.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS custos_migrations (\
    version INT PRIMARY KEY, \
    description TEXT NOT NULL, \
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now())";

/// What [`migrate`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrateReport {
    /// The version before.
    pub from: i32,
    /// The version now.
    pub to: i32,
    /// The migrations applied (version, description).
    pub applied: Vec<(i32, &'static str)>,
}

async fn current(client: &Lease) -> Result<Option<i32>, PgFailure> {
    let exists = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = 'custos_migrations')",
            &[],
        )
        .await
        .map_err(PgFailure::from_pg)?
        .get::<_, bool>(0);
    if !exists {
        return Ok(None);
    }
    let row = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM custos_migrations",
            &[],
        )
        .await
        .map_err(PgFailure::from_pg)?;
    Ok(Some(row.get::<_, i32>(0)))
}

/// The schema version of the database (`None`: no Custos schema at all).
pub fn version(connections: &Connections) -> Result<Option<i32>, StateError> {
    let pool = connections.pool.clone();
    connections
        .block(async move {
            let client = Connections::get(&pool).await?;
            let v = current(&client).await?;
            client.release();
            Ok::<_, PgFailure>(v)
        })
        .and_then(|r| r)
        .map_err(|e| super::pool::storage(connections, "reading the schema version", &e))
}

/// Refuses a database whose schema this binary does not serve.
pub fn check(connections: &Connections) -> Result<(), StateError> {
    let want = latest();
    match version(connections)? {
        Some(v) if v == want => Ok(()),
        None | Some(0) => Err(StateError::Storage(format!(
            "PostgreSQL {}: no Custos schema in this database (or schema): run `custos state \
             migrate` first",
            connections.description
        ))),
        Some(v) if v < want => Err(StateError::Storage(format!(
            "PostgreSQL {}: the schema is at version {v}, this custos needs version {want}: run \
             `custos state migrate`",
            connections.description
        ))),
        Some(v) => Err(StateError::Storage(format!(
            "PostgreSQL {}: the schema is at version {v}, newer than this custos knows (up to \
             {want}): upgrade custos before serving this database",
            connections.description
        ))),
    }
}

/// Applies the migrations the database lacks (creating the schema named in the settings first).
pub fn migrate(
    connections: &Connections,
    schema: Option<&str>,
) -> Result<MigrateReport, StateError> {
    let pool = connections.pool.clone();
    let schema = schema.map(str::to_owned);
    connections
        .block(async move {
            let mut client = Connections::get(&pool).await?;
            if let Some(schema) = &schema {
                // The name was checked to be a plain identifier (settings::check_schema_name).
                client
                    .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                    .await
                    .map_err(PgFailure::from_pg)?;
            }
            client
                .batch_execute(CREATE_TABLE)
                .await
                .map_err(PgFailure::from_pg)?;
            let from = current(&client).await?.unwrap_or(0);
            if from > latest() {
                return Ok(Err(from));
            }
            let mut applied = Vec::new();
            for m in MIGRATIONS.iter().filter(|m| m.version > from) {
                let tx = client.transaction().await.map_err(PgFailure::from_pg)?;
                for statement in m.statements {
                    tx.batch_execute(statement)
                        .await
                        .map_err(PgFailure::from_pg)?;
                }
                tx.execute(
                    "INSERT INTO custos_migrations (version, description) VALUES ($1, $2)",
                    &[&m.version, &m.description],
                )
                .await
                .map_err(PgFailure::from_pg)?;
                tx.commit().await.map_err(PgFailure::from_pg)?;
                applied.push((m.version, m.description));
            }
            client.release();
            Ok(Ok(MigrateReport {
                from,
                to: latest(),
                applied,
            }))
        })
        .and_then(|r| r)
        .map_err(|e| super::pool::storage(connections, "migrating", &e))?
        .map_err(|v| {
            StateError::Storage(format!(
                "PostgreSQL {}: the schema is at version {v}, newer than this custos knows (up \
                 to {}): nothing migrated",
                connections.description,
                latest()
            ))
        })
}
