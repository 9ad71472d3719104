//! Subprotocols: the [`Protocol`] definition, capability matching with
//! message-code offsets, and the error type a protocol's `run` returns.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::base::{Capability, DisconnectReason, BASE_PROTOCOL_LENGTH};
use crate::peer::{Peer, ProtoRw};

/// One message delivered to a protocol: its code with the protocol's offset removed.
#[derive(Debug, Clone)]
pub struct Msg {
    /// Code relative to the protocol (0 ..= length - 1).
    pub code: u64,
    /// Payload size in bytes (after decompression).
    pub size: usize,
    /// The payload (usually RLP); the protocol decodes it.
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
pub type RunFuture = Pin<Box<dyn Future<Output = Result<(), ProtocolError>> + Send>>;
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

/// A capability both sides share, with its code range on this link.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SharedCapability {
    /// Capability name.
    pub name: String,
    /// The highest version both sides have.
    pub version: u32,
    /// First message code of the range on the wire.
    pub offset: u64,
    /// Number of codes (from our own definition of that version).
    pub length: u64,
}

/// Match our capabilities (with their lengths) against the remote's: for every name both
/// have, the highest version both have; matched names sorted byte-wise get consecutive
/// code ranges starting right after the base protocol (0x10).
pub fn match_capabilities(
    local: &[(Capability, u64)],
    remote: &[Capability],
) -> Vec<SharedCapability> {
    let mut best: std::collections::BTreeMap<&str, (u32, u64)> = Default::default();
    for (cap, length) in local {
        if !remote.contains(cap) {
            continue;
        }
        let entry = best
            .entry(cap.name.as_str())
            .or_insert((cap.version, *length));
        if cap.version > entry.0 {
            *entry = (cap.version, *length);
        }
    }
    // BTreeMap<&str> iterates in byte order, as go-ethereum's strings.Compare sorts.
    let mut offset = BASE_PROTOCOL_LENGTH;
    best.into_iter()
        .map(|(name, (version, length))| {
            let shared = SharedCapability {
                name: name.to_string(),
                version,
                offset,
                length,
            };
            offset = offset.saturating_add(length);
            shared
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(name: &str, version: u32) -> Capability {
        Capability {
            name: name.into(),
            version,
        }
    }

    fn shared(name: &str, version: u32, offset: u64, length: u64) -> SharedCapability {
        SharedCapability {
            name: name.into(),
            version,
            offset,
            length,
        }
    }

    // The go-ethereum TestMatchProtocols matrix, re-expressed.
    #[test]
    fn no_remote_no_local_no_mutual() {
        assert!(match_capabilities(&[(cap("a", 1), 1)], &[]).is_empty());
        assert!(match_capabilities(&[], &[cap("a", 1)]).is_empty());
        assert!(match_capabilities(&[(cap("a", 1), 1)], &[cap("b", 1)]).is_empty());
    }

    #[test]
    fn partial_overlap() {
        let local = [(cap("a", 1), 1), (cap("b", 2), 2)];
        let remote = [cap("a", 1), cap("c", 3)];
        assert_eq!(
            match_capabilities(&local, &remote),
            vec![shared("a", 1, 16, 1)]
        );
    }

    #[test]
    fn alphabetical_order() {
        let local = [
            (cap("aa", 1), 1),
            (cap("ab", 1), 1),
            (cap("ba", 1), 1),
            (cap("bb", 1), 1),
        ];
        let remote = [cap("bb", 1), cap("ba", 1), cap("ab", 1), cap("aa", 1)];
        let got = match_capabilities(&local, &remote);
        assert_eq!(
            got,
            vec![
                shared("aa", 1, 16, 1),
                shared("ab", 1, 17, 1),
                shared("ba", 1, 18, 1),
                shared("bb", 1, 19, 1)
            ]
        );
    }

    #[test]
    fn no_mutual_version() {
        assert!(match_capabilities(&[(cap("a", 1), 1)], &[cap("a", 2)]).is_empty());
    }

    #[test]
    fn multiple_versions_single_common() {
        let local = [(cap("a", 1), 1), (cap("a", 2), 2)];
        assert_eq!(
            match_capabilities(&local, &[cap("a", 2)]),
            vec![shared("a", 2, 16, 2)]
        );
    }

    #[test]
    fn multiple_common_highest_wins_unordered() {
        let local = [(cap("a", 3), 3), (cap("a", 1), 1), (cap("a", 2), 2)];
        let remote = [cap("a", 2), cap("a", 3), cap("a", 1)];
        assert_eq!(
            match_capabilities(&local, &remote),
            vec![shared("a", 3, 16, 3)]
        );
    }

    #[test]
    fn versions_override_lengths() {
        let local = [
            (cap("", 1), 1),
            (cap("", 2), 2),
            (cap("", 3), 3),
            (cap("a", 1), 1),
        ];
        let remote = [cap("", 1), cap("", 2), cap("", 3), cap("a", 1)];
        assert_eq!(
            match_capabilities(&local, &remote),
            vec![shared("", 3, 16, 3), shared("a", 1, 19, 1)]
        );
    }

    #[test]
    fn byte_order_not_case_folded() {
        let local = [(cap("B", 1), 2), (cap("a", 1), 2)];
        let remote = [cap("a", 1), cap("B", 1)];
        let got = match_capabilities(&local, &remote);
        assert_eq!(got[0].name, "B");
        assert_eq!(got[1].offset, 18);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn caps() -> impl Strategy<Value = Vec<(Capability, u64)>> {
            proptest::collection::vec(("[a-d]{1,2}", 1u32..4, 1u64..20), 0..10).prop_map(|v| {
                v.into_iter()
                    .map(|(n, ver, len)| (cap(&n, ver), len))
                    .collect()
            })
        }

        proptest! {
            #[test]
            fn ranges_are_consecutive_sorted_and_mutual(local in caps(), remote in caps()) {
                let remote: Vec<Capability> = remote.into_iter().map(|(c, _)| c).collect();
                let got = match_capabilities(&local, &remote);
                let mut next = BASE_PROTOCOL_LENGTH;
                for pair in got.windows(2) {
                    prop_assert!(pair[0].name < pair[1].name);
                }
                for s in &got {
                    prop_assert_eq!(s.offset, next);
                    next += s.length;
                    let c = cap(&s.name, s.version);
                    prop_assert!(remote.contains(&c));
                    prop_assert!(local.iter().any(|(l, len)| *l == c && *len == s.length));
                    // No higher version is mutual.
                    prop_assert!(!local.iter().any(|(l, _)| l.name == s.name && l.version > s.version && remote.contains(l)));
                }
                // Every mutual name is matched.
                for (l, _) in &local {
                    if remote.contains(l) {
                        prop_assert!(got.iter().any(|s| s.name == l.name));
                    }
                }
            }
        }
    }
}
