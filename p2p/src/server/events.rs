//! What the server tells its users: peer events and a description of the node.

use std::net::SocketAddr;

use serde::Serialize;

use crate::node::NodeId;
use crate::peer::{CloseReason, Direction, MessageEvent};

/// What happened to a peer.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PeerEvent {
    /// A peer was admitted and its protocols started.
    Added {
        /// Node id (serialized as 128 hex characters).
        id: NodeId,
        /// Remote address.
        addr: Option<SocketAddr>,
        /// Who dialed.
        direction: Direction,
        /// Protocols running ("name/version").
        protocols: Vec<String>,
    },
    /// A peer ended.
    Dropped {
        /// Node id (serialized as 128 hex characters).
        id: NodeId,
        /// Who ended it and with which disconnect reason.
        reason: CloseReason,
    },
    /// Discovery found a node worth dialing.
    Discovered {
        /// Node id (serialized as 128 hex characters).
        id: NodeId,
        /// Its TCP address.
        addr: SocketAddr,
    },
    /// A dial of a discovered node failed.
    DialFailed {
        /// Node id (serialized as 128 hex characters).
        id: NodeId,
        /// Why (the error's short kind: `connect`, `handshake`, `too_many_peers`…).
        reason: String,
    },
    /// A message was sent or received (only when message events are enabled).
    Message(MessageEvent),
}

/// A serializable description of this node (go-ethereum's NodeInfo).
#[derive(Debug, Clone, Serialize)]
pub struct NodeInfo {
    /// Node id (serialized as 128 hex characters).
    pub id: NodeId,
    /// Client id.
    pub client_id: String,
    /// Enode URL, when listening.
    pub enode: Option<String>,
    /// Bound address, when listening.
    pub listen_addr: Option<SocketAddr>,
    /// The NAT method (`none`, `extip:IP`, `upnp`, `pmp`, `any`).
    pub nat: String,
    /// The external endpoint a NAT method gave (the enode shows it too), once known.
    pub external: Option<crate::nat::External>,
    /// Peers connected now.
    pub peers: usize,
    /// Each protocol's node-info hook ("name/version" → value).
    pub protocols: std::collections::BTreeMap<String, serde_json::Value>,
}
