//! Per-peer state shared by the tasks, and the statistics snapshot.

use std::net::SocketAddr;
use std::time::SystemTime;

use tokio::time::Instant;

use crate::bitcoin::wire::{Hash256, NetAddress};

/// A copy of a peer's statistics (btcd `StatsSnap`, plus the negotiated version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Process-unique id, assigned when the remote's version arrives (0 before).
    pub id: u64,
    /// Remote address (`host:port`), empty if unknown.
    pub addr: String,
    /// Remote services (0 before the handshake).
    pub services: u64,
    /// When we last wrote a queued message.
    pub last_send: Option<SystemTime>,
    /// When we last received a message after the handshake.
    pub last_recv: Option<SystemTime>,
    /// Bytes written, handshake included.
    pub bytes_sent: u64,
    /// Bytes read, handshake included.
    pub bytes_recv: u64,
    /// When the transport was associated.
    pub conn_time: Option<SystemTime>,
    /// Remote clock minus ours, in whole seconds.
    pub time_offset: i64,
    /// The protocol version the remote advertised.
    pub advertised_version: u32,
    /// The negotiated protocol version (min of both).
    pub negotiated_version: u32,
    /// Remote user agent.
    pub user_agent: String,
    /// Whether the remote dialed us.
    pub inbound: bool,
    /// Height the remote announced in its version.
    pub starting_height: i32,
    /// Best known height of the remote.
    pub last_block: i32,
    /// Nonce of the outstanding ping (0 if none).
    pub last_ping_nonce: u64,
    /// When the last tracked ping was written.
    pub last_ping_time: Option<SystemTime>,
    /// Round trip of the last answered ping, in microseconds.
    pub last_ping_micros: i64,
}

/// Mutable per-peer state.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub id: u64,
    pub addr: Option<SocketAddr>,
    pub na: Option<NetAddress>,
    pub associated: bool,
    pub services: u64,
    pub user_agent: String,
    pub version_known: bool,
    pub verack_received: bool,
    pub advertised_version: u32,
    pub protocol_version: u32,
    pub last_block: i32,
    pub starting_height: i32,
    pub time_offset: i64,
    pub witness_enabled: bool,
    pub wants_headers: bool,
    pub sent_send_headers: bool,
    pub wants_addr_v2: bool,
    pub wants_wtxid_relay: bool,
    pub last_ping_nonce: u64,
    pub last_ping_instant: Option<Instant>,
    pub last_ping_time: Option<SystemTime>,
    pub last_ping_micros: i64,
    pub last_send: Option<SystemTime>,
    pub last_recv: Option<SystemTime>,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    pub time_connected: Option<SystemTime>,
    pub last_announced_block: Option<Hash256>,
    /// (begin, stop) of the previous getblocks / getheaders we sent.
    pub prev_get_blocks: Option<(Hash256, Hash256)>,
    pub prev_get_headers: Option<(Hash256, Hash256)>,
    pub close_reason: Option<super::PeerError>,
}
