//! The generated code of the public API, package `custos.v1` (from `proto/custos/v1/*.proto`).
#![allow(missing_docs)]
#![allow(clippy::all, clippy::pedantic)]

tonic::include_proto!("custos.v1");

/// The encoded file descriptor set of the API, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/custos_descriptor.bin"));

// The unseal secrets must never reach a log line through `{:?}`.
impl std::fmt::Debug for UnsealRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnsealRequest")
            .field("secret", &self.secret)
            .finish()
    }
}

impl std::fmt::Debug for unseal_request::Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            unseal_request::Secret::Passphrase(_) => {
                f.write_str("Passphrase(")?;
                f.write_str(crate::secret::REDACTED)?;
                f.write_str(")")
            }
            unseal_request::Secret::Share(_) => {
                f.write_str("Share(")?;
                f.write_str(crate::secret::REDACTED)?;
                f.write_str(")")
            }
        }
    }
}
