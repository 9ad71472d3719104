//! Server configuration with go-ethereum's defaults.

use std::net::SocketAddr;
use std::time::Duration;

use super::limits::IpNet;
use crate::discover::Bootnode;
use crate::nat::Nat;
use crate::node::{Enode, NodeId, NodeKey};
use crate::peer::PeerConfig;
use crate::protocol::Protocol;

/// Everything a [`super::Server`] needs.
#[derive(Clone)]
pub struct ServerConfig {
    /// The node key (identity); wiped from memory when the configuration is dropped.
    pub key: NodeKey,
    /// Where to listen; `None` for a dial-only node.
    pub listen_addr: Option<SocketAddr>,
    /// Client id sent in Hello.
    pub client_id: String,
    /// Subprotocols offered to every peer.
    pub protocols: Vec<Protocol>,
    /// Most peers at once (trusted peers are exempt). go-ethereum's node default: 50.
    pub max_peers: usize,
    /// One in `dial_ratio` peer slots is kept for outbound connections (default 3); the rest
    /// take inbound connections. 0 means no reservation.
    pub dial_ratio: usize,
    /// Most connections in their handshakes at once.
    pub max_pending: usize,
    /// Peers we always keep dialing, with exponential backoff.
    pub static_peers: Vec<Enode>,
    /// Peers admitted past every limit.
    pub trusted_peers: Vec<NodeId>,
    /// Minimum time between inbound connections from one source (an IPv4 address or an
    /// IPv6 /64); zero disables. Loopback is exempt while `exempt_loopback` is set.
    pub inbound_throttle: Duration,
    /// Most concurrent inbound peers (past the encryption handshake: pending and running)
    /// from one network group, an IPv4 /24 or an IPv6 /64, so one network cannot take every
    /// inbound slot. Excess connections are refused with "too many peers" (0x04) at the
    /// admission checkpoint. Trusted peers are exempt and not counted; 0 disables the cap.
    /// Default 8: with the default 50 peers (34 inbound slots) at least five networks share
    /// the inbound slots.
    pub max_inbound_per_subnet: usize,
    /// Exempt loopback connections (127.0.0.0/8, ::1) from the inbound throttle and the
    /// per-subnet cap. Default true: loopback peers run on this machine under the operator's
    /// control, and local tools and tests connect many times from 127.0.0.1. Turn it off
    /// when untrusted traffic arrives through a local proxy (Tor, a reverse proxy), so that
    /// it is throttled and capped like any other network (all of it then counts as one
    /// /24, 127.0.0.0/24).
    pub exempt_loopback: bool,
    /// If set, only these networks may connect or be dialed.
    pub allow_list: Option<Vec<IpNet>>,
    /// Encryption handshake deadline.
    pub handshake_timeout: Duration,
    /// Hello exchange deadline.
    pub hello_timeout: Duration,
    /// TCP connect deadline for dials.
    pub dial_timeout: Duration,
    /// First redial delay for static peers (doubles per failure).
    pub static_backoff_min: Duration,
    /// Longest redial delay for static peers.
    pub static_backoff_max: Duration,
    /// Per-peer timers and limits.
    pub peer: PeerConfig,
    /// Node-wide budget for bytes held on peers' behalf (frame buffers, decompression,
    /// inbound queues), trusted peers included. When full, the peer holding the most is
    /// disconnected. Default 256 MiB.
    pub memory_budget_bytes: usize,
    /// Publish a message event for every message sent and received.
    pub enable_msg_events: bool,
    /// Capacity of the event stream; slow subscribers miss events past it.
    pub event_capacity: usize,
    /// Listen port announced in Hello (legacy field); defaults to the bound port.
    pub announce_port: Option<u16>,
    /// Node discovery, which feeds the dial scheduler. Needs a listen address.
    pub discovery: Discovery,
    /// Nodes discovery starts from. discv5 uses only those given as records (`enr:`).
    pub bootnodes: Vec<Bootnode>,
    /// UDP port for discovery v4, bound on the listen IP; defaults to the bound TCP port.
    pub udp_port: Option<u16>,
    /// UDP port for discovery v5, bound on the listen IP. Defaults to the bound TCP port
    /// with [`Discovery::V5`], and to discv4's UDP port + 1 with [`Discovery::Both`]: the
    /// two run on separate sockets.
    pub udp_port_v5: Option<u16>,
    /// Dial only discovered nodes whose record says they speak one of our protocols
    /// (nodes without a record are skipped then).
    pub dial_only_shared_caps: bool,
    /// Most dials from discovery running at once (go-ethereum: 50 / 3).
    pub max_dials_in_flight: usize,
    /// Most outbound peers from discovery per IPv4 /24 or IPv6 /64 (loopback exempt while
    /// `exempt_loopback` is set); 0 disables.
    pub max_dialed_per_subnet: usize,
    /// NAT traversal: how the node learns the address others must dial and opens its
    /// ports there (go-ethereum's `--nat`). Default [`Nat::None`].
    pub nat: Nat,
    /// Lease asked for each NAT port mapping; renewed at four fifths of what the gateway
    /// grants. Default 10 minutes.
    pub nat_lease: Duration,
}

