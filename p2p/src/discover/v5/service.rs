//! The running discv5 service: sigp's `discv5` on our socket and record, bounded lookups,
//! and verified nodes as [`Candidates`].
//!
//! [`Discv5::start`] binds the UDP socket, signs our record with the bound port, starts the
//! crate's service on that socket (its tasks on a [`TrackedExecutor`]) and spawns two tasks
//! of its own:
//! - the **event reader** takes the crate's events as they come. A
//!   `SessionEstablished` event means the crate finished a handshake with the node (it
//!   holds its record's key) and checked that the record's UDP address is the one its
//!   packets came from: that node becomes a candidate.
//! - the **lookup task** looks up our own id once, then random ids, one lookup at a time,
//!   each cut off after [`Discv5Config::query_timeout`]; the pause between lookups doubles
//!   from [`Discv5Config::lookup_interval_start`] to [`Discv5Config::lookup_interval`]. After each lookup it also offers the table's
//!   connected entries (in case an event was dropped) and re-adds the bootnodes when the
//!   table has emptied.
//!
//! Bounds: the crate's own (its event channel, session cache, pending requests, the
//! packet filter's rates from [`PacketLimits`](super::PacketLimits)); ours: one lookup at
//! a time, a bounded candidate channel (full means dropped), and a bounded memory of
//! nodes already offered.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use discv5::{ConfigBuilder, Enr, Event, ListenConfig, RateLimiterBuilder};
use sha3::{Digest, Keccak256};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, trace, warn, Instrument};

use super::config::Discv5Config;
use super::executor::TrackedExecutor;
use crate::discover::candidates::{RecentIds, DEDUP_CAPACITY, DEDUP_WINDOW};
use crate::discover::v4::packet::Endpoint;
use crate::discover::v4::table::Node;
use crate::discover::{Bootnode, Candidate, Candidates};
use crate::node::{Enode, NodeId};
use crate::record::{signing_key, NodeRecord, RecordError, RecordSpec};

