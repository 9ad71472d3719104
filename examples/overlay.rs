//! Your own protocol on braid: `kv/1`, a tiny replicated key-value store.
//!
//! It shows the pieces of a real overlay: message codes with RLP payloads, a `Protocol`
//! whose `run` reads from a `ProtoRw` and writes through a bounded per-peer queue,
//! request/response matched by request id (with a timeout), node-info and peer-info
//! hooks, and the server's peer-event stream.
//!
//! | code | message    | RLP payload                              |
//! |------|------------|------------------------------------------|
//! | 0    | PUT        | `[key, value, version]` (flooded if new) |
//! | 1    | GET        | `[request-id, key]`                      |
//! | 2    | GET_REPLY  | `[request-id, [value, version] or []]`   |
//! | 3    | SYNC       | `[]`: "send me everything" (on connect)  |
//! | 4    | SYNC_REPLY | `[[key, value, version], ...]`           |
//!
//! ```text
//! cargo run --example overlay -- --demo
//! cargo run --example overlay            # prints "enode: …"; then type commands:
//!   put KEY VALUE | get KEY | ask KEY | dial ENODE | peers | quit
//! cargo run --example overlay -- --bootnodes enode://…   # finds the other kv nodes
//! ```
//!
//! Discovery v4 runs by default (see `--bootnodes`, `--udp-port`, `--no-discovery`) and
//! dials only nodes whose record lists `kv/1`.
//!
//! **Writes are unauthenticated.** Any peer, and anyone who can reach a peer, can
//! overwrite any key: a PUT carries no signature and no owner, and the version is the
//! writer's claim. What the store does bound is how much a writer can make it hold and
//! how far it can push a version:
//!
//! - keys are at most [`MAX_KEY`] bytes, values [`MAX_VALUE`] bytes (larger ones are a
//!   protocol breach: the peer is disconnected);
//! - the store holds at most [`MAX_KEYS`] keys and [`MAX_STORE_BYTES`] bytes of keys
//!   and values; writes of new keys beyond that are dropped;
//! - each connected peer may introduce at most [`MAX_KEYS_PER_PEER`] new keys (counted
//!   per node id for the life of the process; keys it relays for others count too),
//!   so one peer cannot take the whole store; updates to existing keys are not counted;
//! - versions start at 1, and a write may set a key's version at most
//!   [`MAX_VERSION_STEP`] past the version this node holds (0 for a new key). Honest
//!   nodes step by 1, so a replica that missed up to that many writes to one key still
//!   catches up, while a write claiming `u64::MAX` (which would beat every later write
//!   and lock the key forever) is dropped. A local `put` always writes current + 1,
//!   which beats whatever the store accepted.
//!
//! Dropped writes are logged at debug level and not relayed; the sender stays connected,
//! because an honest node relaying someone else's writes can trip the same limits.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::error::Error;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use p2p::base::DisconnectReason;
use p2p::node::{Enode, NodeId, NodeKey};
use p2p::peer::{Peer, ProtoRw};
use p2p::protocol::{Protocol, ProtocolError};
use p2p::server::{PeerEvent, Server, ServerConfig};
use rlp::{Rlp, RlpStream};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

const PUT: u64 = 0;
const GET: u64 = 1;
const GET_REPLY: u64 = 2;
const SYNC: u64 = 3;
const SYNC_REPLY: u64 = 4;
/// Number of message codes `kv/1` uses.
const LENGTH: u64 = 5;

// Limits on what a peer can make us store or send: every size is checked before use.
/// Longest key, in bytes.
const MAX_KEY: usize = 64;
/// Longest value, in bytes.
const MAX_VALUE: usize = 1024;
/// Most keys the store holds.
const MAX_KEYS: usize = 10_000;
/// Most bytes of keys plus values the store holds.
const MAX_STORE_BYTES: usize = 4 << 20;
/// Most new keys one peer may introduce.
const MAX_KEYS_PER_PEER: usize = 1000;
/// Furthest a write may move a key's version past the one we hold.
const MAX_VERSION_STEP: u64 = 1_000_000;
const MAX_SYNC_ENTRIES: usize = 1000;
/// Messages waiting to be written to one peer; a slow peer misses PUTs beyond this
/// (it catches up with SYNC when it reconnects).
const PEER_QUEUE: usize = 256;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A stored value. Replicas agree by "last writer wins": higher version, ties to the
/// larger value, so every node ends with the same entry whatever the arrival order.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    value: String,
    version: u64,
}

