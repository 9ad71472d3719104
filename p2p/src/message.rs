//! Message coding on top of RLPx frame-data: the RLP-integer message id in front of
//! the payload, and the per-connection snappy state used once both sides speak
//! base protocol version 5 or later (EIP-706).
//!
//! ```text
//! frame-data = rlp(msg-id) || payload      payload = snappy(rlp(...)) after a v5 Hello
//! ```
//!
//! Only the payload is ever compressed, never the id, and the Hello itself is sent
//! uncompressed; deciding *when* to compress is the connection's job, not this module's.

use bytes::{Bytes, BytesMut};
use rlp::{Rlp, RlpStream};

/// Largest decompressed payload accepted (EIP-706 / reth: 16 MiB).
///
/// geth rejects anything above `0xFF_FFFF`, one byte less; the difference only
/// matters for a payload of exactly 16 MiB, which no real protocol sends.
pub const MAX_DECOMPRESSED_SIZE: usize = 16 * 1024 * 1024;

/// Compression scratch kept between messages (reth keeps at most 256 KiB likewise).
const RETAINED_SCRATCH: usize = 256 * 1024;

/// Why frame-data could not be turned into (or made from) a message.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Frame-data carried no bytes at all, so there is not even a message id.
    #[error("empty frame-data: no message id")]
    Empty,
    /// The message id is not a canonical RLP integer that fits in a `u64`.
    #[error("invalid message id: not a canonical RLP integer of at most 64 bits")]
    InvalidId,
    /// A payload is (or claims to be) larger than the allowed maximum.
    #[error("payload of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the payload, as stated by the snappy header or as given.
        size: usize,
        /// The limit that was applied.
        max: usize,
    },
    /// Snappy rejected the data (corrupt block, bad header, truncated input, empty input).
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
    /// The block decoded to a length other than its header stated.
    #[error("snappy block decoded to {decoded} bytes, its header stated {stated}")]
    SnappyLength {
        /// The length the header stated.
        stated: usize,
        /// The length actually decoded.
        decoded: usize,
    },
}

/// Appends `rlp(code)` to `out`.
///
/// The id is an RLP integer: 0 becomes `0x80`, 1..=0x7f are a single byte, larger
/// values are `0x80 + n` followed by `n` big-endian bytes. Writing straight into the
/// caller's buffer (rather than returning a fixed array) lets a frame writer build
/// `id || payload` in one reused allocation.
pub fn encode_id(code: u64, out: &mut BytesMut) {
    // RlpStream appends at the end of the buffer it is given, so handing it the
    // caller's buffer costs no copy; the buffer is put back right after.
    let mut stream = RlpStream::new_with_buffer(std::mem::take(out));
    stream.append(&code);
    *out = stream.out();
}

/// Splits frame-data into `(code, payload)`.
///
/// Only canonical RLP integers are accepted as ids (as geth's `rlp.SplitUint64`):
/// `0x00`, `0x81 0x05` and ids with leading zero bytes are rejected, as are lists
/// and ids wider than 64 bits. The payload is whatever follows the id, untouched
/// (it may still be snappy-compressed).
pub fn split_id(frame_data: &[u8]) -> Result<(u64, &[u8]), MessageError> {
    if frame_data.is_empty() {
        return Err(MessageError::Empty);
    }
    let rlp = Rlp::new(frame_data);
    if rlp.is_list() {
        return Err(MessageError::InvalidId);
    }
    // payload_info rejects truncated items and non-canonical long-form headers;
    // the u64 decoder then rejects `0x00`, `0x81 <0x80` and leading zero bytes.
    let id_len = rlp
        .payload_info()
        .map_err(|_| MessageError::InvalidId)?
        .total();
    let (id_bytes, payload) = frame_data
        .split_at_checked(id_len)
        .ok_or(MessageError::InvalidId)?;
    let code: u64 = Rlp::new(id_bytes)
        .as_val()
        .map_err(|_| MessageError::InvalidId)?;
    Ok((code, payload))
}

/// Reusable snappy state for one connection direction.
///
/// Holds the raw-block encoder/decoder and scratch buffers so that steady traffic does
/// not allocate per message: `compress` writes into a reused scratch `Vec`. `decompress`
/// allocates each payload on its own, sized to it, because the payload is handed on.
pub struct Snappy {
    /// Made on first use: the encoder's table is 2 KiB, and a reading direction never
    /// compresses.
    encoder: Option<Box<snap::raw::Encoder>>,
    decoder: snap::raw::Decoder,
    compressed: Vec<u8>,
}

impl std::fmt::Debug for Snappy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Capacities only: the scratch buffers can hold megabytes of peer data.
        f.debug_struct("Snappy")
            .field("compress_scratch", &self.compressed.capacity())
            .finish()
    }
}

impl Default for Snappy {
    fn default() -> Self {
        Self::new()
    }
}

