//! `examples/btc_relay/` run as real processes on loopback.
//!
//! Topology: Bitcoin Core's test-framework peer (PyPI `verystable`, `tests/interop/btc/
//! peer.py`) — native TCP — relay R1 — braid — relay R2 — braid — B, where B is a braid
//! node in this test running the `btc` subprotocol. B is two braid hops from the native
//! peer. A tx announced natively reaches B (inv, getdata, tx), and one announced by B
//! reaches the native peer. Plus the relay's command-line errors.
//!
//! The interop part skips (with a note) when python3 is unavailable and `CI` is unset.

#[path = "support/example.rs"]
mod example;
#[path = "support/verystable.rs"]
mod verystable;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use example::Example;
use p2p::node::{Enode, NodeKey};
use p2p::server::{Server, ServerConfig};
use protocols::bitcoin::peer::{Config, Listener, Peer};
use protocols::bitcoin::wire::{
    inv_type, Block, BlockHeader, Hash256, InvVect, Message, Network, Tx,
};
use serde_json::json;
use tokio::sync::mpsc;
use verystable::{ensure_installed, event, recv, CorePeer};

/// Generous: python start-up and three processes on a loaded 2-core machine.
const T: Duration = Duration::from_secs(30);
/// Short trickles keep the two-hop trip quick (the default is bitcoin's 10 s).
const TRICKLE: &str = "200ms";

/// A real segwit transaction (also used by `protocols/tests/wire_diff.rs`).
const SEGWIT_TX: &str = "02000000000101595895ea20179de87052b4046dfe6fd515860505d6511a9004cf12a1f93cac7c0100000000ffffffff01deb807000000000017a9140f3444e271620c736808aa7b33e370bd87cb5a078702483045022100fb60dad8df4af2841adc0346638c16d0b8035f5e3f3753b88db122e70c79f9370220756e6633b17fd2710e626347d28d60b0a2d6cbb41de51740644b9fb3ba7751040121028fa937ca8cba2197a37c007176ed8941055d3bcb8627d085e94553e62f057dcc00000000";
/// A real legacy transaction (same source).
const LEGACY_TX: &str = "0100000001a15d57094aa7a21a28cb20b59aab8fc7d1149a3bdbcddba9c622e4f5f6a99ece010000006c493046022100f93bb0e7d8db7bd46e40132d1f8242026e045f03a0efe71bbb8e3f475e970d790221009337cd7f1f929f00cc6ff01f03729b069a7c21b59b1736ddfee5db5946c5da8c0121033b9b137ee87d5a812d6f506efdd37f0affa7ffc310711c06c7f3e097c9447c52ffffffff0100e1f505000000001976a9140389035a9225b3839e2bbf32d826a1e222031fd888ac00000000";
/// A real mainnet block with two transactions (same source).
const MAINNET_BLOCK: &str = "010000004ddccd549d28f385ab457e98d1b11ce80bfea2c5ab93015ade4973e400000000bf4473e53794beae34e64fccc471dace6ae544180816f89591894e0f417a914cd74d6e49ffff001d323b3a7b0201000000010000000000000000000000000000000000000000000000000000000000000000ffffffff0804ffff001d026e04ffffffff0100f2052a0100000043410446ef0102d1ec5240f0d061a4246c1bdef63fc3dbab7733052fbbf0ecd8f41fc26bf049ebb4f9527f374280259e7cfa99c48b0e3f39c51347a19a5819651503a5ac00000000010000000321f75f3139a013f50f315b23b0c9a2b6eac31e2bec98e5891c924664889942260000000049483045022100cb2c6b346a978ab8c61b18b5e9397755cbd17d6eb2fe0083ef32e067fa6c785a02206ce44e613f31d9a6b0517e46f3db1576e9812cc98d159bfdaf759a5014081b5c01ffffffff79cda0945903627c3da1f85fc95d0b8ee3e76ae0cfdc9a65d09744b1f8fc85430000000049483045022047957cdd957cfd0becd642f6b84d82f49b6cb4c51a91f49246908af7c3cfdf4a022100e96b46621f1bffcf5ea5982f88cef651e9354f5791602369bf5a82a6cd61a62501fffffffffe09f5fe3ffbf5ee97a54eb5e5069e9da6b4856ee86fc52938c2f979b0f38e82000000004847304402204165be9a4cbab8049e1af9723b96199bfd3e85f44c6b4c0177e3962686b26073022028f638da23fc003760861ad481ead4099312c60030d4cb57820ce4d33812a5ce01ffffffff01009d966b01000000434104ea1feff861b51fe3f5f8a3b12d0f4712db80e919548a80839fc47c6a21e66d957e9c5d8cd108c7a2d2324bad71f9904ac0ae7336507d785b17a2c115e427a32fac00000000";

fn tx(hex_text: &str) -> Tx {
    Tx::from_bytes(hex::decode(hex_text).unwrap().into()).unwrap()
}

/// A regtest block on top of `prev` with one transaction (told apart by `tag`), its
/// merkle root right and its nonce mined until the header meets regtest's easy target
/// (about one hash in two does).
fn regtest_block(prev: Hash256, tag: u8) -> Block {
    let mut coinbase = Vec::new();
    coinbase.extend_from_slice(&1i32.to_le_bytes());
    coinbase.push(1);
    coinbase.extend_from_slice(&[tag; 32]);
    coinbase.extend_from_slice(&0u32.to_le_bytes());
    coinbase.push(0);
    coinbase.extend_from_slice(&u32::MAX.to_le_bytes());
    coinbase.push(1);
    coinbase.extend_from_slice(&1000u64.to_le_bytes());
    coinbase.push(1);
    coinbase.push(0x6a); // OP_RETURN
    coinbase.extend_from_slice(&0u32.to_le_bytes());
    let only = Tx::from_bytes(coinbase.clone().into()).unwrap();
    let mut header = BlockHeader {
        version: 0x2000_0000,
        prev_block: prev,
        merkle_root: only.txid(),
        time: 1_700_000_000 + u32::from(tag),
        bits: 0x207f_ffff,
        nonce: 0,
    };
    while !header.check_proof_of_work(Network::Regtest) {
        assert!(header.nonce < 10_000, "no regtest proof of work found");
        header.nonce += 1;
    }
    let mut raw = header.to_bytes().to_vec();
    raw.push(1);
    raw.extend_from_slice(&coinbase);
    Block::from_bytes(raw.into()).unwrap()
}

/// B's listener: reports announcements and transactions, fetches what is announced (with
/// witness data), and serves its own transaction.
struct Node {
    seen: mpsc::Sender<Message>,
    own: Tx,
}

impl Listener for Node {
    fn on_inv(&self, peer: &Peer, inv: &[InvVect]) {
        let want: Vec<InvVect> = inv
            .iter()
            .map(|iv| InvVect {
                inv_type: iv.inv_type | inv_type::WITNESS_FLAG,
                hash: iv.hash,
            })
            .collect();
        assert!(peer.try_queue_message(Message::GetData(want), None));
        let _ = self.seen.try_send(Message::Inv(inv.to_vec()));
    }
    fn on_get_data(&self, peer: &Peer, inv: &[InvVect]) {
        if inv.iter().any(|iv| iv.hash == self.own.txid()) {
            assert!(peer.try_queue_message(Message::Tx(self.own.clone()), None));
        }
        let _ = self.seen.try_send(Message::GetData(inv.to_vec()));
    }
    fn on_tx(&self, _: &Peer, tx: &Tx) {
        let _ = self.seen.try_send(Message::Tx(tx.clone()));
    }
    fn on_block(&self, _: &Peer, block: &Block) {
        let _ = self.seen.try_send(Message::Block(block.clone()));
    }
}

