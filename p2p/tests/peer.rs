//! The peer state machine over in-memory pipes: one side is a real `Peer`, the other a
//! scripted remote driving a bare link, so every byte the peer sends can be checked.

use std::time::Duration;

use p2p::base::{Capability, DisconnectReason, Hello, DISCONNECT, EMPTY_LIST, PING, PONG};
use p2p::conn::{Conn, RawMessage};
use p2p::node::NodeId;
use p2p::peer::{Direction, Peer, PeerConfig, PeerInfo};
use p2p::protocol::{InboundLimits, Protocol, ProtocolError};
use p2p::session::exchange_hello;
use secp256k1::SecretKey;

// Generous: with a paused clock, timers jump straight to the next deadline, so this
// must exceed every peer timer a test waits through (ping 15 s + pong 15 s).
const T: Duration = Duration::from_secs(60);

fn key() -> SecretKey {
    SecretKey::new(&mut rand::thread_rng())
}

fn hello(key: &SecretKey, caps: &[(&str, u32)]) -> Hello {
    Hello {
        protocol_version: 5,
        client_id: "test".into(),
        capabilities: caps
            .iter()
            .map(|(n, v)| Capability {
                name: n.to_string(),
                version: *v,
            })
            .collect(),
        listen_port: 0,
        id: NodeId::from_secret(key).0.to_vec(),
    }
}

/// A running peer (with `protocols`) and the scripted remote's link.
async fn setup(
    protocols: Vec<Protocol>,
    remote_caps: &[(&str, u32)],
    config: PeerConfig,
) -> (Peer, Conn) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    setup_on(a, b, protocols, remote_caps, config).await
}

/// [`setup`] with the peer's side of the link on `a` and the remote's on `b`.
async fn setup_on(
    a: impl p2p::conn::ByteStream,
    b: tokio::io::DuplexStream,
    protocols: Vec<Protocol>,
    remote_caps: &[(&str, u32)],
    config: PeerConfig,
) -> (Peer, Conn) {
    let (ka, kb) = (key(), key());
    let id_b = NodeId::from_secret(&kb);
    let (ca, cb) = tokio::join!(Conn::initiate(a, &ka, &id_b, T), Conn::accept(b, &kb, T));
    let (mut ca, mut cb) = (ca.unwrap(), cb.unwrap());
    let ours = Hello {
        capabilities: protocols.iter().map(|p| p.capability()).collect(),
        ..hello(&ka, &[])
    };
    let theirs = hello(&kb, remote_caps);
    let (ha, hb) = tokio::join!(
        exchange_hello(&mut ca, &ours, T),
        exchange_hello(&mut cb, &theirs, T)
    );
    let their_hello = ha.unwrap();
    hb.unwrap();
    let info = PeerInfo {
        id: ca.remote_id,
        remote_addr: None,
        direction: Direction::Outbound,
        trusted: false,
    };
    let peer = Peer::start(ca, their_hello, &protocols, info, config, None)
        .await
        .unwrap();
    (peer, cb)
}

async fn read(remote: &mut Conn) -> RawMessage {
    tokio::time::timeout(T, remote.reader.read())
        .await
        .expect("read timed out")
        .expect("read failed")
}

/// Read until a Disconnect arrives (answering nothing) and return its reason.
async fn expect_disconnect(remote: &mut Conn) -> DisconnectReason {
    loop {
        let msg = read(remote).await;
        if msg.code == DISCONNECT {
            let mut snappy = p2p::message::Snappy::new();
            return DisconnectReason::decode_lenient(&msg.payload, Some(&mut snappy)).unwrap();
        }
    }
}

fn idle_protocol(name: &str, length: u64) -> Protocol {
    Protocol::new(name, 1, length, |_peer, mut rw| async move {
        loop {
            rw.read().await?;
        }
    })
}

/// A peer running one idle protocol `aa` of `length` codes, and its scripted remote.
async fn idle_peer(length: u64) -> (Peer, Conn) {
    setup(
        vec![idle_protocol("aa", length)],
        &[("aa", 1)],
        PeerConfig::default(),
    )
    .await
}

/// The remote is told `reason`, and the peer ends with it.
async fn assert_ended_with(peer: &Peer, remote: &mut Conn, reason: DisconnectReason) {
    assert_eq!(expect_disconnect(remote).await, reason);
    assert_eq!(peer.closed().await.reason, reason);
}

