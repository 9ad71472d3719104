//! Discovery v5 interop with an implementation written by others: @chainsafe/discv5
//! (installed by the test set-up with `npm ci` in `tests/interop/discv5`, driven by
//! `node.mjs`), on 127.0.8.x. Both directions, records checked field by field:
//! - the chainsafe node pings braid, asks braid for its record (FINDNODE at distance 0)
//!   and reads every entry of it, the `braid` capabilities included; then it looks up a
//!   second braid node that only braid knows; braid offers the chainsafe node as a
//!   candidate with its record;
//! - braid bootstraps from the chainsafe node, pings it, fetches its record by FINDNODE and
//!   reads every entry (a custom one included); a second braid node, told only about the
//!   chainsafe node, finds the first through it.
//!
//! Skipped loudly without node unless CI is set.

#[path = "support/ethjs.rs"]
mod ethjs;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ethjs::{ensure_installed_for, EthjsPeer};
use p2p::base::Capability;
use p2p::discover::v5::v5_node_id;
use p2p::discover::v5::{Discv5, Discv5Config, Discv5Error};
use p2p::discover::Bootnode;
use p2p::node::{NodeId, NodeKey};
use p2p::record::NodeRecord;
use secp256k1::{PublicKey, Secp256k1};
use serde_json::{json, Value};

const HARNESS: &str = "discv5";
const WAIT: Duration = Duration::from_secs(20);
const BRAID_TCP: u16 = 30401;

fn skip() -> bool {
    if ensure_installed_for(HARNESS).is_none() {
        eprintln!("!!! SKIPPING discv5 interop: node/npm unavailable (set CI to make this fail)");
        return true;
    }
    false
}

fn caps() -> Vec<Capability> {
    vec![Capability::new("chat", 1), Capability::new("btc", 70016)]
}

async fn braid(ip: &str, bootnodes: Vec<Bootnode>) -> (Discv5, NodeKey) {
    let key = NodeKey::generate();
    let mut c = Discv5Config::new(key.clone(), SocketAddr::new(ip.parse().unwrap(), 0));
    c.tcp_port = BRAID_TCP;
    c.capabilities = caps();
    c.bootnodes = bootnodes;
    c.lookup_interval_start = Duration::from_millis(500);
    (Discv5::start(c).await.expect("braid discv5"), key)
}

/// The chainsafe node and the description of its record.
async fn chainsafe(ip: &str) -> (EthjsPeer, Value) {
    let mut js = EthjsPeer::spawn_script_in(HARNESS, "node.mjs", &["--ip", ip, "--tcp", "30499"])
        .await
        .expect("spawning node.mjs");
    let listening = js.expect_event("listening", WAIT).await;
    (js, listening["record"].clone())
}

/// Sends a command and waits for its answer (or its error, which fails the test).
async fn ask(js: &mut EthjsPeer, req: u64, mut cmd: Value) -> Value {
    cmd["req"] = json!(req);
    js.send(cmd.clone()).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = js
            .next_event(left)
            .await
            .unwrap_or_else(|| panic!("no answer to {cmd}"));
        if ev["req"] == json!(req) {
            assert_ne!(ev["event"], "error", "{cmd} failed: {ev}");
            return ev;
        }
    }
}

fn v5_id_hex(id: &NodeId) -> String {
    hex::encode(v5_node_id(id).raw())
}

fn compressed_key_hex(key: &NodeKey) -> String {
    hex::encode(PublicKey::from_secret_key(&Secp256k1::new(), key.secret()).serialize())
}

/// Checks chainsafe's reading of a braid record entry by entry.
fn assert_reads_braid_record(seen: &Value, record: &NodeRecord, key: &NodeKey) {
    let udp = record.udp_addr().unwrap();
    assert_eq!(
        seen["enr"],
        record.to_text(),
        "the text form round-trips byte for byte"
    );
    assert_eq!(seen["nodeId"], v5_id_hex(&key.id()));
    assert_eq!(seen["publicKey"], compressed_key_hex(key));
    assert_eq!(seen["seq"], record.seq().to_string());
    assert_eq!(seen["ip"], udp.ip().to_string());
    assert_eq!(seen["udp"], udp.port());
    assert_eq!(seen["tcp"], BRAID_TCP);
    assert_eq!(seen["braidError"], Value::Null);
    assert_eq!(seen["braid"], json!([["chat", 1], ["btc", 70016]]));
}

