//! discv4 packets: EIP-8's four public test packets, encode/decode round trips, and
//! hostile datagrams that must give the right typed error.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use p2p::discover::v4::packet::{
    decode, encode, is_expired, DecodeError, EncodeError, Endpoint, EnrRequest, EnrResponse,
    FindNode, Message, Neighbor, Neighbors, PacketKind, Ping, Pong, MAX_NEIGHBORS, MAX_PACKET_SIZE,
};
use p2p::node::NodeId;
use proptest::prelude::*;
use rlp::{DecoderError, RlpStream};
use secp256k1::{SecretKey, SECP256K1};
use sha3::{Digest, Keccak256};

/// The key that signed all four EIP-8 packets.
const KEY: &str = "b71c71a67e1177ad4e901695e1b4b9ee17ae16c6668d313eac2f96dbcda3f291";

const PING_V4: &str = "71dbda3a79554728d4f94411e42ee1f8b0d561c10e1e5f5893367948c6a7d70bb87b235fa28a77070271b6c164a2dce8c7e13a5739b53b5e96f2e5acb0e458a02902f5965d55ecbeb2ebb6cabb8b2b232896a36b737666c55265ad0a68412f250001ea04cb847f000001820cfa8215a8d790000000000000000000000000000000018208ae820d058443b9a355";

const PING_ENR_SEQ: &str = "e9614ccfd9fc3e74360018522d30e1419a143407ffcce748de3e22116b7e8dc92ff74788c0b6663aaa3d67d641936511c8f8d6ad8698b820a7cf9e1be7155e9a241f556658c55428ec0563514365799a4be2be5a685a80971ddcfa80cb422cdd0101ec04cb847f000001820cfa8215a8d790000000000000000000000000000000018208ae820d058443b9a3550102";

const FIND_NODE: &str = "c7c44041b9f7c7e41934417ebac9a8e1a4c6298f74553f2fcfdcae6ed6fe53163eb3d2b52e39fe91831b8a927bf4fc222c3902202027e5e9eb812195f95d20061ef5cd31d502e47ecb61183f74a504fe04c51e73df81f25c4d506b26db4517490103f84eb840ca634cae0d49acb401d8a4c6b6fe8c55b70d115bf400769cc1400f3258cd31387574077f301b421bc84df7266c44e9e6d569fc56be00812904767bf5ccd1fc7f8443b9a35582999983999999280dc62cc8255c73471e0a61da0c89acdc0e035e260add7fc0c04ad9ebf3919644c91cb247affc82b69bd2ca235c71eab8e49737c937a2c396";

const NEIGHBORS: &str = "c679fc8fe0b8b12f06577f2e802d34f6fa257e6137a995f6f4cbfc9ee50ed3710faf6e66f932c4c8d81d64343f429651328758b47d3dbc02c4042f0fff6946a50f4a49037a72bb550f3a7872363a83e1b9ee6469856c24eb4ef80b7535bcf99c0004f9015bf90150f84d846321163782115c82115db8403155e1427f85f10a5c9a7755877748041af1bcd8d474ec065eb33df57a97babf54bfd2103575fa829115d224c523596b401065a97f74010610fce76382c0bf32f84984010203040101b840312c55512422cf9b8a4097e9a6ad79402e87a15ae909a4bfefa22398f03d20951933beea1e4dfa6f968212385e829f04c2d314fc2d4e255e0d3bc08792b069dbf8599020010db83c4d001500000000abcdef12820d05820d05b84038643200b172dcfef857492156971f0e6aa2c538d8b74010f8e140811d53b98c765dd2d96126051913f44582e8c199ad7c6d6819e9a56483f637feaac9448aacf8599020010db885a308d313198a2e037073488203e78203e8b8408dcab8618c3253b558d459da53bd8fa68935a719aff8b811197101a4b2b47dd2d47295286fc00cc081bb542d760717d1bdd6bec2c37cd72eca367d6dd3b9df738443b9a355010203b525a138aa34383fec3d2719a0";

const EXPIRATION: u64 = 1136239445;

fn key() -> SecretKey {
    SecretKey::from_slice(&hex::decode(KEY).unwrap()).unwrap()
}

fn id(hex_id: &str) -> NodeId {
    NodeId(hex::decode(hex_id).unwrap().try_into().unwrap())
}

fn ep(ip: &str, udp_port: u16, tcp_port: u16) -> Endpoint {
    Endpoint {
        ip: ip.parse().unwrap(),
        udp_port,
        tcp_port,
    }
}

