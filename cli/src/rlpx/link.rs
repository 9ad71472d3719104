//! A test client's RLPx link: the same handshake and frames as braid's dialer, with the
//! knobs a conformance test needs (which auth to send, which Hello to send, when to
//! compress, and a byte to corrupt on the way out).
//!
//! Everything here is built from `p2p`'s public layers; nothing is re-implemented.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use p2p::base::{DisconnectReason, Hello, DISCONNECT, HELLO, MAX_HELLO_SIZE, PING, PONG};
use p2p::conn::{Conn, ConnError, ConnReader, ConnWriter, RawMessage};
use p2p::ecies::{self, HandshakeError, Initiator};
use p2p::frame::MAX_FRAME_SIZE;
use p2p::message::Snappy;
use p2p::node::{Enode, NodeId};
use rlp::RlpStream;
use secp256k1::SecretKey;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Errors of the test client.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// TCP connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address dialed.
        addr: SocketAddr,
        /// The operating system's error (refused, unreachable…).
        source: std::io::Error,
    },
    /// A step did not finish in time.
    #[error("{0} timed out after {1:?}")]
    Timeout(&'static str, Duration),
    /// The encryption handshake failed.
    #[error("encryption handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// Reading or writing the link failed.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// The remote refused the link with a Disconnect.
    #[error("remote disconnected: {0}")]
    Disconnected(DisconnectReason),
    /// The remote's Hello was malformed or not what the protocol requires.
    #[error("bad hello from remote: {0}")]
    BadHello(String),
    /// The remote sent something else than the step expected.
    #[error("unexpected message {code:#x} ({size} bytes)")]
    Unexpected {
        /// Its code.
        code: u64,
        /// Its payload size.
        size: usize,
    },
}

/// Which auth packet opens the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// EIP-8: RLP body, size prefix, random padding (what braid and geth send).
    Eip8,
    /// Pre-EIP-8 fixed 307-byte auth.
    Legacy,
    /// EIP-8 with a higher version and extra list elements, which EIP-8 requires a
    /// recipient to accept.
    Eip8Extended,
}

/// What our Hello says.
#[derive(Debug, Clone)]
pub struct HelloSpec {
    /// Base protocol version (5 turns snappy on when the remote also says 5+).
    pub version: u64,
    /// Capabilities as (name, version).
    pub caps: Vec<(String, u32)>,
    /// Extra list elements appended after the node id (EIP-8: must be ignored).
    pub extra_fields: bool,
    /// Claim this node id instead of ours (identity checks).
    pub claimed_id: Option<NodeId>,
}

impl HelloSpec {
    /// A p2p v5 Hello offering `caps`.
    pub fn v5(caps: &[(String, u32)]) -> Self {
        HelloSpec {
            version: 5,
            caps: caps.to_vec(),
            extra_fields: false,
            claimed_id: None,
        }
    }

    fn encode(&self, our_id: &NodeId) -> Vec<u8> {
        let id = self.claimed_id.unwrap_or(*our_id);
        let mut s = RlpStream::new_list(5 + if self.extra_fields { 2 } else { 0 });
        s.append(&self.version);
        s.append(&concat!("braid-cli/v", env!("CARGO_PKG_VERSION")));
        s.begin_list(self.caps.len());
        for (name, version) in &self.caps {
            s.begin_list(2);
            s.append(&name.as_str());
            s.append(version);
        }
        s.append(&0u16);
        s.append(&&id.0[..]);
        if self.extra_fields {
            s.append(&"future field");
            s.begin_list(1);
            s.append(&7u8);
        }
        s.out().to_vec()
    }
}

/// How the next write is mangled on its way to the socket.
#[derive(Debug, Clone, Copy, Default)]
enum Mangle {
    #[default]
    None,
    /// Flip the byte at this offset of the next write.
    FlipByte(usize),
    /// Send only the first `n` bytes of the next write (the rest is silently dropped).
    Truncate(usize),
}

/// A byte stream whose next write can be corrupted or cut short: the frame layer seals a
/// correct frame and the mangling happens below it, as a bad link or a bad peer would.
struct Mangled {
    io: TcpStream,
    mangle: Arc<Mutex<Mangle>>,
    /// After a truncation, the remaining bytes of that write are reported written but
    /// not sent; later writes are dropped too, so the stream stays "stalled".
    stalled: bool,
}

