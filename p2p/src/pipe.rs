//! Testing a protocol without sockets: peers linked through memory.
//!
//! Both helpers run the real stack (ECIES handshake, framing, MACs, Hello exchange, snappy,
//! the peer runtime) over a `tokio::io::duplex` pipe instead of TCP, so a protocol's `run`
//! is exercised exactly as in production, with nothing bound and nothing to clean up.
//!
//! - [`linked_peers`]: two running [`Peer`]s, each with its own protocols, connected to
//!   each other — for testing two ends of a protocol against each other.
//! - [`ScriptedRemote::start`]: one running [`Peer`] with your protocol, and a scripted
//!   remote that sends and receives that protocol's messages by relative code — for testing
//!   how a protocol answers exact bytes, including bad ones.
//!
//! ```
//! use p2p::pipe::ScriptedRemote;
//! use p2p::protocol::Protocol;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A protocol that answers every message on code 0 with the same payload on code 1.
//! let echo = Protocol::new("echo", 1, 2, |_peer, mut rw| async move {
//!     loop {
//!         let msg = rw.read().await?;
//!         rw.write(1, &msg.payload).await?;
//!     }
//! });
//! let (_peer, mut remote) = ScriptedRemote::start(&echo).await?;
//! remote.send(0, b"\x83abc").await?;
//! let (code, payload) = remote.recv().await?;
//! assert_eq!((code, &payload[..]), (1, &b"\x83abc"[..]));
//! # Ok(()) }
//! ```

use std::time::Duration;

use bytes::Bytes;
use secp256k1::SecretKey;

use crate::base::{DisconnectReason, Hello, BASE_PROTOCOL_VERSION, EMPTY_LIST, PING, PONG};
use crate::capability::SharedCapability;
use crate::conn::{Conn, ConnError};
use crate::node::NodeId;
use crate::peer::{Direction, Peer, PeerConfig, PeerInfo, PeerStartError};
use crate::protocol::Protocol;
use crate::session::{exchange_hello, send_disconnect, SessionError};

/// Bytes the in-memory pipe buffers in each direction (a TCP socket buffer's order).
const PIPE_BUFFER: usize = 256 * 1024;
/// Bound on each step of setting up a link and on each [`ScriptedRemote`] call.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a linked pair could not be set up, or a scripted call failed.
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    /// The encrypted link failed (handshake, frame, MAC).
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// The Hello exchange failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The peer could not start (no shared capability).
    #[error(transparent)]
    Start(#[from] PeerStartError),
    /// A step did not finish within its bound.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The peer sent a Disconnect.
    #[error("the peer disconnected: {0}")]
    Disconnected(DisconnectReason),
    /// The peer sent a message outside the scripted protocol's codes.
    #[error("message code {0:#x} is not the scripted protocol's")]
    ForeignCode(u64),
    /// A code passed to [`ScriptedRemote::send`] is outside the protocol.
    #[error("code {code} is outside the protocol's {length} codes")]
    InvalidCode {
        /// The code asked for.
        code: u64,
        /// The protocol's number of codes.
        length: u64,
    },
}

/// Two running peers linked through memory: the first runs `a`'s protocols, the second
/// `b`'s, and each sees the other as its remote (the first dialed). They run until one
/// disconnects or a protocol ends.
pub async fn linked_peers(a: &[Protocol], b: &[Protocol]) -> Result<(Peer, Peer), PipeError> {
    let (ka, kb) = (fresh_key(), fresh_key());
    let (mut ca, mut cb) = link(&ka, &kb).await?;
    let (hello_a, hello_b) = (hello(&ka, a), hello(&kb, b));
    let (ha, hb) = tokio::join!(
        exchange_hello(&mut ca, &hello_a, STEP_TIMEOUT),
        exchange_hello(&mut cb, &hello_b, STEP_TIMEOUT)
    );
    let (their_a, their_b) = (ha?, hb?);
    let (pa, pb) = tokio::join!(
        start(ca, their_a, a, Direction::Outbound),
        start(cb, their_b, b, Direction::Inbound)
    );
    Ok((pa?, pb?))
}

/// A scripted remote speaking one protocol to a running [`Peer`]: codes are relative to
/// that protocol, as its `run` sees them; pings from the peer are answered.
pub struct ScriptedRemote {
    conn: Conn,
    cap: SharedCapability,
}

impl std::fmt::Debug for ScriptedRemote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScriptedRemote")
            .field("capability", &self.cap)
            .finish()
    }
}