#[tokio::test]
async fn messages_route_by_offset_and_codes_are_relative() {
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let mk = |name: &'static str, tx: tokio::sync::mpsc::Sender<(&'static str, u64, Vec<u8>)>| {
        Protocol::new(name, 1, 4, move |_peer, mut rw| {
            let tx = tx.clone();
            async move {
                loop {
                    let m = rw.read().await?;
                    tx.send((name, m.code, m.payload.to_vec())).await.ok();
                    rw.write(m.code, &m.payload).await?;
                }
            }
        })
    };
    let (peer, mut remote) = setup(
        vec![mk("bb", tx.clone()), mk("aa", tx)],
        &[("aa", 1), ("bb", 1)],
        PeerConfig::default(),
    )
    .await;
    let offsets: Vec<_> = peer
        .protocols()
        .iter()
        .map(|c| (c.name.clone(), c.offset))
        .collect();
    assert_eq!(
        offsets,
        vec![("aa".to_string(), 16), ("bb".to_string(), 20)]
    );
    remote.writer.write(16 + 2, b"\xc1\x01").await.unwrap();
    remote.writer.write(20 + 3, b"\xc1\x02").await.unwrap();
    let mut got = vec![rx.recv().await.unwrap(), rx.recv().await.unwrap()];
    got.sort();
    assert_eq!(
        got,
        vec![
            ("aa", 2, b"\xc1\x01".to_vec()),
            ("bb", 3, b"\xc1\x02".to_vec())
        ]
    );
    // Echoes come back with the offsets added again.
    let mut codes = vec![read(&mut remote).await.code, read(&mut remote).await.code];
    codes.sort();
    assert_eq!(codes, vec![18, 23]);
    let traffic = peer.traffic();
    let aa = traffic.iter().find(|t| t.name == "aa").unwrap();
    assert_eq!(aa.code(2).ingress.messages, 1);
    assert_eq!(aa.code(2).egress.messages, 1);
}

#[tokio::test]
async fn write_rejects_codes_outside_the_protocol() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = std::sync::Mutex::new(Some(tx));
    let proto = Protocol::new("aa", 1, 2, move |_peer, rw| {
        let tx = tx.lock().unwrap().take();
        async move {
            let err = rw.write(2, &EMPTY_LIST).await.unwrap_err();
            if let Some(tx) = tx {
                tx.send(matches!(
                    err,
                    ProtocolError::InvalidCode { code: 2, length: 2 }
                ))
                .ok();
            }
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    let (_peer, _remote) = setup(vec![proto], &[("aa", 1)], PeerConfig::default()).await;
    assert!(rx.await.unwrap());
}

/// 60 kB of incompressible bytes, different per protocol, so that snappy cannot shrink the
/// frames and any interleaving of two writes would break the frame MACs.
fn pattern(tag: u8) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut bytes = vec![0u8; 60_000];
    rand::rngs::StdRng::seed_from_u64(tag as u64).fill_bytes(&mut bytes);
    bytes
}

#[tokio::test]
async fn concurrent_writers_share_the_token_and_both_progress() {
    const N: usize = 50;
    let writer = |name: &'static str, tag: u8| {
        Protocol::new(name, 1, 1, move |_peer, rw| async move {
            let payload = pattern(tag);
            for _ in 0..N {
                rw.write(0, &payload).await?;
            }
            std::future::pending::<()>().await;
            Ok(())
        })
    };
    let (peer, mut remote) = setup(
        vec![writer("aa", 1), writer("bb", 2)],
        &[("aa", 1), ("bb", 1)],
        PeerConfig::default(),
    )
    .await;
    let (pa, pb) = (pattern(1), pattern(2));
    let (mut na, mut nb, mut switches, mut last) = (0, 0, 0, 0u64);
    while na + nb < 2 * N {
        let msg = read(&mut remote).await;
        let expected = match msg.code {
            16 => &pa,
            17 => &pb,
            _ => continue,
        };
        assert!(msg.payload[..] == expected[..], "payload mixed up");
        if last != 0 && last != msg.code {
            switches += 1;
        }
        last = msg.code;
        if msg.code == 16 {
            na += 1
        } else {
            nb += 1
        }
    }
    assert_eq!((na, nb), (N, N));
    // FIFO token hand-off: once the pipe is full, neither writer starves the other.
    assert!(
        switches > 2,
        "writers never alternated ({switches} switches)"
    );
    assert!(!peer.is_closing());
}

