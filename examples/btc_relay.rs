//! A bitcoin relay on braid: bridges one native bitcoin node (bitcoin TCP, BIP324 v2 when
//! the node accepts it, else v1) into a braid overlay whose nodes speak the `btc` subprotocol, and relays between overlay
//! peers, so an announcement travels any number of braid hops.
//!
//! ```text
//! # next to a regtest bitcoind (or any bitcoin P2P peer on 18444):
//! cargo run --example btc_relay -- --bitcoin 127.0.0.1:18444 --network regtest
//! #   prints "enode: enode://…"; a second relay (overlay only) joins it:
//! cargo run --example btc_relay -- --network regtest --dial enode://…
//! ```
//!
//! How it relays, the way bitcoin nodes do: an `inv` from any peer is answered with a
//! `getdata` (witness form when the peer offers witnesses); the `tx`/`block` that comes
//! back is kept in a bounded cache and announced (`inv`) to every *other* peer, native and
//! overlay; their `getdata` is served from the cache (`notfound` otherwise; a plain
//! `MSG_TX`/`MSG_BLOCK` request gets the data without witnesses). Each item is
//! fetched and announced once, and never announced back to where it came from, so rings
//! of relays do not loop. Transactions go by wtxid (`MSG_WTX`) to and from peers that
//! negotiated BIP339 `wtxidrelay`, by txid to the others; an item is tracked under the id
//! it was announced by, and both ids are settled when it arrives.
//! Blocks also go by BIP130: every peer is sent `sendheaders`, a block announced by
//! `headers` (the newest [`MAX_ANNOUNCED_HEADERS`] of a message) is fetched like one
//! announced by `inv`, and peers that sent `sendheaders` get new blocks announced by
//! `headers`, the others by `inv`.
//! A block or announced header that fails its own proof of work (hash above its target, or
//! a target easier than the network allows) is dropped unannounced and its sender
//! disconnected.
//!
//! Which announcer to ask is decided by [`TxRequestTracker`] (Bitcoin Core's rules): every
//! announcer of an item is remembered and the next one is asked when one answers
//! `notfound`, times out (`--request-timeout`) or leaves; one peer holds at most 5,000
//! announcements and 100 requests, so a flood of bogus announcements cannot stop the
//! fetching of everyone else's. The relay loop never waits on a peer: requests and
//! announcements are queued without waiting, and `getdata` answers go through each
//! peer's own serving task, whose backlog is bounded (beyond it, answers are dropped).
//! One line per relayed item, e.g.
//! `relay inv tx <txid> native -> overlay (2 peers)`, and a status line every
//! `--status-interval`. Logs go to stderr, set by `RUST_LOG`. Stop with Ctrl-C.

mod common;

