//! The discv4 UDP service: one socket, a node table kept fresh, lookups, and a stream of
//! verified candidate nodes for a dialer.
//!
//! [`Discv4::start`] binds the socket and spawns three tasks: the receiver (decode, answer,
//! match replies to requests), the revalidator (pings the table entry checked least
//! recently; a dead one gives way to a replacement) and the refresher (pings the bootnodes,
//! looks up our own id, then looks up a random id every
//! [`Discv4Config::refresh_interval`]).
//!
//! The socket is any [`DatagramSocket`]: [`Discv4::start`] binds tokio's UDP on the host,
//! [`Discv4::start_on`] takes one from elsewhere (the server passes its transport's, which
//! may be a simulated network). Timers, expiries and rate limits read tokio's clock, and
//! packet expirations [`Discv4Config::wall_clock`], so the service runs unchanged under a
//! simulated clock.
//!
//! Rules that keep the service from being abused:
//! - **Endpoint proof.** A node has *bonded* with us when it answered one of our pings
//!   from the address it claims (a `Pong` quoting our ping's hash, from the IP we pinged,
//!   before the request timed out). Only bonded nodes (within [`BOND_EXPIRATION`]) get
//!   `Neighbors` or `ENRResponse` answers: a `FindNode` with a spoofed source address
//!   gets no reply at all, so discovery cannot be used to amplify traffic towards a
//!   victim. To a ping we answer one pong (and, when not bonded, one ping) — never more
//!   than we received.
//! - **Replies only to requests.** `Pong`, `Neighbors` and `ENRResponse` are accepted only
//!   when they match a pending request (sender id, source IP, and for `Pong`/`ENRResponse`
//!   the request hash); at most [`BUCKET_SIZE`] nodes are taken per `FindNode`. Anything
//!   else is dropped.
//! - **Addresses come from the socket.** The endpoint a ping claims (`from`) is ignored
//!   except for its TCP port; answers go to the datagram's source.
//! - **Bounds.** Datagrams larger than [`MAX_PACKET_SIZE`] are dropped before decoding;
//!   expired packets are dropped; each source IP has a token bucket; the pending-request
//!   table, the bond table, the rate-limiter table, background tasks and the candidate
//!   channel all have fixed capacities.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use enr::{CombinedKey, Enr};
use futures::stream::{FuturesUnordered, StreamExt};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, trace, warn, Instrument};

use super::lookup::lookup;
use super::packet::{
    self, expiration_at, EncodeError, Endpoint, EnrRequest, EnrResponse, FindNode, Message,
    Neighbor, Neighbors, Ping, Pong, MAX_NEIGHBORS, MAX_PACKET_SIZE, PING_VERSION,
};
use super::table::{AddOutcome, Node, Revalidation, Table, TableConfig, BUCKET_SIZE};
use crate::base::Capability;
use crate::discover::{Bootnode, Candidate, Candidates};
use crate::node::{Enode, NodeId, NodeKey};
use crate::record::{NodeRecord, RecordError, RecordSpec};
use crate::server::DatagramSocket;

/// How long an endpoint proof lasts.
pub(super) const BOND_EXPIRATION: Duration = Duration::from_secs(12 * 60 * 60);
/// Nodes whose bonding state is remembered; the least recently touched is forgotten first.
pub(super) const MAX_BONDS: usize = 4096;
/// Source IPs whose token buckets are remembered.
pub(super) const MAX_RATE_LIMITED_IPS: usize = 4096;

/// Why discovery failed to start or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The UDP socket could not be bound.
    #[error("cannot bind discovery socket to {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Our node record could not be built, or a received one is invalid.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A packet could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Sending a datagram failed.
    #[error("sending to {addr}: {source}")]
    Send {
        /// The destination.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// No matching reply before the request timeout.
    #[error("request timed out")]
    Timeout,
    /// The pending-request table is full.
    #[error("too many requests pending")]
    TooManyPending,
    /// A bootnode string is neither an enode URL nor an `enr:` record, or lacks an
    /// address.
    #[error("invalid bootnode: {0}")]
    BadBootnode(String),
    /// The candidate stream was already taken.
    #[error("the candidate stream was already taken")]
    CandidatesTaken,
    /// The service has shut down.
    #[error("discovery has shut down")]
    ShutDown,
}

/// Per-source-IP token bucket: `burst` packets at once, refilled at `per_sec`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Bucket size.
    pub burst: f64,
    /// Tokens added per second.
    pub per_sec: f64,
}

/// How to run a [`Discv4`] service.
#[derive(Debug, Clone)]
pub struct Discv4Config {
    /// Our node key (the discovery identity is the RLPx identity).
    pub key: NodeKey,
    /// Where to bind the UDP socket (port 0 picks one).
    pub bind: SocketAddr,
    /// The IP to announce; defaults to the bound IP unless that is unspecified.
    pub advertised_ip: Option<IpAddr>,
    /// Our TCP (RLPx) port, announced in pings and the record; 0 when we accept no
    /// connections.
    pub tcp_port: u16,
    /// Capabilities announced in our record's `braid` entry.
    pub capabilities: Vec<Capability>,
    /// Nodes pinged and added at start.
    pub bootnodes: Vec<Bootnode>,
    /// Node table limits.
    pub table: TableConfig,
    /// How long to wait for a reply (the spec's 500 ms–1 s).
    pub request_timeout: Duration,
    /// Pause between revalidation pings.
    pub revalidate_interval: Duration,
    /// Pause between random lookups that keep the table filled.
    pub refresh_interval: Duration,
    /// Requests awaiting a reply, at most.
    pub max_pending: usize,
    /// Background tasks (ping-backs, record fetches), at most; beyond it they are skipped.
    pub max_background_tasks: usize,
    /// Capacity of the candidate channel; when full, new candidates are dropped.
    pub candidates_capacity: usize,
    /// Packets accepted per source IP.
    pub rate_limit: RateLimit,
    /// Whether to fetch each newly verified node's record (`ENRRequest`) before yielding
    /// it as a candidate.
    pub fetch_records: bool,
    /// The wall clock packet expirations are stamped with and checked against, and the
    /// record's first sequence number is read from: the host's, or a simulated network's
    /// (see [`Transport::wall_clock`](crate::server::Transport::wall_clock)).
    pub wall_clock: fn() -> SystemTime,
}

