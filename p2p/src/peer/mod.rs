//! A running peer: one link, the base protocol's liveness, and every matched
//! subprotocol's `run` as its own task.
//!
//! Tasks per peer: a read loop that routes each message by code to its protocol's
//! bounded queue, a control loop (pings out, pongs back, pong deadline), one task per
//! matched protocol, and a supervisor that ends them all on the first failure.
//!
//! **The write-start token.** Every write (protocol messages, pings, pongs, the final
//! Disconnect) goes through one per-peer async mutex around the link's writer. Holding
//! the guard *is* holding the token: exactly one message is on the wire at a time, the
//! token returns when the write completes (the guard drops), and waiters are served in
//! FIFO order. A write error ends the peer.

mod metrics;
mod rw;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

use crate::base::{
    Capability, DisconnectReason, Hello, BASE_PROTOCOL_LENGTH, EMPTY_LIST, HELLO, PING, PONG,
};
use crate::budget::{Holder, MemoryBudget};
use crate::capability::{match_capabilities, SharedCapability};
use crate::conn::{Conn, ConnReader, ConnWriter};
use crate::node::NodeId;
use crate::protocol::{InboundLimits, Msg, Protocol};
use crate::session::send_disconnect;

pub use metrics::{CodeTraffic, ProtocolTraffic, Traffic};
pub use rw::{ProtoRw, ProtoWriter};

use metrics::ProtoCounters;

/// Which side opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// They dialed us.
    Inbound,
    /// We dialed them.
    Outbound,
}

/// Timers and limits of a running peer. Defaults follow go-ethereum (ping 15 s, read 30 s,
/// write 20 s) and reth (pong timeout 15 s, inbound pings 5 burst then 1/s, 32 MiB budget).
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// How often we ping.
    pub ping_interval: Duration,
    /// How long a pong may take before disconnect 0x0b.
    pub pong_timeout: Duration,
    /// Longest silence from the remote before we give up on it (disconnect 0x0b).
    pub read_timeout: Duration,
    /// Longest time one message may take to write.
    pub write_timeout: Duration,
    /// Inbound pings allowed at once.
    pub ping_burst: u32,
    /// One more inbound ping allowed per this interval.
    pub ping_refill: Duration,
    /// All protocols' unread inbound bytes together, per peer.
    pub inbound_budget_bytes: usize,
    /// How long protocols get to return once the peer is closing, before they are aborted.
    pub protocol_grace: Duration,
    /// The node-wide memory budget this peer's buffers and queues are charged to (a
    /// [`crate::server::Server`] puts its own here). `None`: the peer is only bounded by
    /// its own limits.
    pub memory_budget: Option<MemoryBudget>,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            ping_interval: Duration::from_secs(15),
            pong_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(20),
            ping_burst: 5,
            ping_refill: Duration::from_secs(1),
            inbound_budget_bytes: 32 * 1024 * 1024,
            protocol_grace: Duration::from_secs(2),
            memory_budget: None,
        }
    }
}

/// Why a peer ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloseReason {
    /// The disconnect reason.
    pub reason: DisconnectReason,
    /// True when the remote sent the Disconnect; false when we ended the peer.
    pub remote: bool,
    /// What happened, for logs.
    pub detail: String,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let who = if self.remote { "remote" } else { "local" };
        write!(f, "{who}: {} ({})", self.reason, self.detail)
    }
}

/// A message event (sent or received), published when message events are enabled.
#[derive(Debug, Clone, Serialize)]
pub struct MessageEvent {
    /// The peer.
    pub peer: String,
    /// Protocol name.
    pub protocol: String,
    /// Code relative to the protocol.
    pub code: u64,
    /// Bytes on the wire.
    pub size: usize,
    /// True for received, false for sent.
    pub received: bool,
}

