//! The hostile-peer suite: named attacks against a running [`p2p::server::Server`] on
//! loopback (devp2p.md §4: nobody else tests RLPx against hostile bytes).
//!
//! Every test builds a *scene*: a hub server (the victim, offering `echo/1` and a
//! deliberately slow `slow/1`) and an honest node that stays connected to it the whole
//! time, sending an echo request every 20 ms and timing the round trip. The attack then
//! runs, and the scene checks three things:
//!
//! 1. the attack's own outcome (a disconnect reason or the TCP connection closing, within
//!    a stated time), asserted inside each test;
//! 2. the process's resident memory (`VmRSS`, sampled every 10 ms; the hub runs in this
//!    process) never rises more than the test's stated bound above its value just before
//!    the attack. The attacker runs in the same process, so its buffers count too: the
//!    bounds are upper bounds on victim + attacker;
//! 3. the honest peer is still connected and its echo round trips during the attack stay
//!    normal: median under [`RTT_MEDIAN`], worst under [`RTT_MAX`].
//!
//! Tests run one at a time (a global async lock) so that one attack's memory never shows
//! up in another's measurement. Each prints one `HOSTILE` line with its figures
//! (`cargo test --test hostile_peer -- --nocapture`), the source of docs/hardening.md.
//!
//! The attacks are grouped by the layer they hit, one module each: `handshake`, `frame`,
//! `base`, `admission` and `memory`; this file holds the scene and the raw attacker.
//!
//! The raw attacker ([`Attacker`]) drives the handshake through the public sans-io API
//! ([`Initiator`]) and keeps the TCP write half and a [`FrameSealer`] for itself, so it
//! can send exactly the bytes it wants: forged MACs, lying headers, bombs.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use p2p::base::{Capability, DisconnectReason, Hello, DISCONNECT, EMPTY_LIST, HELLO, PING, PONG};
use p2p::conn::{Conn, ConnReader, RawMessage};
use p2p::ecies::packets::{self, AuthBody};
use p2p::ecies::Initiator;
use p2p::frame::FrameSealer;
use p2p::message::{encode_id, Snappy};
use p2p::node::NodeId;
use p2p::peer::PeerConfig;
use p2p::protocol::{InboundLimits, Protocol, ProtocolError};
use p2p::server::{Server, ServerConfig, ServerError};
use p2p::session::SessionError;
use p2p::testkit::{echo_protocol as echo, process, random_key, slow_protocol};
use rand::RngCore;
use secp256k1::SecretKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Honest echo round trips during an attack: the median must stay under this...
const RTT_MEDIAN: Duration = Duration::from_millis(50);
/// ...and no single round trip may take longer than this. Loose on purpose: the suite
/// shares two cores with the compiler and other test binaries in CI.
const RTT_MAX: Duration = Duration::from_millis(1000);
/// How often the honest peer sends an echo request.
const HONEST_INTERVAL: Duration = Duration::from_millis(20);
/// The hub's read timeout: the longest a stalled peer is kept (shortened from 30 s so
/// the stall test finishes quickly; the mechanism is the same).
const HUB_READ_TIMEOUT: Duration = Duration::from_secs(3);
/// The handshake deadline we expect the hub to enforce (go-ethereum's 5 s default).
const HANDSHAKE_DEADLINE: Duration = p2p::conn::DEFAULT_HANDSHAKE_TIMEOUT;
/// Upper bound on any single attack, including its checks.
const ATTACK_LIMIT: Duration = Duration::from_secs(30);
/// Base protocol offset: the first subprotocol code.
const OFFSET: u64 = 16;

/// One attack at a time: memory is measured per process.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Memory bounds are stated in MiB.
const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// The scene: hub + honest peer.

/// A protocol that reads one message per 100 ms, with a small inbound queue.
fn slow() -> Protocol {
    slow_protocol(InboundLimits {
        max_messages: 32,
        max_bytes: 1 << 20,
    })
}

type Rtts = Arc<Mutex<Vec<(Instant, Duration)>>>;

