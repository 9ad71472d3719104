//! Hello payload decoding; a decoded Hello re-encodes to a payload that decodes equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p::base::Hello;

fuzz_target!(|data: &[u8]| {
    if let Ok(hello) = Hello::decode(data) {
        let _ = hello.node_id();
        let again = Hello::decode(&hello.encode()).expect("re-encoded hello decodes");
        assert_eq!(hello, again);
    }
});
