//! Where discovery starts: bootnodes given as enode URLs or node records.
//!
//! Both discoveries take the same list. Discovery v4 can use either form. Discovery v5
//! needs the node's signed record (its handshake and table are built on records), so it
//! uses `enr:` bootnodes and skips enode URLs with a warning.

use std::str::FromStr;

use super::v4::packet::Endpoint;
use super::v4::table::Node;
use super::v4::DiscoveryError;
use crate::node::Enode;
use crate::record::NodeRecord;

/// A node to start from: an enode URL or a node record.
#[derive(Debug, Clone)]
pub enum Bootnode {
    /// `enode://<id>@<ip>:<tcp>[?discport=<udp>]`.
    Enode(Enode),
    /// `enr:<base64>`; must carry an IP and a UDP port.
    Record(NodeRecord),
}

impl Bootnode {
    /// The node as the table keeps it.
    pub fn node(&self) -> Result<Node, DiscoveryError> {
        match self {
            Bootnode::Enode(e) => Ok(Node {
                id: e.id,
                endpoint: Endpoint {
                    ip: e.ip,
                    udp_port: e.udp_port,
                    tcp_port: e.tcp_port,
                },
            }),
            Bootnode::Record(r) => {
                let udp = r.udp_addr().ok_or_else(|| {
                    DiscoveryError::BadBootnode("record has no UDP address".into())
                })?;
                Ok(Node {
                    id: r.node_id()?,
                    endpoint: Endpoint {
                        ip: udp.ip(),
                        udp_port: udp.port(),
                        tcp_port: r.tcp_addr().map_or(0, |a| a.port()),
                    },
                })
            }
        }
    }
}

impl FromStr for Bootnode {
    type Err = DiscoveryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.starts_with("enr:") {
            Ok(Bootnode::Record(s.parse()?))
        } else {
            s.parse::<Enode>()
                .map(Bootnode::Enode)
                .map_err(|e| DiscoveryError::BadBootnode(e.to_string()))
        }
    }
}