/// Static facts about a peer, fixed at the handshake.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The remote's node id.
    pub id: NodeId,
    /// Remote socket address, when the link is TCP.
    pub remote_addr: Option<SocketAddr>,
    /// Who dialed.
    pub direction: Direction,
    /// Whether this peer is trusted (exempt from limits).
    pub trusted: bool,
}

pub(crate) struct Route {
    pub(crate) cap: SharedCapability,
    pub(crate) queue: mpsc::Sender<Msg>,
    pub(crate) inbox: rw::Inbox,
    pub(crate) queued_bytes: Arc<AtomicUsize>,
    pub(crate) limits: InboundLimits,
    pub(crate) counters: Arc<ProtoCounters>,
}

pub(crate) struct Shared {
    pub(crate) info: PeerInfo,
    pub(crate) hello: Hello,
    pub(crate) protocols: Vec<SharedCapability>,
    pub(crate) connected_since: SystemTime,
    pub(crate) snappy: bool,
    pub(crate) config: PeerConfig,
    /// The write-start token: hold the guard to write one message.
    pub(crate) writer: tokio::sync::Mutex<ConnWriter>,
    pub(crate) closing: CancellationToken,
    close_reason: OnceLock<CloseReason>,
    done: watch::Sender<Option<CloseReason>>,
    pub(crate) base_counters: ProtoCounters,
    pub(crate) counters: Vec<Arc<ProtoCounters>>,
    pub(crate) total_queued: Arc<AtomicUsize>,
    pub(crate) msg_events: Option<tokio::sync::broadcast::Sender<MessageEvent>>,
    /// This peer's account in the node memory budget: frame buffer, payload being
    /// decompressed, and every queued inbound message.
    pub(crate) budget: Holder,
    id_short: String,
}

impl Shared {
    /// Record why the peer ends (the first reason wins) and start closing.
    pub(crate) fn close(&self, reason: DisconnectReason, remote: bool, detail: impl Into<String>) {
        let detail = detail.into();
        if self
            .close_reason
            .set(CloseReason {
                reason,
                remote,
                detail: detail.clone(),
            })
            .is_ok()
        {
            debug!(%reason, remote, %detail, "peer closing");
        }
        self.closing.cancel();
    }

    pub(crate) fn emit(&self, protocol: &str, code: u64, size: usize, received: bool) {
        if let Some(events) = &self.msg_events {
            let _ = events.send(MessageEvent {
                peer: self.id_short.clone(),
                protocol: protocol.to_string(),
                code,
                size,
                received,
            });
        }
    }

    /// Write one message (wire code) under the write-start token, within the write timeout.
    /// Returns the frame-data size, or `None` when the peer is closing or the write failed
    /// (a failed or timed-out write ends the peer).
    pub(crate) async fn write_message(&self, wire_code: u64, payload: &[u8]) -> Option<usize> {
        let mut writer = tokio::select! {
            biased;
            _ = self.closing.cancelled() => return None,
            w = self.writer.lock() => w,
        };
        // The token may have been handed over just as the peer started closing.
        if self.closing.is_cancelled() {
            return None;
        }
        let detail =
            match tokio::time::timeout(self.config.write_timeout, writer.write(wire_code, payload))
                .await
            {
                Ok(Ok(size)) => return Some(size),
                Ok(Err(e)) => format!("write failed: {e}"),
                Err(_) => "write timed out".to_string(),
            };
        self.close(DisconnectReason::TcpSubsystemError, false, detail);
        None
    }

    /// Write one base-protocol message under the token.
    async fn write_base(&self, code: u64, payload: &[u8]) -> bool {
        let Some(size) = self.write_message(code, payload).await else {
            return false;
        };
        self.base_counters.egress(code, size);
        true
    }
}

/// A handle to a running peer. Cheap to clone; every protocol's `run` gets one.
#[derive(Clone)]
pub struct Peer {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("id", &self.shared.info.id)
            .field("addr", &self.shared.info.remote_addr)
            .field("direction", &self.shared.info.direction)
            .finish()
    }
}