impl Snappy {
    /// Fresh state with empty scratch buffers.
    pub fn new() -> Self {
        Snappy {
            encoder: None,
            decoder: snap::raw::Decoder::new(),
            compressed: Vec::new(),
        }
    }

    /// Compresses `payload` as one raw snappy block into the reused scratch buffer.
    ///
    /// Payloads larger than [`MAX_DECOMPRESSED_SIZE`] are refused: every peer would
    /// reject them after decompression anyway.
    pub fn compress(&mut self, payload: &[u8]) -> Result<&[u8], MessageError> {
        if payload.len() > MAX_DECOMPRESSED_SIZE {
            return Err(MessageError::TooLarge {
                size: payload.len(),
                max: MAX_DECOMPRESSED_SIZE,
            });
        }
        let bound = snap::raw::max_compress_len(payload.len());
        if bound == 0 {
            return Err(MessageError::TooLarge {
                size: payload.len(),
                max: MAX_DECOMPRESSED_SIZE,
            });
        }
        if self.compressed.len() < bound {
            self.compressed.resize(bound, 0);
        } else if self.compressed.len() > RETAINED_SCRATCH && bound <= RETAINED_SCRATCH {
            // One large message must not pin a 16 MiB scratch buffer for the life of the
            // connection: fall back to the everyday size once messages are small again.
            self.compressed = vec![0; RETAINED_SCRATCH];
        }
        let encoder = self
            .encoder
            .get_or_insert_with(|| Box::new(snap::raw::Encoder::new()));
        let n = encoder.compress(payload, &mut self.compressed)?;
        // The buffer was sized with snappy's own bound, so `n` always fits.
        Ok(&self.compressed[..n.min(self.compressed.len())])
    }

    /// The decompressed length `data` states in its snappy header, refused above `max`.
    ///
    /// Only a claim (checked again while decoding); it lets a caller charge the memory
    /// before anything of that size is allocated.
    pub fn decompressed_len(data: &[u8], max: usize) -> Result<usize, MessageError> {
        if data.is_empty() {
            return Err(MessageError::Snappy(snap::Error::Empty));
        }
        let size = snap::raw::decompress_len(data)?;
        if size > max {
            return Err(MessageError::TooLarge { size, max });
        }
        Ok(size)
    }

    /// Check snappy's stated decompressed length against `max` BEFORE allocating, then decompress.
    ///
    /// The length a peer states in the snappy header is only a claim: it is compared
    /// with `max` before any buffer of that size exists, so a 5-byte message claiming
    /// 1 GiB costs nothing. snap itself then checks that the block really decodes to
    /// exactly the stated length.
    ///
    /// The result owns an allocation of exactly its length: a payload a protocol keeps
    /// (a cached transaction, say) must not keep a larger shared buffer alive.
    pub fn decompress(&mut self, data: &[u8], max: usize) -> Result<Bytes, MessageError> {
        let size = Self::decompressed_len(data, max)?;
        let mut out = vec![0u8; size];
        match self.decoder.decompress(data, &mut out) {
            Ok(n) if n == size => Ok(Bytes::from(out)),
            Ok(n) => Err(MessageError::SnappyLength {
                stated: size,
                decoded: n,
            }),
            Err(e) => Err(MessageError::Snappy(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_shrinks_back_after_a_large_message() {
        let mut snappy = Snappy::new();
        let big: Vec<u8> = (0..4 * 1024 * 1024u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        snappy.compress(&big).unwrap();
        assert!(snappy.compressed.len() > RETAINED_SCRATCH);
        let small = snappy.compress(b"\xc3\x01\x02\x03").unwrap().to_vec();
        assert!(snappy.compressed.len() <= RETAINED_SCRATCH);
        // And it still compresses correctly.
        let round = snappy.decompress(&small, 1024).unwrap();
        assert_eq!(&round[..], b"\xc3\x01\x02\x03");
    }

    /// A payload kept after decompression must own exactly its bytes, not a view into a
    /// buffer shared with other (larger) messages.
    #[test]
    fn a_decompressed_payload_owns_exactly_its_bytes() {
        let mut snappy = Snappy::new();
        let big = vec![0u8; 8 * 1024 * 1024];
        let big_c = snap::raw::Encoder::new().compress_vec(&big).unwrap();
        let small_c = snap::raw::Encoder::new().compress_vec(&[7u8; 32]).unwrap();
        drop(snappy.decompress(&big_c, MAX_DECOMPRESSED_SIZE).unwrap());
        let small = snappy.decompress(&small_c, MAX_DECOMPRESSED_SIZE).unwrap();
        let owned = small
            .try_into_mut()
            .expect("the payload shares its allocation with the decompressor");
        assert_eq!(owned.len(), 32);
        assert!(
            owned.capacity() < 64,
            "32-byte payload pins {} bytes",
            owned.capacity()
        );
    }
}
