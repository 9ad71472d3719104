//! Base protocol and message coding against the public vectors
//! (/work/shared/vectors/rlpx.md A.3, A.4) plus hostile-input cases.

use bytes::BytesMut;
use p2p::base::{
    BaseError, Capability, DisconnectReason, Hello, BASE_PROTOCOL_VERSION, DISCONNECT, EMPTY_LIST,
    HELLO, MAX_HELLO_SIZE, PING, PONG,
};
use p2p::message::{encode_id, split_id, MessageError, Snappy, MAX_DECOMPRESSED_SIZE};
use p2p::node::NodeId;
use proptest::prelude::*;

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).expect("test vector hex")
}

/// A.3: EIP-8 Hello payload (no message id).
const A3_HELLO: &str =
    "f87137916b6e6574682f76302e39312f706c616e39cdc5836574683dc6846d6f726b1682270fb840
fda1cff674c90c9a197539fe3dfb53086ace64f83ed7c6eabec741f7f381cc803e52ab2cd55d5569
bce4347107a310dfd5f88a010cd2ffd1005ca406f1842877c883666f6f836261720304";
/// A.1: pubA, the node id inside the A.3 Hello.
const PUB_A: &str = "fda1cff674c90c9a197539fe3dfb53086ace64f83ed7c6eabec741f7f381cc803e52ab2cd55d5569bce4347107a310dfd5f88a010cd2ffd1005ca406f1842877";

fn frame(code: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_id(code, &mut out);
    out.extend_from_slice(payload);
    out.to_vec()
}

// ---------------------------------------------------------------- Hello (A.3)

#[test]
fn eip8_hello_decodes() {
    let hello = Hello::decode(&h(A3_HELLO)).unwrap();
    assert_eq!(hello.protocol_version, 0x37);
    assert_eq!(hello.client_id, "kneth/v0.91/plan9");
    assert_eq!(
        hello.capabilities,
        vec![Capability::new("eth", 61), Capability::new("mork", 22)]
    );
    assert_eq!(hello.listen_port, 9999);
    assert_eq!(hello.id, h(PUB_A));
    assert_eq!(hello.node_id().unwrap().as_bytes().as_slice(), h(PUB_A));
}

#[test]
fn eip8_hello_reencodes_without_extra_fields() {
    let a3 = h(A3_HELLO);
    let hello = Hello::decode(&a3).unwrap();
    // The A.3 list minus its trailing extras `["foo","bar"], 3, 4` (11 bytes):
    // the same first five fields under a shorter list header (0x71 - 11 = 0x66).
    let mut expected = vec![0xf8, 0x66];
    expected.extend_from_slice(&a3[2..2 + 0x66]);
    assert_eq!(hello.encode(), expected);
    assert_eq!(Hello::decode(&hello.encode()).unwrap(), hello);
}

#[test]
fn hello_new_uses_version_5_and_round_trips() {
    let id = NodeId(h(PUB_A).try_into().unwrap());
    let hello = Hello::new(
        "braid/0.1",
        vec![Capability::new("chat", 1), Capability::new("eth", 68)],
        30303,
        id,
    );
    assert_eq!(hello.protocol_version, BASE_PROTOCOL_VERSION);
    let back = Hello::decode(&hello.encode()).unwrap();
    assert_eq!(back, hello);
    assert_eq!(back.node_id().unwrap(), id);
}

fn hello_with_id(id: Vec<u8>) -> Hello {
    Hello {
        protocol_version: 5,
        client_id: "x".into(),
        capabilities: vec![],
        listen_port: 0,
        id,
    }
}

#[test]
fn hello_bad_ids_are_null_identity() {
    let mut long = h(PUB_A);
    long.push(1);
    for id in [long, vec![0u8; 64], vec![1u8; 63], vec![]] {
        let hello = Hello::decode(&hello_with_id(id).encode()).unwrap();
        assert_eq!(hello.node_id(), Err(DisconnectReason::NullNodeIdentity));
    }
}

