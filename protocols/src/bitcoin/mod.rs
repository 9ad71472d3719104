//! The bitcoin-wire subprotocol: bitcoin's P2P messages, a full bitcoin peer, and the
//! same peer carried over a braid link.
//!
//! # Overview
//!
//! Three layers, each usable on its own:
//!
//! - [`wire`]: braid's own codec for bitcoin's P2P messages. Payloads encode and decode per
//!   protocol version, with every count and length checked against a limit before anything
//!   is allocated (an `inv` of 50,001 items is refused from its count; a header claiming more
//!   than 4,000,000 bytes from the header), and every failure is a typed [`wire::WireError`].
//!   The native v1 framing (24-byte header: magic, command, length, checksum) is in
//!   [`wire::framing`]. The `bitcoin` crate is used only as a test oracle: encodings are
//!   checked byte for byte against it.
//! - [`peer`]: a bitcoin peer written once against a small [`peer::Transport`] trait (a
//!   reader half and a writer half of whole messages). It runs the version/verack handshake
//!   (negotiated version = the lower of both; a version nonce we sent comes back only on a
//!   self-connection, which is refused), then reads with an idle timeout (5 min) and writes
//!   from a FIFO queue with one message in flight. Inventory is trickled every 10 s in
//!   batches, known inventory is remembered so nothing is announced twice, pings go out
//!   every 2 minutes and pongs are timed, and a stall detector disconnects a peer that does
//!   not answer a request (`getdata`, `getheaders`, …) in time. Optional negotiations:
//!   BIP155 `sendaddrv2`, BIP339 `wtxidrelay`, BIP130 `sendheaders`. Every event reaches a
//!   [`peer::Listener`] (the callbacks); [`peer::Peer::stats_snapshot`] reports counters
//!   and times.
//! - Transports: [`peer::NativeTransport`] speaks v1 bitcoin TCP, [`peer::V2Transport`] the
//!   BIP324 encrypted transport (ElligatorSwift handshake, ChaCha20-Poly1305 packets, short
//!   ids, decoys ignored; [`peer::connect_auto`] and [`peer::accept_auto`] try v2 and fall
//!   back to v1 as Bitcoin Core does), and [`protocol`] returns the `btc/1` braid capability,
//!   which carries the same messages (the bitcoin command as the message code) over a braid
//!   link, so the same peer relays between native nodes and the overlay.
//!
//! [`txrequest`] decides which announcer to ask for an announced item, with per-peer bounds
//! and a fall-back to the next announcer when one does not deliver (Bitcoin Core's tx
//! request rules).
//!
//! # Errors and limits
//!
//! Why a peer ended is a typed [`peer::PeerError`] ([`peer::Peer::close_reason`]); a
//! malformed message is answered with a `reject` and a disconnect. Every queue is bounded
//! ([`peer::OUTPUT_BUFFER_SIZE`] messages and inventory items) and every wait has a
//! deadline (negotiation, idle, write, stall).
//!
//! # Example
//!
//! Two peers over an in-memory pipe: the outbound one sends its version first, both
//! finish the handshake, and a ping is answered.
//!
//! ```
//! use std::time::Duration;
//! use protocols::bitcoin::peer::{Config, NativeTransport, Peer};
//! use protocols::bitcoin::wire::{Message, MsgPing, Network};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (a, b) = tokio::io::duplex(64 * 1024);
//! let config = Config {
//!     network: Network::Regtest,
//!     // Both ends live in this process, which remembers the version nonces it sent:
//!     // without this the inbound side would take the link for a self-connection.
//!     allow_self_conns: true,
//!     user_agent_name: "doc".into(),
//!     user_agent_version: "0.1".into(),
//!     ..Config::default()
//! };
//! let out = Peer::start_outbound(config.clone(), NativeTransport::new(a, Network::Regtest, None));
//! let inb = Peer::start_inbound(config, NativeTransport::new(b, Network::Regtest, None));
//!
//! // The handshake runs on its own; wait until both sides saw the other's verack.
//! tokio::time::timeout(Duration::from_secs(5), async {
//!     while !(out.verack_received() && inb.verack_received()) {
//!         tokio::time::sleep(Duration::from_millis(10)).await;
//!     }
//! })
//! .await
//! .expect("handshake");
//! assert!(inb.user_agent().contains("doc:0.1"));
//!
//! out.queue_message(Message::Ping(MsgPing { nonce: 7 }), None).await;
//! tokio::time::timeout(Duration::from_secs(5), async {
//!     while out.last_ping_micros() == 0 {
//!         tokio::time::sleep(Duration::from_millis(10)).await;
//!     }
//! })
//! .await
//! .expect("pong");
//! out.disconnect();
//! out.wait_for_disconnect().await;
//! # }
//! ```
pub mod peer;
pub mod txrequest;
pub mod wire;

pub use peer::braid::protocol;
