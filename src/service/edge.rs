//! What every handler does around its core call: authenticate the caller, count the outcome,
//! log the refusal (code and principal, never the payload), and map the error to a status.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::metrics_http::outcome_of;
use super::status::to_status;
use super::trust::ClientTrust;
use crate::signing::contract::Principal;
use crate::signing::contract::{CoreError, Privilege, SignerCore};
use crate::signing::metrics::{Metrics, Outcome};

/// The shared state of the three services.
#[derive(Debug)]
pub struct Edge<C> {
    /// The signing core.
    pub core: Arc<C>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Which client certificates are trusted now (checked again at every call).
    pub trust: Arc<ClientTrust>,
}

impl<C> Clone for Edge<C> {
    fn clone(&self) -> Self {
        Edge {
            core: self.core.clone(),
            metrics: self.metrics.clone(),
            trust: self.trust.clone(),
        }
    }
}

impl<C: SignerCore> Edge<C> {
    /// The caller's principal, and the privilege when one is required. A failure is counted and
    /// answered here.
    pub fn authenticate<T>(
        &self,
        method: &'static str,
        request: &Request<T>,
        privilege: Option<Privilege>,
    ) -> Result<Principal, Status> {
        let result = self.principal(request).and_then(|principal| {
            if let Some(privilege) = privilege {
                self.core.authorize(&principal, privilege)?;
            }
            Ok(principal)
        });
        result.map_err(|error| self.refuse(method, None, &error))
    }

    /// The caller's principal: the connection's certificate chain, checked against the trust in
    /// force now (a revocation reloaded since the handshake applies to this call).
    fn principal<T>(&self, request: &Request<T>) -> Result<Principal, CoreError> {
        let certs = request
            .peer_certs()
            .ok_or_else(|| CoreError::Unauthenticated {
                reason: "no client certificate".into(),
            })?;
        self.trust
            .authenticate(&certs, rustls::pki_types::UnixTime::now())
            .map_err(|e| CoreError::Unauthenticated {
                reason: e.to_string(),
            })
    }

    /// Counts and answers one call's result.
    pub fn finish<T>(
        &self,
        method: &'static str,
        principal: &Principal,
        result: Result<T, CoreError>,
    ) -> Result<Response<T>, Status> {
        match result {
            Ok(value) => {
                self.metrics.record_request(method, Outcome::Succeeded);
                Ok(Response::new(value))
            }
            Err(error) => Err(self.refuse(method, Some(principal), &error)),
        }
    }

    fn refuse(
        &self,
        method: &'static str,
        principal: Option<&Principal>,
        error: &CoreError,
    ) -> Status {
        let status = to_status(error);
        let outcome = outcome_of(status.code());
        self.metrics.record_request(method, outcome);
        let principal = principal.map(Principal::as_str).unwrap_or("-");
        match outcome {
            Outcome::Failed
                if matches!(
                    error,
                    CoreError::Internal { .. } | CoreError::StateUnavailable { .. }
                ) =>
            {
                tracing::error!(method, principal, code = error.code(), %error, "call failed")
            }
            _ => tracing::info!(method, principal, code = error.code(), %error, "call refused"),
        }
        status
    }
}
