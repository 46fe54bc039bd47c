//! `custos.v1.Admin`: operators' calls (admin principals only).

use tonic::{Request, Response, Status};

use super::convert;
use super::edge::Edge;
use super::proto;
use super::proto::admin_server::Admin;
use crate::secret::SecretString;
use crate::signing::contract::UnsealSecret;
use crate::signing::contract::{CoreError, Privilege, SignerCore};

/// The Admin service over a core.
#[derive(Debug)]
pub struct AdminService<C> {
    edge: Edge<C>,
}

impl<C> AdminService<C> {
    /// A service sharing `edge`.
    pub fn new(edge: Edge<C>) -> Self {
        AdminService { edge }
    }
}

#[tonic::async_trait]
impl<C: SignerCore> Admin for AdminService<C> {
    async fn status(
        &self,
        request: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusResponse>, Status> {
        let principal = self
            .edge
            .authenticate("Status", &request, Some(Privilege::Unseal))?;
        let result = self.edge.core.status(&principal).await.map(|status| {
            let (shares_given, _) = convert::shares(status.seal);
            let (share_indexes, shares_expire_at) = convert::share_progress(status.seal);
            let shares_threshold = status.unsealers.share_threshold;
            proto::StatusResponse {
                seal_state: convert::seal_state(status.seal).into(),
                policy_hash: status.policy_hash.unwrap_or_default(),
                version: status.version,
                api_version: "custos.v1".to_owned(),
                principal: status.principal,
                roles: status.roles,
                shares_given,
                shares_threshold,
                outbox_head_sequence: status.outbox_head,
                seal_reason: status.seal_reason.unwrap_or_default(),
                hsm: status.hsm.map(|h| proto::HsmStatus {
                    token: h.token,
                    module: h.module,
                    available: h.available,
                    detail: h.detail,
                    wallets: h.wallets,
                    sessions_open: h.sessions_open,
                    sessions_max: h.sessions_max,
                }),
                share_indexes,
                shares_expire_at,
                shares_total: status.unsealers.share_count,
                passphrase_unseals: status.unsealers.passphrase,
            }
        });
        self.edge.finish("Status", &principal, result)
    }

    async fn unseal(
        &self,
        request: Request<proto::UnsealRequest>,
    ) -> Result<Response<proto::UnsealResponse>, Status> {
        use proto::unseal_request::Secret;
        let principal = self
            .edge
            .authenticate("Unseal", &request, Some(Privilege::Unseal))?;
        // The secret moves straight into a zeroizing type; the protobuf copy drops with the request.
        let secret = match request.into_inner().secret {
            Some(Secret::Passphrase(p)) if !p.is_empty() => {
                Ok(UnsealSecret::Passphrase(SecretString::new(p)))
            }
            Some(Secret::Share(s)) if !s.is_empty() => {
                Ok(UnsealSecret::Share(SecretString::new(s)))
            }
            _ => Err(CoreError::invalid(
                "secret",
                "give a passphrase or a share (not empty)",
            )),
        };
        let result = match secret {
            Ok(secret) => self.edge.core.unseal(&principal, secret).await,
            Err(error) => Err(error),
        }
        .map(|state| {
            let (shares_given, shares_threshold) = convert::shares(state);
            let (share_indexes, shares_expire_at) = convert::share_progress(state);
            proto::UnsealResponse {
                seal_state: convert::seal_state(state).into(),
                shares_given,
                shares_threshold,
                share_indexes,
                shares_expire_at,
            }
        });
        self.edge.finish("Unseal", &principal, result)
    }

    async fn seal(
        &self,
        request: Request<proto::SealRequest>,
    ) -> Result<Response<proto::SealResponse>, Status> {
        let principal = self
            .edge
            .authenticate("Seal", &request, Some(Privilege::Admin))?;
        tracing::warn!(principal = %principal, "seal requested");
        let result = self
            .edge
            .core
            .seal(&principal)
            .await
            .map(|state| proto::SealResponse {
                seal_state: convert::seal_state(state).into(),
            });
        self.edge.finish("Seal", &principal, result)
    }

    async fn create_wallet(
        &self,
        request: Request<proto::CreateWalletRequest>,
    ) -> Result<Response<proto::CreateWalletResponse>, Status> {
        let principal = self
            .edge
            .authenticate("CreateWallet", &request, Some(Privilege::Admin))?;
        let result = match convert::create_wallet(request.into_inner()) {
            Ok(create) => self.edge.core.create_wallet(&principal, create).await,
            Err(error) => Err(error),
        }
        .map(|wallet| proto::CreateWalletResponse {
            wallet: Some(convert::wallet(&wallet)),
        });
        self.edge.finish("CreateWallet", &principal, result)
    }

    async fn reload_policy(
        &self,
        request: Request<proto::ReloadPolicyRequest>,
    ) -> Result<Response<proto::ReloadPolicyResponse>, Status> {
        let principal = self
            .edge
            .authenticate("ReloadPolicy", &request, Some(Privilege::Admin))?;
        let result = self
            .edge
            .core
            .reload_policy(&principal)
            .await
            .map(|reload| proto::ReloadPolicyResponse {
                previous_policy_hash: reload.previous_hash,
                policy_hash: reload.hash,
            });
        self.edge.finish("ReloadPolicy", &principal, result)
    }
}
