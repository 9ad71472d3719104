//! Starting a peer and supervising its tasks: the read loop and one task per matched
//! protocol, all ended on the first failure, with the Disconnect sent and the end
//! published once they are done. The supervisor itself keeps the peer alive (pings out,
//! pongs back, the pong deadline) while it waits.

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

use super::inbox::Inbox;
use super::liveness::Liveness;
use super::metrics::ProtoCounters;
use super::read_loop::{read_loop, Route};
use super::{
    CloseReason, MessageEvent, Peer, PeerConfig, PeerInfo, PeerStartError, ProtoRw, Shared,
};
use crate::base::{Capability, DisconnectReason, Hello, BASE_PROTOCOL_LENGTH};
use crate::budget::MemoryBudget;
use crate::capability::{match_capabilities, SharedCapability};
use crate::conn::{Conn, ConnReader};
use crate::deadline::within;
use crate::protocol::Protocol;
use crate::session::send_disconnect;

impl Peer {
    /// Start a peer on a link whose Hellos were exchanged: match capabilities, and spawn the
    /// read loop and one task per matched protocol. With no capability in
    /// common the remote is sent "useless peer" (0x03) and an error is returned.
    pub async fn start(
        mut conn: Conn,
        their_hello: Hello,
        protocols: &[Protocol],
        info: PeerInfo,
        config: PeerConfig,
        msg_events: Option<tokio::sync::broadcast::Sender<MessageEvent>>,
    ) -> Result<Peer, PeerStartError> {
        let local: Vec<(Capability, u64)> = protocols
            .iter()
            .map(|p| (p.capability(), p.length))
            .collect();
        let matched = match_capabilities(&local, &their_hello.capabilities);
        if matched.is_empty() {
            send_disconnect(&mut conn.writer, DisconnectReason::UselessPeer).await;
            let _ = conn.writer.shutdown().await;
            return Err(PeerStartError::UselessPeer);
        }
        let (done, _) = watch::channel(None);
        let counters: Vec<Arc<ProtoCounters>> = matched
            .iter()
            .map(|m| Arc::new(ProtoCounters::new(&m.name, m.version, m.length)))
            .collect();
        let budget = config
            .memory_budget
            .clone()
            .unwrap_or_else(|| MemoryBudget::new(usize::MAX))
            .holder();
        conn.reader.set_budget(budget.clone());
        // Each matched protocol's queue, made first: closing the peer wakes their readers.
        let lanes: Vec<Lane> = matched
            .into_iter()
            .zip(counters.iter().cloned())
            .filter_map(|(cap, counters)| {
                let proto = protocols
                    .iter()
                    .find(|p| p.name == cap.name && p.version == cap.version)?;
                Some(Lane {
                    inbox: Arc::new(Inbox::new(proto.inbound_limits.max_messages)),
                    queued_bytes: Arc::new(AtomicUsize::new(0)),
                    proto: proto.clone(),
                    cap,
                    counters,
                })
            })
            .collect();
        let shared = Arc::new(Shared {
            info,
            hello: their_hello,
            protocols: lanes.iter().map(|l| l.cap.clone()).collect(),
            connected_since: SystemTime::now(),
            snappy: conn.writer.snappy_enabled(),
            config,
            writer: tokio::sync::Mutex::new(conn.writer),
            flush_requested: AtomicBool::new(false),
            flush_wanted: Notify::new(),
            closing: CancellationToken::new(),
            closed: AtomicBool::new(false),
            inboxes: lanes.iter().map(|l| l.inbox.clone()).collect(),
            close_reason: OnceLock::new(),
            end: Default::default(),
            done,
            base_counters: ProtoCounters::new("p2p", 5, BASE_PROTOCOL_LENGTH),
            counters: counters.clone(),
            total_queued: Arc::new(AtomicUsize::new(0)),
            msg_events,
            budget,
        });
        watch_budget(&shared);
        let peer = Peer { shared };

        let mut routes = Vec::with_capacity(lanes.len());
        let mut rws = Vec::with_capacity(lanes.len());
        for lane in lanes {
            routes.push(Route {
                cap: lane.cap.clone(),
                inbox: lane.inbox.clone(),
                queued_bytes: lane.queued_bytes.clone(),
                limits: lane.proto.inbound_limits,
                counters: lane.counters.clone(),
            });
            let rw = ProtoRw::new(
                peer.clone(),
                lane.cap,
                lane.inbox,
                lane.queued_bytes,
                lane.counters,
            );
            rws.push((lane.proto, rw));
        }

        let span = info_span!(
            "peer",
            id = %hex::encode(&peer.shared.info.id.0[..8]),
            dir = ?peer.shared.info.direction
        );
        // Boxed: a reader moved through two async fns would otherwise be stored twice in each
        // of their futures (argument and local), ~3 KiB apiece for every idle peer.
        let reader = Box::new(conn.reader);
        tokio::spawn(supervise(peer.clone(), reader, routes, rws).instrument(span));
        Ok(peer)
    }
}

