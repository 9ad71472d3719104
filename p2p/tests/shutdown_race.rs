//! Shutdown racing many inbound dials: once `shutdown()` returns, no task the server
//! started and no socket it opened is left. In its own test binary so the descriptor
//! count is not disturbed by other tests.

use std::time::{Duration, Instant};

use p2p::base::{Capability, Hello};
use p2p::conn::Conn;
use p2p::node::NodeId;
use p2p::protocol::Protocol;
use p2p::server::{Server, ServerConfig};
use p2p::session::exchange_hello;
use p2p::testkit::process;
use secp256k1::SecretKey;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const DIALS: usize = 200;
fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// One dial. Returns whether the hub still held the link open 5 s after it was up (it
/// must close every link on shutdown).
async fn dial(addr: std::net::SocketAddr, hub: NodeId) -> bool {
    let key = SecretKey::new(&mut rand::thread_rng());
    let Ok(stream) = TcpStream::connect(addr).await else {
        return false;
    };
    let Ok(mut conn) = Conn::initiate(stream, &key, &hub, Duration::from_secs(5)).await else {
        return false;
    };
    let hello = Hello::new(
        "race",
        vec![Capability::new("echo", 1)],
        0,
        NodeId::from_secret(&key),
    );
    if exchange_hello(&mut conn, &hello, Duration::from_secs(5))
        .await
        .is_err()
    {
        return false;
    }
    tokio::time::timeout(Duration::from_secs(5), async {
        while conn.reader.read().await.is_ok() {}
    })
    .await
    .is_err()
}

/// One round: start a hub, race `DIALS` dials against its shutdown once `trigger` peers
/// are up, and check nothing is left.
async fn round(trigger: usize) {
    let fds_before = process::open_fds().expect("/proc/self/fd");
    let tasks_before = alive_tasks();
    let key = SecretKey::new(&mut rand::thread_rng());
    let mut cfg = ServerConfig::new(key, Some("127.0.0.1:0".parse().unwrap()));
    cfg.protocols
        .push(Protocol::new("echo", 1, 2, |_peer, mut rw| async move {
            loop {
                rw.read().await?;
            }
        }));
    cfg.max_peers = 2 * DIALS;
    cfg.max_pending = DIALS;
    let hub = Server::start(cfg).await.unwrap();
    let (addr, id) = (hub.local_addr().unwrap(), hub.id());

    let mut dials = JoinSet::new();
    for _ in 0..DIALS {
        dials.spawn(dial(addr, id));
    }
    // Shut down while links are still arriving: some are running, some in their
    // handshakes, some between Hello and becoming a peer.
    let start = Instant::now();
    while hub.peer_count() < trigger && start.elapsed() < Duration::from_secs(10) {
        tokio::task::yield_now().await;
    }
    let peers_at_shutdown = hub.peer_count();
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(15), hub.shutdown())
        .await
        .expect("shutdown hung");
    let took = t.elapsed();
    assert_eq!(hub.peer_count(), 0, "a peer outlived shutdown");

    let mut held_open = 0;
    while let Some(r) = dials.join_next().await {
        held_open += r.expect("dial task panicked") as usize;
    }
    drop(hub);
    // Whatever is left must already be gone (a moment for the last frees to land).
    let settle = Instant::now();
    while (alive_tasks() > tasks_before || process::open_fds().expect("/proc/self/fd") > fds_before)
        && settle.elapsed() < Duration::from_millis(500)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "shutdown with {peers_at_shutdown} peers up took {took:?}; links left open: {held_open}; \
         tasks {tasks_before} -> {}; fds {fds_before} -> {}",
        alive_tasks(),
        process::open_fds().expect("/proc/self/fd")
    );
    assert_eq!(held_open, 0, "links the hub kept open past shutdown");
    assert!(alive_tasks() <= tasks_before, "tasks left");
    assert!(
        process::open_fds().expect("/proc/self/fd") <= fds_before,
        "descriptors left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_racing_200_dials_leaves_no_task_or_socket() {
    // Several rounds, shutting down at different points of the ramp-up: the race
    // (a peer claimed just before shutdown, active just after its snapshot) is narrow.
    for trigger in [DIALS / 8, DIALS / 4, DIALS / 2, DIALS / 4, DIALS / 8] {
        round(trigger).await;
    }
}
