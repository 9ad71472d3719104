//! Full-stack loopback benchmark: braid against three baselines in the same run.
//!
//! `cargo run --release` in `bench/` (add `-- --quick` for a short run, `--runs N` for the
//! median of N runs, `--peers N` for the concurrent-peer memory test; `--peers 0` skips it).
//! The crate is outside the root workspace so that `cargo test --workspace` never builds
//! libp2p.
//!
//! Every shape runs over four stacks, both ends in one process:
//! - braid: ECIES link, frames, snappy, the peer runtime and a trivial protocol;
//! - raw TCP: plain tokio sockets, the kernel's floor;
//! - geth-like: the same RLPx link (ECIES, frames, snappy, Hello) with one reader and one
//!   writer and no runtime, so braid/geth-like is the runtime's own overhead;
//! - libp2p: rust-libp2p with TCP + Noise + Yamux, one `libp2p-stream` stream per shape.
//!
//! Shapes:
//! - ping-pong: 100-byte request, 100-byte reply, one in flight → msgs/s, RTT p50/p99;
//! - window: 100-byte requests with 32 in flight → replies/s;
//! - bulk: 1 MiB messages one way → MiB/s, also against single-core Keccak-256 absorb
//!   (the RLPx MAC hashes every byte, so Keccak bounds the link);
//! - handshakes: sequential connect + secure handshake (+ Hello) + close → per second, and the
//!   dialer's connect latency p50/p99;
//! - N concurrent idle peers (two processes; braid and geth-like ping every 2 s, raw TCP and
//!   libp2p sit silent) → the hub's resident memory per peer, one pass per stack.

mod cpu;
mod gethlike;
mod idle;
mod lp2p;

