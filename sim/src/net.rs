//! A network of braid nodes on one turmoil simulation.
//!
//! Nodes live on turmoil hosts: node `i` runs on host `h{i % hosts}` and listens on port
//! [`PORT`]` + i / hosts` at that host's simulated address, with a key drawn from the
//! seed. One node per host is the natural shape; several per host is what makes a
//! thousand nodes affordable, because turmoil 0.7 keeps a link for every pair of hosts
//! and scans all of them for every host on every tick (its cost per tick grows with the
//! cube of the host count). Nodes on one host share its address, its clock and its fate
//! (a crash takes them all); static wiring never links two nodes of one host, so every link
//! crosses the simulated network and has its latency (discovery may link them).
//!
//! The graph is wired with static peers ([`Wiring`]): node `i` keeps links to `k`
//! distinct earlier nodes (on other hosts) chosen by the seeded RNG, or to node `i - 1`,
//! so every node has a path to node 0 and the graph is connected. Or it is not wired at
//! all: every node runs discovery v4 over simulated UDP with node 0 as its bootnode and
//! dials what it finds. Each node records its peer events (and whatever its protocols
//! report) into one shared [`trace`](crate::trace).
//!
//! The test drives the simulation from outside, one tick at a time, and may crash,
//! restart and partition hosts between ticks. turmoil's own duration limit bounds every
//! run: a watchdog client that never finishes makes a step past the limit fail.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, UNIX_EPOCH};

use p2p::discover::Bootnode;
use p2p::node::{Enode, NodeId};
use p2p::peer::Direction;
use p2p::protocol::Protocol;
use p2p::server::{Discovery, PeerEvent, Server, ServerConfig};
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use secp256k1::SecretKey;
use tokio::sync::broadcast::error::RecvError;

use crate::trace::{Entry, Event};
use crate::transport::SimTransport;

/// The TCP port of the first node on each host; the next node on a host takes the next
/// port.
pub const PORT: u16 = 30303;

/// The shape and physics of a simulated network.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Seeds node keys, the wiring and turmoil's RNG (latencies).
    pub seed: u64,
    /// How many braid nodes.
    pub nodes: usize,
    /// How many turmoil hosts they run on (node `i` on host `i % hosts`).
    pub hosts: usize,
    /// How nodes are linked by static peers.
    pub wiring: Wiring,
    /// Shortest one-way latency between two hosts (each pair of hosts has its own,
    /// drawn from the seed between the two bounds).
    pub min_latency: Duration,
    /// Longest one-way latency between two hosts.
    pub max_latency: Duration,
    /// Simulated time per step.
    pub tick: Duration,
    /// turmoil's duration limit: a step past it fails the run.
    pub limit: Duration,
    /// Adjusts every node's server configuration (timers, limits) after the defaults.
    pub tune: fn(&mut ServerConfig),
}

/// How the nodes are linked: static links to some earlier nodes (the graph is connected
/// either way), or whatever discovery finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wiring {
    /// Up to this many distinct earlier nodes on other hosts, chosen by the seeded RNG.
    Random(usize),
    /// Node `i` to node `i - 1` (one node per host): a line.
    Chain,
    /// No static links: every node runs discovery v4 with node 0 as its bootnode and
    /// fills its outbound slots with the nodes it discovers (on any host, its own
    /// included), under no per-subnet cap (turmoil's addresses share a few /24s).
    Discovery,
}

impl NetConfig {
    /// `nodes` nodes from `seed`, one per host, three random static peers each, 5–50 ms
    /// latency, 1 ms ticks, at most 10 simulated minutes, default server settings.
    pub fn new(seed: u64, nodes: usize) -> NetConfig {
        NetConfig {
            seed,
            nodes,
            hosts: nodes,
            wiring: Wiring::Random(3),
            min_latency: Duration::from_millis(5),
            max_latency: Duration::from_millis(50),
            tick: Duration::from_millis(1),
            limit: Duration::from_secs(600),
            tune: |_| {},
        }
    }
}

/// The protocols a node runs, built afresh at every start (a restart gets new ones).
pub type Protocols = Arc<dyn Fn(&NodeCtx) -> Vec<Protocol> + Send + Sync>;

/// What one node's software knows: its index and the shared record.
#[derive(Clone)]
pub struct NodeCtx {
    /// The node's index.
    pub index: usize,
    /// State shared by every node and the test.
    pub shared: Arc<Shared>,
}

impl NodeCtx {
    /// Record an event of this node at the current simulated time.
    pub fn record(&self, event: Event) {
        self.shared.record(self.index, event);
    }

    /// This node's state.
    pub fn state(&self) -> MutexGuard<'_, NodeState> {
        self.shared.node(self.index)
    }
}

