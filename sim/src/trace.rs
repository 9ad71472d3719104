//! What the simulated nodes saw, in the order they saw it.
//!
//! The trace is the ordered list of (simulated time, node, event): peers added and
//! dropped, messages delivered, crashes and restarts. Nodes are named by their index and
//! peers by theirs, never by anything drawn from a random nonce, so two runs with the same
//! seed must produce equal traces.

use std::fmt;
use std::time::Duration;

/// One thing a node saw.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Event {
    /// The node's server started (first start or a restart).
    Started,
    /// The node was crashed by the simulation.
    Crashed,
    /// A peer was added; `inbound` when the peer dialed us.
    PeerAdded {
        /// The peer's node index.
        peer: usize,
        /// Whether the peer dialed us.
        inbound: bool,
    },
    /// A peer was dropped, with the reason the server gave.
    PeerDropped {
        /// The peer's node index.
        peer: usize,
        /// Why it ended (disconnect reason and side).
        reason: String,
    },
    /// A message of a flooded or relayed kind arrived for the first time.
    Delivered {
        /// The peer it came from.
        via: usize,
        /// What it was (a chat line's text, a txid…).
        what: String,
    },
    /// The node's event stream overflowed and this many events were lost (a test bug).
    Lagged(u64),
}

/// One line of the trace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Simulated time since the simulation started.
    pub at: Duration,
    /// The node that saw it.
    pub node: usize,
    /// What it saw.
    pub event: Event,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>9.3}s n{:<4} {:?}",
            self.at.as_secs_f64(),
            self.node,
            self.event
        )
    }
}

/// A 64-bit digest of a trace (FNV-1a over its text form), to print and compare.
pub fn digest(trace: &[Entry]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for entry in trace {
        for b in entry.to_string().bytes().chain([b'\n']) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Panics unless two runs' traces are equal, naming the first entry where they part (a
/// whole-trace diff of thousands of lines would bury it).
pub fn assert_replayed(first: &[Entry], second: &[Entry]) {
    if let Some(i) = (0..first.len().min(second.len())).find(|&i| first[i] != second[i]) {
        panic!(
            "same seed, different trace at entry {i}:\n  first:  {}\n  second: {}",
            first[i], second[i]
        );
    }
    assert_eq!(
        first.len(),
        second.len(),
        "same seed, traces of different length"
    );
}