impl AsyncRead for Mangled {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Mangled {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.stalled {
            return Poll::Ready(Ok(buf.len()));
        }
        let mangle = std::mem::take(&mut *self.mangle.lock().unwrap_or_else(|e| e.into_inner()));
        match mangle {
            Mangle::None => Pin::new(&mut self.io).poll_write(cx, buf),
            Mangle::FlipByte(at) if at < buf.len() => {
                let mut copy = buf.to_vec();
                copy[at] ^= 0x01;
                // The copy must go out whole, or the flip would be lost on a retry.
                match Pin::new(&mut self.io).poll_write(cx, &copy) {
                    Poll::Ready(Ok(n)) if n == copy.len() => Poll::Ready(Ok(n)),
                    Poll::Ready(Ok(n)) => Poll::Ready(Err(std::io::Error::other(format!(
                        "short write of a mangled frame ({n} of {})",
                        copy.len()
                    )))),
                    other => {
                        *self.mangle.lock().unwrap_or_else(|e| e.into_inner()) = mangle;
                        other
                    }
                }
            }
            Mangle::FlipByte(_) => Pin::new(&mut self.io).poll_write(cx, buf),
            Mangle::Truncate(n) => {
                let keep = n.min(buf.len());
                match Pin::new(&mut self.io).poll_write(cx, &buf[..keep]) {
                    Poll::Ready(Ok(w)) if w == keep => {
                        self.stalled = true;
                        Poll::Ready(Ok(buf.len()))
                    }
                    Poll::Ready(Ok(w)) => {
                        *self.mangle.lock().unwrap_or_else(|e| e.into_inner()) =
                            Mangle::Truncate(keep - w);
                        Poll::Ready(Ok(w))
                    }
                    other => {
                        *self.mangle.lock().unwrap_or_else(|e| e.into_inner()) = mangle;
                        other
                    }
                }
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Opens a TCP connection within `timeout`.
pub async fn tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, LinkError> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(source)) => Err(LinkError::Connect { addr, source }),
        Err(_) => Err(LinkError::Timeout("tcp connect", timeout)),
    }
}

/// The auth packet for `style`.
pub fn auth_packet(
    initiator: &Initiator,
    remote: &NodeId,
    style: AuthStyle,
) -> Result<Vec<u8>, LinkError> {
    Ok(match style {
        AuthStyle::Eip8 => initiator.auth_packet()?,
        AuthStyle::Legacy => initiator.legacy_auth_packet(),
        AuthStyle::Eip8Extended => {
            let body = initiator.auth_body();
            let mut s = RlpStream::new_list(6);
            s.append(&&body.signature[..]);
            s.append(&&body.initiator_id.0[..]);
            s.append(&&body.nonce[..]);
            s.append(&57u64);
            s.append(&"extra element");
            s.begin_list(1);
            s.append(&1u8);
            let pubkey = remote
                .to_pubkey()
                .ok_or(HandshakeError::Malformed("remote id is not a curve point"))?;
            ecies::packets::seal_eip8(&pubkey, &s.out())?
        }
    })
}

/// An established link under test.
pub struct Link {
    /// The remote's id as proven by the handshake.
    pub remote_id: NodeId,
    /// Our id.
    pub our_id: NodeId,
    reader: ConnReader,
    writer: ConnWriter,
    mangle: Arc<Mutex<Mangle>>,
    /// Our own compression state: the writer never compresses by itself, so tests can
    /// send compressed, uncompressed or hand-made payloads as they choose.
    snappy_out: Option<Snappy>,
    /// Whether incoming messages are compressed (both Hellos said 5+).
    pub snappy: bool,
}

impl Link {
    /// TCP connect and the encryption handshake with `style`'s auth packet.
    pub async fn connect(
        target: &Enode,
        key: &SecretKey,
        style: AuthStyle,
        timeout: Duration,
    ) -> Result<Link, LinkError> {
        let stream = tcp(target.socket_addr(), timeout).await?;
        let mangle = Arc::new(Mutex::new(Mangle::None));
        let mut io = Mangled {
            io: stream,
            mangle: mangle.clone(),
            stalled: false,
        };
        let initiator = Initiator::random(key, &target.id)?;
        let auth = auth_packet(&initiator, &target.id, style)?;
        let secrets =
            tokio::time::timeout(timeout, ecies::initiate_with(&mut io, &initiator, &auth))
                .await
                .map_err(|_| LinkError::Timeout("encryption handshake", timeout))??;
        let conn = Conn::from_secrets(io, secrets);
        Ok(Link {
            remote_id: conn.remote_id,
            our_id: NodeId::from_secret(key),
            reader: conn.reader,
            writer: conn.writer,
            mangle,
            snappy_out: None,
            snappy: false,
        })
    }

    /// Send our Hello and read theirs (or their Disconnect). Turns snappy on for both
    /// directions when both say version 5 or more.
    pub async fn hello(&mut self, ours: &HelloSpec, timeout: Duration) -> Result<Hello, LinkError> {
        self.reader.set_max_frame_size(MAX_HELLO_SIZE + 9);
        let payload = ours.encode(&self.our_id);
        let (sent, got) = tokio::time::timeout(timeout, async {
            tokio::join!(self.writer.write(HELLO, &payload), self.reader.read())
        })
        .await
        .map_err(|_| LinkError::Timeout("hello exchange", timeout))?;
        let msg = got?;
        sent?;
        let theirs = match msg.code {
            HELLO => Hello::decode(&msg.payload).map_err(|e| LinkError::BadHello(e.to_string()))?,
            DISCONNECT => return Err(LinkError::Disconnected(reason_of(&msg))),
            code => {
                return Err(LinkError::Unexpected {
                    code,
                    size: msg.payload.len(),
                })
            }
        };
        match theirs.node_id() {
            Ok(id) if id == self.remote_id => {}
            Ok(_) => {
                return Err(LinkError::BadHello(
                    "node id differs from the handshake key".into(),
                ))
            }
            Err(reason) => return Err(LinkError::BadHello(format!("invalid node id ({reason})"))),
        }
        if theirs.protocol_version >= 5 && ours.version >= 5 {
            self.reader.enable_snappy();
            self.snappy_out = Some(Snappy::new());
            self.snappy = true;
        }
        self.reader.set_max_frame_size(MAX_FRAME_SIZE);
        Ok(theirs)
    }

