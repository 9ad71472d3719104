//! discv4 packet decoding. Each input is decoded twice: as given (size and hash checks),
//! and with its hash fixed up so that mutations reach the type, RLP and signature code
//! (a mutated packet almost never keeps a valid hash). A decoded packet re-encodes, signed
//! with a fixed key, to a datagram no larger than the input that decodes to the same
//! message from that key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2p::discover::v4::packet::{decode, encode, Packet, HEADER_SIZE, MAX_PACKET_SIZE};
use p2p::node::NodeId;
use sha3::{Digest, Keccak256};

fn check(p: Packet, input_len: usize) {
    let key = braid_fuzz::key(braid_fuzz::KEY_B);
    let (bytes, hash) = encode(&p.message, &key).expect("a decoded message re-encodes");
    assert!(bytes.len() <= input_len, "re-encoding only drops ignored data");
    let again = decode(&bytes).expect("re-encoded packet decodes");
    assert_eq!(again.message, p.message);
    assert_eq!(again.hash, hash);
    assert_eq!(again.sender, NodeId::from_secret(&key));
}

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = decode(data) {
        check(p, data.len());
    }
    if data.len() > HEADER_SIZE && data.len() <= MAX_PACKET_SIZE {
        let mut fixed = data.to_vec();
        let hash = Keccak256::digest(&fixed[32..]);
        fixed[..32].copy_from_slice(&hash);
        match decode(&fixed) {
            Ok(p) => check(p, fixed.len()),
            Err(e) => assert_ne!(e, p2p::discover::v4::packet::DecodeError::BadHash),
        }
    }
});
