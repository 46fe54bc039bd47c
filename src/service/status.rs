//! The one mapping from core errors to gRPC statuses.
//!
//! Every refusal carries a stable machine-readable code twice: in the `custos-code` response
//! metadata (for programs) and in brackets at the start of the message (for humans and for
//! clients whose libraries drop metadata): `[policy-deny-limit-daily] denied by policy rule ...`.
//! Policy denials also carry the rule in `custos-rule`.

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::signing::contract::CoreError;

/// Metadata key of the stable code.
pub const CODE_METADATA: &str = "custos-code";
/// Metadata key of the deciding policy rule (policy denials).
pub const RULE_METADATA: &str = "custos-rule";

/// The gRPC code for a core error.
pub fn grpc_code(error: &CoreError) -> Code {
    match error {
        CoreError::InvalidArgument { .. } | CoreError::InvalidPayload { .. } => {
            Code::InvalidArgument
        }
        CoreError::PolicyDenied { .. } | CoreError::Forbidden { .. } => Code::PermissionDenied,
        CoreError::Unauthenticated { .. } => Code::Unauthenticated,
        CoreError::RequestIdConflict { .. } => Code::AlreadyExists,
        CoreError::NotFound { .. } => Code::NotFound,
        CoreError::Sealed | CoreError::Precondition { .. } => Code::FailedPrecondition,
        CoreError::StateUnavailable { .. } | CoreError::KeyBackendUnavailable { .. } => {
            Code::Unavailable
        }
        CoreError::StateTampered { .. } => Code::DataLoss,
        CoreError::NotImplemented { .. } => Code::Unimplemented,
        CoreError::Internal { .. } => Code::Internal,
    }
}

/// The status for a core error: code, "[code] message", and metadata.
pub fn to_status(error: &CoreError) -> Status {
    let code = error.code();
    let mut status = Status::new(grpc_code(error), format!("[{code}] {error}"));
    // Codes and rule names are ASCII identifiers; a value that is not valid metadata is skipped
    // rather than failing the whole answer (the message still carries it).
    if let Ok(value) = MetadataValue::try_from(code) {
        status.metadata_mut().insert(CODE_METADATA, value);
    }
    if let CoreError::PolicyDenied { rule, .. } = error {
        if let Ok(value) = MetadataValue::try_from(rule.as_str()) {
            status.metadata_mut().insert(RULE_METADATA, value);
        }
    }
    status
}

impl From<CoreError> for Status {
    fn from(error: CoreError) -> Self {
        to_status(&error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_is_failed_precondition_with_code() {
        let status = to_status(&CoreError::Sealed);
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().starts_with("[sealed] "));
        assert_eq!(status.metadata().get(CODE_METADATA).unwrap(), "sealed");
    }

    #[test]
    fn policy_denial_carries_rule_and_code() {
        let status = to_status(&CoreError::PolicyDenied {
            rule: "hot-wallet-daily".into(),
            code: "policy-deny-limit-daily".into(),
            reason: "daily limit of 2 BTC exceeded".into(),
        });
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(
            status.metadata().get(CODE_METADATA).unwrap(),
            "policy-deny-limit-daily"
        );
        assert_eq!(
            status.metadata().get(RULE_METADATA).unwrap(),
            "hot-wallet-daily"
        );
    }

    #[test]
    fn each_kind_has_its_code() {
        let cases = [
            (
                CoreError::invalid("request_id", "empty"),
                Code::InvalidArgument,
            ),
            (
                CoreError::RequestIdConflict {
                    request_id: "r1".into(),
                },
                Code::AlreadyExists,
            ),
            (
                CoreError::StateUnavailable {
                    reason: "disk full".into(),
                },
                Code::Unavailable,
            ),
            (
                CoreError::KeyBackendUnavailable {
                    reason: "token 'custos' is unavailable: CKR_DEVICE_REMOVED".into(),
                },
                Code::Unavailable,
            ),
            (
                CoreError::Unauthenticated {
                    reason: "no certificate".into(),
                },
                Code::Unauthenticated,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(to_status(&error).code(), code, "{error}");
        }
    }
}
