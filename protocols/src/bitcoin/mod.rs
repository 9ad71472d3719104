//! The bitcoin-wire subprotocol.
//!
//! [`wire`] is braid's own bitcoin wire codec: payload-only encode/decode of
//! the bitcoin P2P messages with btcd-grade limits, plus the native v1 framing
//! (24-byte header) used toward plain bitcoin TCP peers.
//!
//! [`peer`] is a btcd-grade bitcoin peer written once against a small transport
//! trait; it runs over native bitcoin TCP ([`peer::NativeTransport`]) and over
//! the `btc` capability of a braid link ([`protocol`]).
//!
//! [`txrequest`] decides which announcer to ask for an announced item, with per-peer
//! bounds and fallback to the next announcer (Bitcoin Core's tx request logic).
pub mod peer;
pub mod txrequest;
pub mod wire;

pub use peer::braid::protocol;
