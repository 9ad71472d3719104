//! braid's framework crate: an RLPx (devp2p) link per peer, the base protocol,
//! and a runtime that multiplexes any number of subprotocols over it.
//!
//! Layers (each module owns one):
//!
//! ```text
//! TcpStream
//!   -> ecies     ECIES auth/ack handshake (EIP-8 and legacy) -> Secrets
//!   -> frame     AES-256-CTR + Keccak-256 MAC frames (FrameSealer / FrameOpener)
//!   -> message   message id + snappy on top of frame-data
//!   -> conn      an established, encrypted link: read / write whole messages
//!   -> base      base protocol: Hello, Disconnect, Ping, Pong
//! ```
#![forbid(unsafe_code)]

pub mod base;
pub mod conn;
pub mod ecies;
pub mod frame;
pub mod message;
pub mod node;
pub mod peer;
pub mod protocol;
pub mod server;
pub mod session;
