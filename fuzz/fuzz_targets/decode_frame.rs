//! Any bytes as a control stream: frames decode one after another, or stop cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outpost_protocol::codec;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((_, used))) = codec::decode_frame(rest) {
        assert!(used > 0 && used <= rest.len());
        rest = &rest[used..];
    }
});
