//! The network a server listens and dials on.
//!
//! Everything above the byte stream (the ECIES handshake, frames, peers, admission) is the
//! same whatever carries the bytes, so the server reaches the network through one small
//! seam: a [`Transport`] binds [`Listener`]s and connects, each yielding an ordered,
//! reliable byte stream and the remote's address. [`TcpTransport`] (tokio's TCP) is what
//! [`Server::start`](super::Server::start) uses;
//! [`Server::start_with_transport`](super::Server::start_with_transport) takes any other,
//! such as a simulated network that runs a thousand nodes in one process under a
//! deterministic clock.
//!
//! The trait is object-safe (futures are boxed) so that the server and its configuration
//! stay free of type parameters; a stream is boxed once per connection, which the link
//! does anyway when it splits into reader and writer.
//!
//! Discovery v4 sends its datagrams through the same seam: [`Transport::bind_udp`] gives a
//! [`DatagramSocket`] (tokio's UDP for [`TcpTransport`]), and the transport's
//! [`Transport::wall_clock`] stamps its packets' expirations, so a simulated network with a
//! clock of its own runs discv4 too. Discovery v5 (sigp's `discv5` crate, which opens and
//! owns its socket) and NAT port mapping still open sockets on the host's network stack;
//! the server runs them only over a transport that says it is that stack
//! ([`Transport::is_host_network`]), and refuses to start otherwise, so a simulated node
//! never sends a real packet.

use std::io;
use std::net::SocketAddr;
use std::time::SystemTime;

use futures::future::BoxFuture;

pub use crate::conn::{BoxedStream, ByteStream};

/// Where a server listens and how it dials.
pub trait Transport: Send + Sync + 'static {
    /// Start listening on `addr` (port 0 picks a free one).
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Listener>>>;

    /// Open a stream to `addr`. The server bounds the wait with its dial timeout.
    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<BoxedStream>>;

    /// Bind a datagram socket on `addr` (port 0 picks a free one), for discovery v4.
    /// A transport without datagrams keeps this default, which fails with
    /// [`io::ErrorKind::Unsupported`].
    fn bind_udp(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn DatagramSocket>>> {
        let _ = addr;
        Box::pin(async {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this transport carries no datagrams",
            ))
        })
    }

    /// The wall clock of this network's hosts, which discovery v4 stamps its packet
    /// expirations and record sequence numbers with (and checks received expirations
    /// against). The host's clock unless a transport simulates its own.
    fn wall_clock(&self) -> fn() -> SystemTime {
        SystemTime::now
    }

    /// Whether this transport is the host's own network stack, so that services which
    /// open their own sockets beside it (discovery v5's UDP, NAT port mapping) reach the
    /// same network. False unless a transport says otherwise.
    fn is_host_network(&self) -> bool {
        false
    }
}

/// A bound, unconnected datagram socket of some [`Transport`]: what discovery v4 sends and
/// receives its packets on. Datagrams may be lost, reordered or duplicated; each arrives
/// whole or not at all.
pub trait DatagramSocket: Send + Sync + 'static {
    /// The address actually bound (with the port chosen when 0 was asked for).
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// Send one datagram to `to`; the number of bytes sent.
    fn send_to<'a>(&'a self, buf: &'a [u8], to: SocketAddr) -> BoxFuture<'a, io::Result<usize>>;

    /// The next datagram, copied into `buf` (cut to its length when longer), its length
    /// and where it came from.
    fn recv_from<'a>(&'a self, buf: &'a mut [u8])
        -> BoxFuture<'a, io::Result<(usize, SocketAddr)>>;
}

impl DatagramSocket for tokio::net::UdpSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::UdpSocket::local_addr(self)
    }

    fn send_to<'a>(&'a self, buf: &'a [u8], to: SocketAddr) -> BoxFuture<'a, io::Result<usize>> {
        Box::pin(tokio::net::UdpSocket::send_to(self, buf, to))
    }

    fn recv_from<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> BoxFuture<'a, io::Result<(usize, SocketAddr)>> {
        Box::pin(tokio::net::UdpSocket::recv_from(self, buf))
    }
}

/// A bound listener of some [`Transport`].
pub trait Listener: Send + 'static {
    /// The address actually bound (with the port chosen when 0 was asked for).
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// The next inbound stream and the address it came from.
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxedStream, SocketAddr)>>;
}

/// Refuse the services that open their own sockets on the host's network when the
/// transport is another network: discovery v5's UDP and NAT port mapping.
pub(super) fn check_host_services(
    config: &super::ServerConfig,
    transport: &dyn Transport,
) -> Result<(), super::ServerError> {
    if transport.is_host_network() {
        return Ok(());
    }
    if config.discovery.v5() {
        return Err(super::ServerError::HostNetworkOnly("discovery v5"));
    }
    if config.nat.maps_ports() {
        return Err(super::ServerError::HostNetworkOnly("NAT port mapping"));
    }
    Ok(())
}

/// tokio's TCP on the host's network stack, with Nagle's algorithm off on every stream
/// (a link writes whole frames and waits on small replies such as pongs).
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpTransport;

impl Transport for TcpTransport {
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            Ok(Box::new(TcpListener(listener)) as Box<dyn Listener>)
        })
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<BoxedStream>> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            let _ = stream.set_nodelay(true);
            Ok(Box::new(stream) as BoxedStream)
        })
    }

    fn bind_udp(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn DatagramSocket>>> {
        Box::pin(async move {
            let socket = tokio::net::UdpSocket::bind(addr).await?;
            Ok(Box::new(socket) as Box<dyn DatagramSocket>)
        })
    }

    fn is_host_network(&self) -> bool {
        true
    }
}

/// [`TcpTransport`]'s listener.
struct TcpListener(tokio::net::TcpListener);

impl Listener for TcpListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxedStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, addr) = self.0.accept().await?;
            let _ = stream.set_nodelay(true);
            Ok((Box::new(stream) as BoxedStream, addr))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn tcp_transport_carries_bytes_both_ways() {
        let transport = TcpTransport;
        let mut listener = transport
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        assert_ne!(addr.port(), 0);
        let (dialed, accepted) = tokio::join!(transport.connect(addr), listener.accept());
        let (mut dialed, mut accepted) = (dialed.unwrap(), accepted.unwrap());
        assert!(accepted.1.ip().is_loopback());
        dialed.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        accepted.0.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        accepted.0.write_all(b"pong").await.unwrap();
        dialed.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        assert!(transport.is_host_network());
    }

    #[tokio::test]
    async fn tcp_transport_binds_udp_on_the_host() {
        let transport = TcpTransport;
        let any = "127.0.0.1:0".parse().unwrap();
        let (a, b) = (
            transport.bind_udp(any).await.unwrap(),
            transport.bind_udp(any).await.unwrap(),
        );
        let b_addr = b.local_addr().unwrap();
        assert_ne!(b_addr.port(), 0);
        assert_eq!(a.send_to(b"ping", b_addr).await.unwrap(), 4);
        let mut buf = [0u8; 16];
        let (len, from) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..len], from), (&b"ping"[..], a.local_addr().unwrap()));
    }
}