/// What the record knows about one node.
#[derive(Default)]
pub struct NodeState {
    /// Whether its software is running.
    pub up: bool,
    /// How many times its server started.
    pub starts: u32,
    /// Peers connected now, by index.
    pub peers: BTreeSet<usize>,
    /// Those of them it dialed.
    pub outbound: BTreeSet<usize>,
    /// How many peers its server dials at most (its outbound slots).
    pub outbound_slots: usize,
    /// What was delivered to it, in order.
    pub delivered: Vec<String>,
    /// The chat room of its current run, when it runs chat.
    pub chat: Option<protocols::chat::ChatRoom>,
}

/// Keys, wiring and the trace, shared by the nodes and the test.
pub struct Shared {
    hosts: usize,
    wiring: Wiring,
    transport: SimTransport,
    tune: fn(&mut ServerConfig),
    keys: Vec<SecretKey>,
    ids: Vec<NodeId>,
    index_of: HashMap<NodeId, usize>,
    statics: Vec<Vec<usize>>,
    trace: Mutex<Vec<Entry>>,
    nodes: Vec<Mutex<NodeState>>,
}

impl Shared {
    fn new(cfg: &NetConfig) -> Shared {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let keys: Vec<SecretKey> = (0..cfg.nodes).map(|_| SecretKey::new(&mut rng)).collect();
        let ids: Vec<NodeId> = keys.iter().map(NodeId::from_secret).collect();
        let index_of = ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        let hosts = cfg.hosts.clamp(1, cfg.nodes.max(1));
        let statics = (0..cfg.nodes)
            .map(|i| match cfg.wiring {
                Wiring::Discovery => Vec::new(),
                Wiring::Chain => i.checked_sub(1).into_iter().collect(),
                Wiring::Random(k) => {
                    let others: Vec<usize> = (0..i).filter(|j| j % hosts != i % hosts).collect();
                    let mut picked: Vec<usize> =
                        sample(&mut rng, others.len(), k.min(others.len()))
                            .into_iter()
                            .map(|x| others[x])
                            .collect();
                    picked.sort_unstable();
                    picked
                }
            })
            .collect();
        Shared {
            hosts,
            wiring: cfg.wiring,
            transport: SimTransport::default(),
            tune: cfg.tune,
            keys,
            ids,
            index_of,
            statics,
            trace: Mutex::new(Vec::new()),
            nodes: (0..cfg.nodes).map(|_| Mutex::default()).collect(),
        }
    }

    /// How many nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s id.
    pub fn id(&self, i: usize) -> NodeId {
        self.ids[i]
    }

    /// The index of the node with this id.
    pub fn index(&self, id: &NodeId) -> Option<usize> {
        self.index_of.get(id).copied()
    }

    /// The datagrams every node has sent so far (discovery's).
    pub fn datagrams(&self) -> &crate::transport::Datagrams {
        self.transport.datagrams()
    }

    /// The earlier nodes node `i` keeps static links to.
    pub fn statics(&self, i: usize) -> &[usize] {
        &self.statics[i]
    }

    /// Node `i`'s state.
    pub fn node(&self, i: usize) -> MutexGuard<'_, NodeState> {
        self.nodes[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node at this address, when it is the only node on its host's address.
    pub fn node_at(&self, ip: std::net::IpAddr) -> Option<usize> {
        if self.hosts != self.len() {
            return None;
        }
        let name = turmoil::reverse_lookup(ip)?;
        name.strip_prefix('h')?.parse().ok()
    }

    /// The host node `i` runs on.
    pub fn host_of(&self, i: usize) -> usize {
        i % self.hosts
    }

    /// The nodes on host `h`.
    pub fn nodes_on(&self, h: usize) -> impl Iterator<Item = usize> {
        (h..self.len()).step_by(self.hosts)
    }

    /// Node `i`'s listen address (call inside the simulation).
    pub fn addr(&self, i: usize) -> SocketAddr {
        let port = PORT + u16::try_from(i / self.hosts).expect("too many nodes per host");
        SocketAddr::new(turmoil::lookup(host(self.host_of(i))), port)
    }

    /// Node `i`'s enode on the simulated network (call inside the simulation).
    pub fn enode(&self, i: usize) -> Enode {
        Enode::new(self.ids[i], self.addr(i))
    }

    /// Record an event of node `i` at the current simulated time (inside a host), or at
    /// zero outside one.
    pub fn record(&self, i: usize, event: Event) {
        let at = turmoil::sim_elapsed().unwrap_or_default();
        self.record_at(at, i, event);
    }

    fn record_at(&self, at: Duration, i: usize, event: Event) {
        {
            let mut node = self.node(i);
            match &event {
                Event::Started => {
                    node.up = true;
                    node.starts += 1;
                }
                Event::Crashed => {
                    node.up = false;
                    node.peers.clear();
                    node.outbound.clear();
                    node.chat = None;
                }
                Event::PeerAdded { peer, inbound } => {
                    node.peers.insert(*peer);
                    if !inbound {
                        node.outbound.insert(*peer);
                    }
                }
                Event::PeerDropped { peer, .. } => {
                    node.peers.remove(peer);
                    node.outbound.remove(peer);
                }
                Event::Delivered { what, .. } => node.delivered.push(what.clone()),
                Event::Lagged(_) => {}
            }
        }
        self.trace
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Entry { at, node: i, event });
    }

