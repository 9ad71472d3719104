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

mod admission;
mod config;
mod dial;
mod dial_scheduler;
mod discovery;
mod error;
mod events;
mod lifecycle;
mod limits;
mod listen;
mod nat;
mod transport;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, Instrument};

use crate::node::{Enode, NodeId};
use crate::peer::{Direction, MessageEvent, Peer, PeerSnapshot, ProtocolTraffic};

use admission::{Admission, Limits};
pub use config::{Discovery, ServerConfig};
pub use error::ServerError;
pub use events::{NodeInfo, PeerEvent};
use limits::{InboundThrottle, SubnetCap};
pub use limits::{IpNet, IpNetError};
pub use nat::NAT_START_WAIT;
pub use transport::{BoxedStream, ByteStream, DatagramSocket, Listener, TcpTransport, Transport};

/// Sources the inbound throttle remembers at most (oldest forgotten first).
const THROTTLE_CAPACITY: usize = 4096;

struct Inner {
    config: ServerConfig,
    id: NodeId,
    local_addr: Option<SocketAddr>,
    /// Who is connected, pending or trusted; the limits they are admitted under.
    admission: Mutex<Admission<Peer>>,
    /// Static peers being kept up, each with the token that stops its loop.
    statics: Mutex<HashMap<NodeId, CancellationToken>>,
    /// Recent inbound sources, to refuse one reconnecting too fast.
    throttle: Mutex<InboundThrottle>,
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
    /// Node discovery, while it runs; taken and shut down by [`Server::shutdown`]. The
    /// dial loop holds the other references, for lookups.
    discovery: Mutex<Option<discovery::Discoveries>>,
    /// What others are told to dial (when listening); follows the NAT mapping.
    advertised: Mutex<Option<nat::Advertised>>,
    /// The NAT port mapper, while it runs; stopped by [`Server::shutdown`].
    nat: Mutex<Option<crate::nat::PortMapper>>,
    /// The network the server listens and dials on.
    transport: Arc<dyn Transport>,
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
    /// Bind the listener (if any), start accepting and dialing static peers, over TCP.
    pub async fn start(config: ServerConfig) -> Result<Server, ServerError> {
        Server::start_with_transport(config, TcpTransport).await
    }

