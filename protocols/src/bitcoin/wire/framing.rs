//! Native bitcoin v1 framing: the 24-byte header used on plain bitcoin TCP.
//!
//! ```text
//! magic[4] | command[12] (ASCII, NUL-padded) | length u32 LE | checksum[4] | payload
//! ```
//!
//! The checksum is the first 4 bytes of the payload's double SHA-256.
//! Header checks follow btcd's order: oversize length (fatal, nothing more is
//! read), wrong magic (fatal), then invalid or unknown command and per-type
//! oversize (payload discarded so the stream stays in sync), then checksum
//! and payload decoding.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::command::Command;
use super::error::WireError;
use super::hash::checksum;
use super::limits::{max_payload_len, MAX_PROTOCOL_MESSAGE_LENGTH};
use super::message::Message;

/// Size of the frame header.
pub const HEADER_LEN: usize = 24;
/// Size of the command field in the header.
pub const COMMAND_LEN: usize = 12;
/// Initial payload buffer size: larger payloads grow the buffer only as
/// bytes actually arrive, so a header alone cannot make us allocate 4 MB.
const INITIAL_PAYLOAD_CAPACITY: usize = 64 * 1024;

/// A bitcoin network, identified on the wire by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    /// Bitcoin mainnet.
    Mainnet,
    /// Testnet3.
    Testnet3,
    /// Testnet4 (BIP94).
    Testnet4,
    /// The default signet.
    Signet,
    /// Regression test network.
    Regtest,
}

impl Network {
    /// Every network.
    pub const ALL: [Network; 5] = [
        Network::Mainnet,
        Network::Testnet3,
        Network::Testnet4,
        Network::Signet,
        Network::Regtest,
    ];

    /// The magic bytes in wire order.
    pub const fn magic(self) -> [u8; 4] {
        match self {
            Network::Mainnet => [0xf9, 0xbe, 0xb4, 0xd9],
            Network::Testnet3 => [0x0b, 0x11, 0x09, 0x07],
            Network::Testnet4 => [0x1c, 0x16, 0x3f, 0x28],
            Network::Signet => [0x0a, 0x03, 0xcf, 0x40],
            Network::Regtest => [0xfa, 0xbf, 0xb5, 0xda],
        }
    }

    /// The network using `magic`, if any.
    pub fn from_magic(magic: [u8; 4]) -> Option<Network> {
        Self::ALL.into_iter().find(|n| n.magic() == magic)
    }
}

/// A raw 24-byte frame header, not yet validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Network magic.
    pub magic: [u8; 4],
    /// Command name, NUL-padded.
    pub command: [u8; COMMAND_LEN],
    /// Payload length.
    pub length: u32,
    /// First 4 bytes of the payload's double SHA-256.
    pub checksum: [u8; 4],
}

impl FrameHeader {
    /// The header for `payload` sent as `cmd` on `network`.
    pub fn for_payload(network: Network, cmd: Command, payload: &[u8]) -> Result<Self, WireError> {
        let length = u32::try_from(payload.len())
            .ok()
            .filter(|&l| l as usize <= MAX_PROTOCOL_MESSAGE_LENGTH)
            .ok_or(WireError::PayloadTooLarge {
                command: cmd,
                len: payload.len(),
                max: MAX_PROTOCOL_MESSAGE_LENGTH,
            })?;
        let mut command = [0u8; COMMAND_LEN];
        // Every command name is at most 12 bytes (checked by a unit test).
        for (dst, src) in command.iter_mut().zip(cmd.as_str().bytes()) {
            *dst = src;
        }
        Ok(FrameHeader {
            magic: network.magic(),
            command,
            length,
            checksum: checksum(payload),
        })
    }

    /// Splits 24 bytes into the header fields.
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Self {
        let mut magic = [0u8; 4];
        let mut command = [0u8; COMMAND_LEN];
        let mut length = [0u8; 4];
        let mut sum = [0u8; 4];
        magic.copy_from_slice(&bytes[0..4]);
        command.copy_from_slice(&bytes[4..16]);
        length.copy_from_slice(&bytes[16..20]);
        sum.copy_from_slice(&bytes[20..24]);
        FrameHeader {
            magic,
            command,
            length: u32::from_le_bytes(length),
            checksum: sum,
        }
    }

    /// The 24-byte encoding.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&self.magic);
        out[4..16].copy_from_slice(&self.command);
        out[16..20].copy_from_slice(&self.length.to_le_bytes());
        out[20..24].copy_from_slice(&self.checksum);
        out
    }

    /// The command name: printable ASCII followed only by NUL padding (the
    /// rule of Core's `IsCommandValid`).
    pub fn command_name(&self) -> Result<&str, WireError> {
        let end = self
            .command
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(COMMAND_LEN);
        let (name, pad) = self.command.split_at(end);
        let printable = name.iter().all(|b| (0x20..=0x7e).contains(b));
        if !printable || pad.iter().any(|&b| b != 0) {
            return Err(WireError::InvalidCommand(self.command));
        }
        // Printable ASCII is valid UTF-8.
        std::str::from_utf8(name).map_err(|_| WireError::InvalidCommand(self.command))
    }

    /// Payload length as `usize` (lossless: it was checked against 4 MB or
    /// comes from a `u32`, which fits on every supported platform).
    fn payload_len(&self) -> usize {
        self.length as usize
    }
}