/// Errors starting a peer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// No capability in common: the remote was sent "useless peer".
    #[error("no shared capability with remote (sent useless peer)")]
    UselessPeer,
}

impl Peer {
    /// Start a peer on a link whose Hellos were exchanged: match capabilities, and spawn the
    /// read loop, control loop and one task per matched protocol. With no capability in
    /// common the remote is sent "useless peer" (0x03) and an error is returned.
    pub async fn start(
        mut conn: Conn,
        their_hello: Hello,
        protocols: &[Protocol],
        info: PeerInfo,
        config: PeerConfig,
        msg_events: Option<tokio::sync::broadcast::Sender<MessageEvent>>,
    ) -> Result<Peer, PeerError> {
        let local: Vec<(Capability, u64)> = protocols
            .iter()
            .map(|p| (p.capability(), p.length))
            .collect();
        let matched = match_capabilities(&local, &their_hello.capabilities);
        if matched.is_empty() {
            send_disconnect(&mut conn.writer, DisconnectReason::UselessPeer).await;
            let _ = conn.writer.shutdown().await;
            return Err(PeerError::UselessPeer);
        }
        let (done, _) = watch::channel(None);
        let counters: Vec<Arc<ProtoCounters>> = matched
            .iter()
            .map(|m| Arc::new(ProtoCounters::new(&m.name, m.version, m.length)))
            .collect();
        let id_short = hex::encode(&info.id.0[..8]);
        let budget = config
            .memory_budget
            .clone()
            .unwrap_or_else(|| MemoryBudget::new(usize::MAX))
            .holder();
        conn.reader.set_budget(budget.clone());
        let shared = Arc::new(Shared {
            info,
            hello: their_hello,
            protocols: matched.clone(),
            connected_since: SystemTime::now(),
            snappy: conn.writer.snappy_enabled(),
            config,
            writer: tokio::sync::Mutex::new(conn.writer),
            closing: CancellationToken::new(),
            close_reason: OnceLock::new(),
            done,
            base_counters: ProtoCounters::new("p2p", 5, BASE_PROTOCOL_LENGTH),
            counters: counters.clone(),
            total_queued: Arc::new(AtomicUsize::new(0)),
            msg_events,
            budget,
            id_short,
        });
        watch_budget(&shared);
        let peer = Peer { shared };

        let mut routes = Vec::with_capacity(matched.len());
        let mut rws = Vec::with_capacity(matched.len());
        for (cap, counters) in matched.into_iter().zip(counters) {
            let Some(proto) = protocols
                .iter()
                .find(|p| p.name == cap.name && p.version == cap.version)
            else {
                continue;
            };
            let limits = proto.inbound_limits;
            let (tx, rx) = mpsc::channel(limits.max_messages.max(1));
            let queued_bytes = Arc::new(AtomicUsize::new(0));
            let inbox = Arc::new(tokio::sync::Mutex::new(rx));
            routes.push(Route {
                cap: cap.clone(),
                queue: tx,
                inbox: inbox.clone(),
                queued_bytes: queued_bytes.clone(),
                limits,
                counters: counters.clone(),
            });
            let rw = ProtoRw::new(peer.clone(), cap, inbox, queued_bytes, counters);
            rws.push((proto.clone(), rw));
        }

        let span =
            info_span!("peer", id = %peer.shared.id_short, dir = ?peer.shared.info.direction);
        tokio::spawn(supervise(peer.clone(), conn.reader, routes, rws).instrument(span));
        Ok(peer)
    }

    /// Whether two handles refer to the same running peer.
    pub fn same(&self, other: &Peer) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// The remote's node id.
    pub fn id(&self) -> NodeId {
        self.shared.info.id
    }