use std::collections::{HashMap, VecDeque};
use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use p2p::node::Enode;
use p2p::server::{Server, ServerConfig};
use protocols::bitcoin::peer::{connect_auto, Config, Listener, LruSet, Peer};
use protocols::bitcoin::txrequest::{TxRequestConfig, TxRequestTracker};
use protocols::bitcoin::wire::{
    inv_type, services, Block, BlockHeader, Hash256, InvVect, Message, Network, Tx,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use common::{human_bytes, short_id};

/// Client id sent in our braid Hello.
const CLIENT_ID: &str = concat!("braid-btc-relay/v", env!("CARGO_PKG_VERSION"));
/// Our bitcoin user agent: `/btcwire:0.5.0/braid-relay:<version>/`.
const USER_AGENT_NAME: &str = "braid-relay";
/// Dialing the native node.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The version handshake (the peer gives up by itself after 30 s; this is a backstop).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(40);
/// Wait before dialing the native node again after it went away.
const RECONNECT_DELAY: Duration = Duration::from_secs(10);
/// Peer callbacks waiting for the relay loop; beyond this, messages are dropped (logged).
const EVENT_QUEUE: usize = 4096;
/// Payloads kept to answer `getdata`: at most this many items and bytes (a block may be
/// 4 MB), oldest evicted first.
const CACHE_ITEMS: usize = 5000;
const CACHE_BYTES: usize = 64 << 20;
/// Items remembered as already relayed (after their payload left the cache), so a late
/// announcement from another relay does not start the item on a second round.
const SEEN_ITEMS: usize = 100_000;
/// How often announcements are turned into requests, and timed-out requests moved on.
const REQUEST_TICK: Duration = Duration::from_millis(50);
/// Headers taken from one `headers` message: the newest (last) ones, as many as Bitcoin
/// Core announces at once (`MAX_BLOCKS_TO_ANNOUNCE`). A longer message answers a chain
/// sync, which the relay never asks for; its older headers are ignored.
const MAX_ANNOUNCED_HEADERS: usize = 8;
/// `getdata` answers waiting in one peer's serving task; beyond this they are dropped.
const SERVE_JOBS: usize = 64;
/// Payload bytes waiting in one peer's serving task; items beyond this are answered
/// with `notfound` (at least one item is always taken, so a lone 4 MB block is served).
const SERVE_BYTES: usize = 8 << 20;

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(about = "Bridge a native bitcoin node into a braid overlay (btc subprotocol)")]
struct Args {
    /// Native bitcoin node to connect to (HOST:PORT); repeatable, each is dialed and
    /// redialed on its own. Without one, relay between overlay peers only.
    #[arg(long, value_name = "ADDR")]
    bitcoin: Vec<SocketAddr>,
    /// Bitcoin network (its magic frames the native connection).
    #[arg(long, value_enum, default_value = "mainnet")]
    network: Net,
    /// Address to listen on for braid peers.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// NAT traversal for the braid listener: none, extip:IP, upnp, pmp[:GATEWAY] or any.
    #[arg(long, value_name = "METHOD", default_value = "none")]
    nat: p2p::nat::Nat,
    /// Node key file (64 hex characters); created if missing.
    #[arg(long, value_name = "FILE", conflicts_with = "key")]
    nodekey: Option<PathBuf>,
    /// Node key as 64 hex characters.
    #[arg(long, value_name = "HEX")]
    key: Option<String>,
    /// Braid peer to dial at start (repeatable).
    #[arg(long, value_name = "ENODE", value_parser = common::dialable_enode)]
    dial: Vec<Enode>,
    /// How often to print the status line (e.g. 10s, 500ms).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = common::parse_duration)]
    status_interval: Duration,
    /// How often transaction announcements are batched to each peer (bitcoin's trickle;
    /// blocks are announced at once).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = common::parse_duration)]
    trickle_interval: Duration,
    /// How long a `getdata` for an announced item may go unanswered before the next
    /// announcer is asked (Bitcoin Core: 60 s).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = common::parse_duration)]
    request_timeout: Duration,
    /// Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9100).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
}

/// `--network` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Net {
    Mainnet,
    Testnet3,
    Testnet4,
    Signet,
    Regtest,
}

impl From<Net> for Network {
    fn from(n: Net) -> Network {
        match n {
            Net::Mainnet => Network::Mainnet,
            Net::Testnet3 => Network::Testnet3,
            Net::Testnet4 => Network::Testnet4,
            Net::Signet => Network::Signet,
            Net::Regtest => Network::Regtest,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => return common::usage_error(e),
    };
    common::init_logging();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => common::fatal(e),
    }
}

async fn run(args: Args) -> Result<(), Box<dyn Error>> {
    let key = common::node_key(args.key.as_deref(), args.nodekey.as_deref())?;
    let (events, inbox) = mpsc::channel(EVENT_QUEUE);
    let config = |side| peer_config(side, &args, events.clone());

    // The native nodes first: a bad --bitcoin address fails before anything else starts.
    let mut natives = Vec::new();
    for &addr in &args.bitcoin {
        let peer = connect_native(addr, config(Side::Native))
            .await
            .map_err(|e| format!("cannot use bitcoin node {addr}: {e}"))?;
        natives.push((addr, peer));
    }

    // Every braid peer that shares the `btc` capability becomes an overlay bitcoin peer;
    // the listener reports it to the relay loop once its handshake is done.
    let btc = protocols::bitcoin::protocol(config(Side::Overlay), |_| {});
    let mut server_config = ServerConfig::new(*key.secret(), Some(args.listen)).protocol(btc);
    server_config.client_id = CLIENT_ID.into();
    server_config.nat = args.nat;
    let server = Server::start(server_config).await?;
    let enode = server.enode().ok_or("server is not listening")?;
    println!("enode: {enode}");
    common::serve_metrics(&server, args.metrics).await?;
    if args.bitcoin.is_empty() {
        println!("no --bitcoin node: relaying between overlay peers only");
    }
    for &addr in &args.bitcoin {
        println!("bridging bitcoin node {addr} into the overlay");
    }
    for &enode in &args.dial {
        spawn_dial(&server, enode);
    }
    let keepers: Vec<_> = natives
        .into_iter()
        .map(|(addr, peer)| tokio::spawn(keep_native(addr, peer, config(Side::Native))))
        .collect();
    drop(events); // the peers' listeners hold the remaining senders

    let mut relay = Relay::new(
        args.network.into(),
        TxRequestConfig {
            request_timeout: args.request_timeout,
            ..TxRequestConfig::default()
        },
    );
    relay.run(inbox, args.status_interval).await;

    println!("shutting down: {}", relay.status());
    for keeper in keepers {
        keeper.abort();
    }
    relay.disconnect_all();
    server.shutdown().await;
    Ok(())
}

