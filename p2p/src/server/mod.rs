//! The node: owns the key, listens, dials (static peers with backoff), admits peers
//! within limits, runs each as a [`Peer`], and publishes peer events.
//!
//! Connection setup, in go-ethereum's order: TCP accept (pending-handshake slots,
//! allow-list, per-source throttle) or dial; encryption handshake; the admission checkpoint
//! (self, already connected, too many peers, too many inbound peers from one subnet:
//! refused with a Disconnect *instead of* a Hello); Hello exchange; capability matching
//! (useless peer); the peer runs.
//!
//! The subnet cap is enforced at the checkpoint rather than at accept because trusted
//! peers are exempt, and the node id that makes a peer trusted is known only once the
//! encryption handshake has proved it.

mod config;
mod limits;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::base::{DisconnectReason, Hello, BASE_PROTOCOL_VERSION};
use crate::conn::{Conn, ConnError};
use crate::node::{Enode, NodeId};
use crate::peer::{
    CloseReason, Direction, MessageEvent, Peer, PeerError, PeerInfo, PeerSnapshot, ProtocolTraffic,
};
use crate::session::{exchange_hello, send_disconnect, SessionError};

pub use config::ServerConfig;
use limits::{InboundThrottle, Netgroup, SubnetCap};
pub use limits::{IpNet, IpNetError};

/// Errors of the server and of single connection attempts.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Binding the listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TCP connect failed or timed out.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The address is not on the allow-list.
    #[error("{0} is not on the allow-list")]
    NotAllowed(std::net::IpAddr),
    /// The enode cannot be dialed (port 0, unspecified or multicast address).
    #[error("cannot dial: {0}")]
    NotDialable(#[from] crate::node::EnodeError),
    /// The encryption handshake failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// The Hello exchange failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The admission checkpoint refused the connection (the reason was sent).
    #[error("connection refused: {0}")]
    Refused(DisconnectReason),
    /// No shared capability (useless peer was sent).
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The server is shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
}

impl ServerError {
    /// A short, stable name for this kind of failure (a metrics label, a log field):
    /// `connect`, `handshake`, `hello`, the refusal's reason (`too_many_peers`…), etc.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerError::Listen { .. } => "listen",
            ServerError::Connect { .. } => "connect",
            ServerError::NotAllowed(_) => "not_allowed",
            ServerError::NotDialable(_) => "not_dialable",
            ServerError::Conn(_) => "handshake",
            ServerError::Session(SessionError::RemoteDisconnect(r)) => {
                crate::metrics::reason_label(*r)
            }
            ServerError::Session(_) => "hello",
            ServerError::Refused(r) => crate::metrics::reason_label(*r),
            ServerError::Peer(_) => "useless_peer",
            ServerError::ShuttingDown => "shutting_down",
        }
    }
}

/// What happened to a peer.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PeerEvent {
    /// A peer was admitted and its protocols started.
    Added {
        /// Node id (hex).
        id: String,
        /// Remote address.
        addr: Option<SocketAddr>,
        /// Who dialed.
        direction: Direction,
        /// Protocols running ("name/version").
        protocols: Vec<String>,
    },
    /// A peer ended.
    Dropped {
        /// Node id (hex).
        id: String,
        /// Why.
        reason: CloseReason,
    },
    /// A message was sent or received (only when message events are enabled).
    Message(MessageEvent),
}

/// A serializable description of this node (go-ethereum's NodeInfo).
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    /// Node id (hex).
    pub id: String,
    /// Client id.
    pub client_id: String,
    /// Enode URL, when listening.
    pub enode: Option<String>,
    /// Bound address, when listening.
    pub listen_addr: Option<SocketAddr>,
    /// Peers connected now.
    pub peers: usize,
    /// Each protocol's node-info hook ("name/version" → value).
    pub protocols: std::collections::BTreeMap<String, serde_json::Value>,
}

enum Slot {
    /// Its Hello proved the key; the peer is starting. Holds the network group it counts
    /// toward (inbound, not exempt).
    Claimed(Direction, Option<Netgroup>),
    Active(Peer),
}

