//! The small interface the peer logic is written against: send one message, receive one
//! message, each with the number of bytes it took on the transport.

use std::future::Future;
use std::net::SocketAddr;

use crate::bitcoin::wire::{Message, WireError};

/// What a transport delivered.
#[derive(Debug)]
pub enum Inbound {
    /// A decoded message.
    Message(Message),
    /// A command this codec does not know; its payload was skipped.
    Unknown(String),
}

/// One received item and the bytes it took.
#[derive(Debug)]
pub struct Received {
    /// The message.
    pub inbound: Inbound,
    /// Bytes consumed on the transport (header included for native framing).
    pub bytes: usize,
}

/// Why a transport stopped carrying messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkClosed {
    /// The stream ended or failed underneath (EOF, reset, refused…), by kind.
    #[error("i/o: {0}")]
    Io(std::io::ErrorKind),
    /// The stream ended in the middle of a v2 packet.
    #[error("end of stream inside a v2 packet")]
    TruncatedPacket,
    /// A v2 packet failed authentication: the stream cannot be trusted past it.
    #[error("v2 packet failed authentication")]
    Unauthenticated,
    /// The braid link carrying the `btc` capability closed, or its peer is closing.
    #[error("braid link closed")]
    Braid,
}

impl From<std::io::Error> for LinkClosed {
    fn from(e: std::io::Error) -> Self {
        LinkClosed::Io(e.kind())
    }
}

/// Why a receive failed.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// The connection ended (EOF, reset, link closed). Nothing to answer.
    #[error("connection closed: {0}")]
    Closed(LinkClosed),
    /// A message arrived but could not be accepted (bad checksum, wrong magic, oversize,
    /// undecodable payload, trailing bytes). The peer answers with a `reject` and leaves.
    #[error("malformed message: {error}")]
    Malformed {
        /// The codec's verdict.
        error: WireError,
        /// Bytes consumed.
        bytes: usize,
    },
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The message cannot be encoded at this protocol version (nothing was written).
    #[error("cannot encode: {0}")]
    Encode(#[from] WireError),
    /// The connection is gone.
    #[error("connection closed: {0}")]
    Closed(LinkClosed),
}

/// A bidirectional message transport, split into halves so reading and writing can
/// proceed concurrently.
pub trait Transport: Send + 'static {
    /// The receiving half.
    type Reader: TransportReader;
    /// The sending half.
    type Writer: TransportWriter;
    /// The remote socket address, if there is one.
    fn remote_addr(&self) -> Option<SocketAddr>;
    /// Split into halves. Dropping both closes the transport.
    fn split(self) -> (Self::Reader, Self::Writer);
}

/// Receiving half of a [`Transport`].
pub trait TransportReader: Send + 'static {
    /// Receive one message, decoding at protocol version `pver`. Does not time out by
    /// itself; the peer wraps it in its idle/negotiation deadlines.
    fn recv(&mut self, pver: u32) -> impl Future<Output = Result<Received, RecvError>> + Send;
}

/// Sending half of a [`Transport`].
pub trait TransportWriter: Send + 'static {
    /// Encode `msg` at protocol version `pver` and send it; returns the bytes written.
    fn send(
        &mut self,
        msg: &Message,
        pver: u32,
    ) -> impl Future<Output = Result<usize, SendError>> + Send;
}
