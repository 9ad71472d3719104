//! Limits, malformed input, version gates and framing errors of the bitcoin wire codec.

use bytes::Bytes;
use protocols::bitcoin::wire::{
    decode_frame, encode_frame, read_frame, Block, Command, FrameHeader, Hash256, InvVect, Message,
    MsgPing, MsgReject, MsgVersion, NetAddress, Network, TimedNetAddress, Tx, WireError,
    MAX_PROTOCOL_MESSAGE_LENGTH,
};

const PVER: u32 = 70016;

fn compact(n: u64) -> Vec<u8> {
    match n {
        0..=0xfc => vec![n as u8],
        0xfd..=0xffff => [&[0xfd][..], &(n as u16).to_le_bytes()].concat(),
        0x1_0000..=0xffff_ffff => [&[0xfe][..], &(n as u32).to_le_bytes()].concat(),
        _ => [&[0xff][..], &n.to_le_bytes()].concat(),
    }
}

fn decode(cmd: Command, payload: &[u8]) -> Result<Message, WireError> {
    Message::decode_payload(cmd, payload, PVER)
}

fn inv(n: usize) -> Vec<InvVect> {
    (0..n)
        .map(|i| InvVect {
            inv_type: 1,
            hash: Hash256([i as u8; 32]),
        })
        .collect()
}

fn sample_version(ua: &str) -> MsgVersion {
    MsgVersion {
        version: 70016,
        services: 9,
        timestamp: 1_700_000_000,
        addr_recv: NetAddress::from_socket_addr("127.0.0.1:18444".parse().unwrap(), 1),
        addr_from: NetAddress::from_socket_addr("10.0.0.1:18445".parse().unwrap(), 9),
        nonce: 77,
        user_agent: ua.into(),
        start_height: 5,
        relay: false,
    }
}

#[test]
fn inv_count_over_limit_fails_on_the_count() {
    // Only the count is present: the error must come from the count check,
    // before any item is read or allocated.
    for cmd in [Command::Inv, Command::GetData, Command::NotFound] {
        let err = decode(cmd, &compact(50_001)).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::TooManyItems {
                    count: 50_001,
                    max: 50_000,
                    ..
                }
            ),
            "{cmd}: {err:?}"
        );
    }
    // A huge count is refused the same way (no attempt to reserve it).
    let err = decode(Command::Inv, &compact(u64::from(u32::MAX))).unwrap_err();
    assert!(matches!(err, WireError::TooManyItems { .. }), "{err:?}");
    // A count within the limit but beyond the bytes present is truncation.
    let err = decode(Command::Inv, &[&compact(50_000)[..], &[0u8; 36]].concat()).unwrap_err();
    assert!(matches!(err, WireError::Truncated { .. }), "{err:?}");
    // The full 50,001-item payload exceeds the per-type maximum up front.
    let mut full = compact(50_001);
    full.resize(full.len() + 50_001 * 36, 0);
    let err = decode(Command::Inv, &full).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::PayloadTooLarge {
                command: Command::Inv,
                ..
            }
        ),
        "{err:?}"
    );
    // 50,000 items are fine, 50,001 do not encode.
    let ok = Message::Inv(inv(50_000));
    assert_eq!(
        decode(Command::Inv, &ok.to_payload(PVER).unwrap()).unwrap(),
        ok
    );
    let err = Message::Inv(inv(50_001)).to_payload(PVER).unwrap_err();
    assert!(matches!(err, WireError::TooManyItems { .. }), "{err:?}");
}