impl Slot {
    fn direction(&self) -> Direction {
        match self {
            Slot::Claimed(d, _) => *d,
            Slot::Active(p) => p.direction(),
        }
    }
}

/// A connection past the checkpoint whose Hello has not arrived yet. It counts toward the
/// peer limits but does not hold its node id: until a Hello frame passes its MAC the key
/// is unproven (an auth can be replayed), so only [`Slot`]s decide "already connected".
struct PendingConn {
    direction: Direction,
    trusted: bool,
    /// The network group this connection counts toward under the subnet cap.
    group: Option<Netgroup>,
}

struct State {
    peers: HashMap<NodeId, Slot>,
    pending: HashMap<u64, PendingConn>,
    next_conn: u64,
    trusted: HashSet<NodeId>,
    statics: HashMap<NodeId, CancellationToken>,
    throttle: InboundThrottle,
}

impl State {
    /// The network groups of the connections counted under the subnet cap: pending and
    /// claimed ones carry theirs; running peers are counted when inbound, not trusted at
    /// admission, and not exempt.
    fn inbound_groups(&self, cap: SubnetCap) -> impl Iterator<Item = Netgroup> + '_ {
        let pending = self.pending.values().filter_map(|p| p.group);
        let peers = self.peers.values().filter_map(move |slot| match slot {
            Slot::Claimed(_, group) => *group,
            Slot::Active(p) if p.direction() == Direction::Inbound && !p.is_trusted() => {
                cap.group(p.remote_addr()?.ip())
            }
            Slot::Active(_) => None,
        });
        pending.chain(peers)
    }

    /// Whether some connection is between its claim and becoming a running peer.
    fn has_claimed(&self) -> bool {
        self.peers.values().any(|s| matches!(s, Slot::Claimed(..)))
    }
}

/// Sources the inbound throttle remembers at most (oldest forgotten first).
const THROTTLE_CAPACITY: usize = 4096;

struct Inner {
    config: ServerConfig,
    id: NodeId,
    local_addr: Option<SocketAddr>,
    state: Mutex<State>,
    events: broadcast::Sender<PeerEvent>,
    msg_events: Option<broadcast::Sender<MessageEvent>>,
    pending: Arc<Semaphore>,
    /// Bytes held on every peer's behalf, node-wide.
    budget: crate::budget::MemoryBudget,
    /// Counters the server bumps, and the scrape-time view of its state.
    metrics: crate::metrics::NodeMetrics,
    /// Traffic of peers that have ended, per protocol name and version.
    finished_traffic: Mutex<Vec<ProtocolTraffic>>,
    shutdown: CancellationToken,
    tasks: Mutex<JoinSet<()>>,
}

/// A running node. Cheap to clone.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("id", &self.inner.id)
            .field("local_addr", &self.inner.local_addr)
            .finish()
    }
}