    /// Write one message; its payload is compressed when the link says so.
    pub async fn send(&mut self, code: u64, payload: &[u8]) -> Result<(), LinkError> {
        let data = match &mut self.snappy_out {
            Some(s) => s.compress(payload).map_err(ConnError::from)?.to_vec(),
            None => payload.to_vec(),
        };
        self.send_raw(code, &data).await
    }

    /// Write one message with the payload exactly as given (never compressed here).
    pub async fn send_raw(&mut self, code: u64, payload: &[u8]) -> Result<(), LinkError> {
        self.writer.write(code, payload).await?;
        Ok(())
    }

    /// Corrupt one byte of the next frame written (offset into the sealed frame: 0..16
    /// header, 16..32 header MAC, then the body).
    pub fn flip_next_write(&self, offset: usize) {
        *self.mangle.lock().unwrap_or_else(|e| e.into_inner()) = Mangle::FlipByte(offset);
    }

    /// Send only the first `n` bytes of the next frame written, then nothing more.
    pub fn truncate_next_write(&self, n: usize) {
        *self.mangle.lock().unwrap_or_else(|e| e.into_inner()) = Mangle::Truncate(n);
    }

    /// The next message, answering the remote's pings on the way when `answer_pings`.
    pub async fn read(&mut self, timeout: Duration) -> Result<RawMessage, LinkError> {
        tokio::time::timeout(timeout, self.reader.read())
            .await
            .map_err(|_| LinkError::Timeout("read", timeout))?
            .map_err(LinkError::from)
    }

    /// Ping and wait for the pong, answering the remote's own pings meanwhile; the RTT.
    pub async fn ping(&mut self, timeout: Duration) -> Result<Duration, LinkError> {
        let started = Instant::now();
        self.send(PING, &[0xc0]).await?;
        let deadline = started + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self.read(left).await.map_err(|e| match e {
                LinkError::Timeout(..) => LinkError::Timeout("pong", timeout),
                e => e,
            })?;
            match msg.code {
                PONG => return Ok(started.elapsed()),
                PING => self.send(PONG, &[0xc0]).await?,
                DISCONNECT => return Err(LinkError::Disconnected(reason_of(&msg))),
                // Subprotocol traffic (a status message, say) is not what we wait for.
                _ => {}
            }
        }
    }

    /// Wait until the remote ends the link: `Ok(Some(reason))` for a Disconnect,
    /// `Ok(None)` for a close without one; pings are answered meanwhile. Other messages
    /// are skipped. Times out when the link is still up after `timeout`.
    pub async fn closed(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<DisconnectReason>, LinkError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read(left).await {
                Ok(msg) if msg.code == DISCONNECT => return Ok(Some(reason_of(&msg))),
                Ok(msg) if msg.code == PING => {
                    // A failed write means the remote is already gone: the next read says so.
                    let _ = self.send(PONG, &[0xc0]).await;
                }
                Ok(_) => {}
                Err(LinkError::Timeout(..)) => {
                    return Err(LinkError::Timeout("remote close", timeout))
                }
                Err(_) => return Ok(None),
            }
        }
    }

    /// Tell the remote we leave, and close.
    pub async fn bye(mut self, reason: DisconnectReason) {
        let _ = self.send(DISCONNECT, &reason.encode()).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.writer.shutdown()).await;
    }
}

/// A Disconnect's reason as the connection reader decoded it (leniently: compressed or
/// not, list or bare).
pub fn reason_of(msg: &RawMessage) -> DisconnectReason {
    msg.disconnect
        .unwrap_or(DisconnectReason::DisconnectRequested)
}

/// Writes `bytes` on a fresh TCP connection and reports whether the remote closed it
/// within `timeout` (reading and discarding whatever it sends meanwhile).
pub async fn send_bytes_expect_close(
    addr: SocketAddr,
    bytes: &[u8],
    timeout: Duration,
) -> Result<Duration, LinkError> {
    use tokio::io::AsyncReadExt;
    let mut stream = tcp(addr, timeout).await?;
    let started = Instant::now();
    // The remote may close before it has read everything; that is a pass, not an error.
    let _ = stream.write_all(bytes).await;
    let mut sink = [0u8; 4096];
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut sink)).await {
            Err(_) => return Err(LinkError::Timeout("remote close", timeout)),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}
