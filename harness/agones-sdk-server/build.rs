//! Generates the SDK server's types from the `.proto` files of the `agones` crate this
//! workspace uses (found through `cargo metadata`), so the server speaks exactly the
//! protocol the client was generated from.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo");
    let target = std::env::var("TARGET").expect("set by cargo");
    // Only this platform's packages: cargo downloads no others, and offline metadata
    // over every platform would ask for crates (Android's, Windows') never fetched.
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
            &target,
            "--manifest-path",
        ])
        .arg(PathBuf::from(&manifest).join("Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let agones = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "agones")
        .and_then(|p| p["manifest_path"].as_str())
        .map(|path| PathBuf::from(path).with_file_name("proto"))
        .expect("the agones crate is a dependency of the workspace");
    let proto = |path: &str| agones.join(path);
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
}
