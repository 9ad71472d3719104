//! braid: multiplexed peer-to-peer subprotocols over one RLPx link per peer.
//!
//! This facade re-exports the framework ([`p2p`]) and the subprotocols ([`protocols`]).
pub use p2p;
pub use protocols;
