//! How to run a [`Discv5`](super::Discv5) service.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::base::Capability;
use crate::discover::Bootnode;
use crate::node::NodeKey;

/// Limits of discv5's packet filter, which screens packets nobody asked for (requests and
/// handshakes from unknown senders) before they are decrypted.
///
/// A source that exceeds its rate, or an IP that sends with more than
/// [`max_nodes_per_ip`](Self::max_nodes_per_ip) node ids, is banned for
/// [`ban_duration`](Self::ban_duration). The defaults are generous enough for a busy node
/// and still cap what one source can make us decrypt and answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketLimits {
    /// Unsolicited packets accepted per second from everyone together.
    pub total_per_sec: u64,
    /// Unsolicited packets accepted per second from one IP.
    pub per_ip_per_sec: u64,
    /// Unsolicited packets accepted per second from one node id.
    pub per_node_per_sec: u64,
    /// Most node ids sending from one IP before the IP is banned.
    pub max_nodes_per_ip: usize,
    /// How long a ban lasts.
    pub ban_duration: Duration,
}

impl Default for PacketLimits {
    fn default() -> Self {
        PacketLimits {
            total_per_sec: 200,
            per_ip_per_sec: 40,
            per_node_per_sec: 30,
            max_nodes_per_ip: 10,
            ban_duration: Duration::from_secs(60),
        }
    }
}

/// How to run a [`Discv5`](super::Discv5) service.
#[derive(Debug, Clone)]
pub struct Discv5Config {
    /// Our node key (the discovery identity is the RLPx identity).
    pub key: NodeKey,
    /// Where to bind the UDP socket (port 0 picks one; the record names the bound port).
    pub bind: SocketAddr,
    /// The IP to announce; defaults to the bound IP unless that is unspecified.
    pub advertised_ip: Option<IpAddr>,
    /// Our TCP (RLPx) port, announced in the record; 0 when we accept no connections.
    pub tcp_port: u16,
    /// Capabilities announced in our record's `braid` entry.
    pub capabilities: Vec<Capability>,
    /// Nodes added to the table at start; only records are usable (see the module docs).
    pub bootnodes: Vec<Bootnode>,
    /// How long to wait for a reply to one request (discv5 retries once).
    pub request_timeout: Duration,
    /// How long a lookup asks one node before moving on.
    pub query_peer_timeout: Duration,
    /// Longest a lookup runs.
    pub query_timeout: Duration,
    /// Pause after the first lookup. It doubles after each lookup up to
    /// [`lookup_interval`](Self::lookup_interval), and starts over when the table has
    /// emptied: a new node fills its table quickly, a settled one looks up rarely.
    pub lookup_interval_start: Duration,
    /// Longest pause between the random lookups that keep the table filled; one lookup
    /// runs at a time.
    pub lookup_interval: Duration,
    /// How often table entries are pinged to check they are alive.
    pub ping_interval: Duration,
    /// Most sessions kept; the least recently used is dropped first.
    pub session_cache_capacity: usize,
    /// Capacity of the candidate channel; when full, new candidates are dropped.
    pub candidates_capacity: usize,
    /// The packet filter's limits; `None` turns the filter off.
    pub packet_limits: Option<PacketLimits>,
}

impl Discv5Config {
    /// Defaults around `key` and the address to bind.
    pub fn new(key: NodeKey, bind: SocketAddr) -> Self {
        Discv5Config {
            key,
            bind,
            advertised_ip: None,
            tcp_port: 0,
            capabilities: Vec::new(),
            bootnodes: Vec::new(),
            request_timeout: Duration::from_secs(1),
            query_peer_timeout: Duration::from_secs(2),
            query_timeout: Duration::from_secs(30),
            lookup_interval_start: Duration::from_secs(1),
            lookup_interval: Duration::from_secs(30),
            ping_interval: Duration::from_secs(300),
            session_cache_capacity: 1000,
            candidates_capacity: 256,
            packet_limits: Some(PacketLimits::default()),
        }
    }
}
