//! Reads outside transactions (one record, ranges, several ranges pipelined in one round trip,
//! counts) and the read-only snapshot that the full check reads through.

use std::ops::Bound;
use std::sync::{Arc, Mutex};

use futures_util::future::join_all;

use super::pool::{storage, Connections, Lease, PgFailure};
use super::sql;
use super::PgEngine;
use crate::state::engine::{Engine, Entries, RawTx, Scan, TxResult};
use crate::state::{StateError, Tree};

/// A scan as SQL parameters: the inclusive lower bound, the exclusive upper bound (if any).
struct Range {
    tree: i16,
    from: Vec<u8>,
    to: Option<Vec<u8>>,
    reverse: bool,
    limit: i64,
}

fn successor(key: &[u8]) -> Vec<u8> {
    let mut k = key.to_vec();
    k.push(0);
    k
}

fn range(scan: &Scan) -> Range {
    let from = match &scan.from {
        Bound::Unbounded => Vec::new(),
        Bound::Included(k) => k.clone(),
        Bound::Excluded(k) => successor(k),
    };
    let to = match &scan.to {
        Bound::Unbounded => None,
        Bound::Included(k) => Some(successor(k)),
        Bound::Excluded(k) => Some(k.clone()),
    };
    Range {
        tree: sql::tree_id(scan.tree),
        from,
        to,
        reverse: scan.reverse,
        limit: i64::try_from(scan.limit).unwrap_or(i64::MAX),
    }
}

pub(super) async fn get(
    client: &Lease,
    tree: i16,
    key: Vec<u8>,
) -> Result<Option<Vec<u8>>, PgFailure> {
    let statement = client
        .prepare_cached(sql::GET)
        .await
        .map_err(PgFailure::from_pg)?;
    let rows = client
        .query(&statement, &[&tree, &key])
        .await
        .map_err(PgFailure::from_pg)?;
    Ok(rows.first().map(|r| r.get::<_, Vec<u8>>(0)))
}

async fn scan_one(client: &Lease, r: Range) -> Result<Entries, PgFailure> {
    if r.limit == 0 {
        return Ok(Vec::new());
    }
    let text = match (&r.to, r.reverse) {
        (Some(_), false) => sql::SCAN_UP_TO,
        (None, false) => sql::SCAN_UP_OPEN,
        (Some(_), true) => sql::SCAN_DOWN_TO,
        (None, true) => sql::SCAN_DOWN_OPEN,
    };
    let statement = client
        .prepare_cached(text)
        .await
        .map_err(PgFailure::from_pg)?;
    let rows = match &r.to {
        Some(to) => {
            client
                .query(&statement, &[&r.tree, &r.from, to, &r.limit])
                .await
        }
        None => {
            client
                .query(&statement, &[&r.tree, &r.from, &r.limit])
                .await
        }
    }
    .map_err(PgFailure::from_pg)?;
    Ok(rows
        .into_iter()
        .map(|row| (row.get::<_, Vec<u8>>(0), row.get::<_, Vec<u8>>(1)))
        .collect())
}

/// Every scan sent at once on one connection (pipelined: one network round trip).
async fn scan_all(client: &Lease, scans: Vec<Range>) -> Result<Vec<Entries>, PgFailure> {
    join_all(scans.into_iter().map(|r| scan_one(client, r)))
        .await
        .into_iter()
        .collect()
}

async fn count(client: &Lease, tree: i16) -> Result<u64, PgFailure> {
    let statement = client
        .prepare_cached(sql::COUNT)
        .await
        .map_err(PgFailure::from_pg)?;
    let row = client
        .query_one(&statement, &[&tree])
        .await
        .map_err(PgFailure::from_pg)?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

/// One read on a pooled connection.
fn pooled<T: Send + 'static, F>(
    connections: &Connections,
    what: &str,
    read: impl FnOnce(Lease) -> F + Send + 'static,
) -> Result<T, StateError>
where
    F: std::future::Future<Output = (Lease, Result<T, PgFailure>)> + Send,
{
    let pool = connections.pool.clone();
    let outcome = connections.block(async move {
        let lease = Connections::get(&pool).await?;
        let (lease, result) = read(lease).await;
        if result.is_ok() {
            lease.release();
        }
        result
    });
    let result = outcome.and_then(|r| r);
    if let Err(e) = &result {
        super::note_failure(e);
    }
    result.map_err(|e| storage(connections, what, &e))
}

