//! Subprotocols for braid, each a [`p2p::protocol::Protocol`] you add to a server:
//!
//! - [`chat`]: `chat/1`, a chat room flooded over every peer with duplicate suppression.
//! - [`bitcoin`]: the bitcoin wire codec ([`bitcoin::wire`]) and a btcd-grade bitcoin peer
//!   ([`bitcoin::peer`]) that runs over native bitcoin TCP or as the `btc/1` capability.
//!
//! # Example: two chat nodes
//!
//! ```
//! use p2p::server::{Server, ServerConfig};
//! use protocols::chat::{ChatEvent, ChatRoom};
//! use secp256k1::SecretKey;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let node = |room: &ChatRoom| {
//!     let key = SecretKey::new(&mut rand::thread_rng());
//!     ServerConfig {
//!         protocols: vec![room.protocol()],
//!         ..ServerConfig::new(key, Some("127.0.0.1:0".parse().unwrap()))
//!     }
//! };
//! let (ann, _ann_events) = ChatRoom::new("ann");
//! let (bob, mut bob_events) = ChatRoom::new("bob");
//! let a = Server::start(node(&ann)).await?;
//! let b = Server::start(node(&bob)).await?;
//! a.dial(&b.enode().unwrap()).await?;
//!
//! // Wait until ann's nick announcement reached bob, then talk.
//! loop {
//!     match bob_events.recv().await {
//!         Some(ChatEvent::Joined { nick, .. }) if nick == "ann" => break,
//!         Some(_) => continue,
//!         None => return Err("room closed".into()),
//!     }
//! }
//! ann.say("hello bob");
//! loop {
//!     if let Some(ChatEvent::Line { nick, text, .. }) = bob_events.recv().await {
//!         assert_eq!((nick.as_str(), text.as_str()), ("ann", "hello bob"));
//!         break;
//!     }
//! }
//! a.shutdown().await;
//! b.shutdown().await;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bitcoin;
pub mod chat;
