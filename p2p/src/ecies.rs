//! The RLPx encryption handshake: ECIES-encrypted auth/ack packets (EIP-8 and
//! legacy pre-EIP-8), yielding the [`Secrets`] the frame layer runs on.
//!
//! Layout:
//! - [`crypt`]: ECIES encrypt/decrypt (secp256k1, concat KDF, AES-128-CTR, HMAC-SHA256).
//! - [`packets`]: auth/ack bodies (EIP-8 RLP and legacy fixed layout) and their sealing.
//! - `handshake`: the sans-io state of each side ([`Initiator`], [`Recipient`]).
//! - `secrets`: key derivation and MAC seeding.
//! - `driver`: the async [`initiate`] / [`accept`] functions over any byte stream.

pub mod crypt;
mod driver;
mod error;
mod handshake;
pub mod packets;
mod secrets;

pub use driver::{accept, initiate, initiate_with};
pub use error::HandshakeError;
pub use handshake::{Initiator, ReceivedAck, ReceivedAuth, Recipient};
pub use packets::WireFormat;
pub use secrets::Secrets;

/// Largest EIP-8 auth/ack packet we accept, counted WITHOUT the 2-byte size
/// prefix: it bounds the prefix value (the ciphertext length), as go-ethereum
/// does (`size > 2048` is refused). A larger claimed size is refused before the
/// body is read or allocated.
pub const MAX_HANDSHAKE_PACKET: usize = 2048;