#[test]
fn addr_count_over_limit() {
    let err = decode(Command::Addr, &compact(1001)).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::TooManyItems {
                count: 1001,
                max: 1000,
                ..
            }
        ),
        "{err:?}"
    );
    let err = decode(Command::AddrV2, &compact(1001)).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::TooManyItems {
                count: 1001,
                max: 1000,
                ..
            }
        ),
        "{err:?}"
    );
    let list = vec![TimedNetAddress::default(); 1001];
    assert!(matches!(
        Message::Addr(list).to_payload(PVER),
        Err(WireError::TooManyItems { .. })
    ));
    // Below protocol version 209 only one address per message.
    let two = Message::Addr(vec![TimedNetAddress::default(); 2]);
    assert!(matches!(
        two.to_payload(208),
        Err(WireError::TooManyItems { max: 1, .. })
    ));
}

#[test]
fn locator_and_headers_limits() {
    let mut p = 70016u32.to_le_bytes().to_vec();
    p.extend(compact(501));
    let err = decode(Command::GetHeaders, &p).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::TooManyItems {
                count: 501,
                max: 500,
                ..
            }
        ),
        "{err:?}"
    );
    let err = decode(Command::Headers, &compact(2001)).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::TooManyItems {
                count: 2001,
                max: 2000,
                ..
            }
        ),
        "{err:?}"
    );
    // A header followed by a non-zero tx count is rejected.
    let mut p = compact(1);
    p.extend([0u8; 80]);
    p.push(1);
    assert!(matches!(
        decode(Command::Headers, &p),
        Err(WireError::HeaderTxCount(1))
    ));
    p.pop();
    p.push(0);
    assert!(matches!(decode(Command::Headers, &p), Ok(Message::Headers(h)) if h.len() == 1));
}

#[test]
fn non_canonical_compact_size_is_rejected() {
    // fd 0500 encodes 5, which fits in one byte.
    let mut p = vec![0xfd, 0x05, 0x00];
    p.extend(vec![0u8; 5 * 36]);
    let err = decode(Command::Inv, &p).unwrap_err();
    assert!(
        matches!(err, WireError::NonCanonicalCompactSize { value: 5 }),
        "{err:?}"
    );
    // The same list with a canonical count decodes.
    p.splice(0..3, [5u8]);
    assert!(matches!(decode(Command::Inv, &p), Ok(Message::Inv(v)) if v.len() == 5));
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut p = Message::Inv(inv(1)).to_payload(PVER).unwrap();
    p.push(0);
    assert!(matches!(
        decode(Command::Inv, &p),
        Err(WireError::TrailingBytes(1))
    ));

    let mut v = Message::Version(sample_version("/x/"))
        .to_payload(PVER)
        .unwrap();
    v.push(1);
    assert!(matches!(
        decode(Command::Version, &v),
        Err(WireError::TrailingBytes(1))
    ));

    let mut tx = hex::decode(TX).unwrap();
    tx.push(0);
    assert!(matches!(
        decode(Command::Tx, &tx),
        Err(WireError::TrailingBytes(1))
    ));

    let mut reject = Message::Reject(MsgReject {
        message: "ping".into(),
        code: 1,
        reason: "x".into(),
        hash: None,
    })
    .to_payload(PVER)
    .unwrap();
    // A hash after a reject of a non-tx/block message is extra data.
    reject.extend([0u8; 32]);
    assert!(matches!(
        decode(Command::Reject, &reject),
        Err(WireError::TrailingBytes(32))
    ));
}

#[test]
fn user_agent_limit() {
    let ok = Message::Version(sample_version(&"a".repeat(256)));
    let bytes = ok.to_payload(PVER).unwrap();
    assert_eq!(decode(Command::Version, &bytes).unwrap(), ok);

    let err = Message::Version(sample_version(&"a".repeat(257)))
        .to_payload(PVER)
        .unwrap_err();
    assert!(
        matches!(
            err,
            WireError::FieldTooLong {
                len: 257,
                max: 256,
                ..
            }
        ),
        "{err:?}"
    );

    // Hand-built: the 256-byte UA of `bytes` grown to 257 (prefix fd 0101).
    let ua_at = 4 + 8 + 8 + 26 + 26 + 8;
    assert_eq!(&bytes[ua_at..ua_at + 3], &[0xfd, 0x00, 0x01]);
    let mut bad = bytes[..ua_at].to_vec();
    bad.extend([0xfd, 0x01, 0x01]);
    bad.extend(vec![b'a'; 257]);
    bad.extend(&bytes[ua_at + 3 + 256..]);
    let err = decode(Command::Version, &bad).unwrap_err();
    assert!(
        matches!(err, WireError::FieldTooLong { len: 257, .. }),
        "{err:?}"
    );
}

