//! Hostile bitcoin peers against a running native bitcoin listener on loopback.
//!
//! A hub accepts native bitcoin connections and runs one inbound [`Peer`] per connection.
//! An honest outbound peer stays connected during every attack and pings the hub every
//! 20 ms. Each named attack asserts: the attacker's connection is closed within a bound,
//! the process's resident memory grows less than a stated bound, and the honest peer stays
//! connected with median ping RTT <= 50 ms and worst <= 1 s. One `HOSTILE_BTC` line per
//! attack records the figures (`cargo test --test hostile_bitcoin -- --nocapture`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use p2p::testkit::process;
use protocols::bitcoin::peer::{Config, Listener, NativeTransport, Peer};
use protocols::bitcoin::wire::{
    checksum, encode_frame, inv_type, read_frame, services, FrameHeader, Hash256, InvVect, Message,
    MsgPing, MsgVersion, NetAddress, Network,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const NET: Network = Network::Regtest;
const PVER: u32 = 70016;
const MIB: u64 = 1024 * 1024;
const NEGOTIATE: Duration = Duration::from_secs(2);

/// Attacks run one at a time so each one's memory figure is its own.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn cfg() -> Config {
    Config {
        network: NET,
        negotiate_timeout: NEGOTIATE,
        // Hub and honest peer share this process, hence its set of sent version nonces.
        allow_self_conns: true,
        ..Config::default()
    }
}
struct PongTimer(mpsc::UnboundedSender<u64>);

impl Listener for PongTimer {
    fn on_pong(&self, _peer: &Peer, nonce: u64) {
        let _ = self.0.send(nonce);
    }
}

struct Scene {
    addr: SocketAddr,
    inbound: Arc<Mutex<Vec<Peer>>>,
    honest: Peer,
    pongs: mpsc::UnboundedReceiver<u64>,
}

impl Scene {
    async fn start() -> Scene {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let inbound = Arc::new(Mutex::new(Vec::new()));
        let peers = inbound.clone();
        tokio::spawn(async move {
            while let Ok(transport) = NativeTransport::accept(&listener, NET).await {
                let peer = Peer::start_inbound(cfg(), transport);
                let mut peers = peers.lock().unwrap();
                // Keep the list bounded: forget peers that have ended.
                peers.retain(|p: &Peer| !p.is_done());
                peers.push(peer);
            }
        });
        let (tx, pongs) = mpsc::unbounded_channel();
        let honest_cfg = Config {
            listener: Arc::new(PongTimer(tx)),
            ..cfg()
        };
        let transport = NativeTransport::connect(addr, NET, Duration::from_secs(5))
            .await
            .unwrap();
        let honest = Peer::start_outbound(honest_cfg, transport);
        let start = Instant::now();
        while !honest.verack_received() {
            assert!(start.elapsed() < Duration::from_secs(5), "honest handshake");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Scene {
            addr,
            inbound,
            honest,
            pongs,
        }
    }

    /// Run `attack` while the honest peer pings every 20 ms and memory is sampled.
    async fn run<F>(mut self, name: &str, rss_bound: u64, attack: F)
    where
        F: std::future::Future<Output = String> + Send + 'static,
    {
        let _serial = SERIAL.lock().await;
        let base = process::rss_bytes().unwrap_or(0);
        let attack = tokio::spawn(attack);
        let mut rtts = Vec::new();
        let mut peak = base;
        let mut nonce = 1u64;
        while !attack.is_finished() {
            nonce += 1;
            let t = Instant::now();
            self.honest
                .queue_message(Message::Ping(MsgPing { nonce }), None)
                .await;
            loop {
                match tokio::time::timeout(Duration::from_secs(1), self.pongs.recv()).await {
                    Ok(Some(n)) if n == nonce => break,
                    Ok(Some(_)) => continue,
                    _ => panic!("{name}: honest peer got no pong within 1 s"),
                }
            }
            rtts.push(t.elapsed());
            peak = peak.max(process::rss_bytes().unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let outcome = attack.await.expect("attack task");
        assert!(
            self.honest.connected(),
            "{name}: honest peer was disconnected"
        );
        rtts.sort();
        let median = rtts.get(rtts.len() / 2).copied().unwrap_or_default();
        let worst = rtts.last().copied().unwrap_or_default();
        assert!(
            median <= Duration::from_millis(50),
            "{name}: median RTT {median:?}"
        );
        assert!(
            worst <= Duration::from_secs(1),
            "{name}: worst RTT {worst:?}"
        );
        let grew = peak.saturating_sub(base);
        assert!(grew <= rss_bound, "{name}: RSS grew {grew} > {rss_bound}");
        println!(
            "HOSTILE_BTC {name}: {outcome}; RSS +{:.1} MiB (bound {} MiB); honest pings {} (median {:.1?}, max {:.1?}); hub peers {}",
            grew as f64 / MIB as f64,
            rss_bound / MIB,
            rtts.len(),
            median,
            worst,
            self.inbound.lock().unwrap().iter().filter(|p| !p.is_done()).count(),
        );
    }
}

fn version() -> MsgVersion {
    MsgVersion {
        version: PVER as i32,
        services: services::NETWORK | services::WITNESS,
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
        addr_recv: NetAddress::default(),
        addr_from: NetAddress::default(),
        nonce: rand::random(),
        user_agent: "/attacker:0.1/".into(),
        start_height: 0,
        relay: true,
    }
}

fn frame(msg: &Message) -> Vec<u8> {
    encode_frame(NET, msg, PVER).unwrap()
}

/// A raw connection that completed the version handshake.
async fn handshaken(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&frame(&Message::Version(version())))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (msg, _) = tokio::time::timeout(left, read_frame(&mut s, NET, PVER))
            .await
            .expect("hub handshake in time")
            .expect("hub frame");
        if matches!(msg, Message::Verack) {
            break;
        }
    }
    s.write_all(&frame(&Message::Verack)).await.unwrap();
    s
}

/// Time until the hub closes `s` (reading and discarding what it sends), or None.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        let left = within.checked_sub(start.elapsed())?;
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

fn header(magic: [u8; 4], command: &str, len: u32, sum: [u8; 4]) -> Vec<u8> {
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(&magic);
    let mut cmd = [0u8; 12];
    cmd[..command.len()].copy_from_slice(command.as_bytes());
    h.extend_from_slice(&cmd);
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&sum);
    h
}