/// Configuration of every bitcoin peer on `side`.
fn peer_config(side: Side, args: &Args, events: mpsc::Sender<Event>) -> Config {
    Config {
        network: args.network.into(),
        // We relay witness data but keep no chain: not NODE_NETWORK.
        services: services::WITNESS,
        // BIP339: txs go by wtxid to peers that also send `wtxidrelay`, by txid otherwise.
        wtxid_relay: true,
        // BIP130: ask for blocks by `headers`; the relay fetches what they name.
        send_headers: true,
        user_agent_name: USER_AGENT_NAME.into(),
        user_agent_version: env!("CARGO_PKG_VERSION").into(),
        trickle_interval: args.trickle_interval,
        listener: Arc::new(Bridge { side, events }),
        ..Config::default()
    }
}

/// Dial in the background; a failure is one line (the relay keeps running).
fn spawn_dial(server: &Server, enode: Enode) {
    let server = server.clone();
    tokio::spawn(async move {
        if let Err(e) = server.dial(&enode).await {
            let who = format!("{}@{}", short_id(&enode.id), enode.socket_addr());
            println!("! dial {who} failed: {e}");
        }
    });
}

// ---------------------------------------------------------------------------------------
// The native side: one outbound connection, redialed when it drops
// ---------------------------------------------------------------------------------------

/// Dial the native node, BIP324 v2 first with a v1 retry as Core does, and complete the
/// version handshake. Over v2 the relay advertises `NODE_P2P_V2`, so the node keeps
/// preferring v2 when it dials or gossips us.
async fn connect_native(addr: SocketAddr, mut config: Config) -> Result<Peer, String> {
    let transport = connect_auto(addr, config.network, CONNECT_TIMEOUT, true)
        .await
        .map_err(|e| e.to_string())?;
    if transport.is_v2() {
        config.services |= services::P2P_V2;
    }
    tracing::debug!(%addr, v2 = transport.is_v2(), "native transport up");
    let peer = Peer::start_outbound(config, transport);
    let handshake = async {
        // The peer has no "handshake done" signal besides its listener; poll its state.
        while !peer.verack_received() && !peer.is_done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .is_err()
    {
        peer.disconnect();
        return Err(format!("no version handshake within {HANDSHAKE_TIMEOUT:?}"));
    }
    if !peer.verack_received() {
        let why = peer.close_reason().map(|r| r.to_string());
        return Err(format!(
            "version handshake failed: {}",
            why.unwrap_or_else(|| "disconnected".into())
        ));
    }
    Ok(peer)
}

/// Keep a native connection: when it drops, dial again every [`RECONNECT_DELAY`].
async fn keep_native(addr: SocketAddr, mut peer: Peer, config: Config) {
    loop {
        peer.wait_for_disconnect().await;
        println!("! bitcoin node {addr} went away; redialing every {RECONNECT_DELAY:?}");
        peer = loop {
            tokio::time::sleep(RECONNECT_DELAY).await;
            match connect_native(addr, config.clone()).await {
                Ok(peer) => break peer,
                Err(e) => println!("! bitcoin node {addr}: {e}"),
            }
        };
    }
}

// ---------------------------------------------------------------------------------------
// Peer callbacks -> relay events
// ---------------------------------------------------------------------------------------

/// Which side of the bridge a peer is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Native,
    Overlay,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Native => "native",
            Side::Overlay => "overlay",
        }
    }
}

/// What the peers' callbacks tell the relay loop. Peers are named by [`Peer::id`], which
/// is set before the handshake completes and unique in the process.
enum Event {
    Up(Side, Peer),
    Down(u64),
    Inv(u64, Vec<InvVect>),
    /// At most [`MAX_ANNOUNCED_HEADERS`] headers.
    Headers(u64, Vec<BlockHeader>),
    GetData(u64, Vec<InvVect>),
    NotFound(u64, Vec<InvVect>),
    Payload(u64, Payload),
}