impl Entry {
    fn beats(&self, other: &Entry) -> bool {
        (self.version, &self.value) > (other.version, &other.value)
    }
}

/// Why a write was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// We hold an entry that beats it (normal for a replicated write coming back).
    Stale,
    /// Version 0, or more than [`MAX_VERSION_STEP`] past ours.
    VersionJump,
    /// The sending peer already introduced [`MAX_KEYS_PER_PEER`] keys.
    PeerQuota,
    /// [`MAX_KEYS`] or [`MAX_STORE_BYTES`] reached.
    StoreFull,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Stale => "a newer version is stored",
            Refused::VersionJump => "version out of range",
            Refused::PeerQuota => "peer's key quota is used up",
            Refused::StoreFull => "store is full",
        })
    }
}

/// The entries and the bookkeeping that bounds them.
#[derive(Default)]
struct Store {
    entries: BTreeMap<String, Entry>,
    /// Sum of key and value lengths over `entries`.
    bytes: usize,
    /// New keys each peer introduced. Every counted peer introduced at least one key,
    /// so this never has more than [`MAX_KEYS`] entries.
    introduced: HashMap<NodeId, usize>,
}

impl Store {
    /// Store `entry` under `key` if it passes every limit (see the module docs).
    fn insert(&mut self, key: &str, entry: &Entry, from: Option<NodeId>) -> Result<(), Refused> {
        let old = self.entries.get(key);
        let current = old.map_or(0, |e| e.version);
        if entry.version == 0 || entry.version > current.saturating_add(MAX_VERSION_STEP) {
            return Err(Refused::VersionJump);
        }
        if old.is_some_and(|old| !entry.beats(old)) {
            return Err(Refused::Stale);
        }
        let freed = old.map_or(0, |e| key.len() + e.value.len());
        let bytes = self.bytes - freed + key.len() + entry.value.len();
        if bytes > MAX_STORE_BYTES || (old.is_none() && self.entries.len() >= MAX_KEYS) {
            return Err(Refused::StoreFull);
        }
        if let (None, Some(peer)) = (old, from) {
            let count = self.introduced.entry(peer).or_default();
            if *count >= MAX_KEYS_PER_PEER {
                return Err(Refused::PeerQuota);
            }
            *count += 1;
        }
        self.bytes = bytes;
        self.entries.insert(key.to_owned(), entry.clone());
        Ok(())
    }
}

/// Messages (code, payload) waiting to be written to one peer.
type Outbox = mpsc::Sender<(u64, Vec<u8>)>;

/// The store and the peers replicating it. Cheap to clone (all clones share one store).
#[derive(Clone, Default)]
struct Kv {
    store: Arc<Mutex<Store>>,
    peers: Arc<Mutex<HashMap<NodeId, Outbox>>>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Option<Entry>>>>>,
    next_request: Arc<AtomicU64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn breach(why: impl Into<String>) -> ProtocolError {
    ProtocolError::disconnect(DisconnectReason::ProtocolBreach, why)
}

impl Kv {
    /// `kv/1` as a braid protocol, with its node-info and peer-info hooks.
    fn protocol(&self) -> Protocol {
        let kv = self.clone();
        Protocol::new("kv", 1, LENGTH, move |peer, rw| {
            let kv = kv.clone();
            async move { kv.run(peer, rw).await }
        })
        .with_node_info({
            let kv = self.clone();
            move || json!({ "keys": lock(&kv.store).entries.len() })
        })
        .with_peer_info({
            let kv = self.clone();
            move |peer: &Peer| {
                let queued = lock(&kv.peers)
                    .get(&peer.id())
                    .map(|q| q.max_capacity() - q.capacity());
                json!({ "queued_writes": queued })
            }
        })
    }