/// Checks braid's reading of the chainsafe record against chainsafe's own description.
fn assert_reads_chainsafe_record(record: &NodeRecord, js: &Value) {
    assert_eq!(record.to_text(), js["enr"].as_str().unwrap());
    let enr = record.as_enr();
    assert_eq!(hex::encode(enr.node_id().raw()), js["nodeId"]);
    let id = record.node_id().expect("a secp256k1 record");
    assert_eq!(v5_id_hex(&id), js["nodeId"]);
    let compressed = PublicKey::from_slice(&[&[4u8][..], &id.0[..]].concat())
        .unwrap()
        .serialize();
    assert_eq!(hex::encode(compressed), js["publicKey"]);
    assert_eq!(record.seq().to_string(), js["seq"].as_str().unwrap());
    let udp = record.udp_addr().unwrap();
    assert_eq!(udp.ip().to_string(), js["ip"].as_str().unwrap());
    assert_eq!(json!(udp.port()), js["udp"]);
    assert_eq!(
        record.tcp_addr().map(|a| json!(a.port())),
        Some(js["tcp"].clone())
    );
    // A custom entry: RLP of the 9-byte string "chainsafe".
    let custom = enr.get_raw_rlp("jsk").expect("the jsk entry");
    assert_eq!(custom, [&[0x89u8][..], b"chainsafe"].concat());
    assert_eq!(js["custom"], "chainsafe");
    assert!(record.capabilities().unwrap().is_empty(), "no braid entry");
}

