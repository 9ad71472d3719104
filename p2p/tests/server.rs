//! The server over loopback TCP: limits, static and trusted peers, duplicate and self
//! connections, events and shutdown.

use std::time::Duration;

use p2p::base::DisconnectReason;
use p2p::protocol::Protocol;
use p2p::server::{PeerEvent, Server, ServerConfig, ServerError};
use p2p::session::SessionError;
use p2p::testkit::echo_protocol as echo;
use secp256k1::SecretKey;

const T: Duration = Duration::from_secs(10);

fn config() -> ServerConfig {
    p2p::testkit::loopback_config(vec![echo()])
}

async fn start(cfg: ServerConfig) -> Server {
    Server::start(cfg).await.expect("server start")
}

fn refused_with(err: ServerError) -> DisconnectReason {
    match err {
        ServerError::Session(SessionError::RemoteDisconnect(r)) => r,
        ServerError::Refused(r) => r,
        other => panic!("unexpected error: {other}"),
    }
}

async fn wait_for<F: Fn() -> bool>(f: F) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < T, "condition not met in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Port 0 and unspecified/multicast addresses are refused before any socket is opened
/// (on Linux, connecting to 0.0.0.0 would reach this very machine).
#[tokio::test]
async fn dial_refuses_undialable_enodes() {
    use p2p::node::{Enode, EnodeError};
    let a = start(config()).await;
    let b = start(config()).await;
    let target = a.enode().unwrap();
    let port = target.tcp_port;
    for (ip, port) in [
        ("127.0.0.1", 0),
        ("0.0.0.0", port),
        ("::", port),
        ("224.0.0.1", port),
        ("ff02::1", port),
    ] {
        let enode = Enode::new(
            target.id,
            std::net::SocketAddr::new(ip.parse().unwrap(), port),
        );
        let err = b.dial(&enode).await.expect_err(ip);
        assert!(
            matches!(
                err,
                ServerError::NotDialable(
                    EnodeError::PortZero
                        | EnodeError::UnspecifiedAddress(_)
                        | EnodeError::NotUnicast(_)
                )
            ),
            "{ip}:{port}: {err}"
        );
    }
    assert_eq!(a.peer_count(), 0);
    assert_eq!(b.peer_count(), 0);
}