/// How long shutdown waits for the crate's tasks before aborting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Why discv5 failed to start or a request failed.
#[derive(Debug, thiserror::Error)]
pub enum Discv5Error {
    /// The UDP socket could not be bound.
    #[error("cannot bind discv5 socket to {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Our record could not be built, or a received one is unusable.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The crate refused our configuration or could not start.
    #[error("discv5 did not start: {0}")]
    Start(String),
    /// A request or lookup failed (no session, invalid answer, the service stopped).
    #[error("discv5 request failed: {0}")]
    Request(String),
    /// No answer in time.
    #[error("discv5 request timed out")]
    Timeout,
    /// The node answered, but not with its own record.
    #[error("the node did not return its record")]
    NoRecord,
    /// The candidate stream was already taken.
    #[error("the candidate stream was already taken")]
    CandidatesTaken,
    /// The service has shut down.
    #[error("discv5 has shut down")]
    ShutDown,
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Discv5Stats {
    /// Sessions the crate established (handshake done, record checked).
    pub sessions: u64,
    /// Records whose UDP address did not match where their packets came from.
    pub unverifiable: u64,
    /// Lookups finished (answered or cut off).
    pub lookups: u64,
    /// Candidates put on the stream.
    pub candidates: u64,
    /// Candidates dropped because the stream was full or gone.
    pub candidates_dropped: u64,
}

/// State shared by the handle and the service's tasks.
struct Shared {
    id: NodeId,
    /// The crate's service; taken out at shutdown.
    service: Mutex<Option<discv5::Discv5>>,
    config: Discv5Config,
    candidates_tx: mpsc::Sender<Candidate>,
    /// Nodes already offered, so sessions re-established and table sweeps do not flood
    /// the stream.
    offered: Mutex<RecentIds>,
    stats: Mutex<Discv5Stats>,
}

/// A running discv5 service. See the [module docs](super).
pub struct Discv5 {
    shared: Arc<Shared>,
    candidates_rx: Mutex<Option<mpsc::Receiver<Candidate>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    executor: TrackedExecutor,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for Discv5 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discv5")
            .field("id", &self.shared.id)
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a small assignment, consistent whatever panicked.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// discv5's node id for a devp2p node id: the keccak-256 of the 64-byte public key.
pub fn v5_node_id(id: &NodeId) -> enr::NodeId {
    enr::NodeId::new(&Keccak256::digest(id.0).into())
}

impl Discv5 {
    /// Binds the socket, signs our record, starts the crate's service and our tasks.
    pub async fn start(config: Discv5Config) -> Result<Discv5, Discv5Error> {
        let bind_err = |source| Discv5Error::Bind {
            addr: config.bind,
            source,
        };
        let socket = UdpSocket::bind(config.bind).await.map_err(bind_err)?;
        let local_addr = socket.local_addr().map_err(bind_err)?;
        let ip = config
            .advertised_ip
            .or_else(|| (!local_addr.ip().is_unspecified()).then_some(local_addr.ip()));
        // Milliseconds since the epoch, as discv4 does: a restart issues a newer record.
        let seq = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64);
        let spec = RecordSpec {
            ip,
            tcp_port: (config.tcp_port != 0).then_some(config.tcp_port),
            udp_port: Some(local_addr.port()),
            capabilities: config.capabilities.clone(),
        };
        let record = NodeRecord::build(&config.key, seq, &spec)?;
        let span = tracing::info_span!("discv5", addr = %local_addr);
        let executor = TrackedExecutor::new(span.clone());
        let service = new_service(&config, record, socket, executor.clone())?;
        let id = config.key.id();
        let (candidates_tx, candidates_rx) = mpsc::channel(config.candidates_capacity.max(1));
        let shared = Arc::new(Shared {
            id,
            service: Mutex::new(None),
            config,
            candidates_tx,
            offered: Mutex::new(RecentIds::new(DEDUP_CAPACITY, DEDUP_WINDOW)),
            stats: Mutex::new(Discv5Stats::default()),
        });
        let mut service = service;
        let started = async {
            service
                .start()
                .await
                .map_err(|e| Discv5Error::Start(format!("{e:?}")))?;
            service
                .event_stream()
                .await
                .map_err(|e| Discv5Error::Start(format!("{e:?}")))
        }
        .await;
        let events = match started {
            Ok(events) => events,
            Err(e) => {
                service.shutdown();
                drop(service);
                executor.join(SHUTDOWN_GRACE).await;
                return Err(e);
            }
        };
        *lock(&shared.service) = Some(service);
        shared.add_bootnodes();
        let tasks = vec![
            tokio::spawn(event_loop(shared.clone(), events).instrument(span.clone())),
            tokio::spawn(lookup_loop(shared.clone()).instrument(span)),
        ];
        debug!(%local_addr, %id, "discv5 started");
        Ok(Discv5 {
            shared,
            candidates_rx: Mutex::new(Some(candidates_rx)),
            tasks: Mutex::new(tasks),
            executor,
            local_addr,
        })
    }

