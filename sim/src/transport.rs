//! braid's [`Transport`] over turmoil's simulated TCP and UDP.
//!
//! Inside a turmoil host, `turmoil::net` sockets talk only to other simulated hosts, with
//! the simulation's latency, partitions and crashes; the host's runtime has no I/O
//! driver, so nothing in a simulated node can open a real socket.
//!
//! Datagrams (discovery v4) go through `turmoil::net::UdpSocket`: delivered whole after
//! the link's latency, dropped across a partition or to a port nobody bound, and dropped
//! when the receiver already holds turmoil's per-socket queue of them (64 unless the
//! builder says otherwise), as a real socket's full buffer would. The simulation's wall
//! clock (its epoch plus simulated time) stamps discovery's packet expirations, so they
//! never depend on how fast the host runs the simulation.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use p2p::server::{BoxedStream, DatagramSocket, Listener, Transport};

/// Listen, dial and send datagrams on the simulated network of the turmoil host the
/// server runs on. Clones share one count of the datagrams sent.
#[derive(Debug, Clone, Default)]
pub struct SimTransport {
    datagrams: Arc<Datagrams>,
}

/// Datagrams sent through one [`SimTransport`] and its clones.
#[derive(Debug, Default)]
pub struct Datagrams {
    sent: AtomicU64,
    bytes: AtomicU64,
}

impl Datagrams {
    /// Datagrams handed to the simulated network so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Their bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl SimTransport {
    /// The count of datagrams sent through this transport and its clones.
    pub fn datagrams(&self) -> &Datagrams {
        &self.datagrams
    }
}

/// What turmoil binds for `addr`: it binds only the unspecified address and loopback, and
/// a host receives nothing but its own traffic anyway, so the host's own address (as a
/// node passes it) is bound as unspecified; the socket reports back the address asked.
fn bindable(addr: SocketAddr) -> SocketAddr {
    let ip = addr.ip();
    if ip.is_unspecified() || ip.is_loopback() {
        addr
    } else {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), addr.port())
    }
}

/// The simulation's wall clock: its epoch plus the simulated time (the host's clock
/// outside a simulation).
fn sim_wall_clock() -> SystemTime {
    turmoil::since_epoch().map_or_else(SystemTime::now, |d| UNIX_EPOCH + d)
}

impl Transport for SimTransport {
    /// Listen on `addr`: the host's own simulated address (the server then advertises the
    /// address other hosts dial), the unspecified one or loopback.
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let listener = turmoil::net::TcpListener::bind(bindable(addr)).await?;
            Ok(Box::new(SimListener {
                listener,
                ip: addr.ip(),
            }) as Box<dyn Listener>)
        })
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<BoxedStream>> {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(addr).await?;
            Ok(Box::new(stream) as BoxedStream)
        })
    }

    /// A simulated UDP socket on `addr`, bound as [`Transport::bind`] binds.
    fn bind_udp(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn DatagramSocket>>> {
        Box::pin(async move {
            let socket = turmoil::net::UdpSocket::bind(bindable(addr)).await?;
            Ok(Box::new(SimUdpSocket {
                socket,
                ip: addr.ip(),
                datagrams: self.datagrams.clone(),
            }) as Box<dyn DatagramSocket>)
        })
    }

    fn wall_clock(&self) -> fn() -> SystemTime {
        sim_wall_clock
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

/// [`SimTransport`]'s datagram socket.
struct SimUdpSocket {
    socket: turmoil::net::UdpSocket,
    /// The address the server asked for.
    ip: IpAddr,
    datagrams: Arc<Datagrams>,
}

impl DatagramSocket for SimUdpSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        let port = self.socket.local_addr()?.port();
        Ok(SocketAddr::new(self.ip, port))
    }

    fn send_to<'a>(&'a self, buf: &'a [u8], to: SocketAddr) -> BoxFuture<'a, io::Result<usize>> {
        Box::pin(async move {
            let sent = self.socket.send_to(buf, to).await?;
            self.datagrams.sent.fetch_add(1, Ordering::Relaxed);
            self.datagrams
                .bytes
                .fetch_add(sent as u64, Ordering::Relaxed);
            Ok(sent)
        })
    }

    fn recv_from<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> BoxFuture<'a, io::Result<(usize, SocketAddr)>> {
        Box::pin(self.socket.recv_from(buf))
    }
}