fn decode_hex(packet: &str) -> p2p::discover::v4::packet::Packet {
    let bytes = hex::decode(packet).unwrap();
    let p = decode(&bytes).expect("EIP-8 packet decodes");
    assert_eq!(p.sender, NodeId::from_secret(&key()), "sender recovered");
    assert_eq!(
        p.hash[..],
        bytes[..32],
        "hash is the packet's first 32 bytes"
    );
    p
}

#[test]
fn eip8_ping_without_enr_seq() {
    let p = decode_hex(PING_V4);
    assert_eq!(
        p.message,
        Message::Ping(Ping {
            version: 4,
            from: ep("127.0.0.1", 3322, 5544),
            to: ep("::1", 2222, 3333),
            expiration: EXPIRATION,
            enr_seq: None,
            rest: vec![],
        })
    );
}

#[test]
fn eip8_ping_with_enr_seq_and_extra_element() {
    let p = decode_hex(PING_ENR_SEQ);
    assert_eq!(
        p.message,
        Message::Ping(Ping {
            version: 4,
            from: ep("127.0.0.1", 3322, 5544),
            to: ep("::1", 2222, 3333),
            expiration: EXPIRATION,
            enr_seq: Some(1),
            rest: vec![vec![0x02]],
        })
    );
}

#[test]
fn eip8_find_node_with_extra_elements() {
    let p = decode_hex(FIND_NODE);
    assert_eq!(
        p.message,
        Message::FindNode(FindNode {
            target: id("ca634cae0d49acb401d8a4c6b6fe8c55b70d115bf400769cc1400f3258cd31387574077f301b421bc84df7266c44e9e6d569fc56be00812904767bf5ccd1fc7f"),
            expiration: EXPIRATION,
            rest: vec![vec![0x82, 0x99, 0x99], vec![0x83, 0x99, 0x99, 0x99]],
        })
    );
}

#[test]
fn eip8_neighbors_with_extra_elements_and_trailing_bytes() {
    let p = decode_hex(NEIGHBORS);
    let n = |hex_id, ip, udp, tcp| Neighbor {
        endpoint: ep(ip, udp, tcp),
        id: id(hex_id),
    };
    assert_eq!(
        p.message,
        Message::Neighbors(Neighbors {
            nodes: vec![
                n("3155e1427f85f10a5c9a7755877748041af1bcd8d474ec065eb33df57a97babf54bfd2103575fa829115d224c523596b401065a97f74010610fce76382c0bf32", "99.33.22.55", 4444, 4445),
                n("312c55512422cf9b8a4097e9a6ad79402e87a15ae909a4bfefa22398f03d20951933beea1e4dfa6f968212385e829f04c2d314fc2d4e255e0d3bc08792b069db", "1.2.3.4", 1, 1),
                n("38643200b172dcfef857492156971f0e6aa2c538d8b74010f8e140811d53b98c765dd2d96126051913f44582e8c199ad7c6d6819e9a56483f637feaac9448aac", "2001:db8:3c4d:15::abcd:ef12", 3333, 3333),
                n("8dcab8618c3253b558d459da53bd8fa68935a719aff8b811197101a4b2b47dd2d47295286fc00cc081bb542d760717d1bdd6bec2c37cd72eca367d6dd3b9df73", "2001:db8:85a3:8d3:1319:8a2e:370:7348", 999, 1000),
            ],
            expiration: EXPIRATION,
            rest: vec![vec![0x01], vec![0x02], vec![0x03]],
        })
    );
}

/// Re-encoding a decoded vector reproduces its signed data byte for byte (type and RLP;
/// the signatures differ since the vectors were not signed with RFC 6979 nonces), except
/// for the trailing bytes EIP-8 says to ignore.
#[test]
fn eip8_vectors_reencode_byte_for_byte() {
    for hex_packet in [PING_V4, PING_ENR_SEQ, FIND_NODE, NEIGHBORS] {
        let p = decode_hex(hex_packet);
        let (bytes, hash) = encode(&p.message, &key()).unwrap();
        let original = hex::decode(hex_packet).unwrap();
        assert_eq!(bytes[97..], original[97..bytes.len()]);
        let again = decode(&bytes).unwrap();
        assert_eq!(again.message, p.message);
        assert_eq!(again.hash, hash);
        assert_eq!(again.sender, p.sender);
    }
    // Only the Neighbors vector carries trailing bytes.
    let (bytes, _) = encode(&decode_hex(NEIGHBORS).message, &key()).unwrap();
    assert_eq!(hex::decode(NEIGHBORS).unwrap().len() - bytes.len(), 13);
}

