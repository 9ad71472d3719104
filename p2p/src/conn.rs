//! An established RLPx link: the ECIES handshake under a deadline, then whole
//! messages (message id + optional snappy) over sealed frames.
//!
//! The link splits into a [`ConnReader`] and a [`ConnWriter`] so that reading
//! and writing run in different tasks; each half owns its own cipher and MAC
//! state, as RLPx keeps one keystream and one MAC per direction.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use secp256k1::SecretKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod read_buf;
mod stream;

use read_buf::LazyBufReader;
use stream::{BoxRead, BoxWrite};
pub use stream::{BoxedStream, ByteStream};

use crate::base::{DisconnectReason, BASE_PROTOCOL_LENGTH, DISCONNECT, PONG};
use crate::budget::{BudgetExceeded, Charge, Holder};
use crate::ecies::{self, HandshakeError};
use crate::frame::{FrameError, FrameOpener, FrameSealer, HEADER_LEN, MAX_FRAME_SIZE};
use crate::message::{self, MessageError, Snappy, MAX_DECOMPRESSED_SIZE};
use crate::node::NodeId;

/// Default deadline for the whole encryption handshake (go-ethereum's value).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of the link layer.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The encryption handshake failed.
    #[error("encryption handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The encryption handshake did not finish within its deadline.
    #[error("encryption handshake timed out after {0:?}")]
    HandshakeTimeout(Duration),
    /// A frame could not be read or was forged.
    #[error("frame error: {0}")]
    Frame(#[from] FrameError),
    /// A frame held an invalid message.
    #[error("message error: {0}")]
    Message(#[from] MessageError),
    /// The remote closed the connection.
    #[error("connection closed by remote")]
    Closed,
    /// An I/O error while writing.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// Buffering the next message would take more memory than the node budget allows for
    /// this peer.
    #[error("{0}")]
    Budget(#[from] BudgetExceeded),
}

impl ConnError {
    /// The disconnect reason this failure of the link stands for: the one place link
    /// errors become reasons, for the Hello exchange and the running peer alike.
    ///
    /// A forged MAC, a lying header or a malformed message is the remote breaking the
    /// protocol (0x02); a broken or closed stream, or a handshake that ran out of time, is
    /// the transport failing (0x01); a peer whose next message does not fit the node's
    /// memory budget gets "too many peers" (0x04), as the node has no room for it.
    pub fn disconnect_reason(&self) -> DisconnectReason {
        match self {
            ConnError::Frame(FrameError::Io(_))
            | ConnError::Io(_)
            | ConnError::Closed
            | ConnError::HandshakeTimeout(_) => DisconnectReason::TcpSubsystemError,
            ConnError::Budget(_) => DisconnectReason::TooManyPeers,
            ConnError::Handshake(_) | ConnError::Frame(_) | ConnError::Message(_) => {
                DisconnectReason::ProtocolBreach
            }
        }
    }
}

/// Longest a reader waits for room in the node budget (after the largest holder was told
/// to go) before giving up on its own frame.
const BUDGET_WAIT: Duration = Duration::from_secs(5);

/// One message as read from the link.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// The message code on the wire (base protocol codes and offset subprotocol codes).
    pub code: u64,
    /// The payload, decompressed when snappy is on (a Disconnect's payload is left as received,
    /// because peers send it both ways; its reason is in [`RawMessage::disconnect`]).
    pub payload: Bytes,
    /// For a Disconnect (and only then), its reason, decoded leniently: compressed or not,
    /// a list or a bare value (see [`DisconnectReason::decode_lenient`]); a payload that
    /// decodes neither way reads as "disconnect requested" (0x00). Decoded here, once, so
    /// every layer above sees the same reason.
    pub disconnect: Option<DisconnectReason>,
    /// Bytes this message took in its frame (message id + payload as sent, before decompression).
    pub wire_size: usize,
    /// When the message was read.
    pub received_at: Instant,
    /// Bytes of `payload` still charged to the peer's memory budget (0 without a budget):
    /// whoever takes the message over owns that charge and must release it.
    pub charged: usize,
}

/// An encrypted link whose handshake has completed; split it to use it.
pub struct Conn {
    /// The authenticated remote node id.
    pub remote_id: NodeId,
    /// Reading half.
    pub reader: ConnReader,
    /// Writing half.
    pub writer: ConnWriter,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("remote_id", &self.remote_id)
            .finish()
    }
}

