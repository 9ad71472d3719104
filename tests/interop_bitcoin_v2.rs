//! Live BIP324 interop between our v2 transport and Bitcoin Core's functional-test
//! framework (`verystable.core.v2_p2p`, driven by `tests/interop/btc/peer.py --v2`), both
//! directions on 127.0.0.1, plus our auto mode against a v2-capable and a v1-only peer.
//!
//! Skips (with a note) when python3 is unavailable and `CI` is unset; fails when `CI` is set.

#[path = "support/verystable.rs"]
mod verystable;

use std::sync::Arc;
use std::time::Duration;

use protocols::bitcoin::peer::{accept_auto, connect_auto, Config, Listener, Peer, Transport};
use protocols::bitcoin::wire::{services, Hash256, Message, MsgGetBlocks, MsgPing, Network};
use serde_json::json;
use tokio::sync::mpsc;
use verystable::{ensure_installed, event, recv, CorePeer};

/// Generous: python start-up plus a loaded 2-core machine.
const T: Duration = Duration::from_secs(30);

/// Forwards what our peer receives to the test.
struct Probe {
    seen: mpsc::Sender<Message>,
}

impl Listener for Probe {
    fn on_pong(&self, _: &Peer, n: u64) {
        let _ = self.seen.try_send(Message::Pong(n));
    }
    fn on_get_headers(&self, _: &Peer, m: &MsgGetBlocks) {
        let _ = self.seen.try_send(Message::GetHeaders(m.clone()));
    }
}

fn config() -> (Config, mpsc::Receiver<Message>) {
    let (seen, rx) = mpsc::channel(64);
    let cfg = Config {
        network: Network::Regtest,
        services: services::NETWORK | services::WITNESS | services::P2P_V2,
        user_agent_name: "braid".into(),
        user_agent_version: "0.1".into(),
        listener: Arc::new(Probe { seen }),
        ..Config::default()
    };
    (cfg, rx)
}