impl Discv4Config {
    /// Defaults around `key` and the address to bind.
    pub fn new(key: NodeKey, bind: SocketAddr) -> Self {
        Discv4Config {
            key,
            bind,
            advertised_ip: None,
            tcp_port: 0,
            capabilities: Vec::new(),
            bootnodes: Vec::new(),
            table: TableConfig::default(),
            request_timeout: Duration::from_millis(800),
            revalidate_interval: Duration::from_secs(5),
            refresh_interval: Duration::from_secs(30),
            max_pending: 512,
            max_background_tasks: 64,
            candidates_capacity: 256,
            rate_limit: RateLimit {
                burst: 200.0,
                per_sec: 100.0,
            },
            fetch_records: true,
            wall_clock: SystemTime::now,
        }
    }
}

/// Packet counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Discv4Stats {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams received (before any check).
    pub received: u64,
    /// Datagrams dropped: oversized, undecodable, expired, rate-limited, unsolicited or
    /// from unbonded nodes.
    pub dropped: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
    dropped: AtomicU64,
}

struct Bond {
    ip: IpAddr,
    /// Last ping from it (it holds our endpoint proof).
    ping_received: Option<Instant>,
    /// Last matching pong from it (we hold its endpoint proof).
    pong_received: Option<Instant>,
    touched: Instant,
}

enum Waiter {
    Pong {
        hash: [u8; 32],
        tx: Option<oneshot::Sender<Pong>>,
    },
    Neighbors {
        nodes: Vec<Node>,
        /// Whether any matching packet arrived: an empty answer is still an answer.
        replied: bool,
        done: Option<oneshot::Sender<()>>,
    },
    Enr {
        hash: [u8; 32],
        tx: Option<oneshot::Sender<NodeRecord>>,
    },
}

struct Pending {
    id: NodeId,
    ip: IpAddr,
    waiter: Waiter,
    created: Instant,
}

struct TokenBucket {
    tokens: f64,
    last: Instant,
}

pub(super) struct State {
    pub(super) table: Table,
    bonds: HashMap<NodeId, Bond>,
    pending: HashMap<u64, Pending>,
    limiter: HashMap<IpAddr, TokenBucket>,
    record: NodeRecord,
    endpoint: Endpoint,
}

pub(super) struct Inner {
    key: NodeKey,
    pub(super) id: NodeId,
    socket: Box<dyn DatagramSocket>,
    config: Discv4Config,
    pub(super) state: Mutex<State>,
    candidates_tx: mpsc::Sender<Candidate>,
    background: Arc<Semaphore>,
    counters: Counters,
    next_request: AtomicU64,
    /// Votes on our public IP from pongs, when learning it is on.
    votes: Mutex<Option<crate::nat::votes::EndpointVotes>>,
    /// Draws the targets of random lookups.
    lookup_targets: Mutex<StdRng>,
}

/// A running discv4 service. See the [module docs](super).
pub struct Discv4 {
    inner: Arc<Inner>,
    candidates_rx: Mutex<Option<mpsc::Receiver<Candidate>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for Discv4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discv4")
            .field("id", &self.inner.id)
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

/// Now on tokio's clock, which a simulation (or a test with paused time) drives; the
/// host's monotonic clock otherwise.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// The seed of a node's random lookup targets: derived from its secret key, so that they
/// are unpredictable to others and a simulated network replays them from its seed.
fn lookup_seed(key: &NodeKey) -> [u8; 32] {
    let mut input = key.secret().secret_bytes().to_vec();
    input.extend_from_slice(b"braid discv4 random lookup targets");
    crate::keccak::keccak256(&input)
}

pub(super) fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // Every update under this lock is small and self-contained, so a state poisoned by a
    // panic elsewhere is still consistent enough to keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_lan(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unique_local() || v6.is_unicast_link_local(),
    }
}

/// Whether a node at `node_ip` may be told to a requester at `to`: loopback addresses only
/// to loopback requesters, LAN addresses only to LAN or loopback ones.
fn relayable(node_ip: IpAddr, to: IpAddr) -> bool {
    if node_ip.is_loopback() {
        return to.is_loopback();
    }
    if is_lan(node_ip) {
        return to.is_loopback() || is_lan(to);
    }
    true
}

/// Whether a node named in a `Neighbors` packet from `sender_ip` is worth contacting:
/// a dialable address the sender may tell us about (a public node cannot point us at our
/// own loopback or LAN).
fn usable_neighbor(n: &Neighbor, sender_ip: IpAddr) -> bool {
    let ip = n.endpoint.ip;
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    n.endpoint.udp_port != 0
        && !ip.is_unspecified()
        && !ip.is_multicast()
        && !broadcast
        && relayable(ip, sender_ip)
}