/// Builds a correctly hashed and signed datagram around an arbitrary type byte and body.
fn sign_raw(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut signed = vec![kind];
    signed.extend_from_slice(body);
    let digest: [u8; 32] = Keccak256::digest(&signed).into();
    let sig = SECP256K1.sign_ecdsa_recoverable(&secp256k1::Message::from_digest(digest), &key());
    let (recid, compact) = sig.serialize_compact();
    let mut out = vec![0u8; 32];
    out.extend_from_slice(&compact);
    out.push(i32::from(recid) as u8);
    out.extend_from_slice(&signed);
    rehash(&mut out);
    out
}

fn rehash(packet: &mut [u8]) {
    let hash: [u8; 32] = Keccak256::digest(&packet[32..]).into();
    packet[..32].copy_from_slice(&hash);
}

#[test]
fn oversize_is_rejected_before_anything_else() {
    // A valid packet padded past 1280 bytes with trailing data (otherwise ignored).
    let mut body = hex::decode(PING_V4).unwrap()[98..].to_vec();
    body.resize(MAX_PACKET_SIZE - 98, 0);
    let bytes = sign_raw(1, &body);
    assert_eq!(bytes.len(), MAX_PACKET_SIZE);
    assert!(
        decode(&bytes).is_ok(),
        "1280 bytes with trailing data is fine"
    );
    body.push(0);
    let bytes = sign_raw(1, &body);
    assert_eq!(decode(&bytes), Err(DecodeError::TooLarge(1281)));
    assert_eq!(decode(&[0xff; 65536]), Err(DecodeError::TooLarge(65536)));
}

#[test]
fn truncated_packets_are_too_small_or_bad_hash() {
    assert_eq!(decode(&[]), Err(DecodeError::TooSmall(0)));
    assert_eq!(decode(&[0; 97]), Err(DecodeError::TooSmall(97)));
    let bytes = hex::decode(NEIGHBORS).unwrap();
    for len in 98..bytes.len() - 4 {
        // Cutting into the signed part changes the hash of what remains.
        assert_eq!(
            decode(&bytes[..len]),
            Err(DecodeError::BadHash),
            "len {len}"
        );
    }
}

#[test]
fn truncated_bodies_with_valid_hash_and_signature_are_rlp_errors() {
    let bytes = hex::decode(NEIGHBORS).unwrap();
    let body = &bytes[98..bytes.len() - 13]; // without the trailing bytes
    for len in 0..body.len() {
        let err = decode(&sign_raw(4, &body[..len])).unwrap_err();
        assert!(
            matches!(err, DecodeError::Rlp { .. } | DecodeError::TooSmall(_)),
            "len {len}: {err:?}"
        );
    }
}

#[test]
fn bad_hash_is_rejected() {
    let mut bytes = hex::decode(FIND_NODE).unwrap();
    bytes[0] ^= 1;
    assert_eq!(decode(&bytes), Err(DecodeError::BadHash));
    let mut bytes = hex::decode(FIND_NODE).unwrap();
    *bytes.last_mut().unwrap() ^= 1;
    assert_eq!(decode(&bytes), Err(DecodeError::BadHash));
}

#[test]
fn bad_signature_is_rejected() {
    // A recovery id outside 0..=3.
    let mut bytes = hex::decode(PING_V4).unwrap();
    bytes[96] = 4;
    rehash(&mut bytes);
    assert_eq!(decode(&bytes), Err(DecodeError::BadSignature));
    // r = 0 is not a valid signature.
    let mut bytes = hex::decode(PING_V4).unwrap();
    bytes[32..64].fill(0);
    rehash(&mut bytes);
    assert_eq!(decode(&bytes), Err(DecodeError::BadSignature));
    // s >= the group order.
    let mut bytes = hex::decode(PING_V4).unwrap();
    bytes[64..96].fill(0xff);
    rehash(&mut bytes);
    assert_eq!(decode(&bytes), Err(DecodeError::BadSignature));
}

#[test]
fn tampered_signature_recovers_another_sender() {
    // A valid-looking signature over other data recovers some other key: the sender is
    // what the signature says, never trusted from elsewhere.
    let mut bytes = hex::decode(PING_V4).unwrap();
    bytes[40] ^= 1;
    rehash(&mut bytes);
    match decode(&bytes) {
        Ok(p) => assert_ne!(p.sender, NodeId::from_secret(&key())),
        Err(e) => assert_eq!(e, DecodeError::BadSignature),
    }
}

