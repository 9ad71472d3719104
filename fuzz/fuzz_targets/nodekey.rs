//! Node key parsing from hex text (as read from a nodekey file).
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p::node::NodeKey;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = NodeKey::from_hex(s) {
        let again = NodeKey::from_hex(&key.to_hex()).expect("printed key parses");
        assert_eq!(key.id(), again.id());
    }
});