fn ping_frame_with(magic: [u8; 4], corrupt_checksum: bool) -> Vec<u8> {
    let payload = 7u64.to_le_bytes();
    let mut sum = checksum(&payload);
    if corrupt_checksum {
        sum[0] ^= 0xff;
    }
    let mut f = header(magic, "ping", 8, sum);
    f.extend_from_slice(&payload);
    f
}

/// Close within `bound`, or panic naming the attack.
async fn expect_closed(s: &mut TcpStream, bound: Duration, what: &str) -> Duration {
    closed_within(s, bound)
        .await
        .unwrap_or_else(|| panic!("{what}: the hub did not close within {bound:?}"))
}

macro_rules! attack {
    ($name:ident, $bound:expr, |$addr:ident| $body:block) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let scene = Scene::start().await;
            let $addr = scene.addr;
            scene.run(stringify!($name), $bound, async move $body).await;
        }
    };
}

attack!(wrong_magic, 16 * MIB, |addr| {
    let mut s = handshaken(addr).await;
    s.write_all(&ping_frame_with(Network::Mainnet.magic(), false))
        .await
        .unwrap();
    let t = expect_closed(&mut s, Duration::from_secs(2), "wrong magic").await;
    format!("closed in {t:?}")
});

attack!(bad_checksum, 16 * MIB, |addr| {
    let mut s = handshaken(addr).await;
    s.write_all(&ping_frame_with(NET.magic(), true))
        .await
        .unwrap();
    let t = expect_closed(&mut s, Duration::from_secs(2), "bad checksum").await;
    format!("closed in {t:?}")
});

attack!(oversized_length, 16 * MIB, |addr| {
    // A header claiming 4,000,001 bytes, then silence: refused from the header alone.
    let mut s = handshaken(addr).await;
    s.write_all(&header(NET.magic(), "tx", 4_000_001, [0; 4]))
        .await
        .unwrap();
    let t1 = expect_closed(&mut s, Duration::from_secs(2), "4,000,001-byte header").await;
    let mut s = handshaken(addr).await;
    s.write_all(&header(NET.magic(), "block", 32 << 20, [0; 4]))
        .await
        .unwrap();
    let t2 = expect_closed(&mut s, Duration::from_secs(2), "32 MiB header").await;
    format!("4,000,001-byte claim closed in {t1:?}, 32 MiB claim in {t2:?}, no payload sent")
});

attack!(inv_with_50001_items, 24 * MIB, |addr| {
    let mut s = handshaken(addr).await;
    let n = 50_001u32;
    let mut payload = vec![0xfe];
    payload.extend_from_slice(&n.to_le_bytes());
    for i in 0..n {
        payload.extend_from_slice(&inv_type::TX.to_le_bytes());
        payload.extend_from_slice(&Hash256::hash(&i.to_le_bytes()).0);
    }
    let mut f = header(NET.magic(), "inv", payload.len() as u32, checksum(&payload));
    f.extend_from_slice(&payload);
    // The hub may close before all of it is read; a write error is fine.
    let _ = s.write_all(&f).await;
    let t = expect_closed(&mut s, Duration::from_secs(3), "inv of 50,001").await;
    format!("{} bytes sent, closed in {t:?}", f.len())
});