#[test]
fn hello_size_limit_checked_first() {
    let big = vec![0xffu8; MAX_HELLO_SIZE + 1];
    assert!(matches!(
        Hello::decode(&big),
        Err(BaseError::HelloTooLarge { size, max }) if size == MAX_HELLO_SIZE + 1 && max == MAX_HELLO_SIZE
    ));
    // Exactly at the limit is parsed (a real hello padded out by a long client id).
    let mut hello = hello_with_id(h(PUB_A));
    hello.client_id = "a".repeat(MAX_HELLO_SIZE - 100);
    let enc = hello.encode();
    assert!(enc.len() <= MAX_HELLO_SIZE);
    assert_eq!(Hello::decode(&enc).unwrap(), hello);
}

/// Builds a Hello list from raw, already-encoded fields.
fn raw_hello(fields: &[&[u8]]) -> Vec<u8> {
    let mut s = rlp::RlpStream::new_list(fields.len());
    for f in fields {
        s.append_raw(f, 1);
    }
    s.out().to_vec()
}

#[test]
fn hello_malformed_fields_are_typed_errors() {
    let id = rlp::encode(&h(PUB_A)).to_vec();
    let caps = h("c6c5836574683d");
    // Missing node id.
    assert_eq!(
        Hello::decode(&raw_hello(&[&[5], &[0x80], &caps, &[0x80]])),
        Err(BaseError::MissingField("nodeId"))
    );
    assert_eq!(
        Hello::decode(&h("c0")),
        Err(BaseError::MissingField("protocolVersion"))
    );
    // Listen port above u16.
    assert_eq!(
        Hello::decode(&raw_hello(&[&[5], &[0x80], &caps, &h("83010000"), &id])),
        Err(BaseError::ListenPortTooLarge(0x10000))
    );
    // Capability version above u32.
    assert!(matches!(
        Hello::decode(&raw_hello(&[&[5], &[0x80], &h("cbca83657468850100000000"), &[0x80], &id])),
        Err(BaseError::CapVersionTooLarge { ref name, version }) if name == "eth" && version == 1 << 32
    ));
    // Not a list at all; trailing bytes; a truncated item inside the list.
    assert!(matches!(Hello::decode(&[0x05]), Err(BaseError::Rlp { .. })));
    let mut trailing = raw_hello(&[&[5], &[0x80], &caps, &[0x80], &id]);
    trailing.push(0);
    assert!(matches!(
        Hello::decode(&trailing),
        Err(BaseError::TrailingBytes { extra: 1, .. })
    ));
    assert!(matches!(
        Hello::decode(&h("c3058201")),
        Err(BaseError::Rlp { .. })
    ));
    // Version encoded non-canonically (leading zero byte).
    assert!(matches!(
        Hello::decode(&raw_hello(&[&h("820005"), &[0x80], &caps, &[0x80], &id])),
        Err(BaseError::Rlp { .. })
    ));
    // Capability entry that is a string instead of [name, version].
    assert!(matches!(
        Hello::decode(&raw_hello(&[&[5], &[0x80], &h("c483657468"), &[0x80], &id])),
        Err(BaseError::Rlp { .. })
    ));
    // Empty payload.
    assert!(matches!(Hello::decode(&[]), Err(BaseError::Rlp { .. })));
}

#[test]
fn hello_non_utf8_names_are_decoded_lossily() {
    let id = rlp::encode(&h(PUB_A)).to_vec();
    let hello = Hello::decode(&raw_hello(&[
        &[5],
        &h("82ff41"),
        &h("c5c482ff6501"),
        &[0x80],
        &id,
    ]))
    .unwrap();
    assert_eq!(hello.client_id, "\u{fffd}A");
    assert_eq!(hello.capabilities, vec![Capability::new("\u{fffd}e", 1)]);
}

#[test]
fn capability_display_and_order() {
    assert_eq!(Capability::new("eth", 68).to_string(), "eth/68");
    let mut caps = [
        Capability::new("eth", 68),
        Capability::new("Eth", 1),
        Capability::new("eth", 67),
    ];
    caps.sort();
    assert_eq!(caps[0].name, "Eth");
    assert_eq!(caps[1], Capability::new("eth", 67));
}

// ---------------------------------------------------------------- Disconnect (A.4)

