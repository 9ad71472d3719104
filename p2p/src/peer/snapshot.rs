//! A serializable view of a running peer, for the admin API and metrics.

use serde::Serialize;

use super::{Direction, Peer, ProtocolTraffic};
use crate::capability::SharedCapability;
use crate::node::NodeId;
use crate::protocol::Protocol;

impl Peer {
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
            id: self.id(),
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
    /// Node id (serialized as 128 hex characters).
    pub id: NodeId,
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