async fn next_msg(rx: &mut mpsc::Receiver<Message>, what: &str) -> Message {
    match tokio::time::timeout(T, rx.recv()).await {
        Ok(Some(m)) => m,
        Ok(None) => panic!("B's listener is gone (waiting for {what})"),
        Err(_) => panic!("B: no {what} within {T:?}"),
    }
}

/// Start a relay process and return it with its enode.
async fn relay(args: &[&str]) -> (Example, String) {
    let mut all = vec![
        "--network",
        "regtest",
        "--listen",
        "127.0.0.1:0",
        "--trickle-interval",
        TRICKLE,
        "--status-interval",
        "1s",
    ];
    all.extend_from_slice(args);
    let mut node = Example::spawn("btc_relay", &all);
    let enode = node.enode().await;
    (node, enode)
}

#[tokio::test]
async fn native_inv_reaches_a_braid_node_two_hops_away_and_back() {
    if tokio::task::spawn_blocking(ensure_installed)
        .await
        .expect("ensure_installed panicked")
        .is_none()
    {
        eprintln!("!!! SKIPPING btc_relay interop: python3/verystable unavailable (set CI to make this fail)");
        return;
    }
    example::example_path("btc_relay"); // build first if needed, outside the timeouts
                                        // A v2-capable Core peer: the relay's native link must come up encrypted (BIP324).
    let mut core = CorePeer::spawn(&["--listen", "0", "--v2"])
        .await
        .expect("spawn");
    let port = core.listening_port(T).await.to_string();
    let native = format!("127.0.0.1:{port}");

    // R1 bridges the native peer; R2 only has overlay peers; B dials R2.
    let (mut r1, r1_enode) = relay(&["--bitcoin", &native]).await;
    let link = core.expect_event(event("connected"), T).await;
    assert_eq!(
        link["v2"], true,
        "the relay's native link is not v2: {link}"
    );
    let version = core
        .expect_event(|e| e["event"] == "recv" && e["command"] == "version", T)
        .await;
    let advertised = version["fields"]["nServices"].as_u64().unwrap_or(0);
    assert_ne!(advertised & (1 << 11), 0, "no NODE_P2P_V2: {version}");
    r1.expect_line("+ native peer 127.0.0.1:", T).await;
    let (mut r2, r2_enode) = relay(&["--dial", &r1_enode]).await;
    r1.expect_line("+ overlay peer", T).await;
    r2.expect_line("+ overlay peer", T).await;

    let (seen, mut b_rx) = mpsc::channel(64);
    let own = tx(LEGACY_TX);
    let listener = Arc::new(Node {
        seen,
        own: own.clone(),
    });
    let b_peers = Arc::new(Mutex::new(Vec::<Peer>::new()));
    let config = Config {
        network: Network::Regtest,
        trickle_interval: Duration::from_millis(200),
        listener,
        ..Config::default()
    };
    let peers = b_peers.clone();
    let btc = protocols::bitcoin::protocol(config, move |p| peers.lock().unwrap().push(p.clone()));
    let b = Server::start(ServerConfig {
        protocols: vec![btc],
        ..ServerConfig::new(NodeKey::generate(), None)
    })
    .await
    .expect("start B");
    b.dial(&r2_enode.parse::<Enode>().unwrap())
        .await
        .expect("B dials R2");
    r2.expect_line("+ overlay peer", T).await;

    // Native -> B: Core's peer announces, R1 asks for it (witness form: Core offers
    // NODE_WITNESS), Core serves it, and the announcement travels R1 -> R2 -> B.
    let native_tx = tx(SEGWIT_TX);
    let txid = native_tx.txid().to_string();
    core.send(json!({"cmd": "inv", "items": [[inv_type::TX, txid]]}))
        .await;
    let getdata = core.expect_event(recv("getdata"), T).await;
    assert_eq!(
        getdata["fields"]["inv"],
        json!([[inv_type::WITNESS_TX, txid]]),
        "R1 asks the announcer, with witness"
    );
    core.send(json!({"cmd": "tx", "hex": SEGWIT_TX})).await;
    let sent = core
        .expect_event(|e| e["event"] == "sent" && e["command"] == "tx", T)
        .await;
    assert_eq!(sent["txid"], txid.as_str(), "Core computes the same txid");
    let line = r1.expect_line(&format!("relay inv tx {txid}"), T).await;
    assert!(line.ends_with("native -> overlay (1 peer)"), "{line}");

    match next_msg(&mut b_rx, "inv").await {
        Message::Inv(inv) => assert_eq!(
            inv,
            [InvVect {
                inv_type: inv_type::TX,
                hash: native_tx.txid()
            }]
        ),
        other => panic!("B expected an inv, got {other:?}"),
    }
    // B's listener asked R2 for it; the witness bytes arrive unchanged after two hops.
    match next_msg(&mut b_rx, "tx").await {
        Message::Tx(got) => {
            assert_eq!(got.txid(), native_tx.txid());
            assert_eq!(got.as_bytes(), native_tx.as_bytes());
        }
        other => panic!("B expected the tx, got {other:?}"),
    }
    let line = r2.expect_line(&format!("relay inv tx {txid}"), T).await;
    assert!(line.ends_with("overlay -> overlay (1 peer)"), "{line}");

    // A block takes the same way, without the trickle's delay.
    let block = Block::from_bytes(hex::decode(MAINNET_BLOCK).unwrap().into()).unwrap();
    let hash = block.hash().to_string();
    core.send(json!({"cmd": "inv", "items": [[inv_type::BLOCK, hash]]}))
        .await;
    let getdata = core.expect_event(recv("getdata"), T).await;
    assert_eq!(
        getdata["fields"]["inv"],
        json!([[inv_type::WITNESS_BLOCK, hash]])
    );
    core.send(json!({"cmd": "block", "hex": MAINNET_BLOCK}))
        .await;
    match next_msg(&mut b_rx, "block inv").await {
        Message::Inv(inv) => assert_eq!(
            inv,
            [InvVect {
                inv_type: inv_type::BLOCK,
                hash: block.hash()
            }]
        ),
        other => panic!("B expected a block inv, got {other:?}"),
    }
    match next_msg(&mut b_rx, "block").await {
        Message::Block(got) => assert_eq!(got.as_bytes(), block.as_bytes()),
        other => panic!("B expected the block, got {other:?}"),
    }
    let line = r1.expect_line(&format!("relay inv block {hash}"), T).await;
    assert!(line.ends_with("native -> overlay (1 peer)"), "{line}");
    let line = r2.expect_line(&format!("relay inv block {hash}"), T).await;
    assert!(line.ends_with("overlay -> overlay (1 peer)"), "{line}");

    // B -> native: B announces its own tx; it travels R2 -> R1 -> Core, whose framework
    // asks for it (getdata) and receives it from R1's cache.
    let own_txid = own.txid().to_string();
    let b_peer = b_peers
        .lock()
        .unwrap()
        .first()
        .cloned()
        .expect("B's btc peer");
    b_peer
        .queue_inventory(InvVect {
            inv_type: inv_type::TX,
            hash: own.txid(),
        })
        .await;
    let inv = core.expect_event(recv("inv"), T).await;
    // Core's framework sent `wtxidrelay` and so did R1: the announcement goes by wtxid.
    assert_eq!(
        inv["fields"]["inv"],
        json!([[inv_type::WTX, own.wtxid().to_string()]])
    );
    let got = core.expect_event(recv("tx"), T).await;
    assert_eq!(got["fields"]["txid"], own_txid.as_str());
    assert_eq!(got["fields"]["hex"], LEGACY_TX);
    let line = r1.expect_line(&format!("relay inv tx {own_txid}"), T).await;
    assert!(line.ends_with("overlay -> native"), "{line}");
    let line = r2.expect_line(&format!("relay inv tx {own_txid}"), T).await;
    assert!(line.ends_with("overlay -> overlay (1 peer)"), "{line}");

    // Nothing looped: the next status line of each relay (printed after its relay lines)
    // counts exactly three items, and each item was relayed once by each relay.
    for (name, r) in [("R1", &mut r1), ("R2", &mut r2)] {
        let status = r.expect_line("status: ", T).await;
        assert!(
            status.contains("relayed tx 2, blocks 1 ("),
            "{name}: {status}"
        );
        for id in [&txid, &own_txid, &hash] {
            let n = r
                .seen
                .iter()
                .filter(|l| l.starts_with("relay inv ") && l.contains(id.as_str()))
                .count();
            assert_eq!(
                n,
                1,
                "{name} relayed {id} {n} times:\n{}",
                r.seen.join("\n")
            );
        }
    }
    assert!(b_peer.connected(), "{:?}", b_peer.close_reason());
    // Peers leaving are reported; R1 keeps running and redials its native node.
    b.shutdown().await;
    r2.expect_line("- overlay peer", T).await;
    let status = core.shutdown(T).await;
    assert!(status.success());
    // Two tasks print these, in either order.
    let went_away = format!("! bitcoin node {native} went away");
    for needle in ["- native peer", went_away.as_str()] {
        if !r1.seen.iter().any(|l| l.contains(needle)) {
            r1.expect_line(needle, T).await;
        }
    }
}

