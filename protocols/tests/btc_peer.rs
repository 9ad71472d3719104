//! btcd's peer tests (reference §2), re-expressed against our peer over an in-memory
//! native transport, on tokio's paused clock.

mod btc_support;

use std::sync::Arc;
use std::time::Duration;

use btc_support::*;
use protocols::bitcoin::peer::{Config, NativeTransport, Peer, PeerError, SendOutcome};
use protocols::bitcoin::wire::{
    inv_type, reject_code, services, AddrV2, AddrV2Entry, BlockHeader, Command, Hash256, InvVect,
    Message, MsgFilterLoad, MsgGetBlocks, MsgMerkleBlock, MsgPing, MsgReject, NetAddress,
    TimedNetAddress,
};
use tokio::io::AsyncReadExt;

fn h(b: u8) -> Hash256 {
    Hash256([b; 32])
}

/// TestPeerConnection: handshake between an inbound peer at 70002 (no services) and an
/// outbound default peer (NETWORK|WITNESS), checked on both sides.
#[tokio::test(start_paused = true)]
async fn peer_connection() {
    let (in_l, mut in_rx) = recorder();
    let (out_l, mut out_rx) = recorder();
    let in_cfg = Config {
        protocol_version: 70002,
        services: 0,
        ..with_listener(cfg(), in_l)
    };
    let out_cfg = Config {
        services: services::NETWORK | services::WITNESS,
        ..with_listener(cfg(), out_l)
    };
    let (out, inb) = peer_pair(out_cfg, in_cfg);
    // Four events, in any order per side: our verack written, theirs received.
    for rx in [&mut in_rx, &mut out_rx] {
        let (mut wrote, mut got) = (false, false);
        while !(wrote && got) {
            match next_ev(rx, SOON, |e| matches!(e, Ev::Verack | Ev::Write { .. })).await {
                Ev::Verack => got = true,
                Ev::Write {
                    cmd: Command::Verack,
                    err: None,
                    ..
                } => wrote = true,
                _ => {}
            }
        }
    }
    for (p, remote_services, witness) in [
        (&inb, services::NETWORK | services::WITNESS, true),
        (&out, 0, false),
    ] {
        assert_eq!(p.user_agent(), "/btcwire:0.5.0/peer:1.0(comment)/");
        assert_eq!(p.services(), remote_services);
        assert_eq!(p.protocol_version(), 70002);
        assert!(p.connected() && p.version_known() && p.verack_received());
        assert_eq!((p.last_ping_nonce(), p.last_ping_micros()), (0, 0));
        assert!(p.last_ping_time().is_none());
        assert!((-1..=0).contains(&p.time_offset()));
        // 143-byte version (119-byte payload) + 24-byte verack, no sendaddrv2 at 70002.
        assert_eq!(p.bytes_sent(), 167);
        assert_eq!(p.bytes_received(), 167);
        assert_eq!(p.is_witness_enabled(), witness);
        let s = p.stats_snapshot();
        assert_eq!(s.id, p.id());
        assert_ne!(s.id, 0);
        assert_eq!(s.addr, p.addr());
        assert_eq!(s.last_send, p.last_send());
        assert_eq!(s.last_recv, p.last_recv());
        assert_eq!(s.negotiated_version, 70002);
    }
    assert_eq!(inb.advertised_protocol_version(), 70016);
    assert_eq!(out.advertised_protocol_version(), 70002);
    assert_eq!(inb.stats_snapshot().advertised_version, 70016);
    assert!(inb.inbound() && !out.inbound());
}

