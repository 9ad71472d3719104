//! The malformed-input matrix (reference §1.16) and unknown-command handling, during and
//! after the handshake.

mod btc_support;

use btc_support::*;
use protocols::bitcoin::peer::{Config, PeerError};
use protocols::bitcoin::wire::{
    checksum, encode_frame, inv_type, reject_code, services, Command, Hash256, InvVect, Message,
    MsgFilterLoad, MsgPing, WireError, MAX_PROTOCOL_MESSAGE_LENGTH,
};

fn frame(msg: &Message) -> Vec<u8> {
    encode_frame(NET, msg, 70016).unwrap()
}

/// A frame for any command name and payload, with a correct checksum.
fn raw_frame(cmd: &str, payload: &[u8]) -> Vec<u8> {
    let mut f = NET.magic().to_vec();
    let mut c = [0u8; 12];
    c[..cmd.len()].copy_from_slice(cmd.as_bytes());
    f.extend_from_slice(&c);
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(&checksum(payload));
    f.extend_from_slice(payload);
    f
}

fn one_inv() -> Message {
    Message::Inv(vec![InvVect {
        inv_type: inv_type::TX,
        hash: Hash256([3; 32]),
    }])
}

/// Each bad frame, and the codec's verdict the peer keeps as its close reason.
fn bad_frames() -> Vec<(&'static str, Vec<u8>, WireError)> {
    let mut bad_sum = frame(&one_inv());
    let good_sum: [u8; 4] = bad_sum[20..24].try_into().unwrap();
    bad_sum[20] ^= 0xff;
    let claimed_sum: [u8; 4] = bad_sum[20..24].try_into().unwrap();
    let mut wrong_magic = frame(&one_inv());
    wrong_magic[..4].copy_from_slice(&[0xf9, 0xbe, 0xb4, 0xd9]);
    let mut too_big = frame(&Message::GetAddr);
    too_big[16..20].copy_from_slice(&4_000_001u32.to_le_bytes());
    let mut trailing = frame(&one_inv())[24..].to_vec();
    trailing.push(0);
    // Claims two inventory vectors, carries one.
    let mut short = frame(&one_inv())[24..].to_vec();
    short[0] = 2;
    vec![
        (
            "bad checksum",
            bad_sum,
            WireError::ChecksumMismatch {
                expected: claimed_sum,
                actual: good_sum,
            },
        ),
        (
            "wrong magic",
            wrong_magic,
            WireError::WrongMagic([0xf9, 0xbe, 0xb4, 0xd9]),
        ),
        (
            "length over 4,000,000",
            too_big,
            WireError::FrameTooLarge {
                len: 4_000_001,
                max: MAX_PROTOCOL_MESSAGE_LENGTH,
            },
        ),
        (
            "trailing bytes",
            raw_frame("inv", &trailing),
            WireError::TrailingBytes(1),
        ),
        (
            "undecodable payload",
            raw_frame("inv", &short),
            // The whole list's size is checked before any entry is read.
            WireError::Truncated {
                needed: 72,
                remaining: 36,
            },
        ),
        (
            "over per-type limit",
            raw_frame("verack", &[0]),
            WireError::PayloadTooLarge {
                command: Command::Verack,
                len: 1,
                max: 0,
            },
        ),
    ]
}

/// After the handshake: reject "malformed" (MALFORMED), then the connection closes.
#[tokio::test(start_paused = true)]
async fn malformed_after_handshake_rejects_then_disconnects() {
    for (what, bytes, verdict) in bad_frames() {
        let (peer, mut raw) = handshaken(cfg(), true).await;
        raw.send_raw(&bytes).await;
        let rest = raw.until_eof(SOON).await;
        match rest.as_slice() {
            [Message::Reject(r)] => {
                assert_eq!(r.message, "malformed", "{what}");
                assert_eq!(r.code, reject_code::MALFORMED, "{what}");
                assert!(r.reason.starts_with("Can't read message from"), "{what}");
            }
            other => panic!("{what}: expected one reject, got {other:?}"),
        }
        assert_eq!(
            peer.close_reason(),
            Some(PeerError::Malformed(verdict)),
            "{what}"
        );
    }
}

/// During the handshake: the same inputs disconnect without a reject.
#[tokio::test(start_paused = true)]
async fn malformed_during_handshake_disconnects_silently() {
    for (what, bytes, verdict) in bad_frames() {
        let (peer, mut raw) = raw_pair(cfg(), true);
        let v = Message::Version(raw.version.clone());
        raw.send(&v).await;
        assert!(matches!(raw.recv().await.unwrap(), Message::Version(_)));
        raw.send_raw(&bytes).await;
        let rest = raw.until_eof(SOON).await;
        assert!(
            rest.iter()
                .all(|m| matches!(m, Message::SendAddrV2 | Message::Verack)),
            "{what}: {rest:?}"
        );
        assert!(!peer.verack_received());
        peer.wait_for_disconnect().await;
        assert_eq!(
            peer.close_reason(),
            Some(PeerError::Malformed(verdict)),
            "{what}"
        );
    }
}