impl PgEngine {
    pub(super) fn read_get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let key = key.to_vec();
        let tree = sql::tree_id(tree);
        pooled(
            &self.connections,
            "reading a record",
            move |lease| async move {
                let r = get(&lease, tree, key).await;
                (lease, r)
            },
        )
    }

    pub(super) fn read_scans(&self, scans: &[Scan]) -> Result<Vec<Entries>, StateError> {
        let ranges: Vec<Range> = scans.iter().map(range).collect();
        pooled(
            &self.connections,
            "reading a range",
            move |lease| async move {
                let r = scan_all(&lease, ranges).await;
                (lease, r)
            },
        )
    }

    pub(super) fn read_count(&self, tree: Tree) -> Result<u64, StateError> {
        let tree = sql::tree_id(tree);
        pooled(
            &self.connections,
            "counting records",
            move |lease| async move {
                let r = count(&lease, tree).await;
                (lease, r)
            },
        )
    }

    pub(super) fn open_snapshot(&self) -> Result<Arc<dyn Engine>, StateError> {
        let pool = self.connections.pool.clone();
        let lease = self
            .connections
            .block(async move {
                let lease = Connections::get(&pool).await?;
                let begin = lease
                    .prepare_cached(sql::BEGIN_SNAPSHOT)
                    .await
                    .map_err(PgFailure::from_pg)?;
                lease
                    .execute(&begin, &[])
                    .await
                    .map_err(PgFailure::from_pg)?;
                Ok::<_, PgFailure>(lease)
            })
            .and_then(|r| r)
            .map_err(|e| storage(&self.connections, "opening a snapshot", &e))?;
        Ok(Arc::new(Snapshot {
            connections: self.connections.clone(),
            lease: Mutex::new(Some(lease)),
        }))
    }
}

/// A read-only view at one point in time: a `REPEATABLE READ READ ONLY` transaction on its own
/// connection, ended when the view is dropped.
struct Snapshot {
    connections: Arc<Connections>,
    lease: Mutex<Option<Lease>>,
}

impl Snapshot {
    fn with<T: Send + 'static, F>(
        &self,
        what: &str,
        read: impl FnOnce(Lease) -> F + Send + 'static,
    ) -> Result<T, StateError>
    where
        F: std::future::Future<Output = (Lease, Result<T, PgFailure>)> + Send + 'static,
    {
        let mut slot = self.lease.lock().unwrap_or_else(|e| e.into_inner());
        let lease = slot.take().ok_or_else(|| {
            StateError::Storage("the snapshot's connection was lost; read again".into())
        })?;
        let outcome = self.connections.block(read(lease));
        match outcome {
            Ok((lease, result)) => {
                if result.is_ok() {
                    *slot = Some(lease);
                }
                result.map_err(|e| storage(&self.connections, what, &e))
            }
            Err(e) => Err(storage(&self.connections, what, &e)),
        }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let lease = self.lease.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(lease) = lease {
            self.connections.detach(async move {
                if lease.batch_execute(sql::ROLLBACK).await.is_ok() {
                    lease.release();
                }
            });
        }
    }
}

impl Engine for Snapshot {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn transact_raw(
        &self,
        _step: &mut dyn FnMut(&dyn RawTx) -> TxResult<()>,
    ) -> Result<(), StateError> {
        Err(StateError::Storage(
            "a read-only snapshot cannot be written".into(),
        ))
    }

    fn get_raw(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let key = key.to_vec();
        let tree = sql::tree_id(tree);
        self.with("reading a record", move |lease| async move {
            let r = get(&lease, tree, key).await;
            (lease, r)
        })
    }

    fn scan_raw(&self, scan: &Scan) -> Result<Entries, StateError> {
        let mut all = self.scan_many_raw(std::slice::from_ref(scan))?;
        Ok(all.pop().unwrap_or_default())
    }

    fn scan_many_raw(&self, scans: &[Scan]) -> Result<Vec<Entries>, StateError> {
        let ranges: Vec<Range> = scans.iter().map(range).collect();
        self.with("reading a range", move |lease| async move {
            let r = scan_all(&lease, ranges).await;
            (lease, r)
        })
    }

    fn flush(&self) -> Result<(), StateError> {
        Ok(())
    }

    fn count(&self, tree: Tree) -> Result<u64, StateError> {
        let tree = sql::tree_id(tree);
        self.with("counting records", move |lease| async move {
            let r = count(&lease, tree).await;
            (lease, r)
        })
    }

    fn shared(&self) -> bool {
        true
    }
}