#[test]
fn version_optional_fields_and_relay() {
    let v = sample_version("/braid/");
    let full = Message::Version(v.clone()).to_payload(PVER).unwrap();
    let old = Message::Version(v.clone()).to_payload(70000).unwrap();
    assert_eq!(full.len(), old.len() + 1, "relay byte only at >= 70001");
    assert_eq!(*full.last().unwrap(), 0);
    // Without the relay byte, relay defaults to true.
    let Message::Version(d) = decode(Command::Version, &old).unwrap() else {
        panic!()
    };
    assert_eq!(
        d,
        MsgVersion {
            relay: true,
            ..v.clone()
        }
    );

    // Truncation at each field boundary after addr_recv is tolerated.
    let after_recv = 4 + 8 + 8 + 26;
    let after_from = after_recv + 26;
    let after_nonce = after_from + 8;
    let after_ua = after_nonce + 1 + v.user_agent.len();
    let cases = [
        (
            after_recv,
            MsgVersion {
                addr_from: NetAddress::default(),
                nonce: 0,
                user_agent: String::new(),
                start_height: 0,
                relay: true,
                ..v.clone()
            },
        ),
        (
            after_from,
            MsgVersion {
                nonce: 0,
                user_agent: String::new(),
                start_height: 0,
                relay: true,
                ..v.clone()
            },
        ),
        (
            after_nonce,
            MsgVersion {
                user_agent: String::new(),
                start_height: 0,
                relay: true,
                ..v.clone()
            },
        ),
        (
            after_ua,
            MsgVersion {
                start_height: 0,
                relay: true,
                ..v.clone()
            },
        ),
    ];
    for (len, want) in cases {
        assert_eq!(
            decode(Command::Version, &full[..len]).unwrap(),
            Message::Version(want),
            "len {len}"
        );
    }
    // Truncation inside a field, or before addr_recv is complete, is an error.
    for len in [
        0,
        after_recv - 1,
        after_from + 3,
        after_nonce + 2,
        after_ua + 2,
    ] {
        assert!(
            matches!(
                decode(Command::Version, &full[..len]),
                Err(WireError::Truncated { .. })
            ),
            "len {len}"
        );
    }
}