    /// Our node id.
    pub fn local_id(&self) -> NodeId {
        self.shared.id
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Our current record (the crate re-signs it when peers agree on a new address of ours).
    pub fn local_record(&self) -> Result<NodeRecord, Discv5Error> {
        let enr = self.shared.with_service(|s| s.local_enr())?;
        Ok(NodeRecord::from_enr(enr)?)
    }

    /// Our enode URL, from our record: the announced IP, TCP port and discv5's UDP port.
    pub fn local_enode(&self) -> Result<Enode, Discv5Error> {
        Ok(self.local_record()?.to_enode()?)
    }

    /// Announces `ip` with `tcp_port` (0: none) and `udp_port` in our record (after a NAT
    /// mapping, say); the crate re-signs it with the next sequence number for each entry
    /// that changed, and peers learn it from our pings and pongs. Returns the record.
    pub fn set_advertised(
        &self,
        ip: IpAddr,
        tcp_port: u16,
        udp_port: u16,
    ) -> Result<NodeRecord, Discv5Error> {
        self.shared.with_service(|s| {
            s.update_local_enr_socket(SocketAddr::new(ip, udp_port), false);
            if tcp_port != 0 {
                s.update_local_enr_socket(SocketAddr::new(ip, tcp_port), true);
            }
        })?;
        self.local_record()
    }

    /// The stream of newly verified nodes, each with its record. It can be taken once; the
    /// channel is bounded, and candidates found while it is full are dropped.
    pub fn candidates(&self) -> Result<Candidates, Discv5Error> {
        lock(&self.candidates_rx)
            .take()
            .map(Candidates::new)
            .ok_or(Discv5Error::CandidatesTaken)
    }

    /// Iterative lookup: the records of the nodes closest to `target` that answered,
    /// nearest first (cut off after the configured query timeout).
    pub async fn lookup(&self, target: NodeId) -> Result<Vec<NodeRecord>, Discv5Error> {
        self.shared.lookup(v5_node_id(&target)).await
    }

    /// A lookup towards a random id, to discover nodes in general.
    pub async fn lookup_random(&self) -> Result<Vec<NodeRecord>, Discv5Error> {
        self.shared.lookup(enr::NodeId::random()).await
    }

    /// Pings the node the record describes (starting a session when there is none).
    pub async fn ping(&self, record: &NodeRecord) -> Result<(), Discv5Error> {
        let enr = record.as_enr().clone();
        let ping = self.shared.with_service(|s| s.send_ping(enr))?;
        match tokio::time::timeout(self.shared.request_deadline(), ping).await {
            Ok(Ok(_pong)) => Ok(()),
            Ok(Err(e)) => Err(Discv5Error::Request(e.to_string())),
            Err(_) => Err(Discv5Error::Timeout),
        }
    }

    /// Asks the node for its current record (`FINDNODE` at distance 0), which must be
    /// signed by the same key.
    pub async fn request_record(&self, record: &NodeRecord) -> Result<NodeRecord, Discv5Error> {
        let found = self.find_node(record, vec![0]).await?;
        let id = record.node_id()?;
        found
            .into_iter()
            .find(|r| r.node_id().ok() == Some(id))
            .ok_or(Discv5Error::NoRecord)
    }

    /// Asks one node for the records it knows at the given log-distances from itself.
    pub async fn find_node(
        &self,
        record: &NodeRecord,
        distances: Vec<u64>,
    ) -> Result<Vec<NodeRecord>, Discv5Error> {
        let enr = record.as_enr().clone();
        let query = self
            .shared
            .with_service(|s| s.find_node_designated_peer(enr, distances))?;
        match tokio::time::timeout(self.shared.request_deadline(), query).await {
            Ok(Ok(enrs)) => Ok(usable_records(enrs)),
            Ok(Err(e)) => Err(Discv5Error::Request(e.to_string())),
            Err(_) => Err(Discv5Error::Timeout),
        }
    }

    /// Adds a node to the table (as discv5 adds a bootnode: not yet contacted).
    pub fn add_node(&self, record: &NodeRecord) -> Result<(), Discv5Error> {
        let enr = record.as_enr().clone();
        self.shared
            .with_service(|s| s.add_enr(enr))?
            .map_err(|e| Discv5Error::Request(e.to_string()))
    }

    /// Entries in the node table.
    pub fn table_len(&self) -> usize {
        self.shared
            .with_service(|s| s.table_entries_id().len())
            .unwrap_or(0)
    }

    /// The records in the node table.
    pub fn table_records(&self) -> Vec<NodeRecord> {
        self.shared
            .with_service(|s| s.table_entries_enr())
            .map(usable_records)
            .unwrap_or_default()
    }

    /// Counters so far.
    pub fn stats(&self) -> Discv5Stats {
        *lock(&self.shared.stats)
    }

    /// Stops our tasks and the crate's service, and waits (bounded) until every task has
    /// ended and the socket is closed.
    pub async fn shutdown(self) {
        self.stop().await;
    }

    /// [`Self::shutdown`], returning how many of the crate's tasks had to be aborted.
    async fn stop(&self) -> usize {
        let tasks = std::mem::take(&mut *lock(&self.tasks));
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        let service = lock(&self.shared.service).take();
        if let Some(mut service) = service {
            service.shutdown();
        }
        self.executor.join(SHUTDOWN_GRACE).await
    }
}

impl Drop for Discv5 {
    fn drop(&mut self) {
        for t in lock(&self.tasks).iter() {
            t.abort();
        }
        // Dropping the crate's service signals its tasks to end.
        lock(&self.shared.service).take();
    }
}

/// The crate's service around our socket and record, with our limits.
fn new_service(
    config: &Discv5Config,
    record: NodeRecord,
    socket: UdpSocket,
    executor: TrackedExecutor,
) -> Result<discv5::Discv5, Discv5Error> {
    let socket = Arc::new(socket);
    let listen = match config.bind {
        SocketAddr::V4(_) => ListenConfig::FromSockets {
            ipv4: Some(socket),
            ipv6: None,
        },
        SocketAddr::V6(_) => ListenConfig::FromSockets {
            ipv4: None,
            ipv6: Some(socket),
        },
    };
    let mut builder = ConfigBuilder::new(listen);
    builder
        .request_timeout(config.request_timeout)
        .query_peer_timeout(config.query_peer_timeout)
        .query_timeout(config.query_timeout)
        .ping_interval(config.ping_interval)
        .session_cache_capacity(config.session_cache_capacity.max(1))
        .executor(Box::new(executor));
    match config.packet_limits {
        Some(limits) => {
            let second = Duration::from_secs(1);
            let limiter = RateLimiterBuilder::new()
                .total_n_every(limits.total_per_sec.max(1), second)
                .ip_n_every(limits.per_ip_per_sec.max(1), second)
                .node_n_every(limits.per_node_per_sec.max(1), second)
                .build()
                .map_err(|e| Discv5Error::Start(e.to_string()))?;
            builder
                .enable_packet_filter()
                .filter_rate_limiter(Some(limiter))
                .filter_max_nodes_per_ip(Some(limits.max_nodes_per_ip.max(1)))
                .ban_duration(Some(limits.ban_duration));
        }
        None => {
            builder.filter_rate_limiter(None);
        }
    }
    let enr = record.as_enr().clone();
    discv5::Discv5::new(enr, signing_key(&config.key), builder.build())
        .map_err(|e| Discv5Error::Start(e.to_string()))
}

/// Records we can use: secp256k1-signed (a devp2p node id), in our record type.
fn usable_records(enrs: Vec<Enr>) -> Vec<NodeRecord> {
    enrs.into_iter()
        .filter_map(|enr| NodeRecord::from_enr(enr).ok())
        .filter(|r| r.node_id().is_ok())
        .collect()
}

impl Shared {
    /// Runs `f` on the crate's service while it runs. Nothing awaits under the lock: the
    /// crate's request methods return futures that own what they need.
    fn with_service<T>(&self, f: impl FnOnce(&discv5::Discv5) -> T) -> Result<T, Discv5Error> {
        lock(&self.service)
            .as_ref()
            .map(f)
            .ok_or(Discv5Error::ShutDown)
    }

