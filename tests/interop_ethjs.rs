//! Live interop with a devp2p implementation written by others: `@ethereumjs/devp2p`
//! (installed by the test set-up with `npm ci`), on 127.0.0.1 with discovery off.
//! braid dials it and it dials braid; both sides must agree on the p2p version, snappy,
//! the capability offsets, the messages, and the disconnect reasons.

#[path = "support/ethjs.rs"]
mod ethjs;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ethjs::{ensure_installed, EthjsPeer};
use p2p::base::DisconnectReason;
use p2p::node::{Enode, NodeId};
use p2p::peer::{Peer, ProtoWriter};
use p2p::protocol::Protocol;
use p2p::server::{PeerEvent, Server, ServerConfig};
use secp256k1::SecretKey;
use serde_json::{json, Value};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(30);
const JS_KEY: &str = "4242424242424242424242424242424242424242424242424242424242424203";

type Received = mpsc::Receiver<(String, u64, Vec<u8>)>;

/// A protocol that records what it receives and lets the test write.
fn recorder(
    name: &'static str,
    length: u64,
    tx: mpsc::Sender<(String, u64, Vec<u8>)>,
    writers: Arc<Mutex<HashMap<String, ProtoWriter>>>,
) -> Protocol {
    Protocol::new(name, 1, length, move |_peer, mut rw| {
        let tx = tx.clone();
        writers
            .lock()
            .unwrap()
            .insert(name.to_string(), rw.writer());
        async move {
            loop {
                let m = rw.read().await?;
                tx.send((name.to_string(), m.code, m.payload.to_vec()))
                    .await
                    .ok();
            }
        }
    })
}

struct Node {
    server: Server,
    received: Received,
    writers: Arc<Mutex<HashMap<String, ProtoWriter>>>,
}

async fn braid_node() -> Node {
    let (tx, received) = mpsc::channel(64);
    let writers = Arc::new(Mutex::new(HashMap::new()));
    let key = SecretKey::new(&mut rand::thread_rng());
    let mut cfg = ServerConfig::new(key, Some("127.0.0.1:0".parse().unwrap()));
    cfg.protocols = vec![
        recorder("chat", 2, tx.clone(), writers.clone()),
        recorder("kv", 4, tx, writers.clone()),
    ];
    let server = Server::start(cfg).await.unwrap();
    Node {
        server,
        received,
        writers,
    }
}

fn js_id() -> String {
    let key = SecretKey::from_slice(&hex::decode(JS_KEY).unwrap()).unwrap();
    NodeId::from_secret(&key).to_string()
}