use std::net::SocketAddr;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cpu::Bulk;
use p2p::base::{Capability, Hello};
use p2p::conn::Conn;
use p2p::node::{Enode, NodeId, NodeKey};
use p2p::peer::{Direction, Peer, PeerConfig, PeerInfo};
use p2p::protocol::{Protocol, ProtocolError};
use p2p::server::{Server, ServerConfig};
use p2p::session::exchange_hello;
use rand::RngCore;
use p2p::keccak::{Digest, Keccak256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

const PING: u64 = 0;
const PONG: u64 = 1;
const BULK: u64 = 2;
const SMALL: usize = 100;
const BULK_SIZE: usize = 1 << 20;
const WINDOW: usize = 32;
/// Unacknowledged 1 MiB messages allowed in braid's bulk shape.
const BULK_WINDOW: usize = 8;

struct Plan {
    runs: usize,
    /// Shapes to run (all when empty): pingpong, window, bulk, handshakes, idle.
    only: Vec<String>,
    pingpongs: usize,
    window_msgs: usize,
    bulk_msgs: usize,
    handshakes: usize,
    peers: usize,
}

fn parse_args() -> Result<Plan, String> {
    let mut quick = false;
    let mut peers = None;
    let mut runs = None;
    let mut only = Vec::new();
    let mut args = std::env::args().skip(1);
    let number = |name: &str, args: &mut std::iter::Skip<std::env::Args>| {
        let n = args.next().ok_or(format!("{name} needs a number"))?;
        n.parse::<usize>()
            .map_err(|_| format!("{name}: not a number: {n}"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--peers" => peers = Some(number("--peers", &mut args)?),
            "--runs" => runs = Some(number("--runs", &mut args)?.clamp(1, 100)),
            "--only" => {
                let list = args.next().ok_or("--only needs a list of shapes")?;
                for shape in list.split(',') {
                    if !SHAPES.contains(&shape) {
                        return Err(format!("--only: unknown shape {shape} (one of {SHAPES:?})"));
                    }
                    only.push(shape.to_string());
                }
            }
            other => {
                return Err(format!(
                    "unknown argument {other} (try --quick, --runs N, --peers N, --only SHAPES)"
                ))
            }
        }
    }
    let scale = if quick { 1 } else { 4 };
    Ok(Plan {
        only,
        runs: runs.unwrap_or(if quick { 1 } else { 3 }),
        pingpongs: 5_000 * scale,
        window_msgs: 50_000 * scale,
        bulk_msgs: 64 * scale,
        handshakes: 300 * scale,
        peers: peers.unwrap_or(if quick { 1_000 } else { 10_000 }),
    })
}

fn main() -> ExitCode {
    // Internal roles for the two-process concurrent-peer test.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--role-hub") {
        return run_hub(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some("--role-dialer") {
        return run_dialer(&args[2..]);
    }
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
    // The shapes run in a spawned task, on the runtime's two workers, as an application's
    // protocols do. Driven from `block_on` instead, every client-side wake-up would cross to
    // the main thread (a third thread on two cores): on this VM that futex round trip, not
    // the stacks, set the ping-pong figures (raw TCP 110 µs RTT against 9 µs on a worker).
    let shapes = rt.spawn(run(plan));
    match rt.block_on(shapes).unwrap_or_else(|e| Err(format!("benchmark task: {e}").into())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The shapes `--only` accepts.
const SHAPES: [&str; 5] = ["pingpong", "window", "bulk", "handshakes", "idle"];

impl Plan {
    fn runs_shape(&self, shape: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == shape)
    }
}

/// The stacks compared, in table order.
const STACKS: [&str; 4] = ["braid", "raw TCP", "geth-like", "libp2p"];

/// One run's figures, indexed like [`STACKS`]; a shape left out by `--only` is `None`.
struct Figures {
    keccak: f64,
    pingpong: Option<[PingPong; 4]>,
    window: Option<[f64; 4]>,
    bulk: Option<[Bulk; 4]>,
    connects: Option<[Connects; 4]>,
}

async fn one_run(plan: &Plan) -> Result<Figures, BoxError> {
    let keccak = keccak_absorb_mib_s();
    let mut figures = Figures {
        keccak,
        pingpong: None,
        window: None,
        bulk: None,
        connects: None,
    };
    if plan.runs_shape("pingpong") {
        eprintln!("  ping-pong…");
        figures.pingpong = Some([
            braid_pingpong(plan.pingpongs).await?,
            raw_pingpong(plan.pingpongs).await?,
            gethlike::pingpong(plan.pingpongs).await?,
            lp2p::pingpong(plan.pingpongs).await?,
        ]);
    }
    if plan.runs_shape("window") {
        eprintln!("  32 in flight…");
        figures.window = Some([
            braid_window(plan.window_msgs).await?,
            raw_window(plan.window_msgs).await?,
            gethlike::window(plan.window_msgs).await?,
            lp2p::window(plan.window_msgs).await?,
        ]);
    }
    if plan.runs_shape("bulk") {
        eprintln!("  bulk…");
        figures.bulk = Some([
            cpu::measure(plan.bulk_msgs, braid_bulk(plan.bulk_msgs)).await?,
            cpu::measure(plan.bulk_msgs, raw_bulk(plan.bulk_msgs)).await?,
            cpu::measure(plan.bulk_msgs, gethlike::bulk(plan.bulk_msgs)).await?,
            cpu::measure(plan.bulk_msgs, lp2p::bulk(plan.bulk_msgs)).await?,
        ]);
    }
    if plan.runs_shape("handshakes") {
        eprintln!("  handshakes…");
        figures.connects = Some([
            braid_handshakes(plan.handshakes).await?,
            raw_handshakes(plan.handshakes).await?,
            gethlike::handshakes(plan.handshakes).await?,
            lp2p::handshakes(plan.handshakes).await?,
        ]);
    }
    Ok(figures)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn kilo(x: f64) -> String {
    if x >= 10_000.0 {
        format!("{:.0}k", x / 1000.0)
    } else if x >= 1_000.0 {
        format!("{:.1}k", x / 1000.0)
    } else {
        format!("{x:.0}")
    }
}

async fn run(plan: Plan) -> Result<(), BoxError> {
    println!(
        "braid loopback benchmark (release build: {}, {} run(s), load average at start: {})",
        !cfg!(debug_assertions),
        plan.runs,
        load()
    );
    let mut all = Vec::with_capacity(plan.runs);
    let mut floors = Vec::with_capacity(plan.runs);
    for i in 0..plan.runs {
        eprintln!("run {} of {}", i + 1, plan.runs);
        let f = one_run(&plan).await?;
        let mut line = format!("  run {}: keccak {:.0} MiB/s", i + 1, f.keccak);
        let four = |v: [f64; 4]| format!("{:.0}/{:.0}/{:.0}/{:.0}", v[0], v[1], v[2], v[3]);
        if let Some(p) = &f.pingpong {
            line += &format!(", ping-pong {} msg/s", four(p.each_ref().map(|x| x.rate)));
        }
        if let Some(w) = f.window {
            line += &format!(", 32 in flight {} msg/s", four(w));
        }
        if let Some(b) = &f.bulk {
            line += &format!(", bulk {} MiB/s", four(b.each_ref().map(|x| x.mib_s)));
            let floor = cpu::floor_ns_per_byte(BULK_SIZE);
            line += &format!(
                " ({} CPU ns/B; floor {floor:.2})",
                b.each_ref()
                    .map(|x| format!("{:.2}", x.cpu_ns_per_byte))
                    .join("/")
            );
            floors.push(floor);
        }
        if let Some(c) = &f.connects {
            line += &format!(", handshakes {} /s", four(c.each_ref().map(|x| x.rate)));
        }
        println!("{line} (braid/raw/geth-like/libp2p)");
        all.push(f);
    }
    let med = |get: &dyn Fn(&Figures) -> f64| median(all.iter().map(get).collect());
    // Ratios are the median of each run's own ratio, so a slow run does not mix with a fast one.
    let ratios = |get: &dyn Fn(&Figures, usize) -> f64| -> String {
        (1..4)
            .map(|b| format!("{:.2}x", med(&|f| get(f, 0) / get(f, b))))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let keccak = med(&|f| f.keccak);
    println!("  keccak-256 absorb, one core: {keccak:.0} MiB/s (median)");

    println!();
    println!(
        "| shape | {} | braid/raw | braid/geth-like | braid/libp2p | goal |",
        STACKS.join(" | ")
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let cells = |fmt: &dyn Fn(usize) -> String| (0..4).map(fmt).collect::<Vec<_>>().join(" | ");
    // `has` guards every `expect` below: a shape is either in every run or in none.
    let has = |shape: &str| plan.runs_shape(shape) && !all.is_empty();
    if has("pingpong") {
        let pp = |f: &Figures, s: usize| f.pingpong.as_ref().expect("ran")[s];
        println!(
            "| ping-pong 100 B, 1 in flight (msg/s, RTT p50/p99 µs) | {} | {} | >= 1.0x libp2p |",
            cells(&|s| format!(
                "{} ({:.0}/{:.0})",
                kilo(med(&|f| pp(f, s).rate)),
                med(&|f| pp(f, s).p50),
                med(&|f| pp(f, s).p99)
            )),
            ratios(&|f, s| pp(f, s).rate)
        );
    }
    if has("window") {
        let w = |f: &Figures, s: usize| f.window.expect("ran")[s];
        println!(
            "| 100 B, 32 in flight (msg/s) | {} | {} | >= 0.8x raw, >= 1.5x libp2p |",
            cells(&|s| kilo(med(&|f| w(f, s)))),
            ratios(&|f, s| w(f, s))
        );
    }
    if has("bulk") {
        let b = |f: &Figures, s: usize| f.bulk.as_ref().expect("ran")[s];
        println!(
            "| bulk 1 MiB messages (MiB/s) | {} | {} | — |",
            cells(&|s| format!("{:.0}", med(&|f| b(f, s).mib_s))),
            ratios(&|f, s| b(f, s).mib_s),
        );
        // CPU per byte: the floor over the stack's cost, so 1.0x means no cost beyond the
        // crypto and compression every byte must go through.
        let floor = median(floors.clone());
        let floor_ratio = median(
            all.iter()
                .zip(&floors)
                .map(|(f, fl)| fl / f.bulk.as_ref().expect("ran")[0].cpu_ns_per_byte)
                .collect(),
        );
        println!(
            "| bulk, CPU ns per byte, both ends (floor: seal + open + snappy {floor:.2}) | {} | {} | floor/braid >= 0.85x (now {floor_ratio:.2}x) |",
            cells(&|s| format!("{:.2}", med(&|f| b(f, s).cpu_ns_per_byte))),
            ratios(&|f, s| b(f, s).cpu_ns_per_byte),
        );
    }
    if has("handshakes") {
        let c = |f: &Figures, s: usize| f.connects.as_ref().expect("ran")[s];
        println!(
            "| handshakes, sequential (/s; connect p50/p99 µs) | {} | {} | >= 1.5x libp2p |",
            cells(&|s| format!(
                "{} ({:.0}/{:.0})",
                kilo(med(&|f| c(f, s).rate)),
                med(&|f| c(f, s).p50),
                med(&|f| c(f, s).p99)
            )),
            ratios(&|f, s| c(f, s).rate)
        );
    }
    if plan.peers > 0 && plan.runs_shape("idle") {
        // One pass only: memory does not vary with load the way rates do.
        let mut kib = [0.0; 4];
        for (i, stack) in IDLE_STACKS.iter().enumerate() {
            eprintln!("  {} idle peers over {stack}…", plan.peers);
            kib[i] = concurrent_peers(stack, plan.peers).await?;
        }
        println!(
            "| {} idle peers, two processes (hub RSS, KiB/peer) | {} | {} | <= 20 KiB/peer |",
            plan.peers,
            kib.iter()
                .map(|k| format!("{k:.1}"))
                .collect::<Vec<_>>()
                .join(" | "),
            (1..4)
                .map(|b| format!("{:.2}x", kib[0] / kib[b]))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    println!();
    println!("load average at end: {}", load());
    Ok(())
}

fn keccak_absorb_mib_s() -> f64 {
    let block = random_bytes(BULK_SIZE);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let mut h = Keccak256::new();
        for _ in 0..32 {
            h.update(&block);
        }
        std::hint::black_box(h.finalize());
        best = best.min(start.elapsed().as_secs_f64());
    }
    32.0 / best
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// A rate with the latency of each operation (µs).
#[derive(Clone, Copy)]
struct PingPong {
    rate: f64,
    p50: f64,
    p99: f64,
}

/// Handshakes per second with the dialer's connect latency.
type Connects = PingPong;

fn summarize(mut rtts: Vec<Duration>, total: Duration) -> PingPong {
    rtts.sort();
    let pick =
        |q: f64| rtts[((rtts.len() as f64 * q) as usize).min(rtts.len() - 1)].as_secs_f64() * 1e6;
    PingPong {
        rate: rtts.len() as f64 / total.as_secs_f64(),
        p50: pick(0.5),
        p99: pick(0.99),
    }
}

// ----- raw TCP baselines --------------------------------------------------------------

async fn raw_pair() -> Result<(TcpStream, TcpStream), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (a, (b, _)) = (a?, b?);
    a.set_nodelay(true)?;
    b.set_nodelay(true)?;
    Ok((a, b))
}

/// Echo fixed-size messages back until EOF.
fn raw_echo(mut s: TcpStream, size: usize) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; size];
        while s.read_exact(&mut buf).await.is_ok() {
            if s.write_all(&buf).await.is_err() {
                return;
            }
        }
    });
}

async fn raw_pingpong(n: usize) -> Result<PingPong, BoxError> {
    let (mut a, b) = raw_pair().await?;
    raw_echo(b, SMALL);
    let msg = random_bytes(SMALL);
    let mut buf = vec![0u8; SMALL];
    let mut rtts = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        a.write_all(&msg).await?;
        a.read_exact(&mut buf).await?;
        rtts.push(t.elapsed());
    }
    Ok(summarize(rtts, start.elapsed()))
}

async fn raw_window(n: usize) -> Result<f64, BoxError> {
    let (a, b) = raw_pair().await?;
    raw_echo(b, SMALL);
    let (mut rd, mut wr) = a.into_split();
    let window = Arc::new(Semaphore::new(WINDOW));
    let w = window.clone();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let msg = random_bytes(SMALL);
        for _ in 0..n {
            w.acquire().await.expect("open").forget();
            wr.write_all(&msg).await?;
        }
        Ok::<_, std::io::Error>(wr)
    });
    let mut buf = vec![0u8; SMALL];
    for _ in 0..n {
        rd.read_exact(&mut buf).await?;
        window.add_permits(1);
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(writer.await??);
    Ok(rate)
}

async fn raw_bulk(n: usize) -> Result<f64, BoxError> {
    let (mut a, mut b) = raw_pair().await?;
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        while total < n * BULK_SIZE {
            let got = b.read(&mut buf).await?;
            if got == 0 {
                break;
            }
            total += got;
        }
        Ok::<_, std::io::Error>(total)
    });
    let data = random_bytes(BULK_SIZE);
    let start = Instant::now();
    for _ in 0..n {
        a.write_all(&data).await?;
    }
    reader.await??;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Sequential TCP connects and closes; the latency is until `connect` returns.
async fn raw_handshakes(n: usize) -> Result<Connects, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let hub = tokio::spawn(async move {
        let mut buf = [0u8; 1];
        for _ in 0..n {
            let (mut s, _) = listener.accept().await?;
            // Wait for the dialer's close, as a server notices a peer leaving.
            let _ = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let s = TcpStream::connect(addr).await?;
        lat.push(t.elapsed());
        s.set_nodelay(true)?;
        drop(s);
    }
    hub.await??;
    Ok(summarize(lat, start.elapsed()))
}

// ----- braid ----------------------------------------------------------------------------

/// A trivial protocol: PING is echoed as PONG; BULK is counted and acknowledged by `acks`.
fn echo_protocol(acks: mpsc::Sender<usize>) -> Protocol {
    Protocol::new("bench", 1, 3, move |_peer, mut rw| {
        let acks = acks.clone();
        async move {
            loop {
                let msg = rw.read().await?;
                match msg.code {
                    PING => rw.write(PONG, &msg.payload).await?,
                    BULK => {
                        let _ = acks.send(msg.payload.len()).await;
                    }
                    _ => {}
                }
            }
        }
    })
}

fn config(protocol: Protocol) -> ServerConfig {
    let mut cfg = ServerConfig::new(
        *NodeKey::generate().secret(),
        Some("127.0.0.1:0".parse().expect("addr")),
    );
    cfg.protocols.push(protocol);
    cfg.max_peers = 100_000;
    cfg.max_pending = 1_000;
    cfg.dial_ratio = 0;
    cfg
}

/// A hub running the echo protocol, and a client whose protocol hands its ProtoRw to the caller.
async fn braid_pair(
) -> Result<(Server, Server, p2p::peer::ProtoRw, mpsc::Receiver<usize>), BoxError> {
    let (ack_tx, ack_rx) = mpsc::channel(1024);
    let hub = Server::start(config(echo_protocol(ack_tx))).await?;
    let (rw_tx, mut rw_rx) = mpsc::channel(1);
    let client_proto = Protocol::new("bench", 1, 3, move |_peer, rw| {
        let rw_tx = rw_tx.clone();
        async move {
            rw_tx
                .send(rw)
                .await
                .map_err(|_| ProtocolError::PeerClosed)?;
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    let client = Server::start(config(client_proto)).await?;
    client
        .dial(&hub.enode().ok_or("hub not listening")?)
        .await?;
    let rw = rw_rx.recv().await.ok_or("client protocol did not start")?;
    Ok((hub, client, rw, ack_rx))
}

async fn braid_pingpong(n: usize) -> Result<PingPong, BoxError> {
    let (hub, client, mut rw, _acks) = braid_pair().await?;
    let msg = random_bytes(SMALL);
    let mut rtts = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        rw.write(PING, &msg).await?;
        rw.read().await?;
        rtts.push(t.elapsed());
    }
    let total = start.elapsed();
    drop(rw);
    tokio::join!(client.shutdown(), hub.shutdown());
    Ok(summarize(rtts, total))
}

async fn braid_window(n: usize) -> Result<f64, BoxError> {
    let (hub, client, mut rw, _acks) = braid_pair().await?;
    let writer = rw.writer();
    let window = Arc::new(Semaphore::new(WINDOW));
    let w = window.clone();
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        let msg = random_bytes(SMALL);
        for _ in 0..n {
            w.acquire().await.expect("open").forget();
            writer.write(PING, &msg).await?;
        }
        Ok::<_, ProtocolError>(())
    });
    for _ in 0..n {
        rw.read().await?;
        window.add_permits(1);
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    sender.await??;
    drop(rw);
    tokio::join!(client.shutdown(), hub.shutdown());
    Ok(rate)
}

async fn braid_bulk(n: usize) -> Result<f64, BoxError> {
    let (hub, client, rw, mut acks) = braid_pair().await?;
    let data = Bytes::from(random_bytes(BULK_SIZE));
    // Flow control, as any real bulk protocol needs: at most BULK_WINDOW messages
    // unacknowledged, well inside the receiver's 32 MiB inbound budget.
    let window = Arc::new(Semaphore::new(BULK_WINDOW));
    let w = window.clone();
    let start = Instant::now();
    let writer = rw.writer();
    let sender = tokio::spawn(async move {
        for _ in 0..n {
            w.acquire().await.expect("open").forget();
            writer.write(BULK, &data).await?;
        }
        Ok::<_, ProtocolError>(())
    });
    let mut hub_events = hub.subscribe();
    for i in 0..n {
        match tokio::time::timeout(Duration::from_secs(20), acks.recv()).await {
            Ok(Some(_)) => window.add_permits(1),
            _ => {
                let why = match hub_events.try_recv() {
                    Ok(p2p::server::PeerEvent::Dropped { reason, .. }) => reason.to_string(),
                    _ => "no event".to_string(),
                };
                return Err(format!("bulk stalled after {i} of {n} messages: {why}").into());
            }
        }
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    sender.await??;
    drop(rw);
    tokio::join!(client.shutdown(), hub.shutdown());
    Ok(rate)
}

/// Sequential dials: connect + ECIES + Hello (the latency, until `dial` returns the peer),
/// then disconnect and wait until both servers have dropped the session.
async fn braid_handshakes(n: usize) -> Result<Connects, BoxError> {
    let (ack_tx, _ack_rx) = mpsc::channel(1);
    let hub = Server::start(config(echo_protocol(ack_tx))).await?;
    let (ack_tx, _ack_rx2) = mpsc::channel(1);
    let client = Server::start(config(echo_protocol(ack_tx))).await?;
    let enode = hub.enode().ok_or("hub not listening")?;
    let mut hub_events = hub.subscribe();
    let mut client_events = client.subscribe();
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let peer = client.dial(&enode).await?;
        lat.push(t.elapsed());
        peer.disconnect(p2p::base::DisconnectReason::DisconnectRequested);
        // Both servers must have dropped the session before the same id may come back
        // (else 0x05, correctly).
        wait_dropped(&mut client_events).await?;
        wait_dropped(&mut hub_events).await?;
    }
    let total = start.elapsed();
    tokio::join!(client.shutdown(), hub.shutdown());
    Ok(summarize(lat, total))
}

async fn wait_dropped(
    events: &mut tokio::sync::broadcast::Receiver<p2p::server::PeerEvent>,
) -> Result<(), BoxError> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Ok(p2p::server::PeerEvent::Dropped { .. })) => return Ok(()),
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            _ => return Err("a server never reported the peer dropped".into()),
        }
    }
}

