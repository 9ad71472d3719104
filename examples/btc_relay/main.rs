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

mod bridge;
#[path = "../common/mod.rs"]
mod common;
mod items;
mod native;
mod relay;
mod serving;

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

use common::human_bytes;

use bridge::*;
use items::*;
use native::*;
use relay::*;
use serving::*;

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
    let mut server_config = ServerConfig::new(key, Some(args.listen));
    server_config.protocols.push(btc);
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
            let who = format!("{}@{}", enode.id.short(), enode.socket_addr());
            println!("! dial {who} failed: {e}");
        }
    });
}