/// Sends a ping from `core` and waits for the relay's pong: every message the relay sent
/// `core` before it has been read, and the relay has read what `core` sent before.
async fn round_trip(core: &mut CorePeer, nonce: u64) {
    core.send(json!({"cmd": "ping", "nonce": nonce})).await;
    core.expect_event(
        |e| e["event"] == "recv" && e["command"] == "pong" && e["fields"]["nonce"] == nonce,
        T,
    )
    .await;
}

/// Whether `e` is a received `inv` or `headers` naming `hash` (display hex).
fn announces(e: &serde_json::Value, hash: &str) -> bool {
    if e["event"] != "recv" {
        return false;
    }
    match e["command"].as_str() {
        Some("inv") => e["fields"]["inv"]
            .as_array()
            .is_some_and(|v| v.iter().any(|iv| iv[1] == hash)),
        Some("headers") => e["fields"]["hashes"]
            .as_array()
            .is_some_and(|v| v.iter().any(|h| h == hash)),
        _ => false,
    }
}

/// BIP130 end to end. Core's framework peer A (behind relay R1) sends `sendheaders` and
/// announces a new regtest block by `headers`; R1 fetches it with `getdata` and relays it
/// over braid to R2, which has two Core framework peers: C sent `sendheaders` and is told
/// by `headers`, D did not and is told by `inv`. Both fetch the block from R2. Every
/// framework peer was sent `sendheaders` by its relay, and A is not told of its own block.
#[tokio::test]
async fn core_block_announced_by_headers_crosses_the_overlay() {
    if tokio::task::spawn_blocking(ensure_installed)
        .await
        .expect("ensure_installed panicked")
        .is_none()
    {
        eprintln!("!!! SKIPPING btc_relay BIP130 interop: python3/verystable unavailable (set CI to make this fail)");
        return;
    }
    example::example_path("btc_relay");
    let mut cores = Vec::new();
    for _ in 0..3 {
        let mut core = CorePeer::spawn(&["--listen", "0", "--v2"])
            .await
            .expect("spawn");
        let port = core.listening_port(T).await;
        cores.push((core, format!("127.0.0.1:{port}")));
    }
    let [(mut a, a_addr), (mut c, c_addr), (mut d, d_addr)]: [(CorePeer, String); 3] =
        cores.try_into().ok().unwrap();
    let (mut r1, r1_enode) = relay(&["--bitcoin", &a_addr]).await;
    r1.expect_line("+ native peer 127.0.0.1:", T).await;
    let (mut r2, _) = relay(&[
        "--bitcoin",
        &c_addr,
        "--bitcoin",
        &d_addr,
        "--dial",
        &r1_enode,
    ])
    .await;
    r1.expect_line("+ overlay peer", T).await;
    for _ in 0..2 {
        r2.expect_line("+ native peer 127.0.0.1:", T).await;
    }
    // The relays ask every native peer for headers announcements, right after verack.
    for core in [&mut a, &mut c, &mut d] {
        let got = core.expect_event(recv("sendheaders"), T).await;
        assert_eq!(got["v2"], true, "{got}");
    }
    a.send(json!({"cmd": "sendheaders"})).await;
    c.send(json!({"cmd": "sendheaders"})).await;
    round_trip(&mut a, 1).await;
    round_trip(&mut c, 2).await;
    round_trip(&mut d, 3).await;
    // The overlay link is up on R2's side too before anything is relayed.
    if !r2.seen.iter().any(|l| l.starts_with("+ overlay peer")) {
        r2.expect_line("+ overlay peer", T).await;
    }

    // A new block on regtest's genesis block, with real proof of work for regtest.
    let genesis = Hash256::from_display_hex(
        "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
    )
    .unwrap();
    let block = regtest_block(genesis, 7);
    let hash = block.hash().to_string();
    let sent = {
        a.send(json!({"cmd": "headers", "headers": [hex::encode(block.header().to_bytes())]}))
            .await;
        a.expect_event(|e| e["event"] == "sent" && e["command"] == "headers", T)
            .await
    };
    assert_eq!(
        sent["hashes"],
        json!([hash]),
        "Core hashes our header alike"
    );
    let getdata = a.expect_event(recv("getdata"), T).await;
    assert_eq!(
        getdata["fields"]["inv"],
        json!([[inv_type::WITNESS_BLOCK, hash]]),
        "R1 fetches the block a header announced, with witness"
    );
    a.send(json!({"cmd": "block", "hex": hex::encode(block.as_bytes())}))
        .await;
    let line = r1.expect_line(&format!("relay inv block {hash}"), T).await;
    assert!(line.ends_with("native -> overlay (1 peer)"), "{line}");
    let line = r2.expect_line(&format!("relay inv block {hash}"), T).await;
    assert!(line.ends_with("overlay -> native"), "{line}");

    // C asked for headers and gets exactly the block's header.
    let headers = c.expect_event(recv("headers"), T).await;
    assert_eq!(headers["fields"]["count"], 1, "{headers}");
    assert_eq!(headers["fields"]["hashes"], json!([hash]));
    c.send(json!({"cmd": "getdata", "items": [[inv_type::WITNESS_BLOCK, hash]]}))
        .await;
    let got = c.expect_event(recv("block"), T).await;
    assert_eq!(got["fields"]["hash"], hash.as_str());
    assert_eq!(got["fields"]["prev"], genesis.to_string());
    // D did not, and gets an inv; its framework asks for the block on its own.
    let inv = d.expect_event(recv("inv"), T).await;
    assert_eq!(inv["fields"]["inv"], json!([[inv_type::BLOCK, hash]]));
    let got = d.expect_event(recv("block"), T).await;
    assert_eq!(got["fields"]["hash"], hash.as_str());

    // Once each: C never by inv, D never by headers, A (the source) not at all.
    round_trip(&mut a, 4).await;
    round_trip(&mut c, 5).await;
    round_trip(&mut d, 6).await;
    for (name, core) in [("A", &a), ("C", &c), ("D", &d)] {
        let again = core.kept(|e| announces(e, &hash));
        assert!(again.is_empty(), "{name} was told again: {again:?}");
    }
    let status = r2.expect_line("status: ", T).await;
    assert!(status.contains("blocks 1 ("), "{status}");
}