    /// One peer's life: ask for its data, then write our queue and read its messages
    /// until either side ends. Returning an error disconnects the peer with its reason.
    async fn run(&self, peer: Peer, mut rw: ProtoRw) -> Result<(), ProtocolError> {
        let id = peer.id();
        let (queue, mut outbox) = mpsc::channel(PEER_QUEUE);
        lock(&self.peers).insert(id, queue);
        let writer = rw.writer();
        let result = async {
            writer.write(SYNC, &rlp::EMPTY_LIST_RLP).await?;
            let send = async {
                while let Some((code, payload)) = outbox.recv().await {
                    writer.write(code, &payload).await?;
                }
                Ok(())
            };
            let receive = async {
                let mut synced = false;
                loop {
                    let msg = rw.read().await?;
                    // A SYNC reply can be large: one per connection, or a peer could
                    // make us build them over and over.
                    if msg.code == SYNC && std::mem::replace(&mut synced, true) {
                        return Err(breach("second SYNC on one connection"));
                    }
                    self.handle(id, msg.code, &Rlp::new(&msg.payload))?;
                }
            };
            tokio::select! { r = send => r, r = receive => r }
        }
        .await;
        lock(&self.peers).remove(&id);
        result
    }

    /// One message from `from`. Codes are already relative to `kv/1` and in range.
    fn handle(&self, from: NodeId, code: u64, rlp: &Rlp) -> Result<(), ProtocolError> {
        match code {
            PUT => {
                let (key, entry) = decode_entry(rlp)?;
                let _ = self.apply(key, entry, Some(from));
            }
            GET => {
                let request: u64 = rlp.val_at(0)?;
                let key: String = rlp.val_at(1)?;
                if key.len() > MAX_KEY {
                    return Err(breach("GET key too long"));
                }
                let mut reply = RlpStream::new_list(2);
                reply.append(&request);
                match lock(&self.store).entries.get(&key) {
                    Some(e) => reply.begin_list(2).append(&e.value).append(&e.version),
                    None => reply.begin_list(0),
                };
                self.send(&from, GET_REPLY, reply.out().to_vec());
            }
            GET_REPLY => {
                let request: u64 = rlp.val_at(0)?;
                let found = rlp.at(1)?;
                let entry = match found.item_count()? {
                    0 => None,
                    _ => Some(Entry {
                        value: found.val_at(0)?,
                        version: found.val_at(1)?,
                    }),
                };
                if entry.as_ref().is_some_and(|e| e.value.len() > MAX_VALUE) {
                    return Err(breach("GET_REPLY value too long"));
                }
                // No waiter means the request timed out already: a late reply is harmless.
                if let Some(waiter) = lock(&self.pending).remove(&request) {
                    let _ = waiter.send(entry);
                }
            }
            SYNC => {
                let store = lock(&self.store);
                let entries: Vec<_> = store.entries.iter().take(MAX_SYNC_ENTRIES).collect();
                let mut reply = RlpStream::new_list(entries.len());
                for (key, e) in entries {
                    reply.append_raw(&encode_entry(key, e), 1);
                }
                drop(store);
                self.send(&from, SYNC_REPLY, reply.out().to_vec());
            }
            SYNC_REPLY => {
                if rlp.item_count()? > MAX_SYNC_ENTRIES {
                    return Err(breach("SYNC_REPLY with too many entries"));
                }
                for item in rlp.iter() {
                    let (key, entry) = decode_entry(&item)?;
                    let _ = self.apply(key, entry, Some(from));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Store `entry` if it beats what we have and fits the limits, and pass it on to
    /// every other peer: a PUT travels the whole overlay and stops where it is no
    /// longer news (or no longer fits).
    fn apply(&self, key: String, entry: Entry, from: Option<NodeId>) -> Result<(), Refused> {
        if let Err(why) = lock(&self.store).insert(&key, &entry, from) {
            if why != Refused::Stale {
                tracing::debug!(peer = ?from, %key, version = entry.version, %why, "kv write dropped");
            }
            return Err(why);
        }
        let put = encode_entry(&key, &entry);
        for (id, queue) in lock(&self.peers).iter() {
            if Some(*id) != from && queue.try_send((PUT, put.clone())).is_err() {
                tracing::debug!(peer = ?id, "kv queue full; peer will catch up on SYNC");
            }
        }
        Ok(())
    }

    /// A local write: one version past what we have, replicated to every peer.
    fn put(&self, key: &str, value: &str) -> Result<Entry, String> {
        if key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return Err(format!(
                "key/value too long (max {MAX_KEY}/{MAX_VALUE} bytes)"
            ));
        }
        // Never overflows in practice: each accepted write moves a version by at most
        // MAX_VERSION_STEP, so reaching u64::MAX takes ~10^13 writes to one key.
        let version = self
            .get(key)
            .map_or(Some(1), |e| e.version.checked_add(1))
            .ok_or("version space of this key is used up")?;
        let entry = Entry {
            value: value.into(),
            version,
        };
        self.apply(key.into(), entry.clone(), None)
            .map(|()| entry)
            .map_err(|why| why.to_string())
    }

    /// Our replica's value.
    fn get(&self, key: &str) -> Option<Entry> {
        lock(&self.store).entries.get(key).cloned()
    }

    /// Ask `peer` for `key` over the wire: GET out, wait for the GET_REPLY with our id.
    async fn ask(&self, peer: &NodeId, key: &str) -> Result<Option<Entry>, String> {
        let request = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(request, tx);
        let mut get = RlpStream::new_list(2);
        get.append(&request).append(&key);
        let result = if !self.send(peer, GET, get.out().to_vec()) {
            Err("peer is gone or too busy".to_string())
        } else {
            match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
                Ok(Ok(entry)) => Ok(entry),
                Ok(Err(_)) => Err("no reply".into()),
                Err(_) => Err(format!("no reply within {REQUEST_TIMEOUT:?}")),
            }
        };
        // Every path removes its waiter, so `pending` only holds requests in flight.
        lock(&self.pending).remove(&request);
        result
    }

    /// Queue a message for one peer; false if it is not connected or its queue is full.
    fn send(&self, peer: &NodeId, code: u64, payload: Vec<u8>) -> bool {
        let peers = lock(&self.peers);
        peers
            .get(peer)
            .is_some_and(|q| q.try_send((code, payload)).is_ok())
    }
}

fn encode_entry(key: &str, e: &Entry) -> Vec<u8> {
    let mut s = RlpStream::new_list(3);
    s.append(&key).append(&e.value).append(&e.version);
    s.out().to_vec()
}

fn decode_entry(rlp: &Rlp) -> Result<(String, Entry), ProtocolError> {
    let key: String = rlp.val_at(0)?;
    let value: String = rlp.val_at(1)?;
    if key.len() > MAX_KEY || value.len() > MAX_VALUE {
        return Err(breach("kv entry too large"));
    }
    let version = rlp.val_at(2)?;
    Ok((key, Entry { value, version }))
}

fn show(key: &str, entry: Option<&Entry>) -> String {
    match entry {
        Some(e) => format!("{key} = {} (v{})", common::printable(&e.value), e.version),
        None => format!("{key}: not found"),
    }
}

/// Command-line flags.
#[derive(Parser)]
#[command(about = "A replicated key-value store: a custom protocol (kv/1) on braid")]
struct Args {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Peer to dial at start (repeatable).
    #[arg(long, value_name = "ENODE", value_parser = common::dialable_enode)]
    dial: Vec<Enode>,
    /// Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9100).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    #[command(flatten)]
    discovery: common::DiscoveryArgs,
    /// Run three nodes in this process and show replication, then exit.
    #[arg(long, conflicts_with_all = [
        "listen", "dial", "metrics", "bootnodes", "no_discovery", "udp_port",
    ])]
    demo: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => return common::usage_error(e),
    };
    common::init_logging();
    let result = if args.demo {
        demo().await
    } else {
        interactive(args).await
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => common::fatal(e),
    }
}

