//! braid's framework crate: an RLPx (devp2p) link per peer, the base protocol, and a
//! runtime that multiplexes any number of subprotocols over it.
//!
//! # Layers
//!
//! Each module owns one layer; layers talk through narrow types
//! (bytes → frames → messages → protocols):
//!
//! ```text
//! TcpStream (or the byte stream of any server::Transport)
//!   -> ecies      ECIES auth/ack handshake (EIP-8 and legacy)       -> Secrets
//!   -> frame      AES-256-CTR + Keccak-256 MACs (FrameSealer/Opener) -> frame-data
//!   -> message    message id + snappy (bounded decompression)       -> (code, payload)
//!   -> base       Hello / Disconnect / Ping / Pong codecs
//!   -> conn       an established link: ConnReader / ConnWriter      -> RawMessage
//!   -> session    Hello exchange, identity checks, snappy switch    -> their Hello
//!   -> capability capability matching and code offsets (private; re-exported by protocol)
//!   -> peer       read loop, write-start token, ping/pong, budgets  -> Peer, ProtoRw
//!   -> protocol   Protocol { name, version, length, run }
//!   -> server     listen, dial, limits, static/trusted peers, events
//!
//! beside the server: discover (discv4 on the transport's datagrams, discv5 on host UDP),
//! record (ENR), nat (port mapping);
//! for tests: pipe (in-memory links), testkit; keccak picks the Keccak-256 backend
//! ```
//!
//! # A protocol in a few lines
//!
//! Two nodes on loopback; `greet/1` sends one message each way.
//!
//! ```
//! use p2p::{Protocol, Server, ServerConfig};
//! use secp256k1::SecretKey;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (tx, mut rx) = tokio::sync::mpsc::channel(4);
//! // `greet/1` uses one message code (0): say hello, then print what the peer said.
//! let greet = Protocol::new("greet", 1, 1, move |peer, mut rw| {
//!     let tx = tx.clone();
//!     async move {
//!         rw.write(0, &rlp::encode(&"hello")).await?;
//!         let msg = rw.read().await?;
//!         let text: String = rlp::decode(&msg.payload)?;
//!         tx.send((peer.id(), text)).await.ok();
//!         std::future::pending::<()>().await; // keep the peer up
//!         Ok(())
//!     }
//! });
//!
//! let node = |greet: Protocol| {
//!     let key = SecretKey::new(&mut rand::thread_rng());
//!     ServerConfig {
//!         protocols: vec![greet],
//!         ..ServerConfig::new(key, Some("127.0.0.1:0".parse().unwrap()))
//!     }
//! };
//! let a = Server::start(node(greet.clone())).await?;
//! let b = Server::start(node(greet)).await?;
//! a.dial(&b.enode().unwrap()).await?;
//!
//! for _ in 0..2 {
//!     let (from, text) = rx.recv().await.unwrap();
//!     assert_eq!(text, "hello");
//!     assert!(from == a.id() || from == b.id());
//! }
//! a.shutdown().await;
//! b.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Robustness
//!
//! Every decoder returns a typed error and checks claimed sizes before allocating
//! (handshake packets ≤ 2048 bytes, Hello ≤ 2 KiB from the frame header, snappy's stated
//! length ≤ 16 MiB); every queue is bounded (per-protocol inbound budgets, a bounded
//! event stream); every wait has a deadline (handshake 5 s, Hello 5 s, read 30 s, write
//! 20 s, pong 15 s).
#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod base;
pub mod budget;
mod capability;
pub mod conn;
mod deadline;
pub mod discover;
pub mod ecies;
pub mod frame;
pub mod keccak;
pub mod message;
pub mod metrics;
pub mod nat;
pub mod node;
pub mod peer;
pub mod pipe;
pub mod protocol;
pub mod record;
pub mod server;
pub mod session;
pub mod testkit;

// What a protocol author and a node operator need, at the crate root; the modules above
// hold the rest (the link's layers, for tools and conformance tests).
pub use base::{Capability, DisconnectReason};
pub use discover::Bootnode;
pub use node::{Enode, NodeId, NodeKey};
pub use peer::{CloseReason, Direction, Peer, PeerConfig, ProtoRw, ProtoWriter};
pub use protocol::{InboundLimits, Msg, Protocol, ProtocolError, SharedCapability};
pub use record::NodeRecord;
pub use server::{Discovery, NodeInfo, PeerEvent, Server, ServerConfig, ServerError};
