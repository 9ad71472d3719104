//! Property tests for the layers without them elsewhere: ECIES packet bodies and sealing,
//! frame seal/open. (Hello, Disconnect, message ids, snappy and enode URLs have theirs in
//! base_vectors.rs / node_identity.rs; capability offsets in protocol.rs; bitcoin messages
//! in protocols/tests/wire_prop.rs.)

use bytes::BytesMut;
use p2p::ecies::packets::{self, AckBody, AuthBody};
use p2p::frame::{FrameOpener, FrameSealer};
use p2p::keccak::{Digest, Keccak256};
use p2p::node::NodeId;
use proptest::prelude::*;
use secp256k1::{PublicKey, SecretKey};
use tokio_util::codec::Decoder;

fn key(seed: u8) -> SecretKey {
    SecretKey::from_slice(&[seed.max(1); 32]).unwrap()
}

fn id(seed: u8) -> NodeId {
    NodeId::from_secret(&key(seed))
}

/// A sealer and the opener that reads what it seals (the two ends of one direction).
fn direction() -> (FrameSealer, FrameOpener) {
    let aes = [7u8; 32];
    let mac = [9u8; 32];
    let mut seed = Keccak256::new();
    seed.update(b"one direction");
    (
        FrameSealer::new(&aes, &mac, seed.clone()),
        FrameOpener::new(&aes, &mac, seed),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn auth_body_round_trips(sig in proptest::array::uniform32(any::<u8>()), nonce in proptest::array::uniform32(any::<u8>()), version in any::<u64>(), seed in 1u8..200) {
        let mut signature = [0u8; 65];
        signature[..32].copy_from_slice(&sig);
        signature[64] = sig[0] & 1;
        let body = AuthBody { signature, initiator_id: id(seed), nonce, version };
        prop_assert_eq!(AuthBody::from_rlp(&body.to_rlp()).unwrap(), body.clone());
        let hash = [seed; 32];
        let (legacy, h) = AuthBody::from_legacy(&body.to_legacy(&hash)).unwrap();
        prop_assert_eq!(h, hash);
        prop_assert_eq!(legacy.initiator_id, body.initiator_id);
        prop_assert_eq!(legacy.nonce, body.nonce);
    }

    #[test]
    fn ack_body_round_trips(nonce in proptest::array::uniform32(any::<u8>()), version in any::<u64>(), seed in 1u8..200) {
        let body = AckBody { ephemeral_id: id(seed), nonce, version };
        prop_assert_eq!(AckBody::from_rlp(&body.to_rlp()).unwrap(), body.clone());
        let legacy = AckBody::from_legacy(&body.to_legacy()).unwrap();
        prop_assert_eq!((legacy.ephemeral_id, legacy.nonce), (body.ephemeral_id, body.nonce));
    }

    #[test]
    fn eip8_sealing_round_trips(body in proptest::collection::vec(any::<u8>(), 1..600)) {
        let ours = key(3);
        let packet = packets::seal_eip8(&PublicKey::from_secret_key_global(&ours), &body).unwrap();
        // The opened plaintext starts with the body (EIP-8 padding follows it).
        let opened = packets::open_eip8(&ours, &packet).unwrap();
        prop_assert!(opened.starts_with(&body));
        // Someone else's key cannot open it.
        prop_assert!(packets::open_eip8(&key(4), &packet).is_err());
    }

    #[test]
    fn handshake_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        let ours = key(5);
        let _ = packets::open_eip8(&ours, &bytes);
        let _ = packets::open_legacy(&ours, &bytes);
        let _ = AuthBody::from_rlp(&bytes);
        let _ = AckBody::from_rlp(&bytes);
        let _ = AuthBody::from_legacy(&bytes);
        let _ = AckBody::from_legacy(&bytes);
    }

    #[test]
    fn frames_round_trip_in_any_chunking(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..8),
        chunk in 1usize..500,
    ) {
        let (mut sealer, mut opener) = direction();
        let mut wire = BytesMut::new();
        for p in &payloads {
            sealer.seal(&[&[0x10], p], &mut wire).unwrap();
        }
        // Feed the wire bytes in `chunk`-sized pieces, as a socket might deliver them.
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(frame) = opener.decode(&mut buf).unwrap() {
                got.push(frame.to_vec());
            }
        }
        let expected: Vec<Vec<u8>> = payloads.iter().map(|p| [&[0x10][..], p].concat()).collect();
        prop_assert_eq!(got, expected);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn frame_opener_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let (_, mut opener) = direction();
        let mut buf = BytesMut::from(&bytes[..]);
        // Arbitrary bytes fail the header MAC (or wait for more); never a panic.
        for _ in 0..3 {
            match opener.decode(&mut buf) {
                Ok(Some(_)) | Ok(None) | Err(_) => {}
            }
        }
    }
}