    /// Longest a single request may take: every retry's timeout, and a handshake.
    fn request_deadline(&self) -> Duration {
        self.config.request_timeout * 3
    }

    /// Adds the bootnodes that carry a record; skips enode URLs (see the module docs).
    fn add_bootnodes(&self) {
        for boot in &self.config.bootnodes {
            match boot {
                Bootnode::Record(record) => {
                    let enr = record.as_enr().clone();
                    match self.with_service(|s| s.add_enr(enr)) {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => warn!(error = e, "discv5 bootnode not added"),
                        Err(_) => return,
                    }
                }
                Bootnode::Enode(enode) => {
                    warn!(%enode, "discv5 needs a bootnode's record (enr:…); enode skipped")
                }
            }
        }
    }

    async fn lookup(&self, target: enr::NodeId) -> Result<Vec<NodeRecord>, Discv5Error> {
        let query = self.with_service(|s| s.find_node(target))?;
        // The crate ends a query by its own timeout; ours is a backstop a second later.
        let deadline = self.config.query_timeout + Duration::from_secs(1);
        let result = tokio::time::timeout(deadline, query).await;
        lock(&self.stats).lookups += 1;
        match result {
            Ok(Ok(enrs)) => Ok(usable_records(enrs)),
            Ok(Err(e)) => Err(Discv5Error::Request(e.to_string())),
            Err(_) => Err(Discv5Error::Timeout),
        }
    }

