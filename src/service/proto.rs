//! The generated code of the public API, package `custos.v1` (from `proto/custos/v1/*.proto`).
#![allow(missing_docs)]
#![allow(clippy::all, clippy::pedantic)]

tonic::include_proto!("custos.v1");

/// The encoded file descriptor set of the API, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/custos_descriptor.bin"));