/// Which node discovery the server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Discovery {
    /// None: only static peers and explicit dials.
    #[default]
    Off,
    /// Discovery v4 (UDP), with records fetched for capability filtering. It runs on the
    /// server's transport, simulated networks included.
    V4,
    /// Discovery v5 (UDP, sigp's `discv5`); every node it yields comes with its record.
    /// The crate opens its own socket, so it runs only on the host's network.
    V5,
    /// Both, each on its own UDP port, feeding one dial scheduler (nodes found by both are
    /// offered once).
    Both,
}

impl Discovery {
    /// Whether discovery v4 runs.
    pub fn v4(self) -> bool {
        matches!(self, Discovery::V4 | Discovery::Both)
    }

    /// Whether discovery v5 runs.
    pub fn v5(self) -> bool {
        matches!(self, Discovery::V5 | Discovery::Both)
    }
}

impl ServerConfig {
    /// A configuration with defaults, listening on `listen_addr` (`None`: dial only).
    /// `key` is a [`NodeKey`] or a bare `SecretKey`. Every other setting is a public field:
    /// set it on the value this returns.
    pub fn new(key: impl Into<NodeKey>, listen_addr: Option<SocketAddr>) -> Self {
        ServerConfig {
            key: key.into(),
            listen_addr,
            client_id: format!("braid/v{}", env!("CARGO_PKG_VERSION")),
            protocols: Vec::new(),
            max_peers: 50,
            dial_ratio: 3,
            max_pending: 50,
            static_peers: Vec::new(),
            trusted_peers: Vec::new(),
            inbound_throttle: Duration::from_secs(30),
            max_inbound_per_subnet: 8,
            exempt_loopback: true,
            allow_list: None,
            handshake_timeout: crate::conn::DEFAULT_HANDSHAKE_TIMEOUT,
            hello_timeout: crate::session::DEFAULT_HELLO_TIMEOUT,
            dial_timeout: Duration::from_secs(15),
            static_backoff_min: Duration::from_secs(1),
            static_backoff_max: Duration::from_secs(300),
            peer: PeerConfig::default(),
            memory_budget_bytes: crate::budget::DEFAULT_BUDGET_BYTES,
            enable_msg_events: false,
            event_capacity: 1024,
            announce_port: None,
            discovery: Discovery::Off,
            bootnodes: Vec::new(),
            udp_port: None,
            udp_port_v5: None,
            dial_only_shared_caps: false,
            max_dials_in_flight: 16,
            max_dialed_per_subnet: 2,
            nat: Nat::None,
            nat_lease: crate::nat::DEFAULT_LEASE,
        }
    }

    /// Slots for outbound connections.
    pub fn max_dialed(&self) -> usize {
        if self.dial_ratio == 0 {
            return 0;
        }
        (self.max_peers / self.dial_ratio)
            .max(1)
            .min(self.max_peers)
    }

    /// Slots for inbound connections.
    pub fn max_inbound(&self) -> usize {
        self.max_peers - self.max_dialed()
    }
}