/// One matched protocol while the peer is being built: its queue and byte count, shared by
/// the read loop's route and the protocol's handle.
struct Lane {
    cap: SharedCapability,
    proto: Protocol,
    counters: Arc<ProtoCounters>,
    inbox: Arc<Inbox>,
    queued_bytes: Arc<AtomicUsize>,
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
    reader: Box<ConnReader>,
    routes: Vec<Route>,
    rws: Vec<(Protocol, ProtoRw)>,
) {
    let shared = peer.shared.clone();
    let (ping_tx, ping_rx) = mpsc::channel::<()>(1);
    let pong_seen = Arc::new(Notify::new());

    let read_task = tokio::spawn(
        read_loop(shared.clone(), reader, routes, ping_tx, pong_seen.clone()).in_current_span(),
    );
    let mut liveness = Liveness::new(&shared, ping_rx, pong_seen);
    // Should this task unwind anyway, the guard still ends the peer's read loop and
    // publishes the end (the protocol tasks end when the JoinSet below is dropped).
    let guard = SuperviseGuard {
        shared: shared.clone(),
        read_task: read_task.abort_handle(),
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

    // Flush what protocols queue, and keep the peer alive (pings, pongs), until the first
    // failure, or a protocol ending, which also closes. A flush happens once per burst of
    // writes, so its branch leaves the others' futures in place (no timers re-armed).
    let closing = shared.closing.clone();
    let mut closing = std::pin::pin!(closing.cancelled());
    'alive: loop {
        let mut step = std::pin::pin!(liveness.step(&shared));
        loop {
            tokio::select! {
                biased;
                _ = closing.as_mut() => break 'alive,
                _ = shared.flush_wanted.notified() => {
                    if !shared.flush().await {
                        break 'alive;
                    }
                }
                // A protocol task that panicked never called close(): a subprotocol error.
                Some(Err(e)) = protos.join_next() => {
                    shared.close(DisconnectReason::SubprotocolError, false, format!("protocol task failed: {e}"));
                    break 'alive;
                }
                alive = step.as_mut() => if alive { break } else { break 'alive },
            }
        }
    }
    let reason = shared.close_reason().unwrap_or(CloseReason {
        reason: DisconnectReason::TcpSubsystemError,
        remote: false,
        detail: "closed".into(),
    });

    // Stop reading: the read loop's exit closes the protocol queues and gives what they
    // hold back to the budget (protocols waiting to read were woken by `close`).
    read_task.abort();
    let _ = read_task.await;

    // Tell the remote why, unless it told us or the link itself is broken.
    let send = !reason.remote && reason.reason != DisconnectReason::TcpSubsystemError;
    // Each wait below arms its timer only if it has to wait (`within`): a peer's end is on
    // the path of every short-lived connection.
    if let Ok(mut writer) = within(
        crate::session::DISCONNECT_WRITE_TIMEOUT,
        shared.writer.lock(),
    )
    .await
    {
        if send {
            send_disconnect(&mut writer, reason.reason).await;
        }
        let _ = within(Duration::from_secs(1), writer.shutdown()).await;
    }

    let grace = shared.config.protocol_grace;
    if within(grace, async { while protos.join_next().await.is_some() {} })
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
    shared.finish(reason);
    drop(guard);
}

/// Ends a peer whose supervisor unwinds: aborts its read loop, records a
/// subprotocol error (0x10) and publishes the end so [`Peer::closed`] returns and the
/// server frees the slot. A no-op after a normal end.
struct SuperviseGuard {
    shared: Arc<Shared>,
    read_task: tokio::task::AbortHandle,
}

impl Drop for SuperviseGuard {
    fn drop(&mut self) {
        if self.shared.done.borrow().is_some() {
            return;
        }
        self.read_task.abort();
        self.shared.close(
            DisconnectReason::SubprotocolError,
            false,
            "peer supervisor failed",
        );
        if let Some(reason) = self.shared.close_reason() {
            self.shared.finish(reason);
        }
    }
}
