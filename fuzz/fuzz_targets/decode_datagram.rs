//! Any bytes as a datagram: an error or a message that re-encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_protocol::codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(datagram) = codec::decode_datagram(data) {
        let again = codec::encode_datagram(&datagram).expect("a decoded datagram encodes");
        assert_eq!(again, data, "decoding is exact");
    }
});
