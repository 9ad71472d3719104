//! Base protocol ("p2p", message ids 0x00..=0x0f): Hello, Disconnect, Ping, Pong.
//!
//! This module only encodes and decodes payloads (the RLP after the message id);
//! when each message is sent, and whether it is snappy-compressed, is decided by
//! the connection. Facts follow the devp2p spec and go-ethereum / reth behaviour.

mod disconnect;
mod hello;
mod items;

pub use disconnect::DisconnectReason;
pub use hello::Hello;

/// Base protocol version we speak; version 5 switches on snappy (EIP-706).
pub const BASE_PROTOCOL_VERSION: u64 = 5;
/// Number of message ids the base protocol reserves: codes 0x00..=0x0f.
pub const BASE_PROTOCOL_LENGTH: u64 = 16;
/// Largest Hello payload accepted (geth and reth both use 2048 bytes).
pub const MAX_HELLO_SIZE: usize = 2048;
/// Message id of Hello.
pub const HELLO: u64 = 0;
/// Message id of Disconnect.
pub const DISCONNECT: u64 = 1;
/// Message id of Ping.
pub const PING: u64 = 2;
/// Message id of Pong.
pub const PONG: u64 = 3;
/// RLP of an empty list: the ping/pong payload.
pub const EMPTY_LIST: [u8; 1] = [0xc0];

/// A capability (subprotocol name and version) as advertised in Hello.
///
/// Ordering is by name (byte-wise, as geth's `strings.Compare`) then version, which
/// is the order capability matching walks them in.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Capability {
    /// Protocol name, e.g. `eth`. Case-sensitive.
    pub name: String,
    /// Protocol version.
    pub version: u32,
}

impl Capability {
    /// A capability from its name and version.
    pub fn new(name: impl Into<String>, version: u32) -> Self {
        Capability {
            name: name.into(),
            version,
        }
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.name, self.version)
    }
}

/// Why a base protocol payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BaseError {
    /// The payload is not well-formed RLP of the expected shape.
    #[error("malformed RLP in {context}: {problem}")]
    Rlp {
        /// The message or field being decoded.
        context: &'static str,
        /// What was wrong with it.
        problem: RlpProblem,
    },
    /// The Hello payload is larger than [`MAX_HELLO_SIZE`]; it was not parsed.
    #[error("hello payload of {size} bytes exceeds the limit of {max} bytes")]
    HelloTooLarge {
        /// Payload size received.
        size: usize,
        /// The limit applied.
        max: usize,
    },
    /// The Hello list has fewer than the five mandatory fields.
    #[error("hello is missing its {0} field")]
    MissingField(&'static str),
    /// Bytes follow the top-level RLP item.
    #[error("{context}: {extra} trailing bytes after the RLP item")]
    TrailingBytes {
        /// Which message was being decoded.
        context: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
    /// Hello's listen port does not fit in 16 bits.
    #[error("hello listen port {0} does not fit in 16 bits")]
    ListenPortTooLarge(u64),
    /// A capability version does not fit in 32 bits.
    #[error("capability {name} has version {version}, which does not fit in 32 bits")]
    CapVersionTooLarge {
        /// Capability name (lossily decoded).
        name: String,
        /// The version as received.
        version: u64,
    },
    /// A Disconnect carried a reason code that is not in the spec's table.
    #[error("unknown disconnect reason 0x{0:02x}")]
    UnknownReason(u8),
}

/// What was wrong with the RLP of a base protocol message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RlpProblem {
    /// The RLP decoder refused the bytes (bad header, short input, non-canonical integer…).
    #[error("{0}")]
    Decoder(rlp::DecoderError),
    /// Well-formed RLP, but not the shape the message has (a list where a string belongs…).
    #[error("{0}")]
    Shape(&'static str),
    /// A list with a number of items the message does not allow.
    #[error("expected {expected}, got {got} items")]
    ItemCount {
        /// What the message allows.
        expected: &'static str,
        /// How many items there were.
        got: usize,
    },
}

impl From<rlp::DecoderError> for RlpProblem {
    fn from(e: rlp::DecoderError) -> Self {
        RlpProblem::Decoder(e)
    }
}

impl From<&'static str> for RlpProblem {
    fn from(shape: &'static str) -> Self {
        RlpProblem::Shape(shape)
    }
}

impl BaseError {
    pub(crate) fn rlp(context: &'static str, problem: impl Into<RlpProblem>) -> Self {
        BaseError::Rlp {
            context,
            problem: problem.into(),
        }
    }
}