#[test]
fn unknown_type_is_a_typed_error_to_drop() {
    let body = &hex::decode(PING_V4).unwrap()[98..];
    for kind in [0u8, 7, 0x7f, 0xff] {
        let err = decode(&sign_raw(kind, body)).unwrap_err();
        assert_eq!(err, DecodeError::UnknownType(kind));
        assert!(err.is_unknown_type());
    }
    assert_eq!(PacketKind::from_byte(7), None);
}

fn endpoint_rlp(s: &mut RlpStream, ip: &[u8], udp: &[u8], tcp: u16) {
    s.begin_list(3);
    s.append(&ip);
    s.append_raw(udp, 1);
    s.append(&tcp);
}

#[test]
fn wrong_field_lengths_are_typed_errors() {
    // Ping whose `from` IP has 5 bytes.
    let mut s = RlpStream::new_list(4);
    s.append(&4u8);
    endpoint_rlp(&mut s, &[127, 0, 0, 1, 1], &[0x82, 0x0c, 0xfa], 1);
    endpoint_rlp(&mut s, &[127, 0, 0, 1], &[0x82, 0x0c, 0xfa], 1);
    s.append(&EXPIRATION);
    assert_eq!(
        decode(&sign_raw(1, &s.out())),
        Err(DecodeError::BadLength {
            field: "endpoint ip",
            len: 5
        })
    );

    // Ping whose UDP port does not fit 16 bits.
    let mut s = RlpStream::new_list(4);
    s.append(&4u8);
    endpoint_rlp(&mut s, &[127, 0, 0, 1], &[0x83, 1, 0, 0], 1);
    endpoint_rlp(&mut s, &[127, 0, 0, 1], &[0x82, 0x0c, 0xfa], 1);
    s.append(&EXPIRATION);
    assert_eq!(
        decode(&sign_raw(1, &s.out())),
        Err(DecodeError::Rlp {
            field: "endpoint udp port",
            err: DecoderError::RlpIsTooBig
        })
    );

    // FindNode with a 63-byte target.
    let mut s = RlpStream::new_list(2);
    s.append(&[7u8; 63].as_slice());
    s.append(&EXPIRATION);
    assert_eq!(
        decode(&sign_raw(3, &s.out())),
        Err(DecodeError::BadLength {
            field: "target",
            len: 63
        })
    );

    // Neighbors with a 65-byte node id.
    let mut s = RlpStream::new_list(2);
    s.begin_list(1);
    s.begin_list(4);
    s.append(&[127u8, 0, 0, 1].as_slice());
    s.append(&30303u16).append(&30303u16);
    s.append(&[7u8; 65].as_slice());
    s.append(&EXPIRATION);
    assert_eq!(
        decode(&sign_raw(4, &s.out())),
        Err(DecodeError::BadLength {
            field: "neighbor id",
            len: 65
        })
    );

    // Pong with a 31-byte ping hash.
    let mut s = RlpStream::new_list(3);
    endpoint_rlp(&mut s, &[127, 0, 0, 1], &[0x82, 0x0c, 0xfa], 1);
    s.append(&[1u8; 31].as_slice());
    s.append(&EXPIRATION);
    assert_eq!(
        decode(&sign_raw(2, &s.out())),
        Err(DecodeError::BadLength {
            field: "ping-hash",
            len: 31
        })
    );

    // ENRResponse whose record is a byte string, not a list.
    let mut s = RlpStream::new_list(2);
    s.append(&[1u8; 32].as_slice());
    s.append(&[1u8; 10].as_slice());
    assert_eq!(
        decode(&sign_raw(6, &s.out())),
        Err(DecodeError::Rlp {
            field: "enr",
            err: DecoderError::RlpExpectedToBeList
        })
    );
}

#[test]
fn missing_fields_and_non_lists_are_typed_errors() {
    let mut s = RlpStream::new_list(1);
    s.append(&[7u8; 64].as_slice());
    assert_eq!(
        decode(&sign_raw(3, &s.out())),
        Err(DecodeError::Missing("expiration"))
    );
    assert_eq!(
        decode(&sign_raw(5, &rlp::encode(&EXPIRATION))),
        Err(DecodeError::Rlp {
            field: "packet data",
            err: DecoderError::RlpExpectedToBeList
        })
    );
    assert_eq!(
        decode(&sign_raw(5, &[0xc0])),
        Err(DecodeError::Missing("expiration"))
    );
}

