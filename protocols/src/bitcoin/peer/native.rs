//! Native bitcoin TCP: v1 framing (magic, 12-byte command, length, checksum) over any byte
//! stream. The 4,000,000-byte limit is checked on the header before the payload is read.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};

use super::transport::{
    Inbound, LinkClosed, Received, RecvError, SendError, Transport, TransportReader,
    TransportWriter,
};
use crate::bitcoin::wire::{encode_frame, read_frame, Message, Network, WireError};

/// Buffered reads: most messages are small, and a 24-byte header plus payload in one
/// syscall matters on busy links.
const READ_BUFFER: usize = 16 * 1024;

/// A bitcoin v1 transport over a byte stream (TCP, or `tokio::io::duplex` in tests).
#[derive(Debug)]
pub struct NativeTransport<S> {
    stream: S,
    network: Network,
    remote: Option<SocketAddr>,
}

impl<S> NativeTransport<S>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    /// Wrap `stream`, framing with `network`'s magic.
    pub fn new(stream: S, network: Network, remote: Option<SocketAddr>) -> Self {
        NativeTransport {
            stream,
            network,
            remote,
        }
    }
}

impl NativeTransport<TcpStream> {
    /// Dial `addr` within `timeout`.
    pub async fn connect(
        addr: SocketAddr,
        network: Network,
        timeout: Duration,
    ) -> io::Result<Self> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(NativeTransport::new(stream, network, Some(addr)))
    }

    /// Accept one connection from `listener`.
    pub async fn accept(listener: &TcpListener, network: Network) -> io::Result<Self> {
        let (stream, remote) = listener.accept().await?;
        stream.set_nodelay(true)?;
        Ok(NativeTransport::new(stream, network, Some(remote)))
    }
}

impl<S> Transport for NativeTransport<S>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    type Reader = NativeReader<S>;
    type Writer = NativeWriter<S>;

    fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote
    }

    fn split(self) -> (NativeReader<S>, NativeWriter<S>) {
        let (r, w) = tokio::io::split(self.stream);
        (
            NativeReader {
                inner: Counting {
                    inner: BufReader::with_capacity(READ_BUFFER, r),
                    count: 0,
                },
                network: self.network,
            },
            NativeWriter {
                inner: w,
                network: self.network,
            },
        )
    }
}

/// Counts the bytes a frame read actually consumed, so `on_read` and the byte statistics
/// are exact even for frames that fail half-way.
struct Counting<R> {
    inner: R,
    count: usize,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let added = buf.filled().len().saturating_sub(before);
        self.count = self.count.saturating_add(added);
        res
    }
}

/// Receiving half of a [`NativeTransport`].
pub struct NativeReader<S> {
    inner: Counting<BufReader<ReadHalf<S>>>,
    network: Network,
}

impl<S: AsyncRead + Send + 'static> TransportReader for NativeReader<S> {
    async fn recv(&mut self, pver: u32) -> Result<Received, RecvError> {
        self.inner.count = 0;
        let res = read_frame(&mut self.inner, self.network, pver).await;
        let bytes = self.inner.count;
        match res {
            Ok((msg, _)) => Ok(Received {
                inbound: Inbound::Message(msg),
                bytes,
            }),
            Err(WireError::UnknownCommand { name, .. }) => Ok(Received {
                inbound: Inbound::Unknown(name),
                bytes,
            }),
            Err(WireError::Io(kind)) => Err(RecvError::Closed(LinkClosed::Io(kind))),
            Err(error) => Err(RecvError::Malformed { error, bytes }),
        }
    }
}

/// Sending half of a [`NativeTransport`].
pub struct NativeWriter<S> {
    inner: WriteHalf<S>,
    network: Network,
}

impl<S: AsyncWrite + Send + 'static> TransportWriter for NativeWriter<S> {
    async fn send(&mut self, msg: &Message, pver: u32) -> Result<usize, SendError> {
        let frame = encode_frame(self.network, msg, pver)?;
        let io = async {
            self.inner.write_all(&frame).await?;
            self.inner.flush().await
        };
        io.await.map_err(|e| SendError::Closed(e.into()))?;
        Ok(frame.len())
    }
}