fn every_message() -> Vec<Message> {
    let inv = vec![InvVect {
        inv_type: inv_type::TX,
        hash: h(1),
    }];
    let gb = MsgGetBlocks {
        version: 70016,
        locator: vec![h(2)],
        hash_stop: Hash256::ZERO,
    };
    vec![
        Message::GetAddr,
        Message::Addr(vec![TimedNetAddress {
            time: 1,
            addr: NetAddress::default(),
        }]),
        Message::Ping(MsgPing { nonce: 42 }),
        Message::Pong(43),
        Message::MemPool,
        Message::Tx(sample_tx(1)),
        Message::Block(sample_block()),
        Message::Inv(inv.clone()),
        Message::Headers(vec![BlockHeader {
            version: 1,
            prev_block: h(3),
            merkle_root: h(4),
            time: 5,
            bits: 6,
            nonce: 7,
        }]),
        Message::NotFound(inv.clone()),
        Message::GetData(inv),
        Message::GetBlocks(gb.clone()),
        Message::GetHeaders(gb),
        Message::FeeFilter(1000),
        Message::FilterAdd(vec![1, 2, 3]),
        Message::FilterClear,
        Message::FilterLoad(MsgFilterLoad {
            filter: vec![0xff],
            hash_funcs: 1,
            tweak: 2,
            flags: 0,
        }),
        Message::MerkleBlock(MsgMerkleBlock {
            header: BlockHeader {
                version: 1,
                prev_block: h(3),
                merkle_root: h(4),
                time: 5,
                bits: 6,
                nonce: 7,
            },
            total_txs: 1,
            hashes: vec![h(8)],
            flags: vec![1],
        }),
        Message::Reject(MsgReject {
            message: "tx".into(),
            code: reject_code::INVALID,
            reason: "bad".into(),
            hash: Some(h(9)),
        }),
        Message::SendHeaders,
        Message::SendCmpct {
            announce: true,
            version: 2,
        },
        Message::AddrV2(vec![AddrV2Entry {
            time: 1,
            services: 1,
            addr: AddrV2::Ipv4([127, 0, 0, 1]),
            port: 8333,
        }]),
    ]
}

/// TestPeerListeners: every message queued by the outbound side reaches the matching
/// listener on the inbound side, with its content (the inbound peer offers NODE_BLOOM so
/// the BIP37 messages are accepted).
#[tokio::test(start_paused = true)]
async fn peer_listeners() {
    let (l, mut rx) = recorder();
    let in_cfg = Config {
        services: services::BLOOM,
        ..with_listener(cfg(), l)
    };
    let (out, inb) = peer_pair(cfg(), in_cfg);
    next_ev(&mut rx, SOON, |e| matches!(e, Ev::Verack)).await;
    wait_until(SOON, "outbound handshake", || out.verack_received()).await;
    for msg in every_message() {
        out.queue_message(msg.clone(), None).await;
        let got = next_ev(&mut rx, SOON, |e| matches!(e, Ev::Msg(_))).await;
        match got {
            Ev::Msg(m) => assert_eq!(m, msg),
            _ => unreachable!(),
        }
    }
    assert!(inb.wants_headers());
    assert!(inb.connected());
}

/// The sendaddrv2 half of TestPeerListeners, asserted for real: sendaddrv2 after verack
/// disconnects.
#[tokio::test(start_paused = true)]
async fn sendaddrv2_after_verack_disconnects() {
    let (peer, mut raw) = handshaken(cfg(), true).await;
    raw.send(&Message::SendAddrV2).await;
    let rest = raw.until_eof(SOON).await;
    assert!(
        rest.iter().all(|m| !matches!(m, Message::Reject(_))),
        "{rest:?}"
    );
    peer.wait_for_disconnect().await;
    assert_eq!(peer.close_reason(), Some(PeerError::LateSendAddrV2));
}

/// TestOutboundPeer (a): a failing newest-block callback ends the peer by itself; a second
/// associate is harmless; afterwards queueing is a no-op and notifications still fire.
#[tokio::test(start_paused = true)]
async fn outbound_peer_newest_block_error() {
    let cfg = Config {
        newest_block: Some(Arc::new(|| Err("no chain".to_string()))),
        ..cfg()
    };
    let (a, _b) = tokio::io::duplex(1 << 16);
    let peer = Peer::new_outbound(cfg, "10.0.0.1:8333".parse().unwrap());
    peer.associate(NativeTransport::new(a, NET, None));
    let (a2, mut b2) = tokio::io::duplex(1 << 16);
    peer.associate(NativeTransport::new(a2, NET, None));
    // The extra transport is closed.
    assert_eq!(b2.read(&mut [0u8; 1]).await.unwrap(), 0);
    tokio::time::timeout(SOON, peer.wait_for_disconnect())
        .await
        .unwrap();
    assert!(matches!(
        peer.close_reason(),
        Some(PeerError::NewestBlock(_))
    ));
    let iv = InvVect {
        inv_type: inv_type::TX,
        hash: h(1),
    };
    peer.queue_inventory(iv).await;
    peer.add_known_inventory(iv);
    let rx = peer.queue_message_notify(Message::GetAddr).await;
    assert_eq!(rx.await.unwrap(), SendOutcome::Dropped);
    assert!(!peer.connected());
}

