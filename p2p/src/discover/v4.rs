//! Discovery v4 ("discv4"): the UDP node discovery protocol of devp2p.
//!
//! discv4 is a Kademlia-like DHT over UDP. Every node is identified by its secp256k1
//! public key (the 64-byte [`NodeId`](crate::node::NodeId)); the distance between two
//! nodes is the XOR of the keccak256 hashes of their ids. Six signed packets make up the
//! protocol: `Ping`/`Pong` prove that an endpoint is live and owns its key, `FindNode`/
//! `Neighbors` ask a node for the nodes it knows closest to a target, and
//! `ENRRequest`/`ENRResponse` (EIP-868) fetch a node's signed record.
//!
//! This module provides:
//! - [`packet`]: encoding (signing) and decoding (hash check, sender recovery) of the six
//!   packets, with EIP-8's forward-compatibility rules and hostile-input limits;
//! - [`table`]: the node table — 256 buckets by log-distance, replacement lists,
//!   per-subnet limits, revalidation bookkeeping and closest-node lookup;
//! - `service`: the UDP service on top of both — socket I/O, request/reply matching,
//!   endpoint proofs, table revalidation, iterative lookups, record fetches, and the
//!   stream of candidate nodes ([`Discv4`]);
//! - `lookup`: the iterative Kademlia lookup the service runs.
//!
//! `packet` and `table` are pure (no sockets; time is passed in by the caller).
mod lookup;
pub mod packet;
mod service;
pub mod table;

pub use super::bootnode::Bootnode;
pub use super::candidates::{Candidate, Candidates};
pub use service::{DiscoveryError, Discv4, Discv4Config, Discv4Stats, RateLimit};