/// A node running `kv/1`; discovery as the flags say (off when there are none).
async fn start(
    listen: SocketAddr,
    discovery: Option<&common::DiscoveryArgs>,
) -> Result<(Server, Kv), Box<dyn Error>> {
    let kv = Kv::default();
    let mut config = ServerConfig {
        protocols: vec![kv.protocol()],
        ..ServerConfig::new(NodeKey::generate(), Some(listen))
    };
    if let Some(discovery) = discovery {
        discovery.apply(&mut config);
    }
    Ok((Server::start(config).await?, kv))
}

async fn interactive(args: Args) -> Result<(), Box<dyn Error>> {
    let (server, kv) = start(args.listen, Some(&args.discovery)).await?;
    println!("enode: {}", server.enode().ok_or("not listening")?);
    println!("{}", args.discovery.describe(&server));
    common::serve_metrics(&server, args.metrics).await?;
    println!("{HELP}");
    let mut events = server.subscribe();
    let mut input = common::stdin_lines();
    for enode in &args.dial {
        server.dial(enode).await?;
    }
    loop {
        tokio::select! {
            Ok(event) = events.recv() => print_event("", &event),
            line = input.recv() => match line {
                Some(line) if line.trim() == "quit" => break,
                Some(line) => command(&line, &server, &kv).await,
                None => break, // end of input
            },
        }
    }
    server.shutdown().await;
    Ok(())
}