/// The listener of every relay peer. Callbacks run on the peer's reader and must not
/// block, so they only hand the message to the relay loop (bounded; dropped when full).
struct Bridge {
    side: Side,
    events: mpsc::Sender<Event>,
}

impl Bridge {
    fn send(&self, event: Event) {
        if self.events.try_send(event).is_err() {
            tracing::warn!("relay loop is behind or gone; dropping a message");
        }
    }
}

impl Listener for Bridge {
    fn on_verack(&self, peer: &Peer) {
        // Sent from the reader itself, so it is queued before any message of this peer.
        if self
            .events
            .try_send(Event::Up(self.side, peer.clone()))
            .is_err()
        {
            tracing::warn!(%peer, "relay loop is behind or gone; dropping the peer");
            peer.disconnect();
            return;
        }
        let (peer, events) = (peer.clone(), self.events.clone());
        tokio::spawn(async move {
            peer.wait_for_disconnect().await;
            // Bounded: a relay loop that is gone (or stuck) drops the send.
            let _ = events
                .send_timeout(Event::Down(peer.id()), HANDSHAKE_TIMEOUT)
                .await;
        });
    }
    fn on_inv(&self, peer: &Peer, inv: &[InvVect]) {
        self.send(Event::Inv(peer.id(), inv.to_vec()));
    }
    fn on_headers(&self, peer: &Peer, headers: &[BlockHeader]) {
        let newest = &headers[headers.len().saturating_sub(MAX_ANNOUNCED_HEADERS)..];
        if newest.len() < headers.len() {
            tracing::debug!(%peer, count = headers.len(), "long headers message; only the newest are taken");
        }
        if !newest.is_empty() {
            self.send(Event::Headers(peer.id(), newest.to_vec()));
        }
    }
    fn on_get_data(&self, peer: &Peer, inv: &[InvVect]) {
        self.send(Event::GetData(peer.id(), inv.to_vec()));
    }
    fn on_not_found(&self, peer: &Peer, inv: &[InvVect]) {
        self.send(Event::NotFound(peer.id(), inv.to_vec()));
    }
    fn on_tx(&self, peer: &Peer, tx: &Tx) {
        self.send(Event::Payload(peer.id(), Payload::Tx(tx.clone())));
    }
    fn on_block(&self, peer: &Peer, block: &Block) {
        self.send(Event::Payload(peer.id(), Payload::Block(block.clone())));
    }
}

// ---------------------------------------------------------------------------------------
// Items and the payload cache
// ---------------------------------------------------------------------------------------

/// The kinds of item relayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    /// A transaction by txid.
    Tx,
    /// A transaction by wtxid (BIP339 `MSG_WTX`).
    Wtx,
    Block,
}

/// One relayed item: kind and txid / wtxid / block hash (witness and non-witness
/// inventory types name the same item). A transaction is tracked under the id it was
/// announced by; both ids are known once it arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Item {
    kind: Kind,
    hash: Hash256,
}

impl Item {
    /// The item an inventory vector names; `None` for kinds we do not relay (filtered
    /// and compact blocks).
    fn of(iv: &InvVect) -> Option<Item> {
        let kind = match iv.inv_type {
            inv_type::TX | inv_type::WITNESS_TX => Kind::Tx,
            inv_type::WTX => Kind::Wtx,
            inv_type::BLOCK | inv_type::WITNESS_BLOCK => Kind::Block,
            _ => return None,
        };
        Some(Item {
            kind,
            hash: iv.hash,
        })
    }

    /// How to announce it (announcements never carry the witness flag).
    fn announcement(self) -> InvVect {
        let inv_type = match self.kind {
            Kind::Tx => inv_type::TX,
            Kind::Wtx => inv_type::WTX,
            Kind::Block => inv_type::BLOCK,
        };
        InvVect {
            inv_type,
            hash: self.hash,
        }
    }

    /// How to ask `peer` for it: with witness data when the peer offers it (`MSG_WTX`
    /// always means with witness data).
    fn request(self, peer: &Peer) -> InvVect {
        let mut iv = self.announcement();
        if self.kind != Kind::Wtx && peer.is_witness_enabled() {
            iv.inv_type |= inv_type::WITNESS_FLAG;
        }
        iv
    }

    fn kind_name(self) -> &'static str {
        match self.kind {
            Kind::Tx | Kind::Wtx => "tx",
            Kind::Block => "block",
        }
    }
}

/// A transaction or block as received (exact bytes).
#[derive(Clone)]
enum Payload {
    Tx(Tx),
    Block(Block),
}