/// The honest side of `echo/1`: a request every [`HONEST_INTERVAL`], each round trip recorded.
fn honest_pinger(rtts: Rtts) -> Protocol {
    Protocol::new("echo", 1, 2, move |_peer, mut rw| {
        let rtts = rtts.clone();
        async move {
            for i in 0u64.. {
                let sent = Instant::now();
                rw.write(0, &i.to_be_bytes()).await?;
                let reply = tokio::time::timeout(Duration::from_secs(5), rw.read())
                    .await
                    .map_err(|_| {
                        ProtocolError::disconnect(DisconnectReason::PingTimeout, "echo timed out")
                    })??;
                assert_eq!(reply.code, 1);
                assert_eq!(&reply.payload[..], &i.to_be_bytes());
                {
                    let mut log = rtts.lock().unwrap();
                    if log.len() < 100_000 {
                        log.push((sent, sent.elapsed()));
                    }
                }
                tokio::time::sleep(HONEST_INTERVAL).await;
            }
            Ok(())
        }
    })
}
fn hub_config() -> ServerConfig {
    let mut cfg = ServerConfig::new(random_key(), Some("127.0.0.1:0".parse().unwrap()));
    cfg.protocols = vec![echo(), slow()];
    cfg.peer = PeerConfig {
        read_timeout: HUB_READ_TIMEOUT,
        ..PeerConfig::default()
    };
    cfg
}

struct Scene {
    hub: Server,
    honest: Server,
    rtts: Rtts,
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

impl Scene {
    /// Start the default hub and connect the honest peer.
    async fn start() -> Scene {
        Self::with(hub_config()).await
    }