const HELP: &str = "commands: put KEY VALUE | get KEY | ask KEY | dial ENODE | peers | quit";

/// One typed command. `get` reads our replica; `ask` sends GET to every peer.
async fn command(line: &str, server: &Server, kv: &Kv) {
    let mut words = line.trim().splitn(3, ' ');
    match (words.next(), words.next(), words.next()) {
        (Some("put"), Some(key), Some(value)) => match kv.put(key, value) {
            Ok(e) => println!("ok {}", show(key, Some(&e))),
            Err(e) => println!("! {e}"),
        },
        (Some("get"), Some(key), None) => println!("{}", show(key, kv.get(key).as_ref())),
        (Some("ask"), Some(key), None) => {
            for peer in server.peers() {
                let who = peer.id().short();
                match kv.ask(&peer.id(), key).await {
                    Ok(entry) => println!("{who}: {}", show(key, entry.as_ref())),
                    Err(e) => println!("{who}: ! {e}"),
                }
            }
        }
        (Some("dial"), Some(enode), None) => match common::dialable_enode(enode) {
            Ok(enode) => {
                if let Err(e) = server.dial(&enode).await {
                    println!("! {e}");
                }
            }
            Err(e) => println!("! bad enode URL: {e}"),
        },
        (Some("peers"), None, None) => println!("{}", common::peer_table(server)),
        (Some(""), None, None) => {}
        _ => println!("! {HELP}"),
    }
}

/// The server's event stream, printed: who joined, who left and why.
fn print_event(node: &str, event: &PeerEvent) {
    match event {
        PeerEvent::Added {
            id,
            direction,
            protocols,
            ..
        } => {
            println!(
                "{node}event: peer {} added ({direction:?}, {})",
                id.short(),
                protocols.join(",")
            )
        }
        PeerEvent::Dropped { id, reason } => {
            println!("{node}event: peer {} dropped: {reason}", id.short())
        }
        PeerEvent::Message(_) | PeerEvent::Discovered { .. } | PeerEvent::DialFailed { .. } => {}
    }
}

