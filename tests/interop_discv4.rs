//! Discovery v4 interop with a discv4 implementation written by others: the DPT of
//! `@ethereumjs/devp2p` (driven by `tests/interop/ethjs/dpt.mjs`), on 127.0.0.1.
//! Both directions: ethjs bootstraps from a braid node and finds the braid nodes it
//! knows (ping/pong, findnode/neighbours answered by braid), and braid bootstraps from
//! ethjs and finds, through ethjs' neighbours, a braid node it was never told about.
//! Skipped loudly without node unless CI is set.

#[path = "support/ethjs.rs"]
mod ethjs;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use ethjs::{ensure_installed, EthjsPeer};
use p2p::discover::v4::{Bootnode, Discv4, Discv4Config};
use p2p::node::{NodeId, NodeKey};
use serde_json::{json, Value};

const LOOPBACK: &str = "127.0.0.1";
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

fn skip() -> bool {
    if ensure_installed().is_none() {
        eprintln!("!!! SKIPPING discv4 interop: node/npm unavailable (set CI to make this fail)");
        return true;
    }
    false
}

/// A braid node's config. Every node gets its own TCP port: DPT tells nodes apart by
/// `address:tcpPort` before it knows their ids, and all of them share 127.0.0.1.
fn braid_config(boot: Option<Bootnode>) -> Discv4Config {
    static NEXT_TCP_PORT: AtomicU16 = AtomicU16::new(30400);
    let mut c = Discv4Config::new(
        NodeKey::generate(),
        SocketAddr::new(LOOPBACK.parse().unwrap(), 0),
    );
    c.tcp_port = NEXT_TCP_PORT.fetch_add(1, Ordering::Relaxed);
    c.request_timeout = Duration::from_millis(900);
    c.refresh_interval = Duration::from_secs(1);
    c.revalidate_interval = Duration::from_millis(500);
    c.bootnodes = boot.into_iter().collect();
    c
}

fn hex_id(id: &NodeId) -> String {
    hex::encode(id.0)
}

async fn spawn_dpt() -> (EthjsPeer, Value) {
    let key = hex::encode(NodeKey::generate().secret().secret_bytes());
    let mut js = EthjsPeer::spawn_script("dpt.mjs", &["--key", &key, "--refresh", "1000"])
        .await
        .expect("spawning dpt.mjs");
    let listening = js.expect_event("listening", EVENT_TIMEOUT).await;
    (js, listening)
}

async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ethjs_dpt_bootstraps_from_braid_and_finds_braid_nodes() {
    if skip() {
        return;
    }
    let boot = Discv4::start(braid_config(None)).await.unwrap();
    let others = [
        Discv4::start(braid_config(Some(Bootnode::Enode(boot.local_enode()))))
            .await
            .unwrap(),
        Discv4::start(braid_config(Some(Bootnode::Enode(boot.local_enode()))))
            .await
            .unwrap(),
    ];
    assert!(wait_until(Duration::from_secs(10), || boot.table_len() >= 2).await);

    let (mut js, _) = spawn_dpt().await;
    js.send(json!({"cmd": "bootstrap", "enode": boot.local_enode().to_string()}))
        .await;
    js.expect_event("bootstrapped", EVENT_TIMEOUT).await;

    // DPT learns the other braid nodes only from braid's Neighbors answers, and adds
    // each one after it answered DPT's ping.
    let mut wanted: HashSet<String> = others.iter().map(|n| hex_id(&n.local_id())).collect();
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while !wanted.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = js.expect_event("peer_added", left).await;
        if let Some(id) = ev["id"].as_str() {
            wanted.remove(id);
        }
    }
    // And braid keeps DPT as a verified node.
    let js_peers_seen = wait_until(Duration::from_secs(5), || boot.table_len() >= 3).await;
    assert!(js_peers_seen, "braid bootnode table: {}", boot.table_len());
    assert!(js.quit().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn braid_bootstraps_from_ethjs_dpt_and_finds_through_it() {
    if skip() {
        return;
    }
    let (mut js, listening) = spawn_dpt().await;
    let js_enode: Bootnode = listening["enode"].as_str().unwrap().parse().unwrap();
    let js_id = js_enode.node().unwrap().id;

    // First braid node: bootstraps from DPT, which then knows it.
    let first = Discv4::start(braid_config(Some(js_enode.clone())))
        .await
        .unwrap();
    let first_hex = hex_id(&first.local_id());
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = js.expect_event("peer_added", left).await;
        if ev["id"].as_str() == Some(first_hex.as_str()) {
            break;
        }
    }

    // Second braid node: told only about DPT, it finds the first one through DPT's
    // Neighbors answer.
    let second = Discv4::start(braid_config(Some(js_enode))).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || second
            .table_nodes()
            .iter()
            .any(|n| n.id == js_id))
        .await,
        "DPT never answered braid's ping"
    );
    let found = second.lookup(first.local_id()).await;
    assert_eq!(
        found.first().map(|n| n.id),
        Some(first.local_id()),
        "lookup through ethjs found {} nodes",
        found.len()
    );
    // DPT answered the lookup's FindNode, so it is among the answering nodes.
    assert!(found.iter().any(|n| n.id == js_id), "DPT not in {found:?}");
    assert!(js.quit().await);
}