    /// Start a hub with `cfg` and connect the honest peer; returns once echoes flow.
    async fn with(cfg: ServerConfig) -> Scene {
        let serial = SERIAL.lock().await;
        let hub = Server::start(cfg).await.expect("hub start");
        let rtts: Rtts = Arc::default();
        let mut honest_cfg = ServerConfig::new(random_key(), None);
        honest_cfg.protocols = vec![honest_pinger(rtts.clone())];
        let honest = Server::start(honest_cfg).await.expect("honest start");
        honest
            .dial(&hub.enode().unwrap())
            .await
            .expect("honest dial");
        let start = Instant::now();
        while rtts.lock().unwrap().len() < 5 {
            assert!(start.elapsed() < Duration::from_secs(10), "no echo traffic");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Scene {
            hub,
            honest,
            rtts,
            _serial: serial,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.hub.local_addr().unwrap()
    }

    fn id(&self) -> NodeId {
        self.hub.id()
    }

    /// Run `attack` (which asserts its own outcome and returns a one-line description of
    /// it), then check memory and the honest peer. `rss_bound` is the most the resident
    /// set may rise above its value just before the attack.
    async fn run<F>(self, name: &str, rss_bound: u64, attack: F)
    where
        F: Future<Output = String>,
    {
        let baseline = process::rss_bytes().expect("VmRSS");
        let fds_before = process::open_fds().expect("/proc/self/fd");
        let peak = Arc::new(AtomicU64::new(baseline));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, stop) = (peak.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(process::rss_bytes().expect("VmRSS"), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
        };
        let t0 = Instant::now();
        let outcome = tokio::time::timeout(ATTACK_LIMIT, attack)
            .await
            .unwrap_or_else(|_| panic!("{name}: attack did not finish within {ATTACK_LIMIT:?}"));
        let attack_time = t0.elapsed();
        // Keep watching a little: damage may show just after the attacker leaves, and
        // short attacks need a window long enough for a fair latency sample.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t1 = Instant::now();
        stop.store(true, Ordering::Relaxed);
        sampler.await.unwrap();
        let growth = peak.load(Ordering::Relaxed).saturating_sub(baseline);

        let mut window: Vec<Duration> = self
            .rtts
            .lock()
            .unwrap()
            .iter()
            .filter(|(sent, _)| *sent >= t0 && *sent <= t1)
            .map(|(_, rtt)| *rtt)
            .collect();
        window.sort();
        let median = window.get(window.len() / 2).copied().unwrap_or_default();
        let max = window.last().copied().unwrap_or_default();
        eprintln!(
            "HOSTILE {name} | {outcome} | attack {:.2}s | rss +{:.1} MiB (bound {} MiB, baseline {:.0} MiB) | fds {} -> {} | honest echo n={} median={:.1}ms max={:.1}ms",
            attack_time.as_secs_f64(),
            growth as f64 / MIB as f64,
            rss_bound / MIB,
            baseline as f64 / MIB as f64,
            fds_before,
            process::open_fds().expect("/proc/self/fd"),
            window.len(),
            median.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
        );
        assert!(
            growth <= rss_bound,
            "{name}: resident memory rose {growth} bytes, bound {rss_bound}"
        );
        assert!(
            window.len() >= 5,
            "{name}: the honest peer made only {} round trips during the attack",
            window.len()
        );
        assert!(median <= RTT_MEDIAN, "{name}: honest median rtt {median:?}");
        assert!(max <= RTT_MAX, "{name}: honest worst rtt {max:?}");
        assert!(
            self.hub.peer(&self.honest.id()).is_some(),
            "{name}: the honest peer was dropped"
        );
        self.honest.shutdown().await;
        self.hub.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------
// The raw attacker.

/// A read half that [`Conn::from_secrets`] can own: writes go nowhere (the attacker writes
/// through its own sealer and write half).
struct ReadOnly(OwnedReadHalf);

impl AsyncRead for ReadOnly {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ReadOnly {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        b: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A peer that completed the encryption handshake and writes raw frames.
struct Attacker {
    key: SecretKey,
    reader: ConnReader,
    wr: OwnedWriteHalf,
    sealer: FrameSealer,
    snappy: Option<Snappy>,
    /// The auth packet exactly as sent (for the replay attack).
    auth: Vec<u8>,
}

/// Reads one EIP-8 handshake packet (the hub always answers EIP-8 to an EIP-8 auth).
async fn read_eip8_packet(rd: &mut OwnedReadHalf) -> std::io::Result<Vec<u8>> {
    let mut prefix = [0u8; 2];
    rd.read_exact(&mut prefix).await?;
    let size = usize::from(u16::from_be_bytes(prefix));
    let mut packet = vec![0u8; 2 + size];
    packet[..2].copy_from_slice(&prefix);
    rd.read_exact(&mut packet[2..]).await?;
    Ok(packet)
}

impl Attacker {
    /// ECIES handshake with `key` toward the hub; no Hello yet.
    async fn handshake(addr: SocketAddr, hub: &NodeId, key: SecretKey) -> Attacker {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        let (mut rd, mut wr) = stream.into_split();
        let init = Initiator::random(&key, hub).unwrap();
        let auth = init.auth_packet().unwrap();
        wr.write_all(&auth).await.unwrap();
        let ack = tokio::time::timeout(Duration::from_secs(5), read_eip8_packet(&mut rd))
            .await
            .expect("ack in time")
            .expect("ack");
        let ack = init.read_ack(&ack).expect("valid ack");
        let secrets = init.secrets(&auth, &ack);
        let sealer = FrameSealer::new(
            &secrets.aes_secret,
            &secrets.mac_secret,
            secrets.egress_mac.clone(),
        );
        let conn = Conn::from_secrets(ReadOnly(rd), secrets);
        Attacker {
            key,
            reader: conn.reader,
            wr,
            sealer,
            snappy: None,
            auth,
        }
    }

    /// Handshake and a well-formed Hello offering `caps`; panics unless the hub answers
    /// with its Hello.
    async fn joined(addr: SocketAddr, hub: &NodeId, caps: &[(&str, u32)]) -> Attacker {
        Self::joined_with_key(addr, hub, caps, random_key()).await
    }

    async fn joined_with_key(
        addr: SocketAddr,
        hub: &NodeId,
        caps: &[(&str, u32)],
        key: SecretKey,
    ) -> Attacker {
        let mut a = Self::handshake(addr, hub, key).await;
        let hello = a.hello(caps, NodeId::from_secret(&key).0.to_vec());
        match a.exchange_hello(&hello).await {
            Ok(()) => a,
            Err(reason) => panic!("hub refused the hello: {reason}"),
        }
    }

    fn hello(&self, caps: &[(&str, u32)], id: Vec<u8>) -> Hello {
        Hello {
            protocol_version: 5,
            client_id: "attacker".into(),
            capabilities: caps.iter().map(|(n, v)| Capability::new(*n, *v)).collect(),
            listen_port: 0,
            id,
        }
    }

    /// Send `ours`, read the hub's first message: Ok once its Hello arrived (snappy on),
    /// or the Disconnect reason it sent instead.
    async fn exchange_hello(&mut self, ours: &Hello) -> Result<(), DisconnectReason> {
        let frame = self.frame(HELLO, &ours.encode());
        self.finish_hello(&frame).await
    }

    /// A sealed, well-formed Hello with our key, to be sent later by [`Self::finish_hello`]
    /// (frames must go out in the order they were sealed).
    fn hello_frame(&mut self, caps: &[(&str, u32)]) -> BytesMut {
        let hello = self.hello(caps, NodeId::from_secret(&self.key).0.to_vec());
        self.frame(HELLO, &hello.encode())
    }

    /// Send a sealed Hello and read the hub's answer (see [`Self::exchange_hello`]).
    async fn finish_hello(&mut self, hello_frame: &[u8]) -> Result<(), DisconnectReason> {
        self.send_raw(hello_frame).await;
        let first = self.recv(Duration::from_secs(5)).await.expect("hub answer");
        match first.code {
            HELLO => {
                let theirs = Hello::decode(&first.payload).expect("hub hello decodes");
                assert_eq!(theirs.id.len(), 64, "hub hello carries a 64-byte id");
                self.reader.enable_snappy();
                self.snappy = Some(Snappy::new());
                Ok(())
            }
            DISCONNECT => Err(decode_reason(&first.payload)),
            code => panic!("unexpected first message {code:#x}"),
        }
    }

    /// One sealed frame carrying `code` and `payload` (compressed once snappy is on).
    fn frame(&mut self, code: u64, payload: &[u8]) -> BytesMut {
        let mut id = BytesMut::new();
        encode_id(code, &mut id);
        let data = match &mut self.snappy {
            Some(s) => s.compress(payload).expect("compress").to_vec(),
            None => payload.to_vec(),
        };
        let mut out = BytesMut::new();
        self.sealer.seal(&[&id, &data], &mut out).expect("seal");
        out
    }

    /// A frame whose frame-data is exactly `data` (no id encoding, no compression).
    fn raw_frame(&mut self, data: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        self.sealer.seal(&[data], &mut out).expect("seal");
        out
    }

    async fn send(&mut self, code: u64, payload: &[u8]) {
        let frame = self.frame(code, payload);
        self.send_raw(&frame).await;
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        // The hub may already have closed on us; the outcome is read, not written.
        let _ = self.wr.write_all(bytes).await;
    }

    async fn recv(&mut self, within: Duration) -> Result<RawMessage, String> {
        match tokio::time::timeout(within, self.reader.read()).await {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("nothing within {within:?}")),
        }
    }

    /// Read (answering nothing) until the hub's Disconnect; its reason and when it came.
    async fn expect_disconnect(&mut self, within: Duration) -> (DisconnectReason, Duration) {
        let start = Instant::now();
        loop {
            let left = within.saturating_sub(start.elapsed());
            let msg = self
                .recv(left)
                .await
                .unwrap_or_else(|e| panic!("no disconnect from the hub: {e}"));
            if msg.code == DISCONNECT {
                return (decode_reason(&msg.payload), start.elapsed());
            }
        }
    }

    /// Ping the hub and wait for the pong: proof the link is still up.
    async fn ping_pong(&mut self) {
        self.send(PING, &EMPTY_LIST).await;
        loop {
            // Generous: this proves the link is up, not how fast it is, and a debug build
            // may still be decompressing a 16 MiB bomb.
            let msg = self.recv(Duration::from_secs(10)).await.expect("pong");
            match msg.code {
                PONG => return,
                DISCONNECT => panic!("hub disconnected: {}", decode_reason(&msg.payload)),
                _ => {}
            }
        }
    }
}

fn decode_reason(payload: &[u8]) -> DisconnectReason {
    DisconnectReason::decode_lenient(payload, Some(&mut Snappy::new())).expect("disconnect reason")
}

/// Reads until the peer closes the connection; how long that took (None if it did not
/// within `within`). Whatever the hub sends before closing is discarded.
async fn closed_within<R: AsyncRead + Unpin>(rd: &mut R, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// Sends `bytes` on a fresh connection and returns how long the hub took to close it.
async fn send_and_time_close(addr: SocketAddr, bytes: &[u8], within: Duration) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(bytes).await;
    closed_within(&mut s, within).await
}

mod admission;
mod base;
mod frame;
mod handshake;
mod memory;