const A4_DISCONNECTS: &str = "0100 0180 0101 0102 0103 0104 0105 0106 0107 0108 0109 010a 010b 0110 \
    01c100 01c180 01c101 01c102 01c103 01c104 01c105 01c106 01c107 01c108 01c109 01c10a 01c10b 01c110";

fn expected_reason(frame_data: &[u8]) -> u8 {
    let last = *frame_data.last().unwrap();
    if last == 0x80 {
        0
    } else {
        last
    }
}

#[test]
fn disconnect_vectors_decode() {
    let vectors: Vec<Vec<u8>> = A4_DISCONNECTS.split_whitespace().map(h).collect();
    assert_eq!(vectors.len(), 28);
    for fd in &vectors {
        let (code, payload) = split_id(fd).unwrap();
        assert_eq!(code, DISCONNECT);
        let reason = DisconnectReason::decode(payload).unwrap();
        assert_eq!(reason.code(), expected_reason(fd), "{}", hex::encode(fd));
        // Uncompressed forms still decode when snappy is on (sent before Hello).
        let mut snappy = Snappy::new();
        assert_eq!(
            DisconnectReason::decode_lenient(payload, Some(&mut snappy)).unwrap(),
            reason
        );
        assert_eq!(
            DisconnectReason::decode_lenient(payload, None).unwrap(),
            reason
        );
    }
}

#[test]
fn disconnect_encodes_as_geth() {
    assert_eq!(DisconnectReason::TooManyPeers.encode(), h("c104"));
    assert_eq!(DisconnectReason::DisconnectRequested.encode(), h("c180"));
    assert_eq!(DisconnectReason::SubprotocolError.encode(), h("c110"));
    for r in DisconnectReason::ALL {
        assert_eq!(DisconnectReason::from_code(r.code()), Some(r));
        assert_eq!(DisconnectReason::decode(&r.encode()).unwrap(), r);
    }
    assert_eq!(DisconnectReason::from_code(0x0c), None);
    assert_eq!(DisconnectReason::from_code(0xff), None);
}

#[test]
fn compressed_disconnects_decode_leniently() {
    let mut tx = Snappy::new();
    // snappy(c1 04): varint length 2, literal tag (len-1)<<2, then the bytes.
    assert_eq!(tx.compress(&h("c104")).unwrap(), h("0204c104"));
    for r in DisconnectReason::ALL {
        let compressed = tx.compress(&r.encode()).unwrap().to_vec();
        let mut rx = Snappy::new();
        assert_eq!(
            DisconnectReason::decode_lenient(&compressed, Some(&mut rx)).unwrap(),
            r
        );
        // Without snappy, the compressed bytes are not a valid reason.
        assert!(DisconnectReason::decode_lenient(&compressed, None).is_err());
    }
    // Compressed bare integer form, as some clients send it.
    let mut rx = Snappy::new();
    assert_eq!(
        DisconnectReason::decode_lenient(&h("010004"), Some(&mut rx)).unwrap(),
        DisconnectReason::TooManyPeers
    );
}

#[test]
fn disconnect_unknown_and_malformed() {
    assert_eq!(
        DisconnectReason::decode(&h("c10c")),
        Err(BaseError::UnknownReason(0x0c))
    );
    assert_eq!(
        DisconnectReason::decode(&h("0c")),
        Err(BaseError::UnknownReason(0x0c))
    );
    assert_eq!(
        DisconnectReason::decode(&h("c281ff")),
        Err(BaseError::UnknownReason(0xff))
    );
    let mut rx = Snappy::new();
    assert_eq!(
        DisconnectReason::decode_lenient(&h("0204c10c"), Some(&mut rx)),
        Err(BaseError::UnknownReason(0x0c))
    );
    for bad in [
        "", "c20405", "c1c0", "8204", "820100", "c104ff", "0104", "c3c10404",
    ] {
        let r = DisconnectReason::decode(&h(bad));
        assert!(
            matches!(
                r,
                Err(BaseError::Rlp { .. }) | Err(BaseError::TrailingBytes { .. })
            ),
            "{bad}: {r:?}"
        );
    }
    // The empty list is read as "disconnect requested" (documented leniency).
    assert_eq!(
        DisconnectReason::decode(&EMPTY_LIST).unwrap(),
        DisconnectReason::DisconnectRequested
    );
}

