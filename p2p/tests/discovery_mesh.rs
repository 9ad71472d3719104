//! Discovery wired into the server: nodes on distinct loopback addresses, one bootnode,
//! grow into one connected network within the peer limits.

use std::time::{Duration, Instant};

use p2p::discover::v4::Bootnode;
use p2p::protocol::Protocol;
use p2p::server::{Discovery, PeerEvent, Server, ServerConfig};
use p2p::testkit::{is_connected, peer_graph};
use secp256k1::SecretKey;

const NODES: u8 = 16;
const MAX_PEERS: usize = 6;
const DEADLINE: Duration = Duration::from_secs(20);

fn echo() -> Protocol {
    Protocol::new("echo", 1, 2, |_peer, mut rw| async move {
        loop {
            let m = rw.read().await?;
            if m.code == 0 {
                rw.write(1, &m.payload).await?;
            }
        }
    })
}

fn config(n: u8, bootnodes: Vec<Bootnode>) -> ServerConfig {
    let key = SecretKey::new(&mut rand::thread_rng());
    let addr = format!("127.0.0.{}:0", n + 1).parse().unwrap();
    let mut cfg = ServerConfig::new(key, Some(addr));
    cfg.protocols.push(echo());
    cfg.max_peers = MAX_PEERS;
    cfg.discovery = Discovery::V4;
    cfg.bootnodes = bootnodes;
    cfg.dial_only_shared_caps = true;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_from_one_bootnode_grow_into_a_connected_network() {
    let started = Instant::now();
    let boot = Server::start(config(0, vec![])).await.expect("bootnode");
    let boot_enode = boot.enode().unwrap();
    let mut events = boot.subscribe();
    let mut servers = vec![boot];
    for n in 1..NODES {
        let cfg = config(n, vec![Bootnode::Enode(boot_enode)]);
        servers.push(Server::start(cfg).await.expect("server"));
    }
    let mut discovered = 0;
    let mut meshed = None;
    while started.elapsed() < DEADLINE {
        while let Ok(ev) = events.try_recv() {
            if matches!(ev, PeerEvent::Discovered { .. }) {
                discovered += 1;
            }
        }
        for s in &servers {
            assert!(s.peers().len() <= MAX_PEERS, "a node exceeds max peers");
        }
        let g = peer_graph(&servers);
        if servers.iter().all(|s| !s.peers().is_empty()) && is_connected(&g) {
            meshed = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counts: Vec<usize> = servers.iter().map(|s| s.peers().len()).collect();
    eprintln!("connected network after {meshed:?}; peers per node {counts:?}; bootnode discovered {discovered}");
    assert!(
        meshed.is_some(),
        "no connected network in time: peers per node {counts:?}"
    );
    assert!(discovered > 0, "the bootnode reported no discovered node");
    for s in &servers {
        s.shutdown().await;
    }
}

/// With `dial_only_shared_caps`, a node whose record names none of our protocols is never
/// offered for dialing; without it, the same node is dialed and turns out useless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_without_a_shared_capability_are_not_dialed_when_filtering() {
    let mut boot = config(40, vec![]);
    boot.dial_only_shared_caps = false;
    let boot = Server::start(boot).await.expect("bootnode");
    let mut boot_events = boot.subscribe();
    let bootnodes = vec![Bootnode::Enode(boot.enode().unwrap())];
    let mut other = config(41, bootnodes.clone());
    other.protocols = vec![Protocol::new("other", 1, 2, |_peer, _rw| async { Ok(()) })];
    let other = Server::start(other).await.expect("other");
    let other_id = other.id();
    // The bootnode knows the other node before the rest look it up.
    let start = Instant::now();
    let mut known = false;
    while !known && start.elapsed() < DEADLINE {
        match tokio::time::timeout(Duration::from_millis(100), boot_events.recv()).await {
            Ok(Ok(PeerEvent::Discovered { id, .. })) if id == other_id => known = true,
            _ => {}
        }
    }
    assert!(known, "the bootnode never found the other node");
    let filtering = config(42, bootnodes.clone());
    let mut open = config(43, bootnodes);
    open.dial_only_shared_caps = false;
    // Room to dial every node it finds, useful or not.
    open.max_peers = 30;
    let filtering = Server::start(filtering).await.expect("filtering");
    let open = Server::start(open).await.expect("open");
    let mut filtering_events = filtering.subscribe();
    let mut open_events = open.subscribe();

    // The open node finds the other one and dials it in vain.
    let start = Instant::now();
    let mut open_failed = false;
    while !open_failed && start.elapsed() < DEADLINE {
        match tokio::time::timeout(Duration::from_millis(100), open_events.recv()).await {
            Ok(Ok(PeerEvent::DialFailed { id, .. })) if id == other_id => open_failed = true,
            _ => {}
        }
    }
    // The filtering node runs as long again and never offers it for dialing.
    tokio::time::sleep(start.elapsed()).await;
    while let Ok(ev) = filtering_events.try_recv() {
        if let PeerEvent::Discovered { id, .. } | PeerEvent::DialFailed { id, .. } = ev {
            assert_ne!(id, other_id, "the filtering node offered a useless node");
        }
    }
    assert!(
        filtering.peers().iter().all(|p| p.id() != other.id()),
        "the filtering node connected to a useless node"
    );
    assert!(open_failed, "the open node never dialed the other node");
    for s in [boot, other, filtering, open] {
        s.shutdown().await;
    }
}

/// The enode names the discovery port when it differs from the TCP port, and discovery's
/// packet counters are there while it runs.
#[tokio::test]
async fn the_enode_names_the_discovery_port() {
    let mut cfg = config(50, vec![]);
    cfg.udp_port = Some(0);
    let server = Server::start(cfg).await.expect("server");
    let enode = server.enode().unwrap();
    assert_ne!(enode.udp_port, 0);
    assert_ne!(enode.udp_port, enode.tcp_port, "{enode}");
    assert!(enode.to_string().contains("?discport="), "{enode}");
    assert_eq!(server.discv4_stats().map(|s| s.sent), Some(0));
    // A node bootstrapping from that enode reaches its discovery port.
    let other = Server::start(config(51, vec![Bootnode::Enode(enode)]))
        .await
        .expect("other");
    let start = Instant::now();
    while server.discv4_stats().unwrap().received == 0 && start.elapsed() < DEADLINE {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(server.discv4_stats().unwrap().received > 0);
    other.shutdown().await;
    server.shutdown().await;

    let mut off = config(52, vec![]);
    off.discovery = Discovery::Off;
    let off = Server::start(off).await.expect("server without discovery");
    let enode = off.enode().unwrap();
    assert_eq!(enode.udp_port, enode.tcp_port);
    assert!(off.discv4_stats().is_none());
    off.shutdown().await;
}