impl Payload {
    /// The item under its txid or block hash (the cache key).
    fn item(&self) -> Item {
        match self {
            Payload::Tx(tx) => Item {
                kind: Kind::Tx,
                hash: tx.txid(),
            },
            Payload::Block(block) => Item {
                kind: Kind::Block,
                hash: block.hash(),
            },
        }
    }

    /// Every id the payload goes by: a transaction's txid and wtxid, a block's hash.
    fn items(&self) -> Vec<Item> {
        match self {
            Payload::Tx(tx) => vec![
                self.item(),
                Item {
                    kind: Kind::Wtx,
                    hash: tx.wtxid(),
                },
            ],
            Payload::Block(_) => vec![self.item()],
        }
    }

    /// How to announce it to `peer`: by wtxid when the link negotiated BIP339.
    fn announcement_for(&self, peer: &Peer) -> InvVect {
        match self {
            Payload::Tx(tx) if peer.wtxid_relay() => Item {
                kind: Kind::Wtx,
                hash: tx.wtxid(),
            }
            .announcement(),
            _ => self.item().announcement(),
        }
    }

    /// Bytes held. Only exact for a [`detached`](Self::detached) payload, which owns
    /// exactly its bytes; a payload as parsed may share a larger buffer.
    fn len(&self) -> usize {
        match self {
            Payload::Tx(tx) => tx.len(),
            Payload::Block(block) => block.as_bytes().len(),
        }
    }

    /// A copy in its own allocation of exactly [`len`](Self::len) bytes, so what the
    /// cache counts is what it keeps alive.
    fn detached(&self) -> Payload {
        match self {
            Payload::Tx(tx) => Payload::Tx(tx.detached()),
            Payload::Block(block) => Payload::Block(block.detached()),
        }
    }

    /// What answers a `getdata` entry of type `inv_type`: a peer that asked for a plain
    /// `tx` or `block` gets it without witness data (Core's `TX_NO_WITNESS`).
    fn answer(&self, inv_type: u32) -> Option<Payload> {
        match self {
            Payload::Tx(tx) if inv_type == inv_type::TX && tx.has_witness() => {
                Tx::from_bytes(tx.to_base_bytes()).ok().map(Payload::Tx)
            }
            Payload::Block(block) if inv_type == inv_type::BLOCK && block.has_witness() => {
                Some(Payload::Block(block.without_witness()))
            }
            other => Some(other.clone()),
        }
    }

    fn into_message(self) -> Message {
        match self {
            Payload::Tx(tx) => Message::Tx(tx),
            Payload::Block(block) => Message::Block(block),
        }
    }
}

/// Payloads by item, bounded in count and bytes; the oldest go first. Payloads are
/// stored [`detached`](Payload::detached), so the byte count is what they hold.
#[derive(Default)]
struct Cache {
    items: HashMap<Item, Payload>,
    /// wtxid -> txid of the cached transactions (as many entries as cached txs).
    wtxids: HashMap<Hash256, Hash256>,
    order: VecDeque<Item>,
    bytes: usize,
}

impl Cache {
    fn get(&self, item: &Item) -> Option<&Payload> {
        if item.kind == Kind::Wtx {
            let txid = self.wtxids.get(&item.hash)?;
            return self.items.get(&Item {
                kind: Kind::Tx,
                hash: *txid,
            });
        }
        self.items.get(item)
    }

    fn insert(&mut self, payload: &Payload) {
        let item = payload.item();
        if self.items.contains_key(&item) {
            return;
        }
        let payload = payload.detached();
        while self.items.len() >= CACHE_ITEMS || self.bytes + payload.len() > CACHE_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.items.remove(&old) {
                self.bytes -= gone.len();
                if let Payload::Tx(tx) = &gone {
                    self.wtxids.remove(&tx.wtxid());
                }
            }
        }
        if let Payload::Tx(tx) = &payload {
            self.wtxids.insert(tx.wtxid(), tx.txid());
        }
        self.bytes += payload.len();
        self.order.push_back(item);
        self.items.insert(item, payload);
    }
}

// ---------------------------------------------------------------------------------------
// Serving getdata: one task per peer
// ---------------------------------------------------------------------------------------

/// The answers to one `getdata`, and the payload bytes they count against the peer's
/// serving budget.
struct Job {
    messages: Vec<Message>,
    bytes: usize,
}

