//! Proves the ethjs interop harness itself: two @ethereumjs/devp2p peers driven through
//! `support::ethjs::EthjsPeer` handshake, exchange capability messages both ways and
//! disconnect with a reason the other side sees. Skips (loudly) when node is unavailable and
//! `CI` is unset.

#[path = "support/ethjs.rs"]
mod ethjs;

use std::time::Duration;

use ethjs::{ensure_installed, EthjsPeer};
use secp256k1::{PublicKey, Secp256k1, SecretKey};
use serde_json::{json, Value};

const KEY_A: &str = "4242424242424242424242424242424242424242424242424242424242424201";
const KEY_B: &str = "4242424242424242424242424242424242424242424242424242424242424202";
/// Generous: two node processes share a loaded 2-core machine with other test binaries.
const WAIT: Duration = Duration::from_secs(20);

/// Node id (64-byte uncompressed public key without the 0x04 prefix) as lowercase hex.
fn node_id(secret_hex: &str) -> String {
    let bytes = hex::decode(secret_hex).expect("test key is hex");
    let sk = SecretKey::from_slice(&bytes).expect("test key is a valid scalar");
    let pk = PublicKey::from_secret_key(&Secp256k1::new(), &sk);
    hex::encode(&pk.serialize_uncompressed()[1..])
}

fn skip() -> bool {
    if ensure_installed().is_none() {
        eprintln!("!!! SKIPPING ethjs harness test: node/npm unavailable");
        return true;
    }
    false
}

/// A connected pair: both peers, the `peer_added` event each saw, and A's listen port.
struct Pair {
    a: EthjsPeer,
    b: EthjsPeer,
    added_a: Value,
    added_b: Value,
    a_port: u64,
}

