//! Why a peer ended.

use std::time::Duration;

use super::transport::{LinkClosed, SendError};
use crate::bitcoin::wire::{Command, WireError};

/// The reason a peer disconnected, as recorded by [`Peer::close_reason`](super::Peer::close_reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// `disconnect()` was called (locally, or by a listener).
    #[error("disconnected")]
    Disconnected,
    /// The handshake did not finish within the negotiation timeout.
    #[error("protocol negotiation timeout")]
    NegotiationTimeout,
    /// The transport closed.
    #[error("connection closed: {0}")]
    Closed(LinkClosed),
    /// The remote sent something we could not accept; the wire codec's verdict.
    #[error("malformed message: {0}")]
    Malformed(WireError),
    /// The first message was not `version`.
    #[error("a version message must precede all others (got {0})")]
    VersionNotFirst(String),
    /// A known message other than verack/sendaddrv2 arrived before verack.
    #[error("invalid message {0} during the handshake")]
    InvalidHandshake(Command),
    /// The remote's version nonce is one we sent.
    #[error("disconnecting peer connected to self")]
    SelfConnection,
    /// The remote's protocol version is below the minimum.
    #[error("protocol version {0} is below the minimum of 209")]
    ObsoleteVersion(i32),
    /// Our `on_version` listener rejected the remote.
    #[error("version rejected: {0}")]
    VersionRejected(String),
    /// The newest-block callback failed while building our version.
    #[error("newest block unavailable: {0}")]
    NewestBlock(String),
    /// A duplicate version or verack (answered with a reject).
    #[error("duplicate {0} message")]
    Duplicate(Command),
    /// `sendaddrv2` after the handshake.
    #[error("sendaddrv2 after verack")]
    LateSendAddrV2,
    /// A BIP37 message while we do not offer NODE_BLOOM (BIP111).
    #[error("{0} received but NODE_BLOOM is not offered")]
    BloomNotOffered(Command),
    /// Nothing received within the idle timeout.
    #[error("no message received for {0:?}")]
    IdleTimeout(std::time::Duration),
    /// An expected response did not arrive in time.
    #[error("stalled waiting for {0}")]
    Stalled(Command),
    /// A write failed or timed out.
    #[error("write failed: {0}")]
    WriteFailed(WriteFailure),
}

/// Why a write failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteFailure {
    /// The link is gone.
    #[error("{0}")]
    Closed(LinkClosed),
    /// The message cannot be encoded at the negotiated version (nothing was written).
    #[error("{0} cannot be encoded at this protocol version")]
    Unencodable(Command),
    /// The write did not finish within the write timeout.
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
}

impl WriteFailure {
    /// The failure of sending `command`.
    pub(crate) fn of(command: Command, e: SendError) -> Self {
        match e {
            SendError::Closed(c) => WriteFailure::Closed(c),
            SendError::Encode(_) => WriteFailure::Unencodable(command),
        }
    }
}