/// The relay loop's side of a peer's serving task.
struct Serving {
    jobs: mpsc::Sender<Job>,
    /// Payload bytes accepted and not yet handed to the peer's send queue.
    backlog: Arc<AtomicUsize>,
}

impl Serving {
    /// Start the serving task of `peer`: it feeds the answers into the peer's own send
    /// queue, waiting there as long as that peer needs (bounded by the peer's queue
    /// timeout), so only this peer's answers are held up. It ends with the peer.
    fn start(peer: Peer) -> Serving {
        let (jobs, mut rx) = mpsc::channel::<Job>(SERVE_JOBS);
        let backlog = Arc::new(AtomicUsize::new(0));
        let left = backlog.clone();
        tokio::spawn(async move {
            loop {
                let job = tokio::select! {
                    job = rx.recv() => job,
                    _ = peer.wait_for_disconnect() => None,
                };
                let Some(job) = job else { return };
                for msg in job.messages {
                    peer.queue_message(msg, None).await;
                }
                left.fetch_sub(job.bytes, Ordering::Relaxed);
            }
        });
        Serving { jobs, backlog }
    }
}

// ---------------------------------------------------------------------------------------
// The relay loop
// ---------------------------------------------------------------------------------------

/// One connected peer.
struct Link {
    side: Side,
    peer: Peer,
    serving: Serving,
}

/// Running totals for the status line.
#[derive(Default)]
struct Totals {
    relayed_tx: u64,
    relayed_blocks: u64,
    relayed_bytes: u64,
    served: u64,
    served_bytes: u64,
    /// Messages not queued because a peer's queue or serving backlog was full.
    dropped: u64,
    /// Wire bytes of peers that already left (live peers are summed on demand).
    gone_in: u64,
    gone_out: u64,
}

/// All relay state; owned by one task, so no locks.
struct Relay {
    /// Whose proof-of-work limit a block header is checked against.
    network: Network,
    peers: HashMap<u64, Link>,
    cache: Cache,
    /// Every item fetched so far (bounded): fetched and announced once only.
    seen: LruSet<Item>,
    /// Who announced what, and who was asked for it.
    requests: TxRequestTracker<Item>,
    totals: Totals,
}

impl Relay {
    fn new(network: Network, requests: TxRequestConfig) -> Relay {
        Relay {
            network,
            peers: HashMap::new(),
            cache: Cache::default(),
            seen: LruSet::new(SEEN_ITEMS),
            requests: TxRequestTracker::new(requests),
            totals: Totals::default(),
        }
    }

    /// Handle events until Ctrl-C (or until every event sender is gone). Nothing here
    /// waits on a peer.
    async fn run(&mut self, mut inbox: mpsc::Receiver<Event>, status_interval: Duration) {
        let mut status =
            tokio::time::interval_at(Instant::now() + status_interval, status_interval);
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweep = tokio::time::interval(REQUEST_TICK);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            tokio::select! {
                event = inbox.recv() => match event {
                    Some(event) => self.handle(event),
                    None => return,
                },
                _ = sweep.tick() => self.sweep(),
                _ = status.tick() => println!("status: {}", self.status()),
                _ = &mut ctrl_c => return,
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Up(side, peer) => {
                println!(
                    "+ {} peer {} ({}, version {})",
                    side.name(),
                    peer.addr(),
                    common::printable(&peer.user_agent()),
                    peer.protocol_version()
                );
                // Core prefers the peers it chose to connect to.
                self.requests.peer_connected(peer.id(), !peer.inbound());
                let serving = Serving::start(peer.clone());
                self.peers.insert(
                    peer.id(),
                    Link {
                        side,
                        peer,
                        serving,
                    },
                );
            }
            Event::Down(id) => {
                self.requests.peer_disconnected(id);
                if let Some(link) = self.peers.remove(&id) {
                    self.totals.gone_in += link.peer.bytes_received();
                    self.totals.gone_out += link.peer.bytes_sent();
                    let why = link.peer.close_reason().map(|r| r.to_string());
                    println!(
                        "- {} peer {} left: {}",
                        link.side.name(),
                        link.peer.addr(),
                        why.unwrap_or_else(|| "disconnected".into())
                    );
                }
            }
            Event::Inv(from, inv) => self.on_inv(from, &inv),
            Event::Headers(from, headers) => self.on_headers(from, &headers),
            Event::GetData(from, inv) => self.on_get_data(from, &inv),
            Event::NotFound(from, inv) => {
                // Only the items named move on to their next announcer.
                for item in inv.iter().filter_map(Item::of) {
                    self.requests.not_found(from, item);
                }
            }
            Event::Payload(from, payload) => self.on_payload(from, payload),
        }
    }