#[tokio::test]
async fn protocol_returning_ends_the_peer() {
    let proto = Protocol::new("aa", 1, 1, |_peer, _rw| async { Ok(()) });
    let (peer, mut remote) = setup(vec![proto], &[("aa", 1)], PeerConfig::default()).await;
    assert_eq!(
        expect_disconnect(&mut remote).await,
        DisconnectReason::ClientQuitting
    );
    let closed = tokio::time::timeout(T, peer.closed()).await.unwrap();
    assert_eq!(closed.reason, DisconnectReason::ClientQuitting);
    assert!(!closed.remote);
}

#[tokio::test]
async fn erroring_protocol_sends_subprotocol_error() {
    let proto = Protocol::new("aa", 1, 1, |_peer, _rw| async {
        Err(ProtocolError::other("boom"))
    });
    let (peer, mut remote) = setup(vec![proto], &[("aa", 1)], PeerConfig::default()).await;
    assert_eq!(
        expect_disconnect(&mut remote).await,
        DisconnectReason::SubprotocolError
    );
    assert_eq!(
        peer.closed().await.reason,
        DisconnectReason::SubprotocolError
    );
}

#[tokio::test]
async fn unknown_code_is_a_protocol_breach() {
    let (peer, mut remote) = idle_peer(2).await;
    remote.writer.write(16 + 2, &EMPTY_LIST).await.unwrap();
    assert_ended_with(&peer, &mut remote, DisconnectReason::ProtocolBreach).await;
}

#[tokio::test]
async fn reserved_base_codes_are_ignored() {
    let (peer, mut remote) = idle_peer(2).await;
    for code in 4..16 {
        remote.writer.write(code, &EMPTY_LIST).await.unwrap();
    }
    remote.writer.write(PING, &EMPTY_LIST).await.unwrap();
    assert_eq!(read(&mut remote).await.code, PONG);
    assert!(!peer.is_closing());
}

#[tokio::test]
async fn remote_disconnect_is_reported_with_its_reason() {
    let (peer, mut remote) = idle_peer(1).await;
    remote
        .writer
        .write(DISCONNECT, &DisconnectReason::TooManyPeers.encode())
        .await
        .unwrap();
    let closed = tokio::time::timeout(T, peer.closed()).await.unwrap();
    assert_eq!(closed.reason, DisconnectReason::TooManyPeers);
    assert!(closed.remote);
}

#[tokio::test]
async fn a_slow_protocol_over_budget_is_a_breach_and_others_keep_going() {
    // "slow" never reads; "fast" echoes.
    // Holds its ProtoRw but never reads.
    let slow = Protocol::new("slow", 1, 1, |_peer, rw| async move {
        let _rw = rw;
        std::future::pending::<()>().await;
        Ok(())
    })
    .with_inbound_limits(InboundLimits {
        max_messages: 8,
        max_bytes: 1 << 20,
    });
    let fast = Protocol::new("fast", 1, 1, |_peer, mut rw| async move {
        loop {
            let m = rw.read().await?;
            rw.write(0, &m.payload).await?;
        }
    });
    let (peer, mut remote) = setup(
        vec![slow, fast],
        &[("slow", 1), ("fast", 1)],
        PeerConfig::default(),
    )
    .await;
    // "fast" is at 16, "slow" at 17. Up to the limit nothing happens, and fast still answers.
    for _ in 0..8 {
        remote.writer.write(17, &EMPTY_LIST).await.unwrap();
    }
    remote.writer.write(16, b"\x01").await.unwrap();
    let echo = read(&mut remote).await;
    assert_eq!(
        (echo.code, &echo.payload[..]),
        (16, &b"\x01"[..]),
        "peer closed early"
    );
    assert!(!peer.is_closing());
    // One more for the slow protocol breaks its budget.
    remote.writer.write(17, &EMPTY_LIST).await.unwrap();
    assert_eq!(
        expect_disconnect(&mut remote).await,
        DisconnectReason::ProtocolBreach
    );
}