#[test]
fn disconnect_display_uses_spec_text() {
    assert_eq!(
        DisconnectReason::TooManyPeers.to_string(),
        "too many peers (0x04)"
    );
    assert_eq!(
        DisconnectReason::PingTimeout.to_string(),
        "ping timeout (0x0b)"
    );
    let as_error: Box<dyn std::error::Error> = Box::new(DisconnectReason::UselessPeer);
    assert_eq!(as_error.to_string(), "useless peer (0x03)");
}

// ---------------------------------------------------------------- Ping / Pong (A.4)

#[test]
fn snappy_ping_pong_vectors() {
    let mut tx = Snappy::new();
    assert_eq!(tx.compress(&EMPTY_LIST).unwrap(), h("0100c0"));
    let ping = frame(PING, tx.compress(&EMPTY_LIST).unwrap());
    assert_eq!(ping, h("020100c0"));
    let pong = frame(PONG, tx.compress(&EMPTY_LIST).unwrap());
    assert_eq!(pong, h("030100c0"));

    let mut rx = Snappy::new();
    for (fd, want) in [(h("020100c0"), PING), (h("030100c0"), PONG)] {
        let (code, payload) = split_id(&fd).unwrap();
        assert_eq!(code, want);
        assert_eq!(
            &rx.decompress(payload, MAX_DECOMPRESSED_SIZE).unwrap()[..],
            EMPTY_LIST
        );
    }
}

#[test]
fn hello_frame_is_id_0x80() {
    let payload = h(A3_HELLO);
    let fd = frame(HELLO, &payload);
    assert_eq!(fd[0], 0x80);
    let (code, rest) = split_id(&fd).unwrap();
    assert_eq!((code, rest), (HELLO, payload.as_slice()));
}

// ---------------------------------------------------------------- message ids

#[test]
fn split_id_canonical_forms() {
    assert_eq!(split_id(&[0x80]).unwrap(), (0, &[][..]));
    assert_eq!(split_id(&[0x01, 0xc0]).unwrap(), (1, &[0xc0][..]));
    assert_eq!(split_id(&[0x7f]).unwrap(), (0x7f, &[][..]));
    assert_eq!(split_id(&[0x81, 0x80, 0xaa]).unwrap(), (0x80, &[0xaa][..]));
    assert_eq!(split_id(&h("82 1234 c0")).unwrap(), (0x1234, &[0xc0][..]));
    assert_eq!(
        split_id(&h("88ffffffffffffffff")).unwrap(),
        (u64::MAX, &[][..])
    );
}

#[test]
fn split_id_rejects_non_canonical() {
    assert!(matches!(split_id(&[]), Err(MessageError::Empty)));
    for bad in [
        "8105",                 // single byte < 0x80 wrapped in a string header
        "00",                   // zero must be 0x80
        "820012",               // leading zero byte
        "8100",                 // wrapped zero
        "c0",                   // a list
        "c180",                 // a list
        "89010000000000000000", // 9 bytes: wider than u64
        "82ff",                 // truncated
        "b801ff",               // long-form header for a 1-byte string
    ] {
        let bytes = h(bad);
        assert!(
            matches!(split_id(&bytes), Err(MessageError::InvalidId)),
            "{bad}"
        );
    }
}

#[test]
fn encode_id_forms_and_appends() {
    let cases: [(u64, &str); 6] = [
        (0, "80"),
        (1, "01"),
        (0x7f, "7f"),
        (0x80, "8180"),
        (0x1234, "821234"),
        (u64::MAX, "88ffffffffffffffff"),
    ];
    for (code, want) in cases {
        let mut out = BytesMut::from(&b"\xaa"[..]);
        encode_id(code, &mut out);
        assert_eq!(out[0], 0xaa, "existing bytes kept");
        assert_eq!(&out[1..], h(want).as_slice());
        assert_eq!(split_id(&out[1..]).unwrap(), (code, &[][..]));
    }
}

// ---------------------------------------------------------------- snappy