#[test]
fn claimed_lengths_beyond_the_packet_are_rejected() {
    // A list header claiming 2^56 bytes of payload: an error, not an allocation.
    let body = [0xff, 0x01, 0, 0, 0, 0, 0, 0, 0];
    assert!(matches!(
        decode(&sign_raw(4, &body)),
        Err(DecodeError::Rlp {
            field: "packet data",
            ..
        })
    ));
    // A Neighbors element claiming more than the packet holds.
    let body = [0xc6, 0xf9, 0xff, 0xff, 0x84, 1, 2];
    assert!(matches!(
        decode(&sign_raw(4, &body)),
        Err(DecodeError::Rlp {
            field: "packet data",
            ..
        })
    ));
    // A node inside the node list claiming more than the list holds.
    let body = [0xc5, 0xc4, 0xf9, 0xff, 0xff, 0x01];
    assert!(matches!(
        decode(&sign_raw(4, &body)),
        Err(DecodeError::Rlp { field: "nodes", .. })
    ));
}

#[test]
fn oversized_enr_is_rejected() {
    let mut record = RlpStream::new_list(1);
    record.append(&vec![0u8; 300].as_slice());
    let record = record.out().to_vec();
    let mut s = RlpStream::new_list(2);
    s.append(&[1u8; 32].as_slice());
    s.append_raw(&record, 1);
    assert_eq!(
        decode(&sign_raw(6, &s.out())),
        Err(DecodeError::EnrTooLarge(record.len()))
    );
    let msg = Message::EnrResponse(EnrResponse {
        request_hash: [1; 32],
        enr: record.clone(),
        rest: vec![],
    });
    assert_eq!(
        encode(&msg, &key()),
        Err(EncodeError::EnrTooLarge(record.len()))
    );
}

fn neighbor_v6(i: u8) -> Neighbor {
    Neighbor {
        endpoint: Endpoint {
            ip: IpAddr::V6(Ipv6Addr::new(
                0x2001,
                0xdb8,
                1,
                2,
                3,
                4,
                5,
                u16::from(i) + 1,
            )),
            udp_port: u16::MAX,
            tcp_port: u16::MAX,
        },
        id: NodeId([0xff; 64]),
    }
}

#[test]
fn max_neighbors_fit_one_packet_and_one_more_does_not() {
    let msg = |n: usize| {
        Message::Neighbors(Neighbors {
            nodes: (0..n as u8).map(neighbor_v6).collect(),
            expiration: u64::MAX,
            rest: vec![],
        })
    };
    let (bytes, _) = encode(&msg(MAX_NEIGHBORS), &key()).unwrap();
    assert!(bytes.len() <= MAX_PACKET_SIZE);
    assert_eq!(decode(&bytes).unwrap().message, msg(MAX_NEIGHBORS));
    assert!(matches!(
        encode(&msg(MAX_NEIGHBORS + 1), &key()),
        Err(EncodeError::TooLarge(_))
    ));
}

#[test]
fn encode_rejects_inconsistent_messages() {
    let ping = Ping {
        version: 4,
        from: ep("127.0.0.1", 1, 1),
        to: ep("127.0.0.2", 2, 2),
        expiration: 1,
        enr_seq: None,
        rest: vec![vec![1]],
    };
    assert_eq!(
        encode(&Message::Ping(ping.clone()), &key()),
        Err(EncodeError::RestWithoutEnrSeq)
    );
    let bad_rest = Ping {
        enr_seq: Some(1),
        rest: vec![vec![0x82, 1]],
        ..ping
    };
    assert_eq!(
        encode(&Message::Ping(bad_rest), &key()),
        Err(EncodeError::BadRawItem("rest element"))
    );
}

#[test]
fn ipv4_mapped_ipv6_reads_as_ipv4() {
    let mut s = RlpStream::new_list(4);
    s.append(&4u8);
    let mapped = Ipv4Addr::new(127, 0, 0, 9).to_ipv6_mapped().octets();
    endpoint_rlp(&mut s, &mapped, &[0x82, 0x0c, 0xfa], 1);
    endpoint_rlp(&mut s, &[127, 0, 0, 1], &[0x82, 0x0c, 0xfa], 1);
    s.append(&EXPIRATION);
    let Message::Ping(p) = decode(&sign_raw(1, &s.out())).unwrap().message else {
        panic!("not a ping")
    };
    assert_eq!(p.from.ip, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)));
}