/// Runs a request against chainsafe, once more if the first fails. A braid request that
/// overlaps braid's own lookup traffic to the same chainsafe node is occasionally lost
/// (about 1 in 60 in a stress run; never without concurrent lookups): the test checks the
/// exchange, not that rare race.
async fn twice<T, F, Fut>(what: &str, mut request: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Discv5Error>>,
{
    match request().await {
        Ok(v) => v,
        Err(first) => {
            eprintln!("{what}: first attempt failed ({first}); retrying once");
            request()
                .await
                .unwrap_or_else(|e| panic!("{what} failed twice: {first}, then {e}"))
        }
    }
}

/// Waits for braid to offer the chainsafe node as a candidate (session up, record checked
/// against its address) and checks the candidate; returns its node id.
async fn verified_candidate(braid: &Discv5, js: &Value) -> NodeId {
    let mut candidates = braid.candidates().unwrap();
    let c = tokio::time::timeout(WAIT, candidates.recv())
        .await
        .expect("chainsafe offered as a candidate")
        .expect("stream open");
    assert_eq!(v5_id_hex(&c.node.id), js["nodeId"]);
    assert_eq!(c.node.endpoint.ip.to_string(), js["ip"].as_str().unwrap());
    assert_eq!(json!(c.node.endpoint.udp_port), js["udp"]);
    assert_reads_chainsafe_record(c.record.as_ref().unwrap(), js);
    c.node.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chainsafe_pings_braid_reads_its_record_and_finds_its_nodes() {
    if skip() {
        return;
    }
    let (a, a_key) = braid("127.0.8.1", vec![]).await;
    let a_record = a.local_record().unwrap();
    let (b, b_key) = braid("127.0.8.2", vec![Bootnode::Record(a_record.clone())]).await;
    let mut a_candidates = a.candidates().unwrap();
    let deadline = Instant::now() + WAIT;
    while a.table_len() < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(a.table_len(), 1, "braid a never learned b");

    let (mut js, js_desc) = chainsafe("127.0.8.3").await;
    let a_text = a_record.to_text();
    ask(&mut js, 1, json!({"cmd": "add", "enr": a_text})).await;

    // PING: braid answers with its record's seq and the address it saw chainsafe at.
    let pong = ask(&mut js, 2, json!({"cmd": "ping", "enr": a_text})).await;
    assert_eq!(pong["event"], "pong");
    assert_eq!(pong["enrSeq"], a_record.seq().to_string());
    assert_eq!(pong["addr"]["ip"], "127.0.8.3");
    assert_eq!(pong["addr"]["port"], js_desc["udp"]);

    // FINDNODE at distance 0: braid's own record, every entry readable.
    let nodes = ask(
        &mut js,
        3,
        json!({"cmd": "findnode", "enr": a_text, "distances": [0]}),
    )
    .await;
    let records = nodes["records"].as_array().unwrap();
    assert_eq!(records.len(), 1, "{nodes}");
    assert_reads_braid_record(&records[0], &a_record, &a_key);

    // A lookup for b, which chainsafe has never heard of: braid a answers with b's record.
    let b_id = v5_id_hex(&b.local_id());
    let found = ask(&mut js, 4, json!({"cmd": "lookup", "target": b_id})).await;
    let b_seen = found["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["nodeId"] == b_id.as_str())
        .unwrap_or_else(|| panic!("b not found: {found}"))
        .clone();
    assert_reads_braid_record(&b_seen, &b.local_record().unwrap(), &b_key);

    // Braid verified chainsafe's session and record and offers it as a candidate.
    let js_id = js_desc["nodeId"].as_str().unwrap().to_string();
    let deadline = Instant::now() + WAIT;
    let candidate = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let c = tokio::time::timeout(left, a_candidates.recv())
            .await
            .expect("chainsafe offered as a candidate")
            .expect("stream open");
        if v5_id_hex(&c.node.id) == js_id {
            break c;
        }
    };
    assert_eq!(candidate.node.endpoint.ip.to_string(), "127.0.8.3");
    assert_eq!(json!(candidate.node.endpoint.udp_port), js_desc["udp"]);
    assert_reads_chainsafe_record(&candidate.record.unwrap(), &js_desc);

    assert!(js.quit().await);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn braid_bootstraps_from_chainsafe_and_finds_through_it() {
    if skip() {
        return;
    }
    let (mut js, js_desc) = chainsafe("127.0.8.4").await;
    let js_record: NodeRecord = js_desc["enr"].as_str().unwrap().parse().unwrap();
    assert_reads_chainsafe_record(&js_record, &js_desc);

    let (c, _) = braid("127.0.8.5", vec![Bootnode::Record(js_record.clone())]).await;
    // Braid's start-up lookup reaches its bootnode: a session, chainsafe's record checked.
    let js_id = verified_candidate(&c, &js_desc).await;
    twice("ping", || c.ping(&js_record)).await;
    // FINDNODE at distance 0: chainsafe's current record, as chainsafe describes it.
    let fetched = twice("findnode 0", || c.request_record(&js_record)).await;
    assert_reads_chainsafe_record(&fetched, &js_desc);

    // Chainsafe keeps braid c in its table, with braid's record.
    let c_id = v5_id_hex(&c.local_id());
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ev = js.expect_event("enr_added", left).await;
        if ev["record"]["nodeId"] == c_id.as_str() {
            assert_eq!(ev["record"]["enr"], c.local_record().unwrap().to_text());
            break;
        }
    }

    // A second braid node, told only about chainsafe, finds c through chainsafe's NODES.
    let (d, _) = braid("127.0.8.6", vec![Bootnode::Record(js_record.clone())]).await;
    assert_eq!(verified_candidate(&d, &js_desc).await, js_id);
    let found = twice("lookup", || async {
        let found = d.lookup(c.local_id()).await?;
        match found.iter().any(|r| r.node_id().ok() == Some(c.local_id())) {
            true => Ok(found),
            false => Err(Discv5Error::NoRecord),
        }
    })
    .await;
    let c_found = found
        .iter()
        .find(|r| r.node_id().ok() == Some(c.local_id()))
        .unwrap_or_else(|| panic!("c not found: {} records", found.len()));
    assert_eq!(*c_found, c.local_record().unwrap());
    assert_eq!(c_found.capabilities().unwrap(), caps());
    assert!(
        found.iter().any(|r| r.to_text() == js_record.to_text()),
        "chainsafe answered the lookup"
    );

    assert!(js.quit().await);
    c.shutdown().await;
    d.shutdown().await;
}