impl Server {
    /// Bind the listener (if any), start accepting and dialing static peers.
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        let listener = match config.listen_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::Listen { addr, source })?,
            ),
            None => None,
        };
        let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        let msg_events = config.enable_msg_events.then(|| {
            let (tx, _) = broadcast::channel(config.event_capacity.max(1));
            tx
        });
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| Inner {
            metrics: metrics_for(weak.clone()),
            id: NodeId::from_secret(&config.key),
            local_addr,
            state: Mutex::new(State {
                peers: HashMap::new(),
                pending: HashMap::new(),
                next_conn: 0,
                trusted: config.trusted_peers.iter().copied().collect(),
                statics: HashMap::new(),
                throttle: InboundThrottle::new(
                    config.inbound_throttle,
                    THROTTLE_CAPACITY,
                    config.exempt_loopback,
                ),
            }),
            events,
            msg_events,
            pending: Arc::new(Semaphore::new(config.max_pending.max(1))),
            budget: crate::budget::MemoryBudget::new(config.memory_budget_bytes),
            finished_traffic: Mutex::new(Vec::new()),
            shutdown: CancellationToken::new(),
            tasks: Mutex::new(JoinSet::new()),
            config,
        });
        let server = Server { inner };
        if let Some(listener) = listener {
            let s = server.clone();
            let span = info_span!("listener", addr = ?local_addr);
            server.spawn(async move { s.accept_loop(listener).await }.instrument(span));
        }
        if let Some(msg_events) = server.inner.msg_events.clone() {
            // Forward message events into the one peer-event stream.
            let events = server.inner.events.clone();
            let mut rx = msg_events.subscribe();
            let stop = server.inner.shutdown.clone();
            server.spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        ev = rx.recv() => match ev {
                            Ok(ev) => { let _ = events.send(PeerEvent::Message(ev)); }
                            Err(broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(broadcast::error::RecvError::Closed) => return,
                        }
                    }
                }
            });
        }
        for enode in server.inner.config.static_peers.clone() {
            server.add_static(enode);
        }
        info!(id = %server.inner.id, addr = ?local_addr, "server started");
        Ok(server)
    }

    fn spawn(&self, fut: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = lock(&self.inner.tasks);
        // Reap finished tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(fut);
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The bound listen address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr
    }

    /// This node's enode URL (when listening).
    pub fn enode(&self) -> Option<Enode> {
        self.inner.local_addr.map(|addr| Enode {
            id: self.inner.id,
            ip: addr.ip(),
            tcp_port: addr.port(),
            udp_port: addr.port(),
        })
    }

    /// Subscribe to peer events. Slow subscribers miss events beyond the configured capacity.
    pub fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        self.inner.events.subscribe()
    }

    /// The peers running now.
    pub fn peers(&self) -> Vec<Peer> {
        lock(&self.inner.state)
            .peers
            .values()
            .filter_map(|s| match s {
                Slot::Active(p) => Some(p.clone()),
                Slot::Claimed(..) => None,
            })
            .collect()
    }

    /// How many peers are running.
    pub fn peer_count(&self) -> usize {
        self.peers().len()
    }

    /// One peer by id.
    pub fn peer(&self, id: &NodeId) -> Option<Peer> {
        match lock(&self.inner.state).peers.get(id) {
            Some(Slot::Active(p)) => Some(p.clone()),
            _ => None,
        }
    }

    /// A serializable description of this node.
    pub fn node_info(&self) -> NodeInfo {
        NodeInfo {
            id: self.inner.id.to_string(),
            client_id: self.inner.config.client_id.clone(),
            enode: self.enode().map(|e| e.to_string()),
            listen_addr: self.inner.local_addr,
            peers: self.peer_count(),
            protocols: self
                .inner
                .config
                .protocols
                .iter()
                .map(|p| {
                    let info = p.node_info().unwrap_or(serde_json::Value::Null);
                    (p.capability().to_string(), info)
                })
                .collect(),
        }
    }

    /// Serializable snapshots of every peer.
    pub fn peers_info(&self) -> Vec<PeerSnapshot> {
        self.peers()
            .iter()
            .map(|p| p.snapshot(&self.inner.config.protocols))
            .collect()
    }

    /// Node-wide traffic per protocol and per code, ingress and egress, over every peer
    /// this server has run (live and ended).
    pub fn traffic(&self) -> Vec<ProtocolTraffic> {
        let mut totals = lock(&self.inner.finished_traffic).clone();
        for peer in self.peers() {
            merge_into(&mut totals, &peer.traffic());
        }
        totals
    }

    /// The node's metrics in the Prometheus text format (version 0.0.4): dials and their
    /// failures, disconnects by reason and side, handshake latency, peers by direction,
    /// traffic per protocol and code, queued bytes and the memory budget.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.encode()
    }

    /// Serve [`Server::metrics_text`] on `GET /metrics` at `addr` until shutdown; returns
    /// the bound address.
    pub async fn serve_metrics(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let weak = Arc::downgrade(&self.inner);
        let text = Arc::new(move || {
            weak.upgrade()
                .map(|inner| inner.metrics.encode())
                .unwrap_or_default()
        });
        crate::metrics::serve(addr, text, self.inner.shutdown.clone()).await
    }

    /// The node-wide memory budget every peer is charged to.
    pub fn memory_budget(&self) -> &crate::budget::MemoryBudget {
        &self.inner.budget
    }

    /// Per-peer settings, charging the node's memory budget.
    fn peer_config(&self) -> crate::peer::PeerConfig {
        crate::peer::PeerConfig {
            memory_budget: Some(self.inner.budget.clone()),
            ..self.inner.config.peer.clone()
        }
    }

    /// Mark a node as trusted (admitted past every limit).
    pub fn add_trusted(&self, id: NodeId) {
        lock(&self.inner.state).trusted.insert(id);
    }

    /// Remove a node from the trusted set.
    pub fn remove_trusted(&self, id: &NodeId) {
        lock(&self.inner.state).trusted.remove(id);
    }

    /// Keep a connection to `enode` up: dial it now and again whenever it drops, with
    /// exponential backoff between failed attempts.
    pub fn add_static(&self, enode: Enode) {
        let token = self.inner.shutdown.child_token();
        {
            let mut state = lock(&self.inner.state);
            if state.statics.contains_key(&enode.id) {
                return;
            }
            state.statics.insert(enode.id, token.clone());
        }
        let s = self.clone();
        let span = info_span!("static", peer = %hex::encode(&enode.id.0[..8]));
        self.spawn(async move { s.static_loop(enode, token).await }.instrument(span));
    }

    /// Stop redialing a static peer (an existing connection stays up).
    pub fn remove_static(&self, id: &NodeId) {
        if let Some(token) = lock(&self.inner.state).statics.remove(id) {
            token.cancel();
        }
    }

    async fn static_loop(&self, enode: Enode, stop: CancellationToken) {
        let cfg = &self.inner.config;
        let mut backoff = cfg.static_backoff_min;
        loop {
            let connected = self.peer(&enode.id);
            let wait = match connected {
                Some(peer) => {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = peer.closed() => {}
                    }
                    backoff = cfg.static_backoff_min;
                    backoff
                }
                None => match self.dial(&enode).await {
                    Ok(_) => {
                        backoff = cfg.static_backoff_min;
                        continue;
                    }
                    Err(ServerError::ShuttingDown) => return,
                    Err(e @ ServerError::NotDialable(_)) => {
                        warn!(error = %e, "static peer can never be dialed; giving up on it");
                        return;
                    }
                    Err(ServerError::Refused(DisconnectReason::AlreadyConnected)) => backoff,
                    Err(e) => {
                        debug!(error = %e, ?backoff, "static dial failed");
                        let wait = backoff;
                        backoff = (backoff * 2).min(cfg.static_backoff_max);
                        wait
                    }
                },
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Dial `enode` once and run it as a peer.
    pub async fn dial(&self, enode: &Enode) -> Result<Peer, ServerError> {
        let started = Instant::now();
        self.inner.metrics.dial_started();
        let result = self.dial_once(enode).await;
        match &result {
            Ok(_) => self
                .inner
                .metrics
                .handshake_done(Direction::Outbound, started.elapsed()),
            Err(e) => self.inner.metrics.dial_failed(e.kind()),
        }
        result
    }

    async fn dial_once(&self, enode: &Enode) -> Result<Peer, ServerError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(ServerError::ShuttingDown);
        }
        enode.check_dialable()?;
        let addr = enode.socket_addr();
        self.check_allowed(addr.ip())?;
        let cfg = &self.inner.config;
        let stream = match tokio::time::timeout(cfg.dial_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(ServerError::Connect { addr, source }),
            Err(_) => {
                let source = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
                return Err(ServerError::Connect { addr, source });
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn::initiate(stream, &cfg.key, &enode.id, cfg.handshake_timeout).await?;
        self.setup(conn, Some(addr), Direction::Outbound).await
    }

    fn check_allowed(&self, ip: std::net::IpAddr) -> Result<(), ServerError> {
        match &self.inner.config.allow_list {
            Some(list) if !list.iter().any(|net| net.contains(ip)) => {
                Err(ServerError::NotAllowed(ip))
            }
            _ => Ok(()),
        }
    }

    async fn accept_loop(self, listener: TcpListener) {
        loop {
            // Bound the handshakes in flight: wait for a slot before accepting more.
            let permit = tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                p = self.inner.pending.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let (stream, addr) = tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            if let Err(e) = self.check_allowed(addr.ip()) {
                debug!(%addr, error = %e, "refusing inbound connection");
                continue;
            }
            if !lock(&self.inner.state)
                .throttle
                .admit(addr.ip(), Instant::now())
            {
                debug!(%addr, "refusing inbound connection: throttled");
                continue;
            }
            let _ = stream.set_nodelay(true);
            let s = self.clone();
            let span = info_span!("inbound", %addr);
            self.spawn(
                async move {
                    let cfg = &s.inner.config;
                    let started = Instant::now();
                    // Shutdown does not wait out a handshake in progress.
                    let accepted = tokio::select! {
                        _ = s.inner.shutdown.cancelled() => return,
                        r = Conn::accept(stream, &cfg.key, cfg.handshake_timeout) => r,
                    };
                    let conn = match accepted {
                        Ok(conn) => conn,
                        Err(e) => {
                            debug!(error = %e, "inbound handshake failed");
                            return;
                        }
                    };
                    drop(permit);
                    match s.setup(conn, Some(addr), Direction::Inbound).await {
                        Ok(_) => s
                            .inner
                            .metrics
                            .handshake_done(Direction::Inbound, started.elapsed()),
                        Err(e) => debug!(error = %e, "inbound peer refused"),
                    }
                }
                .instrument(span),
            );
        }
    }

    /// The admission checkpoint, right after the encryption handshake: count the connection
    /// toward the limits or say why not. Returns the pending connection's ticket and whether
    /// the remote is trusted.
    fn checkpoint(
        &self,
        id: NodeId,
        direction: Direction,
        addr: Option<SocketAddr>,
    ) -> Result<(u64, bool), DisconnectReason> {
        if id == self.inner.id {
            return Err(DisconnectReason::ConnectedToSelf);
        }
        let cfg = &self.inner.config;
        let mut state = lock(&self.inner.state);
        if self.inner.shutdown.is_cancelled() {
            return Err(DisconnectReason::ClientQuitting);
        }
        if state.peers.contains_key(&id) {
            return Err(DisconnectReason::AlreadyConnected);
        }
        let trusted = state.trusted.contains(&id);
        if !trusted {
            let count = |d: Option<Direction>| {
                let slots = state
                    .peers
                    .iter()
                    .filter(|(pid, slot)| {
                        !state.trusted.contains(pid) && d.is_none_or(|d| slot.direction() == d)
                    })
                    .count();
                let pending = state
                    .pending
                    .values()
                    .filter(|p| !p.trusted && d.is_none_or(|d| p.direction == d))
                    .count();
                slots + pending
            };
            if count(None) >= cfg.max_peers {
                return Err(DisconnectReason::TooManyPeers);
            }
            if direction == Direction::Inbound
                && count(Some(Direction::Inbound)) >= cfg.max_inbound()
            {
                return Err(DisconnectReason::TooManyPeers);
            }
        }
        let group = self.inbound_group(direction, trusted, addr);
        if let Some(group) = group {
            if !self
                .subnet_cap()
                .admits(group, state.inbound_groups(self.subnet_cap()))
            {
                debug!(?addr, "refusing inbound peer: too many from its subnet");
                return Err(DisconnectReason::TooManyPeers);
            }
        }
        let ticket = state.next_conn;
        state.next_conn += 1;
        state.pending.insert(
            ticket,
            PendingConn {
                direction,
                trusted,
                group,
            },
        );
        Ok((ticket, trusted))
    }

    /// After a valid Hello: turn the pending connection into the owner of `id`, unless
    /// another connection of the same node got there first.
    fn claim(&self, ticket: u64, id: NodeId, direction: Direction) -> Result<(), DisconnectReason> {
        let mut state = lock(&self.inner.state);
        let group = state.pending.remove(&ticket).and_then(|p| p.group);
        if self.inner.shutdown.is_cancelled() {
            return Err(DisconnectReason::ClientQuitting);
        }
        if state.peers.contains_key(&id) {
            return Err(DisconnectReason::AlreadyConnected);
        }
        state.peers.insert(id, Slot::Claimed(direction, group));
        Ok(())
    }

    fn subnet_cap(&self) -> SubnetCap {
        SubnetCap {
            max: self.inner.config.max_inbound_per_subnet,
            exempt_loopback: self.inner.config.exempt_loopback,
        }
    }

    /// The network group a connection counts toward under the subnet cap: inbound,
    /// untrusted and not exempt ones only.
    fn inbound_group(
        &self,
        direction: Direction,
        trusted: bool,
        addr: Option<SocketAddr>,
    ) -> Option<Netgroup> {
        if direction != Direction::Inbound || trusted {
            return None;
        }
        self.subnet_cap().group(addr?.ip())
    }

    /// Forget a connection that failed before becoming a peer.
    fn release(&self, ticket: u64, id: &NodeId) {
        let mut state = lock(&self.inner.state);
        state.pending.remove(&ticket);
        if matches!(state.peers.get(id), Some(Slot::Claimed(..))) {
            state.peers.remove(id);
        }
    }

    async fn setup(
        &self,
        mut conn: Conn,
        addr: Option<SocketAddr>,
        direction: Direction,
    ) -> Result<Peer, ServerError> {
        let id = conn.remote_id;
        let (ticket, trusted) = match self.checkpoint(id, direction, addr) {
            Ok(admitted) => admitted,
            Err(reason) => {
                // Refused before the protocol handshake: a Disconnect instead of a Hello.
                send_disconnect(&mut conn.writer, reason).await;
                let _ = conn.writer.shutdown().await;
                return Err(refused(reason));
            }
        };
        // Released on failure and also when the caller drops this future mid-setup (a dial
        // abandoned during the Hello), so an abandoned attempt never keeps its slot.
        let mut held = HeldTicket {
            server: self,
            ticket,
            id,
            armed: true,
        };
        let result = self.run_peer(conn, ticket, addr, direction, trusted).await;
        held.armed = result.is_err();
        result
    }

    async fn run_peer(
        &self,
        mut conn: Conn,
        ticket: u64,
        addr: Option<SocketAddr>,
        direction: Direction,
        trusted: bool,
    ) -> Result<Peer, ServerError> {
        let cfg = &self.inner.config;
        let ours = Hello {
            protocol_version: BASE_PROTOCOL_VERSION,
            client_id: cfg.client_id.clone(),
            capabilities: cfg.protocols.iter().map(|p| p.capability()).collect(),
            listen_port: cfg
                .announce_port
                .or(self.inner.local_addr.map(|a| a.port()))
                .unwrap_or(0),
            id: self.inner.id.0.to_vec(),
        };
        // Shutdown does not wait out a Hello in progress.
        let theirs = tokio::select! {
            _ = self.inner.shutdown.cancelled() => return Err(ServerError::ShuttingDown),
            r = exchange_hello(&mut conn, &ours, cfg.hello_timeout) => r?,
        };
        if let Err(reason) = self.claim(ticket, conn.remote_id, direction) {
            send_disconnect(&mut conn.writer, reason).await;
            let _ = conn.writer.shutdown().await;
            return Err(refused(reason));
        }
        let info = PeerInfo {
            id: conn.remote_id,
            remote_addr: addr,
            direction,
            trusted,
        };
        let peer = Peer::start(
            conn,
            theirs,
            &cfg.protocols,
            info,
            self.peer_config(),
            self.inner.msg_events.clone(),
        )
        .await?;
        {
            let mut state = lock(&self.inner.state);
            state.peers.insert(peer.id(), Slot::Active(peer.clone()));
            // Shutdown cancels, then snapshots the peers under this lock: a peer that
            // becomes active after the snapshot sees the cancellation here and ends itself.
            if self.inner.shutdown.is_cancelled() {
                peer.disconnect(DisconnectReason::ClientQuitting);
            }
        }
        let _ = self.inner.events.send(PeerEvent::Added {
            id: peer.id().to_string(),
            addr,
            direction,
            protocols: peer
                .protocols()
                .iter()
                .map(|c| format!("{}/{}", c.name, c.version))
                .collect(),
        });
        info!(peer = %hex::encode(&peer.id().0[..8]), ?addr, ?direction, client = peer.client_id(), "peer added");
        let s = self.clone();
        let watched = peer.clone();
        self.spawn(async move {
            let reason = watched.closed().await;
            s.inner.metrics.peer_ended(reason.reason, reason.remote);
            merge_into(&mut lock(&s.inner.finished_traffic), &watched.traffic());
            {
                let mut state = lock(&s.inner.state);
                // Only remove our own entry: a newer connection may have taken the id.
                if matches!(state.peers.get(&watched.id()), Some(Slot::Active(p)) if p.same(&watched)) {
                    state.peers.remove(&watched.id());
                }
            }
            info!(peer = %hex::encode(&watched.id().0[..8]), %reason, "peer dropped");
            let _ = s.inner.events.send(PeerEvent::Dropped {
                id: watched.id().to_string(),
                reason,
            });
        });
        Ok(peer)
    }

    /// Stop: close the listener, stop dialing, send every peer "client quitting" (0x08) and
    /// wait (bounded) until every task the server started has ended, including peers that
    /// became active while shutdown ran and the tasks they spawned.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        let grace = self.inner.config.peer.protocol_grace + Duration::from_secs(3);
        let deadline = tokio::time::Instant::now() + grace;
        // No connection can be claimed any more; let those already claimed become peers
        // (only the bounded useless-peer Disconnect can lie between the two) so the
        // snapshot below holds them.
        while lock(&self.inner.state).has_claimed() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let peers = self.peers();
        for peer in &peers {
            peer.disconnect(DisconnectReason::ClientQuitting);
        }
        for peer in &peers {
            if tokio::time::timeout_at(deadline, peer.closed())
                .await
                .is_err()
            {
                warn!(peer = ?peer.id(), "peer did not close in time");
            }
        }
        // Tasks may still be spawned while we wait (a peer's watcher), so drain until
        // the set stays empty; past the deadline, abort what is left.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let mut tasks = std::mem::take(&mut *lock(&self.inner.tasks));
            if tasks.is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, async {
                while tasks.join_next().await.is_some() {}
            })
            .await
            .is_err()
            {
                warn!(
                    left = tasks.len(),
                    "server tasks did not end in time; aborting them"
                );
                tasks.shutdown().await;
            }
        }
        info!("server stopped");
    }
}

