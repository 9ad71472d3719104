//! A running peer's timers and limits.

use std::time::Duration;

use crate::budget::MemoryBudget;

/// Timers and limits of a running peer. Defaults follow go-ethereum (ping 15 s, read 30 s,
/// write 20 s) and reth (pong timeout 15 s, inbound pings 5 burst then 1/s, 32 MiB budget).
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// How often we ping.
    pub ping_interval: Duration,
    /// How long a pong may take before disconnect 0x0b.
    pub pong_timeout: Duration,
    /// Longest silence from the remote before we give up on it (disconnect 0x0b).
    pub read_timeout: Duration,
    /// Longest time one message may take to write.
    pub write_timeout: Duration,
    /// Inbound pings allowed at once.
    pub ping_burst: u32,
    /// One more inbound ping allowed per this interval.
    pub ping_refill: Duration,
    /// All protocols' unread inbound bytes together, per peer.
    pub inbound_budget_bytes: usize,
    /// How long protocols get to return once the peer is closing, before they are aborted.
    pub protocol_grace: Duration,
    /// The node-wide memory budget this peer's buffers and queues are charged to (a
    /// [`crate::server::Server`] puts its own here). `None`: the peer is only bounded by
    /// its own limits.
    pub memory_budget: Option<MemoryBudget>,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            ping_interval: Duration::from_secs(15),
            pong_timeout: Duration::from_secs(15),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(20),
            ping_burst: 5,
            ping_refill: Duration::from_secs(1),
            inbound_budget_bytes: 32 * 1024 * 1024,
            protocol_grace: Duration::from_secs(2),
            memory_budget: None,
        }
    }
}
