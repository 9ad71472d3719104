//! A thousand braid nodes in one process: every static link comes up, chat lines flood
//! the whole graph and reach every node exactly once, and a second run from the same
//! seed replays the same trace.

use std::time::Duration;

use braid_sim::chat::chat;
use braid_sim::{assert_replayed, digest, Entry, Event, Net, NetConfig, Wiring};

const SEED: u64 = 0xb4a1d;
const NODES: usize = 1000;
/// Twenty nodes per turmoil host: turmoil 0.7's cost per tick grows with the cube of the
/// host count (see `braid_sim::net`); the wiring never links two nodes of one host.
const HOSTS: usize = 50;
/// Who speaks: the last node, the first, one in the middle.
const SPEAKERS: [usize; 3] = [NODES - 1, 0, NODES / 2];

struct Run {
    trace: Vec<Entry>,
}

fn line(speaker: usize) -> String {
    format!("line from n{speaker}")
}

fn run(seed: u64, report: bool) -> Run {
    let mut cfg = NetConfig::new(seed, NODES);
    cfg.hosts = HOSTS;
    cfg.wiring = Wiring::Random(3);
    cfg.limit = Duration::from_secs(60);
    let rss_before = braid_sim::rss_bytes();
    let mut net = Net::new(&cfg, chat());
    let linked = net
        .run_until("every static link up", Duration::from_secs(30), |s| {
            s.statics_linked()
        })
        .unwrap();
    let rss_linked = braid_sim::rss_bytes();
    let (connect_wall, connect_sim) = (net.wall(), net.elapsed());
    let links: usize = (0..NODES)
        .map(|i| net.shared().node(i).peers.len())
        .sum::<usize>()
        / 2;
    let statics: usize = (0..NODES).map(|i| net.shared().statics(i).len()).sum();
    assert_eq!(links, statics, "exactly the static links, each once");

    for s in SPEAKERS {
        assert!(net.say(s, &line(s)) > 0, "n{s} has peers in the room");
    }
    let everyone_heard = |s: &braid_sim::Shared| {
        (0..NODES).all(|i| {
            let expected = SPEAKERS.iter().filter(|&&s| s != i).count();
            s.node(i).delivered.len() >= expected
        })
    };
    let flooded = net
        .run_until(
            "every line at every node",
            Duration::from_secs(10),
            everyone_heard,
        )
        .unwrap();
    // Anything a node would get twice arrives within a few more round trips.
    net.run_for(Duration::from_secs(2)).unwrap();
    for i in 0..NODES {
        let node = net.shared().node(i);
        for s in SPEAKERS {
            let got = node.delivered.iter().filter(|l| **l == line(s)).count();
            let want = usize::from(s != i);
            assert_eq!(got, want, "n{i} got the line of n{s} {got} times");
        }
    }
    let trace = net.shared().trace();
    assert!(!trace.iter().any(|e| matches!(e.event, Event::Lagged(_))));
    let added = trace
        .iter()
        .filter(|e| matches!(e.event, Event::PeerAdded { .. }))
        .count();
    assert_eq!(added, 2 * links, "each link added once at each end");
    if report {
        let per_node = match (rss_before, rss_linked) {
            (Some(a), Some(b)) => format!(
                "{:.0} KiB",
                b.saturating_sub(a) as f64 / 1024.0 / NODES as f64
            ),
            _ => "unknown".into(),
        };
        eprintln!(
            "sim: {NODES} nodes on {HOSTS} hosts, {links} links: linked after {linked:?} simulated \
             ({connect_wall:.2?} wall, {:.3} sim-s/wall-s while handshaking); lines everywhere after \
             {flooded:?}; whole run {:?} simulated in {:.2?} wall ({:.3} sim-s/wall-s); memory per \
             node (RSS delta / nodes, once linked) {per_node}; trace {} entries, digest {:016x}",
            connect_sim.as_secs_f64() / connect_wall.as_secs_f64(),
            net.elapsed(),
            net.wall(),
            net.speed(),
            trace.len(),
            digest(&trace),
        );
    }
    Run { trace }
}

#[test]
fn chat_floods_a_thousand_nodes_exactly_once_and_replays_from_its_seed() {
    let first = run(SEED, true);
    let second = run(SEED, false);
    assert_replayed(&first.trace, &second.trace);
}
