//! The handshake's error type.

/// Why a handshake failed. Every malformed or hostile input maps to one of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The underlying stream failed (other than ending early).
    #[error("i/o error during handshake: {0}")]
    Io(#[from] std::io::Error),
    /// The peer claimed a packet larger than we accept.
    #[error("handshake packet of {size} bytes exceeds the {max}-byte limit")]
    PacketTooLarge {
        /// The claimed size (size-prefix value).
        size: usize,
        /// The limit ([`crate::ecies::MAX_HANDSHAKE_PACKET`]).
        max: usize,
    },
    /// A public key (ECIES `R`, a node id or an ephemeral key) is not a valid curve point.
    #[error("invalid public key")]
    InvalidPublicKey,
    /// The ECIES HMAC tag did not authenticate the packet.
    #[error("ECIES tag mismatch")]
    TagMismatch,
    /// The packet decrypted but its contents are not a valid auth/ack.
    #[error("malformed handshake packet: {0}")]
    Malformed(&'static str),
    /// The auth signature is malformed or does not recover a public key.
    #[error("invalid auth signature")]
    InvalidSignature,
    /// The stream ended before the whole packet arrived.
    #[error("stream ended during handshake")]
    UnexpectedEof,
}

impl From<rlp::DecoderError> for HandshakeError {
    fn from(_: rlp::DecoderError) -> Self {
        HandshakeError::Malformed("invalid RLP")
    }
}
