//! `Outbox.StreamSigned` and `Outbox.Ack`: at-least-once, in order, from a cursor.
//!
//! Only holders of the policy's `broadcaster` role may stream or ack. Each broadcaster principal
//! has a cursor (the last sequence it acknowledged) persisted in the state store; a stream without
//! an explicit `after` starts there, so a broadcaster that restarts receives everything it had not
//! acknowledged (and perhaps a few it had seen: at-least-once; tx ids dedupe). Entries are read
//! from the database, never from memory, and **only up to the durable head**: the `watch` on the
//! outbox head moves only after the transaction that pushed an entry is flushed (group commit), so
//! no stream ever sends an entry a crash could take back, and a sequence number a broadcaster has
//! seen is never given to another transaction after a restart. Each entry carries the audit head of
//! its `sign.signed` record, so a broadcaster also sees the audit chain only grow.
//!
//! Replicas sharing one database (PostgreSQL) share one outbox sequence and the cursors: a stream
//! also reads the head from the database (every 200 ms while idle), so it delivers entries any
//! replica committed — every entry once, in order — and a broadcaster resumes from its cursor on
//! whichever replica it reaches.

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::signing::contract::Principal;
use crate::signing::contract::{AckInfo, OutboxEntry, OutboxStream};
use crate::signing::contract::{CoreError, CoreResult, Privilege, SignerCore};
use crate::state::outbox::{self as outbox_state, StoredOutboxEntry};
use crate::state::requests::StoredRequest;
use crate::state::State;

use super::{system_time, unavailable, SigningCore};

/// Entries read per database round trip while catching up.
const BATCH: usize = 256;

/// How often a stream over a database that other replicas also commit to reads the head there
/// (their entries wake no watch in this process).
const SHARED_POLL: std::time::Duration = std::time::Duration::from_millis(200);

fn entry(e: StoredOutboxEntry) -> OutboxEntry {
    OutboxEntry {
        sequence: e.sequence,
        request_id: e.request_id,
        chain: e.chain,
        network: e.network,
        wallet: e.wallet,
        raw_tx_hex: e.raw_tx_hex,
        tx_id: e.tx_id,
        signed_at: system_time(e.signed_at),
        audit_sequence: e.audit_sequence,
        audit_mac: e.audit_mac,
    }
}

/// Wakes live streams after `done` (already flushed) got an outbox entry.
pub(crate) fn notify(core: &SigningCore, done: &StoredRequest) {
    if let Some(seq) = done.outbox_seq {
        core.outbox_head.send_if_modified(|head| {
            if seq > *head {
                *head = seq;
                true
            } else {
                false
            }
        });
        core.update_outbox_lag();
    }
}

/// `Outbox.StreamSigned`.
pub fn stream_signed(
    core: &SigningCore,
    principal: &Principal,
    after: Option<u64>,
) -> CoreResult<OutboxStream> {
    core.authorize(principal, Privilege::StreamOutbox)?;
    let start = match after {
        Some(a) => a,
        None => outbox_state::cursor(&core.state, principal.as_str()).map_err(|e| core.fail(e))?,
    };
    let (tx, rx) = mpsc::channel(BATCH);
    let head = core.outbox_head.subscribe();
    tokio::spawn(pump(core.state.clone(), head, start, tx));
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// Sends every entry after `last`, then waits for the head to move; ends when the client goes.
async fn pump(
    state: std::sync::Arc<State>,
    mut head: watch::Receiver<u64>,
    mut last: u64,
    tx: mpsc::Sender<Result<OutboxEntry, CoreError>>,
) {
    // Other replicas' entries are seen by reading the head from the database (whose commits
    // are durable), every SHARED_POLL.
    let shared = state.engine().shared();
    loop {
        // Mark the head seen before reading, so an entry signed meanwhile wakes us again.
        let mut durable = *head.borrow_and_update();
        if shared {
            match outbox_state::head(&state) {
                Ok(h) => durable = durable.max(h),
                Err(e) => {
                    let _ = tx.send(Err(unavailable(e))).await;
                    return;
                }
            }
        }
        loop {
            let batch = match outbox_state::read_after(&state, last, durable, BATCH) {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(unavailable(e))).await;
                    return;
                }
            };
            if batch.is_empty() {
                break;
            }
            for e in batch {
                last = e.sequence;
                if tx.send(Ok(entry(e))).await.is_err() {
                    return;
                }
            }
        }
        tokio::select! {
            changed = head.changed() => if changed.is_err() { return },
            () = tx.closed() => return,
            () = tokio::time::sleep(SHARED_POLL), if shared => {},
        }
    }
}

/// `Outbox.Ack`: moves the principal's cursor forward (never back; beyond the head is refused).
pub async fn ack(core: &SigningCore, principal: &Principal, sequence: u64) -> CoreResult<AckInfo> {
    core.authorize(principal, Privilege::StreamOutbox)?;
    let head = core.durable_outbox_head();
    if sequence > head {
        return Err(CoreError::invalid(
            "sequence",
            format!("{sequence} is beyond the newest outbox entry ({head})"),
        ));
    }
    let acked = core
        .state
        .transact(|tx| outbox_state::ack_in(tx, principal.as_str(), sequence))
        .map_err(|e| core.fail(e))?;
    core.flusher.flush().await.map_err(|e| core.fail(e))?;
    core.update_outbox_lag();
    Ok(AckInfo { acked, head })
}