#[tokio::test]
async fn byte_budget_counts_bytes_not_just_messages() {
    // Holds its ProtoRw but never reads.
    let slow = Protocol::new("slow", 1, 1, |_peer, rw| async move {
        let _rw = rw;
        std::future::pending::<()>().await;
        Ok(())
    })
    .with_inbound_limits(InboundLimits {
        max_messages: 1000,
        max_bytes: 100_000,
    });
    let (_peer, mut remote) = setup(vec![slow], &[("slow", 1)], PeerConfig::default()).await;
    let big = vec![0x55u8; 40_000];
    for _ in 0..3 {
        remote.writer.write(16, &big).await.unwrap();
    }
    assert_eq!(
        expect_disconnect(&mut remote).await,
        DisconnectReason::ProtocolBreach
    );
}

#[tokio::test(start_paused = true)]
async fn no_pong_is_a_ping_timeout() {
    let (peer, mut remote) = idle_peer(1).await;
    let start = tokio::time::Instant::now();
    // The remote reads (and ignores) the ping, never answering.
    let first = read(&mut remote).await;
    assert_eq!(first.code, PING);
    assert!(start.elapsed() >= Duration::from_secs(15));
    assert_ended_with(&peer, &mut remote, DisconnectReason::PingTimeout).await;
    assert!(start.elapsed() >= Duration::from_secs(30));
}

#[tokio::test(start_paused = true)]
async fn answered_pings_keep_the_peer_alive() {
    let (peer, mut remote) = idle_peer(1).await;
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        let msg = read(&mut remote).await;
        assert_eq!(msg.code, PING);
        remote.writer.write(PONG, &EMPTY_LIST).await.unwrap();
    }
    assert!(!peer.is_closing());
}

#[tokio::test]
async fn pings_are_answered_up_to_the_rate_limit() {
    let (peer, mut remote) = idle_peer(1).await;
    for _ in 0..5 {
        remote.writer.write(PING, &EMPTY_LIST).await.unwrap();
        assert_eq!(read(&mut remote).await.code, PONG);
    }
    // The bucket is empty: a burst beyond it is a flood.
    for _ in 0..3 {
        remote.writer.write(PING, &EMPTY_LIST).await.unwrap();
    }
    assert_ended_with(&peer, &mut remote, DisconnectReason::ProtocolBreach).await;
}

#[tokio::test]
async fn second_hello_is_a_breach() {
    let (_peer, mut remote) = idle_peer(1).await;
    let kb = key();
    remote
        .writer
        .write(0, &hello(&kb, &[("aa", 1)]).encode())
        .await
        .unwrap();
    assert_eq!(
        expect_disconnect(&mut remote).await,
        DisconnectReason::ProtocolBreach
    );
}

#[tokio::test]
async fn local_disconnect_reaches_the_remote_and_closed_waits_for_tasks() {
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let proto = Protocol::new("aa", 1, 1, move |_peer, mut rw| {
        let done_tx = done_tx.clone();
        async move {
            let r = rw.read().await;
            // Simulate cleanup that takes a moment after the peer closes.
            tokio::time::sleep(Duration::from_millis(50)).await;
            done_tx.send(()).await.ok();
            r.map(|_| ())
        }
    });
    let (peer, mut remote) = setup(vec![proto], &[("aa", 1)], PeerConfig::default()).await;
    peer.disconnect(DisconnectReason::ClientQuitting);
    assert_eq!(
        expect_disconnect(&mut remote).await,
        DisconnectReason::ClientQuitting
    );
    let closed = peer.closed().await;
    assert_eq!(closed.reason, DisconnectReason::ClientQuitting);
    // closed() returned only after the protocol task finished its cleanup.
    assert!(done_rx.try_recv().is_ok());
}

#[tokio::test]
async fn no_shared_capability_is_a_useless_peer() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let (ka, kb) = (key(), key());
    let id_b = NodeId::from_secret(&kb);
    let (ca, cb) = tokio::join!(Conn::initiate(a, &ka, &id_b, T), Conn::accept(b, &kb, T));
    let (mut ca, mut cb) = (ca.unwrap(), cb.unwrap());
    let (hello_a, hello_b) = (hello(&ka, &[("aa", 1)]), hello(&kb, &[("bb", 1)]));
    let (ha, hb) = tokio::join!(
        exchange_hello(&mut ca, &hello_a, T),
        exchange_hello(&mut cb, &hello_b, T)
    );
    hb.unwrap();
    let info = PeerInfo {
        id: ca.remote_id,
        remote_addr: None,
        direction: Direction::Inbound,
        trusted: false,
    };
    let res = Peer::start(
        ca,
        ha.unwrap(),
        &[idle_protocol("aa", 1)],
        info,
        PeerConfig::default(),
        None,
    )
    .await;
    assert!(res.is_err());
    assert_eq!(
        expect_disconnect(&mut cb).await,
        DisconnectReason::UselessPeer
    );
}

