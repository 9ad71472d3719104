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
    pub fn new(
        aes_secret: &[u8; 32],
        mac_secret: &[u8; 32],
        ingress_mac: crate::keccak::Keccak256,
    ) -> Self {
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

    /// Verifies and decrypts one header (32 bytes: ciphertext then MAC) and returns the
    /// frame-data size it states, refused with [`FrameError::TooLarge`] above the limit.
    ///
    /// For readers that buffer each body themselves (the size is known, and can be
    /// charged, before any body byte is stored). Any error poisons the opener.
    pub fn open_header(&mut self, header: &[u8; HEADER_LEN]) -> Result<usize, FrameError> {
        let out = self.open_header_inner(header);
        self.poison_on_error(out)
    }

    /// Verifies and decrypts one body in place: `body` is the padded ciphertext followed by
    /// the 16-byte frame MAC, exactly [`FrameOpener::body_len`] bytes for the size
    /// [`FrameOpener::open_header`] returned. On success the first `size` bytes of `body`
    /// are the frame-data. Any error poisons the opener.
    pub fn open_body(&mut self, body: &mut [u8]) -> Result<(), FrameError> {
        let out = self.open_body_inner(body);
        self.poison_on_error(out)
    }

    /// Bytes the body of a frame of `size` bytes of frame-data takes on the wire
    /// (padding and frame MAC included).
    pub fn body_len(size: usize) -> usize {
        padded_len(size.min(MAX_FRAME_SIZE)) + BLOCK
    }

    fn poison_on_error<T>(&mut self, out: Result<T, FrameError>) -> Result<T, FrameError> {
        if self.state == State::Failed {
            return Err(FrameError::Poisoned);
        }
        if out.is_err() {
            self.state = State::Failed;
        }
        out
    }

    fn open_header_inner(&mut self, header: &[u8; HEADER_LEN]) -> Result<usize, FrameError> {
        let mut head = [0u8; BLOCK];
        head.copy_from_slice(&header[..BLOCK]);
        // MAC first: nothing the peer sent is decrypted or interpreted before it is authenticated.
        let expected = self.mac.update_header(&head);
        if !bool::from(expected.ct_eq(&header[BLOCK..])) {
            return Err(FrameError::HeaderMac);
        }
        self.keystream.apply_keystream(&mut head);
        let size = header::decode_size(&head);
        if size > self.max_frame_size {
            tracing::debug!(size, max = self.max_frame_size, "peer frame too large");
            return Err(FrameError::TooLarge {
                size,
                max: self.max_frame_size,
            });
        }
        Ok(size)
    }

    fn open_body_inner(&mut self, body: &mut [u8]) -> Result<(), FrameError> {
        let padded = body.len().checked_sub(BLOCK).ok_or(FrameError::FrameMac)?;
        let (ct, mac) = body.split_at_mut(padded);
        // MAC before decryption, as for the header.
        let expected = self.mac.update_body(ct);
        if !bool::from(expected.ct_eq(mac)) {
            return Err(FrameError::FrameMac);
        }
        // Decrypt the padding too: the keystream must advance over every body byte.
        self.keystream.apply_keystream(ct);
        Ok(())
    }

    /// Verifies, decrypts and consumes a header if all 32 bytes are there; returns its size.
    fn read_header(&mut self, src: &mut BytesMut) -> Result<Option<usize>, FrameError> {
        let Some(header) = src.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let mut buf = [0u8; HEADER_LEN];
        buf.copy_from_slice(header);
        let size = self.open_header_inner(&buf)?;
        src.advance(HEADER_LEN);
        Ok(Some(size))
    }

    /// Verifies, decrypts and splits off a body of `size` bytes if it has fully arrived.
    fn read_body(
        &mut self,
        size: usize,
        src: &mut BytesMut,
    ) -> Result<Option<BytesMut>, FrameError> {
        let total = Self::body_len(size);
        if src.len() < total {
            return Ok(None);
        }
        let mut frame = src.split_to(total);
        self.open_body_inner(&mut frame)?;
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