attack!(non_canonical_varint, 16 * MIB, |addr| {
    let mut s = handshaken(addr).await;
    // One inventory item, its count written as fd 0100 instead of 01.
    let mut payload = vec![0xfd, 0x01, 0x00];
    let iv = InvVect {
        inv_type: inv_type::TX,
        hash: Hash256::hash(b"x"),
    };
    payload.extend_from_slice(&iv.inv_type.to_le_bytes());
    payload.extend_from_slice(&iv.hash.0);
    let mut f = header(NET.magic(), "inv", payload.len() as u32, checksum(&payload));
    f.extend_from_slice(&payload);
    s.write_all(&f).await.unwrap();
    let t = expect_closed(&mut s, Duration::from_secs(2), "non-canonical varint").await;
    format!("closed in {t:?}")
});

attack!(version_flood, 16 * MIB, |addr| {
    // After the handshake: a stream of versions ends at the first duplicate.
    let mut s = handshaken(addr).await;
    let mut flood = Vec::new();
    for _ in 0..200 {
        flood.extend_from_slice(&frame(&Message::Version(version())));
    }
    let _ = s.write_all(&flood).await;
    let t1 = expect_closed(&mut s, Duration::from_secs(2), "version flood").await;
    // Many connections, each sending only versions.
    let mut conns = Vec::new();
    for _ in 0..50 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        let mut burst = Vec::new();
        for _ in 0..20 {
            burst.extend_from_slice(&frame(&Message::Version(version())));
        }
        let _ = c.write_all(&burst).await;
        conns.push(c);
    }
    let mut slowest = Duration::ZERO;
    for c in &mut conns {
        slowest =
            slowest.max(expect_closed(c, Duration::from_secs(4), "versions-only connection").await);
    }
    format!("duplicate version closed in {t1:?}; 50 versions-only connections all closed, slowest {slowest:?}")
});

attack!(duplicate_verack, 16 * MIB, |addr| {
    let mut s = handshaken(addr).await;
    s.write_all(&frame(&Message::Verack)).await.unwrap();
    let t = expect_closed(&mut s, Duration::from_secs(2), "duplicate verack").await;
    format!("closed in {t:?}")
});

attack!(garbage_instead_of_a_header, 16 * MIB, |addr| {
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let junk: Vec<u8> = (0..64).map(|_| rand::random::<u8>()).collect();
        s.write_all(&junk).await.unwrap();
        slowest = slowest.max(expect_closed(&mut s, Duration::from_secs(3), "garbage").await);
    }
    format!("20 connections closed, slowest {slowest:?}")
});

attack!(slowloris_header, 16 * MIB, |addr| {
    // One byte every 200 ms of a valid version frame: the negotiation timeout ends it.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let bytes = frame(&Message::Version(version()));
    let start = Instant::now();
    for b in bytes {
        if s.write_all(&[b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if start.elapsed() > NEGOTIATE + Duration::from_secs(1) {
            break;
        }
    }
    let t = expect_closed(&mut s, Duration::from_secs(2), "slowloris").await;
    let total = start.elapsed();
    assert!(
        total >= NEGOTIATE - Duration::from_millis(300),
        "closed before the timeout: {total:?}"
    );
    format!("closed {total:?} after the first byte (negotiation timeout {NEGOTIATE:?}); {t:?} after the last")
});

attack!(half_open_connections, 32 * MIB, |addr| {
    let mut conns = Vec::new();
    for _ in 0..200 {
        conns.push(TcpStream::connect(addr).await.unwrap());
    }
    let start = Instant::now();
    let mut slowest = Duration::ZERO;
    for c in &mut conns {
        let t = expect_closed(c, NEGOTIATE + Duration::from_secs(3), "half-open").await;
        slowest = slowest.max(t);
    }
    format!(
        "200 silent connections all closed by the negotiation timeout, last after {:?}",
        start.elapsed().max(slowest)
    )
});

#[tokio::test]
async fn frame_header_sanity() {
    // The test's own header builder agrees with the codec's.
    let f = ping_frame_with(NET.magic(), false);
    let parsed = FrameHeader::parse(f[..24].try_into().unwrap());
    assert_eq!(parsed.to_bytes().to_vec(), f[..24].to_vec());
}