/// TestOutboundPeer (b, c): announced-block round trip; push helpers and queueing of many
/// message kinds neither fail nor block.
#[tokio::test(start_paused = true)]
async fn outbound_peer_push_helpers() {
    let cfg = Config {
        newest_block: Some(Arc::new(|| Ok((Hash256([7; 32]), 234_439)))),
        services: services::BLOOM | services::NETWORK,
        ..cfg()
    };
    let (peer, mut raw) = handshaken(cfg, false).await;
    peer.update_last_announced_block(h(5));
    assert_eq!(peer.last_announced_block(), Some(h(5)));
    peer.queue_inventory(InvVect {
        inv_type: inv_type::TX,
        hash: h(6),
    })
    .await;
    let addrs: Vec<_> = (0..5)
        .map(|i| TimedNetAddress {
            time: i,
            addr: NetAddress::default(),
        })
        .collect();
    assert_eq!(peer.push_addr(&addrs).await.len(), 5);
    assert!(peer.push_get_blocks(&[], Hash256::ZERO).await.unwrap());
    assert!(peer.push_get_headers(&[], Hash256::ZERO).await.unwrap());
    peer.push_reject("block", reject_code::MALFORMED, "junk", None, false)
        .await;
    peer.push_reject("block", reject_code::INVALID, "junk", None, false)
        .await;
    for m in [
        Message::GetAddr,
        Message::Ping(MsgPing { nonce: 1 }),
        Message::MemPool,
        Message::GetData(vec![]),
        Message::GetHeaders(MsgGetBlocks {
            version: 0,
            locator: vec![],
            hash_stop: Hash256::ZERO,
        }),
        Message::FeeFilter(20000),
    ] {
        peer.queue_message(m, None).await;
    }
    let mut seen = Vec::new();
    for _ in 0..11 {
        seen.push(raw.recv().await.unwrap().command());
    }
    use Command::*;
    assert_eq!(
        seen,
        [
            Addr, GetBlocks, GetHeaders, Reject, Reject, GetAddr, Ping, MemPool, GetData,
            GetHeaders, FeeFilter
        ]
    );
    let v = raw.version.clone();
    assert_eq!(v.version, 70016);
}

/// The version we send carries the newest-block height and btcd's fields.
#[tokio::test(start_paused = true)]
async fn local_version_fields() {
    let cfg = Config {
        newest_block: Some(Arc::new(|| Ok((Hash256([7; 32]), 234_439)))),
        services: services::NETWORK,
        disable_relay_tx: true,
        ..cfg()
    };
    let (peer, mut raw) = raw_pair(cfg, false);
    let theirs = raw.handshake_with_outbound().await;
    assert_eq!(theirs.start_height, 234_439);
    assert_eq!(theirs.version, 70016);
    assert_eq!(theirs.services, services::NETWORK);
    assert_eq!(theirs.addr_from.services, services::NETWORK);
    assert_eq!(theirs.addr_from.ip, [0; 16]);
    assert!(!theirs.relay);
    assert_eq!(theirs.user_agent, "/btcwire:0.5.0/peer:1.0(comment)/");
    wait_until(SOON, "handshake", || peer.verack_received()).await;
}

/// TestUnsupportedVersionPeer: a remote at version 1 is dropped with nothing further sent.
#[tokio::test(start_paused = true)]
async fn unsupported_version_peer() {
    let (peer, mut raw) = raw_pair(cfg(), false);
    assert!(matches!(raw.recv().await.unwrap(), Message::Version(_)));
    raw.version = remote_version(1);
    raw.pver = 1;
    let v = Message::Version(raw.version.clone());
    raw.send(&v).await;
    let rest = raw.until_eof(SOON).await;
    assert!(rest.is_empty(), "nothing after our version: {rest:?}");
    assert_eq!(peer.close_reason(), Some(PeerError::ObsoleteVersion(1)));
}

