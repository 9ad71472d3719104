//! `chat/1` messages and their RLP encoding.
//!
//! | code | message | payload |
//! |------|---------|---------|
//! | 0x00 | `Say`   | `[id: 16 bytes, nick: string, text: string]` |
//! | 0x01 | `Nick`  | `[nick: string]` (sent once when the protocol starts) |

use rlp::{DecoderError, Rlp, RlpStream};

/// Number of message codes `chat/1` uses.
pub const LENGTH: u64 = 2;
/// Code of [`Say`].
pub const SAY: u64 = 0;
/// Code of a nick announcement.
pub const NICK: u64 = 1;
/// Longest nick accepted (bytes).
pub const MAX_NICK: usize = 32;
/// Longest line accepted (bytes).
pub const MAX_TEXT: usize = 4096;

/// Errors decoding chat messages.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// Not valid RLP of the expected shape.
    #[error("malformed chat message: {0}")]
    Rlp(#[from] DecoderError),
    /// A field is longer than allowed.
    #[error("{field} too long ({len} > {max} bytes)")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The message id is not 16 bytes.
    #[error("message id must be 16 bytes, got {0}")]
    BadId(usize),
}

/// One line said in the room, flooded to every peer once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Say {
    /// Random id used to suppress duplicates while flooding.
    pub id: [u8; 16],
    /// Who said it.
    pub nick: String,
    /// What was said.
    pub text: String,
}

fn string_field(
    r: &Rlp<'_>,
    index: usize,
    field: &'static str,
    max: usize,
) -> Result<String, ChatError> {
    let bytes: Vec<u8> = r.val_at(index)?;
    if bytes.len() > max {
        return Err(ChatError::TooLong {
            field,
            len: bytes.len(),
            max,
        });
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

impl Say {
    /// RLP payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut s = RlpStream::new_list(3);
        s.append(&self.id.as_slice());
        s.append(&self.nick.as_str());
        s.append(&self.text.as_str());
        s.out().to_vec()
    }

    /// Decode a payload (extra list items are ignored, for forward compatibility).
    pub fn decode(payload: &[u8]) -> Result<Say, ChatError> {
        let r = Rlp::new(payload);
        if !r.is_list() {
            return Err(DecoderError::RlpExpectedToBeList.into());
        }
        let id_bytes = r.at(0)?.data()?;
        let id: [u8; 16] = id_bytes
            .try_into()
            .map_err(|_| ChatError::BadId(id_bytes.len()))?;
        Ok(Say {
            id,
            nick: string_field(&r, 1, "nick", MAX_NICK)?,
            text: string_field(&r, 2, "text", MAX_TEXT)?,
        })
    }
}

/// Encode a nick announcement.
pub fn encode_nick(nick: &str) -> Vec<u8> {
    let mut s = RlpStream::new_list(1);
    s.append(&nick);
    s.out().to_vec()
}

/// Decode a nick announcement.
pub fn decode_nick(payload: &[u8]) -> Result<String, ChatError> {
    let r = Rlp::new(payload);
    if !r.is_list() {
        return Err(DecoderError::RlpExpectedToBeList.into());
    }
    string_field(&r, 0, "nick", MAX_NICK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn say_round_trip_and_known_bytes() {
        let say = Say {
            id: [7; 16],
            nick: "ann".into(),
            text: "hi".into(),
        };
        let enc = say.encode();
        // A 24-byte list: 0x90 + 16 id bytes, 0x83 "ann", 0x82 "hi".
        assert_eq!(enc.len(), 25);
        assert_eq!(enc[0], 0xc0 + 24);
        assert_eq!(&enc[1..3], &[0x90, 7]);
        assert_eq!(Say::decode(&enc).unwrap(), say);
    }

    #[test]
    fn hostile_payloads_are_typed_errors() {
        assert!(Say::decode(&[]).is_err());
        assert!(Say::decode(&[0x80]).is_err());
        assert!(Say::decode(&[0xc3, 0x81, 0x01, 0x80]).is_err());
        let long = Say {
            id: [0; 16],
            nick: "x".repeat(MAX_NICK + 1),
            text: String::new(),
        };
        assert!(matches!(
            Say::decode(&long.encode()),
            Err(ChatError::TooLong { field: "nick", .. })
        ));
        assert!(Say::decode(&[0xc3, 0x81, 0x99, 0x80]).is_err());
        assert_eq!(decode_nick(&encode_nick("bob")).unwrap(), "bob");
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = Say::decode(&bytes);
            let _ = decode_nick(&bytes);
        }
    }
}