/// What to do with a frame after its header was checked.
enum HeaderVerdict {
    /// Read and decode the payload as this command.
    Decode(Command),
    /// Skip the payload, then report this error; the stream stays usable.
    Discard(WireError),
}

/// Header checks in btcd's order. `Err` means the stream is unusable.
fn check_header(h: &FrameHeader, network: Network, pver: u32) -> Result<HeaderVerdict, WireError> {
    if h.payload_len() > MAX_PROTOCOL_MESSAGE_LENGTH {
        return Err(WireError::FrameTooLarge {
            len: h.length,
            max: MAX_PROTOCOL_MESSAGE_LENGTH,
        });
    }
    if h.magic != network.magic() {
        return Err(WireError::WrongMagic(h.magic));
    }
    let name = match h.command_name() {
        Ok(name) => name,
        Err(e) => return Ok(HeaderVerdict::Discard(e)),
    };
    let Some(cmd) = Command::from_name(name.as_bytes()) else {
        return Ok(HeaderVerdict::Discard(WireError::UnknownCommand {
            name: name.to_owned(),
            len: h.length,
        }));
    };
    let max = max_payload_len(cmd, pver);
    if h.payload_len() > max {
        return Ok(HeaderVerdict::Discard(WireError::PayloadTooLarge {
            command: cmd,
            len: h.payload_len(),
            max,
        }));
    }
    Ok(HeaderVerdict::Decode(cmd))
}

fn verify_and_decode(
    h: &FrameHeader,
    cmd: Command,
    payload: Bytes,
    pver: u32,
) -> Result<Message, WireError> {
    let actual = checksum(&payload);
    if actual != h.checksum {
        return Err(WireError::ChecksumMismatch {
            expected: h.checksum,
            actual,
        });
    }
    Message::decode_payload_bytes(cmd, payload, pver)
}

/// Encodes `msg` as a complete v1 frame for `network` at protocol version `pver`.
pub fn encode_frame(network: Network, msg: &Message, pver: u32) -> Result<Vec<u8>, WireError> {
    let mut out = vec![0u8; HEADER_LEN];
    msg.encode_payload(pver, &mut out)?;
    let payload = out.get(HEADER_LEN..).unwrap_or_default();
    let header = FrameHeader::for_payload(network, msg.command(), payload)?;
    out[..HEADER_LEN].copy_from_slice(&header.to_bytes());
    Ok(out)
}

/// Decodes one frame from the start of `buf`, returning the message and the
/// number of bytes it occupied. An incomplete frame is
/// [`WireError::Truncated`]; errors that leave the stream in sync
/// ([`WireError::UnknownCommand`], [`WireError::InvalidCommand`],
/// [`WireError::PayloadTooLarge`]) mean `24 + header.length` bytes can be skipped.
pub fn decode_frame(
    buf: &[u8],
    network: Network,
    pver: u32,
) -> Result<(Message, usize), WireError> {
    let head: &[u8; HEADER_LEN] = buf
        .get(..HEADER_LEN)
        .and_then(|s| s.try_into().ok())
        .ok_or(WireError::Truncated {
            needed: HEADER_LEN,
            remaining: buf.len(),
        })?;
    let h = FrameHeader::parse(head);
    let cmd = match check_header(&h, network, pver)? {
        HeaderVerdict::Decode(cmd) => cmd,
        HeaderVerdict::Discard(e) => return Err(e),
    };
    let total = HEADER_LEN + h.payload_len();
    let payload = buf.get(HEADER_LEN..total).ok_or(WireError::Truncated {
        needed: h.payload_len(),
        remaining: buf.len() - HEADER_LEN,
    })?;
    let msg = verify_and_decode(&h, cmd, Bytes::copy_from_slice(payload), pver)?;
    Ok((msg, total))
}

/// Reads one frame from `r`, returning the message and the bytes consumed.
///
/// Payloads of unknown or invalid commands and of messages over their
/// per-type limit are read and dropped in bounded chunks before the error is
/// returned, so the caller may keep reading. This function does not time
/// out by itself: callers wrap it in `tokio::time::timeout` (the peer's idle
/// and stall timers).
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    network: Network,
    pver: u32,
) -> Result<(Message, usize), WireError> {
    let mut head = [0u8; HEADER_LEN];
    r.read_exact(&mut head).await?;
    let h = FrameHeader::parse(&head);
    let len = h.payload_len();
    let cmd = match check_header(&h, network, pver)? {
        HeaderVerdict::Decode(cmd) => cmd,
        HeaderVerdict::Discard(e) => {
            tracing::debug!(error = %e, len, "discarding bitcoin frame payload");
            let skipped = tokio::io::copy(
                &mut (&mut *r).take(u64::from(h.length)),
                &mut tokio::io::sink(),
            )
            .await?;
            if skipped != u64::from(h.length) {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            return Err(e);
        }
    };
    let mut payload = Vec::with_capacity(len.min(INITIAL_PAYLOAD_CAPACITY));
    (&mut *r)
        .take(u64::from(h.length))
        .read_to_end(&mut payload)
        .await?;
    if payload.len() != len {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
    }
    let msg = verify_and_decode(&h, cmd, Bytes::from(payload), pver)?;
    Ok((msg, HEADER_LEN + len))
}
