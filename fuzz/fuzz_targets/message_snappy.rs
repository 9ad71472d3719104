//! Frame-data to message: the RLP message id, then snappy decompression of the payload
//! under the 16 MiB limit, through one reused per-connection Snappy state.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p::message::{split_id, Snappy, MAX_DECOMPRESSED_SIZE};

fuzz_target!(|data: &[u8]| {
    let mut snappy = Snappy::new();
    if let Ok((_code, payload)) = split_id(data) {
        if let Ok(plain) = snappy.decompress(payload, MAX_DECOMPRESSED_SIZE) {
            assert!(plain.len() <= MAX_DECOMPRESSED_SIZE);
            // Round trip: what we decompressed compresses and decompresses back.
            let packed = snappy.compress(&plain).expect("compress").to_vec();
            let again = snappy
                .decompress(&packed, MAX_DECOMPRESSED_SIZE)
                .expect("own output");
            assert_eq!(plain, again);
        }
    }
    // The raw bytes as a snappy block too, with a small limit.
    let _ = snappy.decompress(data, 4096);
});
