//! The `braid` tool run as a process, the way people run it: key and enode tools, the RLPx
//! probe and conformance suite against braid itself and against @ethereumjs/devp2p, and the
//! bitcoin probe against braid's native bitcoin peer.

#[path = "../../tests/support/ethjs.rs"]
mod ethjs;

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use p2p::node::NodeKey;
use p2p::server::{Server, ServerConfig};
use protocols::bitcoin::peer::{Config, NativeTransport, Peer};
use protocols::bitcoin::wire::Network;
use protocols::chat::ChatRoom;
use serde_json::Value;
use tokio::process::Command;

/// Upper bound for one CLI run (the suite's longest case waits for the remote's ping).
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

async fn braid(args: &[&str]) -> Output {
    let run = Command::new(env!("CARGO_BIN_EXE_braid"))
        .args(args)
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(RUN_TIMEOUT, run)
        .await
        .expect("braid did not finish in time")
        .expect("braid could not be started")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_lines(out: &Output) -> Vec<Value> {
    stdout(out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// A braid node running chat/1 that pings every second, so the idle case sees a ping soon.
async fn braid_node() -> Server {
    let (room, _events) = ChatRoom::new("target");
    let mut cfg = ServerConfig {
        protocols: vec![room.protocol()],
        ..ServerConfig::new(NodeKey::generate(), Some("127.0.0.1:0".parse().unwrap()))
    };
    cfg.peer.ping_interval = Duration::from_secs(1);
    // Keep the room alive as long as the server: its protocol closure holds what it needs.
    std::mem::forget(room);
    Server::start(cfg).await.unwrap()
}

#[tokio::test]
async fn key_generate_then_inspect_agree() {
    let dir = std::env::temp_dir().join(format!("braid-cli-key-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("node.key");
    let path = file.to_str().unwrap();

    let made = braid(&["--json", "key", "generate", "--out", path]).await;
    assert!(made.status.success(), "{}", stderr(&made));
    let made = &json_lines(&made)[0];
    assert!(
        made.get("key").is_none(),
        "a key written to a file is not printed"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "key file mode");
    }

    let seen = braid(&[
        "--json",
        "key",
        "inspect",
        path,
        "--addr",
        "127.0.0.1:30303",
    ])
    .await;
    assert!(seen.status.success(), "{}", stderr(&seen));
    let seen = &json_lines(&seen)[0];
    assert_eq!(seen["id"], made["id"]);
    let key = NodeKey::load(&file).unwrap();
    assert_eq!(seen["id"].as_str().unwrap(), key.id().to_string());
    assert_eq!(
        seen["enode"].as_str().unwrap(),
        format!("enode://{}@127.0.0.1:30303", key.id())
    );

    // The key signs a record for its enode, and the record reads back to the same enode.
    let enode = format!("enode://{}@127.0.0.9:30303?discport=30301", key.id());
    let enr = braid(&[
        "--json", "enode", "to-enr", &enode, "--key", path, "--seq", "7",
    ])
    .await;
    assert!(enr.status.success(), "{}", stderr(&enr));
    let enr = json_lines(&enr)[0]["enr"].as_str().unwrap().to_string();
    assert!(enr.starts_with("enr:"));
    let back = braid(&["--json", "enode", "from-enr", &enr]).await;
    assert!(back.status.success(), "{}", stderr(&back));
    let back = &json_lines(&back)[0];
    assert_eq!(back["enode"].as_str().unwrap(), enode);
    assert_eq!(back["seq"], 7);
    // A record for somebody else's enode cannot be signed with this key.
    let other = format!("enode://{}@127.0.0.9:30303", NodeKey::generate().id());
    let refused = braid(&["enode", "to-enr", &other, "--key", path]).await;
    assert_eq!(refused.status.code(), Some(1));
    // A tampered record is refused with one line.
    let mut tampered = enr.into_bytes();
    let mid = tampered.len() / 2;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let out = braid(&["enode", "from-enr", &tampered]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));

    let again = braid(&["key", "generate", "--out", path]).await;
    assert_eq!(
        again.status.code(),
        Some(1),
        "an existing key is never overwritten"
    );
    assert_eq!(stderr(&again).lines().count(), 1, "{}", stderr(&again));
    assert_eq!(NodeKey::load(&file).unwrap().to_hex(), key.to_hex());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn enode_parse_and_bad_input_is_one_line() {
    let id = NodeKey::generate().id();
    let text = format!("enode://{id}@127.0.0.2:30303?discport=30301");
    let out = braid(&["--json", "enode", "parse", &text]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v = &json_lines(&out)[0];
    assert_eq!(v["ip"], "127.0.0.2");
    assert_eq!(v["tcp_port"], 30303);
    assert_eq!(v["udp_port"], 30301);
    assert_eq!(v["id"].as_str().unwrap(), id.to_string());

    let bad = braid(&["enode", "parse", "enode://1234@1.2.3.4:1"]).await;
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(stderr(&bad).lines().count(), 1, "{}", stderr(&bad));
    assert!(stderr(&bad).starts_with("error: "));

    let usage = braid(&["rlpx", "ping", "not-an-enode"]).await;
    assert_eq!(usage.status.code(), Some(2));
    assert_eq!(stderr(&usage).lines().count(), 1, "{}", stderr(&usage));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rlpx_ping_reads_the_hello_both_handshakes() {
    let node = braid_node().await;
    let enode = node.enode().unwrap().to_string();
    for legacy in [false, true] {
        let mut args = vec!["--json", "rlpx", "ping", &enode];
        if legacy {
            args.push("--legacy");
        }
        let out = braid(&args).await;
        assert!(out.status.success(), "{}", stderr(&out));
        let v = &json_lines(&out)[0];
        assert_eq!(v["client_id"].as_str().unwrap(), node.node_info().client_id);
        assert_eq!(v["p2p_version"], 5);
        assert_eq!(v["capabilities"], serde_json::json!(["chat/1"]));
        assert_eq!(v["id_matches"], true);
        assert_eq!(v["handshake"], if legacy { "legacy" } else { "eip8" });
        assert!(v["ping_rtt_ms"].as_f64().unwrap() > 0.0);
    }
    // A node that is not there: one line, exit 1.
    let gone = format!("enode://{}@127.0.0.1:1", NodeKey::generate().id());
    let out = braid(&["rlpx", "ping", &gone, "--timeout", "2s"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    node.shutdown().await;
}

/// Runs the suite with `--json` and returns each case's verdict and detail by name.
async fn conformance(
    enode: &str,
    idle_wait: &str,
) -> (Option<i32>, BTreeMap<String, (String, String)>) {
    let out = braid(&["--json", "rlpx", "test", enode, "--idle-wait", idle_wait]).await;
    let results = json_lines(&out)
        .into_iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap().to_string(),
                (
                    v["verdict"].as_str().unwrap().to_string(),
                    v["detail"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    (out.status.code(), results)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rlpx_test_braid_passes_every_case() {
    let node = braid_node().await;
    let (code, results) = conformance(&node.enode().unwrap().to_string(), "10s").await;
    assert_eq!(results.len(), 18, "every case ran: {results:#?}");
    for (name, (verdict, detail)) in &results {
        assert_eq!(verdict, "pass", "{name}: {detail}");
    }
    assert_eq!(code, Some(0));
    // The node kept serving through all of it.
    assert!(node.peer_count() <= 1);
    node.shutdown().await;
}

/// ethjs 10.0.0 deviates from the protocol in three places, each confirmed in its source
/// (dist/esm/rlpx/peer.js):
/// - legacy auth: it tests the first byte with `subarray(0, 1) === hexToBytes('0x04')`, an
///   identity comparison of two arrays that is always false, so every auth is read as
///   EIP-8 and a 307-byte legacy auth waits forever for the ~1,100 bytes its first two
///   bytes seem to announce;
/// - garbage auth: a failed decryption calls `disconnect()`, which cannot send before the
///   handshake and returns without closing the socket, so the connection stays open;
/// - wrong identity: as recipient it has no expected id, and takes the Hello's id as the
///   peer's identity instead of checking it against the handshake key.
const ETHJS_DEVIATIONS: [&str; 3] = [
    "handshake/legacy",
    "handshake/garbage-auth",
    "hello/wrong-identity",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rlpx_test_against_ethjs() {
    if ethjs::ensure_installed().is_none() {
        eprintln!(
            "!!! SKIPPING rlpx test against ethjs: node/npm unavailable (set CI to make this fail)"
        );
        return;
    }
    let key = NodeKey::generate().to_hex();
    let mut js = ethjs::EthjsPeer::spawn(&["--key", &key, "--listen", "0", "--cap", "chat/1/2"])
        .await
        .unwrap();
    let listening = js.expect_event("listening", Duration::from_secs(30)).await;
    let enode = listening["enode"].as_str().unwrap().to_string();
    // ethjs pings every 15 s.
    let (code, results) = conformance(&enode, "20s").await;
    assert_eq!(results.len(), 18, "every case ran: {results:#?}");
    for (name, (verdict, detail)) in &results {
        let expected = if ETHJS_DEVIATIONS.contains(&name.as_str()) {
            "fail"
        } else {
            "pass"
        };
        assert_eq!(verdict, expected, "{name}: {detail}");
    }
    assert_eq!(code, Some(3), "failures give exit code 3");
    js.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn btc_ping_against_a_native_peer() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = tokio::spawn(async move {
        let transport = NativeTransport::accept(&listener, Network::Regtest)
            .await
            .unwrap();
        let cfg = Config {
            network: Network::Regtest,
            user_agent_name: "probe-target".into(),
            user_agent_version: "1.0".into(),
            ..Config::default()
        };
        let peer = Peer::start_inbound(cfg, transport);
        tokio::time::timeout(Duration::from_secs(60), peer.wait_for_disconnect())
            .await
            .ok();
    });
    let out = braid(&[
        "--json",
        "btc",
        "ping",
        &addr.to_string(),
        "--network",
        "regtest",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v = &json_lines(&out)[0];
    assert_eq!(v["version"], 70016);
    assert!(
        v["user_agent"]
            .as_str()
            .unwrap()
            .contains("probe-target:1.0"),
        "{v}"
    );
    assert!(v["ping_rtt_ms"].as_f64().unwrap() > 0.0);
    serve.await.unwrap();

    // Wrong network magic: the probe fails with one line instead of hanging.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serve = tokio::spawn(async move {
        let transport = NativeTransport::accept(&listener, Network::Regtest)
            .await
            .unwrap();
        let peer = Peer::start_inbound(
            Config {
                network: Network::Regtest,
                ..Config::default()
            },
            transport,
        );
        tokio::time::timeout(Duration::from_secs(60), peer.wait_for_disconnect())
            .await
            .ok();
    });
    let out = braid(&[
        "btc",
        "ping",
        &addr.to_string(),
        "--network",
        "mainnet",
        "--timeout",
        "3s",
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    serve.await.unwrap();
}

/// A discv4 node on 127.0.0.1 with one other node in its table.
async fn discv4_pair() -> (p2p::discover::v4::Discv4, p2p::discover::v4::Discv4) {
    use p2p::discover::v4::{Bootnode, Discv4, Discv4Config};
    let a = Discv4::start(Discv4Config::new(
        NodeKey::generate(),
        "127.0.0.1:0".parse().unwrap(),
    ))
    .await
    .unwrap();
    let mut cfg = Discv4Config::new(NodeKey::generate(), "127.0.0.1:0".parse().unwrap());
    cfg.bootnodes = vec![Bootnode::Enode(a.local_enode())];
    let b = Discv4::start(cfg).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a.table_len() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(a.table_len() > 0, "the pair did not bond");
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discv4_ping_resolve_crawl_and_test_against_braid() {
    let (a, b) = discv4_pair().await;
    let target = a.local_enode().to_string();

    let out = braid(&["--json", "discv4", "ping", &target]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(json_lines(&out)[0]["rtt_ms"].as_f64().unwrap() > 0.0);

    let out = braid(&["--json", "discv4", "resolve", &target]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v = &json_lines(&out)[0];
    assert_eq!(v["enr"].as_str().unwrap(), a.local_record().to_text());

    let out = braid(&[
        "--json",
        "discv4",
        "crawl",
        "--bootnodes",
        &target,
        "--timeout",
        "3s",
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let found: Vec<String> = json_lines(&out)[0]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    assert!(found.contains(&a.local_id().to_string()), "{found:?}");
    assert!(
        found.contains(&b.local_id().to_string()),
        "crawl found b through a: {found:?}"
    );

    let out = braid(&["--json", "discv4", "test", &target]).await;
    let results = json_lines(&out);
    assert_eq!(results.len(), 8, "{results:#?}");
    for r in &results {
        assert_eq!(r["verdict"], "pass", "{r}");
    }
    assert_eq!(out.status.code(), Some(0));

    // Nobody there: one line, exit 1.
    let gone = format!("enode://{}@127.0.0.1:9", NodeKey::generate().id());
    let out = braid(&["discv4", "ping", &gone, "--timeout", "1s"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    a.shutdown().await;
    b.shutdown().await;
}
