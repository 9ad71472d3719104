//! Discovery wired into the server: nodes on distinct loopback addresses, one bootnode,
//! grow into one connected network within the peer limits.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use p2p::discover::v4::Bootnode;
use p2p::node::NodeId;
use p2p::protocol::Protocol;
use p2p::server::{Discovery, PeerEvent, Server, ServerConfig};
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

/// Whether the peer graph (edges from every node's peer list) reaches every node.
fn connected(graph: &HashMap<NodeId, Vec<NodeId>>) -> bool {
    let Some(start) = graph.keys().next() else {
        return true;
    };
    let mut seen = HashSet::from([*start]);
    let mut queue = VecDeque::from([*start]);
    while let Some(n) = queue.pop_front() {
        for m in graph.get(&n).into_iter().flatten() {
            if seen.insert(*m) {
                queue.push_back(*m);
            }
        }
    }
    seen.len() == graph.len()
}

fn graph(servers: &[Server]) -> HashMap<NodeId, Vec<NodeId>> {
    let mut g: HashMap<NodeId, Vec<NodeId>> = servers.iter().map(|s| (s.id(), vec![])).collect();
    for s in servers {
        for p in s.peers() {
            g.entry(s.id()).or_default().push(p.id());
            g.entry(p.id()).or_default().push(s.id());
        }
    }
    g
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
        let g = graph(&servers);
        if servers.iter().all(|s| !s.peers().is_empty()) && connected(&g) {
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