    /// [`Server::start`] over another network: listen and dial through `transport`.
    ///
    /// Discovery v4 runs on the transport's datagram socket ([`Transport::bind_udp`]).
    /// Discovery v5 and NAT port mapping open sockets on the host's own network stack, so
    /// with a transport that is not that stack ([`Transport::is_host_network`]) they must
    /// be off ([`ServerError::HostNetworkOnly`] otherwise); `Nat::ExtIp` only names an
    /// address and is allowed.
    pub async fn start_with_transport(
        config: ServerConfig,
        transport: impl Transport,
    ) -> Result<Server, ServerError> {
        let transport: Arc<dyn Transport> = Arc::new(transport);
        transport::check_host_services(&config, transport.as_ref())?;
        let listener = match config.listen_addr {
            Some(addr) => Some(
                transport
                    .bind(addr)
                    .await
                    .map_err(|source| ServerError::Listen { addr, source })?,
            ),
            None => None,
        };
        let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let discovery = discovery::start_discovery(&config, local_addr, transport.as_ref()).await?;
        let udp_port = discovery.advertised_udp_port();
        let (advertised, port_mapper) = match local_addr {
            Some(local) => {
                let (a, m) = nat::advertise(&config, local, udp_port).await;
                (Some(a), m)
            }
            None => (None, None),
        };
        if let Some(a) = &advertised {
            nat::attach_discovery(&config, local_addr, &discovery, a);
        }
        let nat_updates = port_mapper.as_ref().map(|m| m.subscribe());
        let candidates = match discovery.candidates() {
            Ok(c) => c,
            Err(e) => {
                discovery.shutdown().await;
                if let Some(mapper) = port_mapper {
                    mapper.shutdown().await;
                }
                return Err(e);
            }
        };
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        let msg_events = config.enable_msg_events.then(|| {
            let (tx, _) = broadcast::channel(config.event_capacity.max(1));
            tx
        });
        let id = config.key.id();
        let limits = Limits {
            max_peers: config.max_peers,
            max_inbound: config.max_inbound(),
            subnet: SubnetCap {
                max: config.max_inbound_per_subnet,
                exempt_loopback: config.exempt_loopback,
            },
        };
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| Inner {
            metrics: metrics_for(weak.clone()),
            id,
            local_addr,
            admission: Mutex::new(Admission::new(
                id,
                limits,
                config.trusted_peers.iter().copied(),
            )),
            statics: Mutex::new(HashMap::new()),
            throttle: Mutex::new(InboundThrottle::new(
                config.inbound_throttle,
                THROTTLE_CAPACITY,
                config.exempt_loopback,
            )),
            events,
            msg_events,
            pending: Arc::new(Semaphore::new(config.max_pending.max(1))),
            budget: crate::budget::MemoryBudget::new(config.memory_budget_bytes),
            finished_traffic: Mutex::new(Vec::new()),
            shutdown: CancellationToken::new(),
            tasks: Mutex::new(JoinSet::new()),
            discovery: Mutex::new(discovery.running().then(|| discovery.clone())),
            advertised: Mutex::new(advertised),
            nat: Mutex::new(port_mapper),
            transport,
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
        if let Some(candidates) = candidates {
            let s = server.clone();
            let span = info_span!("dial_scheduler");
            server.spawn(async move { s.dial_loop(candidates, discovery).await }.instrument(span));
        }
        if let Some(updates) = nat_updates {
            let s = server.clone();
            server.spawn(async move { s.follow_nat(updates).await });
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

    /// This node's enode URL (when listening), with the address others must dial: the
    /// external one from the NAT method, else the listen address, else (listening on
    /// every interface) the address other nodes' discovery pongs agree on, or a routable
    /// interface address; never an unspecified one. Its discovery port is the one
    /// discovery bound while it runs (`?discport=` when that differs from the TCP port).
    pub fn enode(&self) -> Option<Enode> {
        self.advertised().map(|a| Enode {
            id: self.inner.id,
            ip: a.ip,
            tcp_port: a.tcp_port,
            udp_port: a.udp_port,
        })
    }

    /// This node's record as discovery hands it out (with the advertised address):
    /// discv5's when discv5 runs (with [`Discovery::Both`] it is the one naming discv5's
    /// UDP port), else discv4's; `None` without discovery. Give it to other nodes as their
    /// bootnode (`enr:…`).
    pub fn node_record(&self) -> Option<crate::record::NodeRecord> {
        let discovery = lock(&self.inner.discovery);
        let running = discovery.as_ref()?;
        match (&running.v5, &running.v4) {
            (Some(v5), _) => v5.local_record().ok(),
            (None, Some(v4)) => Some(v4.local_record()),
            (None, None) => None,
        }
    }

    /// This node's discv4 record (naming discv4's UDP port), while discv4 runs.
    pub fn discv4_record(&self) -> Option<crate::record::NodeRecord> {
        let discovery = lock(&self.inner.discovery);
        Some(discovery.as_ref()?.v4.as_ref()?.local_record())
    }

    /// Subscribe to peer events. Slow subscribers miss events beyond the configured capacity.
    pub fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        self.inner.events.subscribe()
    }

    /// The peers running now.
    pub fn peers(&self) -> Vec<Peer> {
        lock(&self.inner.admission).peers().cloned().collect()
    }

    /// How many peers are running.
    pub fn peer_count(&self) -> usize {
        self.peers().len()
    }

    /// One peer by id.
    pub fn peer(&self, id: &NodeId) -> Option<Peer> {
        lock(&self.inner.admission).peer(id).cloned()
    }

    /// A serializable description of this node.
    pub fn node_info(&self) -> NodeInfo {
        NodeInfo {
            id: self.inner.id,
            client_id: self.inner.config.client_id.clone(),
            enode: self.enode().map(|e| e.to_string()),
            listen_addr: self.inner.local_addr,
            nat: self.inner.config.nat.to_string(),
            external: lock(&self.inner.advertised).and_then(|a| a.external),
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
        lock(&self.inner.admission).add_trusted(id);
    }

    /// Remove a node from the trusted set.
    pub fn remove_trusted(&self, id: &NodeId) {
        lock(&self.inner.admission).remove_trusted(id);
    }

    /// Whether `ip` is on the allow-list (when there is one).
    fn check_allowed(&self, ip: std::net::IpAddr) -> Result<(), ServerError> {
        match &self.inner.config.allow_list {
            Some(list) if !list.iter().any(|net| net.contains(ip)) => {
                Err(ServerError::NotAllowed(ip))
            }
            _ => Ok(()),
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
