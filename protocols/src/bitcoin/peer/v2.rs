//! BIP324 v2 encrypted transport over any byte stream, built on the sans-I/O core of the
//! `bip324` crate (ElligatorSwift key exchange, garbage, version packet, forward-secure
//! ChaCha20-Poly1305 that rekeys every 224 packets). Timeouts, bounded reads and typed
//! errors stay here: the garbage search stops at 4,095 bytes, a packet may carry at most
//! [`MAX_V2_CONTENTS`] bytes, and payloads are read in bounded steps rather than allocated
//! at their claimed size.
//!
//! Also here: inbound v1/v2 detection ([`accept_auto`], Core's rule: a v1 connection
//! starts with the network magic followed by `version`), and the outbound v2 attempt with
//! a v1 retry on the same address when the remote closed without sending a byte
//! ([`connect_auto`], as Core does).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bip324::{
    CipherSession, GarbageResult, Handshake, InboundCipher, Initialized, OutboundCipher,
    PacketType, Role, VersionResult,
};
use bytes::Bytes;
use rand::Rng;
use tokio::io::{
    AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf, ReadHalf, WriteHalf,
};
use tokio::net::{TcpListener, TcpStream};

use super::native::{NativeReader, NativeTransport, NativeWriter};
use super::transport::{
    Inbound, LinkClosed, Received, RecvError, SendError, Transport, TransportReader,
    TransportWriter,
};
use crate::bitcoin::wire::MAX_PROTOCOL_MESSAGE_LENGTH;
use crate::bitcoin::wire::{max_payload_len, Command, Message, Network, WireError};

/// Bytes of an ElligatorSwift public key.
const KEY_LEN: usize = 64;
/// Bytes of a garbage terminator.
const TERMINATOR_LEN: usize = 16;
/// BIP324: at most this much garbage precedes the terminator.
pub const MAX_GARBAGE_LEN: usize = 4095;
/// Encrypted length prefix of a packet.
const LENGTH_LEN: usize = 3;
/// Header byte plus authentication tag, beyond the contents.
const PACKET_OVERHEAD: usize = 1 + 16;
/// Largest packet contents accepted: a long-form message type (1 + 12 bytes) plus the
/// protocol's maximum payload.
pub const MAX_V2_CONTENTS: usize = 1 + 12 + MAX_PROTOCOL_MESSAGE_LENGTH;
/// Most garbage we send (random length up to this); well under the 4,095 limit.
const OUR_MAX_GARBAGE: usize = 256;
/// Decoy packets tolerated before the version packet during the handshake.
const MAX_HANDSHAKE_DECOYS: usize = 64;
/// Initial capacity when reading a packet; it grows only as bytes actually arrive.
const INITIAL_PACKET_CAPACITY: usize = 64 * 1024;
/// Buffered reads for the packet stream.
const READ_BUFFER: usize = 16 * 1024;
/// Bytes that open every v1 connection: magic then `version` padded to 12 bytes.
const V1_PREFIX_LEN: usize = 4 + 12;

/// BIP324 short message ids (index = id; 0 means "long form follows"). Ids for messages
/// this codec does not implement map to their names so they are reported as unknown.
const SHORT_IDS: [&str; 29] = [
    "",
    "addr",
    "block",
    "blocktxn",
    "cmpctblock",
    "feefilter",
    "filteradd",
    "filterclear",
    "filterload",
    "getblocks",
    "getblocktxn",
    "getdata",
    "getheaders",
    "headers",
    "inv",
    "mempool",
    "merkleblock",
    "notfound",
    "ping",
    "pong",
    "sendcmpct",
    "tx",
    "getcfilters",
    "cfilter",
    "getcfheaders",
    "cfheaders",
    "getcfcheckpt",
    "cfcheckpt",
    "addrv2",
];

/// The BIP324 short id of `cmd`, if it has one.
pub fn short_id(cmd: Command) -> Option<u8> {
    SHORT_IDS
        .iter()
        .position(|n| !n.is_empty() && *n == cmd.as_str())
        .and_then(|i| u8::try_from(i).ok())
}