#[test]
fn decompress_checks_stated_length_before_allocating() {
    let mut rx = Snappy::new();
    let start = std::time::Instant::now();
    // Varint 0x40000000 = 1 GiB, followed by nothing.
    match rx.decompress(&h("8080808004"), MAX_DECOMPRESSED_SIZE) {
        Err(MessageError::TooLarge { size, max }) => {
            assert_eq!(size, 1 << 30);
            assert_eq!(max, MAX_DECOMPRESSED_SIZE);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Zeroing 1 GiB would take far longer than this.
    assert!(start.elapsed() < std::time::Duration::from_millis(100));
}

#[test]
fn decompress_limit_is_inclusive() {
    let mut tx = Snappy::new();
    let data = vec![7u8; 1000];
    let c = tx.compress(&data).unwrap().to_vec();
    let mut rx = Snappy::new();
    assert_eq!(&rx.decompress(&c, 1000).unwrap()[..], data.as_slice());
    assert!(matches!(
        rx.decompress(&c, 999),
        Err(MessageError::TooLarge {
            size: 1000,
            max: 999
        })
    ));
}

#[test]
fn decompress_corrupt_is_typed_error() {
    let mut rx = Snappy::new();
    for bad in [
        "",                       // nothing
        "80",                     // truncated varint
        "0a00c0",                 // states 10 bytes, literal of 1
        "05ffffff",               // copy with an offset before the start
        "03",                     // states 3 bytes, has none
        "ffffffffffffffffffff01", // varint overflow
    ] {
        assert!(
            matches!(
                rx.decompress(&h(bad), MAX_DECOMPRESSED_SIZE),
                Err(MessageError::Snappy(_))
            ),
            "{bad}"
        );
    }
    // The state stays usable after errors.
    assert_eq!(&rx.decompress(&h("0100c0"), 16).unwrap()[..], EMPTY_LIST);
}

#[test]
fn compress_refuses_oversized_payload() {
    let mut tx = Snappy::new();
    let big = vec![0u8; MAX_DECOMPRESSED_SIZE + 1];
    assert!(matches!(
        tx.compress(&big),
        Err(MessageError::TooLarge { .. })
    ));
}

#[test]
fn decompressed_bytes_survive_buffer_reuse() {
    let mut tx = Snappy::new();
    let mut rx = Snappy::new();
    let a = rx
        .decompress(tx.compress(b"first message").unwrap(), 64)
        .unwrap();
    let b = rx
        .decompress(tx.compress(b"second, longer message").unwrap(), 64)
        .unwrap();
    assert_eq!(&a[..], b"first message");
    assert_eq!(&b[..], b"second, longer message");
}

proptest! {
    #[test]
    fn snappy_round_trips(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut tx = Snappy::new();
        let mut rx = Snappy::new();
        let c = tx.compress(&data).unwrap().to_vec();
        prop_assert_eq!(&rx.decompress(&c, data.len()).unwrap()[..], data.as_slice());
    }

    #[test]
    fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = split_id(&data);
        let _ = Hello::decode(&data);
        let _ = DisconnectReason::decode(&data);
        let _ = DisconnectReason::decode_lenient(&data, Some(&mut Snappy::new()));
        let _ = Snappy::new().decompress(&data, 1 << 16);
    }

    #[test]
    fn id_round_trips(code in any::<u64>(), payload in proptest::collection::vec(any::<u8>(), 0..8)) {
        let fd = frame(code, &payload);
        prop_assert_eq!(split_id(&fd).unwrap(), (code, payload.as_slice()));
    }

    #[test]
    fn hello_round_trips(
        version in any::<u64>(),
        client in "[ -~]{0,40}",
        caps in proptest::collection::vec(("[a-z]{1,8}", any::<u32>()), 0..6),
        port in any::<u16>(),
        id in proptest::collection::vec(any::<u8>(), 0..70),
    ) {
        let hello = Hello {
            protocol_version: version,
            client_id: client,
            capabilities: caps.into_iter().map(|(n, v)| Capability::new(n, v)).collect(),
            listen_port: port,
            id,
        };
        prop_assert_eq!(Hello::decode(&hello.encode()).unwrap(), hello);
    }
}
