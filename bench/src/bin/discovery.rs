//! Discovery v4 benchmark: what one node handles, how long lookups take in a network of
//! 200, and what a table entry costs in memory.
//!
//! `cargo run --release --bin discovery` in `bench/` (add `-- --quick` for a short run,
//! `--runs N` for the median of N load runs, `--nodes N` for the network size).
//!
//! - **Memory per table entry**, measured first in a fresh process: many node tables
//!   (`p2p::discover::v4::table::Table`, the pure Kademlia table) are filled from a pool of
//!   valid node ids; the resident-set growth (VmRSS) divided by the nodes they hold
//!   (entries and replacements) is the measured figure, next to the `size_of`-based
//!   accounting (`size_of::<Entry>()`; the RSS figure adds the vectors' spare capacity and
//!   the allocator's overhead).
//! - **Lookup latency**: `N` discv4 services on 127.0.2.1 …, bootstrapped from the first;
//!   once every table holds 16 nodes (or 30 s passed), the nodes still below that get what
//!   a server's dial loop gives them (the bootnode pinged again, a lookup of their own id);
//!   then lookups of existing node ids from random nodes, one at a time: median and p90,
//!   and how often the target came first.
//! - **Packets handled by one node**: a plain thread with its own UDP socket bonds with
//!   one node of that network (its per-IP rate limit lifted), then keeps a window of
//!   pre-signed requests in flight and counts the answers. `Ping` → one `Pong`;
//!   `FindNode` → the `Neighbors` packets of one answer (16 nodes in two packets). The
//!   node's CPU time per request is the process's CPU time minus the sender thread's, per
//!   answered request (it includes the other nodes' idle upkeep, which is small).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use p2p::discover::v4::packet::{
    self, expiration_at, Endpoint, FindNode, Message, Ping, Pong, HEADER_SIZE, PING_VERSION,
};
use p2p::discover::v4::RateLimit;
use p2p::discover::v4::table::{Entry, Node, Table, TableConfig, BUCKET_SIZE};
use p2p::discover::v4::{Bootnode, Discv4, Discv4Config};
use p2p::node::{NodeId, NodeKey};
use rand::seq::SliceRandom;
use rand::Rng;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Requests the sender keeps unanswered at once.
const WINDOW: usize = 32;
/// Distinct pre-signed requests the sender cycles through.
const DISTINCT_REQUESTS: usize = 256;
/// How long the sender waits for an answer before writing off the window as lost.
const LOSS_TIMEOUT: Duration = Duration::from_millis(50);
/// Table fill the network waits for before measuring lookups.
const FILLED: usize = BUCKET_SIZE;
const FILL_DEADLINE: Duration = Duration::from_secs(30);

struct Plan {
    runs: usize,
    nodes: usize,
    lookups: usize,
    load: Duration,
    tables: usize,
}

