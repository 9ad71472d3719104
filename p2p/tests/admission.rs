//! Admission and lifecycle over loopback TCP: the per-subnet inbound cap and the throttle
//! with the loopback exemption off (dialing from distinct 127.x.y.z addresses), and a
//! protocol that panics.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use p2p::base::{Capability, DisconnectReason, Hello};
use p2p::conn::Conn;
use p2p::node::NodeId;
use p2p::protocol::{Protocol, ProtocolError};
use p2p::server::{PeerEvent, Server, ServerConfig};
use p2p::session::{exchange_hello, SessionError};
use p2p::testkit::{echo_protocol as echo, loopback_config, random_key};
use secp256k1::SecretKey;
use tokio::net::TcpSocket;

const T: Duration = Duration::from_secs(10);

fn config() -> ServerConfig {
    loopback_config(vec![echo()])
}

async fn wait_for<F: Fn() -> bool>(f: F) {
    let start = std::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < T, "condition not met in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How a raw connection attempt ended.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Both Hellos exchanged; the link is up.
    Admitted,
    /// The hub sent a Disconnect instead of its Hello.
    Refused(DisconnectReason),
    /// The hub dropped the connection before or during the encryption handshake.
    Dropped,
}

/// Dial `hub` from the loopback address `from` with `key`, handshake and exchange Hellos.
/// Returns the link (kept open by the caller) when admitted.
async fn raw_dial(hub: &Server, from: &str, key: SecretKey) -> (Outcome, Option<Conn>) {
    let from: IpAddr = from.parse().unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let stream = socket.connect(hub.local_addr().unwrap()).await.unwrap();
    let mut conn = match Conn::initiate(stream, &key, &hub.id(), T).await {
        Ok(conn) => conn,
        Err(_) => return (Outcome::Dropped, None),
    };
    let hello = Hello::new(
        "raw",
        vec![Capability::new("echo", 1)],
        0,
        NodeId::from_secret(&key),
    );
    match exchange_hello(&mut conn, &hello, T).await {
        Ok(_) => (Outcome::Admitted, Some(conn)),
        Err(SessionError::RemoteDisconnect(r)) => (Outcome::Refused(r), None),
        Err(e) => panic!("unexpected hello failure: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_peers_are_capped_per_subnet_when_loopback_is_not_exempt() {
    let trusted = random_key();
    let mut cfg = config();
    cfg.max_inbound_per_subnet = 2;
    cfg.exempt_loopback = false;
    cfg.inbound_throttle = Duration::ZERO;
    cfg.trusted_peers = vec![NodeId::from_secret(&trusted)];
    let hub = Server::start(cfg).await.unwrap();

    let (o, a1) = raw_dial(&hub, "127.0.0.2", random_key()).await;
    assert_eq!(o, Outcome::Admitted);
    let (o, _a2) = raw_dial(&hub, "127.0.0.3", random_key()).await;
    assert_eq!(o, Outcome::Admitted);
    // A third address of 127.0.0.0/24 is refused at the checkpoint.
    let (o, _) = raw_dial(&hub, "127.0.0.4", random_key()).await;
    assert_eq!(o, Outcome::Refused(DisconnectReason::TooManyPeers));
    // Another /24 is unaffected, and trusted peers are exempt.
    let (o, _b1) = raw_dial(&hub, "127.0.1.2", random_key()).await;
    assert_eq!(o, Outcome::Admitted);
    let (o, _t) = raw_dial(&hub, "127.0.0.5", trusted).await;
    assert_eq!(o, Outcome::Admitted);
    wait_for(|| hub.peer_count() == 4).await;
    // The trusted peer does not count: still no room in 127.0.0.0/24 ...
    let (o, _) = raw_dial(&hub, "127.0.0.6", random_key()).await;
    assert_eq!(o, Outcome::Refused(DisconnectReason::TooManyPeers));
    // ... until one of the two leaves.
    drop(a1);
    wait_for(|| hub.peer_count() == 3).await;
    let (o, _a3) = raw_dial(&hub, "127.0.0.7", random_key()).await;
    assert_eq!(o, Outcome::Admitted);
    hub.shutdown().await;
}

#[tokio::test]
async fn loopback_is_exempt_from_the_subnet_cap_and_throttle_by_default() {
    let mut cfg = config();
    cfg.max_inbound_per_subnet = 2;
    let hub = Server::start(cfg).await.unwrap();
    let mut links = Vec::new();
    for _ in 0..4 {
        let (o, link) = raw_dial(&hub, "127.0.0.1", random_key()).await;
        assert_eq!(o, Outcome::Admitted);
        links.push(link);
    }
    wait_for(|| hub.peer_count() == 4).await;
    hub.shutdown().await;
}

#[tokio::test]
async fn the_throttle_applies_to_loopback_when_not_exempt() {
    let mut cfg = config();
    cfg.exempt_loopback = false;
    let hub = Server::start(cfg).await.unwrap();
    let (o, _first) = raw_dial(&hub, "127.0.0.8", random_key()).await;
    assert_eq!(o, Outcome::Admitted);
    // The same address again within the window is dropped before the handshake.
    let (o, _) = raw_dial(&hub, "127.0.0.8", random_key()).await;
    assert_eq!(o, Outcome::Dropped);
    // A different address is a different source.
    let (o, _other) = raw_dial(&hub, "127.0.0.9", random_key()).await;
    assert_eq!(o, Outcome::Admitted);
    hub.shutdown().await;
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// A protocol that panics, either in the synchronous part of its run closure (before the
/// future exists) or inside the future.
fn panicking(in_start: bool) -> Protocol {
    Protocol::new("echo", 1, 2, move |_peer, _rw| {
        if in_start {
            panic!("protocol start panicked (deliberate)");
        }
        async move {
            tokio::task::yield_now().await;
            if !in_start {
                panic!("protocol run panicked (deliberate)");
            }
            Ok::<(), ProtocolError>(())
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_protocol_ends_the_peer_with_subprotocol_error_and_frees_everything() {
    for in_start in [true, false] {
        let tasks_before = alive_tasks();
        let mut cfg = config();
        cfg.protocols = vec![panicking(in_start)];
        let hub = Server::start(cfg).await.unwrap();
        let client = Server::start(config()).await.unwrap();
        let mut events = hub.subscribe();
        let peer = client.dial(&hub.enode().unwrap()).await.unwrap();
        // The remote is told why.
        let closed = tokio::time::timeout(T, peer.closed())
            .await
            .unwrap_or_else(|_| panic!("in_start={in_start}: client peer never closed"));
        assert_eq!(
            closed.reason,
            DisconnectReason::SubprotocolError,
            "{in_start}"
        );
        assert!(closed.remote);
        // The hub's closed() returned (Dropped is published after it) with the same reason.
        let dropped = tokio::time::timeout(T, async {
            loop {
                if let Ok(PeerEvent::Dropped { reason, .. }) = events.recv().await {
                    return reason;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("in_start={in_start}: hub peer never dropped"));
        assert_eq!(dropped.reason, DisconnectReason::SubprotocolError);
        assert!(!dropped.remote);
        // The slot is free.
        wait_for(|| hub.peer_count() == 0).await;
        client.shutdown().await;
        hub.shutdown().await;
        // Every task of both nodes and the peer has ended.
        let start = std::time::Instant::now();
        while alive_tasks() > tasks_before {
            assert!(
                start.elapsed() < T,
                "in_start={in_start}: {} tasks left (before: {tasks_before})",
                alive_tasks()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn a_dial_dropped_during_the_hello_frees_its_slot() {
    // A listener that completes the encryption handshake and then never sends a Hello.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_key = random_key();
    let silent = p2p::node::Enode {
        id: NodeId::from_secret(&silent_key),
        ip: "127.0.0.1".parse().unwrap(),
        tcp_port: listener.local_addr().unwrap().port(),
        udp_port: 0,
    };
    let responder = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let conn = Conn::accept(stream, &silent_key, T).await.unwrap();
        tokio::time::sleep(T).await;
        drop(conn);
    });
    let mut cfg = config();
    cfg.max_peers = 1;
    let client = Server::start(cfg).await.unwrap();
    // The caller gives up while the dial waits for the Hello.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), client.dial(&silent))
            .await
            .is_err()
    );
    // The abandoned attempt holds no slot: the one allowed peer can still be dialed.
    let other = Server::start(config()).await.unwrap();
    client
        .dial(&other.enode().unwrap())
        .await
        .expect("the abandoned dial still holds the only slot");
    responder.abort();
    client.shutdown().await;
    other.shutdown().await;
}
