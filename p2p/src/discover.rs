//! Node discovery: finding peers to dial, beside [`server`](crate::server) and independent
//! of it.
//!
//! Discovery knows nothing of peers, sessions or subprotocols. Its job is to keep a table
//! of nodes that answer on the discovery protocol and to yield candidates (node id, IP,
//! TCP port, record) that something else — the server's dial scheduler — may decide to
//! dial.
//!
//! Two discoveries yield into the same [`Candidates`] type, so one scheduler consumes
//! either or both ([`Candidates::merge`], deduplicated by node id):
//!
//! - [`v4`] is discovery v4, our own code: the wire format and the Kademlia node table
//!   (pure: no socket, no clock), and the UDP service ([`v4::Discv4`]) that drives them —
//!   bonding, lookups, EIP-868 records, revalidation — on any
//!   [`DatagramSocket`](crate::server::DatagramSocket), a simulated one included.
//! - [`v5`] is discovery v5, sigp's `discv5` crate in a wrapper ([`v5::Discv5`]) that
//!   gives it our record, bootnodes and bounded random lookups, and turns the nodes it
//!   verifies into candidates. The crate opens and owns its socket, so v5 runs on the
//!   host's network only.
//!
//! [`Bootnode`] is the bootnode type both share, [`Candidates`] the stream type.
mod bootnode;
mod candidates;
pub mod v4;
pub mod v5;

pub use bootnode::Bootnode;
pub use candidates::{Candidate, Candidates};