#[test]
fn expiration() {
    assert!(!is_expired(100, 100));
    assert!(!is_expired(101, 100));
    assert!(is_expired(99, 100));
    let p = decode_hex(PING_V4).message;
    assert!(!p.is_expired(EXPIRATION));
    assert!(p.is_expired(EXPIRATION + 1));
}

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(b.into())),
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(b.into()).to_canonical()),
    ]
}

fn arb_endpoint() -> impl Strategy<Value = Endpoint> {
    (arb_ip(), any::<u16>(), any::<u16>()).prop_map(|(ip, udp_port, tcp_port)| Endpoint {
        ip,
        udp_port,
        tcp_port,
    })
}

fn arb_id() -> impl Strategy<Value = NodeId> {
    prop::collection::vec(any::<u8>(), 64).prop_map(|v| NodeId(v.try_into().unwrap()))
}

/// Extra elements: small RLP items (byte strings and lists of them).
fn arb_rest() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let item = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..8).prop_map(|b| rlp::encode(&b).to_vec()),
        prop::collection::vec(any::<u64>(), 0..3).prop_map(|l| rlp::encode_list(&l).to_vec()),
    ];
    prop::collection::vec(item, 0..3)
}

fn arb_message() -> impl Strategy<Value = Message> {
    let ping = (
        any::<u64>(),
        arb_endpoint(),
        arb_endpoint(),
        any::<u64>(),
        any::<Option<u64>>(),
        arb_rest(),
    )
        .prop_map(|(version, from, to, expiration, enr_seq, rest)| {
            Message::Ping(Ping {
                version,
                from,
                to,
                expiration,
                enr_seq,
                rest: if enr_seq.is_some() { rest } else { vec![] },
            })
        });
    let pong = (
        arb_endpoint(),
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<Option<u64>>(),
        arb_rest(),
    )
        .prop_map(|(to, ping_hash, expiration, enr_seq, rest)| {
            Message::Pong(Pong {
                to,
                ping_hash,
                expiration,
                enr_seq,
                rest: if enr_seq.is_some() { rest } else { vec![] },
            })
        });
    let find = (arb_id(), any::<u64>(), arb_rest()).prop_map(|(target, expiration, rest)| {
        Message::FindNode(FindNode {
            target,
            expiration,
            rest,
        })
    });
    let neighbor = (arb_endpoint(), arb_id()).prop_map(|(endpoint, id)| Neighbor { endpoint, id });
    let neighbors = (
        prop::collection::vec(neighbor, 0..=MAX_NEIGHBORS),
        any::<u64>(),
        arb_rest(),
    )
        .prop_map(|(nodes, expiration, rest)| {
            Message::Neighbors(Neighbors {
                nodes,
                expiration,
                rest,
            })
        });
    let enr_req = (any::<u64>(), arb_rest())
        .prop_map(|(expiration, rest)| Message::EnrRequest(EnrRequest { expiration, rest }));
    let enr_resp = (
        any::<[u8; 32]>(),
        prop::collection::vec(any::<u8>(), 0..200),
        arb_rest(),
    )
        .prop_map(|(request_hash, content, rest)| {
            let mut s = RlpStream::new_list(1);
            s.append(&content.as_slice());
            Message::EnrResponse(EnrResponse {
                request_hash,
                enr: s.out().to_vec(),
                rest,
            })
        });
    prop_oneof![ping, pong, find, neighbors, enr_req, enr_resp]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn encode_decode_round_trip(msg in arb_message(), secret in any::<[u8; 32]>()) {
        let Ok(key) = SecretKey::from_slice(&secret) else { return Ok(()) };
        let (bytes, hash) = match encode(&msg, &key) {
            Ok(out) => out,
            // Six 16-byte IPs and rest elements can still overflow 1280 bytes.
            Err(EncodeError::TooLarge(len)) => {
                prop_assert!(len > MAX_PACKET_SIZE);
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        };
        prop_assert!(bytes.len() <= MAX_PACKET_SIZE);
        let p = decode(&bytes).unwrap();
        prop_assert_eq!(p.message, msg);
        prop_assert_eq!(p.sender, NodeId::from_secret(&key));
        prop_assert_eq!(p.hash, hash);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1400)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn arbitrary_signed_bodies_never_panic(kind in 0u8..8, body in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode(&sign_raw(kind, &body));
    }
}
