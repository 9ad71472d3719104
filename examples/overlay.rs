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
//! ```

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
const MAX_KEY: usize = 64;
const MAX_VALUE: usize = 1024;
const MAX_KEYS: usize = 10_000;
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

/// Messages (code, payload) waiting to be written to one peer.
type Outbox = mpsc::Sender<(u64, Vec<u8>)>;

/// The store and the peers replicating it. Cheap to clone (all clones share one store).
#[derive(Clone, Default)]
struct Kv {
    store: Arc<Mutex<BTreeMap<String, Entry>>>,
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
            move || json!({ "keys": lock(&kv.store).len() })
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
                self.apply(key, entry, Some(from));
            }
            GET => {
                let request: u64 = rlp.val_at(0)?;
                let key: String = rlp.val_at(1)?;
                let mut reply = RlpStream::new_list(2);
                reply.append(&request);
                match lock(&self.store).get(&key) {
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
                // No waiter means the request timed out already: a late reply is harmless.
                if let Some(waiter) = lock(&self.pending).remove(&request) {
                    let _ = waiter.send(entry);
                }
            }
            SYNC => {
                let store = lock(&self.store);
                let entries: Vec<_> = store.iter().take(MAX_SYNC_ENTRIES).collect();
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
                    self.apply(key, entry, Some(from));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Store `entry` if it beats what we have, and pass it on to every other peer: a PUT
    /// travels the whole overlay and stops where it is no longer news.
    fn apply(&self, key: String, entry: Entry, from: Option<NodeId>) -> bool {
        {
            let mut store = lock(&self.store);
            let newer = store.get(&key).is_none_or(|old| entry.beats(old));
            if !newer || (!store.contains_key(&key) && store.len() >= MAX_KEYS) {
                return false;
            }
            store.insert(key.clone(), entry.clone());
        }
        let put = encode_entry(&key, &entry);
        for (id, queue) in lock(&self.peers).iter() {
            if Some(*id) != from && queue.try_send((PUT, put.clone())).is_err() {
                tracing::debug!(peer = ?id, "kv queue full; peer will catch up on SYNC");
            }
        }
        true
    }

    /// A local write: one version past what we have, replicated to every peer.
    fn put(&self, key: &str, value: &str) -> Result<Entry, String> {
        if key.len() > MAX_KEY || value.len() > MAX_VALUE {
            return Err(format!(
                "key/value too long (max {MAX_KEY}/{MAX_VALUE} bytes)"
            ));
        }
        let version = self.get(key).map_or(1, |e| e.version.saturating_add(1));
        let entry = Entry {
            value: value.into(),
            version,
        };
        match self.apply(key.into(), entry.clone(), None) {
            true => Ok(entry),
            false => Err("store is full".into()),
        }
    }

    /// Our replica's value.
    fn get(&self, key: &str) -> Option<Entry> {
        lock(&self.store).get(key).cloned()
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
    #[arg(long, value_name = "ENODE")]
    dial: Vec<Enode>,
    /// Run three nodes in this process and show replication, then exit.
    #[arg(long, conflicts_with_all = ["listen", "dial"])]
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

async fn start(listen: SocketAddr) -> Result<(Server, Kv), Box<dyn Error>> {
    let kv = Kv::default();
    let config =
        ServerConfig::new(*NodeKey::generate().secret(), Some(listen)).protocol(kv.protocol());
    Ok((Server::start(config).await?, kv))
}

async fn interactive(args: Args) -> Result<(), Box<dyn Error>> {
    let (server, kv) = start(args.listen).await?;
    println!("enode: {}", server.enode().ok_or("not listening")?);
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
                let who = common::short_id(&peer.id());
                match kv.ask(&peer.id(), key).await {
                    Ok(entry) => println!("{who}: {}", show(key, entry.as_ref())),
                    Err(e) => println!("{who}: ! {e}"),
                }
            }
        }
        (Some("dial"), Some(enode), None) => match enode.parse::<Enode>() {
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
                common::short_hex(id),
                protocols.join(",")
            )
        }
        PeerEvent::Dropped { id, reason } => println!(
            "{node}event: peer {} dropped: {reason}",
            common::short_hex(id)
        ),
        PeerEvent::Message(_) => {}
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
    let ((a, kv_a), (b, kv_b), (c, kv_c)) =
        (start(any).await?, start(any).await?, start(any).await?);
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
            common::short_hex(&snapshot.id),
            json!(snapshot.protocol_info)
        );
    }
    println!("\n[B] peers:\n{}", common::peer_table(&b));
    tokio::join!(a.shutdown(), b.shutdown(), c.shutdown());
    println!("\ndone: a put on C was read on A, and served to A by B");
    Ok(())
}
