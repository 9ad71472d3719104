//! Disconnect payloads, strict and lenient (raw or snappy-compressed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p::base::DisconnectReason;
use p2p::message::Snappy;

fuzz_target!(|data: &[u8]| {
    if let Ok(reason) = DisconnectReason::decode(data) {
        assert_eq!(
            DisconnectReason::decode(&reason.encode()).ok(),
            Some(reason)
        );
    }
    let _ = DisconnectReason::decode_lenient(data, None);
    let _ = DisconnectReason::decode_lenient(data, Some(&mut Snappy::new()));
});
