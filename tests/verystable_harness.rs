//! Proves the Bitcoin Core test-framework harness works by pointing two framework peers
//! (`tests/interop/btc/peer.py`) at each other over loopback.
//!
//! Skips (with a note) when python3 is unavailable and `CI` is unset; fails when `CI` is set.

#[path = "support/verystable.rs"]
mod verystable;

use std::time::Duration;

use serde_json::{json, Value};
use verystable::{ensure_installed, event, recv, CorePeer};

/// Generous: python start-up plus a loaded 2-core machine.
const T: Duration = Duration::from_secs(30);

/// A `--listen 0` peer and a peer dialing it, or `None` when the harness is skipped.
async fn pair(listener_args: &[&str], dialer_args: &[&str]) -> Option<(CorePeer, CorePeer)> {
    tokio::task::spawn_blocking(ensure_installed)
        .await
        .expect("ensure_installed panicked")?;
    let mut args = vec!["--listen", "0"];
    args.extend_from_slice(listener_args);
    let mut listener = CorePeer::spawn(&args).await.expect("spawn listener");
    let port = listener.listening_port(T).await;
    let target = format!("127.0.0.1:{port}");
    let mut args = vec!["--dial", target.as_str()];
    args.extend_from_slice(dialer_args);
    let dialer = CorePeer::spawn(&args).await.expect("spawn dialer");
    Some((listener, dialer))
}

/// `recv` events seen by `peer` up to and including the one for `last`, in arrival order.
async fn recv_until(peer: &mut CorePeer, last: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let ev = peer.expect_event(event("recv"), T).await;
        let done = ev["command"] == last;
        seen.push(ev);
        if done {
            return seen;
        }
    }
}

fn commands(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["command"].as_str().unwrap_or_default())
        .collect()
}

/// Both peers connected and through the handshake (asserting its exact message order).
async fn handshaken(listener: &mut CorePeer, dialer: &mut CorePeer) -> (Value, Value) {
    assert_eq!(
        listener.expect_event(event("connected"), T).await["direction"],
        "inbound"
    );
    assert_eq!(
        dialer.expect_event(event("connected"), T).await["direction"],
        "outbound"
    );
    // Core's framework: the dialer sends version first; each side answers the other's
    // version with wtxidrelay, sendaddrv2, verack; only the dialing side sends getaddr.
    let on_listener = recv_until(listener, "getaddr").await;
    assert_eq!(
        commands(&on_listener),
        ["version", "wtxidrelay", "sendaddrv2", "verack", "getaddr"]
    );
    let on_dialer = recv_until(dialer, "verack").await;
    assert_eq!(
        commands(&on_dialer),
        ["version", "wtxidrelay", "sendaddrv2", "verack"]
    );
    (on_listener[0].clone(), on_dialer[0].clone())
}

#[tokio::test]
async fn handshake_and_ping_between_two_framework_peers() {
    let Some((mut listener, mut dialer)) = pair(&[], &["--start-height", "7"]).await else {
        return;
    };
    let (dialer_version, listener_version) = handshaken(&mut listener, &mut dialer).await;

    let f = &dialer_version["fields"];
    assert_eq!(f["nVersion"], 70016);
    assert_eq!(f["nServices"], 9, "NODE_NETWORK | NODE_WITNESS");
    assert_eq!(f["strSubVer"], "/python-p2p-tester:0.0.3/");
    assert_eq!(f["nStartingHeight"], 7, "--start-height reaches the wire");
    assert_eq!(f["relay"], 1);
    assert_eq!(f["addrTo"]["ip"], "127.0.0.1");
    assert!(f["nNonce"].is_u64());
    assert_eq!(listener_version["fields"]["nStartingHeight"], -1);
    // The listener fills addrTo with the real remote address, not the framework's "0".
    assert_eq!(listener_version["fields"]["addrTo"]["ip"], "127.0.0.1");

    // A nonce above 2^63 catches sign/width mistakes anywhere on the JSON path.
    let nonce: u64 = 0xDEAD_BEEF_0123_4567;
    dialer
        .send(json!({"cmd": "ping", "nonce": nonce, "id": 1}))
        .await;
    let sent = dialer.expect_event(event("sent"), T).await;
    assert_eq!(sent["command"], "ping");
    assert_eq!(sent["id"], 1);
    let ping = listener.expect_event(recv("ping"), T).await;
    assert_eq!(ping["fields"]["nonce"].as_u64(), Some(nonce));
    let pong = dialer.expect_event(recv("pong"), T).await;
    assert_eq!(pong["fields"]["nonce"].as_u64(), Some(nonce));

    // Closing the dialer's stdin makes it disconnect and exit cleanly.
    let status = dialer.shutdown(T).await;
    assert!(status.success(), "dialer exit status {status}");
    listener.expect_event(event("disconnected"), T).await;
    let status = listener.shutdown(T).await;
    assert!(status.success(), "listener exit status {status}");
}

