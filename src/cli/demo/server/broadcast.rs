//! The broadcaster in the demo: it streams the signed transactions from the outbox and acks the
//! last one, so that a restarted broadcaster resumes after it.

use std::time::Duration;

use tokio_stream::StreamExt;

use super::{op, status_line, Signer};
use crate::cli::demo::field;
use crate::cli::CliError;
use crate::service::proto::outbox_client::OutboxClient;
use crate::service::proto::{AckRequest, StreamSignedRequest};

pub(super) async fn broadcast(signer: &Signer) -> Result<(), CliError> {
    println!(
        "  As {}: Outbox.StreamSigned from sequence 0",
        signer.principal("broadcaster")
    );
    let mut outbox = OutboxClient::new(signer.channel("broadcaster").await?);
    let mut stream = outbox
        .stream_signed(StreamSignedRequest {
            after_sequence: Some(0),
        })
        .await
        .map_err(|s| op(status_line(&s)))?
        .into_inner();
    let mut last = 0;
    for _ in 0..3 {
        let entry = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .map_err(|_| op("the outbox stream stalled"))?
            .ok_or_else(|| op("the outbox stream ended"))?
            .map_err(|s| op(status_line(&s)))?;
        field(
            &format!("entry {}", entry.sequence),
            &format!(
                "{:<13} {:<12} {} {}",
                entry.request_id, entry.wallet, entry.network, entry.tx_id
            ),
        );
        last = entry.sequence;
    }
    drop(stream);
    let ack = outbox
        .ack(AckRequest { sequence: last })
        .await
        .map_err(|s| op(status_line(&s)))?
        .into_inner();
    field(
        "Outbox.Ack",
        &format!(
            "acked {} of {}: a restarted broadcaster resumes after it",
            ack.acked_sequence, ack.head_sequence
        ),
    );
    Ok(())
}