fn parse_args() -> Result<Plan, String> {
    let mut quick = false;
    let mut runs = None;
    let mut nodes = None;
    let mut args = std::env::args().skip(1);
    let number = |name: &str, args: &mut std::iter::Skip<std::env::Args>| {
        let n = args.next().ok_or(format!("{name} needs a number"))?;
        n.parse::<usize>()
            .map_err(|_| format!("{name}: not a number: {n}"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--runs" => runs = Some(number("--runs", &mut args)?.clamp(1, 100)),
            "--nodes" => nodes = Some(number("--nodes", &mut args)?.clamp(2, 250)),
            other => {
                return Err(format!(
                    "unknown argument {other} (try --quick, --runs N, --nodes N)"
                ))
            }
        }
    }
    Ok(Plan {
        runs: runs.unwrap_or(if quick { 1 } else { 3 }),
        nodes: nodes.unwrap_or(200),
        lookups: if quick { 50 } else { 200 },
        load: Duration::from_secs(if quick { 2 } else { 5 }),
        tables: if quick { 500 } else { 2000 },
    })
}

fn main() -> ExitCode {
    let plan = match parse_args() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(plan)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

async fn run(plan: Plan) -> Result<(), BoxError> {
    println!(
        "braid discovery v4 benchmark (release build: {}, {} load run(s), {} nodes, load average at start: {})",
        !cfg!(debug_assertions),
        plan.runs,
        plan.nodes,
        load()
    );
    eprintln!("  table memory…");
    let mem = table_memory(plan.tables);
    println!(
        "  memory: {} tables holding {} nodes ({:.1} entries + {:.1} replacements each): \
         RSS +{:.0} KiB",
        plan.tables,
        mem.held,
        mem.entries as f64 / plan.tables as f64,
        (mem.held - mem.entries) as f64 / plan.tables as f64,
        mem.rss_delta_kib
    );

    eprintln!("  starting {} nodes…", plan.nodes);
    let net = Network::start(plan.nodes).await?;
    println!(
        "  network: {} nodes, every table >= {FILLED} after {} (smallest {}, mean {:.0}); \
         UDP datagrams per node until then: sent {:.0}, received {:.0}; {} node(s) below \
         {FILLED} seeded again; then table sizes {}..{}, mean {:.0}",
        plan.nodes,
        net.filled.map_or_else(
            || "never (30 s)".into(),
            |t| format!("{:.1}s", t.as_secs_f64())
        ),
        net.before_help.0,
        net.before_help.1,
        net.sent_per_node,
        net.received_per_node,
        net.helped,
        net.nodes.iter().map(Discv4::table_len).min().unwrap_or(0),
        net.nodes.iter().map(Discv4::table_len).max().unwrap_or(0),
        net.nodes.iter().map(Discv4::table_len).sum::<usize>() as f64 / plan.nodes as f64,
    );

    eprintln!("  {} lookups…", plan.lookups);
    let lookups = net.lookups(plan.lookups).await;
    println!(
        "  lookups: {} of {} found their target first",
        lookups.hits, plan.lookups
    );

    let target = net.nodes[0].local_addr();
    let mut ping_runs = Vec::new();
    let mut find_runs = Vec::new();
    for i in 0..plan.runs {
        eprintln!("  load run {} of {}…", i + 1, plan.runs);
        let duration = plan.load;
        let ping =
            tokio::task::spawn_blocking(move || load_run(target, Kind::Ping, duration)).await??;
        let find = tokio::task::spawn_blocking(move || load_run(target, Kind::FindNode, duration))
            .await??;
        println!(
            "  run {}: ping {:.0}/s ({:.1} µs node CPU each, {} lost), findnode {:.0}/s \
             ({} Neighbors packets each, {:.1} µs each, {} lost)",
            i + 1,
            ping.rate,
            ping.cpu_us,
            ping.lost,
            find.rate,
            find.packets_per_answer,
            find.cpu_us,
            find.lost
        );
        ping_runs.push(ping);
        find_runs.push(find);
    }
    net.shutdown().await;

    let med =
        |runs: &[LoadFigures], f: fn(&LoadFigures) -> f64| median(runs.iter().map(f).collect());
    println!();
    println!("| measurement | result |");
    println!("|---|---|");
    println!(
        "| ping handling, one node: pongs/s (node CPU per ping) | {:.0}/s ({:.1} µs) |",
        med(&ping_runs, |r| r.rate),
        med(&ping_runs, |r| r.cpu_us)
    );
    println!(
        "| findnode handling, one node: answers/s, {} Neighbors packets each (node CPU per answer) | {:.0}/s ({:.1} µs) |",
        find_runs.first().map_or(0, |r| r.packets_per_answer),
        med(&find_runs, |r| r.rate),
        med(&find_runs, |r| r.cpu_us)
    );
    println!(
        "| lookup latency, {}-node loopback network: median / p90 (target found first) | {:.1} / {:.1} ms ({}/{}) |",
        plan.nodes,
        lookups.p50_ms,
        lookups.p90_ms,
        lookups.hits,
        plan.lookups
    );
    println!(
        "| memory per table entry (entries and replacements): RSS growth (size_of::<Entry>()) | {:.0} B ({} B) |",
        mem.rss_per_node,
        std::mem::size_of::<Entry>(),
    );
    println!();
    println!("load average at end: {}", load());
    Ok(())
}

// ----- memory per table entry ---------------------------------------------------------------

struct Memory {
    held: usize,
    entries: usize,
    rss_delta_kib: f64,
    rss_per_node: f64,
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Fill `count` tables from one pool of node ids: RSS growth and `size_of` accounting per
/// node held (entries and replacements).
fn table_memory(count: usize) -> Memory {
    const POOL: usize = 400;
    let mut rng = rand::thread_rng();
    let pool: Vec<Node> = (0..POOL)
        .map(|i| Node {
            id: NodeKey::generate().id(),
            endpoint: Endpoint {
                // Never contacted: the table only stores it.
                ip: IpAddr::V4(Ipv4Addr::new(127, 3, (i / 250) as u8, (i % 250) as u8 + 1)),
                udp_port: 30303,
                tcp_port: 30303,
            },
        })
        .collect();
    let mut tables: Vec<Table> = (0..count)
        .map(|_| {
            let id = NodeId(
                rng.gen::<[u8; 32]>()
                    .repeat(2)
                    .try_into()
                    .expect("64 bytes"),
            );
            Table::new(id, TableConfig::default())
        })
        .collect();
    let before = rss_kib();
    let now = Instant::now();
    for t in &mut tables {
        for n in &pool {
            t.add_verified(*n, now);
        }
    }
    let after = rss_kib();
    let mut held = 0;
    let mut entries = 0;
    for t in &tables {
        entries += t.len();
        held += (1..=256)
            .map(|d| t.bucket(d).len() + t.replacements(d).len())
            .sum::<usize>();
    }
    let rss_delta_kib = after.saturating_sub(before) as f64;
    let memory = Memory {
        held,
        entries,
        rss_delta_kib,
        rss_per_node: rss_delta_kib * 1024.0 / held.max(1) as f64,
    };
    drop(tables);
    memory
}

// ----- the network and its lookups ------------------------------------------------------------

struct Network {
    nodes: Vec<Discv4>,
    filled: Option<Duration>,
    sent_per_node: f64,
    received_per_node: f64,
    /// Table sizes (min, mean) before the stragglers were helped.
    before_help: (usize, f64),
    /// Nodes below [`FILLED`] at the deadline, helped as the server's dial loop would.
    helped: usize,
}

struct Lookups {
    p50_ms: f64,
    p90_ms: f64,
    hits: usize,
}

fn node_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 2, (i + 1) as u8))
}

