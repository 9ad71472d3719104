//! 200 braid servers in one process, on 127.0.0.1 … 127.0.0.200, grow into one network from
//! a single bootnode through discovery v4 and the dial scheduler, and a chat line flooded
//! from one node reaches every other.
//!
//! Checked: within [`MESH_DEADLINE`] every node has a peer and the peer graph is connected;
//! at no sample does a node exceed its peer, inbound or outbound limit; most nodes fill
//! their outbound quota; a `chat/1` line said by one node is delivered once to each of the
//! other 199. The summary line (`network_200: …`, shown with `--nocapture`) reports the
//! time to a connected network and to full outbound quotas, and UDP packets per node.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use p2p::discover::v4::Bootnode;
use p2p::node::NodeId;
use p2p::peer::Direction;
use p2p::server::{Discovery, PeerEvent, Server, ServerConfig};
use p2p::testkit::is_connected;
use protocols::chat::{ChatEvent, ChatRoom};
use tokio::sync::mpsc;

const NODES: usize = 200;
/// 12 peers with go-ethereum's dial ratio of 3: 4 outbound slots, 8 inbound.
const MAX_PEERS: usize = 12;
/// Bound on growing from nothing into one connected network.
const MESH_DEADLINE: Duration = Duration::from_secs(90);
/// After the network is connected, how long more nodes get to fill their outbound quota
/// before the flood (the figure is reported, the wait is bounded).
const SETTLE: Duration = Duration::from_secs(10);
/// Bound on a flooded line reaching every node.
const FLOOD_DEADLINE: Duration = Duration::from_secs(20);
const SAMPLE: Duration = Duration::from_millis(200);
/// Descriptors the test needs at most: per node a listener, a UDP socket and up to
/// `MAX_PEERS` connections (each counted at both ends, as both ends live here), plus dials
/// in flight and room to spare.
const FDS_NEEDED: u64 = (NODES * (2 + 2 * MAX_PEERS) + 1024) as u64;

struct Node {
    server: Server,
    room: ChatRoom,
    events: mpsc::Receiver<ChatEvent>,
}

fn addr(i: usize) -> SocketAddr {
    let last = u8::try_from(i + 1).expect("at most 255 nodes");
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)), 0)
}

async fn start(i: usize, bootnodes: Vec<Bootnode>) -> Node {
    let (room, events) = ChatRoom::new(&format!("n{i}"));
    let key = secp256k1::SecretKey::new(&mut rand::thread_rng());
    let mut cfg = ServerConfig {
        protocols: vec![room.protocol()],
        ..ServerConfig::new(key, Some(addr(i)))
    };
    cfg.max_peers = MAX_PEERS;
    cfg.discovery = Discovery::V4;
    cfg.bootnodes = bootnodes;
    // A UDP port of its own (named in the enode), so a port taken for UDP elsewhere on
    // the machine cannot fail the start.
    cfg.udp_port = Some(0);
    cfg.dial_only_shared_caps = true;
    let server = Server::start(cfg).await.expect("server starts");
    Node {
        server,
        room,
        events,
    }
}

/// Raise the soft descriptor limit to what the test needs (within the hard limit).
fn raise_fd_limit(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by reference.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0;
    assert!(ok, "getrlimit failed");
    if lim.rlim_cur >= want {
        return;
    }
    assert!(
        lim.rlim_max >= want,
        "the test needs {want} file descriptors; the hard limit is {}",
        lim.rlim_max
    );
    lim.rlim_cur = want;
    // SAFETY: as above.
    let ok = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0;
    assert!(ok, "setrlimit to {want} failed");
}

/// Undirected graph over every node, with an edge for each pair `edges` names.
fn graph(nodes: &[Node], edges: impl Fn(&Node) -> Vec<NodeId>) -> HashMap<NodeId, HashSet<NodeId>> {
    let mut g: HashMap<NodeId, HashSet<NodeId>> = nodes
        .iter()
        .map(|n| (n.server.id(), HashSet::new()))
        .collect();
    for n in nodes {
        for p in edges(n) {
            g.entry(n.server.id()).or_default().insert(p);
            g.entry(p).or_default().insert(n.server.id());
        }
    }
    g
}