/// Why a v2 handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum V2HandshakeError {
    /// The connection failed or ended.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The handshake did not finish within its deadline.
    #[error("v2 handshake timed out")]
    Timeout,
    /// The remote's key starts with our network magic: it speaks v1.
    #[error("remote speaks v1")]
    V1Peer,
    /// More than 4,095 bytes of garbage arrived without the terminator.
    #[error("no garbage terminator within {MAX_GARBAGE_LEN} bytes")]
    NoGarbageTerminator,
    /// A handshake packet announced more than [`MAX_V2_CONTENTS`] bytes.
    #[error("handshake packet of {0} bytes is too large")]
    PacketTooLarge(usize),
    /// Too many decoy packets before the version packet.
    #[error("more than {MAX_HANDSHAKE_DECOYS} decoy packets in the handshake")]
    TooManyDecoys,
    /// Key agreement or authentication failed.
    #[error("v2 cryptography failed: {0}")]
    Crypto(String),
}

impl V2HandshakeError {
    fn crypto(e: bip324::Error) -> Self {
        match e {
            bip324::Error::V1Protocol => V2HandshakeError::V1Peer,
            bip324::Error::NoGarbageTerminator => V2HandshakeError::NoGarbageTerminator,
            other => V2HandshakeError::Crypto(other.to_string()),
        }
    }
}

/// A byte stream that first replays bytes already read from it (detection bytes or bytes
/// past the handshake) and passes writes straight through.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Prefixed<S> {
    fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed {
            prefix: Bytes::from(prefix),
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Reads at least one more byte into `buf` (never past `limit` total bytes).
async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    limit: usize,
    received: &mut usize,
) -> io::Result<()> {
    let want = limit.saturating_sub(buf.len()).min(READ_BUFFER);
    if want == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "read limit"));
    }
    let start = buf.len();
    buf.resize(start + want, 0);
    let n = stream.read(&mut buf[start..]).await;
    let n = match n {
        Ok(n) => n,
        Err(e) => {
            buf.truncate(start);
            return Err(e);
        }
    };
    buf.truncate(start + n);
    *received += n;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// A completed v2 session over `S`.
pub struct V2Transport<S> {
    stream: Prefixed<S>,
    cipher: CipherSession,
    remote: Option<SocketAddr>,
    network: Network,
}

impl<S> std::fmt::Debug for V2Transport<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V2Transport")
            .field("remote", &self.remote)
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

/// Outcome of a failed handshake attempt, with whether the remote sent anything (Core
/// retries v1 only when it did not).
struct Attempt {
    error: V2HandshakeError,
    received: usize,
}

impl<S> V2Transport<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Run the BIP324 handshake on `stream` as `role` within `timeout`. `prefix` holds bytes
    /// already read from the stream (inbound detection).
    pub async fn handshake(
        stream: S,
        network: Network,
        role: Role,
        prefix: Vec<u8>,
        remote: Option<SocketAddr>,
        timeout: Duration,
    ) -> Result<Self, V2HandshakeError> {
        Self::attempt(stream, network, role, prefix, remote, timeout)
            .await
            .map_err(|a| a.error)
    }

    async fn attempt(
        mut stream: S,
        network: Network,
        role: Role,
        prefix: Vec<u8>,
        remote: Option<SocketAddr>,
        timeout: Duration,
    ) -> Result<Self, Attempt> {
        let mut received = 0usize;
        let res = tokio::time::timeout(
            timeout,
            run_handshake(&mut stream, network, role, prefix, &mut received),
        )
        .await;
        match res {
            Ok(Ok((cipher, leftover))) => Ok(V2Transport {
                stream: Prefixed::new(leftover, stream),
                cipher,
                remote,
                network,
            }),
            Ok(Err(error)) => Err(Attempt { error, received }),
            Err(_) => Err(Attempt {
                error: V2HandshakeError::Timeout,
                received,
            }),
        }
    }
}