#[test]
fn version_gated_encodings() {
    // ping: no nonce at <= 60000.
    let ping = Message::Ping(MsgPing { nonce: 9 });
    assert!(ping.to_payload(60_000).unwrap().is_empty());
    assert_eq!(ping.to_payload(60_001).unwrap(), 9u64.to_le_bytes());
    assert_eq!(
        Message::decode_payload(Command::Ping, &[], 60_000).unwrap(),
        Message::Ping(MsgPing { nonce: 0 })
    );
    assert!(matches!(
        Message::decode_payload(Command::Ping, &[0; 8], 60_000),
        Err(WireError::PayloadTooLarge { max: 0, .. })
    ));
    // pong does not exist at <= 60000.
    assert!(matches!(
        Message::Pong(1).to_payload(60_000),
        Err(WireError::UnsupportedAtVersion {
            command: Command::Pong,
            pver: 60_000
        })
    ));
    assert!(Message::Pong(1).to_payload(60_001).is_ok());

    let gates: [(Message, Vec<u8>, u32); 8] = [
        (
            Message::Reject(MsgReject {
                message: "tx".into(),
                code: 0x10,
                reason: String::new(),
                hash: Some(Hash256::ZERO),
            }),
            vec![],
            70_002,
        ),
        (Message::SendAddrV2, vec![], 70_016),
        (Message::FeeFilter(1000), vec![], 70_013),
        (Message::SendHeaders, vec![], 70_012),
        (Message::MemPool, vec![], 60_002),
        (Message::FilterClear, vec![], 70_001),
        (Message::FilterAdd(vec![1, 2]), vec![], 70_001),
        (Message::Pong(5), vec![], 60_001),
    ];
    for (msg, _, min) in gates {
        let cmd = msg.command();
        let bytes = msg.to_payload(min).unwrap();
        assert_eq!(
            Message::decode_payload(cmd, &bytes, min).unwrap(),
            msg,
            "{cmd} at {min}"
        );
        let below = min - 1;
        assert!(
            matches!(
                msg.to_payload(below),
                Err(WireError::UnsupportedAtVersion { .. })
            ),
            "{cmd} encode at {below}"
        );
        let err = Message::decode_payload(cmd, &bytes, below).unwrap_err();
        assert!(
            matches!(
                err,
                WireError::UnsupportedAtVersion { .. } | WireError::PayloadTooLarge { .. }
            ),
            "{cmd} decode at {below}: {err:?}"
        );
    }
    // reject below 70002: its maximum payload is 0 there, so even decoding
    // an empty payload fails on the gate.
    assert!(matches!(
        Message::decode_payload(Command::Reject, &[], 70_001),
        Err(WireError::UnsupportedAtVersion { .. })
    ));

    // addr entries carry no timestamp below 31402.
    let a = TimedNetAddress {
        time: 0,
        addr: NetAddress {
            services: 1,
            ip: [7; 16],
            port: 8333,
        },
    };
    let old = Message::Addr(vec![a]).to_payload(31_401).unwrap();
    assert_eq!(old.len(), 1 + 26);
    assert_eq!(
        Message::decode_payload(Command::Addr, &old, 31_401).unwrap(),
        Message::Addr(vec![a])
    );
    assert_eq!(
        Message::Addr(vec![a]).to_payload(31_402).unwrap().len(),
        1 + 30
    );
}

#[test]
fn addrv2_entries() {
    fn entry(id: u8, addr: &[u8]) -> Vec<u8> {
        let mut e = 1_700_000_000u32.to_le_bytes().to_vec();
        e.push(1); // services
        e.push(id);
        e.extend(compact(addr.len() as u64));
        e.extend(addr);
        e.extend(8333u16.to_be_bytes());
        e
    }
    // Unknown network id 42 is skipped, the IPv4 entry kept.
    let p = [compact(2), entry(42, &[1, 2, 3]), entry(1, &[10, 0, 0, 1])].concat();
    let Message::AddrV2(list) = decode(Command::AddrV2, &p).unwrap() else {
        panic!()
    };
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].addr.as_bytes(), &[10, 0, 0, 1]);
    // Over 512 bytes is an error even for an unknown network.
    let p = [compact(1), entry(42, &[0; 513])].concat();
    assert!(matches!(
        decode(Command::AddrV2, &p),
        Err(WireError::FieldTooLong { len: 513, .. })
    ));
    // A known network with the wrong length is an error.
    let p = [compact(1), entry(1, &[1, 2, 3, 4, 5])].concat();
    assert!(matches!(
        decode(Command::AddrV2, &p),
        Err(WireError::AddrV2Length {
            network_id: 1,
            len: 5,
            expected: 4
        })
    ));
}

/// Mainnet tx a6eab3c1…8cb7.
const TX: &str = "0100000001a15d57094aa7a21a28cb20b59aab8fc7d1149a3bdbcddba9c622e4f5f6a99ece010000006c493046022100f93bb0e7d8db7bd46e40132d1f8242026e045f03a0efe71bbb8e3f475e970d790221009337cd7f1f929f00cc6ff01f03729b069a7c21b59b1736ddfee5db5946c5da8c0121033b9b137ee87d5a812d6f506efdd37f0affa7ffc310711c06c7f3e097c9447c52ffffffff0100e1f505000000001976a9140389035a9225b3839e2bbf32d826a1e222031fd888ac00000000";