/// Starts A listening on an ephemeral port and B dialing it; returns both after `peer_added`.
async fn connected_pair(b_caps: &[&str]) -> Pair {
    let mut a = EthjsPeer::spawn(&[
        "--key", KEY_A, "--listen", "0", "--cap", "chat/1/2", "--cap", "kv/1/4",
    ])
    .await
    .expect("spawn A");
    let listening = a.expect_event("listening", WAIT).await;
    assert_eq!(listening["id"], node_id(KEY_A));
    let enode = listening["enode"]
        .as_str()
        .expect("enode string")
        .to_owned();
    let port = listening["port"].as_u64().expect("port");
    assert_eq!(
        enode,
        format!("enode://{}@127.0.0.1:{port}", node_id(KEY_A))
    );

    let mut args = vec!["--key", KEY_B, "--dial", enode.as_str()];
    for cap in b_caps {
        args.extend(["--cap", cap]);
    }
    let mut b = EthjsPeer::spawn(&args).await.expect("spawn B");
    let added_a = a.expect_event("peer_added", WAIT).await;
    let added_b = b.expect_event("peer_added", WAIT).await;
    Pair {
        a,
        b,
        added_a,
        added_b,
        a_port: port,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ethjs_peers_handshake_talk_and_disconnect() {
    if skip() {
        return;
    }
    let Pair {
        mut a,
        mut b,
        added_a,
        added_b,
        a_port,
    } = connected_pair(&["chat/1/2", "kv/1/4", "other/3/1"]).await;

    // Identities, Hello version, snappy state and offsets as each side sees the other.
    assert_eq!(added_a["id"], node_id(KEY_B));
    assert_eq!(added_b["id"], node_id(KEY_A));
    assert_eq!(added_a["dialed"], false);
    assert_eq!(added_b["dialed"], true);
    for added in [&added_a, &added_b] {
        assert_eq!(added["protocolVersion"], 5);
        assert_eq!(added["snappy"], true);
        // Shared caps sorted by name, compact from 0x10: chat (2 ids) then kv.
        assert_eq!(added["offsets"], json!({"chat": 16, "kv": 18}));
    }
    // B advertised an extra capability A does not share; A still sees it in the Hello.
    assert_eq!(
        added_a["caps"],
        json!([{"name":"chat","version":1},{"name":"kv","version":1},{"name":"other","version":3}])
    );
    // A listens, so its Hello carries the real port; B only dials and sends none (0).
    assert_eq!(added_b["port"], a_port);
    assert_eq!(added_a["port"], 0);

    // A -> B on chat, B -> A on kv (last valid code) and an empty payload.
    a.send(json!({"cmd":"send","cap":"chat","code":1,"payload":"c3820102"}))
        .await;
    let msg = b.expect_event("message", WAIT).await;
    assert_eq!(
        (&msg["cap"], &msg["code"], &msg["payload"]),
        (&json!("chat"), &json!(1), &json!("c3820102"))
    );
    assert_eq!(msg["id"], node_id(KEY_A));

    b.send(json!({"cmd":"send","cap":"kv","code":3,"payload":""}))
        .await;
    let msg = a.expect_event("message", WAIT).await;
    assert_eq!(
        (&msg["cap"], &msg["code"], &msg["payload"]),
        (&json!("kv"), &json!(3), &json!(""))
    );

    // Out-of-range codes are refused locally with an error event, nothing goes on the wire.
    b.send(json!({"cmd":"send","cap":"chat","code":2,"payload":"00"}))
        .await;
    let err = b.expect_event("error", WAIT).await;
    assert!(
        err["message"].as_str().unwrap().contains("out of range"),
        "{err}"
    );

    // B disconnects with 0x08; A sees that reason as the remote's.
    b.send(json!({"cmd":"disconnect","reason":8})).await;
    let removed_a = a.expect_event("peer_removed", WAIT).await;
    assert_eq!(removed_a["reason"], 8);
    assert_eq!(removed_a["reasonName"], "CLIENT_QUITTING");
    assert_eq!(removed_a["disconnectWe"], false);
    let removed_b = b.expect_event("peer_removed", WAIT).await;
    assert_eq!(removed_b["reason"], 8);
    assert_eq!(removed_b["disconnectWe"], true);
    // Nothing the tests did not expect: no stray errors left unconsumed.
    assert!(
        a.pending().iter().all(|ev| ev["event"] != "error"),
        "{:?}",
        a.pending()
    );

    assert!(a.quit().await, "A exits cleanly");
    assert!(b.quit().await, "B exits cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quitting_peer_sends_client_quitting_and_disjoint_caps_are_useless() {
    if skip() {
        return;
    }
    let Pair { a, mut b, .. } = connected_pair(&["chat/1/2"]).await;
    // Quit (stdin closed) sends DISCONNECT 0x08 before exiting.
    assert!(a.quit().await, "A exits cleanly");
    let removed = b.expect_event("peer_removed", WAIT).await;
    assert_eq!(removed["reason"], 8);
    assert_eq!(removed["disconnectWe"], false);
    let closed = b.expect_event("socket_closed", WAIT).await;
    assert_eq!(closed["handshake"], true);
    assert!(b.quit().await);

    // No shared capability: ethjs drops the link during Hello; only socket_closed reports it.
    let mut a = EthjsPeer::spawn(&["--key", KEY_A, "--listen", "0", "--cap", "chat/1/2"])
        .await
        .expect("spawn A");
    let enode = a.expect_event("listening", WAIT).await["enode"]
        .as_str()
        .expect("enode")
        .to_owned();
    let mut b = EthjsPeer::spawn(&["--key", KEY_B, "--dial", &enode, "--cap", "kv/1/4"])
        .await
        .expect("spawn B");
    let closed = a.expect_event("socket_closed", WAIT).await;
    assert_eq!(closed["handshake"], false);
    let closed = b.expect_event("socket_closed", WAIT).await;
    assert_eq!(closed["handshake"], false);
    assert!(
        b.pending().iter().all(|ev| ev["event"] != "peer_added"),
        "{:?}",
        b.pending()
    );
    assert!(a.quit().await);
    assert!(b.quit().await);
}