async fn run_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    network: Network,
    role: Role,
    prefix: Vec<u8>,
    received: &mut usize,
) -> Result<(CipherSession, Vec<u8>), V2HandshakeError> {
    let hs =
        Handshake::<Initialized>::new(network.magic(), role).map_err(V2HandshakeError::crypto)?;
    let garbage: Vec<u8> = {
        let mut rng = rand::thread_rng();
        let len = rng.gen_range(0..=OUR_MAX_GARBAGE);
        (0..len).map(|_| rng.gen()).collect()
    };
    let garbage_ref = (!garbage.is_empty()).then_some(garbage.as_slice());
    let mut out = vec![0u8; Handshake::<Initialized>::send_key_len(garbage_ref)];
    let hs = hs
        .send_key(garbage_ref, &mut out)
        .map_err(V2HandshakeError::crypto)?;
    stream.write_all(&out).await?;
    stream.flush().await?;

    // The remote key (bytes of it may have arrived during detection).
    let mut buf = prefix;
    while buf.len() < KEY_LEN {
        read_more(stream, &mut buf, KEY_LEN, received).await?;
    }
    let mut key = [0u8; KEY_LEN];
    key.copy_from_slice(&buf[..KEY_LEN]);
    let rest = buf.split_off(KEY_LEN);
    let hs = hs.receive_key(key).map_err(V2HandshakeError::crypto)?;

    let mut out = vec![0u8; Handshake::send_version_len(None)];
    let mut hs = hs
        .send_version(&mut out, None)
        .map_err(V2HandshakeError::crypto)?;
    stream.write_all(&out).await?;
    stream.flush().await?;

    // Garbage and terminator: bounded at 4,095 + 16 bytes.
    let mut gbuf = rest;
    let garbage_limit = MAX_GARBAGE_LEN + TERMINATOR_LEN;
    let (mut hs, consumed) = loop {
        let scan = gbuf.len().min(garbage_limit);
        match hs.receive_garbage(&gbuf[..scan]) {
            Ok(GarbageResult::FoundGarbage {
                handshake,
                consumed_bytes,
            }) => break (handshake, consumed_bytes),
            Ok(GarbageResult::NeedMoreData(h)) => {
                if gbuf.len() >= garbage_limit {
                    return Err(V2HandshakeError::NoGarbageTerminator);
                }
                hs = h;
                // Read at most what the bound still allows.
                let limit = garbage_limit;
                read_more(stream, &mut gbuf, limit, received).await?;
            }
            Err(e) => return Err(V2HandshakeError::crypto(e)),
        }
    };
    // Bytes past the terminator: decoys and the version packet.
    let mut pkt: Vec<u8> = gbuf.get(consumed..).unwrap_or_default().to_vec();
    let mut decoys = 0usize;
    loop {
        while pkt.len() < LENGTH_LEN {
            read_more(stream, &mut pkt, usize::MAX, received).await?;
        }
        let len_bytes = [pkt[0], pkt[1], pkt[2]];
        let len = hs
            .decrypt_packet_len(len_bytes)
            .map_err(V2HandshakeError::crypto)?;
        if len > MAX_V2_CONTENTS + PACKET_OVERHEAD {
            return Err(V2HandshakeError::PacketTooLarge(len));
        }
        let total = LENGTH_LEN + len;
        while pkt.len() < total {
            read_more(stream, &mut pkt, total, received).await?;
        }
        let mut body = pkt[LENGTH_LEN..total].to_vec();
        let leftover = pkt.split_off(total);
        match hs
            .receive_version(&mut body)
            .map_err(V2HandshakeError::crypto)?
        {
            VersionResult::Complete { cipher } => return Ok((cipher, leftover)),
            VersionResult::Decoy(h) => {
                decoys += 1;
                if decoys > MAX_HANDSHAKE_DECOYS {
                    return Err(V2HandshakeError::TooManyDecoys);
                }
                hs = h;
                pkt = leftover;
            }
        }
    }
}

impl V2Transport<TcpStream> {
    /// Dial `addr` and run the v2 handshake as initiator, all within `timeout`.
    pub async fn connect(
        addr: SocketAddr,
        network: Network,
        timeout: Duration,
    ) -> Result<Self, V2HandshakeError> {
        let stream = dial(addr, timeout).await?;
        Self::handshake(
            stream,
            network,
            Role::Initiator,
            Vec::new(),
            Some(addr),
            timeout,
        )
        .await
    }
}

async fn dial(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl<S> Transport for V2Transport<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Reader = V2Reader<S>;
    type Writer = V2Writer<S>;

    fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote
    }

    fn split(self) -> (V2Reader<S>, V2Writer<S>) {
        let (r, w) = tokio::io::split(self.stream);
        let (inbound, outbound) = self.cipher.into_split();
        (
            V2Reader {
                inner: BufReader::with_capacity(READ_BUFFER, r),
                cipher: inbound,
            },
            V2Writer {
                inner: w,
                cipher: outbound,
            },
        )
    }
}