/// TestDuplicateVersionMsg, plus the ordering: reject DUPLICATE arrives, then the close.
#[tokio::test(start_paused = true)]
async fn duplicate_version_and_verack_reject_then_disconnect() {
    for dup in [Message::Version(remote_version(70016)), Message::Verack] {
        let (peer, mut raw) = handshaken(cfg(), true).await;
        raw.send(&dup).await;
        let rest = raw.until_eof(SOON).await;
        match rest.as_slice() {
            [Message::Reject(r)] => {
                assert_eq!(r.code, reject_code::DUPLICATE);
                assert_eq!(r.message, dup.command().as_str());
            }
            other => panic!("expected exactly one reject before EOF, got {other:?}"),
        }
        assert_eq!(
            peer.close_reason(),
            Some(PeerError::Duplicate(dup.command()))
        );
    }
}

/// TestUpdateLastBlockHeight.
#[tokio::test(start_paused = true)]
async fn update_last_block_height() {
    let (peer, mut raw) = raw_pair(cfg(), true);
    raw.version.start_height = 100;
    raw.handshake_with_inbound().await;
    wait_until(SOON, "handshake", || peer.verack_received()).await;
    assert_eq!(peer.last_block(), 100);
    assert_eq!(peer.starting_height(), 100);
    peer.update_last_block_height(99);
    assert_eq!(peer.last_block(), 100);
    peer.update_last_block_height(101);
    assert_eq!(peer.last_block(), 101);
}

/// TestSendAddrV2Handshake: both at 70016 → both want addrv2; either at 70015 → neither.
#[tokio::test(start_paused = true)]
async fn sendaddrv2_handshake() {
    for (out_v, in_v, want) in [
        (70016, 70016, true),
        (70016, 70015, false),
        (70015, 70016, false),
    ] {
        let (lo, mut rxo) = recorder();
        let (li, mut rxi) = recorder();
        let (out, inb) = peer_pair(
            Config {
                protocol_version: out_v,
                ..with_listener(cfg(), lo)
            },
            Config {
                protocol_version: in_v,
                ..with_listener(cfg(), li)
            },
        );
        next_ev(&mut rxo, SOON, |e| matches!(e, Ev::Verack)).await;
        next_ev(&mut rxi, SOON, |e| matches!(e, Ev::Verack)).await;
        assert_eq!(out.wants_addr_v2(), want, "{out_v}/{in_v}");
        assert_eq!(inb.wants_addr_v2(), want, "{out_v}/{in_v}");
        assert!(out.connected() && inb.connected());
    }
}

/// BIP339: with `wtxid_relay` on both sides at 70016, each sends `wtxidrelay` before
/// verack and both see it negotiated; off on either side, or below 70016, neither does.
#[tokio::test(start_paused = true)]
async fn wtxidrelay_handshake() {
    for (out_w, in_w, in_v, want) in [
        (true, true, 70016, true),
        (true, false, 70016, false),
        (false, true, 70016, false),
        (true, true, 70015, false),
    ] {
        let (lo, mut rxo) = recorder();
        let (li, mut rxi) = recorder();
        let (out, inb) = peer_pair(
            Config {
                wtxid_relay: out_w,
                ..with_listener(cfg(), lo)
            },
            Config {
                wtxid_relay: in_w,
                protocol_version: in_v,
                ..with_listener(cfg(), li)
            },
        );
        next_ev(&mut rxo, SOON, |e| matches!(e, Ev::Verack)).await;
        next_ev(&mut rxi, SOON, |e| matches!(e, Ev::Verack)).await;
        let case = format!("{out_w}/{in_w}/{in_v}");
        assert_eq!(out.wants_wtxid_relay(), in_w && in_v >= 70016, "{case}");
        assert_eq!(inb.wants_wtxid_relay(), out_w && in_v >= 70016, "{case}");
        assert_eq!(out.wtxid_relay(), want, "{case}");
        assert_eq!(inb.wtxid_relay(), want, "{case}");
        assert!(out.connected() && inb.connected());
    }
}

