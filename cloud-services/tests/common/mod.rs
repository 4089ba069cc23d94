//! Helpers shared by the cloud API tests: a cloud in memory and one-shot requests.
#![allow(
    dead_code,
    reason = "each test file uses a different subset of these helpers"
)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use outpost_cloud::{Cloud, CloudConfig, KeyRing, MemoryStore, router};
use serde_json::Value;
use tower::ServiceExt as _;

/// A valid device id (a guest's random credential) standing for a test's named device:
/// the same name, the same id.
pub fn device(name: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(name.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A cloud with an in-memory store and a signing key from `seed`.
pub fn cloud_with(config: CloudConfig, seed: [u8; 32]) -> Arc<Cloud> {
    cloud_with_blobs(
        config,
        seed,
        Arc::new(object_store::memory::InMemory::new()),
    )
}

/// The same, its replays in `blobs`.
pub fn cloud_with_blobs(
    config: CloudConfig,
    seed: [u8; 32],
    blobs: Arc<dyn object_store::ObjectStore>,
) -> Arc<Cloud> {
    let keys = KeyRing::from_seed(&config, seed);
    Arc::new(Cloud::new(
        config,
        keys,
        [7; 32],
        Arc::new(MemoryStore::default()),
        blobs,
    ))
}

/// Sends one request through the whole router; the status and the JSON body (or null).
pub async fn call(cloud: &Arc<Cloud>, request: Request<Body>) -> (StatusCode, Value) {
    let response = router(cloud.clone())
        .oneshot(request)
        .await
        .expect("router answers");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}
