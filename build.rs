//! Compiles the public API (proto/custos/v1/*.proto) without protoc: `protox` parses the files
//! into a descriptor set, `tonic-prost-build` generates messages, servers and clients from it, and
//! the encoded descriptor set is written to OUT_DIR for gRPC server reflection.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/custos/v1/common.proto",
    "proto/custos/v1/signer.proto",
    "proto/custos/v1/outbox.proto",
    "proto/custos/v1/admin.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("custos_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // The unseal passphrase and shares are secrets: no derived Debug (proto.rs redacts them).
        .skip_debug(["custos.v1.UnsealRequest", "custos.v1.UnsealRequest.secret"])
        .compile_fds(fds)?;
    Ok(())
}
