//! `custos.v1.Signer`: translate, delegate to the core, translate back.

use tonic::{Request, Response, Status};

use super::convert;
use super::edge::Edge;
use super::proto;
use super::proto::signer_server::Signer;
use crate::signing::contract::{CoreError, Privilege, SignerCore};

/// The Signer service over a core.
#[derive(Debug)]
pub struct SignerService<C> {
    edge: Edge<C>,
}

impl<C> SignerService<C> {
    /// A service sharing `edge`.
    pub fn new(edge: Edge<C>) -> Self {
        SignerService { edge }
    }
}

#[tonic::async_trait]
impl<C: SignerCore> Signer for SignerService<C> {
    async fn sign(
        &self,
        request: Request<proto::SignRequest>,
    ) -> Result<Response<proto::SignResponse>, Status> {
        let principal = self.edge.authenticate("Sign", &request, None)?;
        let result = match convert::sign_request(request.into_inner()) {
            Ok(sign) => self.edge.core.sign(&principal, sign).await,
            Err(error) => Err(error),
        };
        // Decisions by rule and signing latency are counted by the core, which knows when a
        // decision is made (a retry answered from the stored result is not a new one).
        let result = result.map(|reply| convert::sign_reply(&reply));
        self.edge.finish("Sign", &principal, result)
    }

    async fn get_request(
        &self,
        request: Request<proto::GetRequestRequest>,
    ) -> Result<Response<proto::GetRequestResponse>, Status> {
        let principal = self.edge.authenticate("GetRequest", &request, None)?;
        let r = request.get_ref();
        let result = match convert::request_ref(&r.request_id, &r.requester) {
            Ok(rref) => self.edge.core.get_request(&principal, &rref).await,
            Err(error) => Err(error),
        }
        .map(|record| proto::GetRequestResponse {
            request: Some(convert::request_record(&record)),
        });
        self.edge.finish("GetRequest", &principal, result)
    }

    async fn list_pending(
        &self,
        request: Request<proto::ListPendingRequest>,
    ) -> Result<Response<proto::ListPendingResponse>, Status> {
        let principal = self.edge.authenticate("ListPending", &request, None)?;
        let query = convert::list_pending(request.into_inner());
        let result = self
            .edge
            .core
            .list_pending(&principal, query)
            .await
            .map(|page| proto::ListPendingResponse {
                requests: page.requests.iter().map(convert::request_record).collect(),
                next_page_token: page.next_page_token.unwrap_or_default(),
            });
        self.edge.finish("ListPending", &principal, result)
    }

    async fn approve(
        &self,
        request: Request<proto::ApproveRequest>,
    ) -> Result<Response<proto::ApproveResponse>, Status> {
        let principal = self
            .edge
            .authenticate("Approve", &request, Some(Privilege::Approve))?;
        let request = request.into_inner();
        let result = match convert::request_ref(&request.request_id, &request.requester) {
            Ok(rref) => {
                let vote = convert::vote(&request.reason, request.signature.as_ref());
                self.edge.core.approve(&principal, &rref, &vote).await
            }
            Err(error) => Err(error),
        }
        .map(|record| proto::ApproveResponse {
            request: Some(convert::request_record(&record)),
        });
        self.edge.finish("Approve", &principal, result)
    }

    async fn reject(
        &self,
        request: Request<proto::RejectRequest>,
    ) -> Result<Response<proto::RejectResponse>, Status> {
        let principal = self
            .edge
            .authenticate("Reject", &request, Some(Privilege::Approve))?;
        let request = request.into_inner();
        let result = match convert::request_ref(&request.request_id, &request.requester) {
            Ok(_) if request.reason.trim().is_empty() => {
                Err(CoreError::invalid("reason", "a rejection needs a reason"))
            }
            Ok(rref) => {
                let vote = convert::vote(&request.reason, request.signature.as_ref());
                self.edge.core.reject(&principal, &rref, &vote).await
            }
            Err(error) => Err(error),
        }
        .map(|record| proto::RejectResponse {
            request: Some(convert::request_record(&record)),
        });
        self.edge.finish("Reject", &principal, result)
    }

    async fn get_proof(
        &self,
        request: Request<proto::GetRequestRequest>,
    ) -> Result<Response<proto::GetProofResponse>, Status> {
        let principal = self.edge.authenticate("GetProof", &request, None)?;
        let r = request.get_ref();
        let result = match convert::request_ref(&r.request_id, &r.requester) {
            Ok(rref) => self.edge.core.proof(&principal, &rref).await,
            Err(error) => Err(error),
        }
        .and_then(|proof| {
            serde_json::to_string_pretty(&proof).map_err(|e| CoreError::Internal {
                reason: format!("cannot encode the proof: {e}"),
            })
        })
        .map(|proof_json| proto::GetProofResponse { proof_json });
        self.edge.finish("GetProof", &principal, result)
    }

    async fn list_wallets(
        &self,
        request: Request<proto::ListWalletsRequest>,
    ) -> Result<Response<proto::ListWalletsResponse>, Status> {
        let principal = self.edge.authenticate("ListWallets", &request, None)?;
        let result = self
            .edge
            .core
            .list_wallets(&principal)
            .await
            .map(|wallets| proto::ListWalletsResponse {
                wallets: wallets.iter().map(convert::wallet).collect(),
            });
        self.edge.finish("ListWallets", &principal, result)
    }

    async fn get_address(
        &self,
        request: Request<proto::GetAddressRequest>,
    ) -> Result<Response<proto::GetAddressResponse>, Status> {
        let principal = self.edge.authenticate("GetAddress", &request, None)?;
        let request = request.into_inner();
        let result = if request.wallet.is_empty() {
            Err(CoreError::invalid("wallet", "must not be empty"))
        } else if request.index >= 1 << 31 {
            Err(CoreError::invalid(
                "index",
                format!("{} is a hardened index; expected below 2^31", request.index),
            ))
        } else {
            self.edge
                .core
                .get_address(&principal, &request.wallet, request.change, request.index)
                .await
        }
        .map(|address| proto::GetAddressResponse {
            address: address.address,
            derivation_path: address.derivation_path,
        });
        self.edge.finish("GetAddress", &principal, result)
    }
}