    /// The trace so far.
    pub fn trace(&self) -> Vec<Entry> {
        self.trace.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many nodes are running and have at least one peer.
    pub fn nodes_with_peers(&self) -> usize {
        (0..self.len())
            .filter(|&i| {
                let n = self.node(i);
                n.up && !n.peers.is_empty()
            })
            .count()
    }

    /// Whether every node is up with each of its outbound slots filled.
    pub fn outbound_full(&self) -> bool {
        (0..self.len()).all(|i| {
            let n = self.node(i);
            n.up && n.outbound.len() >= n.outbound_slots
        })
    }

    /// Whether every node is up and each static link is up at both ends.
    pub fn statics_linked(&self) -> bool {
        (0..self.len()).all(|i| {
            self.statics[i].iter().all(|&j| {
                let (a, b) = (self.node(i), self.node(j));
                a.up && b.up && a.peers.contains(&j) && b.peers.contains(&i)
            })
        })
    }
}

/// The turmoil name of host `h`.
pub fn host(h: usize) -> String {
    format!("h{h}")
}

/// A simulated network of braid nodes, stepped by the test.
pub struct Net {
    sim: turmoil::Sim<'static>,
    shared: Arc<Shared>,
    wall: Duration,
}

impl Net {
    /// Build the simulation: `cfg.nodes` hosts, each running a braid server with the
    /// protocols `protocols` gives it. Nothing runs until the first step.
    pub fn new(cfg: &NetConfig, protocols: Protocols) -> Net {
        let shared = Arc::new(Shared::new(cfg));
        let mut sim = turmoil::Builder::new()
            .rng_seed(cfg.seed)
            .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
            .tick_duration(cfg.tick)
            .simulation_duration(cfg.limit)
            .min_message_latency(cfg.min_latency)
            .max_message_latency(cfg.max_latency)
            .build();
        for h in 0..shared.hosts {
            let shared = shared.clone();
            let protocols = protocols.clone();
            sim.host(host(h), move || {
                run_host(h, shared.clone(), protocols.clone())
            });
        }
        // Each pair of hosts gets a fixed latency drawn from the seed. turmoil would
        // otherwise draw a delay per message from one RNG, in the order messages are sent;
        // a crash drops the host's tasks (and so sends its FINs) in an order tokio does
        // not promise to repeat, and every later delay would shift with it.
        let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x006c_6174_656e_6379);
        let spread = (cfg.max_latency - cfg.min_latency).as_micros() as u64;
        for a in 0..shared.hosts {
            for b in a + 1..shared.hosts {
                let extra = Duration::from_micros(rng.gen_range(0..=spread));
                sim.set_link_latency(host(a), host(b), cfg.min_latency + extra);
            }
        }
        // Never finishes, so that turmoil enforces its duration limit on every step.
        sim.client("watchdog", async {
            std::future::pending::<()>().await;
            Ok(())
        });
        Net {
            sim,
            shared,
            wall: Duration::ZERO,
        }
    }

    /// The shared record.
    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Simulated time so far.
    pub fn elapsed(&self) -> Duration {
        self.sim.elapsed()
    }

    /// Wall-clock time spent stepping so far.
    pub fn wall(&self) -> Duration {
        self.wall
    }

    /// Simulated seconds per wall-clock second so far.
    pub fn speed(&self) -> f64 {
        self.elapsed().as_secs_f64() / self.wall.as_secs_f64().max(1e-9)
    }