// ----- N concurrent idle peers, two processes --------------------------------------------

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Spawn this binary in a role, with the descriptor limit raised for it.
fn spawn_role(role: &str, extra: &[String]) -> Result<tokio::process::Child, BoxError> {
    let exe = std::env::current_exe()?;
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n 65536 2>/dev/null || ulimit -n $(ulimit -Hn); exec \"$0\" \"$@\"")
        .arg(exe)
        .arg(role)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    Ok(cmd.spawn()?)
}

async fn read_line(
    out: &mut tokio::io::BufReader<tokio::process::ChildStdout>,
) -> Result<String, BoxError> {
    use tokio::io::AsyncBufReadExt;
    let mut line = String::new();
    let n = tokio::time::timeout(Duration::from_secs(300), out.read_line(&mut line)).await??;
    if n == 0 {
        return Err("child process ended early".into());
    }
    Ok(line.trim().to_string())
}

/// Hub RSS growth per connection, with `n` idle connections of `stack` from a second process.
async fn concurrent_peers(stack: &str, n: usize) -> Result<f64, BoxError> {
    let mut hub = spawn_role("--role-hub", &[stack.to_string()])?;
    let hub_pid = hub.id().ok_or("hub pid")?;
    let mut hub_out = tokio::io::BufReader::new(hub.stdout.take().ok_or("hub stdout")?);
    let enode = read_line(&mut hub_out).await?;
    // Let the hub settle, then take its baseline.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(hub_pid).ok_or("cannot read hub RSS")?;
    let mut dialer = spawn_role("--role-dialer", &[stack.to_string(), enode, n.to_string()])?;
    let mut dialer_out = tokio::io::BufReader::new(dialer.stdout.take().ok_or("dialer stdout")?);
    let status = read_line(&mut dialer_out).await?;
    if status != "connected" {
        return Err(format!("dialer: {status}").into());
    }
    // Pings flow (2 s interval in both roles) while the peers sit idle.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = rss_kib(hub_pid).ok_or("cannot read hub RSS")?;
    let _ = dialer.kill().await;
    let _ = hub.kill().await;
    Ok((after.saturating_sub(before)) as f64 / n as f64)
}