impl ScriptedRemote {
    /// Start a peer running `protocol`, linked to a remote that offers the same capability.
    pub async fn start(protocol: &Protocol) -> Result<(Peer, ScriptedRemote), PipeError> {
        let (kp, kr) = (fresh_key(), fresh_key());
        let (mut cp, mut cr) = link(&kp, &kr).await?;
        let protocols = std::slice::from_ref(protocol);
        let (hello_p, hello_r) = (hello(&kp, protocols), hello(&kr, protocols));
        let (hp, hr) = tokio::join!(
            exchange_hello(&mut cp, &hello_p, STEP_TIMEOUT),
            exchange_hello(&mut cr, &hello_r, STEP_TIMEOUT)
        );
        let (their_p, _) = (hp?, hr?);
        let peer = start(cp, their_p, protocols, Direction::Outbound).await?;
        let cap = peer
            .protocols()
            .first()
            .cloned()
            .ok_or(PipeError::Start(PeerStartError::UselessPeer))?;
        Ok((peer, ScriptedRemote { conn: cr, cap }))
    }

    /// Send `payload` on the protocol's relative `code`.
    pub async fn send(&mut self, code: u64, payload: &[u8]) -> Result<(), PipeError> {
        if code >= self.cap.length {
            return Err(PipeError::InvalidCode {
                code,
                length: self.cap.length,
            });
        }
        let write = self.conn.writer.write(self.cap.offset + code, payload);
        bounded(write).await??;
        Ok(())
    }

    /// The next message of the protocol, as (relative code, payload). Pings are answered
    /// on the way; a Disconnect or a message of another protocol is an error.
    pub async fn recv(&mut self) -> Result<(u64, Bytes), PipeError> {
        loop {
            let msg = bounded(self.conn.reader.read()).await??;
            if let Some(reason) = msg.disconnect {
                return Err(PipeError::Disconnected(reason));
            }
            match msg.code {
                PING => {
                    bounded(self.conn.writer.write(PONG, &EMPTY_LIST)).await??;
                }
                PONG => {}
                code if (self.cap.offset..self.cap.offset + self.cap.length).contains(&code) => {
                    return Ok((code - self.cap.offset, msg.payload));
                }
                code => return Err(PipeError::ForeignCode(code)),
            }
        }
    }

    /// Send a Disconnect with `reason` (best effort, bounded) and drop the link.
    pub async fn disconnect(mut self, reason: DisconnectReason) {
        send_disconnect(&mut self.conn.writer, reason).await;
    }

    /// The capability as negotiated (name, version, offset, length).
    pub fn capability(&self) -> &SharedCapability {
        &self.cap
    }
}

fn fresh_key() -> SecretKey {
    SecretKey::new(&mut rand::thread_rng())
}

/// The encrypted link between `a` (initiator) and `b` (recipient) over a duplex pipe.
async fn link(a: &SecretKey, b: &SecretKey) -> Result<(Conn, Conn), PipeError> {
    let (io_a, io_b) = tokio::io::duplex(PIPE_BUFFER);
    let id_b = NodeId::from_secret(b);
    let (ca, cb) = tokio::join!(
        Conn::initiate(io_a, a, &id_b, STEP_TIMEOUT),
        Conn::accept(io_b, b, STEP_TIMEOUT)
    );
    Ok((ca?, cb?))
}

fn hello(key: &SecretKey, protocols: &[Protocol]) -> Hello {
    Hello {
        protocol_version: BASE_PROTOCOL_VERSION,
        client_id: "braid-pipe".into(),
        capabilities: protocols.iter().map(|p| p.capability()).collect(),
        listen_port: 0,
        id: NodeId::from_secret(key).0.to_vec(),
    }
}

async fn start(
    conn: Conn,
    their_hello: Hello,
    protocols: &[Protocol],
    direction: Direction,
) -> Result<Peer, PipeError> {
    let info = PeerInfo {
        id: conn.remote_id,
        remote_addr: None,
        direction,
        trusted: false,
    };
    Ok(Peer::start(
        conn,
        their_hello,
        protocols,
        info,
        PeerConfig::default(),
        None,
    )
    .await?)
}

async fn bounded<F: std::future::Future>(f: F) -> Result<F::Output, PipeError> {
    tokio::time::timeout(STEP_TIMEOUT, f)
        .await
        .map_err(|_| PipeError::Timeout(STEP_TIMEOUT))
}
