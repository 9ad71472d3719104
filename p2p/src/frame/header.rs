//! The 16-byte plaintext frame header.

use super::BLOCK;

/// `rlp([capability-id = 0, context-id = 0])` as every client writes it; ignored when reading.
const HEADER_DATA: [u8; 3] = [0xc2, 0x80, 0x80];

/// Builds the plaintext header for `size` bytes of frame-data.
///
/// `size` must already be checked against [`super::MAX_FRAME_SIZE`]; only its low 24 bits are written.
pub(super) fn encode(size: usize) -> [u8; BLOCK] {
    debug_assert!(size <= super::MAX_FRAME_SIZE);
    // The low three big-endian bytes of a u32 are the 24-bit size.
    let [_, a, b, c] = u32::try_from(size).unwrap_or(u32::MAX).to_be_bytes();
    let mut header = [0u8; BLOCK];
    header[..3].copy_from_slice(&[a, b, c]);
    header[3..6].copy_from_slice(&HEADER_DATA);
    header
}

/// Reads the frame-data size from a decrypted header; bytes 3..16 carry nothing we use.
pub(super) fn decode_size(header: &[u8; BLOCK]) -> usize {
    usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_writes_size_and_header_data() {
        assert_eq!(
            encode(0x01_02_03),
            [1, 2, 3, 0xc2, 0x80, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(
            decode_size(&encode(super::super::MAX_FRAME_SIZE)),
            0xFF_FFFF
        );
    }

    #[test]
    fn decode_ignores_header_data() {
        let mut h = [0xffu8; BLOCK];
        h[..3].copy_from_slice(&[0, 0, 6]);
        assert_eq!(decode_size(&h), 6);
    }
}