#[tokio::test]
async fn dial_connects_both_sides_and_publishes_events() {
    let a = start(config()).await;
    let b = start(config()).await;
    let mut events = b.subscribe();
    let peer = a.dial(&b.enode().unwrap()).await.unwrap();
    assert_eq!(peer.id(), b.id());
    assert_eq!(peer.protocols()[0].offset, 16);
    let added = tokio::time::timeout(T, events.recv())
        .await
        .unwrap()
        .unwrap();
    match &added {
        PeerEvent::Added { id, protocols, .. } => {
            assert_eq!(*id, a.id());
            assert_eq!(protocols, &vec!["echo/1".to_string()]);
        }
        other => panic!("unexpected event {other:?}"),
    }
    // As JSON, every node id is the full id in hex: the enode URL's 128 characters.
    let added = serde_json::to_value(&added).unwrap();
    assert_eq!(added["type"], "added");
    assert_eq!(added["id"], a.id().to_string());
    assert_eq!(added["id"].as_str().unwrap().len(), 128);
    let info = serde_json::to_value(b.node_info()).unwrap();
    assert_eq!(info["peers"], 1);
    assert_eq!(info["id"], b.id().to_string());
    let peers = serde_json::to_value(b.peers_info()).unwrap();
    assert_eq!(peers[0]["protocols"][0]["name"], "echo");
    assert_eq!(peers[0]["id"], a.id().to_string());
    peer.disconnect(DisconnectReason::DisconnectRequested);
    match tokio::time::timeout(T, events.recv())
        .await
        .unwrap()
        .unwrap()
    {
        PeerEvent::Dropped { reason, .. } => {
            assert_eq!(reason.reason, DisconnectReason::DisconnectRequested);
            assert!(reason.remote);
        }
        other => panic!("unexpected event {other:?}"),
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// Message events name the peer by its full node id, in Rust and in JSON.
#[tokio::test]
async fn message_events_carry_the_peer_node_id() {
    let mut cfg = config();
    cfg.enable_msg_events = true;
    let a = start(cfg).await;
    let mut events = a.subscribe();
    // b's side of echo/1 sends one request (code 0, an empty RLP list) and then reads.
    let b = start(p2p::testkit::loopback_config(vec![Protocol::new(
        "echo",
        1,
        2,
        |_peer, mut rw| async move {
            rw.write(0, &[0xc0]).await?;
            loop {
                rw.read().await?;
            }
        },
    )]))
    .await;
    b.dial(&a.enode().unwrap()).await.unwrap();
    // a receives the request and its echo/1 answers it (code 1): one event each way.
    let deadline = tokio::time::Instant::now() + T;
    let (mut received, mut sent) = (None, None);
    while received.is_none() || sent.is_none() {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("message events in time")
            .unwrap();
        if let PeerEvent::Message(m) = &ev {
            assert_eq!(m.peer, b.id());
            assert_eq!(m.protocol, "echo");
            let slot = if m.received { &mut received } else { &mut sent };
            slot.get_or_insert(ev.clone());
        }
    }
    let received = serde_json::to_value(&received).unwrap();
    assert_eq!(received["type"], "message");
    assert_eq!(received["peer"], b.id().to_string());
    assert_eq!(received["code"], 0);
    let sent = serde_json::to_value(&sent).unwrap();
    assert_eq!(
        (&sent["peer"], &sent["code"]),
        (&received["peer"], &1.into())
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn extra_inbound_peer_gets_too_many_peers() {
    let mut cfg = config();
    cfg.max_peers = 2;
    cfg.dial_ratio = 2; // one inbound slot
    let hub = start(cfg).await;
    let first = start(config()).await;
    let second = start(config()).await;
    first.dial(&hub.enode().unwrap()).await.unwrap();
    let err = second.dial(&hub.enode().unwrap()).await.unwrap_err();
    assert_eq!(refused_with(err), DisconnectReason::TooManyPeers);
    assert_eq!(hub.peer_count(), 1);
}

#[tokio::test]
async fn trusted_peer_is_admitted_past_the_limit() {
    let mut cfg = config();
    cfg.max_peers = 1;
    cfg.dial_ratio = 0; // the one slot takes inbound peers
    let hub = start(cfg).await;
    let first = start(config()).await;
    let trusted = start(config()).await;
    hub.add_trusted(trusted.id());
    first.dial(&hub.enode().unwrap()).await.unwrap();
    let stranger = start(config()).await;
    assert_eq!(
        refused_with(stranger.dial(&hub.enode().unwrap()).await.unwrap_err()),
        DisconnectReason::TooManyPeers
    );
    trusted.dial(&hub.enode().unwrap()).await.unwrap();
    wait_for(|| hub.peer_count() == 2).await;
    assert!(hub.peer(&trusted.id()).unwrap().is_trusted());
}

#[tokio::test]
async fn duplicate_connection_gets_already_connected() {
    let a = start(config()).await;
    let b = start(config()).await;
    a.dial(&b.enode().unwrap()).await.unwrap();
    wait_for(|| b.peer_count() == 1).await;
    // b dialing back a: a already has b.
    let err = b.dial(&a.enode().unwrap()).await.unwrap_err();
    assert_eq!(refused_with(err), DisconnectReason::AlreadyConnected);
    assert_eq!(a.peer_count(), 1);
}

#[tokio::test]
async fn dialing_self_gets_connected_to_self() {
    let a = start(config()).await;
    let err = a.dial(&a.enode().unwrap()).await.unwrap_err();
    assert_eq!(refused_with(err), DisconnectReason::ConnectedToSelf);
    assert_eq!(a.peer_count(), 0);
}

#[tokio::test]
async fn static_peer_is_redialed_after_it_restarts() {
    let key_b = SecretKey::new(&mut rand::thread_rng());
    let mut cfg_b = config();
    cfg_b.key = key_b.into();
    let b = start(cfg_b.clone()).await;
    let b_enode = b.enode().unwrap();
    let mut cfg_a = config();
    cfg_a.static_peers.push(b_enode);
    cfg_a.static_backoff_min = Duration::from_millis(50);
    cfg_a.static_backoff_max = Duration::from_millis(200);
    let a = start(cfg_a).await;
    wait_for(|| a.peer(&b.id()).is_some()).await;
    // Restart b on the same port with the same key.
    b.shutdown().await;
    wait_for(|| a.peer(&b.id()).is_none()).await;
    cfg_b.listen_addr = Some(b_enode.socket_addr());
    let b2 = start(cfg_b).await;
    wait_for(|| a.peer(&b2.id()).is_some()).await;
    a.shutdown().await;
    b2.shutdown().await;
}

#[tokio::test]
async fn shutdown_sends_client_quitting_to_every_peer() {
    let hub = start(config()).await;
    let mut spokes = Vec::new();
    for _ in 0..3 {
        let s = start(config()).await;
        let peer = s.dial(&hub.enode().unwrap()).await.unwrap();
        spokes.push((s, peer));
    }
    wait_for(|| hub.peer_count() == 3).await;
    tokio::time::timeout(T, hub.shutdown())
        .await
        .expect("shutdown hung");
    for (_, peer) in &spokes {
        let closed = tokio::time::timeout(T, peer.closed()).await.unwrap();
        assert_eq!(closed.reason, DisconnectReason::ClientQuitting);
        assert!(closed.remote);
    }
    assert_eq!(hub.peer_count(), 0);
    // The listener is closed.
    assert!(tokio::net::TcpStream::connect(hub.local_addr().unwrap())
        .await
        .is_err());
}

#[tokio::test]
async fn a_flooding_peer_is_dropped_and_the_others_keep_talking() {
    use p2p::protocol::InboundLimits;
    // The hub's protocol reads slowly: one message every 50 ms.
    let slow = Protocol::new("echo", 1, 2, |_peer, mut rw| async move {
        loop {
            let m = rw.read().await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            if m.code == 0 {
                rw.write(1, &m.payload).await?;
            }
        }
    })
    .with_inbound_limits(InboundLimits {
        max_messages: 16,
        max_bytes: 1 << 20,
    });
    let mut cfg = config();
    cfg.protocols = vec![slow];
    let hub = start(cfg).await;

    // The honest peer sends one message at a time and waits for each answer.
    let (reply_tx, mut reply_rx) = tokio::sync::mpsc::channel(4);
    let honest_proto = Protocol::new("echo", 1, 2, move |_peer, mut rw| {
        let reply_tx = reply_tx.clone();
        async move {
            for i in 0u8..10 {
                rw.write(0, &[i]).await?;
                let m = rw.read().await?;
                reply_tx.send(m.payload[0]).await.ok();
            }
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    let flood_proto = Protocol::new("echo", 1, 2, |_peer, rw| async move {
        loop {
            rw.write(1, &[0u8; 100]).await?;
        }
    });
    let mut honest_cfg = config();
    honest_cfg.protocols = vec![honest_proto];
    let mut flood_cfg = config();
    flood_cfg.protocols = vec![flood_proto];
    let honest = start(honest_cfg).await;
    let flooder = start(flood_cfg).await;
    honest.dial(&hub.enode().unwrap()).await.unwrap();
    let flood_peer = flooder.dial(&hub.enode().unwrap()).await.unwrap();
    let closed = tokio::time::timeout(T, flood_peer.closed()).await.unwrap();
    assert_eq!(closed.reason, DisconnectReason::ProtocolBreach);
    assert!(closed.remote);
    for i in 0u8..10 {
        let got = tokio::time::timeout(T, reply_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, i);
    }
    assert!(hub.peer(&honest.id()).is_some());
}

#[tokio::test]
async fn allow_list_refuses_other_addresses() {
    let mut cfg = config();
    cfg.allow_list = Some(vec!["10.0.0.0/8".parse().unwrap()]);
    let a = start(cfg).await;
    let b = start(config()).await;
    assert!(matches!(
        a.dial(&b.enode().unwrap()).await,
        Err(ServerError::NotAllowed(_))
    ));
    // Inbound from 127.0.0.1 is dropped before the handshake.
    assert!(b.dial(&a.enode().unwrap()).await.is_err());
    assert_eq!(a.peer_count(), 0);
}
