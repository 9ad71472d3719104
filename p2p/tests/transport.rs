//! The server's transport seam: a server started with another transport listens, dials
//! and runs discovery v4 through it (and interoperates with a TCP server), and refuses the
//! services that would open sockets on the host's network beside it.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use p2p::discover::Bootnode;
use p2p::nat::Nat;
use p2p::server::{BoxedStream, DatagramSocket, Listener, TcpTransport, Transport};
use p2p::testkit::{echo_protocol, loopback_config};
use p2p::{Discovery, Server, ServerError};

/// TCP underneath, counting every stream it yields, and not claiming to be the host's
/// network (as a simulated one would not).
#[derive(Clone, Default)]
struct Counting {
    connects: Arc<AtomicUsize>,
    accepts: Arc<AtomicUsize>,
}

struct CountingListener {
    inner: Box<dyn Listener>,
    accepts: Arc<AtomicUsize>,
}

impl Transport for Counting {
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        Box::pin(async move {
            let inner = TcpTransport.bind(addr).await?;
            let accepts = self.accepts.clone();
            Ok(Box::new(CountingListener { inner, accepts }) as Box<dyn Listener>)
        })
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<BoxedStream>> {
        Box::pin(async move {
            let stream = TcpTransport.connect(addr).await?;
            self.connects.fetch_add(1, Ordering::SeqCst);
            Ok(stream)
        })
    }
}

/// [`Counting`] that also carries datagrams (the host's UDP), counting those it sends.
#[derive(Clone, Default)]
struct CountingUdp {
    tcp: Counting,
    datagrams: Arc<AtomicUsize>,
}

struct CountingSocket {
    inner: Box<dyn DatagramSocket>,
    datagrams: Arc<AtomicUsize>,
}

impl Transport for CountingUdp {
    fn bind(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn Listener>>> {
        self.tcp.bind(addr)
    }

    fn connect(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<BoxedStream>> {
        self.tcp.connect(addr)
    }

    fn bind_udp(&self, addr: SocketAddr) -> BoxFuture<'_, io::Result<Box<dyn DatagramSocket>>> {
        Box::pin(async move {
            let inner = TcpTransport.bind_udp(addr).await?;
            let datagrams = self.datagrams.clone();
            Ok(Box::new(CountingSocket { inner, datagrams }) as Box<dyn DatagramSocket>)
        })
    }
}

impl DatagramSocket for CountingSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn send_to<'a>(&'a self, buf: &'a [u8], to: SocketAddr) -> BoxFuture<'a, io::Result<usize>> {
        self.datagrams.fetch_add(1, Ordering::SeqCst);
        self.inner.send_to(buf, to)
    }

    fn recv_from<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> BoxFuture<'a, io::Result<(usize, SocketAddr)>> {
        self.inner.recv_from(buf)
    }
}

impl Listener for CountingListener {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxedStream, SocketAddr)>> {
        Box::pin(async move {
            let accepted = self.inner.accept().await?;
            self.accepts.fetch_add(1, Ordering::SeqCst);
            Ok(accepted)
        })
    }
}

async fn wait_for_peers(server: &Server, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.peer_count() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "peers never came up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_server_listens_and_dials_through_its_transport() {
    let counting = Counting::default();
    let a = Server::start_with_transport(loopback_config(vec![echo_protocol()]), counting.clone())
        .await
        .unwrap();
    let b = Server::start(loopback_config(vec![echo_protocol()]))
        .await
        .unwrap();
    let c = Server::start(loopback_config(vec![echo_protocol()]))
        .await
        .unwrap();

    b.dial(&a.enode().unwrap()).await.unwrap();
    a.dial(&c.enode().unwrap()).await.unwrap();
    wait_for_peers(&a, 2).await;
    assert_eq!(
        counting.accepts.load(Ordering::SeqCst),
        1,
        "b came in through the transport"
    );
    assert_eq!(
        counting.connects.load(Ordering::SeqCst),
        1,
        "a reached c through the transport"
    );
    assert!(a.peer(&b.id()).is_some() && a.peer(&c.id()).is_some());
    tokio::join!(a.shutdown(), b.shutdown(), c.shutdown());
}

#[tokio::test]
async fn discovery_v4_runs_on_the_transports_datagrams() {
    let transport = CountingUdp::default();
    let mut cfg = loopback_config(vec![echo_protocol()]);
    cfg.discovery = Discovery::V4;
    let a = Server::start_with_transport(cfg, transport.clone())
        .await
        .unwrap();
    let mut cfg = loopback_config(vec![echo_protocol()]);
    cfg.discovery = Discovery::V4;
    cfg.bootnodes = vec![Bootnode::Enode(a.enode().unwrap())];
    let b = Server::start(cfg).await.unwrap();
    // b finds a through discovery alone and dials it; a answered over the transport.
    wait_for_peers(&a, 1).await;
    assert!(a.peer(&b.id()).is_some());
    let stats = a.discv4_stats().unwrap();
    assert!(stats.sent > 0 && stats.received > 0, "{stats:?}");
    assert_eq!(
        transport.datagrams.load(Ordering::SeqCst) as u64,
        stats.sent,
        "every datagram a sent went through its transport"
    );
    tokio::join!(a.shutdown(), b.shutdown());
}

#[tokio::test]
async fn host_network_services_are_refused_over_another_transport() {
    for discovery in [Discovery::V5, Discovery::Both] {
        let mut cfg = loopback_config(vec![echo_protocol()]);
        cfg.discovery = discovery;
        let err = Server::start_with_transport(cfg, CountingUdp::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ServerError::HostNetworkOnly("discovery v5")),
            "{err}"
        );
    }

    // A transport without datagrams cannot run discovery v4.
    let mut cfg = loopback_config(vec![echo_protocol()]);
    cfg.discovery = Discovery::V4;
    let err = Server::start_with_transport(cfg, Counting::default())
        .await
        .unwrap_err();
    match &err {
        ServerError::Discovery(p2p::discover::v4::DiscoveryError::Bind { source, .. }) => {
            assert_eq!(source.kind(), io::ErrorKind::Unsupported)
        }
        other => panic!("expected a bind error, got {other}"),
    }

    let mut cfg = loopback_config(vec![echo_protocol()]);
    cfg.nat = Nat::Upnp;
    let err = Server::start_with_transport(cfg, Counting::default())
        .await
        .unwrap_err();
    assert!(matches!(err, ServerError::HostNetworkOnly(_)), "{err}");
    assert_eq!(err.kind(), "host_network_only");

    // Naming an external address opens no socket.
    let mut cfg = loopback_config(vec![echo_protocol()]);
    cfg.nat = Nat::ExtIp([127, 0, 0, 2].into());
    let server = Server::start_with_transport(cfg, Counting::default())
        .await
        .unwrap();
    assert_eq!(
        server.enode().unwrap().ip,
        std::net::IpAddr::from([127, 0, 0, 2])
    );
    server.shutdown().await;
}
