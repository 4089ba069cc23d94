//! The `.proto` files the recording server is generated from are the `agones` crate's own.

use std::path::{Path, PathBuf};

/// Where the `agones` crate the workspace locks keeps its `.proto` files: its sources in
/// cargo's registry cache (the crate is a dev-dependency, so cargo has fetched it).
fn agones_protos() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let lock =
        std::fs::read_to_string(root.join("Cargo.lock")).expect("the workspace's Cargo.lock");
    let version = lock
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"agones\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = \"")))
        .and_then(|v| v.strip_suffix('"'))
        .expect("Cargo.lock locks the agones crate");
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .expect("CARGO_HOME or HOME is set");
    let registries = home.join("registry/src");
    std::fs::read_dir(&registries)
        .unwrap_or_else(|e| panic!("{}: {e}", registries.display()))
        .filter_map(|r| r.ok())
        .map(|r| r.path().join(format!("agones-{version}/proto")))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| panic!("agones {version} is not in {}", registries.display()))
}

/// Every file under `dir`, relative to it.
fn files(dir: &Path, under: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files(&path, under, out);
        } else {
            out.push(path.strip_prefix(under).expect("under").to_path_buf());
        }
    }
}

#[test]
fn every_copied_proto_is_the_locked_agones_crates_own() {
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let theirs = agones_protos();
    let mut copied = Vec::new();
    files(&ours, &ours, &mut copied);
    copied.retain(|p| p.file_name().is_some_and(|n| n != "README.md"));
    assert!(
        copied.len() >= 10,
        "the copy holds the SDK's protos: {copied:?}"
    );
    for path in copied {
        let mine = std::fs::read(ours.join(&path)).expect("copied file");
        let original = std::fs::read(theirs.join(&path))
            .unwrap_or_else(|e| panic!("{} is not in the agones crate: {e}", path.display()));
        assert!(
            mine == original,
            "{} differs from the agones crate's; copy it again from {}",
            path.display(),
            theirs.display()
        );
    }
}