async fn installed() -> bool {
    tokio::task::spawn_blocking(ensure_installed)
        .await
        .expect("ensure_installed panicked")
        .is_some()
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

async fn expect_msg(rx: &mut mpsc::Receiver<Message>, pred: impl Fn(&Message) -> bool) {
    let fut = async {
        loop {
            match rx.recv().await {
                Some(m) if pred(&m) => return,
                Some(_) => continue,
                None => panic!("probe channel closed"),
            }
        }
    };
    tokio::time::timeout(T, fut)
        .await
        .expect("expected message did not reach our peer");
}

/// Messages both ways over the established link; `v2` is what Core's side must report.
async fn exercise(core: &mut CorePeer, peer: &Peer, rx: &mut mpsc::Receiver<Message>, v2: bool) {
    // version and verack travel in long form, ping/pong/getheaders by short id.
    let verack = core.expect_event(recv("verack"), T).await;
    assert_eq!(verack["v2"], v2, "Core's side transport");

    let nonce: u64 = 0xDEAD_BEEF_0123_4567;
    core.send(json!({"cmd": "ping", "nonce": nonce})).await;
    let pong = core.expect_event(recv("pong"), T).await;
    assert_eq!(pong["fields"]["nonce"].as_u64(), Some(nonce));
    assert_eq!(pong["v2"], v2);

    peer.queue_message(Message::Ping(MsgPing { nonce: 4242 }), None)
        .await;
    let ping = core.expect_event(recv("ping"), T).await;
    assert_eq!(ping["fields"]["nonce"].as_u64(), Some(4242));
    expect_msg(rx, |m| *m == Message::Pong(4242)).await;

    let loc = Hash256([0x5a; 32]);
    assert!(peer.push_get_headers(&[loc], Hash256::ZERO).await.unwrap());
    let gh = core.expect_event(recv("getheaders"), T).await;
    assert_eq!(gh["fields"]["locator"], json!([loc.to_string()]));
    core.send(json!({"cmd": "getheaders", "locator": [loc.to_string()]}))
        .await;
    expect_msg(
        rx,
        |m| matches!(m, Message::GetHeaders(g) if g.locator == vec![loc]),
    )
    .await;
    assert!(peer.connected(), "{:?}", peer.close_reason());
}

#[tokio::test]
async fn our_v2_dials_core_v2() {
    if !installed().await {
        return;
    }
    let mut core = CorePeer::spawn(&["--listen", "0", "--v2"])
        .await
        .expect("spawn");
    let port = core.listening_port(T).await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let transport = connect_auto(addr, Network::Regtest, T, true)
        .await
        .expect("v2 connect");
    assert!(transport.is_v2(), "Core's framework speaks v2");
    let (cfg, mut rx) = config();
    let peer = Peer::start_outbound(cfg, transport);
    wait_handshake(&peer).await;
    exercise(&mut core, &peer, &mut rx, true).await;
    // Past BIP324's rekey interval (224 packets) in both directions: our ciphers and Core's
    // framework must rotate keys at the same packet.
    for n in 0..300u64 {
        peer.queue_message(Message::Ping(MsgPing { nonce: 10_000 + n }), None)
            .await;
        expect_msg(&mut rx, |m| *m == Message::Pong(10_000 + n)).await;
    }
    assert!(peer.connected(), "{:?}", peer.close_reason());
    peer.disconnect();
    tokio::time::timeout(T, peer.wait_for_disconnect())
        .await
        .unwrap();
    core.expect_event(event("disconnected"), T).await;
}

#[tokio::test]
async fn core_v2_dials_our_auto_listener() {
    if !installed().await {
        return;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let mut core = CorePeer::spawn(&["--dial", &target, "--v2"])
        .await
        .expect("spawn");
    let transport = accept_auto(&listener, Network::Regtest, T)
        .await
        .expect("accept");
    assert!(transport.is_v2(), "detected v2 from the first bytes");
    assert!(transport.remote_addr().is_some());
    let (cfg, mut rx) = config();
    let peer = Peer::start_inbound(cfg, transport);
    wait_handshake(&peer).await;
    let version = core.expect_event(recv("version"), T).await;
    assert_eq!(version["v2"], true);
    assert_eq!(
        version["fields"]["nServices"],
        services::NETWORK | services::WITNESS | services::P2P_V2,
        "we advertise NODE_P2P_V2"
    );
    exercise(&mut core, &peer, &mut rx, true).await;
    assert!(core.shutdown(T).await.success());
    tokio::time::timeout(T, peer.wait_for_disconnect())
        .await
        .unwrap();
}

#[tokio::test]
async fn core_v1_dials_our_auto_listener() {
    if !installed().await {
        return;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let mut core = CorePeer::spawn(&["--dial", &target]).await.expect("spawn");
    let transport = accept_auto(&listener, Network::Regtest, T)
        .await
        .expect("accept");
    assert!(!transport.is_v2(), "magic + version means v1");
    let (cfg, mut rx) = config();
    let peer = Peer::start_inbound(cfg, transport);
    wait_handshake(&peer).await;
    exercise(&mut core, &peer, &mut rx, false).await;
    assert!(core.shutdown(T).await.success());
    tokio::time::timeout(T, peer.wait_for_disconnect())
        .await
        .unwrap();
}

#[tokio::test]
async fn our_auto_falls_back_to_v1_on_core_v1_only() {
    if !installed().await {
        return;
    }
    // A v1-only listener that takes the retry after refusing our v2 key.
    let mut core = CorePeer::spawn(&["--listen", "0", "--accept-twice"])
        .await
        .expect("spawn");
    let port = core.listening_port(T).await;
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let transport = connect_auto(addr, Network::Regtest, T, true)
        .await
        .expect("connect with fallback");
    assert!(!transport.is_v2(), "fell back to v1");
    // The framework saw two connections: the refused v2 attempt and the v1 retry.
    core.expect_event(event("disconnected"), T).await;
    let (cfg, mut rx) = config();
    let peer = Peer::start_outbound(cfg, transport);
    wait_handshake(&peer).await;
    exercise(&mut core, &peer, &mut rx, false).await;
    peer.disconnect();
    tokio::time::timeout(T, peer.wait_for_disconnect())
        .await
        .unwrap();
}
