//! Node discovery: finding peers to dial, beside [`server`](crate::server) and independent
//! of it.
//!
//! Discovery knows nothing of peers, sessions or subprotocols. Its job is to keep a table
//! of nodes that answer on the discovery protocol and to yield candidates (node id, IP,
//! TCP port) that something else — the server's dial scheduler — may decide to dial.
//!
//! Today this module holds the pure parts of discovery v4 ([`v4`]): the wire format and
//! the Kademlia node table. Neither opens a socket or reads a clock; the UDP service
//! that drives them is built on top.
pub mod v4;