#[test]
fn malformed_transactions_and_blocks() {
    let tx = hex::decode(TX).unwrap();
    // Every strict prefix is truncated.
    for len in [0, 3, 4, 5, 40, tx.len() - 1] {
        let err = Tx::from_bytes(Bytes::copy_from_slice(&tx[..len])).unwrap_err();
        assert!(
            matches!(err, WireError::Truncated { .. }),
            "len {len}: {err:?}"
        );
    }
    // Witness flag with all-empty witnesses ("superfluous witness record").
    let mut w = tx[..4].to_vec();
    w.extend([0x00, 0x01]);
    w.extend(&tx[4..tx.len() - 4]);
    w.push(0x00); // empty witness stack for the one input
    w.extend(&tx[tx.len() - 4..]);
    let err = Tx::from_bytes(Bytes::from(w.clone())).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::Malformed {
                reason: "superfluous witness record",
                ..
            }
        ),
        "{err:?}"
    );
    // With one witness item it is a valid segwit tx whose txid is unchanged.
    let n = w.len();
    w.splice(n - 5..n - 4, [0x01, 0x01, 0xaa]);
    let seg = Tx::from_bytes(Bytes::from(w)).unwrap();
    let legacy = Tx::from_bytes(Bytes::from(tx.clone())).unwrap();
    assert!(seg.has_witness());
    assert_eq!(seg.txid(), legacy.txid());
    assert_ne!(seg.wtxid(), legacy.wtxid());
    assert_eq!(seg.to_base_bytes(), legacy.as_bytes());
    // Unknown flag byte.
    let mut bad = tx[..4].to_vec();
    bad.extend([0x00, 0x02]);
    bad.extend(&tx[4..]);
    assert!(matches!(
        Tx::from_bytes(Bytes::from(bad)),
        Err(WireError::Malformed { .. })
    ));
    // Huge input counts fail on the count, not on allocation: above Core's
    // 32 MiB MAX_SIZE outright, below it against the bytes present.
    let mut huge = tx[..4].to_vec();
    huge.extend(compact(u64::from(u32::MAX)));
    assert!(matches!(
        Tx::from_bytes(Bytes::from(huge)),
        Err(WireError::TooManyItems { .. })
    ));
    let mut big = tx[..4].to_vec();
    big.extend(compact(1_000_000));
    big.extend(&tx[5..]);
    assert!(matches!(
        Tx::from_bytes(Bytes::from(big)),
        Err(WireError::Truncated { .. })
    ));

    // Block claiming more transactions than its bytes can hold.
    let mut block = vec![0u8; 80];
    block.extend(compact(400_000));
    block.extend(&tx);
    let err = Block::from_bytes(Bytes::from(block)).unwrap_err();
    assert!(matches!(err, WireError::Truncated { .. }), "{err:?}");
    let mut block = vec![0u8; 80];
    block.extend(compact(1));
    block.extend(&tx);
    let b = Block::from_bytes(Bytes::from(block)).unwrap();
    assert_eq!(b.txids(), vec![legacy.txid()]);
}

#[test]
fn filterload_limits() {
    let mut p = compact(36_001);
    p.extend(vec![0; 36_001 + 9]);
    assert!(matches!(
        decode(Command::FilterLoad, &p),
        Err(WireError::PayloadTooLarge { .. })
    ));
    let mut p = compact(36_001);
    p.extend(vec![0; 10]);
    assert!(matches!(
        decode(Command::FilterLoad, &p),
        Err(WireError::FieldTooLong { len: 36_001, .. })
    ));
    let mut p = compact(1);
    p.push(0xff);
    p.extend(51u32.to_le_bytes());
    p.extend([0; 5]);
    assert!(matches!(
        decode(Command::FilterLoad, &p),
        Err(WireError::ValueOutOfRange { value: 51, .. })
    ));
    let p = [compact(521), vec![0; 521]].concat();
    assert!(matches!(
        decode(Command::FilterAdd, &p),
        Err(WireError::PayloadTooLarge { .. })
    ));
}

