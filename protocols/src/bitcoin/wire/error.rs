//! The error type of the bitcoin wire codec.

use super::command::Command;

/// Everything that can go wrong while encoding or decoding bitcoin wire data.
///
/// Decoders treat every input byte as hostile and report problems through
/// this type instead of panicking. It is plain data (`Clone`, `Eq`), so a peer can
/// keep the verdict as its close reason and tests can compare it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The input ended before a field was complete.
    #[error("unexpected end of data: needed {needed} more bytes, {remaining} left")]
    Truncated {
        /// Bytes the field still needed.
        needed: usize,
        /// Bytes that were left.
        remaining: usize,
    },
    /// A CompactSize used more bytes than its value needs.
    #[error("non-canonical CompactSize encoding of {value}")]
    NonCanonicalCompactSize {
        /// The decoded value.
        value: u64,
    },
    /// A count or length does not fit in this platform's `usize`.
    #[error("length {0} does not fit in memory")]
    LengthOverflow(u64),
    /// A list had more items than the protocol allows.
    #[error("too many {what}: {count} > {max}")]
    TooManyItems {
        /// What was being counted.
        what: &'static str,
        /// The claimed count.
        count: u64,
        /// The limit.
        max: usize,
    },
    /// A variable-length byte field is longer than allowed.
    #[error("{what} too long: {len} > {max} bytes")]
    FieldTooLong {
        /// Which field.
        what: &'static str,
        /// The claimed length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A numeric field is outside the range the protocol allows.
    #[error("{what} is {value}, above the maximum of {max}")]
    ValueOutOfRange {
        /// Which field.
        what: &'static str,
        /// The value found.
        value: u64,
        /// The limit.
        max: u64,
    },
    /// A text field was not valid UTF-8.
    #[error("{0} is not valid UTF-8")]
    InvalidUtf8(&'static str),
    /// Bytes were left over after a complete message was decoded.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// The payload exceeds the per-message maximum for this command.
    #[error("{command} payload of {len} bytes exceeds the maximum of {max}")]
    PayloadTooLarge {
        /// The command.
        command: Command,
        /// The payload length.
        len: usize,
        /// The maximum for this command at the negotiated protocol version.
        max: usize,
    },
    /// A frame header announced more than `MAX_PROTOCOL_MESSAGE_LENGTH` bytes.
    #[error("frame length {len} exceeds the protocol maximum of {max}")]
    FrameTooLarge {
        /// The announced payload length.
        len: u32,
        /// The limit.
        max: usize,
    },
    /// The message is not defined at the negotiated protocol version.
    #[error("{command} is not valid at protocol version {pver}")]
    UnsupportedAtVersion {
        /// The command.
        command: Command,
        /// The protocol version in use.
        pver: u32,
    },
    /// A header list entry announced a non-zero transaction count.
    #[error("block header in headers message has tx count {0}, must be 0")]
    HeaderTxCount(u64),
    /// An addrv2 entry of a known network had the wrong address length.
    #[error("addrv2 network {network_id} address has length {len}, expected {expected}")]
    AddrV2Length {
        /// The BIP155 network id.
        network_id: u8,
        /// The length found.
        len: usize,
        /// The length that network requires.
        expected: usize,
    },
    /// A transaction or block is structurally invalid.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// `"tx"` or `"block"`.
        what: &'static str,
        /// What was wrong.
        reason: &'static str,
    },
    /// A frame started with the magic of another network.
    #[error("wrong network magic {0:02x?}")]
    WrongMagic([u8; 4]),
    /// The 12-byte command field is not printable ASCII followed by NUL padding.
    #[error("invalid command field {0:02x?}")]
    InvalidCommand([u8; 12]),
    /// A well-formed command this codec does not know; its payload was skipped
    /// (by [`read_frame`](super::framing::read_frame)) so the stream is still in sync.
    #[error("unknown command {name:?} ({len} byte payload)")]
    UnknownCommand {
        /// The command name (printable ASCII).
        name: String,
        /// The payload length announced in the header.
        len: u32,
    },
    /// The payload checksum does not match the header.
    #[error("checksum mismatch: header {expected:02x?}, payload {actual:02x?}")]
    ChecksumMismatch {
        /// Checksum from the header.
        expected: [u8; 4],
        /// Checksum of the received payload.
        actual: [u8; 4],
    },
    /// Reading from the transport failed (only [`read_frame`](super::framing::read_frame)
    /// reads one). The kind is kept, as in the peer's close reasons; the OS detail is not.
    #[error("i/o error: {0}")]
    Io(std::io::ErrorKind),
}

impl From<std::io::Error> for WireError {
    fn from(e: std::io::Error) -> Self {
        WireError::Io(e.kind())
    }
}