impl Conn {
    /// Dial side: run the initiator handshake on `io` toward `remote`, within `timeout`.
    pub async fn initiate<S>(
        mut io: S,
        key: &SecretKey,
        remote: &NodeId,
        timeout: Duration,
    ) -> Result<Conn, ConnError>
    where
        S: ByteStream,
    {
        let secrets = tokio::time::timeout(timeout, ecies::initiate(&mut io, key, remote))
            .await
            .map_err(|_| ConnError::HandshakeTimeout(timeout))??;
        Ok(Self::from_secrets(io, secrets))
    }

    /// Listen side: run the recipient handshake on `io`, within `timeout`.
    pub async fn accept<S>(mut io: S, key: &SecretKey, timeout: Duration) -> Result<Conn, ConnError>
    where
        S: ByteStream,
    {
        let secrets = tokio::time::timeout(timeout, ecies::accept(&mut io, key))
            .await
            .map_err(|_| ConnError::HandshakeTimeout(timeout))??;
        Ok(Self::from_secrets(io, secrets))
    }

    /// Build the link from handshake secrets (also used by tests with fixed secrets).
    pub fn from_secrets<S>(io: S, secrets: ecies::Secrets) -> Conn
    where
        S: ByteStream,
    {
        let (r, w) = Box::new(io).split_halves();
        let opener = FrameOpener::new(
            &secrets.aes_secret,
            &secrets.mac_secret,
            secrets.ingress_mac,
        );
        let sealer = FrameSealer::new(&secrets.aes_secret, &secrets.mac_secret, secrets.egress_mac);
        Conn {
            remote_id: secrets.remote_id,
            reader: ConnReader {
                io: LazyBufReader::new(r),
                opener,
                snappy: None,
                budget: None,
            },
            writer: ConnWriter {
                io: w,
                sealer,
                // Allocated by the first write: an idle link holds no send buffer.
                buf: BytesMut::new(),
                sent: 0,
                id: BytesMut::with_capacity(9),
                snappy: None,
            },
        }
    }
}

/// The reading half of a link.
///
/// Each frame body is read into an allocation of its own, sized by the (authenticated)
/// header; with a budget attached, that size is charged before the allocation is made,
/// and so is a snappy payload's stated size before it is decompressed. Every payload
/// returned owns exactly its bytes (no view into a shared read buffer).
pub struct ConnReader {
    /// Small frames are read through its buffer; a large body straight into its own
    /// allocation. Its large buffer exists only while data streams in.
    io: LazyBufReader<BoxRead>,
    opener: FrameOpener,
    snappy: Option<Snappy>,
    budget: Option<Holder>,
}

impl ConnReader {
    /// Turn snappy decompression on (after both Hellos say version 5 or more).
    pub fn enable_snappy(&mut self) {
        self.snappy.get_or_insert_with(Snappy::new);
    }

    /// Whether snappy is on for this direction.
    pub fn snappy_enabled(&self) -> bool {
        self.snappy.is_some()
    }

    /// The largest frame accepted from now on (checked on the frame header, before the body is
    /// buffered). Lowered while waiting for Hello.
    pub fn set_max_frame_size(&mut self, max: usize) {
        self.opener.set_max_frame_size(max.min(MAX_FRAME_SIZE));
    }

    /// Charge every buffer from now on to `holder` (one per peer, in the node budget).
    pub(crate) fn set_budget(&mut self, holder: Holder) {
        self.budget = Some(holder);
    }