/// A connection's place in the limits between the checkpoint and becoming a running peer;
/// released on drop unless disarmed.
struct HeldTicket<'a> {
    server: &'a Server,
    ticket: u64,
    id: NodeId,
    armed: bool,
}

impl Drop for HeldTicket<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.server.release(self.ticket, &self.id);
        }
    }
}

/// The server's metrics, reading its state through `inner` at scrape time (a weak
/// reference: metrics must not keep a stopped server alive).
fn metrics_for(inner: std::sync::Weak<Inner>) -> crate::metrics::NodeMetrics {
    crate::metrics::NodeMetrics::new(move || {
        let inner = inner.upgrade()?;
        let server = Server { inner };
        let peers = server.peers();
        let inbound_peers = peers
            .iter()
            .filter(|p| p.direction() == Direction::Inbound)
            .count();
        Some(crate::metrics::Snapshot {
            inbound_peers,
            outbound_peers: peers.len() - inbound_peers,
            traffic: server.traffic(),
            queued_bytes: peers.iter().map(Peer::queued_bytes).sum(),
            budget_used: server.inner.budget.used(),
            budget_limit: server.inner.budget.limit(),
        })
    })
}

fn refused(reason: DisconnectReason) -> ServerError {
    if reason == DisconnectReason::ClientQuitting {
        ServerError::ShuttingDown
    } else {
        ServerError::Refused(reason)
    }
}

fn merge_into(totals: &mut Vec<ProtocolTraffic>, traffic: &[ProtocolTraffic]) {
    for t in traffic {
        match totals
            .iter_mut()
            .find(|x| x.name == t.name && x.version == t.version)
        {
            Some(total) => total.merge(t),
            None => totals.push(t.clone()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave the maps half-updated in a way that
    // matters more than stopping the node would, so keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
