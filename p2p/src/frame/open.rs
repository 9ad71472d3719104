//! Ingress: verifying and decrypting frames as a `tokio_util` decoder.

use bytes::{Buf, BytesMut};
use ctr::cipher::StreamCipher;
use subtle::ConstantTimeEq;
use tokio_util::codec::Decoder;

use super::{header, keystream, mac::RlpxMac, padded_len, FrameError, Keystream, BLOCK};
use super::{HEADER_LEN, MAX_FRAME_SIZE};

/// Where the decoder is within the current frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the 32 bytes of header ciphertext and header MAC.
    Header,
    /// Header verified, decrypted and consumed; waiting for the body and frame MAC.
    Body {
        /// Frame-data size stated by the header (already checked against the limit).
        size: usize,
    },
    /// A previous call failed; the keystream and MAC are out of step with the peer.
    Failed,
}

/// Ingress half: a [`Decoder`] yielding frame-data (padding removed).
pub struct FrameOpener {
    keystream: Keystream,
    mac: RlpxMac,
    max_frame_size: usize,
    state: State,
}

impl FrameOpener {
    /// Creates the ingress half from the session's aes-secret, mac-secret and seeded ingress MAC
    /// state (`keccak((mac-secret ^ our-nonce) ‖ remote-handshake-packet)`).
    pub fn new(aes_secret: &[u8; 32], mac_secret: &[u8; 32], ingress_mac: sha3::Keccak256) -> Self {
        Self {
            keystream: keystream(aes_secret),
            mac: RlpxMac::new(mac_secret, ingress_mac),
            max_frame_size: MAX_FRAME_SIZE,
            state: State::Header,
        }
    }

    /// Largest frame-data size accepted; a header stating more is refused BEFORE reserving
    /// buffer space for the body ([`FrameError::TooLarge`]). Default [`MAX_FRAME_SIZE`]; values
    /// above it are clamped to it. The limit applies to headers read after this call.
    pub fn set_max_frame_size(&mut self, max: usize) {
        self.max_frame_size = max.min(MAX_FRAME_SIZE);
    }

    /// Largest frame-data size currently accepted.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Verifies, decrypts and consumes a header if all 32 bytes are there; returns its size.
    fn read_header(&mut self, src: &mut BytesMut) -> Result<Option<usize>, FrameError> {
        let (Some(ct), Some(mac)) = (src.get(..BLOCK), src.get(BLOCK..HEADER_LEN)) else {
            return Ok(None);
        };
        let mut head = [0u8; BLOCK];
        head.copy_from_slice(ct);
        // MAC first: nothing the peer sent is decrypted or interpreted before it is authenticated.
        let expected = self.mac.update_header(&head);
        if !bool::from(expected.ct_eq(mac)) {
            return Err(FrameError::HeaderMac);
        }
        self.keystream.apply_keystream(&mut head);
        src.advance(HEADER_LEN);
        Ok(Some(header::decode_size(&head)))
    }

    /// Verifies, decrypts and splits off a body of `size` bytes if it has fully arrived.
    fn read_body(
        &mut self,
        size: usize,
        src: &mut BytesMut,
    ) -> Result<Option<BytesMut>, FrameError> {
        let padded = padded_len(size);
        let total = padded + BLOCK;
        let (Some(ct), Some(mac)) = (src.get(..padded), src.get(padded..total)) else {
            return Ok(None);
        };
        // MAC before decryption, as for the header.
        let expected = self.mac.update_body(ct);
        if !bool::from(expected.ct_eq(mac)) {
            return Err(FrameError::FrameMac);
        }
        let mut frame = src.split_to(total);
        // Decrypt the padding too: the keystream must advance over every body byte.
        if let Some(body) = frame.get_mut(..padded) {
            self.keystream.apply_keystream(body);
        }
        frame.truncate(size);
        Ok(Some(frame))
    }

    fn decode_inner(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        loop {
            match self.state {
                State::Failed => return Err(FrameError::Poisoned),
                State::Header => {
                    let Some(size) = self.read_header(src)? else {
                        return Ok(None);
                    };
                    if size > self.max_frame_size {
                        tracing::debug!(size, max = self.max_frame_size, "peer frame too large");
                        return Err(FrameError::TooLarge {
                            size,
                            max: self.max_frame_size,
                        });
                    }
                    // Only now, with the size authenticated and within the limit, make room
                    // for the whole body so the transport can read it in as few calls as possible.
                    let needed = padded_len(size) + BLOCK;
                    src.reserve(needed.saturating_sub(src.len()));
                    self.state = State::Body { size };
                }
                State::Body { size } => {
                    let Some(frame) = self.read_body(size, src)? else {
                        return Ok(None);
                    };
                    self.state = State::Header;
                    return Ok(Some(frame));
                }
            }
        }
    }
}

impl Decoder for FrameOpener {
    type Item = BytesMut;
    type Error = FrameError;

    /// Yields the next frame's frame-data, `Ok(None)` until a whole frame has arrived.
    ///
    /// Partial input is kept in `src`; a header already verified is not MAC'd again.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        let out = self.decode_inner(src);
        if out.is_err() {
            self.state = State::Failed;
        }
        out
    }
}

impl std::fmt::Debug for FrameOpener {
    /// Shows the framing state only; the keystream and MAC are secrets of the session.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameOpener")
            .field("max_frame_size", &self.max_frame_size)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}