async fn wait_writer(node: &Node, name: &str) -> ProtoWriter {
    let start = std::time::Instant::now();
    loop {
        if let Some(w) = node.writers.lock().unwrap().get(name).cloned() {
            return w;
        }
        assert!(start.elapsed() < WAIT, "protocol {name} never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn recv(node: &mut Node) -> (String, u64, Vec<u8>) {
    tokio::time::timeout(WAIT, node.received.recv())
        .await
        .expect("no message from ethjs")
        .unwrap()
}

fn check_js_view(added: &Value, braid: &Server) {
    assert_eq!(added["id"], braid.id().to_string());
    assert_eq!(added["protocolVersion"], 5);
    assert_eq!(added["snappy"], true);
    assert_eq!(added["offsets"], json!({"chat": 16, "kv": 18}));
}

fn check_braid_view(peer: &Peer) {
    assert_eq!(peer.id().to_string(), js_id());
    assert_eq!(peer.hello().protocol_version, 5);
    assert!(peer.snappy(), "snappy must be on with a v5 peer");
    let offsets: Vec<(String, u64, u64)> = peer
        .protocols()
        .iter()
        .map(|c| (c.name.clone(), c.offset, c.length))
        .collect();
    assert_eq!(offsets, vec![("chat".into(), 16, 2), ("kv".into(), 18, 4)]);
}

/// Messages both ways on both capabilities.
async fn exchange(node: &mut Node, js: &mut EthjsPeer) {
    wait_writer(node, "chat")
        .await
        .write(1, &[0xc3, 0x82, 0x01, 0x02])
        .await
        .unwrap();
    let m = js.expect_event("message", WAIT).await;
    assert_eq!(
        (m["cap"].as_str(), m["code"].as_u64(), m["payload"].as_str()),
        (Some("chat"), Some(1), Some("c3820102"))
    );
    wait_writer(node, "kv")
        .await
        .write(3, &[0xc0])
        .await
        .unwrap();
    let m = js.expect_event("message", WAIT).await;
    assert_eq!(
        (m["cap"].as_str(), m["code"].as_u64(), m["payload"].as_str()),
        (Some("kv"), Some(3), Some("c0"))
    );

    js.send(json!({"cmd": "send", "cap": "kv", "code": 2, "payload": "c483616263"}))
        .await;
    assert_eq!(
        recv(node).await,
        ("kv".into(), 2, hex::decode("c483616263").unwrap())
    );
    let big = "ab".repeat(50_000);
    js.send(json!({"cmd": "send", "cap": "chat", "code": 0, "payload": big}))
        .await;
    let (name, code, payload) = recv(node).await;
    assert_eq!((name.as_str(), code, payload.len()), ("chat", 0, 50_000));
    assert!(payload.iter().all(|&b| b == 0xab));
}

#[tokio::test]
async fn braid_dials_ethjs() {
    if ensure_installed().is_none() {
        eprintln!("!!! SKIPPING ethjs interop: node/npm unavailable (set CI to make this fail)");
        return;
    }
    let mut js = EthjsPeer::spawn(&[
        "--key", JS_KEY, "--listen", "0", "--cap", "chat/1/2", "--cap", "kv/1/4",
    ])
    .await
    .unwrap();
    let listening = js.expect_event("listening", WAIT).await;
    let enode: Enode = listening["enode"].as_str().unwrap().parse().unwrap();
    let mut node = braid_node().await;
    let peer = node.server.dial(&enode).await.expect("dial ethjs");
    check_braid_view(&peer);
    let added = js.expect_event("peer_added", WAIT).await;
    check_js_view(&added, &node.server);
    assert_eq!(added["dialed"], false);

    exchange(&mut node, &mut js).await;

    // Our disconnect reason reaches ethjs as sent.
    peer.disconnect(DisconnectReason::ClientQuitting);
    let removed = js.expect_event("peer_removed", WAIT).await;
    assert_eq!(removed["reason"], 8);
    assert_eq!(removed["disconnectWe"], false);
    let closed = tokio::time::timeout(WAIT, peer.closed()).await.unwrap();
    assert_eq!(closed.reason, DisconnectReason::ClientQuitting);
    assert!(js.quit().await);
    node.server.shutdown().await;
}

#[tokio::test]
async fn ethjs_dials_braid() {
    if ensure_installed().is_none() {
        eprintln!("!!! SKIPPING ethjs interop: node/npm unavailable (set CI to make this fail)");
        return;
    }
    let mut node = braid_node().await;
    let mut events = node.server.subscribe();
    let enode = node.server.enode().unwrap().to_string();
    let mut js = EthjsPeer::spawn(&[
        "--key", JS_KEY, "--dial", &enode, "--cap", "chat/1/2", "--cap", "kv/1/4",
    ])
    .await
    .unwrap();
    let added = js.expect_event("peer_added", WAIT).await;
    check_js_view(&added, &node.server);
    assert_eq!(added["dialed"], true);
    match tokio::time::timeout(WAIT, events.recv())
        .await
        .unwrap()
        .unwrap()
    {
        PeerEvent::Added { id, direction, .. } => {
            assert_eq!(id.to_string(), js_id());
            assert_eq!(direction, p2p::peer::Direction::Inbound);
        }
        other => panic!("unexpected event {other:?}"),
    }
    let peer = node.server.peers().pop().unwrap();
    check_braid_view(&peer);

    exchange(&mut node, &mut js).await;

    // ethjs's disconnect reason (sent as a bare, uncompressed integer) reaches us as sent.
    js.send(json!({"cmd": "disconnect", "reason": 0x10})).await;
    let closed = tokio::time::timeout(WAIT, peer.closed()).await.unwrap();
    assert_eq!(closed.reason, DisconnectReason::SubprotocolError);
    assert!(closed.remote);
    assert!(js.quit().await);
    node.server.shutdown().await;
}