impl Network {
    async fn start(n: usize) -> Result<Network, BoxError> {
        let config = |i: usize, boot: Option<Bootnode>| {
            let mut c = Discv4Config::new(NodeKey::generate(), SocketAddr::new(node_ip(i), 0));
            c.tcp_port = 30303;
            c.bootnodes = boot.into_iter().collect();
            c
        };
        let mut first = config(0, None);
        // The node under load takes every packet the sender can send.
        first.rate_limit = RateLimit {
            burst: 1e9,
            per_sec: 1e9,
        };
        let boot = Discv4::start(first).await?;
        let enode = boot.local_enode();
        let started = Instant::now();
        let mut nodes = vec![boot];
        for i in 1..n {
            nodes.push(Discv4::start(config(i, Some(Bootnode::Enode(enode)))).await?);
        }
        let mut filled = None;
        while started.elapsed() < FILL_DEADLINE {
            if nodes.iter().all(|d| d.table_len() >= FILLED.min(n - 1)) {
                filled = Some(started.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let per_node =
            |f: fn(&Discv4) -> u64| nodes.iter().map(f).sum::<u64>() as f64 / nodes.len() as f64;
        let (sent_per_node, received_per_node) = (
            per_node(|d| d.stats().sent),
            per_node(|d| d.stats().received),
        );
        let lens: Vec<usize> = nodes.iter().map(Discv4::table_len).collect();
        let before_help = (
            lens.iter().copied().min().unwrap_or(0),
            lens.iter().sum::<usize>() as f64 / n as f64,
        );
        // Standalone discv4 pings its bootnodes once, and a node whose bootstrap was lost
        // waits for its next refresh; a server's dial loop seeds it again at once.
        let boot = Bootnode::Enode(enode).node()?;
        let stragglers: Vec<&Discv4> = nodes.iter().filter(|d| d.table_len() < FILLED).collect();
        let helped = stragglers.len();
        futures::stream::iter(stragglers)
            .for_each_concurrent(16, |d| async move {
                let _ = d.ping(boot).await;
                d.lookup(d.local_id()).await;
            })
            .await;
        Ok(Network {
            filled,
            sent_per_node,
            received_per_node,
            before_help,
            helped,
            nodes,
        })
    }

    /// `count` lookups, one at a time, each from a random node towards another's id.
    async fn lookups(&self, count: usize) -> Lookups {
        let mut rng = rand::thread_rng();
        let mut times = Vec::with_capacity(count);
        let mut hits = 0;
        let indices: Vec<usize> = (0..self.nodes.len()).collect();
        for _ in 0..count {
            let pair: Vec<&usize> = indices.choose_multiple(&mut rng, 2).collect();
            let (from, to) = (&self.nodes[*pair[0]], &self.nodes[*pair[1]]);
            let target = to.local_id();
            let start = Instant::now();
            let found = from.lookup(target).await;
            times.push(start.elapsed().as_secs_f64() * 1e3);
            if found.first().map(|n| n.id) == Some(target) {
                hits += 1;
            }
        }
        times.sort_by(f64::total_cmp);
        Lookups {
            p50_ms: percentile(&times, 0.5),
            p90_ms: percentile(&times, 0.9),
            hits,
        }
    }

    async fn shutdown(self) {
        for n in self.nodes {
            n.shutdown().await;
        }
    }
}

// ----- packets handled by one node ------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ping,
    FindNode,
}

struct LoadFigures {
    rate: f64,
    cpu_us: f64,
    packets_per_answer: usize,
    lost: u64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// CPU time (ns) of the whole process: the sum over its threads' schedstat.
fn process_cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// CPU time (ns) of the calling thread.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A discv4 endpoint of our own on a blocking socket: signs with its key, reads packets.
struct Sender {
    key: NodeKey,
    sock: UdpSocket,
    to: SocketAddr,
}

impl Sender {
    fn new(to: SocketAddr) -> Result<Sender, BoxError> {
        // Its own loopback address, apart from the network's.
        let sock = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 3, 1)), 0))?;
        sock.set_read_timeout(Some(LOSS_TIMEOUT))?;
        Ok(Sender {
            key: NodeKey::generate(),
            sock,
            to,
        })
    }

    fn endpoint(&self) -> Endpoint {
        let a = self.sock.local_addr().expect("bound");
        Endpoint {
            ip: a.ip(),
            udp_port: a.port(),
            tcp_port: 0,
        }
    }

    fn to_endpoint(&self) -> Endpoint {
        Endpoint {
            ip: self.to.ip(),
            udp_port: self.to.port(),
            tcp_port: 0,
        }
    }

    fn encode(&self, msg: &Message) -> Result<(Vec<u8>, [u8; 32]), BoxError> {
        Ok(packet::encode(msg, self.key.secret())?)
    }

    fn ping(&self, expiration: u64) -> Result<(Vec<u8>, [u8; 32]), BoxError> {
        self.encode(&Message::Ping(Ping {
            version: PING_VERSION,
            from: self.endpoint(),
            to: self.to_endpoint(),
            expiration,
            enr_seq: None,
            rest: Vec::new(),
        }))
    }

    fn find_node(&self, expiration: u64) -> Result<(Vec<u8>, [u8; 32]), BoxError> {
        self.encode(&Message::FindNode(FindNode {
            target: NodeKey::generate().id(),
            expiration,
            rest: Vec::new(),
        }))
    }

    /// The type byte of the next packet, or `None` after [`LOSS_TIMEOUT`].
    fn recv_kind(&self, buf: &mut [u8]) -> Option<u8> {
        match self.sock.recv_from(buf) {
            Ok((n, _)) if n > HEADER_SIZE => Some(buf[HEADER_SIZE]),
            _ => None,
        }
    }

    /// The endpoint proof both ways: our ping answered, its ping-back answered.
    fn bond(&self) -> Result<(), BoxError> {
        let (ping, _) = self.ping(expiration_at(unix_now()))?;
        self.sock.send_to(&ping, self.to)?;
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut buf = [0u8; 1500];
        while Instant::now() < deadline {
            let Ok((n, _)) = self.sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(p) = packet::decode(&buf[..n]) else {
                continue;
            };
            if let Message::Ping(_) = p.message {
                let (pong, _) = self.encode(&Message::Pong(Pong {
                    to: self.to_endpoint(),
                    ping_hash: p.hash,
                    expiration: expiration_at(unix_now()),
                    enr_seq: None,
                    rest: Vec::new(),
                }))?;
                self.sock.send_to(&pong, self.to)?;
                std::thread::sleep(Duration::from_millis(100));
                return Ok(());
            }
        }
        Err("the node never pinged back".into())
    }

    /// How many packets of `kind` one answer to `request` takes.
    fn packets_per_answer(&self, request: &[u8], kind: u8) -> Result<usize, BoxError> {
        self.sock.send_to(request, self.to)?;
        let mut buf = [0u8; 1500];
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            if self.recv_kind(&mut buf) == Some(kind) {
                n += 1;
            }
        }
        if n == 0 {
            return Err("no answer to a probe request".into());
        }
        Ok(n)
    }
}