/// Poll until `check` holds; the demo's every wait is bounded.
async fn wait_for<T>(
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, Box<dyn Error>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn demo() -> Result<(), Box<dyn Error>> {
    println!("kv/1 overlay demo: three nodes on 127.0.0.1 in a line A — B — C\n");
    let any = "127.0.0.1:0".parse()?;
    let ((a, kv_a), (b, kv_b), (c, kv_c)) = (
        start(any, None).await?,
        start(any, None).await?,
        start(any, None).await?,
    );
    let mut b_events = b.subscribe();

    println!("[A] put color = blue   (nobody connected yet)");
    kv_a.put("color", "blue")?;
    b.dial(&a.enode().ok_or("A not listening")?).await?;
    if let Ok(Ok(event)) = tokio::time::timeout(Duration::from_secs(5), b_events.recv()).await {
        print_event("[B] ", &event);
    }
    let got = wait_for("B to sync from A", || kv_b.get("color")).await?;
    println!(
        "[B] synced from A on connect: {}",
        show("color", Some(&got))
    );

    c.dial(&b.enode().ok_or("B not listening")?).await?;
    wait_for("C to sync from B", || kv_c.get("color")).await?;
    println!(
        "[C] dialed B and synced: {}",
        show("color", kv_c.get("color").as_ref())
    );

    println!("[C] put answer = 42");
    kv_c.put("answer", "42")?;
    let got = wait_for("C's put to reach A", || kv_a.get("answer")).await?;
    println!(
        "[A] replica, two hops from C: {}",
        show("answer", Some(&got))
    );

    let b_id = b.id();
    println!(
        "[A] asks B over the wire (GET/GET_REPLY): {}",
        show("answer", kv_a.ask(&b_id, "answer").await?.as_ref())
    );
    println!(
        "[A] asks B for a key nobody has: {}",
        show("nothing", kv_a.ask(&b_id, "nothing").await?.as_ref())
    );

    println!("\n[B] node-info hook: {}", json!(b.node_info().protocols));
    for snapshot in b.peers_info() {
        println!(
            "[B] peer-info hook for {}: {}",
            snapshot.id.short(),
            json!(snapshot.protocol_info)
        );
    }
    println!("\n[B] peers:\n{}", common::peer_table(&b));
    tokio::join!(a.shutdown(), b.shutdown(), c.shutdown());
    println!("\ndone: a put on C was read on A, and served to A by B");
    Ok(())
}

// Run with `cargo test --example overlay`; tests/example_overlay.rs drives the same
// limits over the wire against the running program.
#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: &str, version: u64) -> Entry {
        Entry {
            value: value.into(),
            version,
        }
    }

    #[test]
    fn versions_move_by_a_bounded_step() {
        let mut store = Store::default();
        let peer = Some(NodeId([1; 64]));
        assert_eq!(
            store.insert("k", &entry("v", 0), peer),
            Err(Refused::VersionJump)
        );
        assert_eq!(
            store.insert("k", &entry("v", u64::MAX), peer),
            Err(Refused::VersionJump)
        );
        assert_eq!(
            store.insert("k", &entry("v", MAX_VERSION_STEP + 1), peer),
            Err(Refused::VersionJump)
        );
        assert_eq!(
            store.insert("k", &entry("v", MAX_VERSION_STEP), peer),
            Ok(())
        );
        assert_eq!(store.insert("k", &entry("v", 5), peer), Err(Refused::Stale));
        assert_eq!(
            store.insert("k", &entry("w", 2 * MAX_VERSION_STEP), peer),
            Ok(())
        );
    }

    #[test]
    fn keys_per_peer_keys_and_bytes_are_capped() {
        let mut store = Store::default();
        let big = "v".repeat(MAX_VALUE);
        let mut peer = 0u8;
        let mut refused = None;
        for i in 0..MAX_KEYS + 10 {
            if i % MAX_KEYS_PER_PEER == 0 {
                peer += 1;
            }
            if let Err(why) =
                store.insert(&format!("k{i}"), &entry(&big, 1), Some(NodeId([peer; 64])))
            {
                refused = Some((i, why));
                break;
            }
        }
        // Values of MAX_VALUE bytes fill the byte budget before the key budget.
        let (at, why) = refused.expect("the store filled up");
        assert_eq!(why, Refused::StoreFull);
        assert!(
            at < MAX_KEYS && store.bytes <= MAX_STORE_BYTES,
            "{at} {}",
            store.bytes
        );

        let mut store = Store::default();
        let one = Some(NodeId([9; 64]));
        for i in 0..MAX_KEYS_PER_PEER {
            assert_eq!(store.insert(&format!("k{i}"), &entry("x", 1), one), Ok(()));
        }
        assert_eq!(
            store.insert("extra", &entry("x", 1), one),
            Err(Refused::PeerQuota)
        );
        // Updates to keys it introduced are not new keys; other peers still have room.
        assert_eq!(store.insert("k0", &entry("y", 2), one), Ok(()));
        assert_eq!(
            store.insert("extra", &entry("x", 1), Some(NodeId([8; 64]))),
            Ok(())
        );
        assert_eq!(store.insert("local", &entry("x", 1), None), Ok(()));
    }
}
