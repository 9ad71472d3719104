//! ECIES ack packets (EIP-8 and legacy) fed to the initiator, as a dialer reads them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let initiator = braid_fuzz::initiator();
    if let Ok(ack) = initiator.read_ack(data) {
        let auth = initiator.auth_packet().expect("our own auth seals");
        let _ = initiator.secrets(&auth, &ack);
    }
});
