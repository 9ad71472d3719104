//! ECIES auth packets (EIP-8 and legacy) fed to the recipient, as a listener reads them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let recipient = braid_fuzz::recipient();
    if let Ok(auth) = recipient.read_auth(data) {
        // An auth that opens must also yield an ack and secrets without panicking.
        if let Ok(ack) = recipient.ack_packet(&auth) {
            let _ = recipient.secrets(&auth, &ack);
        }
    }
});
