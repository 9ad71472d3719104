//! Primitive reading and writing: little-endian integers, CompactSize,
//! length-prefixed byte strings.
//!
//! [`Reader`] is the only way decoders touch input bytes; it checks every
//! length against what is actually left, so a peer can never make us read
//! out of bounds or allocate more than it sent.

use super::error::WireError;

/// A bounds-checked cursor over untrusted input.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Whether all input has been consumed.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Consumes `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match rest.get(..n) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(WireError::Truncated {
                needed: n,
                remaining: rest.len(),
            }),
        }
    }

    /// Consumes exactly `N` bytes into an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a little-endian u16.
    pub fn u16_le(&mut self) -> Result<u16, WireError> {
        self.array().map(u16::from_le_bytes)
    }

    /// Reads a big-endian u16 (ports).
    pub fn u16_be(&mut self) -> Result<u16, WireError> {
        self.array().map(u16::from_be_bytes)
    }

    /// Reads a little-endian u32.
    pub fn u32_le(&mut self) -> Result<u32, WireError> {
        self.array().map(u32::from_le_bytes)
    }

    /// Reads a little-endian i32.
    pub fn i32_le(&mut self) -> Result<i32, WireError> {
        self.array().map(i32::from_le_bytes)
    }

    /// Reads a little-endian u64.
    pub fn u64_le(&mut self) -> Result<u64, WireError> {
        self.array().map(u64::from_le_bytes)
    }

    /// Reads a little-endian i64.
    pub fn i64_le(&mut self) -> Result<i64, WireError> {
        self.array().map(i64::from_le_bytes)
    }

    /// Reads a byte interpreted as a boolean; like Core and btcd, any
    /// non-zero value is `true`.
    pub fn bool(&mut self) -> Result<bool, WireError> {
        Ok(self.u8()? != 0)
    }

    /// Reads a CompactSize and rejects non-minimal encodings (as Core's
    /// `ReadCompactSize` and btcd's `ReadVarInt` do).
    pub fn compact_size(&mut self) -> Result<u64, WireError> {
        let (value, min) = match self.u8()? {
            0xfd => (u64::from(self.u16_le()?), 0xfd),
            0xfe => (u64::from(self.u32_le()?), 0x1_0000),
            0xff => (self.u64_le()?, 0x1_0000_0000),
            b => return Ok(u64::from(b)),
        };
        if value < min {
            return Err(WireError::NonCanonicalCompactSize { value });
        }
        Ok(value)
    }

    /// Reads a list count, checking it against `max` and against the bytes
    /// left (each item takes at least `min_item_len` bytes) *before* the
    /// caller allocates anything for the items.
    pub fn count(
        &mut self,
        what: &'static str,
        max: usize,
        min_item_len: usize,
    ) -> Result<usize, WireError> {
        let raw = self.compact_size()?;
        let count = usize::try_from(raw).map_err(|_| WireError::LengthOverflow(raw))?;
        if count > max {
            return Err(WireError::TooManyItems {
                what,
                count: raw,
                max,
            });
        }
        let needed = count.saturating_mul(min_item_len);
        if needed > self.remaining() {
            return Err(WireError::Truncated {
                needed,
                remaining: self.remaining(),
            });
        }
        Ok(count)
    }

    /// Reads a CompactSize-prefixed byte string of at most `max` bytes.
    pub fn var_bytes(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], WireError> {
        let raw = self.compact_size()?;
        let len = usize::try_from(raw).map_err(|_| WireError::LengthOverflow(raw))?;
        if len > max {
            return Err(WireError::FieldTooLong {
                what,
                len: raw,
                max,
            });
        }
        self.take(len)
    }

    /// Reads a CompactSize-prefixed UTF-8 string of at most `max` bytes.
    pub fn var_str(&mut self, what: &'static str, max: usize) -> Result<String, WireError> {
        let bytes = self.var_bytes(what, max)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| WireError::InvalidUtf8(what))
    }

    /// Fails if any input is left: a message must be consumed exactly.
    pub fn finish(&self) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(WireError::TrailingBytes(n)),
        }
    }
}

/// Appends the minimal CompactSize encoding of `n`.
pub fn put_compact_size(out: &mut Vec<u8>, n: u64) {
    // Each arm's range guarantees its narrowing cast is lossless.
    match n {
        0..=0xfc => out.push(n as u8),
        0xfd..=0xffff => {
            out.push(0xfd);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xfe);
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
        _ => {
            out.push(0xff);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
}

/// Appends a CompactSize length prefix followed by `bytes`.
pub fn put_var_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_compact_size(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Checks a list about to be encoded against its protocol limit, so we never
/// produce a message a conforming peer would reject.
pub fn check_count(what: &'static str, len: usize, max: usize) -> Result<(), WireError> {
    if len > max {
        return Err(WireError::TooManyItems {
            what,
            count: len as u64,
            max,
        });
    }
    Ok(())
}

/// Checks a byte field about to be encoded against its protocol limit.
pub fn check_len(what: &'static str, len: usize, max: usize) -> Result<(), WireError> {
    if len > max {
        return Err(WireError::FieldTooLong {
            what,
            len: len as u64,
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_size_round_trip_and_boundaries() {
        for n in [
            0u64,
            0xfc,
            0xfd,
            0xffff,
            0x1_0000,
            0xffff_ffff,
            0x1_0000_0000,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_compact_size(&mut out, n);
            let mut r = Reader::new(&out);
            assert_eq!(r.compact_size().unwrap(), n);
            assert!(r.finish().is_ok());
        }
    }

    #[test]
    fn compact_size_non_canonical_rejected() {
        for bad in [
            &[0xfd, 0x05, 0x00][..],
            &[0xfe, 0xff, 0xff, 0, 0],
            &[0xff, 1, 0, 0, 0, 0, 0, 0, 0],
        ] {
            assert!(matches!(
                Reader::new(bad).compact_size(),
                Err(WireError::NonCanonicalCompactSize { .. })
            ));
        }
    }

    #[test]
    fn count_checked_against_remaining_bytes() {
        // Claims 1000 items of 36 bytes but only 3 bytes follow.
        let buf = [0xfd, 0xe8, 0x03, 1, 2, 3];
        let err = Reader::new(&buf).count("inv", 50_000, 36).unwrap_err();
        assert!(matches!(
            err,
            WireError::Truncated {
                needed: 36_000,
                remaining: 3
            }
        ));
    }
}