/// The raw order: `wtxidrelay` comes after version and before verack.
#[tokio::test(start_paused = true)]
async fn wtxidrelay_sent_before_verack() {
    let (peer, mut raw) = raw_pair(
        Config {
            wtxid_relay: true,
            ..cfg()
        },
        true,
    );
    raw.send(&Message::Version(raw.version.clone())).await;
    let mut seen = Vec::new();
    for _ in 0..8 {
        let m = raw.recv().await.expect("frame");
        let done = matches!(m, Message::Verack);
        seen.push(m.command().as_str().to_owned());
        if done {
            break;
        }
    }
    assert_eq!(seen, ["version", "wtxidrelay", "sendaddrv2", "verack"]);
    raw.send(&Message::WtxidRelay).await;
    raw.send(&Message::Verack).await;
    wait_until(SOON, "handshake", || peer.verack_received()).await;
    assert!(peer.wtxid_relay());
}

/// TestDisconnectBeforeAssociateConnection.
#[tokio::test(start_paused = true)]
async fn disconnect_before_associate() {
    let peer = Peer::new_inbound(cfg());
    peer.disconnect();
    peer.disconnect();
    tokio::time::timeout(SOON, peer.wait_for_disconnect())
        .await
        .unwrap();
    let (a, mut b) = tokio::io::duplex(1024);
    peer.associate(NativeTransport::new(a, NET, None));
    assert_eq!(b.read(&mut [0u8; 1]).await.unwrap(), 0, "transport closed");
    assert!(!peer.connected());
}

/// TestAssociateConnectionDisconnectRace: 100 races, each ends closed and not connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn associate_disconnect_race() {
    for _ in 0..100 {
        let peer = Peer::new_outbound(cfg(), "127.0.0.1:18444".parse().unwrap());
        let (a, mut b) = tokio::io::duplex(1024);
        let p2 = peer.clone();
        let t = tokio::spawn(async move { p2.associate(NativeTransport::new(a, NET, None)) });
        peer.disconnect();
        t.await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), peer.wait_for_disconnect())
            .await
            .unwrap();
        assert!(!peer.connected());
        // Either never started (closed at once) or started and stopped: the stream ends,
        // possibly after our version.
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), b.read_to_end(&mut buf))
            .await
            .unwrap()
            .unwrap();
    }
}

/// Example_newOutboundPeer: the outbound peer sees the remote version via on_version and
/// completes with verack.
#[tokio::test(start_paused = true)]
async fn example_outbound_peer() {
    let (l, mut rx) = recorder();
    let (_peer, mut raw) = raw_pair(with_listener(cfg(), l), false);
    raw.handshake_with_outbound().await;
    match next_ev(&mut rx, SOON, |e| matches!(e, Ev::Version(_))).await {
        Ev::Version(v) => assert_eq!(v.user_agent, "/raw:0.1/"),
        _ => unreachable!(),
    }
    next_ev(&mut rx, SOON, |e| matches!(e, Ev::Verack)).await;
}