// ---------------------------------------------------------------------------------------
// Command-line errors
// ---------------------------------------------------------------------------------------

/// Run the relay with `args` and check it fails with exactly one `error:` line that
/// contains `expect`, without starting (no enode line).
async fn fails_with(args: &[&str], expect: &str) {
    let (status, out, err) = Example::spawn("btc_relay", args).wait(T).await;
    assert!(!status.success(), "{args:?} succeeded; stdout: {out:?}");
    assert!(status.code().is_some(), "{args:?} died by signal: {status}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: stderr is not one line: {err:?}");
    assert!(lines[0].starts_with("error: "), "{:?}", lines[0]);
    assert!(lines[0].contains(expect), "{:?} lacks {expect:?}", lines[0]);
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"));
    assert!(
        !out.iter().any(|l| l.starts_with("enode:")),
        "started anyway: {out:?}"
    );
}

#[tokio::test]
async fn bad_command_lines() {
    fails_with(&["--dial", "enode://1234@127.0.0.1:30303"], "--dial").await;
    fails_with(&["--network", "moonnet"], "--network").await;
    fails_with(&["--status-interval", "0"], "--status-interval").await;
    fails_with(&["--trickle-interval", "5h"], "--trickle-interval").await;
    fails_with(&["--bitcoin", "localhost"], "--bitcoin").await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    fails_with(&["--listen", &addr], "in use").await;
}

#[tokio::test]
async fn unreachable_bitcoin_node() {
    // A port nobody listens on: connection refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    fails_with(
        &["--bitcoin", &addr, "--network", "regtest"],
        &format!("cannot use bitcoin node {addr}"),
    )
    .await;

    // Something that accepts and hangs up: the version handshake fails.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Twice: the relay tries v2 first and, as the hang-up came before any byte, redials v1.
    let acceptor = std::thread::spawn(move || {
        for _ in 0..2 {
            if let Ok((conn, _)) = listener.accept() {
                drop(conn);
            }
        }
    });
    fails_with(&["--bitcoin", &addr], "version handshake failed").await;
    acceptor.join().unwrap();
}

// ---------------------------------------------------------------------------------------
// Relay bounds against hostile native peers: the relay dials several native "nodes" run by
// this test (`--bitcoin` repeated), some honest, some not.
// ---------------------------------------------------------------------------------------