    /// One tick.
    pub fn step(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let r = self.sim.step();
        self.wall += started.elapsed();
        r.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Step for `d` of simulated time.
    pub fn run_for(&mut self, d: Duration) -> Result<(), String> {
        let until = self.elapsed() + d;
        while self.elapsed() < until {
            self.step()?;
        }
        Ok(())
    }

    /// Step until `done` holds (checked after every tick), at most `within` of simulated
    /// time; returns the simulated time it took.
    pub fn run_until(
        &mut self,
        what: &str,
        within: Duration,
        mut done: impl FnMut(&Shared) -> bool,
    ) -> Result<Duration, String> {
        let start = self.elapsed();
        loop {
            if done(&self.shared) {
                return Ok(self.elapsed() - start);
            }
            if self.elapsed() - start > within {
                return Err(format!("{what}: not within {within:?} of simulated time"));
            }
            self.step().map_err(|e| format!("{what}: {e}"))?;
        }
    }

    /// Crash node `i`'s host: the software and sockets of every node on it vanish at
    /// once.
    pub fn crash(&mut self, i: usize) {
        let h = self.shared.host_of(i);
        self.sim.crash(host(h));
        let at = self.elapsed();
        for n in self.shared.nodes_on(h) {
            self.shared.record_at(at, n, Event::Crashed);
        }
    }

    /// Restart the software of node `i`'s host (same keys, same static peers).
    pub fn restart(&mut self, i: usize) {
        self.sim.bounce(host(self.shared.host_of(i)));
    }

    /// Drop every message between the hosts of the nodes in `a` and those in `b`.
    pub fn partition(&mut self, a: &[usize], b: &[usize]) {
        for (x, y) in self.host_pairs(a, b) {
            self.sim.partition(host(x), host(y));
        }
    }

    /// Undo [`Net::partition`].
    pub fn repair(&mut self, a: &[usize], b: &[usize]) {
        for (x, y) in self.host_pairs(a, b) {
            self.sim.repair(host(x), host(y));
        }
    }

    fn host_pairs(&self, a: &[usize], b: &[usize]) -> Vec<(usize, usize)> {
        let hosts = |nodes: &[usize]| -> BTreeSet<usize> {
            nodes.iter().map(|&i| self.shared.host_of(i)).collect()
        };
        let (a, b) = (hosts(a), hosts(b));
        assert!(
            a.is_disjoint(&b),
            "a partition splits hosts, not nodes of one host"
        );
        a.iter()
            .flat_map(|&x| b.iter().map(move |&y| (x, y)))
            .collect()
    }

    /// Say `text` in node `i`'s chat room; how many peers it was queued for.
    pub fn say(&self, i: usize, text: &str) -> usize {
        let room = self.shared.node(i).chat.clone();
        room.map_or(0, |r| r.say(text))
    }
}

/// One host's software: its nodes, each on its own task; fails when one of them fails.
async fn run_host(h: usize, shared: Arc<Shared>, protocols: Protocols) -> turmoil::Result {
    let mut nodes = tokio::task::JoinSet::new();
    for index in shared.nodes_on(h) {
        let ctx = NodeCtx {
            index,
            shared: shared.clone(),
        };
        nodes.spawn_local(run_node(ctx, protocols.clone()));
    }
    while let Some(done) = nodes.join_next().await {
        done.map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One node's software: a braid server on the simulated network, its peer events
/// recorded until the host is crashed.
async fn run_node(ctx: NodeCtx, protocols: Protocols) -> Result<(), String> {
    let i = ctx.index;
    let shared = ctx.shared.clone();
    let mut cfg = ServerConfig::new(shared.keys[i], Some(shared.addr(i)));
    cfg.client_id = "braid-sim".into();
    // turmoil gives every host an address in 192.168.0.0/16, so a thousand nodes share
    // a few /24s, and the nodes of one host share its address: the per-subnet inbound cap
    // and the per-address inbound throttle would turn honest nodes away.
    cfg.max_inbound_per_subnet = 0;
    if shared.hosts < shared.len() {
        cfg.inbound_throttle = Duration::ZERO;
    }
    cfg.static_peers = shared.statics[i].iter().map(|&j| shared.enode(j)).collect();
    if shared.wiring == Wiring::Discovery {
        cfg.discovery = Discovery::V4;
        cfg.max_dialed_per_subnet = 0;
        if i != 0 {
            cfg.bootnodes = vec![Bootnode::Enode(shared.enode(0))];
        }
    }
    (shared.tune)(&mut cfg);
    cfg.protocols.extend(protocols(&ctx));
    ctx.state().outbound_slots = cfg.max_dialed();
    let server = Server::start_with_transport(cfg, shared.transport.clone())
        .await
        .map_err(|e| format!("node {i}: {e}"))?;
    let mut events = server.subscribe();
    ctx.record(Event::Started);
    loop {
        let event = match events.recv().await {
            Ok(PeerEvent::Added { id, direction, .. }) => {
                shared.index_of.get(&id).map(|&peer| Event::PeerAdded {
                    peer,
                    inbound: direction == Direction::Inbound,
                })
            }
            Ok(PeerEvent::Dropped { id, reason }) => {
                shared.index_of.get(&id).map(|&peer| Event::PeerDropped {
                    peer,
                    reason: format!(
                        "{:?} by {}",
                        reason.reason,
                        if reason.remote { "remote" } else { "us" }
                    ),
                })
            }
            Ok(_) => None,
            Err(RecvError::Lagged(n)) => Some(Event::Lagged(n)),
            Err(RecvError::Closed) => return Ok(()),
        };
        if let Some(event) = event {
            ctx.record(event);
        }
    }
}