fn idle_config() -> PeerConfig {
    PeerConfig {
        ping_interval: Duration::from_secs(2),
        ..PeerConfig::default()
    }
}

fn idle_protocol() -> Protocol {
    Protocol::new("bench", 1, 3, |_peer, mut rw| async move {
        loop {
            rw.read().await?;
        }
    })
}

/// Block until the parent closes our stdin (or kills us).
async fn wait_for_parent() {
    let _ = tokio::task::spawn_blocking(|| {
        use std::io::Read;
        let mut buf = [0u8; 1];
        std::io::stdin().read(&mut buf)
    })
    .await;
}

/// The stack names the idle-peer roles take, indexed like [`STACKS`].
const IDLE_STACKS: [&str; 4] = ["braid", "raw", "geth-like", "libp2p"];

fn run_hub(args: &[String]) -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let stack = args.first().map(String::as_str).unwrap_or("braid");
    if stack != "braid" {
        return match rt.block_on(idle::hub(stack)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                println!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    rt.block_on(async {
        let mut cfg = config(idle_protocol());
        cfg.peer = idle_config();
        let hub = match Server::start(cfg).await {
            Ok(h) => h,
            Err(e) => {
                println!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("{}", hub.enode().expect("listening"));
        wait_for_parent().await;
        ExitCode::SUCCESS
    })
}

fn run_dialer(args: &[String]) -> ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let stack = args.first().map(String::as_str).unwrap_or("braid");
    let args = &args[1.min(args.len())..];
    if stack != "braid" {
        return rt.block_on(async {
            let result = async {
                let n: usize = args.get(1).ok_or("count")?.parse()?;
                idle::dial(stack, args.first().ok_or("address")?, n).await
            }
            .await;
            match result {
                Ok(held) => {
                    println!("connected");
                    wait_for_parent().await;
                    drop(held);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    println!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        });
    }
    rt.block_on(async {
        let result: Result<Vec<Peer>, BoxError> = async {
            let enode: Enode = args.first().ok_or("enode")?.parse()?;
            let n: usize = args.get(1).ok_or("count")?.parse()?;
            let mut peers = Vec::with_capacity(n);
            // Each connection with its own key (one node id per peer), built from the
            // link-level API so no per-peer Server is needed.
            for _ in 0..n {
                peers.push(dial_one(enode.socket_addr(), &enode.id).await?);
            }
            Ok(peers)
        }
        .await;
        match result {
            Ok(peers) => {
                println!("connected");
                wait_for_parent().await;
                drop(peers);
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn dial_one(addr: SocketAddr, hub: &NodeId) -> Result<Peer, BoxError> {
    let key = NodeKey::generate();
    let stream = TcpStream::connect(addr).await?;
    let mut conn = Conn::initiate(stream, key.secret(), hub, Duration::from_secs(10)).await?;
    let ours = Hello::new("bench", vec![Capability::new("bench", 1)], 0, key.id());
    let theirs = exchange_hello(&mut conn, &ours, Duration::from_secs(10)).await?;
    let info = PeerInfo {
        id: conn.remote_id,
        remote_addr: Some(addr),
        direction: Direction::Outbound,
        trusted: false,
    };
    Ok(Peer::start(conn, theirs, &[idle_protocol()], info, idle_config(), None).await?)
}
