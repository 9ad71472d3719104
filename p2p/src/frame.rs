//! RLPx framing: AES-256-CTR encryption plus the running Keccak-256 MACs.
//!
//! A frame on the wire is `header-ct(16) ‖ header-mac(16) ‖ body-ct(16·n) ‖ frame-mac(16)`.
//! The plaintext header is `frame-size(3, big endian) ‖ rlp([0, 0]) ‖ zero padding`; the body is
//! the frame-data zero-padded to a multiple of 16 bytes.
//!
//! Each direction owns one AES-256-CTR keystream (key = aes-secret, IV = 0) that runs on across
//! header and body, frame after frame, and one running MAC (`mac::RlpxMac`). The egress half is
//! [`FrameSealer`], the ingress half is [`FrameOpener`] (a `tokio_util` decoder).

mod error;
mod header;
mod mac;
mod open;
mod seal;

pub use error::FrameError;
pub use open::FrameOpener;
pub use seal::FrameSealer;

/// Largest frame-data size the 24-bit header can state.
pub const MAX_FRAME_SIZE: usize = 0xFF_FFFF;

/// Size of the header ciphertext and of each MAC on the wire.
const BLOCK: usize = 16;

/// Bytes the encrypted header plus its MAC take on the wire.
pub const HEADER_LEN: usize = 2 * BLOCK;

/// AES-256 in counter mode with a 128-bit big-endian counter, as RLPx uses it.
type Keystream = ctr::Ctr128BE<aes::Aes256>;

/// Builds a direction's keystream: key = aes-secret, IV = all zeros.
fn keystream(aes_secret: &[u8; 32]) -> Keystream {
    use ctr::cipher::KeyIvInit;
    Keystream::new(aes_secret.into(), &[0u8; BLOCK].into())
}

/// Length of `size` bytes of frame-data once zero-padded to the AES block size.
///
/// Callers bound `size` by [`MAX_FRAME_SIZE`] first, so the addition cannot overflow.
const fn padded_len(size: usize) -> usize {
    size.div_ceil(BLOCK) * BLOCK
}

#[cfg(test)]
mod tests;