    /// The remote's socket address, if known.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.shared.info.remote_addr
    }

    /// Who dialed.
    pub fn direction(&self) -> Direction {
        self.shared.info.direction
    }

    /// Whether the peer is trusted.
    pub fn is_trusted(&self) -> bool {
        self.shared.info.trusted
    }

    /// The remote's client id from its Hello.
    pub fn client_id(&self) -> &str {
        &self.shared.hello.client_id
    }

    /// The remote's Hello.
    pub fn hello(&self) -> &Hello {
        &self.shared.hello
    }

    /// Capabilities the remote advertised.
    pub fn capabilities(&self) -> &[Capability] {
        &self.shared.hello.capabilities
    }

    /// Protocols running on this link, with their offsets.
    pub fn protocols(&self) -> &[SharedCapability] {
        &self.shared.protocols
    }

    /// Whether messages on this link are snappy-compressed (both Hellos said version >= 5).
    pub fn snappy(&self) -> bool {
        self.shared.snappy
    }

    /// When the peer was started.
    pub fn connected_since(&self) -> SystemTime {
        self.shared.connected_since
    }

    /// Traffic so far: the base protocol first, then each matched protocol.
    pub fn traffic(&self) -> Vec<ProtocolTraffic> {
        std::iter::once(self.shared.base_counters.snapshot())
            .chain(self.shared.counters.iter().map(|c| c.snapshot()))
            .collect()
    }

    /// Bytes held on this peer's behalf now: its frame buffer, a payload being
    /// decompressed, and its protocols' unread inbound messages (all charged to the node
    /// memory budget).
    pub fn held_bytes(&self) -> usize {
        self.shared.budget.held()
    }

    /// Bytes waiting in this peer's protocols' inbound queues (a part of
    /// [`Peer::held_bytes`]).
    pub fn queued_bytes(&self) -> usize {
        self.shared.total_queued.load(Ordering::Acquire)
    }

    /// End the peer, sending `reason` to the remote.
    pub fn disconnect(&self, reason: DisconnectReason) {
        self.shared
            .close(reason, false, "disconnect requested locally");
    }

    /// Whether the peer has started closing.
    pub fn is_closing(&self) -> bool {
        self.shared.closing.is_cancelled()
    }

    /// Wait until the peer has ended and all of its tasks have finished; returns why it ended.
    pub async fn closed(&self) -> CloseReason {
        let mut rx = self.shared.done.subscribe();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                // The supervisor is gone without publishing: report what we know.
                return self
                    .shared
                    .close_reason
                    .get()
                    .cloned()
                    .unwrap_or(CloseReason {
                        reason: DisconnectReason::TcpSubsystemError,
                        remote: false,
                        detail: "peer task ended".into(),
                    });
            }
        }
    }

    /// A serializable snapshot of this peer.
    pub fn snapshot(&self, protocols: &[Protocol]) -> PeerSnapshot {
        let info = &self.shared.info;
        let protocol_info = self
            .shared
            .protocols
            .iter()
            .filter_map(|cap| {
                let proto = protocols
                    .iter()
                    .find(|p| p.name == cap.name && p.version == cap.version)?;
                Some((
                    cap.name.clone(),
                    proto.peer_info(self).unwrap_or(serde_json::Value::Null),
                ))
            })
            .collect();
        PeerSnapshot {
            id: self.id().to_string(),
            client_id: self.client_id().to_string(),
            remote_addr: info.remote_addr.map(|a| a.to_string()),
            direction: info.direction,
            trusted: info.trusted,
            capabilities: self.capabilities().iter().map(|c| c.to_string()).collect(),
            protocols: self.shared.protocols.clone(),
            connected_secs: self
                .connected_since()
                .elapsed()
                .map(|d| d.as_secs())
                .unwrap_or(0),
            traffic: self.traffic(),
            protocol_info,
        }
    }
}

