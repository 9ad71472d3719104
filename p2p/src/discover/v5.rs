//! Discovery v5 ("discv5"): the encrypted UDP node discovery of devp2p, run by sigp's
//! `discv5` crate.
//!
//! discv5 identifies nodes by their records (EIP-778): every session starts with a
//! handshake that proves the remote holds the record's key, and a node's record is
//! accepted only when its UDP address is the one its packets came from. Lookups ask
//! nodes for the records at given log-distances (`FINDNODE`/`NODES`).
//!
//! The protocol itself (packets, sessions, the Kademlia table, queries) is the crate's;
//! this module adds what braid needs around it:
//! - `config`: how to run it — bind address, our record's contents, bootnodes, timeouts,
//!   the lookup pace and the packet filter's limits;
//! - `service`: the running service ([`Discv5`]): binds the socket, signs our record (IP,
//!   TCP and UDP ports, secp256k1 key, the `braid` capabilities entry), adds `enr:`
//!   bootnodes, runs one random lookup at a time at a bounded pace, and turns every node
//!   whose session and record discv5 verified into a [`Candidate`](super::Candidate) on
//!   the same stream type discv4 fills;
//! - `executor`: the task spawner handed to the crate, which remembers every task it
//!   starts so that shutdown can wait for them (and abort what overstays).
//!
//! Two facts of the crate shape its use. Its ban list is one per process (every
//! `discv5::Discv5` shares it, and each new one clears it); and it does not take enode URLs
//! (it needs a signed record to start a session without the `libp2p` feature, which we do
//! not build), so enode bootnodes are skipped with a warning — with
//! [`Discovery::Both`](crate::server::Discovery::Both) discv4 still uses them.
mod config;
mod executor;
mod service;

pub use config::{Discv5Config, PacketLimits};
pub use service::{v5_node_id, Discv5, Discv5Error, Discv5Stats};