#[tokio::test]
async fn relays_inv_addr_tx_and_tolerates_reject() {
    let Some((mut listener, mut dialer)) = pair(&[], &[]).await else {
        return;
    };
    handshaken(&mut listener, &mut dialer).await;

    // inv (display-order hash) arrives with both orders, and the framework's default
    // P2PInterface answers it with getdata.
    let display = format!("{}ab", "00".repeat(31));
    let wire = format!("ab{}", "00".repeat(31));
    dialer
        .send(json!({"cmd": "inv", "items": [[1, display], [2, display]]}))
        .await;
    let inv = listener.expect_event(recv("inv"), T).await;
    assert_eq!(inv["fields"]["inv"], json!([[1, display], [2, display]]));
    assert_eq!(inv["fields"]["inv_wire"], json!([[1, wire], [2, wire]]));
    let getdata = dialer.expect_event(recv("getdata"), T).await;
    assert_eq!(
        getdata["fields"]["inv"],
        json!([[1, display], [2, display]])
    );

    listener
        .send(json!({"cmd": "addr", "addrs": [["1.2.3.4", 8333, 9, 1_700_000_000]]}))
        .await;
    let addr = dialer.expect_event(recv("addr"), T).await;
    assert_eq!(
        addr["fields"]["addrs"],
        json!([["1.2.3.4", 8333, 9, 1_700_000_000]])
    );

    // A 1-in/1-out legacy tx (OP_RETURN output); txid is its double-SHA256, display order.
    let tx = format!(
        "0200000001{}0000000000ffffffff01e803000000000000016a00000000",
        "11".repeat(32)
    );
    dialer.send(json!({"cmd": "tx", "hex": tx})).await;
    let sent = dialer
        .expect_event(|e: &Value| e["event"] == "sent" && e["command"] == "tx", T)
        .await;
    let got = listener.expect_event(recv("tx"), T).await;
    assert_eq!(got["fields"]["hex"], tx.as_str());
    assert_eq!(got["fields"]["txid"], sent["txid"]);
    assert_eq!(
        got["fields"]["txid"],
        "0080bf36e07c9ced6faf891b5d67a11bb5ccf6118ca3763e0bc5e56cc479a9d4"
    );
    assert_eq!(got["fields"]["wtxid"], got["fields"]["txid"], "no witness");

    // BIP61 reject (as btcd sends it) must not kill the framework's connection.
    let reject = format!("0274781003626164ab{}", "00".repeat(31));
    listener
        .send(json!({"cmd": "raw", "command": "reject", "payload": reject}))
        .await;
    let rej = dialer.expect_event(recv("reject"), T).await;
    assert_eq!(rej["fields"]["message"], "tx");
    assert_eq!(rej["fields"]["code"], 16);
    assert_eq!(rej["fields"]["reason"], "bad");
    assert_eq!(rej["fields"]["hash"], display.as_str());
    dialer.send(json!({"cmd": "ping", "nonce": 5})).await;
    let pong = dialer.expect_event(recv("pong"), T).await;
    assert_eq!(pong["fields"]["nonce"], 5, "link survived the reject");

    // Bad commands are reported, not fatal.
    dialer
        .send(json!({"cmd": "ping", "nonce": -1, "id": "x"}))
        .await;
    let err = dialer.expect_event(event("error"), T).await;
    assert_eq!(err["id"], "x");
}

#[tokio::test]
async fn strict_mode_drops_the_link_on_unknown_commands_but_not_on_reject() {
    let Some((mut listener, mut dialer)) = pair(&[], &["--strict-unknown"]).await else {
        return;
    };
    handshaken(&mut listener, &mut dialer).await;

    listener
        .send(json!({"cmd": "raw", "command": "reject", "payload": ""}))
        .await;
    dialer.expect_event(recv("reject"), T).await;
    listener
        .send(json!({"cmd": "raw", "command": "xyz", "payload": "01"}))
        .await;
    // Core's framework raises on unknown commands and asyncio closes the transport.
    let gone = dialer.expect_event(event("disconnected"), T).await;
    assert!(
        gone["reason"].as_str().is_some_and(|r| r.contains("xyz")),
        "reason names the unknown command: {gone}"
    );
}

#[tokio::test]
async fn hostile_vector_count_drops_the_link_instead_of_hanging() {
    let Some((mut listener, mut dialer)) = pair(&[], &[]).await else {
        return;
    };
    handshaken(&mut listener, &mut dialer).await;

    // inv claiming 0xffffffff entries with none present: upstream's decoder would loop
    // four billion times; peer.py's guard rejects it and the link drops at once.
    listener
        .send(json!({"cmd": "raw", "command": "inv", "payload": "feffffffff"}))
        .await;
    let gone = dialer
        .expect_event(event("disconnected"), Duration::from_secs(10))
        .await;
    assert!(
        gone["reason"]
            .as_str()
            .is_some_and(|r| r.contains("exceeds")),
        "reason explains the bad count: {gone}"
    );
}