/// One sample of every node's peers: (inbound, outbound) per node. Panics if a node is
/// over a limit.
fn sample(nodes: &[Node], max_dialed: usize, max_inbound: usize) -> Vec<(usize, usize)> {
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let peers = n.server.peers();
            let outbound = peers
                .iter()
                .filter(|p| p.direction() == Direction::Outbound)
                .count();
            let inbound = peers.len() - outbound;
            assert!(
                peers.len() <= MAX_PEERS && outbound <= max_dialed && inbound <= max_inbound,
                "node {i} over its limits: {inbound} inbound, {outbound} outbound"
            );
            (inbound, outbound)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_nodes_from_one_bootnode_form_one_network_and_flood_a_line() {
    raise_fd_limit(FDS_NEEDED);
    let mut limits = ServerConfig::new(secp256k1::SecretKey::new(&mut rand::thread_rng()), None);
    limits.max_peers = MAX_PEERS;
    let (max_dialed, max_inbound) = (limits.max_dialed(), limits.max_inbound());

    let started = Instant::now();
    let boot = start(0, vec![]).await;
    let boot_enode = boot.server.enode().expect("bootnode listens");
    let mut nodes = vec![boot];
    for i in 1..NODES {
        nodes.push(start(i, vec![Bootnode::Enode(boot_enode)]).await);
    }
    let start_time = started.elapsed();

    // Grow: every node has a peer and the graph is connected.
    let peers_of = |n: &Node| -> Vec<NodeId> { n.server.peers().iter().map(|p| p.id()).collect() };
    let mut meshed = None;
    let mut events: Vec<_> = nodes.iter().map(|n| n.server.subscribe()).collect();
    let mut dial_failures: HashMap<String, usize> = HashMap::new();
    while started.elapsed() < MESH_DEADLINE {
        for rx in &mut events {
            while let Ok(ev) = rx.try_recv() {
                if let PeerEvent::DialFailed { reason, .. } = ev {
                    *dial_failures.entry(reason).or_default() += 1;
                }
            }
        }
        let counts = sample(&nodes, max_dialed, max_inbound);
        if counts.iter().all(|(i, o)| i + o > 0) && is_connected(&graph(&nodes, peers_of)) {
            meshed = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(SAMPLE).await;
    }
    let counts = sample(&nodes, max_dialed, max_inbound);
    let lonely = counts.iter().filter(|(i, o)| i + o == 0).count();
    let meshed = meshed.unwrap_or_else(|| {
        panic!("no connected network within {MESH_DEADLINE:?}: {lonely} nodes without a peer")
    });
    let mesh_udp = udp_per_node(&nodes);

    // Settle: most nodes fill their outbound quota (bounded wait; the figure is reported).
    let settle_end = Instant::now() + SETTLE;
    let full_quota =
        |counts: &[(usize, usize)]| counts.iter().filter(|(_, o)| *o == max_dialed).count();
    let mut all_full = None;
    let mut counts = counts;
    while Instant::now() < settle_end {
        counts = sample(&nodes, max_dialed, max_inbound);
        if full_quota(&counts) == NODES {
            all_full = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(SAMPLE).await;
    }
    let full = full_quota(&counts);
    assert!(
        full * 2 >= NODES,
        "only {full} of {NODES} nodes filled their {max_dialed} outbound slots"
    );

    // Flood over chat links that run on both ends (the peer announced its nick), so no
    // line can slip past a link still starting.
    let chat_links = |n: &Node| -> Vec<NodeId> {
        n.room
            .members()
            .into_iter()
            .filter(|(_, nick)| nick.is_some())
            .map(|(id, _)| id)
            .collect()
    };
    let chat_deadline = Instant::now() + FLOOD_DEADLINE;
    while !is_connected(&graph(&nodes, chat_links)) {
        assert!(
            Instant::now() < chat_deadline,
            "the chat links never formed a connected graph"
        );
        tokio::time::sleep(SAMPLE).await;
    }
    for n in &mut nodes {
        while n.events.try_recv().is_ok() {}
    }
    const SPEAKER: usize = NODES / 2 + 37;
    const TEXT: &str = "one line for all two hundred";
    let flood_start = Instant::now();
    assert!(nodes[SPEAKER].room.say(TEXT) > 0, "the speaker has no peer");
    let mut got = vec![0usize; NODES];
    got[SPEAKER] = 1;
    while got.contains(&0) && flood_start.elapsed() < FLOOD_DEADLINE {
        for (i, n) in nodes.iter_mut().enumerate() {
            while let Ok(ev) = n.events.try_recv() {
                if matches!(&ev, ChatEvent::Line { text, .. } if text == TEXT) {
                    got[i] += 1;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let flood_time = flood_start.elapsed();
    let missed: Vec<usize> = (0..NODES).filter(|&i| got[i] == 0).collect();
    assert!(missed.is_empty(), "the line never reached nodes {missed:?}");
    // Duplicates would follow the first copy over slower paths: give them a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (i, n) in nodes.iter_mut().enumerate() {
        while let Ok(ev) = n.events.try_recv() {
            if matches!(&ev, ChatEvent::Line { text, .. } if text == TEXT) {
                got[i] += 1;
            }
        }
    }
    let twice: Vec<usize> = (0..NODES).filter(|&i| got[i] > 1).collect();
    assert!(twice.is_empty(), "nodes {twice:?} delivered the line twice");

    let peers: Vec<usize> = counts.iter().map(|(i, o)| i + o).collect();
    let links = peers.iter().sum::<usize>() / 2;
    let end_udp = udp_per_node(&nodes);
    eprintln!(
        "network_200: {NODES} nodes started in {:.2}s; connected network after {:.2}s; \
         full outbound quota ({max_dialed}) at {full}/{NODES} nodes{}; {links} links, \
         peers per node {}..{}; UDP packets per node sent/received to connect: {}, \
         by the end ({:.1}s): {}; failed dials while connecting: {:?}; line flooded to {} \
         nodes in {} ms",
        start_time.as_secs_f64(),
        meshed.as_secs_f64(),
        all_full.map_or_else(String::new, |t| format!(
            " (all after {:.2}s)",
            t.as_secs_f64()
        )),
        peers.iter().min().unwrap_or(&0),
        peers.iter().max().unwrap_or(&0),
        mesh_udp,
        started.elapsed().as_secs_f64(),
        end_udp,
        dial_failures,
        NODES - 1,
        flood_time.as_millis(),
    );

    let mut stops = tokio::task::JoinSet::new();
    for n in nodes {
        stops.spawn(async move { n.server.shutdown().await });
    }
    let stopped = tokio::time::timeout(Duration::from_secs(30), async {
        while stops.join_next().await.is_some() {}
    })
    .await;
    assert!(stopped.is_ok(), "shutdown of 200 servers took over 30 s");
}

/// Discovery datagrams per node: "sent avg (max) / received avg (max)".
fn udp_per_node(nodes: &[Node]) -> String {
    let stats: Vec<_> = nodes
        .iter()
        .filter_map(|n| n.server.discv4_stats())
        .collect();
    let avg = |f: fn(&p2p::discover::v4::Discv4Stats) -> u64| {
        stats.iter().map(f).sum::<u64>() as f64 / stats.len().max(1) as f64
    };
    let max =
        |f: fn(&p2p::discover::v4::Discv4Stats) -> u64| stats.iter().map(f).max().unwrap_or(0);
    format!(
        "{:.0} ({}) / {:.0} ({})",
        avg(|s| s.sent),
        max(|s| s.sent),
        avg(|s| s.received),
        max(|s| s.received)
    )
}