    /// Read the next whole message.
    ///
    /// Base-protocol codes 0x04..=0x0f are reserved: their payload is discarded unread
    /// (never decompressed), and an empty payload is returned.
    pub async fn read(&mut self) -> Result<RawMessage, ConnError> {
        let mut header = [0u8; HEADER_LEN];
        // A clean close between frames is `Closed`; anywhere else it is an I/O error.
        let first = self.io.read(&mut header).await.map_err(FrameError::Io)?;
        if first == 0 {
            return Err(ConnError::Closed);
        }
        if let Some(rest) = header.get_mut(first..) {
            self.io.read_exact(rest).await.map_err(FrameError::Io)?;
        }
        let size = self.opener.open_header(&header)?;
        let body_len = FrameOpener::body_len(size);
        // Charged before a byte of the body is stored: the header's claim is paid up front.
        let mut frame_charge = charge(self.budget.as_ref(), body_len).await?;
        // Read into spare capacity rather than a zeroed buffer: memory is touched only as
        // bytes arrive, so a header claiming 16 MiB and then stalling costs its charge in
        // the budget, not 16 MiB of resident memory (and a bulk frame skips a memset).
        let mut body = Vec::with_capacity(body_len);
        while body.len() < body_len {
            let want = body_len - body.len();
            let n = self
                .io
                .read_buf(&mut (&mut body).limit(want))
                .await
                .map_err(FrameError::Io)?;
            if n == 0 {
                return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()).into());
            }
        }
        self.opener.open_body(&mut body)?;
        // tokio's clock, so that timing decisions taken from it (the ping bucket) follow a
        // paused or simulated clock too; it is the wall clock under a normal runtime.
        let received_at = tokio::time::Instant::now().into_std();
        body.truncate(size);
        let wire_size = size;
        let (code, data) = message::split_id(&body)?;
        let id_len = size - data.len();
        let reserved = (PONG + 1..BASE_PROTOCOL_LENGTH).contains(&code);
        let decompress = self.snappy.is_some() && code != DISCONNECT;
        let (payload, charge) = match () {
            _ if reserved => (Bytes::new(), None),
            // A Disconnect may arrive compressed or not: it is decoded leniently below.
            _ if decompress => {
                let len = Snappy::decompressed_len(data, MAX_DECOMPRESSED_SIZE)?;
                let charge = charge(self.budget.as_ref(), len).await?;
                let snappy = self.snappy.get_or_insert_with(Snappy::new);
                (snappy.decompress(data, MAX_DECOMPRESSED_SIZE)?, charge)
            }
            _ => {
                // Reuse the body's allocation: move the payload to its front and give back
                // the id, padding and MAC bytes, so the payload owns exactly its length.
                body.copy_within(id_len.., 0);
                body.truncate(size - id_len);
                body.shrink_to_fit();
                let len = body.len();
                if let Some(c) = frame_charge.as_mut() {
                    c.shrink_to(len);
                }
                (Bytes::from(body), frame_charge.take())
            }
        };
        drop(frame_charge);
        let disconnect = (code == DISCONNECT).then(|| self.disconnect_reason(&payload));
        Ok(RawMessage {
            code,
            payload,
            disconnect,
            wire_size,
            received_at,
            charged: charge.map_or(0, Charge::keep),
        })
    }
}

impl ConnReader {
    /// A Disconnect's reason: peers send it compressed or not whatever was agreed, so
    /// snappy is always tried first (with this link's decoder when it has one).
    fn disconnect_reason(&mut self, payload: &[u8]) -> DisconnectReason {
        let mut scratch = None;
        let snappy = match self.snappy.as_mut() {
            Some(snappy) => snappy,
            None => scratch.insert(Snappy::new()),
        };
        DisconnectReason::decode_lenient(payload, Some(snappy))
            .unwrap_or(DisconnectReason::DisconnectRequested)
    }
}

/// Charge `n` bytes to `holder`, if the link has one.
async fn charge(holder: Option<&Holder>, n: usize) -> Result<Option<Charge>, ConnError> {
    match holder {
        Some(holder) => Ok(Some(holder.charge(n, BUDGET_WAIT).await?)),
        None => Ok(None),
    }
}

/// The writing half of a link. Buffers are reused across messages.
pub struct ConnWriter {
    io: BoxWrite,
    sealer: FrameSealer,
    /// Sealed frames; `buf[sent..]` is still to be written.
    buf: BytesMut,
    /// How much of `buf` the socket has taken (kept across a cancelled flush).
    sent: usize,
    id: BytesMut,
    snappy: Option<Snappy>,
}

/// The send buffer a link keeps between writes: pings, pongs and small messages fit.
const KEEP_SEND_BUFFER: usize = 4 * 1024;

impl ConnWriter {
    /// Turn snappy compression on (after both Hellos say version 5 or more).
    pub fn enable_snappy(&mut self) {
        self.snappy.get_or_insert_with(Snappy::new);
    }