mod bounds {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use protocols::bitcoin::peer::{accept_auto, Config, Listener, Peer};
    use protocols::bitcoin::wire::{
        encode_frame, inv_type, read_frame, services, Block, BlockHeader, Hash256, InvVect,
        Message, MsgPing, MsgVersion, NetAddress, Network, Tx,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    use super::example::{self, Example};
    use super::{regtest_block, tx, LEGACY_TX, MAINNET_BLOCK, SEGWIT_TX, T};

    const NET: Network = Network::Regtest;
    const PVER: u32 = 70016;

    /// What a test node's listener saw.
    #[derive(Debug)]
    enum Seen {
        Inv(Vec<InvVect>),
        Headers(Vec<BlockHeader>),
        GetData(Vec<InvVect>),
        Tx(Tx),
        Block(Block),
        Pong(u64),
    }

    /// A native node's behaviour: serve what it holds, or answer every `getdata` with an
    /// empty `notfound` (withholding, and trying to look responsive).
    struct Role {
        seen: mpsc::UnboundedSender<Seen>,
        holds: Mutex<HashMap<Hash256, Message>>,
        withhold: bool,
    }

    impl Listener for Role {
        fn on_inv(&self, _: &Peer, inv: &[InvVect]) {
            let _ = self.seen.send(Seen::Inv(inv.to_vec()));
        }
        fn on_headers(&self, _: &Peer, headers: &[BlockHeader]) {
            let _ = self.seen.send(Seen::Headers(headers.to_vec()));
        }
        fn on_get_data(&self, peer: &Peer, inv: &[InvVect]) {
            let _ = self.seen.send(Seen::GetData(inv.to_vec()));
            if self.withhold {
                peer.try_queue_message(Message::NotFound(vec![]), None);
                return;
            }
            let holds = self.holds.lock().unwrap();
            for iv in inv {
                if let Some(msg) = holds.get(&iv.hash) {
                    assert!(peer.try_queue_message(msg.clone(), None));
                }
            }
        }
        fn on_tx(&self, _: &Peer, tx: &Tx) {
            let _ = self.seen.send(Seen::Tx(tx.clone()));
        }
        fn on_block(&self, _: &Peer, block: &Block) {
            let _ = self.seen.send(Seen::Block(block.clone()));
        }
        fn on_pong(&self, _: &Peer, nonce: u64) {
            let _ = self.seen.send(Seen::Pong(nonce));
        }
    }

    /// A native node the relay dials: a listener whose one connection runs a [`Peer`].
    struct Node {
        addr: String,
        /// The relay's connection and whether it came up as BIP324 v2.
        peer: tokio::task::JoinHandle<(Peer, bool)>,
        role: Arc<Role>,
        seen: mpsc::UnboundedReceiver<Seen>,
    }

    impl Node {
        async fn start(withhold: bool) -> Node {
            Node::start_with(withhold, false).await
        }

        /// `wtxid`: send BIP339 `wtxidrelay` in the handshake.
        async fn start_with(withhold: bool, wtxid: bool) -> Node {
            Node::start_opts(withhold, wtxid, false).await
        }

        /// `headers`: also send BIP130 `sendheaders` after the handshake.
        async fn start_opts(withhold: bool, wtxid: bool, headers: bool) -> Node {
            // Build the relay first if needed: the node's accept timeout starts now.
            example::example_path("btc_relay");
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let (tx, seen) = mpsc::unbounded_channel();
            let role = Arc::new(Role {
                seen: tx,
                holds: Mutex::new(HashMap::new()),
                withhold,
            });
            let config = Config {
                network: NET,
                services: services::NETWORK | services::WITNESS,
                trickle_interval: Duration::from_millis(100),
                wtxid_relay: wtxid,
                send_headers: headers,
                listener: role.clone(),
                ..Config::default()
            };
            let peer = tokio::spawn(async move {
                let transport = tokio::time::timeout(T, accept_auto(&listener, NET, T))
                    .await
                    .expect("the relay dials in time")
                    .unwrap();
                let v2 = transport.is_v2();
                let peer = Peer::start_inbound(config, transport);
                let start = Instant::now();
                while !peer.verack_received() {
                    assert!(start.elapsed() < T, "handshake with the relay");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (peer, v2)
            });
            Node {
                addr,
                peer,
                role,
                seen,
            }
        }

        fn hold(&self, hash: Hash256, msg: Message) {
            self.role.holds.lock().unwrap().insert(hash, msg);
        }

        async fn peer(&mut self) -> Peer {
            self.connection().await.0
        }

        async fn connection(&mut self) -> (Peer, bool) {
            (&mut self.peer).await.expect("node task")
        }

        /// The next event matching `want` within `within`, skipping others.
        async fn expect<F: Fn(&Seen) -> bool>(
            &mut self,
            within: Duration,
            what: &str,
            want: F,
        ) -> Seen {
            let deadline = tokio::time::Instant::now() + within;
            loop {
                match tokio::time::timeout_at(deadline, self.seen.recv()).await {
                    Ok(Some(s)) if want(&s) => return s,
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("{what}: node listener gone"),
                    Err(_) => panic!("no {what} within {within:?}"),
                }
            }
        }
    }

    /// A raw native connection the relay dials, handshaken by hand, so the test decides
    /// when (and whether) it reads.
    async fn raw_node() -> (String, tokio::task::JoinHandle<TcpStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            // The relay tries v2 first; a v1 node hangs up on its key and it redials v1.
            let mut s = loop {
                let (s, _) = tokio::time::timeout(T, listener.accept())
                    .await
                    .expect("the relay dials in time")
                    .unwrap();
                let mut magic = [0u8; 4];
                let mut n = 0;
                for _ in 0..100 {
                    n = tokio::time::timeout(T, s.peek(&mut magic))
                        .await
                        .expect("the relay sends")
                        .unwrap();
                    if n >= 4 || n == 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                if n == 4 && magic == NET.magic() {
                    break s;
                }
            };
            let (msg, _) = read_frame(&mut s, NET, PVER).await.unwrap();
            assert!(matches!(msg, Message::Version(_)), "{msg:?}");
            let version = MsgVersion {
                version: PVER as i32,
                services: services::NETWORK | services::WITNESS,
                timestamp: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as i64,
                addr_recv: NetAddress::default(),
                addr_from: NetAddress::default(),
                nonce: rand::random(),
                user_agent: "/raw:0.1/".into(),
                start_height: 0,
                relay: true,
            };
            for m in [Message::Version(version), Message::Verack] {
                s.write_all(&encode_frame(NET, &m, PVER).unwrap())
                    .await
                    .unwrap();
            }
            loop {
                let (msg, _) = tokio::time::timeout(T, read_frame(&mut s, NET, PVER))
                    .await
                    .expect("relay's verack in time")
                    .unwrap();
                if matches!(msg, Message::Verack) {
                    return s;
                }
            }
        });
        (addr, task)
    }

    /// Start the relay with one `--bitcoin` per address, plus `extra`, and wait until it
    /// reports every native peer.
    async fn relay(natives: &[&str], extra: &[&str]) -> Example {
        example::example_path("btc_relay");
        let mut args = vec![
            "--network",
            "regtest",
            "--listen",
            "127.0.0.1:0",
            "--trickle-interval",
            "200ms",
            "--status-interval",
            "1s",
        ];
        for addr in natives {
            args.extend_from_slice(&["--bitcoin", addr]);
        }
        args.extend_from_slice(extra);
        let mut r = Example::spawn("btc_relay", &args);
        for _ in natives {
            r.expect_line("+ native peer 127.0.0.1:", T).await;
        }
        r
    }

    fn bogus(n: u32) -> Vec<InvVect> {
        (0..n)
            .map(|i| InvVect {
                inv_type: inv_type::TX,
                hash: Hash256::hash(&i.to_le_bytes()),
            })
            .collect()
    }

    fn inv_tx(hash: Hash256) -> InvVect {
        InvVect {
            inv_type: inv_type::TX,
            hash,
        }
    }

    /// Issue 11 item 8: one peer announces a real tx first, then 10,000 bogus ids, and
    /// withholds all of them (answering with empty `notfound`s). An honest peer's
    /// announcement of the same tx still reaches the far side within a few seconds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bogus_announcements_do_not_censor_an_honest_tx() {
        let mut attacker = Node::start(true).await;
        let mut honest = Node::start(false).await;
        let mut far = Node::start(false).await;
        let real = tx(SEGWIT_TX);
        honest.hold(real.txid(), Message::Tx(real.clone()));
        let addrs = [attacker.addr.clone(), honest.addr.clone(), far.addr.clone()];
        let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let mut r = relay(&addrs, &["--request-timeout", "2s"]).await;
        let (a, h, f) = (attacker.peer().await, honest.peer().await, far.peer().await);
        let baseline = relay_time(&h, &mut honest, &mut far, tx(LEGACY_TX)).await;

        let mut inv = vec![inv_tx(real.txid())];
        inv.extend(bogus(10_000));
        a.queue_message(Message::Inv(inv), None).await;
        // The relay asks the attacker first (it announced first) ...
        attacker
            .expect(
                T,
                "getdata for the real tx",
                |s| matches!(s, Seen::GetData(inv) if inv.iter().any(|iv| iv.hash == real.txid())),
            )
            .await;
        // ... and the honest announcement comes later.
        let start = Instant::now();
        h.queue_message(Message::Inv(vec![inv_tx(real.txid())]), None)
            .await;
        honest
            .expect(T, "getdata at the honest peer", |s| {
                matches!(s, Seen::GetData(_))
            })
            .await;
        let bound = Duration::from_secs(6);
        far.expect(
            bound,
            "the honest tx's inv at the far side",
            |s| matches!(s, Seen::Inv(inv) if inv.iter().any(|iv| iv.hash == real.txid())),
        )
        .await;
        let took = start.elapsed();
        f.queue_message(
            Message::GetData(vec![InvVect {
                inv_type: inv_type::WITNESS_TX,
                hash: real.txid(),
            }]),
            None,
        )
        .await;
        match far.expect(T, "the tx", |s| matches!(s, Seen::Tx(_))).await {
            Seen::Tx(got) => assert_eq!(got.as_bytes(), real.as_bytes()),
            other => panic!("{other:?}"),
        }
        let line = r
            .expect_line(&format!("relay inv tx {}", real.txid()), T)
            .await;
        assert!(line.contains("native -> native"), "{line}");
        let status = r.expect_line("status: ", T).await;
        println!("RELAY_BOUNDS censor: honest tx at the far side {took:?} after its inv (request timeout 2s; {baseline:?} before the attack); {status}");
        // The relay tracks at most 5,000 of the attacker's announcements.
        let announced: usize = status
            .split("announced ")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .and_then(|n| n.parse().ok())
            .expect("status has an announced count");
        assert!(announced <= 5000, "{status}");
    }