/// Receiving half of a [`V2Transport`].
pub struct V2Reader<S> {
    inner: BufReader<ReadHalf<Prefixed<S>>>,
    cipher: InboundCipher,
}

/// Splits decrypted packet contents into the message command name and its payload.
/// An unused short id is [`WireError::UnknownCommand`].
pub fn parse_contents(contents: &[u8]) -> Result<(&str, &[u8]), WireError> {
    let (&id, rest) = contents.split_first().ok_or(WireError::Truncated {
        needed: 1,
        remaining: 0,
    })?;
    if id != 0 {
        let name = SHORT_IDS.get(usize::from(id)).copied().unwrap_or("");
        if name.is_empty() {
            return Err(WireError::UnknownCommand {
                name: format!("short id {id}"),
                len: u32::try_from(rest.len()).unwrap_or(u32::MAX),
            });
        }
        return Ok((name, rest));
    }
    let field: &[u8] = rest.get(..12).ok_or(WireError::Truncated {
        needed: 12,
        remaining: rest.len(),
    })?;
    let end = field.iter().position(|&b| b == 0).unwrap_or(12);
    let (name, pad) = field.split_at(end);
    let invalid = || {
        let mut f = [0u8; 12];
        f.copy_from_slice(field);
        WireError::InvalidCommand(f)
    };
    if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) || pad.iter().any(|&b| b != 0)
    {
        return Err(invalid());
    }
    let name = std::str::from_utf8(name).map_err(|_| invalid())?;
    Ok((name, &rest[12..]))
}

/// Decodes decrypted packet contents at protocol version `pver`.
pub fn decode_contents(contents: &[u8], pver: u32) -> Result<Message, WireError> {
    let (name, payload) = parse_contents(contents)?;
    let Some(cmd) = Command::from_name(name.as_bytes()) else {
        return Err(WireError::UnknownCommand {
            name: name.to_owned(),
            len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
        });
    };
    let max = max_payload_len(cmd, pver);
    if payload.len() > max {
        return Err(WireError::PayloadTooLarge {
            command: cmd,
            len: payload.len(),
            max,
        });
    }
    Message::decode_payload(cmd, payload, pver)
}

/// Encodes `msg` as v2 packet contents (short id where BIP324 assigns one).
pub fn encode_contents(msg: &Message, pver: u32) -> Result<Vec<u8>, WireError> {
    let cmd = msg.command();
    let mut out = Vec::with_capacity(64);
    match short_id(cmd) {
        Some(id) => out.push(id),
        None => {
            out.push(0);
            let mut field = [0u8; 12];
            field[..cmd.as_str().len()].copy_from_slice(cmd.as_str().as_bytes());
            out.extend_from_slice(&field);
        }
    }
    let head = out.len();
    msg.encode_payload(pver, &mut out)?;
    let len = out.len() - head;
    if len > MAX_PROTOCOL_MESSAGE_LENGTH {
        return Err(WireError::PayloadTooLarge {
            command: cmd,
            len,
            max: MAX_PROTOCOL_MESSAGE_LENGTH,
        });
    }
    Ok(out)
}

impl<S: AsyncRead + Unpin + Send + 'static> TransportReader for V2Reader<S> {
    async fn recv(&mut self, pver: u32) -> Result<Received, RecvError> {
        let closed = |e: io::Error| RecvError::Closed(e.into());
        let mut bytes = 0usize;
        // Decoys are skipped; each one consumed bytes, so the caller's idle deadline bounds
        // this loop.
        loop {
            let mut len_bytes = [0u8; LENGTH_LEN];
            self.inner
                .read_exact(&mut len_bytes)
                .await
                .map_err(closed)?;
            let len = self.cipher.decrypt_packet_len(len_bytes);
            bytes += LENGTH_LEN;
            let contents_len = len - PACKET_OVERHEAD;
            if contents_len > MAX_V2_CONTENTS {
                // The stream cannot be resynchronised without reading it all; give up.
                return Err(RecvError::Malformed {
                    error: WireError::FrameTooLarge {
                        len: u32::try_from(contents_len).unwrap_or(u32::MAX),
                        max: MAX_PROTOCOL_MESSAGE_LENGTH,
                    },
                    bytes,
                });
            }
            let mut packet = Vec::with_capacity(len.min(INITIAL_PACKET_CAPACITY));
            (&mut self.inner)
                .take(len as u64)
                .read_to_end(&mut packet)
                .await
                .map_err(closed)?;
            bytes += packet.len();
            if packet.len() != len {
                return Err(RecvError::Closed(LinkClosed::TruncatedPacket));
            }
            let (kind, plain) = self
                .cipher
                .decrypt_in_place(&mut packet, None)
                .map_err(|e| {
                    tracing::debug!(error = %e, "v2 packet rejected");
                    RecvError::Closed(LinkClosed::Unauthenticated)
                })?;
            if kind == PacketType::Decoy {
                tracing::trace!(len, "ignoring v2 decoy packet");
                continue;
            }
            let contents = plain.get(1..).unwrap_or_default();
            return match decode_contents(contents, pver) {
                Ok(msg) => Ok(Received {
                    inbound: Inbound::Message(msg),
                    bytes,
                }),
                Err(WireError::UnknownCommand { name, .. }) => Ok(Received {
                    inbound: Inbound::Unknown(name),
                    bytes,
                }),
                Err(error) => Err(RecvError::Malformed { error, bytes }),
            };
        }
    }
}

