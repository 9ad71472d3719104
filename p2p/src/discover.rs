//! Node discovery: finding peers to dial, beside [`server`](crate::server) and independent
//! of it.
//!
//! Discovery knows nothing of peers, sessions or subprotocols. Its job is to keep a table
//! of nodes that answer on the discovery protocol and to yield candidates (node id, IP,
//! TCP port) that something else — the server's dial scheduler — may decide to dial.
//!
//! [`v4`] is discovery v4: the wire format and the Kademlia node table (pure: no socket,
//! no clock), and the UDP service ([`v4::Discv4`]) that drives them — bonding, lookups,
//! EIP-868 records, revalidation — and yields verified nodes as [`v4::Candidates`].
pub mod v4;