    /// How long an honest announcement of `tx` takes to reach the far side as an `inv`.
    async fn relay_time(h: &Peer, honest: &mut Node, far: &mut Node, tx: Tx) -> Duration {
        honest.hold(tx.txid(), Message::Tx(tx.clone()));
        let start = Instant::now();
        h.queue_message(Message::Inv(vec![inv_tx(tx.txid())]), None)
            .await;
        far.expect(
            T,
            "the baseline tx's inv at the far side",
            |s| matches!(s, Seen::Inv(inv) if inv.iter().any(|iv| iv.hash == tx.txid())),
        )
        .await;
        start.elapsed()
    }

    /// A block of about `size` bytes: one legacy transaction with a large scriptSig.
    fn big_block(size: usize) -> Block {
        let mut raw = hex::decode(&MAINNET_BLOCK[..160]).unwrap(); // the 80-byte header
        raw.push(1); // one transaction
        raw.extend_from_slice(&1u32.to_le_bytes()); // version
        raw.push(1); // one input
        raw.extend_from_slice(&[7u8; 36]); // outpoint
        raw.push(0xfe); // scriptSig length
        raw.extend_from_slice(&(size as u32).to_le_bytes());
        raw.resize(raw.len() + size, 0x51);
        raw.extend_from_slice(&[0xff; 4]); // sequence
        raw.push(0); // no outputs
        raw.extend_from_slice(&[0; 4]); // lock time
        Block::from_bytes(Bytes::from(raw)).unwrap()
    }

    fn getdata_frame(iv: InvVect, n: usize) -> Vec<u8> {
        encode_frame(NET, &Message::GetData(vec![iv; n]), PVER).unwrap()
    }

    /// Issue 11 item 9: a peer that reads nothing and one that reads slowly both ask for a
    /// 1 MB block over and over; an honest announcement is still relayed within 1 s.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_readers_do_not_hold_up_the_relay() {
        let (stuck_addr, stuck) = raw_node().await;
        let (slow_addr, slow) = raw_node().await;
        let mut honest = Node::start(false).await;
        let mut far = Node::start(false).await;
        let block = big_block(1 << 20);
        honest.hold(block.hash(), Message::Block(block.clone()));
        let addrs = [stuck_addr, slow_addr, honest.addr.clone(), far.addr.clone()];
        let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let mut r = relay(&addrs, &[]).await;
        let mut stuck = stuck.await.unwrap();
        let mut slow = slow.await.unwrap();
        let (h, _f) = (honest.peer().await, far.peer().await);
        let baseline = relay_time(&h, &mut honest, &mut far, tx(SEGWIT_TX)).await;

        // The block goes into the relay's cache.
        let block_iv = InvVect {
            inv_type: inv_type::BLOCK,
            hash: block.hash(),
        };
        h.queue_message(Message::Inv(vec![block_iv]), None).await;
        r.expect_line(&format!("relay inv block {}", block.hash()), T)
            .await;

