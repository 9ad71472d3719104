//! Discovery v5 wired into the server: nodes on distinct loopback addresses grow from one
//! bootnode record into one connected network; and with `Discovery::Both` a node bridges
//! discv4-only and discv5-only nodes into one network.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use p2p::discover::Bootnode;
use p2p::node::NodeId;
use p2p::protocol::Protocol;
use p2p::server::{Discovery, PeerEvent, Server, ServerConfig};
use p2p::testkit::{is_connected, peer_graph};
use secp256k1::SecretKey;

/// Two outbound slots each (one in three), as in the discv4 mesh test.
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

/// A node on 127.0.`net`.`n`, listening on an OS-chosen TCP port.
fn config(net: u8, n: u8, discovery: Discovery, bootnodes: Vec<Bootnode>) -> ServerConfig {
    let key = SecretKey::new(&mut rand::thread_rng());
    let addr = format!("127.0.{net}.{n}:0").parse().unwrap();
    let mut cfg = ServerConfig::new(key, Some(addr));
    cfg.protocols.push(echo());
    cfg.max_peers = MAX_PEERS;
    cfg.discovery = discovery;
    cfg.bootnodes = bootnodes;
    cfg.dial_only_shared_caps = true;
    cfg
}

/// Waits until every node has a peer and the peer graph is connected, checking the peer
/// limit all along; returns how long it took.
async fn wait_for_network(servers: &[Server]) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < DEADLINE {
        for s in servers {
            assert!(s.peers().len() <= MAX_PEERS, "a node exceeds max peers");
        }
        if servers.iter().all(|s| !s.peers().is_empty()) && is_connected(&peer_graph(servers)) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// On failure: what each node discovered and which dials failed, to tell a discovery
/// problem from a dialing one.
fn report_events(all: &mut [tokio::sync::broadcast::Receiver<PeerEvent>]) {
    for (i, rx) in all.iter_mut().enumerate() {
        let (mut found, mut failed) = (0, Vec::new());
        while let Ok(ev) = rx.try_recv() {
            match ev {
                PeerEvent::Discovered { .. } => found += 1,
                PeerEvent::DialFailed { reason, .. } => failed.push(reason),
                _ => {}
            }
        }
        eprintln!("node {i}: discovered {found}, failed dials {failed:?}");
    }
}

fn peer_counts(servers: &[Server]) -> Vec<usize> {
    servers.iter().map(|s| s.peers().len()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discv5_nodes_from_one_bootnode_record_form_a_connected_network() {
    const NODES: u8 = 8;
    let boot = Server::start(config(6, 1, Discovery::V5, vec![]))
        .await
        .expect("bootnode");
    let record = boot.node_record().expect("the bootnode's record");
    // The record names discv5's socket, which defaults to the TCP port when v5 runs alone.
    let tcp = boot.local_addr().unwrap();
    assert_eq!(record.udp_addr(), Some(tcp));
    assert_eq!(record.tcp_addr(), Some(tcp));
    assert!(boot.discv4_record().is_none());
    let mut events = boot.subscribe();
    let mut all_events = vec![boot.subscribe()];
    let mut servers = vec![boot];
    for n in 2..=NODES {
        let cfg = config(6, n, Discovery::V5, vec![Bootnode::Record(record.clone())]);
        let s = Server::start(cfg).await.expect("server");
        all_events.push(s.subscribe());
        servers.push(s);
    }
    let meshed = wait_for_network(&servers).await;
    if meshed.is_none() {
        report_events(&mut all_events);
    }
    let mut discovered = HashSet::new();
    while let Ok(ev) = events.try_recv() {
        if let PeerEvent::Discovered { id, .. } = ev {
            assert!(discovered.insert(id), "a node was reported twice");
        }
    }
    let counts = peer_counts(&servers);
    eprintln!(
        "discv5: {NODES} nodes connected after {meshed:?}; peers per node {counts:?}; \
         bootnode discovered {}",
        discovered.len()
    );
    assert!(meshed.is_some(), "no connected network in time: {counts:?}");
    assert!(
        !discovered.is_empty(),
        "the bootnode reported no discovered node"
    );
    for s in &servers {
        s.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_running_both_bridges_discv4_and_discv5_nodes() {
    let boot = Server::start(config(7, 1, Discovery::Both, vec![]))
        .await
        .expect("bootnode");
    let tcp = boot.local_addr().unwrap();
    let v5_record = boot.node_record().expect("discv5 record");
    let v4_record = boot.discv4_record().expect("discv4 record");
    // Two sockets: discv4 on the TCP port, discv5 one above; one key, one TCP address.
    assert_eq!(v4_record.udp_addr().map(|a| a.port()), Some(tcp.port()));
    assert_eq!(v5_record.udp_addr().map(|a| a.port()), Some(tcp.port() + 1));
    assert_eq!(v4_record.node_id().unwrap(), v5_record.node_id().unwrap());
    assert_eq!(v4_record.tcp_addr(), v5_record.tcp_addr());
    assert_eq!(
        v4_record.capabilities().unwrap(),
        v5_record.capabilities().unwrap()
    );

    let v4_boot = vec![Bootnode::Enode(boot.enode().unwrap())];
    let v5_boot = vec![Bootnode::Record(v5_record)];
    let mut all_events = vec![boot.subscribe()];
    let mut servers = vec![boot];
    let mut v4_only = Vec::new();
    let mut v5_only = Vec::new();
    for n in 2..=4 {
        let s = Server::start(config(7, n, Discovery::V4, v4_boot.clone()))
            .await
            .expect("v4 node");
        v4_only.push(s.id());
        all_events.push(s.subscribe());
        servers.push(s);
    }
    for n in 5..=7 {
        let s = Server::start(config(7, n, Discovery::V5, v5_boot.clone()))
            .await
            .expect("v5 node");
        v5_only.push(s.id());
        all_events.push(s.subscribe());
        servers.push(s);
    }
    let meshed = wait_for_network(&servers).await;
    if meshed.is_none() {
        report_events(&mut all_events);
    }
    let counts = peer_counts(&servers);
    eprintln!("v4 + v5 + both: connected after {meshed:?}; peers per node {counts:?}");
    assert!(meshed.is_some(), "no connected network in time: {counts:?}");
    // The bridge has peers from both sides.
    let bridge: Vec<NodeId> = servers[0].peers().iter().map(|p| p.id()).collect();
    assert!(
        bridge.iter().any(|id| v4_only.contains(id)),
        "no discv4 peer"
    );
    assert!(
        bridge.iter().any(|id| v5_only.contains(id)),
        "no discv5 peer"
    );
    for s in &servers {
        s.shutdown().await;
    }
}
