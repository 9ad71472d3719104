//! Turmoil's faults against braid's static peers: a partition that heals, a node that
//! crashes and restarts, and the same run replayed from its seed.

use std::time::Duration;

use braid_sim::chat::chat;
use braid_sim::{assert_replayed, digest, Entry, Event, Net, NetConfig, Shared, Wiring};
use p2p::server::ServerConfig;

const NODES: usize = 16;

/// Timers short enough that a dead link is noticed within seconds: pings every 2 s, a
/// pong due within 2 s, static redials backing off from 0.5 s to at most 4 s, and an
/// address allowed to connect again 3 s after its last inbound connection (30 s by
/// default, which would hold a restarted node's redials off for half a minute).
fn quick_timers(c: &mut ServerConfig) {
    c.inbound_throttle = Duration::from_secs(3);
    c.peer.ping_interval = Duration::from_secs(2);
    c.peer.pong_timeout = Duration::from_secs(2);
    c.peer.read_timeout = Duration::from_secs(6);
    c.dial_timeout = Duration::from_secs(2);
    c.static_backoff_min = Duration::from_millis(500);
    c.static_backoff_max = Duration::from_secs(4);
}

fn network(seed: u64) -> Net {
    let mut cfg = NetConfig::new(seed, NODES);
    cfg.wiring = Wiring::Random(2);
    cfg.tune = quick_timers;
    cfg.limit = Duration::from_secs(180);
    let mut net = Net::new(&cfg, chat());
    net.run_until(
        "every static link up",
        Duration::from_secs(10),
        Shared::statics_linked,
    )
    .unwrap();
    net
}

/// Every static link, as (dialer, listener).
fn static_links(s: &Shared) -> Vec<(usize, usize)> {
    (0..s.len())
        .flat_map(|i| s.statics(i).iter().map(move |&j| (i, j)))
        .collect()
}

fn linked(s: &Shared, (i, j): (usize, usize)) -> bool {
    s.node(i).peers.contains(&j) && s.node(j).peers.contains(&i)
}

/// Say a line at `from` and check it reaches every other node exactly once.
fn flood(net: &mut Net, from: usize, text: &str) {
    assert!(net.say(from, text) > 0, "n{from} has peers");
    let heard = |s: &Shared, i: usize| s.node(i).delivered.iter().filter(|l| *l == text).count();
    net.run_until(text, Duration::from_secs(5), |s| {
        (0..s.len()).filter(|&i| i != from).all(|i| heard(s, i) > 0)
    })
    .unwrap();
    net.run_for(Duration::from_secs(1)).unwrap();
    for i in 0..NODES {
        assert_eq!(
            heard(net.shared(), i),
            usize::from(i != from),
            "n{i}: {text}"
        );
    }
}

/// Split the network in two halves until every link across has dropped and the static
/// redials across have failed for a while, then heal it; returns the time the static
/// links took to come back.
fn partition_and_heal(net: &mut Net) -> Duration {
    let a: Vec<usize> = (0..NODES / 2).collect();
    let b: Vec<usize> = (NODES / 2..NODES).collect();
    let links = static_links(net.shared());
    let across: Vec<_> = links
        .iter()
        .copied()
        .filter(|&(i, j)| (i < NODES / 2) != (j < NODES / 2))
        .collect();
    assert!(!across.is_empty(), "the wiring crosses the cut");
    net.partition(&a, &b);
    let cut = |s: &Shared| {
        (0..s.len()).all(|i| {
            let mine = i < NODES / 2;
            s.node(i).peers.iter().all(|&j| (j < NODES / 2) == mine)
        })
    };
    net.run_until("links across the cut dropped", Duration::from_secs(15), cut)
        .unwrap();
    // Static peers keep redialing across the cut, and fail, with growing backoff.
    net.run_for(Duration::from_secs(10)).unwrap();
    assert!(cut(net.shared()), "nothing crosses a partition");
    for &l in links.iter().filter(|l| !across.contains(l)) {
        assert!(linked(net.shared(), l), "{l:?} stays up on its own side");
    }
    net.repair(&a, &b);
    net.run_until(
        "static links across the cut back",
        Duration::from_secs(15),
        Shared::statics_linked,
    )
    .unwrap()
}

/// Crash `victim`'s host until its peers have noticed, restart it, and wait until every
/// static link (its own and those toward it) is back; returns how long that took.
fn crash_and_restart(net: &mut Net, victim: usize) -> Duration {
    let neighbours: Vec<usize> = net.shared().node(victim).peers.iter().copied().collect();
    assert!(!neighbours.is_empty());
    net.crash(victim);
    net.run_until(
        "neighbours notice the crash",
        Duration::from_secs(10),
        |s| {
            neighbours
                .iter()
                .all(|&n| !s.node(n).peers.contains(&victim))
        },
    )
    .unwrap();
    net.run_for(Duration::from_secs(5)).unwrap();
    assert!(!net.shared().node(victim).up);
    net.restart(victim);
    let back = net
        .run_until(
            "the restarted node rejoins",
            Duration::from_secs(15),
            Shared::statics_linked,
        )
        .unwrap();
    assert_eq!(net.shared().node(victim).starts, 2);
    back
}

#[test]
fn a_partition_heals_and_static_peers_reconnect() {
    let mut net = network(11);
    let healed = partition_and_heal(&mut net);
    flood(&mut net, 0, "after the partition");
    flood(&mut net, NODES - 1, "and back");
    let trace = net.shared().trace();
    let dropped = trace
        .iter()
        .filter(|e| matches!(e.event, Event::PeerDropped { .. }))
        .count();
    assert!(dropped > 0);
    eprintln!(
        "sim: partition of {NODES} nodes healed {healed:?} after repair; {dropped} peer drops; \
         {:?} simulated in {:.2?} wall ({:.1} sim-s/wall-s)",
        net.elapsed(),
        net.wall(),
        net.speed()
    );
}

#[test]
fn a_crashed_node_restarts_and_rejoins() {
    let mut net = network(12);
    // A node that dials earlier nodes and is likely dialed by later ones.
    let victim = NODES / 2;
    let back = crash_and_restart(&mut net, victim);
    flood(&mut net, victim, "back from the dead");
    flood(&mut net, 0, "welcome back");
    eprintln!(
        "sim: n{victim} crashed and restarted, every static link up {back:?} after restart; \
         {:?} simulated in {:.2?} wall ({:.1} sim-s/wall-s)",
        net.elapsed(),
        net.wall(),
        net.speed()
    );
}

/// Partition, heal, crash, restart and flood: the trace of everything the nodes saw.
fn churn(seed: u64) -> Vec<Entry> {
    let mut net = network(seed);
    partition_and_heal(&mut net);
    crash_and_restart(&mut net, 3);
    flood(&mut net, 3, "replayed");
    net.shared().trace()
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let first = churn(21);
    let second = churn(21);
    assert_replayed(&first, &second);
    let other = churn(22);
    assert_ne!(digest(&first), digest(&other), "another seed, another run");
    eprintln!(
        "sim: churn trace of {} entries replayed exactly (digest {:016x}); seed 22 gives {:016x}",
        first.len(),
        digest(&first),
        digest(&other)
    );
}
