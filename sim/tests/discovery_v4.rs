//! Discovery v4 on the simulated network: forty nodes with no static peers and one
//! bootnode find each other over simulated UDP and fill every outbound slot, and a second
//! run from the same seed replays the same trace.

use std::collections::BTreeSet;
use std::time::Duration;

use braid_sim::chat::chat;
use braid_sim::{assert_replayed, digest, Entry, Event, Net, NetConfig, Shared, Wiring};
use p2p::server::ServerConfig;

const SEED: u64 = 0xd15c_0004;
const NODES: usize = 40;
/// Four nodes per turmoil host (see `braid_sim::net` on turmoil's cost per host).
const HOSTS: usize = 10;
/// Eighteen peers, six of them dialed: a node has to discover at least six others.
const MAX_PEERS: usize = 18;
/// Simulated time every node has to fill its outbound slots.
const WITHIN: Duration = Duration::from_secs(60);
/// Wall-clock time a run may take before it counts as hung (a guard, not a speed test:
/// a run takes a few seconds on a loaded 2-core machine).
const WALL_GUARD: Duration = Duration::from_secs(240);

fn tune(c: &mut ServerConfig) {
    c.max_peers = MAX_PEERS;
}

struct Run {
    trace: Vec<Entry>,
    /// Datagrams sent until every outbound slot was filled.
    packets: u64,
}

fn run(seed: u64, report: bool) -> Run {
    let mut cfg = NetConfig::new(seed, NODES);
    cfg.hosts = HOSTS;
    cfg.wiring = Wiring::Discovery;
    cfg.tune = tune;
    cfg.limit = Duration::from_secs(120);
    let mut net = Net::new(&cfg, chat());
    assert!((0..NODES).all(|i| net.shared().statics(i).is_empty()));

    // Step in slices, checking the wall-clock guard between them.
    let mut full = None;
    while net.elapsed() <= WITHIN {
        if net.shared().outbound_full() {
            full = Some(net.elapsed());
            break;
        }
        assert!(
            net.wall() < WALL_GUARD,
            "still filling outbound slots after {:?} of wall time ({:?} simulated)",
            net.wall(),
            net.elapsed()
        );
        net.run_for(Duration::from_millis(100)).unwrap();
    }
    let Some(full) = full else {
        let short: Vec<String> = (0..NODES)
            .filter_map(|i| {
                let n = net.shared().node(i);
                (n.outbound.len() < n.outbound_slots)
                    .then(|| format!("n{i}: {}/{}", n.outbound.len(), n.outbound_slots))
            })
            .collect();
        panic!("outbound slots not filled within {WITHIN:?} simulated: {short:?}");
    };
    let (full_wall, packets, bytes) = (
        net.wall(),
        net.shared().datagrams().sent(),
        net.shared().datagrams().bytes(),
    );

    let s = net.shared();
    assert!(packets > 0, "discovery went over the simulated UDP");
    for i in 0..NODES {
        let n = s.node(i);
        assert_eq!(n.outbound_slots, MAX_PEERS / 3);
        assert!(n.peers.len() <= MAX_PEERS, "n{i} over its peer limit");
        assert!(!n.peers.contains(&i));
    }
    // The nodes found more than the bootnode: most outbound links lead elsewhere.
    let dialed_others: usize = (1..NODES)
        .map(|i| s.node(i).outbound.iter().filter(|&&j| j != 0).count())
        .sum();
    assert!(dialed_others >= (NODES - 1) * (MAX_PEERS / 3 - 1));
    assert!(connected(s), "the discovered graph is connected");
    let trace = s.trace();
    assert!(!trace.iter().any(|e| matches!(e.event, Event::Lagged(_))));
    if report {
        let links: usize = (0..NODES).map(|i| s.node(i).peers.len()).sum::<usize>() / 2;
        eprintln!(
            "sim discv4: {NODES} nodes on {HOSTS} hosts, one bootnode, no static peers: every \
             outbound slot filled after {full:?} simulated ({full_wall:.2?} wall, {:.2} \
             sim-s/wall-s), {links} links; {packets} datagrams ({bytes} bytes) sent, {:.0} \
             per node; trace {} entries, digest {:016x}",
            full.as_secs_f64() / full_wall.as_secs_f64(),
            packets as f64 / NODES as f64,
            trace.len(),
            digest(&trace),
        );
    }
    Run { trace, packets }
}

/// Whether the peer graph reaches every node from node 0.
fn connected(s: &Shared) -> bool {
    let mut seen = BTreeSet::from([0]);
    let mut todo = vec![0];
    while let Some(i) = todo.pop() {
        for &j in &s.node(i).peers {
            if seen.insert(j) {
                todo.push(j);
            }
        }
    }
    seen.len() == s.len()
}

#[test]
fn forty_nodes_fill_their_outbound_slots_by_discovery_and_replay_from_their_seed() {
    let first = run(SEED, true);
    let second = run(SEED, false);
    assert_replayed(&first.trace, &second.trace);
    assert_eq!(first.packets, second.packets, "same datagrams sent");
}