// ---- framing ----

#[test]
fn regtest_verack_frame() {
    let frame = encode_frame(Network::Regtest, &Message::Verack, PVER).unwrap();
    assert_eq!(
        hex::encode(&frame),
        "fabfb5da76657261636b000000000000000000005df6e0e2"
    );
    let (msg, used) = decode_frame(&frame, Network::Regtest, PVER).unwrap();
    assert_eq!((msg, used), (Message::Verack, 24));
}

fn frame_with(magic: [u8; 4], name: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut command = [0u8; 12];
    command[..name.len()].copy_from_slice(name);
    let h = FrameHeader {
        magic,
        command,
        length: payload.len() as u32,
        checksum: protocols::bitcoin::wire::checksum(payload),
    };
    [&h.to_bytes()[..], payload].concat()
}

#[test]
fn sync_frame_errors() {
    let magic = Network::Regtest.magic();
    let ping = encode_frame(Network::Regtest, &Message::Ping(MsgPing { nonce: 1 }), PVER).unwrap();

    let err = decode_frame(&ping, Network::Mainnet, PVER).unwrap_err();
    assert!(
        matches!(err, WireError::WrongMagic(m) if m == magic),
        "{err:?}"
    );

    let mut bad = ping.clone();
    *bad.last_mut().unwrap() ^= 1;
    assert!(matches!(
        decode_frame(&bad, Network::Regtest, PVER),
        Err(WireError::ChecksumMismatch { .. })
    ));

    assert!(matches!(
        decode_frame(&ping[..30], Network::Regtest, PVER),
        Err(WireError::Truncated { .. })
    ));
    assert!(matches!(
        decode_frame(&ping[..10], Network::Regtest, PVER),
        Err(WireError::Truncated { .. })
    ));

    let unknown = frame_with(magic, b"cmpctblock", &[1, 2, 3]);
    let err = decode_frame(&unknown, Network::Regtest, PVER).unwrap_err();
    assert!(
        matches!(&err, WireError::UnknownCommand { name, len: 3 } if name == "cmpctblock"),
        "{err:?}"
    );

    // An all-NUL command is well-formed (Core's rule) but unknown.
    let empty = frame_with(magic, b"", &[]);
    let err = decode_frame(&empty, Network::Regtest, PVER).unwrap_err();
    assert!(
        matches!(&err, WireError::UnknownCommand { name, len: 0 } if name.is_empty()),
        "{err:?}"
    );

    for name in [&b"ver\0ack"[..], b"verack\x01", b"\tping", b"\x80"] {
        let f = frame_with(magic, name, &[]);
        let err = decode_frame(&f, Network::Regtest, PVER).unwrap_err();
        assert!(
            matches!(err, WireError::InvalidCommand(_)),
            "{name:?}: {err:?}"
        );
    }

    let mut huge = frame_with(magic, b"block", &[]);
    huge[16..20].copy_from_slice(&(MAX_PROTOCOL_MESSAGE_LENGTH as u32 + 1).to_le_bytes());
    assert!(matches!(
        decode_frame(&huge, Network::Regtest, PVER),
        Err(WireError::FrameTooLarge { .. })
    ));

    // Per-type limit: a 9-byte ping.
    let long_ping = frame_with(magic, b"ping", &[0; 9]);
    assert!(matches!(
        decode_frame(&long_ping, Network::Regtest, PVER),
        Err(WireError::PayloadTooLarge {
            command: Command::Ping,
            len: 9,
            max: 8
        })
    ));
}

