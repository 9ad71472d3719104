//! Egress: encrypting and MACing frames.

use bytes::BytesMut;
use ctr::cipher::StreamCipher;
use tokio_util::codec::Encoder;

use super::{header, keystream, mac::RlpxMac, padded_len, FrameError, Keystream, BLOCK};
use super::{HEADER_LEN, MAX_FRAME_SIZE};

/// Body bytes encrypted and then absorbed per step while sealing. Interleaving the two passes
/// in pieces this small keeps the piece in L1 cache between them, instead of streaming the
/// whole (up to 16 MiB) body through memory twice. Any size works: both the keystream and the
/// sponge carry partial blocks over to the next piece.
const SEAL_CHUNK: usize = 8 * 1024;

/// Zero bytes the body is padded with (at most 15 are used).
const ZEROS: [u8; BLOCK] = [0u8; BLOCK];

/// Egress half: encrypts and MACs frames.
pub struct FrameSealer {
    keystream: Keystream,
    mac: RlpxMac,
}

impl FrameSealer {
    /// Creates the egress half from the session's aes-secret, mac-secret and seeded egress MAC
    /// state (`keccak((mac-secret ^ remote-nonce) ‖ our-handshake-packet)`).
    pub fn new(
        aes_secret: &[u8; 32],
        mac_secret: &[u8; 32],
        egress_mac: crate::keccak::Keccak256,
    ) -> Self {
        Self {
            keystream: keystream(aes_secret),
            mac: RlpxMac::new(mac_secret, egress_mac),
        }
    }

    /// Seal one frame whose frame-data is the concatenation of `parts` (the caller passes
    /// `[rlp(msg-id), payload]` to avoid a copy), appending
    /// `header-ct ‖ header-mac ‖ body-ct ‖ frame-mac` to `dst`.
    ///
    /// Errors ([`FrameError::TooLarge`]) if the frame-data exceeds [`MAX_FRAME_SIZE`]; nothing
    /// is appended and no cipher state changes then.
    pub fn seal(&mut self, parts: &[&[u8]], dst: &mut BytesMut) -> Result<(), FrameError> {
        let size = parts
            .iter()
            .try_fold(0usize, |acc, p| acc.checked_add(p.len()))
            .unwrap_or(usize::MAX);
        if size > MAX_FRAME_SIZE {
            return Err(FrameError::TooLarge {
                size,
                max: MAX_FRAME_SIZE,
            });
        }
        let padded = padded_len(size);
        dst.reserve(HEADER_LEN + padded + BLOCK);

        // Header: encrypt, then MAC the ciphertext.
        let mut head = header::encode(size);
        self.keystream.apply_keystream(&mut head);
        let head_mac = self.mac.update_header(&head);
        dst.extend_from_slice(&head);
        dst.extend_from_slice(&head_mac);

        // Body: encrypt each part straight from the caller's slice into `dst` (no separate
        // copy pass), absorbing every piece while it is still in cache.
        for part in parts {
            for piece in part.chunks(SEAL_CHUNK) {
                self.encrypt_append(piece, dst);
            }
        }
        let pad = padded - size;
        self.encrypt_append(ZEROS.get(..pad).unwrap_or_default(), dst);
        let frame_mac = self.mac.finish_body();
        dst.extend_from_slice(&frame_mac);
        Ok(())
    }
}

impl FrameSealer {
    /// Appends the encryption of `plain` to `dst` and absorbs the ciphertext into the MAC.
    fn encrypt_append(&mut self, plain: &[u8], dst: &mut BytesMut) {
        let start = dst.len();
        dst.resize(start + plain.len(), 0);
        if let Some(out) = dst.get_mut(start..) {
            // Same length by construction, so the error arm is unreachable; nothing to recover.
            if self.keystream.apply_keystream_b2b(plain, out).is_ok() {
                self.mac.update(out);
            }
        }
    }
}

impl<'a> Encoder<&'a [u8]> for FrameSealer {
    type Error = FrameError;

    /// Seals `item` as the whole frame-data of one frame (see [`FrameSealer::seal`]).
    fn encode(&mut self, item: &'a [u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        self.seal(&[item], dst)
    }
}

impl std::fmt::Debug for FrameSealer {
    /// Shows nothing of the keystream or MAC: both are secrets of the session.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameSealer").finish_non_exhaustive()
    }
}
