//! The gRPC edge: tonic services over mutual TLS.
pub mod proto;