/// Sending half of a [`V2Transport`].
pub struct V2Writer<S> {
    inner: WriteHalf<Prefixed<S>>,
    cipher: OutboundCipher,
}

impl<S: AsyncWrite + Unpin + Send + 'static> V2Writer<S> {
    async fn write_packet(
        &mut self,
        contents: &[u8],
        kind: PacketType,
    ) -> Result<usize, SendError> {
        let packet = self.cipher.encrypt_to_vec(contents, kind, None);
        let io = async {
            self.inner.write_all(&packet).await?;
            self.inner.flush().await
        };
        io.await.map_err(|e| SendError::Closed(e.into()))?;
        Ok(packet.len())
    }

    /// Send a decoy packet of `len` random bytes (BIP324 traffic shaping; the remote
    /// ignores it). `len` is capped at 4,096.
    pub async fn send_decoy(&mut self, len: usize) -> Result<usize, SendError> {
        let contents: Vec<u8> = {
            let mut rng = rand::thread_rng();
            (0..len.min(4096)).map(|_| rng.gen()).collect()
        };
        self.write_packet(&contents, PacketType::Decoy).await
    }
}

impl<S: AsyncWrite + Unpin + Send + 'static> TransportWriter for V2Writer<S> {
    async fn send(&mut self, msg: &Message, pver: u32) -> Result<usize, SendError> {
        let contents = encode_contents(msg, pver)?;
        self.write_packet(&contents, PacketType::Genuine).await
    }
}

/// A connection that speaks v1 or v2, decided at connect/accept time.
#[derive(Debug)]
pub enum AutoTransport<S> {
    /// Plaintext v1 framing.
    V1(NativeTransport<Prefixed<S>>),
    /// BIP324 v2.
    V2(V2Transport<S>),
}

impl<S> AutoTransport<S> {
    /// Whether the connection is encrypted (v2).
    pub fn is_v2(&self) -> bool {
        matches!(self, AutoTransport::V2(_))
    }
}

/// Receiving half of an [`AutoTransport`].
pub enum AutoReader<S> {
    /// v1.
    V1(NativeReader<Prefixed<S>>),
    /// v2.
    V2(V2Reader<S>),
}

/// Sending half of an [`AutoTransport`].
pub enum AutoWriter<S> {
    /// v1.
    V1(NativeWriter<Prefixed<S>>),
    /// v2.
    V2(V2Writer<S>),
}

impl<S> Transport for AutoTransport<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Reader = AutoReader<S>;
    type Writer = AutoWriter<S>;

    fn remote_addr(&self) -> Option<SocketAddr> {
        match self {
            AutoTransport::V1(t) => t.remote_addr(),
            AutoTransport::V2(t) => t.remote_addr(),
        }
    }

    fn split(self) -> (AutoReader<S>, AutoWriter<S>) {
        match self {
            AutoTransport::V1(t) => {
                let (r, w) = t.split();
                (AutoReader::V1(r), AutoWriter::V1(w))
            }
            AutoTransport::V2(t) => {
                let (r, w) = t.split();
                (AutoReader::V2(r), AutoWriter::V2(w))
            }
        }
    }
}