/// Keep [`WINDOW`] requests of `kind` in flight at `to` for `duration`; count answers.
fn load_run(to: SocketAddr, kind: Kind, duration: Duration) -> Result<LoadFigures, BoxError> {
    let sender = Sender::new(to)?;
    sender.bond()?;
    // Valid well past the run, so a packet signed early has not expired when it is sent.
    let expiration = unix_now() + 60 + duration.as_secs();
    let requests: Vec<Vec<u8>> = (0..DISTINCT_REQUESTS)
        .map(|i| match kind {
            Kind::Ping => sender.ping(expiration + i as u64).map(|(b, _)| b),
            Kind::FindNode => sender.find_node(expiration).map(|(b, _)| b),
        })
        .collect::<Result<_, _>>()?;
    let answer = match kind {
        Kind::Ping => 2u8,
        Kind::FindNode => 4u8,
    };
    let per_answer = sender.packets_per_answer(&requests[0], answer)?;
    let mut buf = [0u8; 1500];
    let (mut in_flight, mut packets, mut lost, mut next) = (0usize, 0u64, 0u64, 0usize);
    let cpu_start = process_cpu_ns();
    let own_start = thread_cpu_ns();
    let start = Instant::now();
    while start.elapsed() < duration {
        while in_flight < WINDOW * per_answer {
            sender.sock.send_to(&requests[next], to)?;
            next = (next + 1) % requests.len();
            in_flight += per_answer;
        }
        match sender.recv_kind(&mut buf) {
            Some(k) if k == answer => {
                packets += 1;
                in_flight = in_flight.saturating_sub(1);
            }
            Some(_) => {}
            None => {
                lost += (in_flight / per_answer) as u64;
                in_flight = 0;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let own = thread_cpu_ns().saturating_sub(own_start);
    let node_cpu = process_cpu_ns()
        .saturating_sub(cpu_start)
        .saturating_sub(own);
    let answers = packets as f64 / per_answer as f64;
    Ok(LoadFigures {
        rate: answers / elapsed,
        cpu_us: node_cpu as f64 / 1e3 / answers.max(1.0),
        packets_per_answer: per_answer,
        lost,
    })
}
