//! Generates the SDK server's types from the Agones SDK's `.proto` files, copied from the
//! `agones` crate this workspace uses into `proto/` (see `proto/README.md`; a test checks
//! the copy against the crate, so the server speaks exactly the protocol the client was
//! generated from).

fn main() {
    let proto = |path: &str| format!("proto/{path}");
    tonic_build::configure()
        .build_client(false)
        .build_server(true)
        .compile_protos(
            &[proto("sdk/sdk.proto"), proto("sdk/beta/beta.proto")],
            &[
                proto("googleapis"),
                proto("grpc-gateway"),
                proto("sdk/beta"),
                proto("sdk"),
            ],
        )
        .expect("the Agones protos compile (protoc is needed: Debian's protobuf-compiler)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=proto");
}