impl<S: AsyncRead + Unpin + Send + 'static> TransportReader for AutoReader<S> {
    async fn recv(&mut self, pver: u32) -> Result<Received, RecvError> {
        match self {
            AutoReader::V1(r) => r.recv(pver).await,
            AutoReader::V2(r) => r.recv(pver).await,
        }
    }
}

impl<S: AsyncWrite + Unpin + Send + 'static> TransportWriter for AutoWriter<S> {
    async fn send(&mut self, msg: &Message, pver: u32) -> Result<usize, SendError> {
        match self {
            AutoWriter::V1(w) => w.send(msg, pver).await,
            AutoWriter::V2(w) => w.send(msg, pver).await,
        }
    }
}

/// The 16 bytes that open a v1 connection on `network`.
fn v1_prefix(network: Network) -> [u8; V1_PREFIX_LEN] {
    let mut p = [0u8; V1_PREFIX_LEN];
    p[..4].copy_from_slice(&network.magic());
    p[4..11].copy_from_slice(b"version");
    p
}

/// Serve an inbound connection as v1 or v2 by its first bytes (Core's rule: v1 iff it
/// opens with the network magic and `version`); a v2 handshake follows as responder.
/// Everything, detection included, happens within `timeout`.
pub async fn detect_inbound<S>(
    mut stream: S,
    network: Network,
    remote: Option<SocketAddr>,
    timeout: Duration,
) -> Result<AutoTransport<S>, V2HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let expect = v1_prefix(network);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = Vec::with_capacity(V1_PREFIX_LEN);
    let mut received = 0usize;
    let detect = async {
        loop {
            if buf[..] != expect[..buf.len()] {
                return Ok(false);
            }
            if buf.len() >= V1_PREFIX_LEN {
                return Ok(true);
            }
            read_more(&mut stream, &mut buf, V1_PREFIX_LEN, &mut received).await?;
        }
    };
    let is_v1 = tokio::time::timeout_at(deadline, detect)
        .await
        .map_err(|_| V2HandshakeError::Timeout)?
        .map_err(V2HandshakeError::Io)?;
    if is_v1 {
        tracing::debug!(?remote, "inbound connection speaks v1");
        return Ok(AutoTransport::V1(NativeTransport::new(
            Prefixed::new(buf, stream),
            network,
            remote,
        )));
    }
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let t = V2Transport::handshake(stream, network, Role::Responder, buf, remote, left).await?;
    tracing::debug!(?remote, "inbound connection speaks v2");
    Ok(AutoTransport::V2(t))
}

/// Accept one connection from `listener` and detect v1 or v2 within `timeout`.
pub async fn accept_auto(
    listener: &TcpListener,
    network: Network,
    timeout: Duration,
) -> Result<AutoTransport<TcpStream>, V2HandshakeError> {
    let (stream, remote) = listener.accept().await?;
    stream.set_nodelay(true)?;
    detect_inbound(stream, network, Some(remote), timeout).await
}