#[tokio::test]
async fn read_frame_rejects_oversize_header_before_reading_payload() {
    // Only the header is available: if the reader tried to read the payload
    // it would hit end-of-stream instead of reporting the size.
    let mut head = frame_with(Network::Regtest.magic(), b"block", &[]);
    head[16..20].copy_from_slice(&4_000_001u32.to_le_bytes());
    let mut r: &[u8] = &head;
    let err = read_frame(&mut r, Network::Regtest, PVER)
        .await
        .unwrap_err();
    assert!(
        matches!(err, WireError::FrameTooLarge { len: 4_000_001, .. }),
        "{err:?}"
    );
    assert!(r.is_empty());

    // Same for a wrong magic: nothing after the header is consumed.
    let mut stream = encode_frame(Network::Mainnet, &Message::Verack, PVER).unwrap();
    stream.extend([0xee; 5]);
    let mut r: &[u8] = &stream;
    assert!(matches!(
        read_frame(&mut r, Network::Regtest, PVER).await,
        Err(WireError::WrongMagic(_))
    ));
    assert_eq!(r.len(), 5);
}

#[tokio::test]
async fn read_frame_skips_unknown_and_oversize_payloads() {
    let magic = Network::Regtest.magic();
    let mut stream = frame_with(magic, b"cmpctblock", &vec![7u8; 100_000]);
    stream.extend(frame_with(magic, b"ping", &[0; 9]));
    stream.extend(frame_with(magic, b"bad\x01", &[1, 2]));
    stream.extend(encode_frame(Network::Regtest, &Message::Pong(3), PVER).unwrap());
    let mut r: &[u8] = &stream;

    let err = read_frame(&mut r, Network::Regtest, PVER)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WireError::UnknownCommand { name, len: 100_000 } if name == "cmpctblock")
    );
    let err = read_frame(&mut r, Network::Regtest, PVER)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        WireError::PayloadTooLarge {
            command: Command::Ping,
            ..
        }
    ));
    let err = read_frame(&mut r, Network::Regtest, PVER)
        .await
        .unwrap_err();
    assert!(matches!(err, WireError::InvalidCommand(_)));
    let (msg, used) = read_frame(&mut r, Network::Regtest, PVER).await.unwrap();
    assert_eq!((msg, used), (Message::Pong(3), 32));
    assert!(r.is_empty());
}

#[tokio::test]
async fn read_frame_errors_and_success() {
    let tx = Message::Tx(Tx::from_bytes(Bytes::from(hex::decode(TX).unwrap())).unwrap());
    let frame = encode_frame(Network::Testnet4, &tx, PVER).unwrap();
    let mut r: &[u8] = &frame;
    let (msg, used) = read_frame(&mut r, Network::Testnet4, PVER).await.unwrap();
    assert_eq!(msg, tx);
    assert_eq!(used, frame.len());

    // Payload cut short.
    let mut r: &[u8] = &frame[..frame.len() - 1];
    assert!(matches!(
        read_frame(&mut r, Network::Testnet4, PVER).await,
        Err(WireError::Io(_))
    ));

    // Checksum mismatch.
    let mut bad = frame.clone();
    bad[30] ^= 0x80;
    let mut r: &[u8] = &bad;
    assert!(matches!(
        read_frame(&mut r, Network::Testnet4, PVER).await,
        Err(WireError::ChecksumMismatch { .. })
    ));

    // Decodable header, undecodable payload (non-canonical count in inv).
    let f = frame_with(Network::Testnet4.magic(), b"inv", &[0xfd, 0x01, 0x00]);
    let mut r: &[u8] = &f;
    assert!(matches!(
        read_frame(&mut r, Network::Testnet4, PVER).await,
        Err(WireError::NonCanonicalCompactSize { .. })
    ));
}
