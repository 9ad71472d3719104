//! An established RLPx link: the ECIES handshake under a deadline, then whole
//! messages (message id + optional snappy) over sealed frames.
//!
//! The link splits into a [`ConnReader`] and a [`ConnWriter`] so that reading
//! and writing run in different tasks; each half owns its own cipher and MAC
//! state, as RLPx keeps one keystream and one MAC per direction.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use secp256k1::SecretKey;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::FramedRead;

use crate::base::DISCONNECT;
use crate::ecies::{self, HandshakeError};
use crate::frame::{FrameError, FrameOpener, FrameSealer, MAX_FRAME_SIZE};
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
}

/// One message as read from the link.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// The message code on the wire (base protocol codes and offset subprotocol codes).
    pub code: u64,
    /// The payload, decompressed when snappy is on (a Disconnect's payload is left as received,
    /// because peers send it both ways; see [`crate::base::DisconnectReason::decode_lenient`]).
    pub payload: Bytes,
    /// Bytes this message took in its frame (message id + payload as sent, before decompression).
    pub wire_size: usize,
    /// When the message was read.
    pub received_at: Instant,
}

/// A boxed byte stream half, so the layers above need no generics.
type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

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
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let secrets = tokio::time::timeout(timeout, ecies::initiate(&mut io, key, remote))
            .await
            .map_err(|_| ConnError::HandshakeTimeout(timeout))??;
        Ok(Self::from_secrets(io, secrets))
    }

    /// Listen side: run the recipient handshake on `io`, within `timeout`.
    pub async fn accept<S>(mut io: S, key: &SecretKey, timeout: Duration) -> Result<Conn, ConnError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let secrets = tokio::time::timeout(timeout, ecies::accept(&mut io, key))
            .await
            .map_err(|_| ConnError::HandshakeTimeout(timeout))??;
        Ok(Self::from_secrets(io, secrets))
    }

    /// Build the link from handshake secrets (also used by tests with fixed secrets).
    pub fn from_secrets<S>(io: S, secrets: ecies::Secrets) -> Conn
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (r, w) = tokio::io::split(io);
        let opener = FrameOpener::new(
            &secrets.aes_secret,
            &secrets.mac_secret,
            secrets.ingress_mac,
        );
        let sealer = FrameSealer::new(&secrets.aes_secret, &secrets.mac_secret, secrets.egress_mac);
        Conn {
            remote_id: secrets.remote_id,
            reader: ConnReader {
                frames: FramedRead::new(Box::new(r) as BoxRead, opener),
                snappy: None,
            },
            writer: ConnWriter {
                io: Box::new(w),
                sealer,
                buf: BytesMut::with_capacity(1024),
                id: BytesMut::with_capacity(9),
                snappy: None,
            },
        }
    }
}

/// The reading half of a link.
pub struct ConnReader {
    frames: FramedRead<BoxRead, FrameOpener>,
    snappy: Option<Snappy>,
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
        self.frames
            .decoder_mut()
            .set_max_frame_size(max.min(MAX_FRAME_SIZE));
    }

    /// Read the next whole message.
    pub async fn read(&mut self) -> Result<RawMessage, ConnError> {
        let frame = match self.frames.next().await {
            Some(frame) => frame?,
            None => return Err(ConnError::Closed),
        };
        let received_at = Instant::now();
        let wire_size = frame.len();
        let (code, data) = message::split_id(&frame)?;
        let payload = match &mut self.snappy {
            // A Disconnect may arrive compressed or not: the session layer decodes it leniently.
            Some(snappy) if code != DISCONNECT => snappy.decompress(data, MAX_DECOMPRESSED_SIZE)?,
            _ => Bytes::copy_from_slice(data),
        };
        Ok(RawMessage {
            code,
            payload,
            wire_size,
            received_at,
        })
    }
}

/// The writing half of a link. Buffers are reused across messages.
pub struct ConnWriter {
    io: BoxWrite,
    sealer: FrameSealer,
    buf: BytesMut,
    id: BytesMut,
    snappy: Option<Snappy>,
}

impl ConnWriter {
    /// Turn snappy compression on (after both Hellos say version 5 or more).
    pub fn enable_snappy(&mut self) {
        self.snappy.get_or_insert_with(Snappy::new);
    }

    /// Whether snappy is on for this direction.
    pub fn snappy_enabled(&self) -> bool {
        self.snappy.is_some()
    }

    /// Seal and write one message, returning the frame-data size (id + payload as sent).
    pub async fn write(&mut self, code: u64, payload: &[u8]) -> Result<usize, ConnError> {
        self.id.clear();
        message::encode_id(code, &mut self.id);
        let data: &[u8] = match &mut self.snappy {
            Some(snappy) => snappy.compress(payload)?,
            None => payload,
        };
        let size = self.id.len() + data.len();
        self.buf.clear();
        self.sealer.seal(&[&self.id, data], &mut self.buf)?;
        self.io.write_all(&self.buf).await?;
        self.io.flush().await?;
        // Keep the buffer from holding on to a one-off giant frame forever.
        if self.buf.capacity() > 256 * 1024 {
            self.buf = BytesMut::with_capacity(1024);
        }
        Ok(size)
    }

    /// Shut the write side down (sends FIN on TCP).
    pub async fn shutdown(&mut self) -> Result<(), ConnError> {
        self.io.shutdown().await?;
        Ok(())
    }
}
