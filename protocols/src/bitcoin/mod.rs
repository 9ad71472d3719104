//! The bitcoin-wire subprotocol.
//!
//! [`wire`] is braid's own bitcoin wire codec: payload-only encode/decode of
//! the bitcoin P2P messages with btcd-grade limits, plus the native v1 framing
//! (24-byte header) used toward plain bitcoin TCP peers.
pub mod wire;
