//! Any bytes as a control payload: an error or a message that re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_protocol::codec;

fuzz_target!(|data: &[u8]| {
    let _ = codec::peek_hello_version(data);
    if let Ok(message) = codec::decode_control(data) {
        let again = codec::encode_control(&message).expect("a decoded message encodes");
        assert_eq!(again, data, "decoding is exact");
    }
});