    /// Offers a node whose session and record the crate verified, unless offered lately.
    fn offer(&self, enr: Enr, from: SocketAddr) {
        let Ok(record) = NodeRecord::from_enr(enr) else {
            return;
        };
        let Ok(id) = record.node_id() else {
            trace!("node without a secp256k1 key: not a devp2p candidate");
            return;
        };
        let has_tcp = record.tcp_addr().is_some();
        if !lock(&self.offered).admit(id, true, Instant::now()) {
            return;
        }
        let ip: IpAddr = from.ip().to_canonical();
        let candidate = Candidate {
            node: Node {
                id,
                endpoint: Endpoint {
                    ip,
                    udp_port: from.port(),
                    tcp_port: record.tcp_addr().map_or(0, |a| a.port()),
                },
            },
            record: Some(record),
        };
        let sent = self.candidates_tx.try_send(candidate).is_ok();
        let mut stats = lock(&self.stats);
        if sent {
            stats.candidates += 1;
            trace!(%id, has_tcp, "discv5 candidate");
        } else {
            stats.candidates_dropped += 1;
            trace!("candidate channel full or closed: candidate dropped");
        }
    }

    /// Offers the table's connected entries (a session is up and their record checked).
    fn offer_connected(&self) {
        let entries = self.with_service(|s| s.table_entries()).unwrap_or_default();
        for (_, enr, status) in entries {
            if !status.is_connected() {
                continue;
            }
            let from = enr
                .udp4_socket()
                .map(SocketAddr::V4)
                .or_else(|| enr.udp6_socket().map(SocketAddr::V6));
            if let Some(from) = from {
                self.offer(enr, from);
            }
        }
    }
}

/// Reads the crate's events until it stops.
async fn event_loop(shared: Arc<Shared>, mut events: mpsc::Receiver<Event>) {
    while let Some(event) = events.recv().await {
        match event {
            Event::SessionEstablished(enr, from) => {
                lock(&shared.stats).sessions += 1;
                shared.offer(enr, from);
            }
            Event::UnverifiableEnr { socket, .. } => {
                lock(&shared.stats).unverifiable += 1;
                debug!(%socket, "record does not match its sender's address");
            }
            Event::SocketUpdated(addr) => debug!(%addr, "our record's address updated"),
            _ => {}
        }
    }
    debug!("discv5 event stream ended");
}

/// Looks up our own id, then random ids, one lookup at a time; the pause between them
/// grows from the start interval to the lookup interval.
async fn lookup_loop(shared: Arc<Shared>) {
    let start = shared.config.lookup_interval_start;
    let max = shared.config.lookup_interval.max(start);
    let mut pause = start;
    let mut target = v5_node_id(&shared.id);
    loop {
        match shared.lookup(target).await {
            Ok(found) => trace!(found = found.len(), "discv5 lookup done"),
            Err(Discv5Error::ShutDown) => return,
            Err(e) => debug!(error = %e, "discv5 lookup failed"),
        }
        shared.offer_connected();
        let empty = shared
            .with_service(|s| s.table_entries_id().is_empty())
            .unwrap_or(false);
        if empty {
            // The crate drops nodes that stop answering, bootnodes included.
            shared.add_bootnodes();
            pause = start;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(max);
        target = enr::NodeId::random();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::Capability;
    use crate::node::NodeKey;

    fn config(ip: &str) -> Discv5Config {
        let mut c = Discv5Config::new(NodeKey::generate(), SocketAddr::new(ip.parse().unwrap(), 0));
        c.tcp_port = 30303;
        c.capabilities = vec![Capability::new("braid-test", 1)];
        c.lookup_interval_start = Duration::from_millis(300);
        c.request_timeout = Duration::from_millis(500);
        c
    }

    #[test]
    fn v5_node_id_is_the_keccak_of_the_public_key() {
        let key = NodeKey::generate();
        let record = NodeRecord::build(&key, 1, &RecordSpec::default()).unwrap();
        assert_eq!(v5_node_id(&key.id()), record.as_enr().node_id());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn our_record_names_the_bound_socket_and_capabilities() {
        let d = Discv5::start(config("127.0.5.1")).await.unwrap();
        let record = d.local_record().unwrap();
        assert_eq!(record.node_id().unwrap(), d.local_id());
        assert_eq!(record.udp_addr(), Some(d.local_addr()));
        assert_eq!(record.tcp_addr(), Some("127.0.5.1:30303".parse().unwrap()));
        assert_eq!(
            record.capabilities().unwrap(),
            vec![Capability::new("braid-test", 1)]
        );
        d.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_find_each_other_and_shutdown_ends_every_task() {
        let a = Discv5::start(config("127.0.5.2")).await.unwrap();
        let mut b_cfg = config("127.0.5.3");
        b_cfg.bootnodes = vec![Bootnode::Record(a.local_record().unwrap())];
        let b = Discv5::start(b_cfg).await.unwrap();
        let mut a_candidates = a.candidates().unwrap();
        let mut b_candidates = b.candidates().unwrap();
        assert!(matches!(a.candidates(), Err(Discv5Error::CandidatesTaken)));
        // b contacts its bootnode; both sides verify the other and offer it once.
        let wait = Duration::from_secs(10);
        let at_b = tokio::time::timeout(wait, b_candidates.recv())
            .await
            .expect("b's candidate")
            .unwrap();
        assert_eq!(at_b.node.id, a.local_id());
        assert_eq!(at_b.tcp_addr(), Some("127.0.5.2:30303".parse().unwrap()));
        let at_a = tokio::time::timeout(wait, a_candidates.recv())
            .await
            .expect("a's candidate")
            .unwrap();
        assert_eq!(at_a.node.id, b.local_id());
        assert_eq!(
            at_a.node.endpoint.udp_port,
            b.local_addr().port(),
            "the endpoint is where b's packets came from"
        );
        let record = at_a.record.expect("discv5 candidates carry the record");
        assert!(record.speaks_any(&[Capability::new("braid-test", 1)]));
        assert!(b.stats().sessions >= 1);

        // A new advertised address is signed into the record with a higher seq, and
        // what b fetches is the new record.
        let before = a.local_record().unwrap();
        let moved = a.set_advertised("127.0.5.2".parse().unwrap(), 30304, a.local_addr().port());
        let moved = moved.unwrap();
        assert!(moved.seq() > before.seq());
        assert_eq!(moved.tcp_addr(), Some("127.0.5.2:30304".parse().unwrap()));
        assert_eq!(moved.udp_addr(), before.udp_addr());
        assert_eq!(
            moved.capabilities().unwrap(),
            before.capabilities().unwrap()
        );
        let unchanged = a
            .set_advertised("127.0.5.2".parse().unwrap(), 30304, a.local_addr().port())
            .unwrap();
        assert_eq!(
            unchanged.seq(),
            moved.seq(),
            "nothing changed, nothing re-signed"
        );

        // Direct requests: ping and the record at distance 0.
        let a_record = a.local_record().unwrap();
        b.ping(&a_record).await.unwrap();
        assert_eq!(b.request_record(&a_record).await.unwrap(), a_record);

        // Shutdown: every task ends without being aborted and the port is free again.
        let b_addr = b.local_addr();
        assert!(b.executor.running() > 0);
        let aborted = b.stop().await;
        assert_eq!(aborted, 0);
        assert_eq!(b.executor.running(), 0);
        drop(b);
        UdpSocket::bind(b_addr).await.expect("b's port is free");
        assert!(
            tokio::time::timeout(Duration::from_secs(1), b_candidates.recv())
                .await
                .expect("the stream ends")
                .is_none(),
        );
        a.shutdown().await;
    }
}
