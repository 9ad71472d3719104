//! braid's [`Transport`] over turmoil's simulated TCP.
//!
//! Inside a turmoil host, `turmoil::net` sockets talk only to other simulated hosts, with
//! the simulation's latency, partitions and crashes; the host's runtime has no I/O
//! driver, so nothing in a simulated node can open a real socket.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use futures::future::BoxFuture;
use p2p::server::{BoxedStream, Listener, Transport};

/// Listen and dial on the simulated network of the turmoil host the server runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimTransport;

impl Transport for SimTransport {
    /// Listen on `addr`, which is the host's own simulated address (as a node passes
    /// it), the unspecified one or loopback. turmoil binds only the latter two, and a
    /// host receives nothing but its own traffic anyway, so the host's own address is
    /// bound as unspecified and reported back as asked: the server then advertises the
    /// address other hosts dial.
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let ip = addr.ip();
            let bind = if ip.is_unspecified() || ip.is_loopback() {
                addr
            } else {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port())
            };
            let listener = turmoil::net::TcpListener::bind(bind).await?;
            Ok(Box::new(SimListener { listener, ip }) as Box<dyn Listener>)
        })
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<BoxedStream>> {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(addr).await?;
            Ok(Box::new(stream) as BoxedStream)
        })
    }
}

/// [`SimTransport`]'s listener.
struct SimListener {
    listener: turmoil::net::TcpListener,
    /// The address the server asked for.
    ip: IpAddr,
}

impl Listener for SimListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        let port = self.listener.local_addr()?.port();
        Ok(SocketAddr::new(self.ip, port))
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxedStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, addr) = self.listener.accept().await?;
            Ok((Box::new(stream) as BoxedStream, addr))
        })
    }
}
