//! Timer-driven behaviour on tokio's paused clock: negotiation and idle timeouts, stall
//! detection per request type, trickling, pings, queue notifications, self-connections.

mod btc_support;

use std::time::Duration;

use btc_support::*;
use protocols::bitcoin::peer::{Config, Peer, PeerError, SendOutcome};
use protocols::bitcoin::wire::{inv_type, Command, Hash256, InvVect, Message, MsgGetBlocks};
use tokio::time::sleep;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn tx_inv(i: u32) -> InvVect {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&i.to_le_bytes());
    InvVect {
        inv_type: inv_type::TX,
        hash: Hash256(b),
    }
}

#[tokio::test(start_paused = true)]
async fn negotiation_timeout() {
    let (peer, _raw) = raw_pair(cfg(), true);
    sleep(secs(29)).await;
    assert!(peer.connected());
    sleep(secs(2)).await;
    wait_until(SOON, "disconnect", || peer.is_done()).await;
    assert_eq!(peer.close_reason(), Some(PeerError::NegotiationTimeout));
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_counts_only_receiving() {
    let (peer, mut raw) = handshaken(cfg(), true).await;
    // Our pings (at 2 and 4 min) do not count as activity; only receiving does.
    sleep(secs(4 * 60 + 50)).await;
    raw.send(&Message::GetAddr).await;
    sleep(secs(4 * 60 + 50)).await;
    assert!(peer.connected(), "message at 4:50 reset the idle timer");
    sleep(secs(20)).await;
    wait_until(SOON, "idle disconnect", || peer.is_done()).await;
    assert_eq!(peer.close_reason(), Some(PeerError::IdleTimeout(secs(300))));
}

async fn request(peer: &Peer, cmd: Command) {
    let gb = MsgGetBlocks {
        version: 70016,
        locator: vec![Hash256([1; 32])],
        hash_stop: Hash256::ZERO,
    };
    let msg = match cmd {
        Command::GetData => Message::GetData(vec![tx_inv(1)]),
        Command::GetHeaders => Message::GetHeaders(gb),
        Command::GetBlocks => Message::GetBlocks(gb),
        Command::MemPool => Message::MemPool,
        other => panic!("{other}"),
    };
    peer.queue_message(msg, None).await;
}

/// Every request type stalls without its answer: 30 s (checked every 15 s, so by 45 s),
/// getheaders 90 s (by 105 s).
#[tokio::test(start_paused = true)]
async fn stall_detected_per_request_type() {
    for (cmd, not_before, by) in [
        (Command::GetData, 30, 45),
        (Command::GetBlocks, 30, 45),
        (Command::MemPool, 30, 45),
        (Command::GetHeaders, 90, 105),
    ] {
        let (peer, mut raw) = handshaken(cfg(), true).await;
        request(&peer, cmd).await;
        assert_eq!(raw.recv_cmd().await.command(), cmd);
        // Keep the idle timer quiet with harmless traffic.
        sleep(secs(not_before - 1)).await;
        assert!(peer.connected(), "{cmd} stalled too early");
        sleep(secs(by - not_before + 1)).await;
        wait_until(SOON, "stall", || peer.is_done()).await;
        let want = match cmd {
            // Any of the four getdata answers is awaited; the lowest code is reported.
            Command::GetData => Command::NotFound,
            Command::GetHeaders => Command::Headers,
            _ => Command::Inv,
        };
        assert_eq!(peer.close_reason(), Some(PeerError::Stalled(want)), "{cmd}");
    }
}

/// The matching answer clears the deadline; getdata is satisfied by any of
/// block/merkleblock/tx/notfound that names what it asked for.
#[tokio::test(start_paused = true)]
async fn answered_requests_do_not_stall() {
    let ask = |hash| {
        Message::GetData(vec![InvVect {
            inv_type: inv_type::WITNESS_TX,
            hash,
        }])
    };
    let answers = [
        (Command::GetData, Message::NotFound(vec![tx_inv(1)])),
        (Command::GetData, Message::Tx(sample_tx(3))),
        (Command::GetData, Message::Block(sample_block())),
        (Command::GetBlocks, Message::Inv(vec![])),
        (Command::MemPool, Message::Inv(vec![tx_inv(2)])),
        (Command::GetHeaders, Message::Headers(vec![])),
    ];
    for (cmd, answer) in answers {
        let (peer, mut raw) = handshaken(cfg(), true).await;
        match &answer {
            Message::Tx(tx) => peer.queue_message(ask(tx.txid()), None).await,
            Message::Block(b) => peer.queue_message(ask(b.hash()), None).await,
            _ => request(&peer, cmd).await,
        }
        assert_eq!(raw.recv_cmd().await.command(), cmd);
        raw.send(&answer).await;
        sleep(secs(200)).await;
        assert!(
            peer.connected(),
            "{cmd} answered by {} still stalled",
            answer.command()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn stall_handler_can_be_disabled() {
    let c = Config {
        disable_stall_handler: true,
        ..cfg()
    };
    let (peer, mut raw) = handshaken(c, true).await;
    request(&peer, Command::GetData).await;
    raw.recv_cmd().await;
    sleep(secs(200)).await;
    assert!(peer.connected());
}

/// Trickle: 2500 tx items go out at the next tick as 1000 + 1000 + 500; block inventory
/// goes out at once; known inventory is never announced (nor re-announced).
#[tokio::test(start_paused = true)]
async fn trickle_batches_and_bypass() {
    let (peer, mut raw) = handshaken(cfg(), true).await;
    let known = tx_inv(99_999);
    peer.add_known_inventory(known);
    peer.queue_inventory(known).await;
    for i in 0..2500 {
        peer.queue_inventory(tx_inv(i)).await;
    }
    let block = InvVect {
        inv_type: inv_type::BLOCK,
        hash: Hash256([0xbb; 32]),
    };
    peer.queue_inventory(block).await;
    // The block bypasses the trickle (well before the 10 s tick).
    let t0 = tokio::time::Instant::now();
    match raw.recv_cmd().await {
        Message::Inv(v) => assert_eq!(v, vec![block]),
        other => panic!("{other:?}"),
    }
    assert!(t0.elapsed() < secs(10));
    let mut sizes = Vec::new();
    let mut all = Vec::new();
    while all.len() < 2500 {
        match raw.recv_within(secs(11)).await.unwrap() {
            Message::Inv(v) => {
                sizes.push(v.len());
                all.extend(v);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sizes, vec![1000, 1000, 500]);
    assert!(!all.contains(&known));
    assert_eq!(all[0], tx_inv(0));
    // Re-queueing a recently announced item does nothing: it is known now (the LRU keeps
    // the newest 1000, so the oldest announced ones were forgotten again).
    assert!(peer.is_known_inventory(&tx_inv(2499)));
    assert!(!peer.is_known_inventory(&tx_inv(0)));
    peer.queue_inventory(tx_inv(2499)).await;
    assert!(raw.silent_for(secs(15)).await);
}

/// Ping every 2 minutes; a matching pong records the round trip and clears the nonce, a
/// wrong one does not.
#[tokio::test(start_paused = true)]
async fn ping_pong_stats() {
    let (peer, mut raw) = handshaken(cfg(), true).await;
    sleep(secs(119)).await;
    assert_eq!(peer.last_ping_nonce(), 0);
    let nonce = match raw.recv().await.unwrap() {
        Message::Ping(p) => p.nonce,
        other => panic!("{other:?}"),
    };
    assert_ne!(nonce, 0);
    assert_eq!(peer.last_ping_nonce(), nonce);
    assert!(peer.last_ping_time().is_some());
    raw.send(&Message::Pong(nonce ^ 1)).await;
    sleep(Duration::from_millis(250)).await;
    assert_eq!(peer.last_ping_nonce(), nonce, "wrong nonce ignored");
    raw.send(&Message::Pong(nonce)).await;
    wait_until(SOON, "pong", || peer.last_ping_nonce() == 0).await;
    let micros = peer.last_ping_micros();
    assert!((250_000..300_000).contains(&micros), "{micros}");
    assert_eq!(peer.stats_snapshot().last_ping_micros, micros);
    // Remote pings are answered with the same nonce.
    raw.send(&Message::Ping(protocols::bitcoin::wire::MsgPing {
        nonce: 77,
    }))
    .await;
    assert_eq!(raw.recv().await.unwrap(), Message::Pong(77));
}

/// Back-to-back duplicate getblocks/getheaders are filtered; a different one is sent.
#[tokio::test(start_paused = true)]
async fn duplicate_locator_requests_filtered() {
    let (peer, mut raw) = handshaken(cfg(), true).await;
    let a = [Hash256([1; 32])];
    let b = [Hash256([2; 32])];
    assert!(peer.push_get_blocks(&a, Hash256::ZERO).await.unwrap());
    assert!(!peer.push_get_blocks(&a, Hash256::ZERO).await.unwrap());
    assert!(peer.push_get_headers(&a, Hash256::ZERO).await.unwrap());
    assert!(!peer.push_get_headers(&a, Hash256::ZERO).await.unwrap());
    assert!(peer.push_get_blocks(&b, Hash256::ZERO).await.unwrap());
    assert!(
        peer.push_get_blocks(&a, Hash256::ZERO).await.unwrap(),
        "only the previous is remembered"
    );
    assert!(
        peer.push_get_headers(&a, Hash256([9; 32])).await.unwrap(),
        "stop differs"
    );
    let too_long = vec![Hash256::ZERO; 501];
    assert!(peer
        .push_get_blocks(&too_long, Hash256::ZERO)
        .await
        .is_err());
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(raw.recv_cmd().await.command());
    }
    use Command::*;
    assert_eq!(
        got,
        [GetBlocks, GetHeaders, GetBlocks, GetBlocks, GetHeaders]
    );
    assert!(raw.silent_for(secs(1)).await);
}

/// The "sent or will never be sent" notification on every path.
#[tokio::test(start_paused = true)]
async fn notification_fires_on_every_path() {
    // Not connected yet.
    let idle = Peer::new_inbound(cfg());
    let rx = idle.queue_message_notify(Message::GetAddr).await;
    assert_eq!(rx.await.unwrap(), SendOutcome::Dropped);
    assert!(!idle.try_queue_message(Message::GetAddr, None));

    // Sent.
    let (peer, mut raw) = handshaken(cfg(), true).await;
    let rx = peer.queue_message_notify(Message::GetAddr).await;
    assert_eq!(rx.await.unwrap(), SendOutcome::Sent);
    assert_eq!(raw.recv().await.unwrap(), Message::GetAddr);

    // Queued before the handshake finished, drained at shutdown.
    let (early, _raw2) = raw_pair(cfg(), true);
    let mut rxs = Vec::new();
    for _ in 0..3 {
        rxs.push(early.queue_message_notify(Message::GetAddr).await);
    }
    early.disconnect();
    for rx in rxs {
        assert_eq!(rx.await.unwrap(), SendOutcome::Dropped);
    }

    // After disconnect.
    peer.disconnect();
    let rx = peer.queue_message_notify(Message::GetAddr).await;
    assert_eq!(rx.await.unwrap(), SendOutcome::Dropped);

    // Write failure: the remote end is gone.
    let (peer, raw) = handshaken(cfg(), true).await;
    drop(raw);
    let rx = peer.queue_message_notify(Message::GetAddr).await;
    let outcome = rx.await.unwrap();
    // The reader may notice the closed stream first (then the queue is drained).
    assert!(
        matches!(outcome, SendOutcome::Failed | SendOutcome::Dropped),
        "{outcome:?}"
    );
}

/// Write failure specifically reports Failed.
#[tokio::test(start_paused = true)]
async fn notification_failed_on_write_error() {
    let (peer, _raw) = handshaken(cfg(), true).await;
    let big = Message::Inv((0..50_000).map(tx_inv).collect());
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        outcomes.push(peer.queue_message_notify(big.clone()).await);
    }
    // Nobody reads: the 4 MiB duplex fills, a write times out after 60 s.
    sleep(secs(300)).await;
    let mut got = Vec::new();
    for rx in outcomes {
        got.push(rx.await.unwrap());
    }
    assert!(got.contains(&SendOutcome::Failed), "{got:?}");
    assert!(matches!(
        peer.close_reason(),
        Some(PeerError::WriteFailed(_)) | Some(PeerError::IdleTimeout(_))
    ));
}

/// Two of our own peers connected to each other (same process, shared nonce set) detect
/// the self-connection in both directions when it is not allowed.
#[tokio::test(start_paused = true)]
async fn self_connection_detected() {
    let c = Config {
        allow_self_conns: false,
        ..cfg()
    };
    let (out, inb) = peer_pair(c.clone(), c);
    tokio::time::timeout(SOON, inb.wait_for_disconnect())
        .await
        .unwrap();
    tokio::time::timeout(SOON, out.wait_for_disconnect())
        .await
        .unwrap();
    assert_eq!(inb.close_reason(), Some(PeerError::SelfConnection));
    assert!(!inb.verack_received() && !out.verack_received());
    // The outbound side checks too: answer an outbound peer with its own nonce.
    let c = Config {
        allow_self_conns: false,
        ..cfg()
    };
    let (peer, mut raw) = raw_pair(c, false);
    let ours = match raw.recv().await.unwrap() {
        Message::Version(v) => v,
        other => panic!("{other:?}"),
    };
    raw.version.nonce = ours.nonce;
    let v = Message::Version(raw.version.clone());
    raw.send(&v).await;
    let rest = raw.until_eof(SOON).await;
    assert!(rest.is_empty());
    assert_eq!(peer.close_reason(), Some(PeerError::SelfConnection));
}

/// A peer that withholds what we asked for cannot keep its getdata from stalling with
/// `notfound`s that do not name it, nor with unrequested transactions.
#[tokio::test(start_paused = true)]
async fn getdata_stall_needs_answers_naming_its_items() {
    let (peer, mut raw) = handshaken(cfg(), true).await;
    peer.queue_message(Message::GetData(vec![tx_inv(1), tx_inv(2)]), None)
        .await;
    assert_eq!(raw.recv_cmd().await.command(), Command::GetData);
    for i in 0..8 {
        sleep(secs(5)).await;
        raw.send(&Message::NotFound(vec![])).await;
        raw.send(&Message::NotFound(vec![tx_inv(100 + i)])).await;
        raw.send(&Message::Tx(sample_tx(3))).await;
    }
    wait_until(SOON, "stall", || peer.is_done()).await;
    assert_eq!(
        peer.close_reason(),
        Some(PeerError::Stalled(Command::NotFound))
    );

    // Answering item by item keeps it alive, and all items answered clears it.
    let (peer, mut raw) = handshaken(cfg(), true).await;
    peer.queue_message(Message::GetData(vec![tx_inv(1), tx_inv(2)]), None)
        .await;
    assert_eq!(raw.recv_cmd().await.command(), Command::GetData);
    sleep(secs(25)).await;
    raw.send(&Message::NotFound(vec![tx_inv(1)])).await;
    sleep(secs(25)).await;
    assert!(peer.connected(), "progress moved the deadline");
    raw.send(&Message::NotFound(vec![tx_inv(2)])).await;
    sleep(secs(200)).await;
    assert!(peer.connected(), "{:?}", peer.close_reason());
}
