//! `custos.v1.Outbox`: the broadcaster's stream of signed transactions (broadcaster principals).

use std::pin::Pin;

use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use super::convert;
use super::edge::Edge;
use super::proto;
use super::proto::outbox_server::Outbox;
use super::status::to_status;
use crate::signing::contract::{Privilege, SignerCore};

/// The Outbox service over a core.
#[derive(Debug)]
pub struct OutboxService<C> {
    edge: Edge<C>,
}

impl<C> OutboxService<C> {
    /// A service sharing `edge`.
    pub fn new(edge: Edge<C>) -> Self {
        OutboxService { edge }
    }
}

/// The stream handed to tonic.
pub type EntryStream = Pin<Box<dyn Stream<Item = Result<proto::OutboxEntry, Status>> + Send>>;

#[tonic::async_trait]
impl<C: SignerCore> Outbox for OutboxService<C> {
    type StreamSignedStream = EntryStream;

    async fn stream_signed(
        &self,
        request: Request<proto::StreamSignedRequest>,
    ) -> Result<Response<EntryStream>, Status> {
        let principal =
            self.edge
                .authenticate("StreamSigned", &request, Some(Privilege::StreamOutbox))?;
        let after = request.get_ref().after_sequence;
        let result =
            self.edge
                .core
                .stream_signed(&principal, after)
                .await
                .map(|entries| -> EntryStream {
                    Box::pin(entries.map(|entry| match entry {
                        Ok(entry) => Ok(convert::outbox_entry(&entry)),
                        Err(error) => Err(to_status(&error)),
                    }))
                });
        self.edge.finish("StreamSigned", &principal, result)
    }

    async fn ack(
        &self,
        request: Request<proto::AckRequest>,
    ) -> Result<Response<proto::AckResponse>, Status> {
        let principal = self
            .edge
            .authenticate("Ack", &request, Some(Privilege::StreamOutbox))?;
        let sequence = request.get_ref().sequence;
        // The outbox lag gauge is the core's (it moves on signing as well as on acks).
        let result = self
            .edge
            .core
            .ack(&principal, sequence)
            .await
            .map(|ack| proto::AckResponse {
                acked_sequence: ack.acked,
                head_sequence: ack.head,
            });
        self.edge.finish("Ack", &principal, result)
    }
}
