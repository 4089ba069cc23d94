//! Forging access tokens for tests: claims signed with a seed's Ed25519 key under a kid.
#![allow(
    dead_code,
    reason = "each test file uses a different subset of these helpers"
)]

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

/// Unix seconds now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Signs `claims` with the key of `seed` (EdDSA), naming `kid`.
pub fn forge(kid: &str, claims: &Value, seed: [u8; 32]) -> String {
    // PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410), then the seed.
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&seed);
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(&der)).expect("signs")
}