/// A serializable view of one peer (go-ethereum's PeerInfo).
#[derive(Debug, Clone, Serialize)]
pub struct PeerSnapshot {
    /// Node id (hex).
    pub id: String,
    /// Client id from Hello.
    pub client_id: String,
    /// Remote address.
    pub remote_addr: Option<String>,
    /// Who dialed.
    pub direction: Direction,
    /// Trusted peer.
    pub trusted: bool,
    /// What the remote advertised ("name/version").
    pub capabilities: Vec<String>,
    /// Matched protocols with offsets.
    pub protocols: Vec<SharedCapability>,
    /// Seconds since connected.
    pub connected_secs: u64,
    /// Traffic per protocol.
    pub traffic: Vec<ProtocolTraffic>,
    /// Each protocol's peer-info hook, by name.
    pub protocol_info: std::collections::BTreeMap<String, serde_json::Value>,
}

/// When the node budget is full and this peer holds the most, it is disconnected with
/// "too many peers" (0x04): the node has no room for it.
fn watch_budget(shared: &Arc<Shared>) {
    let weak = Arc::downgrade(shared);
    shared.budget.on_evict(move |detail| {
        if let Some(shared) = weak.upgrade() {
            // Several claimants may pick the same largest holder before it has let go.
            if !shared.closing.is_cancelled() {
                warn!(held = shared.budget.held(), "{detail}");
                shared.close(DisconnectReason::TooManyPeers, false, detail);
            }
        }
    });
}

/// Runs the peer's tasks and ends them all on the first failure.
async fn supervise(
    peer: Peer,
    reader: ConnReader,
    routes: Vec<Route>,
    rws: Vec<(Protocol, ProtoRw)>,
) {
    let shared = peer.shared.clone();
    let (ping_tx, ping_rx) = mpsc::channel::<()>(1);
    let pong_seen = Arc::new(Notify::new());

    let read_task = tokio::spawn(
        read_loop(shared.clone(), reader, routes, ping_tx, pong_seen.clone()).in_current_span(),
    );
    let control_task =
        tokio::spawn(control_loop(shared.clone(), ping_rx, pong_seen).in_current_span());
    // Should this task unwind anyway, the guard still ends the peer's other tasks and
    // publishes the end (the protocol tasks end when the JoinSet below is dropped).
    let guard = SuperviseGuard {
        shared: shared.clone(),
        tasks: [read_task.abort_handle(), control_task.abort_handle()],
    };

    let mut protos = JoinSet::new();
    for (proto, rw) in rws {
        let name = proto.name.clone();
        let shared = shared.clone();
        let peer = peer.clone();
        // Inside the peer's span: a protocol's log lines carry the peer and the protocol.
        let span = info_span!("protocol", name = %proto.name, version = proto.version);
        protos.spawn(
            async move {
                // Built inside the task: a panic in the run closure's synchronous part is
                // then a protocol task panic like one inside its future, not the
                // supervisor's.
                let fut = proto.start(peer, rw);
                match fut.await {
                    Ok(()) => shared.close(
                        DisconnectReason::ClientQuitting,
                        false,
                        format!("protocol {name} returned"),
                    ),
                    Err(e) => {
                        let reason = e.reason();
                        shared.close(reason, false, format!("protocol {name} failed: {e}"))
                    }
                }
            }
            .instrument(span),
        );
    }

    // Wait for the first failure (or a protocol ending, which also closes).
    tokio::select! {
        _ = shared.closing.cancelled() => {}
        // A protocol task that panicked never called close(): treat as a subprotocol error.
        Some(Err(e)) = protos.join_next() => {
            shared.close(DisconnectReason::SubprotocolError, false, format!("protocol task failed: {e}"));
        }
    }
    let reason = shared.close_reason.get().cloned().unwrap_or(CloseReason {
        reason: DisconnectReason::TcpSubsystemError,
        remote: false,
        detail: "closed".into(),
    });

    // Stop reading first: this drops the protocol queues' senders, so every ProtoRw::read
    // returns PeerClosed and protocols can wind down.
    read_task.abort();
    control_task.abort();
    let _ = read_task.await;
    let _ = control_task.await;

    // Tell the remote why, unless it told us or the link itself is broken.
    let send = !reason.remote && reason.reason != DisconnectReason::TcpSubsystemError;
    if let Ok(mut writer) = tokio::time::timeout(
        crate::session::DISCONNECT_WRITE_TIMEOUT,
        shared.writer.lock(),
    )
    .await
    {
        if send {
            send_disconnect(&mut writer, reason.reason).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), writer.shutdown()).await;
    }

    let grace = shared.config.protocol_grace;
    if tokio::time::timeout(grace, async { while protos.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        warn!(
            ?grace,
            "protocols did not return after close; aborting them"
        );
        protos.shutdown().await;
    }
    debug!(%reason, "peer ended");
    shared.done.send_replace(Some(reason));
    drop(guard);
}

