//! 32-byte double-SHA-256 hashes (txids, block hashes, inventory hashes).

use std::fmt;

use sha2::{Digest, Sha256};

/// A 32-byte hash in wire (internal) byte order.
///
/// `Display`/`Debug` print it the way bitcoin tools do: bytes reversed, as hex
/// (so block hashes show their leading zeros first).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash256(pub [u8; 32]);

impl Hash256 {
    /// The all-zero hash (e.g. "no stop hash" in `getblocks`).
    pub const ZERO: Hash256 = Hash256([0; 32]);

    /// Wraps bytes in wire order.
    pub const fn from_byte_array(bytes: [u8; 32]) -> Self {
        Hash256(bytes)
    }

    /// The bytes in wire order.
    pub const fn to_byte_array(self) -> [u8; 32] {
        self.0
    }

    /// Parses the usual reversed-hex display form.
    pub fn from_display_hex(s: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).ok()?;
        bytes.reverse();
        Some(Hash256(bytes))
    }

    /// Double SHA-256 of `data`.
    pub fn hash(data: &[u8]) -> Self {
        Self::hash_parts(&[data])
    }

    /// Double SHA-256 of the concatenation of `parts`, without copying them
    /// together first (used for txids of segwit transactions).
    pub fn hash_parts(parts: &[&[u8]]) -> Self {
        let mut inner = Sha256::new();
        for p in parts {
            inner.update(p);
        }
        Hash256(Sha256::digest(inner.finalize()).into())
    }
}

impl fmt::Display for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.iter().rev() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash256({self})")
    }
}

/// The frame checksum: first 4 bytes of the double SHA-256 of `payload`.
pub fn checksum(payload: &[u8]) -> [u8; 4] {
    let h = Hash256::hash(payload).0;
    [h[0], h[1], h[2], h[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_payload_checksum() {
        assert_eq!(checksum(&[]), [0x5d, 0xf6, 0xe0, 0xe2]);
    }

    #[test]
    fn display_is_reversed_hex() {
        let mut b = [0u8; 32];
        b[31] = 0xab;
        b[0] = 0x01;
        let h = Hash256(b);
        let s = h.to_string();
        assert!(s.starts_with("ab00"));
        assert!(s.ends_with("0001"));
        assert_eq!(Hash256::from_display_hex(&s), Some(h));
    }
}