    /// An announcement: remember every item we do not have yet; the next sweep asks
    /// for it (at most [`REQUEST_TICK`] later).
    fn on_inv(&mut self, from: u64, inv: &[InvVect]) {
        let Some(peer) = self.peers.get(&from).map(|l| l.peer.clone()) else {
            return;
        };
        let now = Instant::now();
        for item in inv.iter().filter_map(Item::of) {
            self.announced(from, &peer, item, now);
        }
    }

    /// A BIP130 announcement: each header names a block, fetched (with `getdata`, from
    /// the same request tracker) exactly like one announced by `inv`, whether or not the
    /// headers connect to each other. A header failing its own proof of work costs its
    /// sender nothing to make, so the whole message is dropped and the sender disconnected.
    fn on_headers(&mut self, from: u64, headers: &[BlockHeader]) {
        let Some(link) = self.peers.get(&from) else {
            return;
        };
        let peer = link.peer.clone();
        if let Some(bad) = headers
            .iter()
            .find(|h| !h.check_proof_of_work(self.network))
        {
            println!(
                "! {} peer {}: header {} fails proof of work; disconnecting",
                link.side.name(),
                peer.addr(),
                bad.hash()
            );
            peer.disconnect();
            return;
        }
        let now = Instant::now();
        for header in headers {
            let item = Item {
                kind: Kind::Block,
                hash: header.hash(),
            };
            self.announced(from, &peer, item, now);
        }
    }

    /// `from` announced `item`: never announce it back there, and track it unless it was
    /// already fetched.
    fn announced(&mut self, from: u64, peer: &Peer, item: Item, now: Instant) {
        peer.add_known_inventory(item.announcement());
        if !self.seen.contains(&item) {
            self.requests.received_inv(from, item, now);
        }
    }

    /// Move timed-out requests on, then ask every peer for what it should be asked
    /// for. A request that cannot be queued counts as failed (the next announcer will
    /// be asked).
    fn sweep(&mut self) {
        // Announcements may wait for a delay to pass, so every tick sweeps while any are
        // tracked; a peer at its request cap costs nothing here.
        if self.requests.items() == 0 {
            return;
        }
        let now = Instant::now();
        self.requests.expire(now);
        for id in self.requests.peer_ids() {
            let Some(link) = self.peers.get(&id) else {
                continue;
            };
            let items = self.requests.requestable(id, now);
            if items.is_empty() {
                continue;
            }
            let getdata = items.iter().map(|item| item.request(&link.peer)).collect();
            if !link.peer.try_queue_message(Message::GetData(getdata), None) {
                tracing::debug!(peer = %link.peer, "send queue full; request moves on");
                self.totals.dropped += 1;
                for item in items {
                    self.requests.not_found(id, item);
                }
            }
        }
    }

    /// A transaction or block arrived: if we asked this peer for it, keep it and announce
    /// it to every other peer. (Unrequested payloads are dropped: a relay that does not
    /// validate must not let any peer push data through the whole overlay.)
    fn on_payload(&mut self, from: u64, payload: Payload) {
        let item = payload.item();
        let ids = payload.items();
        let Some(source) = self.peers.get(&from) else {
            return;
        };
        for id in &ids {
            source.peer.add_known_inventory(id.announcement());
        }
        let source_side = source.side;
        // The cheap check a relay can make without the chain: a block whose header does
        // not meet its own target (or a target easier than the network allows) is junk
        // that cost its sender nothing. It is dropped, never announced, and the sender
        // disconnected. (Transactions were already bounded in size and parsed by the
        // codec, whose failure disconnects the peer.)
        if let Payload::Block(block) = &payload {
            if !block.header().check_proof_of_work(self.network) {
                println!(
                    "! {} peer {}: block {} fails proof of work; disconnecting",
                    source_side.name(),
                    source.peer.addr(),
                    item.hash
                );
                source.peer.disconnect();
                self.requests.forget(item);
                return;
            }
        }
        // Asked for under either id (the one it was announced by); settle both.
        let mut requested = false;
        for id in &ids {
            requested |= self.requests.received(from, *id);
        }
        if !requested {
            tracing::debug!(%item.hash, "unrequested {}; dropped", item.kind_name());
            return;
        }
        // Announcements of it under its other id (from peers of the other mode) are
        // settled too, so it is fetched and relayed once.
        for id in &ids {
            self.requests.forget(*id);
            self.seen.insert(*id);
        }
        let size = payload.len();
        self.cache.insert(&payload);

        let (mut native, mut overlay) = (0, 0);
        for (id, link) in &self.peers {
            let iv = payload.announcement_for(&link.peer);
            if *id == from || link.peer.is_known_inventory(&iv) {
                continue;
            }
            // Blocks by `headers` to peers that sent `sendheaders`, else by `inv`.
            let queued = match &payload {
                Payload::Block(block) => link.peer.try_announce_block(block.header()),
                Payload::Tx(_) => link.peer.try_queue_inventory(iv),
            };
            if !queued {
                self.totals.dropped += 1;
                continue;
            }
            match link.side {
                Side::Native => native += 1,
                Side::Overlay => overlay += 1,
            }
        }
        match item.kind {
            Kind::Tx | Kind::Wtx => self.totals.relayed_tx += 1,
            Kind::Block => self.totals.relayed_blocks += 1,
        }
        self.totals.relayed_bytes += size as u64;
        println!(
            "relay inv {} {} {} -> {}",
            item.kind_name(),
            item.hash,
            source_side.name(),
            targets(native, overlay)
        );
    }

