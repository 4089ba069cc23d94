//! Any bytes as a signed token: never verifies under a key that did not sign it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_protocol::{SignedToken, TokenSigner, TokenVerifier};

fuzz_target!(|data: &[u8]| {
    let verifier = TokenVerifier::new(&TokenSigner::from_seed(&[7; 32]).public_key()).expect("key");
    let (signature, body) = data.split_at(data.len().min(64));
    let token = SignedToken { body: body.to_vec(), signature: signature.to_vec(), seat: 0, secret: [0; 16] };
    assert!(verifier.verify(&token, 0, "edge").is_err());
});