fn record_rlp(record: &NodeRecord) -> Vec<u8> {
    alloy_rlp::encode(record.as_enr())
}

fn decode_record(bytes: &[u8]) -> Result<NodeRecord, DiscoveryError> {
    let enr = <Enr<CombinedKey> as alloy_rlp::Decodable>::decode(&mut &bytes[..])
        .map_err(|e| RecordError::Invalid(e.to_string()))?;
    Ok(NodeRecord::from_enr(enr)?)
}

impl Discv4 {
    /// Binds a UDP socket on the host at [`Discv4Config::bind`], builds our record and
    /// starts the service's tasks.
    pub async fn start(config: Discv4Config) -> Result<Discv4, DiscoveryError> {
        let socket = tokio::net::UdpSocket::bind(config.bind)
            .await
            .map_err(|source| DiscoveryError::Bind {
                addr: config.bind,
                source,
            })?;
        Discv4::start_on(config, Box::new(socket))
    }

    /// Like [`Discv4::start`] on a socket bound elsewhere (a transport's); `config.bind`
    /// only names it in errors.
    pub fn start_on(
        config: Discv4Config,
        socket: Box<dyn DatagramSocket>,
    ) -> Result<Discv4, DiscoveryError> {
        let local_addr = socket.local_addr().map_err(|source| DiscoveryError::Bind {
            addr: config.bind,
            source,
        })?;
        let ip = config
            .advertised_ip
            .or_else(|| (!local_addr.ip().is_unspecified()).then_some(local_addr.ip()));
        let endpoint = Endpoint {
            ip: ip.unwrap_or(local_addr.ip()),
            udp_port: local_addr.port(),
            tcp_port: config.tcp_port,
        };
        // Milliseconds since the epoch: a restart with the same key still issues a newer
        // record than any it issued before.
        let seq = (config.wall_clock)()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64);
        let record = NodeRecord::build(&config.key, seq, &record_spec(&config, ip, &endpoint))?;
        let id = config.key.id();
        let (candidates_tx, candidates_rx) = mpsc::channel(config.candidates_capacity.max(1));
        let inner = Arc::new(Inner {
            key: config.key.clone(),
            id,
            socket,
            state: Mutex::new(State {
                table: Table::new(id, config.table.clone()),
                bonds: HashMap::new(),
                pending: HashMap::new(),
                limiter: HashMap::new(),
                record,
                endpoint,
            }),
            candidates_tx,
            background: Arc::new(Semaphore::new(config.max_background_tasks)),
            counters: Counters::default(),
            next_request: AtomicU64::new(0),
            votes: Mutex::new(None),
            lookup_targets: Mutex::new(StdRng::from_seed(lookup_seed(&config.key))),
            config,
        });
        let span = tracing::info_span!("discv4", addr = %local_addr);
        let tasks = vec![
            tokio::spawn(receive_loop(inner.clone()).instrument(span.clone())),
            tokio::spawn(revalidate_loop(inner.clone()).instrument(span.clone())),
            tokio::spawn(refresh_loop(inner.clone()).instrument(span)),
        ];
        debug!(%local_addr, id = %id, "discv4 started");
        Ok(Discv4 {
            inner,
            candidates_rx: Mutex::new(Some(candidates_rx)),
            tasks: Mutex::new(tasks),
            local_addr,
        })
    }

    /// Our node id.
    pub fn local_id(&self) -> NodeId {
        self.inner.id
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Our current node record.
    pub fn local_record(&self) -> NodeRecord {
        lock(&self.inner.state).record.clone()
    }

    /// Our enode URL (the announced IP, TCP port and discovery port).
    pub fn local_enode(&self) -> Enode {
        let e = lock(&self.inner.state).endpoint;
        Enode {
            id: self.inner.id,
            ip: e.ip,
            tcp_port: e.tcp_port,
            udp_port: e.udp_port,
        }
    }

    /// Changes the announced IP and TCP port (after a NAT mapping, say). When they differ
    /// from the current ones, the record is re-signed with the next sequence number, which
    /// peers learn from our pings and pongs.
    pub fn set_endpoint(&self, ip: IpAddr, tcp_port: u16) -> Result<NodeRecord, DiscoveryError> {
        let udp_port = lock(&self.inner.state).endpoint.udp_port;
        self.set_advertised(ip, tcp_port, udp_port)
    }

    /// Like [`Discv4::set_endpoint`], and also announces `udp_port` as our discovery port
    /// (the external port of a NAT mapping, which may differ from the bound one).
    pub fn set_advertised(
        &self,
        ip: IpAddr,
        tcp_port: u16,
        udp_port: u16,
    ) -> Result<NodeRecord, DiscoveryError> {
        self.inner.set_endpoint(Endpoint {
            ip,
            udp_port,
            tcp_port,
        })
    }

    /// Learn our public IP from the pongs of the nodes we ping: once `min_votes`
    /// distinct IPs say our pings came from the same address, it becomes our announced
    /// IP (ports unchanged). For a node behind a NAT it cannot ask.
    pub fn learn_endpoint(&self, min_votes: usize) {
        *self.inner.votes.lock().unwrap_or_else(|e| e.into_inner()) = Some(
            crate::nat::votes::EndpointVotes::new(min_votes, crate::nat::votes::DEFAULT_WINDOW),
        );
    }

    /// The stream of newly verified nodes, with their record when they gave it. It can be
    /// taken once; the channel is bounded, and candidates found while it is full are
    /// dropped (they stay in the table).
    pub fn candidates(&self) -> Result<Candidates, DiscoveryError> {
        self.candidates_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .map(Candidates::new)
            .ok_or(DiscoveryError::CandidatesTaken)
    }

    /// Iterative Kademlia lookup: the up to [`BUCKET_SIZE`] nodes closest to `target` that
    /// answered us, nearest first.
    pub async fn lookup(&self, target: NodeId) -> Vec<Node> {
        lookup(&self.inner, target).await
    }

    /// A lookup towards a random id, to discover nodes in general.
    pub async fn lookup_random(&self) -> Vec<Node> {
        lookup(&self.inner, self.inner.random_target()).await
    }

    /// Pings `node` and, when it answers, adds it to the table as verified.
    pub async fn ping(&self, node: Node) -> Result<(), DiscoveryError> {
        ping(&self.inner, node).await.map(|_| ())
    }

    /// Entries in the node table.
    pub fn table_len(&self) -> usize {
        lock(&self.inner.state).table.len()
    }

    /// Every entry of the node table.
    pub fn table_nodes(&self) -> Vec<Node> {
        lock(&self.inner.state)
            .table
            .entries()
            .map(|e| e.node)
            .collect()
    }

    /// Packet counters so far.
    pub fn stats(&self) -> Discv4Stats {
        let c = &self.inner.counters;
        Discv4Stats {
            sent: c.sent.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }

    /// Stops the service's tasks. Requests in flight end within the request timeout.
    pub async fn shutdown(self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl Drop for Discv4 {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            t.abort();
        }
    }
}

fn record_spec(config: &Discv4Config, ip: Option<IpAddr>, endpoint: &Endpoint) -> RecordSpec {
    RecordSpec {
        ip,
        tcp_port: (endpoint.tcp_port != 0).then_some(endpoint.tcp_port),
        udp_port: Some(endpoint.udp_port),
        capabilities: config.capabilities.clone(),
    }
}

impl Inner {
    /// Announce `endpoint`, re-signing the record when it changed.
    fn set_endpoint(&self, endpoint: Endpoint) -> Result<NodeRecord, DiscoveryError> {
        let mut st = lock(&self.state);
        if st.endpoint == endpoint {
            return Ok(st.record.clone());
        }
        let ip = endpoint.ip;
        let spec = record_spec(&self.config, Some(ip), &endpoint);
        let record = NodeRecord::build(&self.key, st.record.seq() + 1, &spec)?;
        st.endpoint = endpoint;
        st.record = record.clone();
        Ok(record)
    }

    /// A pong from `reporter` said our ping came from `seen`: vote, and announce the
    /// address once enough reporters agree (when learning is on).
    fn endpoint_statement(&self, reporter: IpAddr, seen: IpAddr) {
        let now = now();
        let predicted = {
            let mut votes = self.votes.lock().unwrap_or_else(|e| e.into_inner());
            let Some(votes) = votes.as_mut() else { return };
            votes.add(reporter, seen, now);
            votes.predict(now)
        };
        let Some(ip) = predicted else { return };
        let current = lock(&self.state).endpoint;
        if current.ip == ip {
            return;
        }
        match self.set_endpoint(Endpoint { ip, ..current }) {
            Ok(_) => debug!(%ip, "announcing the address other nodes see us at"),
            Err(e) => warn!(error = %e, "cannot announce the learned address"),
        }
    }

    /// Seconds since the Unix epoch on the configured wall clock.
    fn unix_now(&self) -> u64 {
        (self.config.wall_clock)()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// The target of a random lookup: the id of a key drawn from this node's stream.
    fn random_target(&self) -> NodeId {
        let mut rng = self
            .lookup_targets
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        NodeId::from_secret(&secp256k1::SecretKey::new(&mut *rng))
    }

    fn drop_packet(&self) {
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
    }

    async fn send(&self, to: SocketAddr, message: &Message) -> Result<[u8; 32], DiscoveryError> {
        let (bytes, hash) = packet::encode(message, self.key.secret())?;
        self.send_raw(to, &bytes).await?;
        Ok(hash)
    }

    async fn send_raw(&self, to: SocketAddr, bytes: &[u8]) -> Result<(), DiscoveryError> {
        self.socket
            .send_to(bytes, to)
            .await
            .map_err(|source| DiscoveryError::Send { addr: to, source })?;
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Registers a request awaiting a reply; fails when the table is full of live ones.
    fn register(&self, id: NodeId, ip: IpAddr, waiter: Waiter) -> Result<u64, DiscoveryError> {
        let mut st = lock(&self.state);
        if st.pending.len() >= self.config.max_pending {
            // Entries outlive their request only if its task was cancelled.
            let stale = self.config.request_timeout * 4;
            st.pending
                .retain(|_, p| now().saturating_duration_since(p.created) < stale);
            if st.pending.len() >= self.config.max_pending {
                return Err(DiscoveryError::TooManyPending);
            }
        }
        let req = self.next_request.fetch_add(1, Ordering::Relaxed);
        st.pending.insert(
            req,
            Pending {
                id,
                ip,
                waiter,
                created: now(),
            },
        );
        Ok(req)
    }

    fn unregister(&self, req: u64) -> Option<Pending> {
        lock(&self.state).pending.remove(&req)
    }

    fn bond_mut<'a>(&self, st: &'a mut State, id: NodeId, ip: IpAddr) -> &'a mut Bond {
        let now = now();
        if !st.bonds.contains_key(&id) && st.bonds.len() >= MAX_BONDS {
            if let Some(oldest) = st
                .bonds
                .iter()
                .min_by_key(|(_, b)| b.touched)
                .map(|(k, _)| *k)
            {
                st.bonds.remove(&oldest);
            }
        }
        let bond = st.bonds.entry(id).or_insert(Bond {
            ip,
            ping_received: None,
            pong_received: None,
            touched: now,
        });
        if bond.ip != ip {
            // A new address has to prove itself again.
            *bond = Bond {
                ip,
                ping_received: None,
                pong_received: None,
                touched: now,
            };
        }
        bond.touched = now;
        bond
    }

    /// Whether `id` answered our ping from `ip` within [`BOND_EXPIRATION`].
    fn is_bonded(st: &State, id: &NodeId, ip: IpAddr) -> bool {
        st.bonds.get(id).is_some_and(|b| {
            b.ip == ip
                && b.pong_received
                    .is_some_and(|t| now().saturating_duration_since(t) < BOND_EXPIRATION)
        })
    }

    /// Whether `id` pinged us from `ip` recently (so it holds our endpoint proof).
    fn pinged_us(&self, id: &NodeId, ip: IpAddr) -> bool {
        lock(&self.state).bonds.get(id).is_some_and(|b| {
            b.ip == ip
                && b.ping_received
                    .is_some_and(|t| now().saturating_duration_since(t) < BOND_EXPIRATION)
        })
    }

    fn allow(&self, ip: IpAddr) -> bool {
        let RateLimit { burst, per_sec } = self.config.rate_limit;
        let now = now();
        let mut st = lock(&self.state);
        if !st.limiter.contains_key(&ip) && st.limiter.len() >= MAX_RATE_LIMITED_IPS {
            // Forget the sources whose buckets have refilled: they lose nothing.
            st.limiter.retain(|_, b| {
                b.tokens + now.duration_since(b.last).as_secs_f64() * per_sec < burst
            });
            if st.limiter.len() >= MAX_RATE_LIMITED_IPS {
                return false;
            }
        }
        let b = st.limiter.entry(ip).or_insert(TokenBucket {
            tokens: burst,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * per_sec).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Adds a node that proved its endpoint; a new entry becomes a candidate.
    pub(super) fn verified(self: &Arc<Self>, node: Node) {
        let outcome = lock(&self.state).table.add_verified(node, now());
        trace!(id = %node.id, ?outcome, "verified node");
        if outcome != AddOutcome::Added {
            return;
        }
        if !self.config.fetch_records {
            self.offer(Candidate { node, record: None });
            return;
        }
        let inner = self.clone();
        self.spawn_background(async move {
            let record = enr_request(&inner, node).await.ok();
            inner.offer(Candidate { node, record });
        });
    }

    fn offer(&self, candidate: Candidate) {
        if self.candidates_tx.try_send(candidate).is_err() {
            trace!("candidate channel full or closed: candidate dropped");
        }
    }

    /// Runs `fut` on its own task if a background slot is free; skips it otherwise.
    fn spawn_background<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        match self.background.clone().try_acquire_owned() {
            Ok(permit) => {
                tokio::spawn(
                    async move {
                        fut.await;
                        drop(permit);
                    }
                    .in_current_span(),
                );
            }
            Err(_) => trace!("background task limit reached: skipped"),
        }
    }
}

fn node_addr(node: &Node) -> SocketAddr {
    SocketAddr::new(node.endpoint.ip, node.endpoint.udp_port)
}

/// Removes a pending request when the requester stops waiting, however it stops.
struct PendingGuard<'a> {
    inner: &'a Inner,
    req: u64,
}

impl PendingGuard<'_> {
    fn take(self) -> Option<Pending> {
        let p = self.inner.unregister(self.req);
        std::mem::forget(self);
        p
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.inner.unregister(self.req);
    }
}