    /// Serve what we have, `notfound` for the rest, through the peer's serving task.
    /// Items beyond the peer's byte budget are answered `notfound`; a whole answer is
    /// dropped when the peer already has [`SERVE_JOBS`] answers waiting.
    fn on_get_data(&mut self, from: u64, inv: &[InvVect]) {
        let Some(link) = self.peers.get(&from) else {
            return;
        };
        let mut backlog = link.serving.backlog.load(Ordering::Relaxed);
        let mut messages = Vec::new();
        let mut missing = Vec::new();
        let (mut served, mut bytes) = (0u64, 0usize);
        for iv in inv {
            let answer = Item::of(iv)
                .and_then(|item| self.cache.get(&item))
                .and_then(|payload| payload.answer(iv.inv_type));
            let Some(payload) = answer else {
                missing.push(*iv);
                continue;
            };
            let size = payload.len();
            if backlog > 0 && backlog + size > SERVE_BYTES {
                missing.push(*iv);
                continue;
            }
            backlog += size;
            bytes += size;
            served += 1;
            messages.push(payload.into_message());
        }
        if !missing.is_empty() {
            messages.push(Message::NotFound(missing));
        }
        if messages.is_empty() {
            return;
        }
        link.serving.backlog.fetch_add(bytes, Ordering::Relaxed);
        match link.serving.jobs.try_send(Job { messages, bytes }) {
            Ok(()) => {
                self.totals.served += served;
                self.totals.served_bytes += bytes as u64;
            }
            Err(_) => {
                link.serving.backlog.fetch_sub(bytes, Ordering::Relaxed);
                tracing::debug!(peer = %link.peer, "serving backlog full; getdata dropped");
                self.totals.dropped += 1;
            }
        }
    }

    /// Peers on each side, items relayed and served, bytes on the wire.
    fn status(&self) -> String {
        let count = |side| self.peers.values().filter(|l| l.side == side).count();
        let (mut bytes_in, mut bytes_out) = (self.totals.gone_in, self.totals.gone_out);
        for link in self.peers.values() {
            bytes_in += link.peer.bytes_received();
            bytes_out += link.peer.bytes_sent();
        }
        let t = &self.totals;
        format!(
            "peers native {}, overlay {} | relayed tx {}, blocks {} ({}) | served {} ({}) | wire in {}, out {} | announced {}, dropped {}",
            count(Side::Native),
            count(Side::Overlay),
            t.relayed_tx,
            t.relayed_blocks,
            human_bytes(t.relayed_bytes),
            t.served,
            human_bytes(t.served_bytes),
            human_bytes(bytes_in),
            human_bytes(bytes_out),
            self.requests.items(),
            t.dropped,
        )
    }

    fn disconnect_all(&self) {
        for link in self.peers.values() {
            link.peer.disconnect();
        }
    }
}

/// `native + overlay (2 peers)`, for the relay lines.
fn targets(native: usize, overlay: usize) -> String {
    let mut parts = Vec::new();
    if native > 0 {
        parts.push("native".to_string());
    }
    if overlay > 0 {
        let s = if overlay == 1 { "" } else { "s" };
        parts.push(format!("overlay ({overlay} peer{s})"));
    }
    if parts.is_empty() {
        return "no other peers yet (kept for getdata)".into();
    }
    parts.join(" + ")
}
