//! Churn: many connect / handshake / Hello / disconnect cycles against one server, with
//! resident memory, open descriptors and live tokio tasks sampled before and after.
//!
//! `BRAID_CHURN_CYCLES` sets the number of cycles (default 2,000 so `cargo test` stays
//! quick; the soak figure in docs/hardening.md is 100,000). Cycles run `CONCURRENCY` at a
//! time and end in three ways, in turn: a polite Disconnect, an abrupt close after Hello,
//! and a close in the middle of the encryption handshake.

use std::time::{Duration, Instant};

use p2p::base::{Capability, DisconnectReason, Hello};
use p2p::conn::Conn;
use p2p::node::NodeId;
use p2p::server::{Server, ServerConfig};
use p2p::session::{exchange_hello, send_disconnect};
use p2p::testkit::echo_protocol as echo;
use p2p::testkit::process;
use secp256k1::SecretKey;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const CONCURRENCY: usize = 8;
const MIB: u64 = 1024 * 1024;
/// Most the resident set may grow from after warm-up to the end.
const RSS_TOLERANCE: u64 = 16 * MIB;
/// Most extra descriptors left open at the end (none expected; slack for the runtime).
const FD_TOLERANCE: usize = 4;

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}
/// One cycle; `how` picks the ending. Errors are returned as text for the assertion.
async fn cycle(addr: std::net::SocketAddr, hub: NodeId, how: usize) -> Result<(), String> {
    let key = SecretKey::new(&mut rand::thread_rng());
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    if how == 2 {
        // Leave in the middle of the encryption handshake.
        stream
            .write_all(&[0x01, 0x80, 0x04])
            .await
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    let mut conn = Conn::initiate(stream, &key, &hub, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    let hello = Hello::new(
        "churn",
        vec![Capability::new("echo", 1)],
        0,
        NodeId::from_secret(&key),
    );
    exchange_hello(&mut conn, &hello, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    if how == 0 {
        send_disconnect(&mut conn.writer, DisconnectReason::DisconnectRequested).await;
        // Wait for the server to close its side.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while conn.reader.read().await.is_ok() {}
        })
        .await;
    }
    Ok(())
}

async fn run_cycles(addr: std::net::SocketAddr, hub: NodeId, from: usize, n: usize) {
    let mut set: tokio::task::JoinSet<Result<(), String>> = tokio::task::JoinSet::new();
    for i in from..from + n {
        if set.len() >= CONCURRENCY {
            let r = set.join_next().await.expect("task").expect("no panic");
            r.expect("cycle");
        }
        set.spawn(async move {
            tokio::time::timeout(Duration::from_secs(10), cycle(addr, hub, i % 3))
                .await
                .map_err(|_| "cycle timed out".to_string())?
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("no panic").expect("cycle");
    }
}

async fn wait_idle(hub: &Server) {
    let start = Instant::now();
    while hub.peer_count() != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "peers not released"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Handshake tasks of abandoned connections end when they read EOF; give them a beat.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_handshake_disconnect_churn() {
    let cycles: usize = std::env::var("BRAID_CHURN_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    // 100k cycles take a while in a debug build; bound the run all the same.
    let limit = Duration::from_secs(60 + cycles as u64 / 20);
    let mut cfg = ServerConfig::new(
        SecretKey::new(&mut rand::thread_rng()),
        Some("127.0.0.1:0".parse().unwrap()),
    );
    cfg.protocols.push(echo());
    cfg.max_peers = 4 * CONCURRENCY;
    let hub = Server::start(cfg).await.expect("server");
    let (addr, id) = (hub.local_addr().unwrap(), hub.id());

    // Warm-up: let allocator arenas, the runtime and lazy statics settle.
    let warm = 200.min(cycles);
    run_cycles(addr, id, 0, warm).await;
    wait_idle(&hub).await;
    let (rss0, fds0, tasks0) = (
        process::rss_bytes().expect("VmRSS"),
        process::open_fds().expect("/proc/self/fd"),
        alive_tasks(),
    );

    let start = Instant::now();
    tokio::time::timeout(limit, run_cycles(addr, id, warm, cycles))
        .await
        .unwrap_or_else(|_| panic!("{cycles} cycles did not finish within {limit:?}"));
    let took = start.elapsed();
    wait_idle(&hub).await;
    let (rss1, fds1, tasks1) = (
        process::rss_bytes().expect("VmRSS"),
        process::open_fds().expect("/proc/self/fd"),
        alive_tasks(),
    );

    eprintln!(
        "CHURN {cycles} cycles in {:.1}s ({:.0}/s) | rss {:.1} -> {:.1} MiB | fds {fds0} -> {fds1} | tokio tasks {tasks0} -> {tasks1} | peers {}",
        took.as_secs_f64(),
        cycles as f64 / took.as_secs_f64(),
        rss0 as f64 / MIB as f64,
        rss1 as f64 / MIB as f64,
        hub.peer_count()
    );
    assert_eq!(hub.peer_count(), 0);
    assert!(
        rss1 <= rss0 + RSS_TOLERANCE,
        "resident memory grew from {rss0} to {rss1}"
    );
    assert!(fds1 <= fds0 + FD_TOLERANCE, "descriptors {fds0} -> {fds1}");
    assert!(tasks1 <= tasks0 + 2, "tokio tasks {tasks0} -> {tasks1}");
    hub.shutdown().await;
}