/// Dial `addr`: with `try_v2` (the peer advertises `NODE_P2P_V2`, or the caller asks),
/// attempt v2 first and, when the remote closed or stayed silent without sending a byte
/// (what a v1-only node does with our key), reconnect with v1 on the same address as Core
/// does. Each attempt gets `timeout`.
pub async fn connect_auto(
    addr: SocketAddr,
    network: Network,
    timeout: Duration,
    try_v2: bool,
) -> Result<AutoTransport<TcpStream>, V2HandshakeError> {
    if try_v2 {
        let stream = dial(addr, timeout).await?;
        match V2Transport::attempt(
            stream,
            network,
            Role::Initiator,
            Vec::new(),
            Some(addr),
            timeout,
        )
        .await
        {
            Ok(t) => return Ok(AutoTransport::V2(t)),
            Err(Attempt { error, received: 0 }) => {
                tracing::debug!(%addr, %error, "v2 handshake failed before any reply; retrying v1");
            }
            Err(Attempt { error, .. }) => return Err(error),
        }
    }
    let stream = dial(addr, timeout).await?;
    Ok(AutoTransport::V1(NativeTransport::new(
        Prefixed::new(Vec::new(), stream),
        network,
        Some(addr),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bitcoin::wire::{encode_frame, pver, MsgPing};
    use tokio::io::duplex;

    const PVER: u32 = pver::PROTOCOL_VERSION;
    const T: Duration = Duration::from_secs(5);

    async fn pair() -> (
        V2Transport<tokio::io::DuplexStream>,
        V2Transport<tokio::io::DuplexStream>,
    ) {
        let (a, b) = duplex(64 * 1024);
        let ini = V2Transport::handshake(a, Network::Regtest, Role::Initiator, vec![], None, T);
        let res = V2Transport::handshake(b, Network::Regtest, Role::Responder, vec![], None, T);
        let (i, r) = tokio::join!(ini, res);
        (i.expect("initiator"), r.expect("responder"))
    }

    fn version_msg() -> Message {
        Message::Version(crate::bitcoin::wire::MsgVersion {
            version: PVER as i32,
            services: 0,
            timestamp: 0,
            addr_recv: Default::default(),
            addr_from: Default::default(),
            nonce: 1,
            user_agent: String::new(),
            start_height: 0,
            relay: true,
        })
    }

    fn ping(n: u64) -> Message {
        Message::Ping(MsgPing { nonce: n })
    }

    #[test]
    fn short_ids_follow_bip324() {
        assert_eq!(short_id(Command::Addr), Some(1));
        assert_eq!(short_id(Command::Ping), Some(18));
        assert_eq!(short_id(Command::Tx), Some(21));
        assert_eq!(short_id(Command::AddrV2), Some(28));
        assert_eq!(short_id(Command::Version), None);
        assert_eq!(short_id(Command::WtxidRelay), None);
        // Long form carries the 12-byte name.
        let c = encode_contents(&Message::Verack, PVER).unwrap();
        assert_eq!(&c[..7], b"\0verack");
        assert_eq!(c.len(), 13);
        assert_eq!(encode_contents(&ping(7), PVER).unwrap()[0], 18);
    }

    #[test]
    fn hostile_contents_are_typed_errors() {
        assert!(matches!(
            decode_contents(&[], PVER),
            Err(WireError::Truncated { .. })
        ));
        assert!(matches!(
            decode_contents(&[29, 1, 2], PVER),
            Err(WireError::UnknownCommand { .. })
        ));
        assert!(matches!(
            decode_contents(&[0, b'a', 0, b'b', 0, 0, 0, 0, 0, 0, 0, 0, 0], PVER),
            Err(WireError::InvalidCommand(_))
        ));
        assert!(matches!(
            decode_contents(&[0, b'v', b'e'], PVER),
            Err(WireError::Truncated { .. })
        ));
        // Known short id for a message this codec lacks: reported as unknown by name.
        assert!(matches!(
            decode_contents(&[3, 0], PVER),
            Err(WireError::UnknownCommand { name, .. }) if name == "blocktxn"
        ));
    }

    #[tokio::test]
    async fn handshake_and_messages_both_ways_across_rekeys() {
        let (i, r) = pair().await;
        let (mut ir, mut iw) = i.split();
        let (mut rr, mut rw) = r.split();
        // 224 packets per key: 600 messages crosses two rekeys in each direction.
        for n in 0..600u64 {
            iw.send(&ping(n), PVER).await.unwrap();
            let got = rr.recv(PVER).await.unwrap();
            assert!(
                matches!(got.inbound, Inbound::Message(Message::Ping(MsgPing { nonce })) if nonce == n)
            );
            rw.send(&Message::Pong(n), PVER).await.unwrap();
            let got = ir.recv(PVER).await.unwrap();
            assert!(matches!(got.inbound, Inbound::Message(Message::Pong(x)) if x == n));
        }
    }

    #[tokio::test]
    async fn decoys_are_ignored() {
        let (i, r) = pair().await;
        let (_ir, mut iw) = i.split();
        let (mut rr, _rw) = r.split();
        iw.send_decoy(100).await.unwrap();
        iw.send_decoy(0).await.unwrap();
        iw.send(&Message::Verack, PVER).await.unwrap();
        let got = rr.recv(PVER).await.unwrap();
        assert!(matches!(got.inbound, Inbound::Message(Message::Verack)));
        // Bytes include both decoys (20 + 100 and 20 + 0) and the verack (20 + 13).
        assert_eq!(got.bytes, 120 + 20 + 33);
    }

    #[tokio::test]
    async fn garbage_without_terminator_is_bounded() {
        let (ours, mut theirs) = duplex(64 * 1024);
        let task = tokio::spawn(V2Transport::handshake(
            ours,
            Network::Regtest,
            Role::Responder,
            vec![],
            None,
            T,
        ));
        // A random key (every 64 bytes decode to a point), then garbage with no terminator.
        let junk: Vec<u8> = (0..KEY_LEN + MAX_GARBAGE_LEN + TERMINATOR_LEN + 100)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7) | 1)
            .collect();
        let writer = async {
            let _ = theirs.write_all(&junk).await;
            let mut sink = vec![0u8; 8192];
            // Drain what the handshake sends so it never blocks on a full pipe.
            while let Ok(n) = theirs.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        };
        let (res, _) = tokio::join!(task, writer);
        assert!(matches!(
            res.unwrap(),
            Err(V2HandshakeError::NoGarbageTerminator)
        ));
    }

    #[tokio::test]
    async fn inbound_detection_v1_and_v2() {
        // v1: the first bytes are magic + "version".
        let (a, mut b) = duplex(64 * 1024);
        let msg = version_msg();
        let frame = encode_frame(Network::Regtest, &msg, PVER).unwrap();
        b.write_all(&frame).await.unwrap();
        let t = detect_inbound(a, Network::Regtest, None, T).await.unwrap();
        assert!(!t.is_v2());
        let (mut r, _w) = t.split();
        let got = r.recv(PVER).await.unwrap();
        assert!(matches!(got.inbound, Inbound::Message(Message::Version(_))));
        assert_eq!(got.bytes, frame.len());

        // v2: anything else, then a responder handshake.
        let (a, b) = duplex(64 * 1024);
        let ini = V2Transport::handshake(b, Network::Regtest, Role::Initiator, vec![], None, T);
        let (res, ini) = tokio::join!(detect_inbound(a, Network::Regtest, None, T), ini);
        let t = res.unwrap();
        assert!(t.is_v2());
        let (_ir, mut iw) = ini.unwrap().split();
        let (mut r, _w) = t.split();
        iw.send(&Message::GetAddr, PVER).await.unwrap();
        assert!(matches!(
            r.recv(PVER).await.unwrap().inbound,
            Inbound::Message(Message::GetAddr)
        ));
    }

    #[tokio::test]
    async fn v1_peer_key_is_recognised() {
        // A v1 version header arriving where the responder expects a key.
        let (a, mut b) = duplex(64 * 1024);
        let msg = version_msg();
        let frame = encode_frame(Network::Regtest, &msg, PVER).unwrap();
        b.write_all(&frame).await.unwrap();
        let res =
            V2Transport::handshake(a, Network::Regtest, Role::Responder, vec![], None, T).await;
        assert!(matches!(res, Err(V2HandshakeError::V1Peer)));
    }

    #[tokio::test]
    async fn outbound_falls_back_to_v1_on_a_v1_only_peer() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            // First connection: a v1 node sees a wrong magic and hangs up.
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 24];
            s.read_exact(&mut head).await.unwrap();
            assert_ne!(head[..4], Network::Regtest.magic());
            drop(s);
            // Second: plain v1.
            let t = NativeTransport::accept(&listener, Network::Regtest)
                .await
                .unwrap();
            let (mut r, _w) = t.split();
            r.recv(PVER).await.unwrap()
        });
        let t = connect_auto(addr, Network::Regtest, T, true).await.unwrap();
        assert!(!t.is_v2());
        let (_r, mut w) = t.split();
        w.send(&Message::Verack, PVER).await.unwrap();
        let got = tokio::time::timeout(T, server).await.unwrap().unwrap();
        assert!(matches!(got.inbound, Inbound::Message(Message::Verack)));
    }

    #[tokio::test]
    async fn outbound_v2_against_auto_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let t = accept_auto(&listener, Network::Regtest, T).await.unwrap();
            assert!(t.is_v2());
            let (mut r, _w) = t.split();
            r.recv(PVER).await.unwrap()
        });
        let t = connect_auto(addr, Network::Regtest, T, true).await.unwrap();
        assert!(t.is_v2());
        let (_r, mut w) = t.split();
        w.send(&ping(9), PVER).await.unwrap();
        let got = tokio::time::timeout(T, server).await.unwrap().unwrap();
        assert!(matches!(got.inbound, Inbound::Message(Message::Ping(_))));
    }
}
