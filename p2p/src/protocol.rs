//! Subprotocols: the [`Protocol`] definition and the error type a protocol's `run`
//! returns. Capability matching ([`match_capabilities`], [`SharedCapability`]) lives in the
//! crate's `capability` module, below the peer that uses it, and is re-exported here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::base::{Capability, DisconnectReason};
use crate::peer::{Peer, ProtoRw};

pub use crate::capability::{match_capabilities, SharedCapability};

/// One message delivered to a protocol: its code with the protocol's offset removed.
#[derive(Debug, Clone)]
pub struct Msg {
    /// Code relative to the protocol (0 ..= length - 1).
    pub code: u64,
    /// The payload (usually RLP), decompressed; the protocol decodes it. Its length is
    /// what the message holds of the peer's inbound budget while it is queued.
    pub payload: Bytes,
    /// When the link read it.
    pub received_at: Instant,
}

/// What a protocol's `run` (or a [`ProtoRw`] call) fails with.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The peer is closing; no more messages will come or go.
    #[error("peer closed")]
    PeerClosed,
    /// A write used a code outside the protocol's range.
    #[error("message code {code} out of range (protocol length {length})")]
    InvalidCode {
        /// The offending code.
        code: u64,
        /// The protocol's length.
        length: u64,
    },
    /// End the peer with a specific disconnect reason.
    #[error("{reason}: {message}")]
    Disconnect {
        /// The reason sent to the remote.
        reason: DisconnectReason,
        /// What went wrong, for logs.
        message: String,
    },
    /// Any other failure (a decode error, an application error): disconnect 0x10.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl ProtocolError {
    /// Wrap any error as a subprotocol error.
    pub fn other(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ProtocolError::Other(e.into())
    }

    /// Ask for a disconnect with `reason`.
    pub fn disconnect(reason: DisconnectReason, message: impl Into<String>) -> Self {
        ProtocolError::Disconnect {
            reason,
            message: message.into(),
        }
    }

    /// The disconnect reason this error maps to.
    pub fn reason(&self) -> DisconnectReason {
        match self {
            ProtocolError::Disconnect { reason, .. } => *reason,
            ProtocolError::InvalidCode { .. } => DisconnectReason::ProtocolBreach,
            ProtocolError::PeerClosed | ProtocolError::Other(_) => {
                DisconnectReason::SubprotocolError
            }
        }
    }
}

impl From<rlp::DecoderError> for ProtocolError {
    fn from(e: rlp::DecoderError) -> Self {
        ProtocolError::Other(Box::new(e))
    }
}

/// Per-protocol limits on what may wait, unread, in its inbound queue. Going past either
/// is a protocol breach by that peer (disconnect 0x02): a slow protocol never stalls the
/// peer's read loop, and a flooding peer never grows our memory past this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundLimits {
    /// Most messages waiting.
    pub max_messages: usize,
    /// Most payload bytes waiting.
    pub max_bytes: usize,
}

impl Default for InboundLimits {
    fn default() -> Self {
        InboundLimits {
            max_messages: 1024,
            max_bytes: 32 * 1024 * 1024,
        }
    }
}

/// The boxed future a protocol's `run` returns.
pub(crate) type RunFuture = Pin<Box<dyn Future<Output = Result<(), ProtocolError>> + Send>>;
type RunFn = dyn Fn(Peer, ProtoRw) -> RunFuture + Send + Sync;
type NodeInfoFn = dyn Fn() -> serde_json::Value + Send + Sync;
type PeerInfoFn = dyn Fn(&Peer) -> serde_json::Value + Send + Sync;

/// A subprotocol: `name`/`version` as advertised in Hello, `length` message codes, and
/// `run`, started as its own task for every peer that shares the capability.
///
/// `run` returning `Ok` ends the peer ("protocol returned", disconnect 0x08 as in
/// go-ethereum); returning an error ends it with [`ProtocolError::reason`].
#[derive(Clone)]
pub struct Protocol {
    /// Capability name (case-sensitive; keep it to 8 ASCII characters).
    pub name: String,
    /// Capability version.
    pub version: u32,
    /// How many message codes the protocol uses.
    pub length: u64,
    run: Arc<RunFn>,
    node_info: Option<Arc<NodeInfoFn>>,
    peer_info: Option<Arc<PeerInfoFn>>,
    /// Inbound queue limits for this protocol on each peer.
    pub inbound_limits: InboundLimits,
}

impl std::fmt::Debug for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protocol")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

impl Protocol {
    /// Define a protocol from its `run` function.
    pub fn new<F, Fut>(name: impl Into<String>, version: u32, length: u64, run: F) -> Self
    where
        F: Fn(Peer, ProtoRw) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ProtocolError>> + Send + 'static,
    {
        Protocol {
            name: name.into(),
            version,
            length,
            run: Arc::new(move |peer, rw| Box::pin(run(peer, rw))),
            node_info: None,
            peer_info: None,
            inbound_limits: InboundLimits::default(),
        }
    }

    /// Attach a node-info hook: what this node runs, for [`crate::server::NodeInfo`].
    pub fn with_node_info(
        mut self,
        f: impl Fn() -> serde_json::Value + Send + Sync + 'static,
    ) -> Self {
        self.node_info = Some(Arc::new(f));
        self
    }

    /// Attach a peer-info hook: what this protocol knows of one peer.
    pub fn with_peer_info(
        mut self,
        f: impl Fn(&Peer) -> serde_json::Value + Send + Sync + 'static,
    ) -> Self {
        self.peer_info = Some(Arc::new(f));
        self
    }

    /// Set this protocol's inbound queue limits.
    pub fn with_inbound_limits(mut self, limits: InboundLimits) -> Self {
        self.inbound_limits = limits;
        self
    }

    /// The capability this protocol advertises.
    pub fn capability(&self) -> Capability {
        Capability {
            name: self.name.clone(),
            version: self.version,
        }
    }

    pub(crate) fn start(&self, peer: Peer, rw: ProtoRw) -> RunFuture {
        (self.run)(peer, rw)
    }

    /// The node-info hook's value, if the protocol has one.
    pub fn node_info(&self) -> Option<serde_json::Value> {
        self.node_info.as_ref().map(|f| f())
    }

    /// The peer-info hook's value for `peer`, if the protocol has one.
    pub fn peer_info(&self, peer: &Peer) -> Option<serde_json::Value> {
        self.peer_info.as_ref().map(|f| f(peer))
    }
}