/// on_version may reject: the reject goes out, then the connection closes.
#[tokio::test(start_paused = true)]
async fn on_version_reject_is_sent_then_disconnect() {
    let (l, _rx) = recorder();
    *l.reject_version.lock().unwrap() = Some(MsgReject {
        message: "version".into(),
        code: reject_code::OBSOLETE,
        reason: "go away".into(),
        hash: None,
    });
    let (peer, mut raw) = raw_pair(with_listener(cfg(), l), true);
    let v = Message::Version(raw.version.clone());
    raw.send(&v).await;
    let rest = raw.until_eof(SOON).await;
    match rest.as_slice() {
        [Message::Reject(r)] => assert_eq!(r.reason, "go away"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        peer.close_reason(),
        Some(PeerError::VersionRejected("go away".into()))
    );
}

/// BIP130: a peer configured with `send_headers` sends `sendheaders` after the handshake
/// and the remote records it; off, or below 70012, nothing is sent.
#[tokio::test(start_paused = true)]
async fn sendheaders_negotiation() {
    for (out_s, in_s, in_v) in [
        (true, true, 70016),
        (true, false, 70016),
        (false, true, 70012),
        (false, false, 70016),
        (true, true, 70011),
    ] {
        let (lo, mut rxo) = recorder();
        let (li, mut rxi) = recorder();
        let (out, inb) = peer_pair(
            Config {
                send_headers: out_s,
                ..with_listener(cfg(), lo)
            },
            Config {
                send_headers: in_s,
                protocol_version: in_v,
                ..with_listener(cfg(), li)
            },
        );
        next_ev(&mut rxo, SOON, |e| matches!(e, Ev::Verack)).await;
        next_ev(&mut rxi, SOON, |e| matches!(e, Ev::Verack)).await;
        // Each side writes `sendheaders` before anything queued, so once a ping has gone
        // out and its pong come back, both sides have read whatever was sent.
        out.queue_message(Message::Ping(MsgPing { nonce: 5 }), None)
            .await;
        next_ev(&mut rxo, SOON, |e| matches!(e, Ev::Msg(Message::Pong(5)))).await;
        let case = format!("{out_s}/{in_s}/{in_v}");
        let gate = in_v >= 70012;
        assert_eq!(out.sent_send_headers(), out_s && gate, "{case}");
        assert_eq!(inb.sent_send_headers(), in_s && gate, "{case}");
        assert_eq!(inb.wants_headers(), out_s && gate, "{case}");
        assert_eq!(out.wants_headers(), in_s && gate, "{case}");
        assert!(out.connected() && inb.connected(), "{case}");
    }
}

/// The raw order: `sendheaders` only after the remote's verack (Core ignores or refuses
/// it before), and not at all when the remote speaks 70011.
#[tokio::test(start_paused = true)]
async fn sendheaders_follows_the_remote_verack() {
    let send_headers = Config {
        send_headers: true,
        ..cfg()
    };
    let (peer, mut raw) = raw_pair(send_headers.clone(), true);
    raw.send(&Message::Version(raw.version.clone())).await;
    let mut seen = Vec::new();
    for _ in 0..8 {
        let m = raw.recv().await.expect("frame");
        let done = matches!(m, Message::Verack);
        seen.push(m.command().as_str().to_owned());
        if done {
            break;
        }
    }
    assert_eq!(seen, ["version", "sendaddrv2", "verack"]);
    assert!(raw.silent_for(SOON).await, "sent more before our verack");
    raw.send(&Message::Verack).await;
    assert_eq!(raw.recv_cmd().await, Message::SendHeaders);
    assert!(peer.sent_send_headers());

    let (peer, mut raw) = raw_pair(send_headers, true);
    raw.pver = 70011;
    raw.version = remote_version(70011);
    raw.handshake_with_inbound().await;
    wait_until(SOON, "handshake", || peer.verack_received()).await;
    assert!(raw.silent_for(SOON).await, "sendheaders at 70011");
    assert!(!peer.sent_send_headers());
}

/// `try_announce_block` announces by `inv` until the remote sends `sendheaders`, then by
/// `headers` carrying just the block's header; a block is announced once either way.
#[tokio::test(start_paused = true)]
async fn blocks_are_announced_by_headers_once_the_remote_asks() {
    let (peer, mut raw) = handshaken(cfg(), true).await;
    let header = |nonce| BlockHeader {
        version: 4,
        prev_block: h(1),
        merkle_root: h(2),
        time: 1_700_000_000,
        bits: 0x207f_ffff,
        nonce,
    };
    let first = header(1);
    assert!(!peer.wants_headers());
    assert!(peer.try_announce_block(&first));
    let block_iv = |hd: &BlockHeader| InvVect {
        inv_type: inv_type::BLOCK,
        hash: hd.hash(),
    };
    assert_eq!(raw.recv_cmd().await, Message::Inv(vec![block_iv(&first)]));
    assert!(
        peer.try_announce_block(&first),
        "known: skipped, not failed"
    );
    assert!(raw.silent_for(SOON).await, "announced twice");

    raw.send(&Message::SendHeaders).await;
    wait_until(SOON, "sendheaders recorded", || peer.wants_headers()).await;
    let second = header(2);
    assert!(peer.try_announce_block(&second));
    assert_eq!(raw.recv_cmd().await, Message::Headers(vec![second]));
    assert!(peer.is_known_inventory(&block_iv(&second)));
    assert!(peer.try_announce_block(&second));
    assert!(peer.try_announce_block(&first));
    assert!(raw.silent_for(SOON).await, "announced twice");
    // A remote that announced a block by headers is not sent it back.
    let third = header(3);
    peer.add_known_inventory(block_iv(&third));
    assert!(peer.try_announce_block(&third));
    assert!(raw.silent_for(SOON).await);
    assert!(peer.connected());

    peer.disconnect();
    peer.wait_for_disconnect().await;
    assert!(!peer.try_announce_block(&header(4)), "not connected");
}
