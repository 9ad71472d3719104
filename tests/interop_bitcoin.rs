//! Live interop between our bitcoin peer (native TCP, regtest magic) and Bitcoin Core's
//! own P2P code: the functional-test framework from the PyPI package `verystable`, driven
//! by `tests/interop/btc/peer.py`. Both directions, on 127.0.0.1.
//!
//! Skips (with a note) when python3 is unavailable and `CI` is unset; fails when `CI` is set.

#[path = "support/verystable.rs"]
mod verystable;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocols::bitcoin::peer::{Config, Listener, NativeTransport, Peer};
use protocols::bitcoin::wire::{
    inv_type, services, Hash256, InvVect, Message, MsgGetBlocks, MsgPing, NetAddress, Network,
    TimedNetAddress, Tx,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use verystable::{ensure_installed, event, recv, CorePeer};

/// Generous: python start-up plus a loaded 2-core machine.
const T: Duration = Duration::from_secs(30);

/// The harness's 1-in/1-out legacy tx and its txid (display order), as checked by
/// `tests/verystable_harness.rs`.
fn core_tx_hex() -> String {
    format!(
        "0200000001{}0000000000ffffffff01e803000000000000016a00000000",
        "11".repeat(32)
    )
}
const CORE_TXID: &str = "0080bf36e07c9ced6faf891b5d67a11bb5ccf6118ca3763e0bc5e56cc479a9d4";

/// A transaction of ours, served on getdata.
fn our_tx() -> Tx {
    let mut t = Vec::new();
    t.extend_from_slice(&1i32.to_le_bytes());
    t.push(1);
    t.extend_from_slice(&[0x22; 32]);
    t.extend_from_slice(&0u32.to_le_bytes());
    t.push(0);
    t.extend_from_slice(&u32::MAX.to_le_bytes());
    t.push(1);
    t.extend_from_slice(&1000u64.to_le_bytes());
    t.push(1);
    t.push(0x6a); // OP_RETURN
    t.extend_from_slice(&0u32.to_le_bytes());
    Tx::from_bytes(t.into()).expect("valid tx")
}

/// Records what our peer's listeners see; serves `tx` to getdata; fetches announced txs.
struct Probe {
    seen: mpsc::Sender<Message>,
    tx: Tx,
    fetch: bool,
    handshake: Mutex<Vec<&'static str>>,
}

impl Probe {
    fn new(fetch: bool) -> (Arc<Probe>, mpsc::Receiver<Message>) {
        let (seen, rx) = mpsc::channel(1024);
        (
            Arc::new(Probe {
                seen,
                tx: our_tx(),
                fetch,
                handshake: Mutex::new(Vec::new()),
            }),
            rx,
        )
    }
    fn put(&self, m: Message) {
        let _ = self.seen.try_send(m);
    }
}

impl Listener for Probe {
    fn on_verack(&self, _: &Peer) {
        self.handshake.lock().unwrap().push("verack");
    }
    fn on_send_addr_v2(&self, _: &Peer) {
        self.handshake.lock().unwrap().push("sendaddrv2");
    }
    fn on_wtxid_relay(&self, _: &Peer) {
        self.handshake.lock().unwrap().push("wtxidrelay");
    }
    fn on_get_addr(&self, _: &Peer) {
        self.put(Message::GetAddr);
    }
    fn on_addr(&self, _: &Peer, a: &[TimedNetAddress]) {
        self.put(Message::Addr(a.to_vec()));
    }
    fn on_pong(&self, _: &Peer, n: u64) {
        self.put(Message::Pong(n));
    }
    fn on_ping(&self, _: &Peer, p: &MsgPing) {
        self.put(Message::Ping(*p));
    }
    fn on_inv(&self, peer: &Peer, inv: &[InvVect]) {
        if self.fetch {
            assert!(peer.try_queue_message(Message::GetData(inv.to_vec()), None));
        }
        self.put(Message::Inv(inv.to_vec()));
    }
    fn on_get_data(&self, peer: &Peer, inv: &[InvVect]) {
        if inv.iter().any(|iv| iv.hash == self.tx.txid()) {
            assert!(peer.try_queue_message(Message::Tx(self.tx.clone()), None));
        }
        self.put(Message::GetData(inv.to_vec()));
    }
    fn on_get_headers(&self, _: &Peer, m: &MsgGetBlocks) {
        self.put(Message::GetHeaders(m.clone()));
    }
    fn on_tx(&self, _: &Peer, tx: &Tx) {
        self.put(Message::Tx(tx.clone()));
    }
}

fn config(probe: Arc<Probe>) -> Config {
    Config {
        network: Network::Regtest,
        services: services::NETWORK | services::WITNESS,
        user_agent_name: "braid".into(),
        user_agent_version: "0.1".into(),
        // Keep the test quick; the 10 s default is exercised in the unit tests.
        trickle_interval: Duration::from_millis(200),
        listener: probe,
        ..Config::default()
    }
}

async fn expect_msg(rx: &mut mpsc::Receiver<Message>, pred: impl Fn(&Message) -> bool) -> Message {
    let fut = async {
        loop {
            match rx.recv().await {
                Some(m) if pred(&m) => return m,
                Some(_) => continue,
                None => panic!("probe channel closed"),
            }
        }
    };
    tokio::time::timeout(T, fut)
        .await
        .expect("expected message did not reach our peer")
}

async fn wait_handshake(peer: &Peer) {
    let fut = async {
        while !peer.verack_received() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(T, fut)
        .await
        .unwrap_or_else(|_| panic!("handshake with Core's framework: {:?}", peer.close_reason()));
}

/// `recv` events up to and including `last`, as command names.
async fn recv_until(core: &mut CorePeer, last: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let ev = core.expect_event(event("recv"), T).await;
        let cmd = ev["command"].as_str().unwrap_or_default().to_owned();
        seen.push(cmd.clone());
        if cmd == last {
            return seen;
        }
    }
}

/// The exchanges both directions share, after the handshake.
async fn exercise(
    core: &mut CorePeer,
    peer: &Peer,
    probe: &Probe,
    rx: &mut mpsc::Receiver<Message>,
) {
    // Ping from Core: our pong echoes the nonce (above 2^63 to catch width mistakes).
    let nonce: u64 = 0xDEAD_BEEF_0123_4567;
    core.send(json!({"cmd": "ping", "nonce": nonce})).await;
    let pong = core.expect_event(recv("pong"), T).await;
    assert_eq!(pong["fields"]["nonce"].as_u64(), Some(nonce));

    // Our ping: Core's framework answers; the stats record it.
    peer.queue_message(Message::Ping(MsgPing { nonce: 4242 }), None)
        .await;
    let ping = core.expect_event(recv("ping"), T).await;
    assert_eq!(ping["fields"]["nonce"].as_u64(), Some(4242));
    expect_msg(rx, |m| *m == Message::Pong(4242)).await;
    assert_eq!(peer.last_ping_nonce(), 0, "matching pong clears the nonce");

    // inv -> getdata -> tx: we announce our tx, Core's framework asks for it, we serve it.
    let txid = probe.tx.txid();
    peer.queue_inventory(InvVect {
        inv_type: inv_type::TX,
        hash: txid,
    })
    .await;
    let inv = core.expect_event(recv("inv"), T).await;
    assert_eq!(inv["fields"]["inv"], json!([[1, txid.to_string()]]));
    expect_msg(
        rx,
        |m| matches!(m, Message::GetData(v) if v.iter().any(|iv| iv.hash == txid)),
    )
    .await;
    let tx = core.expect_event(recv("tx"), T).await;
    assert_eq!(
        tx["fields"]["txid"],
        txid.to_string(),
        "Core computes our txid"
    );
    assert_eq!(
        tx["fields"]["hex"],
        hex::encode(probe.tx.as_bytes()),
        "bytes relayed verbatim"
    );

    // A tx from Core arrives with the right txid.
    core.send(json!({"cmd": "tx", "hex": core_tx_hex()})).await;
    match expect_msg(rx, |m| matches!(m, Message::Tx(_))).await {
        Message::Tx(t) => assert_eq!(t.txid().to_string(), CORE_TXID),
        _ => unreachable!(),
    }

    // addr both ways.
    let sent = peer
        .push_addr(&[TimedNetAddress {
            time: 1_700_000_000,
            addr: NetAddress::from_socket_addr("1.2.3.4:8333".parse().unwrap(), 9),
        }])
        .await;
    assert_eq!(sent.len(), 1);
    let addr = core.expect_event(recv("addr"), T).await;
    assert_eq!(
        addr["fields"]["addrs"],
        json!([["1.2.3.4", 8333, 9, 1_700_000_000]])
    );
    core.send(json!({"cmd": "addr", "addrs": [["5.6.7.8", 18444, 1, 1_700_000_001]]}))
        .await;
    match expect_msg(rx, |m| matches!(m, Message::Addr(_))).await {
        Message::Addr(a) => {
            assert_eq!(a.len(), 1);
            assert_eq!(a[0].addr.socket_addr(), "5.6.7.8:18444".parse().unwrap());
            assert_eq!(a[0].time, 1_700_000_001);
        }
        _ => unreachable!(),
    }

    // getheaders both ways.
    let loc = Hash256([0x5a; 32]);
    assert!(peer.push_get_headers(&[loc], Hash256::ZERO).await.unwrap());
    let gh = core.expect_event(recv("getheaders"), T).await;
    assert_eq!(gh["fields"]["locator"], json!([loc.to_string()]));
    core.send(json!({"cmd": "getheaders", "locator": [loc.to_string()]}))
        .await;
    match expect_msg(rx, |m| matches!(m, Message::GetHeaders(_))).await {
        Message::GetHeaders(g) => assert_eq!(g.locator, vec![loc]),
        _ => unreachable!(),
    }

    // inv from Core -> our getdata.
    let h = format!("{}cd", "00".repeat(31));
    core.send(json!({"cmd": "inv", "items": [[1, h]]})).await;
    let gd = core.expect_event(recv("getdata"), T).await;
    assert_eq!(gd["fields"]["inv"], json!([[1, h]]));

    // Nothing we sent upset the framework (no reject, no unknown command).
    assert!(peer.connected(), "{:?}", peer.close_reason());
}

#[tokio::test]
async fn our_peer_dials_core_framework() {
    if tokio::task::spawn_blocking(ensure_installed)
        .await
        .expect("ensure_installed panicked")
        .is_none()
    {
        return;
    }
    let mut core = CorePeer::spawn(&["--listen", "0"]).await.expect("spawn");
    let port = core.listening_port(T).await;
    let (probe, mut rx) = Probe::new(true);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let transport = NativeTransport::connect(addr, Network::Regtest, T)
        .await
        .expect("connect");
    let peer = Peer::start_outbound(config(probe.clone()), transport);
    assert_eq!(
        core.expect_event(event("connected"), T).await["direction"],
        "inbound"
    );
    wait_handshake(&peer).await;
    // We speak first (version), then sendaddrv2 and verack; btcd never sends wtxidrelay.
    let got = recv_until(&mut core, "verack").await;
    assert_eq!(got, ["version", "sendaddrv2", "verack"]);
    assert_eq!(
        *probe.handshake.lock().unwrap(),
        ["wtxidrelay", "sendaddrv2", "verack"]
    );
    assert!(peer.wants_addr_v2() && peer.wants_wtxid_relay());
    assert_eq!(peer.protocol_version(), 70016);
    assert_eq!(peer.user_agent(), "/python-p2p-tester:0.0.3/");
    assert_eq!(peer.services(), services::NETWORK | services::WITNESS);
    exercise(&mut core, &peer, &probe, &mut rx).await;
    peer.disconnect();
    tokio::time::timeout(T, peer.wait_for_disconnect())
        .await
        .unwrap();
    core.expect_event(event("disconnected"), T).await;
}

#[tokio::test]
async fn core_framework_dials_our_listener() {
    if tokio::task::spawn_blocking(ensure_installed)
        .await
        .expect("ensure_installed panicked")
        .is_none()
    {
        return;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let target = format!("127.0.0.1:{port}");
    let mut core = CorePeer::spawn(&["--dial", &target, "--start-height", "7"])
        .await
        .expect("spawn");
    let transport = tokio::time::timeout(T, NativeTransport::accept(&listener, Network::Regtest))
        .await
        .expect("accept in time")
        .expect("accept");
    let (probe, mut rx) = Probe::new(true);
    let peer = Peer::start_inbound(config(probe.clone()), transport);
    wait_handshake(&peer).await;
    let version: Value = core.expect_event(recv("version"), T).await;
    let f = &version["fields"];
    assert_eq!(f["nVersion"], 70016);
    assert_eq!(f["strSubVer"], "/btcwire:0.5.0/braid:0.1/");
    assert_eq!(f["nServices"], 9);
    assert_eq!(f["addrTo"]["ip"], "127.0.0.1");
    let got = recv_until(&mut core, "verack").await;
    assert_eq!(got, ["sendaddrv2", "verack"]);
    assert_eq!(
        *probe.handshake.lock().unwrap(),
        ["wtxidrelay", "sendaddrv2", "verack"]
    );
    assert_eq!(peer.starting_height(), 7);
    // The dialing framework asks for addresses right after the handshake.
    expect_msg(&mut rx, |m| *m == Message::GetAddr).await;
    exercise(&mut core, &peer, &probe, &mut rx).await;
    let status = core.shutdown(T).await;
    assert!(status.success());
    tokio::time::timeout(T, peer.wait_for_disconnect())
        .await
        .unwrap();
}
