//! A running peer: one link, the base protocol's liveness, and every matched
//! subprotocol's `run` as its own task.
//!
//! Tasks per peer: a read loop that routes each message by code to its protocol's
//! bounded queue, one task per matched protocol, and a supervisor that sends pings,
//! answers them and watches the pong deadline while it waits, and ends them all on the
//! first failure. Whoever started the peer (the server) learns of its end through a hook
//! the supervisor runs, not through a task of its own waiting for it.
//!
//! **Closing** sets a flag and wakes every protocol waiting on its queue: a read or a write
//! checks one atomic instead of polling a cancellation future, which takes a lock per call.
//!
//! **The write-start token.** Every write (protocol messages, pings, pongs, the final
//! Disconnect) goes through one per-peer async mutex around the link's writer. Holding
//! the guard *is* holding the token: exactly one message is sealed at a time, frames leave
//! in that order, the token returns once the frame is sealed (the guard drops), and waiters
//! are served in FIFO order. Sealed frames are coalesced: the supervisor writes what a
//! burst of writes queued in one write to the socket once the writer yields, and a
//! protocol answering with nothing left to read writes at once (see `token`). A write
//! error ends the peer.
//!
//! One job per module: [`PeerConfig`] (`config`), [`CloseReason`] (`close`), the token
//! (`token`), the read loop and routing (`read_loop`), pings and pongs (`liveness`),
//! starting and supervising the tasks (`supervise`), [`PeerSnapshot`] (`snapshot`), a
//! protocol's handle (`rw`) and traffic counters (`metrics`).

mod close;
mod config;
mod inbox;
mod liveness;
mod metrics;
mod read_loop;
mod rw;
mod snapshot;
mod supervise;
mod token;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::base::{Capability, DisconnectReason, Hello};
use crate::budget::Holder;
use crate::capability::SharedCapability;
use crate::conn::ConnWriter;
use crate::node::NodeId;

pub use close::CloseReason;
pub use config::PeerConfig;
pub use metrics::{CodeTraffic, ProtocolTraffic, Traffic};
pub use rw::{ProtoRw, ProtoWriter};
pub use snapshot::PeerSnapshot;

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

/// A message event (sent or received), published when message events are enabled.
#[derive(Debug, Clone, Serialize)]
pub struct MessageEvent {
    /// The peer's node id (serialized as 128 hex characters).
    pub peer: NodeId,
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

/// Everything the tasks of one peer share; private to this module, reached through
/// [`Peer`].
struct Shared {
    info: PeerInfo,
    hello: Hello,
    protocols: Vec<SharedCapability>,
    connected_since: SystemTime,
    snappy: bool,
    config: PeerConfig,
    /// The write-start token: hold the guard to write one message.
    writer: tokio::sync::Mutex<ConnWriter>,
    /// A write has queued frames the supervisor has not flushed yet.
    flush_requested: AtomicBool,
    /// Wakes the supervisor to flush.
    flush_wanted: tokio::sync::Notify,
    closing: CancellationToken,
    /// Set (before `closing` is cancelled) by the first close: a flag any task can read
    /// without the token's lock.
    closed: AtomicBool,
    /// Every protocol's inbound queue, so that closing wakes their readers.
    inboxes: Vec<rw::Inbox>,
    close_reason: OnceLock<CloseReason>,
    /// The hook to run at the end, and whether the end has come.
    end: std::sync::Mutex<End>,
    done: watch::Sender<Option<CloseReason>>,
    base_counters: ProtoCounters,
    counters: Vec<Arc<ProtoCounters>>,
    total_queued: Arc<AtomicUsize>,
    msg_events: Option<tokio::sync::broadcast::Sender<MessageEvent>>,
    /// This peer's account in the node memory budget: frame buffer, payload being
    /// decompressed, and every queued inbound message.
    budget: Holder,
}

impl Shared {
    /// Publish a message event, when message events are enabled.
    fn emit(&self, protocol: &str, code: u64, size: usize, received: bool) {
        if let Some(events) = &self.msg_events {
            let _ = events.send(MessageEvent {
                peer: self.info.id,
                protocol: protocol.to_string(),
                code,
                size,
                received,
            });
        }
    }
}

/// A hook run once a peer has ended, with the peer and why. Given the peer rather than
/// holding a handle, so the hook kept inside the peer makes no reference cycle.
type EndHook = Box<dyn FnOnce(&Peer, &CloseReason) + Send>;

/// The end of a peer as its hook sees it.
#[derive(Default)]
struct End {
    hook: Option<EndHook>,
    ended: Option<CloseReason>,
}

impl Shared {
    /// The peer has ended (all of its tasks are done): run the end hook, then publish the
    /// end, so that whoever `closed()` wakes sees the hook's work done. Only the first call
    /// counts.
    fn finish(self: &Arc<Self>, reason: CloseReason) {
        let hook = {
            let mut end = self.end.lock().unwrap_or_else(|e| e.into_inner());
            if end.ended.is_some() {
                return;
            }
            end.ended = Some(reason.clone());
            end.hook.take()
        };
        // Published when this scope ends, also if the hook panics: `closed()` must return.
        let _publish = Publish(self, Some(reason.clone()));
        if let Some(hook) = hook {
            hook(
                &Peer {
                    shared: self.clone(),
                },
                &reason,
            );
        }
    }
}

/// Publishes a peer's end when dropped.
struct Publish<'a>(&'a Shared, Option<CloseReason>);

impl Drop for Publish<'_> {
    fn drop(&mut self) {
        self.0.done.send_replace(self.1.take());
    }
}

/// A handle to a running peer. Cheap to clone; every protocol's `run` gets one.
#[derive(Clone)]
pub struct Peer {
    shared: Arc<Shared>,
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
pub enum PeerStartError {
    /// No capability in common: the remote was sent "useless peer".
    #[error("no shared capability with remote (sent useless peer)")]
    UselessPeer,
}

impl Peer {
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
        self.shared.is_closing()
    }

    /// Run `hook` once the peer has ended and all of its tasks have finished (at once if it
    /// already has), in the peer's own task and before [`Peer::closed`] returns. The server
    /// frees the peer's slot this way, without a task per peer waiting for the end.
    /// A hook set later replaces an earlier one that has not run.
    pub(crate) fn on_end(&self, hook: impl FnOnce(&Peer, &CloseReason) + Send + 'static) {
        let ended = {
            let mut end = self.shared.end.lock().unwrap_or_else(|e| e.into_inner());
            match &end.ended {
                Some(reason) => reason.clone(),
                None => {
                    end.hook = Some(Box::new(hook));
                    return;
                }
            }
        };
        hook(self, &ended);
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
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::base::DisconnectReason;
    use crate::pipe::linked_peers;
    use crate::protocol::Protocol;

    /// An end hook that panics still lets `closed()` return, with the reason.
    #[tokio::test]
    async fn a_panicking_end_hook_does_not_hide_the_end() {
        let idle = Protocol::new("idle", 1, 1, |_peer, mut rw| async move {
            loop {
                rw.read().await?;
            }
        });
        let (a, _b) = linked_peers(std::slice::from_ref(&idle), std::slice::from_ref(&idle))
            .await
            .expect("linked");
        a.on_end(|_, _| panic!("hook failed"));
        a.disconnect(DisconnectReason::ClientQuitting);
        let reason = tokio::time::timeout(Duration::from_secs(5), a.closed())
            .await
            .expect("closed() returns although the hook panicked");
        assert_eq!(reason.reason, DisconnectReason::ClientQuitting);
    }
}