        // Both readers ask for it 1,000 times, in 20 getdatas; `stuck` never reads again,
        // `slow` reads 16 KiB every 50 ms.
        for _ in 0..20 {
            let f = getdata_frame(block_iv, 50);
            stuck.write_all(&f).await.unwrap();
            slow.write_all(&f).await.unwrap();
        }
        let slow_reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 16 << 10];
            let mut total = 0usize;
            for _ in 0..400 {
                match tokio::time::timeout(Duration::from_secs(1), slow.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => total += n,
                    Err(_) => {}
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            total
        });
        // Let the relay work through the getdatas (old code: 2 s per item once stuck).
        tokio::time::sleep(Duration::from_millis(500)).await;

        let real = tx(LEGACY_TX);
        honest.hold(real.txid(), Message::Tx(real.clone()));
        let start = Instant::now();
        h.queue_message(Message::Inv(vec![inv_tx(real.txid())]), None)
            .await;
        far.expect(
            Duration::from_secs(1),
            "the honest tx's inv at the far side",
            |s| matches!(s, Seen::Inv(inv) if inv.iter().any(|iv| iv.hash == real.txid())),
        )
        .await;
        let took = start.elapsed();
        let status = r.expect_line("status: ", T).await;
        slow_reader.abort();
        println!("RELAY_BOUNDS slow readers: honest tx inv at the far side {took:?} after its announcement ({baseline:?} before the readers); {status}");
        drop(stuck);
    }

    /// The relay dials its native node with BIP324 v2 and, over v2, says so in its version.
    #[tokio::test]
    async fn native_links_speak_v2_and_advertise_it() {
        let mut node = Node::start(false).await;
        let _r = relay(&[node.addr.as_str()], &[]).await;
        let (peer, v2) = node.connection().await;
        assert!(v2, "the relay dialed its native node with v1");
        assert_ne!(
            peer.services() & services::P2P_V2,
            0,
            "the relay's version lacks NODE_P2P_V2: {:#x}",
            peer.services()
        );
    }

    /// Issue 11 item 10: `MSG_BLOCK` and `MSG_TX` get no witness data; the witness forms
    /// get the bytes as relayed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn plain_requests_get_no_witness_data() {
        let mut honest = Node::start(false).await;
        let mut far = Node::start(false).await;
        // A block with a segwit transaction.
        let mut raw = hex::decode(&MAINNET_BLOCK[..160]).unwrap();
        raw.push(2);
        raw.extend_from_slice(&hex::decode(LEGACY_TX).unwrap());
        raw.extend_from_slice(&hex::decode(SEGWIT_TX).unwrap());
        let block = Block::from_bytes(Bytes::from(raw)).unwrap();
        assert!(block.has_witness());
        let segwit = tx(SEGWIT_TX);
        honest.hold(block.hash(), Message::Block(block.clone()));
        honest.hold(segwit.txid(), Message::Tx(segwit.clone()));
        let addrs = [honest.addr.clone(), far.addr.clone()];
        let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let mut r = relay(&addrs, &[]).await;
        let (h, f) = (honest.peer().await, far.peer().await);
        let iv = |inv_type, hash| InvVect { inv_type, hash };
        h.queue_message(
            Message::Inv(vec![
                iv(inv_type::BLOCK, block.hash()),
                iv(inv_type::TX, segwit.txid()),
            ]),
            None,
        )
        .await;
        r.expect_line(&format!("relay inv block {}", block.hash()), T)
            .await;
        r.expect_line(&format!("relay inv tx {}", segwit.txid()), T)
            .await;

        let cases = [
            (inv_type::BLOCK, block.to_base_bytes()),
            (inv_type::WITNESS_BLOCK, block.as_bytes().clone()),
        ];
        for (t, want) in cases {
            f.queue_message(Message::GetData(vec![iv(t, block.hash())]), None)
                .await;
            match far
                .expect(T, "the block", |s| matches!(s, Seen::Block(_)))
                .await
            {
                Seen::Block(got) => {
                    assert_eq!(got.as_bytes(), &want, "inv type {t:#x}");
                    assert_eq!(got.has_witness(), t == inv_type::WITNESS_BLOCK);
                }
                other => panic!("{other:?}"),
            }
        }
        let cases = [
            (inv_type::TX, segwit.to_base_bytes()),
            (inv_type::WITNESS_TX, segwit.as_bytes().clone()),
        ];
        for (t, want) in cases {
            f.queue_message(Message::GetData(vec![iv(t, segwit.txid())]), None)
                .await;
            match far.expect(T, "the tx", |s| matches!(s, Seen::Tx(_))).await {
                Seen::Tx(got) => assert_eq!(got.as_bytes(), &want, "inv type {t:#x}"),
                other => panic!("{other:?}"),
            }
        }
    }

    /// BIP339 bridging: a tx announced by wtxid by a wtxid-relay node is requested by
    /// wtxid and announced by txid to a txid node, and the other way round.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wtxid_and_txid_peers_are_bridged() {
        let mut wtx_node = Node::start_with(false, true).await;
        let mut txid_node = Node::start(false).await;
        let segwit = tx(SEGWIT_TX);
        let legacy = tx(LEGACY_TX);
        assert_ne!(segwit.txid(), segwit.wtxid());
        wtx_node.hold(segwit.wtxid(), Message::Tx(segwit.clone()));
        txid_node.hold(legacy.txid(), Message::Tx(legacy.clone()));
        let addrs = [wtx_node.addr.clone(), txid_node.addr.clone()];
        let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let mut r = relay(&addrs, &[]).await;
        let (w, t) = (wtx_node.peer().await, txid_node.peer().await);
        assert!(w.wtxid_relay(), "BIP339 not negotiated with the relay");
        assert!(!t.wtxid_relay());
        let iv = |inv_type, hash| InvVect { inv_type, hash };

        // wtxid side -> txid side.
        w.queue_message(Message::Inv(vec![iv(inv_type::WTX, segwit.wtxid())]), None)
            .await;
        let want = iv(inv_type::WTX, segwit.wtxid());
        wtx_node
            .expect(
                T,
                "getdata by wtxid",
                |s| matches!(s, Seen::GetData(v) if v.contains(&want)),
            )
            .await;
        r.expect_line(&format!("relay inv tx {}", segwit.txid()), T)
            .await;
        let want = iv(inv_type::TX, segwit.txid());
        txid_node
            .expect(
                T,
                "inv by txid",
                |s| matches!(s, Seen::Inv(v) if v.contains(&want)),
            )
            .await;
        t.queue_message(
            Message::GetData(vec![iv(inv_type::WITNESS_TX, segwit.txid())]),
            None,
        )
        .await;
        match txid_node
            .expect(T, "the tx", |s| matches!(s, Seen::Tx(_)))
            .await
        {
            Seen::Tx(got) => assert_eq!(got.as_bytes(), segwit.as_bytes()),
            other => panic!("{other:?}"),
        }

        // txid side -> wtxid side: announced by wtxid, served by wtxid.
        t.queue_message(Message::Inv(vec![iv(inv_type::TX, legacy.txid())]), None)
            .await;
        r.expect_line(&format!("relay inv tx {}", legacy.txid()), T)
            .await;
        let want = iv(inv_type::WTX, legacy.wtxid());
        wtx_node
            .expect(
                T,
                "inv by wtxid",
                |s| matches!(s, Seen::Inv(v) if v.contains(&want)),
            )
            .await;
        w.queue_message(Message::GetData(vec![want]), None).await;
        match wtx_node
            .expect(T, "the tx", |s| matches!(s, Seen::Tx(_)))
            .await
        {
            Seen::Tx(got) => assert_eq!(got.txid(), legacy.txid()),
            other => panic!("{other:?}"),
        }
    }

    /// A block whose header misses its own target is dropped, never announced, and its
    /// sender disconnected; the relay keeps serving the others.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn block_failing_proof_of_work_is_dropped_and_its_sender_dropped() {
        let mut bad_node = Node::start(false).await;
        let mut far = Node::start(false).await;
        let good = Block::from_bytes(Bytes::from(hex::decode(MAINNET_BLOCK).unwrap())).unwrap();
        assert!(good.header().check_proof_of_work(Network::Regtest));
        // The same block with another nonce: its hash no longer meets its target.
        let mut raw = hex::decode(MAINNET_BLOCK).unwrap();
        raw[76] ^= 1;
        let block = Block::from_bytes(Bytes::from(raw)).unwrap();
        assert!(!block.header().check_proof_of_work(Network::Regtest));
        bad_node.hold(block.hash(), Message::Block(block.clone()));
        let addrs = [bad_node.addr.clone(), far.addr.clone()];
        let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let mut r = relay(&addrs, &[]).await;
        let (b, f) = (bad_node.peer().await, far.peer().await);
        b.queue_message(
            Message::Inv(vec![InvVect {
                inv_type: inv_type::BLOCK,
                hash: block.hash(),
            }]),
            None,
        )
        .await;
        r.expect_line(&format!("block {} fails proof of work", block.hash()), T)
            .await;
        tokio::time::timeout(T, b.wait_for_disconnect())
            .await
            .expect("the sender is disconnected");
        // Up to the next status line (printed after the drop): nothing was relayed.
        let status = loop {
            let line = r.next_line(T).await.expect("a status line");
            assert!(
                !line.starts_with("relay inv block"),
                "announced onward: {line}"
            );
            if line.starts_with("status: ") {
                break line;
            }
        };
        assert!(status.contains("blocks 0"), "{status}");
        assert!(f.connected(), "the other native peer was dropped too");
        while let Ok(seen) = far.seen.try_recv() {
            assert!(
                !matches!(&seen, Seen::Inv(v) if v.iter().any(|iv| iv.hash == block.hash())),
                "far got an inv of the bad block"
            );
        }
    }

    /// A ping round trip to the relay: it has read everything `peer` sent before (such as
    /// `sendheaders`).
    async fn settle(node: &mut Node, peer: &Peer, nonce: u64) {
        peer.queue_message(Message::Ping(MsgPing { nonce }), None)
            .await;
        node.expect(
            T,
            "the relay's pong",
            |s| matches!(s, Seen::Pong(n) if *n == nonce),
        )
        .await;
    }

    fn block_iv(inv_type: u32, hash: Hash256) -> InvVect {
        InvVect { inv_type, hash }
    }

    /// Whether `seen` announces `hash` (by `inv` or `headers`).
    fn announces(seen: &Seen, hash: Hash256) -> bool {
        match seen {
            Seen::Inv(v) => v.iter().any(|iv| iv.hash == hash),
            Seen::Headers(v) => v.iter().any(|h| h.hash() == hash),
            _ => false,
        }
    }

    /// BIP130 both ways: the relay sends `sendheaders`; a block announced to it by
    /// `headers` is fetched with `getdata` like one announced by `inv`, then announced by
    /// `headers` to the peer that sent `sendheaders` and by `inv` to the one that did not,
    /// and not back to its announcer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn headers_announcements_are_fetched_and_announced_by_headers_or_inv() {
        let mut announcer = Node::start_opts(false, false, true).await;
        let mut wants = Node::start_opts(false, false, true).await;
        let mut plain = Node::start(false).await;
        let block = regtest_block(Hash256::hash(b"some parent"), 1);
        announcer.hold(block.hash(), Message::Block(block.clone()));
        let addrs = [
            announcer.addr.clone(),
            wants.addr.clone(),
            plain.addr.clone(),
        ];
        let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let mut r = relay(&addrs, &[]).await;
        let (a, w, p) = (
            announcer.peer().await,
            wants.peer().await,
            plain.peer().await,
        );
        settle(&mut announcer, &a, 1).await;
        settle(&mut wants, &w, 2).await;
        settle(&mut plain, &p, 3).await;
        for (name, peer) in [("announcer", &a), ("wants", &w), ("plain", &p)] {
            assert!(peer.wants_headers(), "the relay sent {name} no sendheaders");
        }
        assert!(a.sent_send_headers() && w.sent_send_headers() && !p.sent_send_headers());

        a.queue_message(Message::Headers(vec![*block.header()]), None)
            .await;
        let want = block_iv(inv_type::WITNESS_BLOCK, block.hash());
        announcer
            .expect(
                T,
                "getdata for the announced block",
                |s| matches!(s, Seen::GetData(v) if *v == [want]),
            )
            .await;
        let line = r
            .expect_line(&format!("relay inv block {}", block.hash()), T)
            .await;
        assert!(line.ends_with("native -> native"), "{line}");

        match wants
            .expect(T, "the announcement", |s| announces(s, block.hash()))
            .await
        {
            Seen::Headers(h) => assert_eq!(h, [*block.header()]),
            other => panic!("the sendheaders peer got {other:?}, not headers"),
        }
        match plain
            .expect(T, "the announcement", |s| announces(s, block.hash()))
            .await
        {
            Seen::Inv(v) => assert_eq!(v, [block_iv(inv_type::BLOCK, block.hash())]),
            other => panic!("the plain peer got {other:?}, not inv"),
        }
        // The announced header names a block the relay serves.
        w.queue_message(Message::GetData(vec![want]), None).await;
        match wants
            .expect(T, "the block", |s| matches!(s, Seen::Block(_)))
            .await
        {
            Seen::Block(got) => assert_eq!(got.as_bytes(), block.as_bytes()),
            other => panic!("{other:?}"),
        }
        // Each peer was told once, the announcer never.
        let status = r.expect_line("status: ", T).await;
        assert!(status.contains("blocks 1 ("), "{status}");
        for (name, node) in [
            ("announcer", &mut announcer),
            ("wants", &mut wants),
            ("plain", &mut plain),
        ] {
            let mut again = 0;
            while let Ok(seen) = node.seen.try_recv() {
                again += usize::from(announces(&seen, block.hash()));
            }
            assert_eq!(again, 0, "{name} was announced the block again");
        }
    }

    /// One `headers` message with ten headers, nine chained and one unrelated: the relay
    /// takes the newest eight (Core's `MAX_BLOCKS_TO_ANNOUNCE`), connecting or not, and
    /// fetches exactly those.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn several_headers_are_fetched_up_to_the_announcement_bound() {
        let mut announcer = Node::start(false).await;
        let mut far = Node::start(false).await;
        let mut chain = Vec::new();
        let mut prev = Hash256::hash(b"regtest tip");
        for tag in 0..9 {
            let b = regtest_block(prev, tag);
            prev = b.hash();
            chain.push(b);
        }
        chain.push(Block::from_bytes(hex::decode(MAINNET_BLOCK).unwrap().into()).unwrap());
        for b in &chain {
            announcer.hold(b.hash(), Message::Block(b.clone()));
        }
        let addrs = [announcer.addr.clone(), far.addr.clone()];
        let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let mut r = relay(&addrs, &[]).await;
        let (a, _f) = (announcer.peer().await, far.peer().await);
        let headers: Vec<BlockHeader> = chain.iter().map(|b| *b.header()).collect();
        a.queue_message(Message::Headers(headers), None).await;

        let newest: Vec<Hash256> = chain[2..].iter().map(Block::hash).collect();
        for hash in &newest {
            r.expect_line(&format!("relay inv block {hash}"), T).await;
        }
        let status = r.expect_line("status: ", T).await;
        assert!(status.contains("blocks 8 ("), "{status}");
        let mut asked = Vec::new();
        while let Ok(seen) = announcer.seen.try_recv() {
            if let Seen::GetData(v) = seen {
                asked.extend(v.iter().map(|iv| iv.hash));
            }
        }
        asked.sort_by_key(|h| h.0);
        let mut want = newest.clone();
        want.sort_by_key(|h| h.0);
        assert_eq!(asked, want, "fetched other than the newest eight, or twice");
        // The far node (no sendheaders) is told of the eight by inv, of the older two never.
        let mut told = std::collections::HashSet::new();
        while told.len() < newest.len() {
            match far
                .expect(T, "block invs", |s| matches!(s, Seen::Inv(_)))
                .await
            {
                Seen::Inv(v) => {
                    for iv in v {
                        assert_eq!(iv.inv_type, inv_type::BLOCK);
                        assert!(newest.contains(&iv.hash), "announced {}", iv.hash);
                        assert!(told.insert(iv.hash), "announced {} twice", iv.hash);
                    }
                }
                other => panic!("{other:?}"),
            }
        }
    }

    /// A `headers` message with one header failing its proof of work is dropped whole (its
    /// good header is not fetched either) and its sender disconnected.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn header_failing_proof_of_work_drops_the_message_and_its_sender() {
        let mut bad_node = Node::start(false).await;
        let mut far = Node::start(false).await;
        let good = regtest_block(Hash256::hash(b"tip"), 1);
        let mut bad = *regtest_block(good.hash(), 2).header();
        while bad.check_proof_of_work(Network::Regtest) {
            bad.nonce += 1;
        }
        let addrs = [bad_node.addr.clone(), far.addr.clone()];
        let addrs: Vec<&str> = addrs.iter().map(String::as_str).collect();
        let mut r = relay(&addrs, &[]).await;
        let (b, f) = (bad_node.peer().await, far.peer().await);
        b.queue_message(Message::Headers(vec![*good.header(), bad]), None)
            .await;
        r.expect_line(&format!("header {} fails proof of work", bad.hash()), T)
            .await;
        tokio::time::timeout(T, b.wait_for_disconnect())
            .await
            .expect("the sender is disconnected");
        r.expect_line("- native peer", T).await;
        let status = r.expect_line("status: ", T).await;
        assert!(status.contains("announced 0,"), "{status}");
        while let Ok(seen) = bad_node.seen.try_recv() {
            assert!(!matches!(seen, Seen::GetData(_)), "asked for {seen:?}");
        }
        assert!(f.connected(), "the other native peer was dropped too");
    }
}