/// A protocol that hands every payload it reads to the test.
fn forwarding_protocol(tx: tokio::sync::mpsc::UnboundedSender<bytes::Bytes>) -> Protocol {
    Protocol::new("aa", 1, 1, move |_peer, mut rw| {
        let tx = tx.clone();
        async move {
            loop {
                let m = rw.read().await?;
                let _ = tx.send(m.payload);
            }
        }
    })
}

/// The allocation behind `payload`, which must be its alone.
fn allocation(payload: bytes::Bytes) -> usize {
    payload
        .try_into_mut()
        .expect("the payload shares its allocation with another buffer")
        .capacity()
}

#[tokio::test]
async fn a_kept_payload_owns_exactly_its_bytes() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (peer, mut remote) = setup(
        vec![forwarding_protocol(tx)],
        &[("aa", 1)],
        PeerConfig::default(),
    )
    .await;
    assert!(peer.snappy());
    remote.writer.write(16, &vec![0u8; 4 << 20]).await.unwrap();
    remote.writer.write(16, &[7u8; 32]).await.unwrap();
    let big = rx.recv().await.unwrap();
    let small = rx.recv().await.unwrap();
    drop(big);
    let held = allocation(small);
    assert!(held < 64, "a 32-byte payload keeps {held} bytes alive");
}

#[tokio::test]
async fn an_uncompressed_payload_owns_exactly_its_bytes() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let (ka, kb) = (key(), key());
    let id_b = NodeId::from_secret(&kb);
    let (ca, cb) = tokio::join!(Conn::initiate(a, &ka, &id_b, T), Conn::accept(b, &kb, T));
    let (mut ca, mut cb) = (ca.unwrap(), cb.unwrap());
    let big = vec![1u8; 1 << 20];
    let (w, r) = tokio::join!(
        async {
            ca.writer.write(16, &big).await.unwrap();
            ca.writer.write(16, &[7u8; 32]).await.unwrap();
        },
        async { (read(&mut cb).await, read(&mut cb).await) }
    );
    let ((), (first, second)) = (w, r);
    assert_eq!(first.payload.len(), 1 << 20);
    drop(first);
    assert_eq!(allocation(second.payload), 32);
}

#[tokio::test]
async fn reserved_base_codes_are_not_decompressed() {
    // A budget far below what the reserved message would decompress to: decompressing it
    // would have to be refused (and the peer dropped); discarding it costs nothing.
    let config = PeerConfig {
        memory_budget: Some(p2p::budget::MemoryBudget::new(1 << 20)),
        ..PeerConfig::default()
    };
    let (peer, mut remote) = setup(vec![idle_protocol("aa", 1)], &[("aa", 1)], config).await;
    remote.writer.write(5, &vec![0u8; 8 << 20]).await.unwrap();
    remote.writer.write(PING, &EMPTY_LIST).await.unwrap();
    assert_eq!(read(&mut remote).await.code, PONG);
    assert!(!peer.is_closing());
    assert_eq!(peer.held_bytes(), 0);
}