/// Ends a peer whose supervisor unwinds: aborts its read and control loops, records a
/// subprotocol error (0x10) and publishes the end so [`Peer::closed`] returns and the
/// server frees the slot. A no-op after a normal end.
struct SuperviseGuard {
    shared: Arc<Shared>,
    tasks: [tokio::task::AbortHandle; 2],
}

impl Drop for SuperviseGuard {
    fn drop(&mut self) {
        if self.shared.done.borrow().is_some() {
            return;
        }
        for task in &self.tasks {
            task.abort();
        }
        self.shared.close(
            DisconnectReason::SubprotocolError,
            false,
            "peer supervisor failed",
        );
        let reason = self.shared.close_reason.get().cloned();
        self.shared.done.send_replace(reason);
    }
}

/// Token bucket for inbound pings.
struct PingBucket {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    last: Instant,
}

impl PingBucket {
    fn new(burst: u32, refill: Duration) -> Self {
        PingBucket {
            tokens: burst as f64,
            burst: burst as f64,
            per_sec: 1.0 / refill.as_secs_f64().max(1e-3),
            last: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Frames at least this large (frame-data bytes) give the runtime a turn once read.
const YIELD_AFTER: usize = 16 * 1024;

async fn read_loop(
    shared: Arc<Shared>,
    mut reader: ConnReader,
    routes: Vec<Route>,
    ping_tx: mpsc::Sender<()>,
    pong_seen: Arc<Notify>,
) {
    let routes = DrainOnExit {
        peer: Peer {
            shared: shared.clone(),
        },
        routes,
    };
    let routes = &routes.routes;
    let mut bucket = PingBucket::new(shared.config.ping_burst, shared.config.ping_refill);
    let breach = |detail: String| shared.close(DisconnectReason::ProtocolBreach, false, detail);
    loop {
        let msg = match tokio::time::timeout(shared.config.read_timeout, reader.read()).await {
            Ok(Ok(msg)) => msg,
            Ok(Err(e)) => {
                shared.close(e.disconnect_reason(), false, format!("read failed: {e}"));
                return;
            }
            Err(_) => {
                shared.close(DisconnectReason::PingTimeout, false, "read timed out");
                return;
            }
        };
        // Given back when the message is dropped here; kept while it sits in a queue.
        let charge = shared.budget.adopt(msg.charged);
        if msg.wire_size >= YIELD_AFTER {
            // Opening a big frame is long CPU work; a peer streaming them back to back
            // must not keep a runtime worker from everyone else's messages.
            tokio::task::yield_now().await;
        }
        if msg.code < BASE_PROTOCOL_LENGTH {
            shared.base_counters.ingress(msg.code, msg.wire_size);
        }
        if let Some(reason) = msg.disconnect {
            shared.close(reason, true, "remote sent disconnect");
            return;
        }
        match msg.code {
            HELLO => return breach("second hello".into()),
            PING => {
                if !bucket.take(msg.received_at) {
                    return breach("ping flood".into());
                }
                // A full channel means a pong is already due: one answer covers both.
                let _ = ping_tx.try_send(());
            }
            PONG => pong_seen.notify_one(),
            code if code < BASE_PROTOCOL_LENGTH => {
                debug!(code, "ignoring reserved base protocol code");
            }
            code => {
                let Some(route) = routes
                    .iter()
                    .find(|r| code >= r.cap.offset && code - r.cap.offset < r.cap.length)
                else {
                    return breach(format!("message code {code:#x} outside every protocol"));
                };
                let rel = code - route.cap.offset;
                let size = msg.payload.len();
                debug_assert_eq!(size, msg.charged, "a queued payload is charged exactly");
                route.counters.ingress(rel, msg.wire_size);
                shared.emit(&route.cap.name, rel, msg.wire_size, true);
                let queued = route.queued_bytes.load(Ordering::Acquire);
                let total = shared.total_queued.load(Ordering::Acquire);
                if queued + size > route.limits.max_bytes
                    || total + size > shared.config.inbound_budget_bytes
                {
                    return breach(format!(
                        "{} inbound budget exceeded ({} bytes queued)",
                        route.cap.name, queued
                    ));
                }
                route.queued_bytes.fetch_add(size, Ordering::AcqRel);
                shared.total_queued.fetch_add(size, Ordering::AcqRel);
                let delivered = Msg {
                    code: rel,
                    size,
                    payload: msg.payload,
                    received_at: msg.received_at,
                };
                match route.queue.try_send(delivered) {
                    Ok(()) => {
                        // The receiving ProtoRw releases it when read or dropped.
                        charge.keep();
                        // When the protocol falls far behind, let it run: on a busy runtime
                        // an eager read loop could otherwise fill its queue (and breach its
                        // budget) without ever giving it a turn.
                        let waiting = route.queue.max_capacity() - route.queue.capacity();
                        if waiting > route.limits.max_messages / 2
                            || route.queued_bytes.load(Ordering::Acquire)
                                > route.limits.max_bytes / 2
                        {
                            tokio::task::yield_now().await;
                        }
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        return breach(format!(
                            "{} inbound queue full ({} messages)",
                            route.cap.name, route.limits.max_messages
                        ));
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        // The protocol dropped its reader: it has chosen not to read, so
                        // its messages are discarded (and their bytes released).
                        route.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                        shared.total_queued.fetch_sub(size, Ordering::AcqRel);
                    }
                }
            }
        }
    }
}

/// The read loop's routes; when the loop ends (returns or is aborted, which is how every
/// peer ends) every queue is closed and what it still holds is released to the budget.
struct DrainOnExit {
    peer: Peer,
    routes: Vec<Route>,
}

impl Drop for DrainOnExit {
    fn drop(&mut self) {
        for route in &self.routes {
            rw::drain(&route.inbox, &self.peer, &route.queued_bytes);
        }
    }
}

async fn control_loop(
    shared: Arc<Shared>,
    mut ping_rx: mpsc::Receiver<()>,
    pong_seen: Arc<Notify>,
) {
    let cfg = shared.config.clone();
    let mut next_ping = tokio::time::Instant::now() + cfg.ping_interval;
    let mut pong_deadline: Option<tokio::time::Instant> = None;
    loop {
        let deadline = pong_deadline;
        tokio::select! {
            _ = tokio::time::sleep_until(next_ping) => {
                if !shared.write_base(PING, &EMPTY_LIST).await {
                    return;
                }
                next_ping = tokio::time::Instant::now() + cfg.ping_interval;
                if pong_deadline.is_none() {
                    pong_deadline = Some(tokio::time::Instant::now() + cfg.pong_timeout);
                }
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if deadline.is_some() => {
                shared.close(DisconnectReason::PingTimeout, false, "no pong in time");
                return;
            }
            Some(()) = ping_rx.recv() => {
                if !shared.write_base(PONG, &EMPTY_LIST).await {
                    return;
                }
            }
            _ = pong_seen.notified() => {
                pong_deadline = None;
            }
        }
    }
}