/// Pings `node`, waits for the matching pong, and records the bond and the node.
async fn ping(inner: &Arc<Inner>, node: Node) -> Result<Pong, DiscoveryError> {
    let (endpoint, seq) = {
        let st = lock(&inner.state);
        (st.endpoint, st.record.seq())
    };
    let msg = Message::Ping(Ping {
        version: PING_VERSION,
        from: endpoint,
        to: node.endpoint,
        expiration: expiration_at(inner.unix_now()),
        enr_seq: Some(seq),
        rest: Vec::new(),
    });
    let (bytes, hash) = packet::encode(&msg, inner.key.secret())?;
    let (tx, rx) = oneshot::channel();
    let req = inner.register(
        node.id,
        node.endpoint.ip,
        Waiter::Pong { hash, tx: Some(tx) },
    )?;
    let guard = PendingGuard { inner, req };
    inner.send_raw(node_addr(&node), &bytes).await?;
    let pong = match tokio::time::timeout(inner.config.request_timeout, rx).await {
        Ok(Ok(pong)) => pong,
        _ => return Err(DiscoveryError::Timeout),
    };
    drop(guard);
    inner.verified(node);
    Ok(pong)
}

/// Makes sure both sides hold each other's endpoint proof before asking `node` for more
/// than a pong: we ping it unless it pinged us recently, then give its ping-back a moment
/// to arrive (our pong to that ping is its proof).
async fn ensure_bond(inner: &Arc<Inner>, node: Node) -> Result<(), DiscoveryError> {
    if inner.pinged_us(&node.id, node.endpoint.ip) {
        return Ok(());
    }
    ping(inner, node).await?;
    let deadline = now() + inner.config.request_timeout;
    while now() < deadline {
        if inner.pinged_us(&node.id, node.endpoint.ip) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Asks `node` for its nodes closest to `target`; returns what arrived before the timeout
/// (at most [`BUCKET_SIZE`]).
pub(super) async fn find_node(
    inner: &Arc<Inner>,
    node: Node,
    target: NodeId,
) -> Result<Vec<Node>, DiscoveryError> {
    ensure_bond(inner, node).await?;
    let (tx, rx) = oneshot::channel();
    let req = inner.register(
        node.id,
        node.endpoint.ip,
        Waiter::Neighbors {
            nodes: Vec::new(),
            replied: false,
            done: Some(tx),
        },
    )?;
    let guard = PendingGuard { inner, req };
    let msg = Message::FindNode(FindNode {
        target,
        expiration: expiration_at(inner.unix_now()),
        rest: Vec::new(),
    });
    inner.send(node_addr(&node), &msg).await?;
    let timed_out = tokio::time::timeout(inner.config.request_timeout, rx)
        .await
        .is_err();
    let (nodes, replied) = match guard.take() {
        Some(Pending {
            waiter: Waiter::Neighbors { nodes, replied, .. },
            ..
        }) => (nodes, replied),
        _ => (Vec::new(), false),
    };
    if timed_out && !replied {
        return Err(DiscoveryError::Timeout);
    }
    Ok(nodes)
}

/// Fetches `node`'s record (EIP-868); the record must be validly signed by `node`'s key.
async fn enr_request(inner: &Arc<Inner>, node: Node) -> Result<NodeRecord, DiscoveryError> {
    ensure_bond(inner, node).await?;
    let msg = Message::EnrRequest(EnrRequest {
        expiration: expiration_at(inner.unix_now()),
        rest: Vec::new(),
    });
    let (bytes, hash) = packet::encode(&msg, inner.key.secret())?;
    let (tx, rx) = oneshot::channel();
    let req = inner.register(
        node.id,
        node.endpoint.ip,
        Waiter::Enr { hash, tx: Some(tx) },
    )?;
    let _guard = PendingGuard { inner, req };
    inner.send_raw(node_addr(&node), &bytes).await?;
    match tokio::time::timeout(inner.config.request_timeout, rx).await {
        Ok(Ok(record)) => Ok(record),
        _ => Err(DiscoveryError::Timeout),
    }
}

async fn receive_loop(inner: Arc<Inner>) {
    // One byte more than the limit, so an oversized datagram shows as such instead of
    // being silently truncated to a plausible length.
    let mut buf = vec![0u8; MAX_PACKET_SIZE + 1];
    loop {
        let (len, from) = match inner.socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                debug!(error = %e, "discovery socket receive error");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        inner.counters.received.fetch_add(1, Ordering::Relaxed);
        if len > MAX_PACKET_SIZE {
            trace!(%from, "oversized datagram dropped");
            inner.drop_packet();
            continue;
        }
        if !inner.allow(from.ip()) {
            trace!(%from, "rate limit: datagram dropped");
            inner.drop_packet();
            continue;
        }
        let packet = match packet::decode(&buf[..len]) {
            Ok(p) => p,
            Err(e) => {
                trace!(%from, error = %e, "undecodable datagram dropped");
                inner.drop_packet();
                continue;
            }
        };
        if packet.sender == inner.id || packet.message.is_expired(inner.unix_now()) {
            trace!(%from, "own or expired packet dropped");
            inner.drop_packet();
            continue;
        }
        handle(&inner, from, packet).await;
    }
}

async fn handle(inner: &Arc<Inner>, from: SocketAddr, packet: packet::Packet) {
    let sender = packet.sender;
    let ip = from.ip().to_canonical();
    let from = SocketAddr::new(ip, from.port());
    match packet.message {
        Message::Ping(req) => {
            let node = Node {
                id: sender,
                endpoint: Endpoint {
                    ip,
                    udp_port: from.port(),
                    tcp_port: req.from.tcp_port,
                },
            };
            let seq = lock(&inner.state).record.seq();
            let pong = Message::Pong(Pong {
                to: Endpoint {
                    ip,
                    udp_port: from.port(),
                    tcp_port: req.from.tcp_port,
                },
                ping_hash: packet.hash,
                expiration: expiration_at(inner.unix_now()),
                enr_seq: Some(seq),
                rest: Vec::new(),
            });
            if let Err(e) = inner.send(from, &pong).await {
                debug!(%from, error = %e, "sending pong failed");
            }
            let (bonded, pinging) = {
                let mut st = lock(&inner.state);
                inner.bond_mut(&mut st, sender, ip).ping_received = Some(now());
                let pinging = st
                    .pending
                    .values()
                    .any(|p| p.id == sender && matches!(p.waiter, Waiter::Pong { .. }));
                (Inner::is_bonded(&st, &sender, ip), pinging)
            };
            if bonded {
                inner.verified(node);
            } else if !pinging {
                let inner2 = inner.clone();
                inner.spawn_background(async move {
                    let _ = ping(&inner2, node).await;
                });
            }
        }
        Message::Pong(pong) => {
            let waiting = {
                let mut st = lock(&inner.state);
                let reqs = matching(&st.pending, |p| match &p.waiter {
                    Waiter::Pong { hash, .. } => {
                        p.id == sender && p.ip == ip && *hash == pong.ping_hash
                    }
                    _ => false,
                });
                let txs: Vec<_> = reqs
                    .into_iter()
                    .filter_map(|req| st.pending.remove(&req))
                    .filter_map(|p| match p.waiter {
                        Waiter::Pong { tx, .. } => tx,
                        _ => None,
                    })
                    .collect();
                if !txs.is_empty() {
                    inner.bond_mut(&mut st, sender, ip).pong_received = Some(now());
                }
                txs
            };
            if waiting.is_empty() {
                trace!(%from, "unsolicited or forged pong dropped");
                inner.drop_packet();
                return;
            }
            inner.endpoint_statement(ip, pong.to.ip);
            for tx in waiting {
                let _ = tx.send(pong.clone());
            }
        }
        Message::FindNode(req) => {
            let nodes = {
                let st = lock(&inner.state);
                if !Inner::is_bonded(&st, &sender, ip) {
                    None
                } else {
                    Some(
                        st.table
                            .closest(&req.target, BUCKET_SIZE, true)
                            .into_iter()
                            .filter(|n| n.id != sender && relayable(n.endpoint.ip, ip))
                            .collect::<Vec<_>>(),
                    )
                }
            };
            let Some(nodes) = nodes else {
                trace!(%from, "findnode from an unbonded node dropped");
                inner.drop_packet();
                return;
            };
            trace!(%from, count = nodes.len(), "answering findnode");
            let expiration = expiration_at(inner.unix_now());
            for chunk in nodes.chunks(MAX_NEIGHBORS) {
                let msg = Message::Neighbors(Neighbors {
                    nodes: chunk
                        .iter()
                        .map(|n| Neighbor {
                            endpoint: n.endpoint,
                            id: n.id,
                        })
                        .collect(),
                    expiration,
                    rest: Vec::new(),
                });
                if let Err(e) = inner.send(from, &msg).await {
                    debug!(%from, error = %e, "sending neighbors failed");
                    break;
                }
            }
        }
        Message::Neighbors(msg) => {
            let accepted = {
                let mut st = lock(&inner.state);
                // With two requests to one node pending (two lookups at once), the answer
                // goes to the older: the one it most likely answers, and the same one
                // whatever order the map iterates in.
                let oldest = matching(&st.pending, |p| {
                    p.id == sender && p.ip == ip && matches!(p.waiter, Waiter::Neighbors { .. })
                })
                .into_iter()
                .next();
                let entry = oldest.and_then(|req| st.pending.get_mut(&req));
                match entry {
                    Some(Pending {
                        waiter:
                            Waiter::Neighbors {
                                nodes,
                                replied,
                                done,
                            },
                        ..
                    }) => {
                        *replied = true;
                        for n in msg.nodes {
                            if nodes.len() >= BUCKET_SIZE {
                                break;
                            }
                            if usable_neighbor(&n, ip) && !nodes.iter().any(|m| m.id == n.id) {
                                nodes.push(Node::from(n));
                            }
                        }
                        if nodes.len() >= BUCKET_SIZE {
                            if let Some(done) = done.take() {
                                let _ = done.send(());
                            }
                        }
                        true
                    }
                    _ => false,
                }
            };
            if !accepted {
                trace!(%from, "unsolicited neighbors dropped");
                inner.drop_packet();
            }
        }
        Message::EnrRequest(_) => {
            let record = {
                let st = lock(&inner.state);
                Inner::is_bonded(&st, &sender, ip).then(|| record_rlp(&st.record))
            };
            let Some(enr) = record else {
                trace!(%from, "enr request from an unbonded node dropped");
                inner.drop_packet();
                return;
            };
            let msg = Message::EnrResponse(EnrResponse {
                request_hash: packet.hash,
                enr,
                rest: Vec::new(),
            });
            if let Err(e) = inner.send(from, &msg).await {
                debug!(%from, error = %e, "sending enr response failed");
            }
        }
        Message::EnrResponse(resp) => {
            let is_request = |p: &Pending| match &p.waiter {
                Waiter::Enr { hash, .. } => {
                    p.id == sender && p.ip == ip && *hash == resp.request_hash
                }
                _ => false,
            };
            if matching(&lock(&inner.state).pending, is_request).is_empty() {
                trace!(%from, "unsolicited enr response dropped");
                inner.drop_packet();
                return;
            }
            // Verify outside the lock: signature checks are the expensive part.
            let record = match decode_record(&resp.enr) {
                Ok(r) if r.node_id().ok() == Some(sender) => r,
                Ok(_) => {
                    debug!(%from, "enr response for another node id dropped");
                    inner.drop_packet();
                    return;
                }
                Err(e) => {
                    debug!(%from, error = %e, "invalid record in enr response dropped");
                    inner.drop_packet();
                    return;
                }
            };
            let waiting: Vec<_> = {
                let mut st = lock(&inner.state);
                matching(&st.pending, is_request)
                    .into_iter()
                    .filter_map(|req| st.pending.remove(&req))
                    .filter_map(|p| match p.waiter {
                        Waiter::Enr { tx, .. } => tx,
                        _ => None,
                    })
                    .collect()
            };
            for tx in waiting {
                let _ = tx.send(record.clone());
            }
        }
    }
}

/// The pending requests a reply answers, oldest first. Two identical requests (two pings
/// of one node in the same second are the same bytes, so the same hash) get the one
/// reply both; answering them in the order they were made keeps a simulated run
/// replayable whatever order the map iterates in.
fn matching(pending: &HashMap<u64, Pending>, answers: impl Fn(&Pending) -> bool) -> Vec<u64> {
    let mut reqs: Vec<u64> = pending
        .iter()
        .filter(|(_, p)| answers(p))
        .map(|(req, _)| *req)
        .collect();
    reqs.sort_unstable();
    reqs
}

async fn revalidate_loop(inner: Arc<Inner>) {
    loop {
        tokio::time::sleep(inner.config.revalidate_interval).await;
        let next = lock(&inner.state)
            .table
            .next_to_revalidate()
            .map(|e| e.node);
        let Some(node) = next else { continue };
        let alive = ping(&inner, node).await.is_ok();
        let outcome = lock(&inner.state).table.revalidated(&node.id, alive, now());
        if let Revalidation::Removed { replacement } = outcome {
            debug!(id = %node.id, ?replacement, "dead node replaced");
        }
    }
}

async fn refresh_loop(inner: Arc<Inner>) {
    let boot: Vec<Node> = inner
        .config
        .bootnodes
        .iter()
        .filter_map(|b| match b.node() {
            Ok(n) => Some(n),
            Err(e) => {
                warn!(error = %e, "unusable bootnode skipped");
                None
            }
        })
        .collect();
    let pings: FuturesUnordered<_> = boot.iter().map(|n| ping(&inner, *n)).collect();
    let answered = pings
        .filter(|r| std::future::ready(r.is_ok()))
        .count()
        .await;
    debug!(bootnodes = boot.len(), answered, "bootnodes pinged");
    lookup(&inner, inner.id).await;
    loop {
        tokio::time::sleep(inner.config.refresh_interval).await;
        lookup(&inner, inner.random_target()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neighbor(ip: &str, udp_port: u16) -> Neighbor {
        Neighbor {
            endpoint: Endpoint {
                ip: ip.parse().unwrap(),
                udp_port,
                tcp_port: 0,
            },
            id: NodeKey::generate().id(),
        }
    }

    #[test]
    fn relay_rules() {
        let public: IpAddr = "8.8.8.8".parse().unwrap();
        let lan: IpAddr = "192.168.1.2".parse().unwrap();
        let lo: IpAddr = "127.0.0.9".parse().unwrap();
        // Loopback nodes only to loopback, LAN nodes only to LAN or loopback.
        assert!(relayable("127.0.0.1".parse().unwrap(), lo));
        assert!(!relayable("127.0.0.1".parse().unwrap(), lan));
        assert!(!relayable("127.0.0.1".parse().unwrap(), public));
        assert!(relayable("10.0.0.1".parse().unwrap(), lan));
        assert!(relayable("10.0.0.1".parse().unwrap(), lo));
        assert!(!relayable("10.0.0.1".parse().unwrap(), public));
        assert!(relayable("1.2.3.4".parse().unwrap(), public));

        assert!(usable_neighbor(&neighbor("1.2.3.4", 30303), public));
        assert!(!usable_neighbor(&neighbor("127.0.0.1", 30303), public));
        assert!(!usable_neighbor(&neighbor("1.2.3.4", 0), public));
        assert!(!usable_neighbor(&neighbor("0.0.0.0", 30303), lo));
        assert!(!usable_neighbor(&neighbor("224.0.0.1", 30303), lo));
        assert!(!usable_neighbor(&neighbor("255.255.255.255", 30303), lo));
    }

    #[test]
    fn bootnode_strings() {
        let key = NodeKey::generate();
        let enode = format!("enode://{}@127.0.0.5:30303?discport=30301", key.id());
        let node = enode.parse::<Bootnode>().unwrap().node().unwrap();
        assert_eq!(node.id, key.id());
        assert_eq!(node.endpoint.udp_port, 30301);
        assert_eq!(node.endpoint.tcp_port, 30303);
        let spec = RecordSpec {
            ip: Some("127.0.0.5".parse().unwrap()),
            tcp_port: Some(30303),
            udp_port: Some(30301),
            capabilities: Vec::new(),
        };
        let text = NodeRecord::build(&key, 1, &spec).unwrap().to_text();
        let node2 = text.parse::<Bootnode>().unwrap().node().unwrap();
        assert_eq!(node2, node);
        // A record without a UDP address is not a usable bootnode.
        let no_udp = RecordSpec {
            udp_port: None,
            ip: None,
            ..spec
        };
        let text = NodeRecord::build(&key, 1, &no_udp).unwrap().to_text();
        assert!(text.parse::<Bootnode>().unwrap().node().is_err());
        assert!("nonsense".parse::<Bootnode>().is_err());
    }

    #[test]
    fn record_rlp_round_trips() {
        let key = NodeKey::generate();
        let spec = RecordSpec {
            ip: Some("127.0.0.5".parse().unwrap()),
            tcp_port: Some(1),
            udp_port: Some(2),
            capabilities: vec![Capability::new("x", 1)],
        };
        let record = NodeRecord::build(&key, 7, &spec).unwrap();
        let bytes = record_rlp(&record);
        assert_eq!(decode_record(&bytes).unwrap(), record);
        let mut tampered = bytes.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(decode_record(&tampered).is_err());
        assert!(decode_record(&[0xc0]).is_err());
    }
}