/// First message not a version: reject MALFORMED naming the offending command, then close.
#[tokio::test(start_paused = true)]
async fn first_message_must_be_version() {
    let (peer, mut raw) = raw_pair(cfg(), true);
    raw.send(&Message::Ping(MsgPing { nonce: 1 })).await;
    let rest = raw.until_eof(SOON).await;
    match rest.as_slice() {
        [Message::Reject(r)] => {
            assert_eq!(r.message, "ping");
            assert_eq!(r.code, reject_code::MALFORMED);
            assert_eq!(r.reason, "a version message must precede all others");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        peer.close_reason(),
        Some(PeerError::VersionNotFirst("ping".into()))
    );
}

/// An unknown command as the very first message is fatal (btcd), with nothing sent.
#[tokio::test(start_paused = true)]
async fn unknown_first_message_is_fatal() {
    let (peer, mut raw) = raw_pair(cfg(), true);
    raw.send_raw(&raw_frame("sendtxrcncl", &[0; 12])).await;
    assert!(raw.until_eof(SOON).await.is_empty());
    assert!(matches!(
        peer.close_reason(),
        Some(PeerError::VersionNotFirst(_))
    ));
}

/// Unknown commands are skipped while waiting for verack and after the handshake, as is
/// wtxidrelay after verack; the peer keeps answering pings.
#[tokio::test(start_paused = true)]
async fn unknown_messages_ignored_during_and_after_handshake() {
    let (peer, mut raw) = raw_pair(cfg(), true);
    let v = Message::Version(raw.version.clone());
    raw.send(&v).await;
    raw.send_raw(&raw_frame("sendtxrcncl", &[0; 12])).await;
    raw.send(&Message::WtxidRelay).await;
    raw.send(&Message::SendCmpct {
        announce: false,
        version: 2,
    })
    .await;
    raw.send_raw(&raw_frame("cmpctblock", &[1, 2, 3])).await;
    raw.send(&Message::Verack).await;
    assert!(matches!(raw.recv().await.unwrap(), Message::Version(_)));
    assert!(matches!(raw.recv().await.unwrap(), Message::SendAddrV2));
    assert!(matches!(raw.recv().await.unwrap(), Message::Verack));
    wait_until(SOON, "handshake", || peer.verack_received()).await;
    assert!(peer.wants_wtxid_relay());
    raw.send_raw(&raw_frame("getcfilters", &[0; 37])).await;
    raw.send(&Message::WtxidRelay).await;
    raw.send(&Message::Ping(MsgPing { nonce: 9 })).await;
    assert_eq!(raw.recv().await.unwrap(), Message::Pong(9));
    assert!(peer.connected());
}

/// Any known message other than verack/sendaddrv2/wtxidrelay before verack disconnects.
#[tokio::test(start_paused = true)]
async fn other_message_before_verack_disconnects() {
    let (peer, mut raw) = raw_pair(cfg(), true);
    let v = Message::Version(raw.version.clone());
    raw.send(&v).await;
    raw.send(&Message::GetAddr).await;
    let rest = raw.until_eof(SOON).await;
    assert!(
        rest.iter().all(|m| !matches!(m, Message::Reject(_))),
        "{rest:?}"
    );
    assert!(matches!(
        peer.close_reason(),
        Some(PeerError::InvalidHandshake(_))
    ));
}

/// sendaddrv2 when the negotiated version is below 70016 fails to decode → disconnect.
#[tokio::test(start_paused = true)]
async fn sendaddrv2_below_70016_disconnects() {
    let (peer, mut raw) = raw_pair(cfg(), true);
    raw.version.version = 70015;
    let v = Message::Version(raw.version.clone());
    raw.send(&v).await;
    raw.send_raw(&raw_frame("sendaddrv2", &[])).await;
    let rest = raw.until_eof(SOON).await;
    // At 70015 we send version and verack only, never sendaddrv2.
    assert!(rest
        .iter()
        .all(|m| matches!(m, Message::Version(_) | Message::Verack)));
    assert_eq!(
        peer.close_reason(),
        Some(PeerError::Malformed(WireError::UnsupportedAtVersion {
            command: Command::SendAddrV2,
            pver: 70015,
        }))
    );
}

/// BIP111: bloom messages when we do not offer NODE_BLOOM disconnect; with it they reach
/// the listener (covered in btc_peer::peer_listeners).
#[tokio::test(start_paused = true)]
async fn bloom_without_node_bloom_disconnects() {
    let load = Message::FilterLoad(MsgFilterLoad {
        filter: vec![1],
        hash_funcs: 1,
        tweak: 0,
        flags: 0,
    });
    for msg in [load, Message::FilterAdd(vec![1]), Message::FilterClear] {
        let c = Config {
            services: services::NETWORK,
            ..cfg()
        };
        let (peer, mut raw) = handshaken(c, true).await;
        raw.send(&msg).await;
        raw.until_eof(SOON).await;
        assert_eq!(
            peer.close_reason(),
            Some(PeerError::BloomNotOffered(msg.command()))
        );
    }
}
