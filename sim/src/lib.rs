//! Whole braid networks under turmoil, tokio-rs's deterministic network simulator.
//!
//! Every node is a real braid [`Server`](p2p::server::Server) (ECIES handshake, frames,
//! Hello, peers, static-peer redial, discovery v4) whose sockets are turmoil's simulated
//! TCP and UDP ([`SimTransport`]), so a thousand nodes run in one thread under one simulated clock,
//! with seeded latency, partitions, crashes and restarts. Everything random is drawn from
//! the seed, so a run can be replayed: the tests compare traces of two runs.
//!
//! This crate is not published; it is the harness of the tests in `tests/`.

pub mod chat;
pub mod net;
pub mod trace;
pub mod transport;

pub use net::{host, Net, NetConfig, NodeCtx, NodeState, Protocols, Shared, Wiring, PORT};
pub use trace::{assert_replayed, digest, Entry, Event};
pub use transport::{Datagrams, SimTransport};

/// The process's resident memory in bytes (Linux; `None` elsewhere).
pub fn rss_bytes() -> Option<u64> {
    p2p::testkit::process::rss_bytes()
}