    /// Whether snappy is on for this direction.
    pub fn snappy_enabled(&self) -> bool {
        self.snappy.is_some()
    }

    /// Seal and write one message (after any queued before it), returning the frame-data
    /// size (id + payload as sent).
    pub async fn write(&mut self, code: u64, payload: &[u8]) -> Result<usize, ConnError> {
        let size = self.queue(code, payload)?;
        self.flush_queued().await?;
        Ok(size)
    }

    /// Seal one message into the send buffer without writing it, returning the frame-data
    /// size. Frames leave in the order they were queued, at the next
    /// [`ConnWriter::flush_queued`] (or [`ConnWriter::write`]): a run of small messages then
    /// costs one write to the socket instead of one each.
    pub fn queue(&mut self, code: u64, payload: &[u8]) -> Result<usize, ConnError> {
        self.id.clear();
        message::encode_id(code, &mut self.id);
        let data: &[u8] = match &mut self.snappy {
            Some(snappy) => snappy.compress(payload)?,
            None => payload,
        };
        let size = self.id.len() + data.len();
        self.sealer.seal(&[&self.id, data], &mut self.buf)?;
        Ok(size)
    }

    /// Bytes sealed and not yet written.
    pub fn queued(&self) -> usize {
        self.buf.len() - self.sent
    }

    /// Write everything queued. Cancel-safe: what was written is counted as it goes, so a
    /// later call continues where this one stopped.
    pub async fn flush_queued(&mut self) -> Result<(), ConnError> {
        while let Some(rest) = self.buf.get(self.sent..).filter(|r| !r.is_empty()) {
            let n = self.io.write(rest).await?;
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
            }
            self.sent += n;
        }
        self.buf.clear();
        self.sent = 0;
        self.io.flush().await?;
        // A burst (up to the coalescing bound and beyond) must not stay with a link that
        // goes quiet: beyond what a few small messages need, the buffer goes back to the
        // allocator once written, and the next burst allocates afresh.
        if self.buf.capacity() > KEEP_SEND_BUFFER {
            self.buf = BytesMut::new();
        }
        Ok(())
    }

    /// Shut the write side down (sends FIN on TCP).
    pub async fn shutdown(&mut self) -> Result<(), ConnError> {
        self.io.shutdown().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link over memory, both ends through the real handshake.
    async fn pair() -> (Conn, Conn) {
        let (a, b) = tokio::io::duplex(1 << 20);
        let (ka, kb) = (
            SecretKey::from_slice(&[1; 32]),
            SecretKey::from_slice(&[2; 32]),
        );
        let (ka, kb) = (ka.expect("key"), kb.expect("key"));
        let id_b = NodeId::from_secret(&kb);
        let t = Duration::from_secs(5);
        let (ca, cb) = tokio::join!(Conn::initiate(a, &ka, &id_b, t), Conn::accept(b, &kb, t));
        (ca.expect("initiate"), cb.expect("accept"))
    }

    /// A burst of queued frames leaves in order, and the buffer it took is not kept.
    #[tokio::test]
    async fn a_burst_is_written_in_order_and_its_buffer_released() {
        let (mut a, mut b) = pair().await;
        let payload = vec![0xab; 1_000];
        for code in 0x10..0x50u64 {
            a.writer.queue(code, &payload).expect("queue");
        }
        assert!(a.writer.queued() > 64 * 1_000, "64 frames queued");
        a.writer.flush_queued().await.expect("flush");
        assert_eq!(a.writer.queued(), 0);
        assert!(
            a.writer.buf.capacity() <= KEEP_SEND_BUFFER,
            "kept {} bytes after the burst",
            a.writer.buf.capacity()
        );
        for code in 0x10..0x50u64 {
            let msg = b.reader.read().await.expect("read");
            assert_eq!((msg.code, msg.payload.len()), (code, 1_000));
        }
        // A small message keeps its small buffer: no allocation per ping.
        a.writer.write(0x10, b"\x80").await.expect("small write");
        let kept = a.writer.buf.capacity();
        assert!(kept > 0 && kept <= KEEP_SEND_BUFFER, "kept {kept} bytes");
        a.writer.write(0x11, b"\x80").await.expect("small write");
        assert_eq!(a.writer.buf.capacity(), kept, "the same buffer, reused");
    }
}
