//! Every bitcoin wire payload decoder: the first byte picks the command (the `btc`
//! capability code table), the second a protocol version; a payload that decodes must
//! re-encode, and encoding is stable from then on (`encode∘decode∘encode = encode`).
//! Plain equality does not hold by design: below 70001 `version` has no relay byte, so a
//! relay=false read from a longer payload re-encodes without it and reads back as true.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocols::bitcoin::wire::{pver, Command, Message};

const VERSIONS: [u32; 8] = [
    0,
    pver::MULTIPLE_ADDRESS,
    pver::NET_ADDRESS_TIME,
    pver::BIP0031,
    pver::BIP0037,
    pver::REJECT,
    pver::FEE_FILTER,
    pver::PROTOCOL_VERSION,
];

fuzz_target!(|data: &[u8]| {
    let [c, v, payload @ ..] = data else {
        return;
    };
    let Some(cmd) = Command::from_code(c % Command::COUNT as u8) else {
        return;
    };
    let version = VERSIONS[usize::from(*v) % VERSIONS.len()];
    if let Ok(msg) = Message::decode_payload(cmd, payload, version) {
        assert_eq!(msg.command(), cmd);
        let bytes = msg.to_payload(version).expect("decoded message re-encodes");
        let again = Message::decode_payload(cmd, &bytes, version).expect("re-encoded decodes");
        assert_eq!(again.to_payload(version).expect("re-encodes"), bytes);
    }
});
