//! The read loop: reads every message of the link, answers the base protocol and routes
//! each subprotocol message by code to its protocol's bounded queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tracing::debug;

use super::inbox::PushError;
use super::liveness::PingBucket;
use super::metrics::ProtoCounters;
use super::{rw, Peer, Shared};
use crate::base::{DisconnectReason, BASE_PROTOCOL_LENGTH, HELLO, PING, PONG};
use crate::budget::Charge;
use crate::capability::SharedCapability;
use crate::conn::{ConnReader, RawMessage};
use crate::deadline::within;
use crate::protocol::{InboundLimits, Msg};

/// Where one matched protocol's messages go: its code range and its bounded queue.
pub(super) struct Route {
    pub(super) cap: SharedCapability,
    pub(super) inbox: rw::Inbox,
    pub(super) queued_bytes: Arc<AtomicUsize>,
    pub(super) limits: InboundLimits,
    pub(super) counters: Arc<ProtoCounters>,
}

/// Frames at least this large (frame-data bytes) give the runtime a turn once read.
const YIELD_AFTER: usize = 16 * 1024;

/// Reads until the link fails, the remote disconnects or breaks the protocol; records
/// why in `shared` and returns.
pub(super) async fn read_loop(
    shared: Arc<Shared>,
    mut reader: Box<ConnReader>,
    routes: Vec<Route>,
    ping_tx: mpsc::Sender<()>,
    pong_seen: Arc<Notify>,
) {
    let peer = Peer {
        shared: shared.clone(),
    };
    let routes = DrainOnExit { peer, routes };
    let mut bucket = PingBucket::new(shared.config.ping_burst, shared.config.ping_refill);
    loop {
        let Some(msg) = next_message(&shared, &mut reader).await else {
            return;
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
        let handled = match msg.code {
            HELLO => Err("second hello".to_string()),
            PING if !bucket.take(msg.received_at) => Err("ping flood".to_string()),
            PING => {
                // A full channel means a pong is already due: one answer covers both.
                let _ = ping_tx.try_send(());
                Ok(())
            }
            PONG => {
                pong_seen.notify_one();
                Ok(())
            }
            code if code < BASE_PROTOCOL_LENGTH => {
                debug!(code, "ignoring reserved base protocol code");
                Ok(())
            }
            _ => route(&shared, &routes.routes, msg, charge).await,
        };
        if let Err(detail) = handled {
            return shared.close(DisconnectReason::ProtocolBreach, false, detail);
        }
    }
}

/// The next message, or `None` once the peer is closing because the read failed (the
/// link's own reason) or the remote fell silent for `read_timeout` (0x0b).
async fn next_message(shared: &Shared, reader: &mut ConnReader) -> Option<RawMessage> {
    match within(shared.config.read_timeout, reader.read()).await {
        Ok(Ok(msg)) => Some(msg),
        Ok(Err(e)) => {
            shared.close(e.disconnect_reason(), false, format!("read failed: {e}"));
            None
        }
        Err(_) => {
            shared.close(DisconnectReason::PingTimeout, false, "read timed out");
            None
        }
    }
}

/// Queue a subprotocol message for its protocol, within the protocol's and the peer's
/// inbound budgets. `Err` says what the remote broke (a protocol breach).
async fn route(
    shared: &Shared,
    routes: &[Route],
    msg: RawMessage,
    charge: Charge,
) -> Result<(), String> {
    let code = msg.code;
    let Some(route) = routes
        .iter()
        .find(|r| code >= r.cap.offset && code - r.cap.offset < r.cap.length)
    else {
        return Err(format!("message code {code:#x} outside every protocol"));
    };
    let rel = code - route.cap.offset;
    let size = msg.payload.len();
    debug_assert_eq!(size, msg.charged, "a queued payload is charged exactly");
    route.counters.ingress(rel, msg.wire_size);
    shared.emit(&route.cap.name, rel, msg.wire_size, true);
    let queued = route.queued_bytes.load(Ordering::Acquire);
    let total = shared.total_queued.load(Ordering::Acquire);
    if queued + size > route.limits.max_bytes || total + size > shared.config.inbound_budget_bytes {
        return Err(format!(
            "{} inbound budget exceeded ({} bytes queued)",
            route.cap.name, queued
        ));
    }
    route.queued_bytes.fetch_add(size, Ordering::AcqRel);
    shared.total_queued.fetch_add(size, Ordering::AcqRel);
    let delivered = Msg {
        code: rel,
        payload: msg.payload,
        received_at: msg.received_at,
    };
    match route.inbox.push(delivered) {
        Ok(()) => {
            // The receiving ProtoRw releases it when read or dropped.
            charge.keep();
            make_way(route).await;
            Ok(())
        }
        Err(PushError::Full) => Err(format!(
            "{} inbound queue full ({} messages)",
            route.cap.name, route.limits.max_messages
        )),
        Err(PushError::Closed) => {
            // The protocol dropped its reader: it has chosen not to read, so its messages
            // are discarded (and their bytes released).
            route.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            shared.total_queued.fetch_sub(size, Ordering::AcqRel);
            Ok(())
        }
    }
}

/// When the protocol falls far behind, let it run: on a busy runtime an eager read loop
/// could otherwise fill its queue (and breach its budget) without ever giving it a turn.
async fn make_way(route: &Route) {
    if route.inbox.over_half_full()
        || route.queued_bytes.load(Ordering::Acquire) > route.limits.max_bytes / 2
    {
        tokio::task::yield_now().await;
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