#[tokio::test]
async fn a_dropped_reader_releases_its_queue_and_later_messages_are_not_charged() {
    let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel();
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let go = std::sync::Mutex::new(Some((go_rx, dropped_tx)));
    // Reads one message, lets the rest queue up, then drops its reader and keeps running.
    let dropper = Protocol::new("aa", 1, 1, move |_peer, mut rw| {
        let signals = go.lock().unwrap().take();
        async move {
            rw.read().await?;
            let (go_rx, dropped_tx) = signals.expect("one peer");
            let _ = go_rx.await;
            drop(rw);
            let _ = dropped_tx.send(());
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    let (peer, mut remote) = setup(vec![dropper], &[("aa", 1)], PeerConfig::default()).await;
    remote.writer.write(16, &EMPTY_LIST).await.unwrap();
    let payload = vec![0x42u8; 10_000];
    for _ in 0..5 {
        remote.writer.write(16, &payload).await.unwrap();
    }
    // A ping answered means the read loop has queued everything sent before it.
    remote.writer.write(PING, &EMPTY_LIST).await.unwrap();
    assert_eq!(read(&mut remote).await.code, PONG);
    assert_eq!(peer.held_bytes(), 5 * 10_000);
    go_tx.send(()).unwrap();
    dropped_rx.await.unwrap();
    assert_eq!(
        peer.held_bytes(),
        0,
        "queued bytes stay charged after the drop"
    );
    for _ in 0..5 {
        remote.writer.write(16, &payload).await.unwrap();
    }
    remote.writer.write(PING, &EMPTY_LIST).await.unwrap();
    assert_eq!(read(&mut remote).await.code, PONG);
    assert_eq!(peer.held_bytes(), 0, "messages after the drop are charged");
    assert!(!peer.is_closing());
}

#[tokio::test]
async fn proto_rw_reads_as_a_stream_that_ends_when_the_peer_closes() {
    use futures::StreamExt;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let done_tx = std::sync::Mutex::new(Some(done_tx));
    let proto = Protocol::new("aa", 1, 4, move |_peer, mut rw| {
        let done = done_tx.lock().unwrap().take();
        async move {
            let mut seen = Vec::new();
            while let Some(m) = rw.next().await {
                seen.push((m.code, m.payload.to_vec()));
                rw.write(m.code, &m.payload).await?;
            }
            // The stream ended because the peer is closing, not because of an error.
            assert!(rw.peer().is_closing());
            if let Some(tx) = done {
                let _ = tx.send(seen);
            }
            Ok(())
        }
    });
    let (peer, mut remote) = setup(vec![proto], &[("aa", 1)], PeerConfig::default()).await;
    remote.writer.write(16 + 1, b"\xc1\x01").await.unwrap();
    remote.writer.write(16 + 3, b"\xc1\x03").await.unwrap();
    assert_eq!(read(&mut remote).await.code, 17);
    assert_eq!(read(&mut remote).await.code, 19);
    // Every message read through the stream was released from the peer's charge.
    assert_eq!(peer.held_bytes(), 0);
    peer.disconnect(DisconnectReason::DisconnectRequested);
    let seen = tokio::time::timeout(T, done_rx).await.unwrap().unwrap();
    assert_eq!(
        seen,
        vec![(1, b"\xc1\x01".to_vec()), (3, b"\xc1\x03".to_vec())]
    );
}

/// A stream that counts the writes that reach it.
struct CountingWrites<S> {
    inner: S,
    writes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for CountingWrites<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for CountingWrites<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        polled
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Writes made in a burst (here 200 without the writer yielding) leave in order and in a
/// handful of writes to the stream, not one each; answers to requests still flow after it.
#[tokio::test]
async fn a_burst_of_writes_is_coalesced_in_order_and_answers_still_flow() {
    const BURST: u32 = 200;
    let (a, b) = tokio::io::duplex(256 * 1024);
    let writes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = CountingWrites {
        inner: a,
        writes: writes.clone(),
    };
    let burst = Protocol::new("aa", 1, 2, |_peer, mut rw| async move {
        let writer = rw.writer();
        for i in 0..BURST {
            writer.write(0, &i.to_be_bytes()).await?;
        }
        // Then answer each request: code 1 echoed back.
        loop {
            let msg = rw.read().await?;
            rw.write(1, &msg.payload).await?;
        }
    });
    let (peer, mut remote) =
        setup_on(counted, b, vec![burst], &[("aa", 1)], PeerConfig::default()).await;
    let before = writes.load(std::sync::atomic::Ordering::SeqCst);
    for i in 0..BURST {
        let msg = read(&mut remote).await;
        assert_eq!(msg.code, 0x10, "message {i}");
        assert_eq!(
            &msg.payload[..],
            &i.to_be_bytes(),
            "message {i} out of order"
        );
    }
    let burst_writes = writes.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(
        (1..=10).contains(&burst_writes),
        "{BURST} messages took {burst_writes} writes to the stream"
    );
    remote.writer.write(0x11, b"ask").await.expect("request");
    let answer = read(&mut remote).await;
    assert_eq!((answer.code, &answer.payload[..]), (0x11, &b"ask"[..]));
    peer.disconnect(DisconnectReason::ClientQuitting);
    assert_eq!(peer.closed().await.reason, DisconnectReason::ClientQuitting);
}
