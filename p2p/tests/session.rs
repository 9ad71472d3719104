//! Hostile input at the link and session layers, end to end over in-memory pipes: each
//! case ends the connection with a typed error and, where one can be sent, the right
//! Disconnect reason — never a panic, never an allocation near a claimed size.

use std::time::Duration;

use p2p::base::{DisconnectReason, Hello, DISCONNECT, HELLO};
use p2p::conn::{Conn, ConnError};
use p2p::ecies::HandshakeError;
use p2p::frame::FrameError;
use p2p::message::MessageError;
use p2p::node::NodeId;
use p2p::session::{exchange_hello, SessionError};
use secp256k1::SecretKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(5);

fn key() -> SecretKey {
    SecretKey::new(&mut rand::thread_rng())
}

fn hello_for(key: &SecretKey) -> Hello {
    Hello::new(
        "test",
        vec![p2p::base::Capability::new("aa", 1)],
        0,
        NodeId::from_secret(key),
    )
}

async fn pair() -> (Conn, Conn) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let (ka, kb) = (key(), key());
    let id_b = NodeId::from_secret(&kb);
    let (ca, cb) = tokio::join!(Conn::initiate(a, &ka, &id_b, T), Conn::accept(b, &kb, T));
    (ca.unwrap(), cb.unwrap())
}

/// Read what the refused side was told.
async fn told(conn: &mut Conn) -> DisconnectReason {
    loop {
        let msg = tokio::time::timeout(T, conn.reader.read())
            .await
            .unwrap()
            .unwrap();
        if msg.code == DISCONNECT {
            return DisconnectReason::decode_lenient(&msg.payload, None).unwrap();
        }
    }
}

#[tokio::test]
async fn garbage_instead_of_auth_is_a_handshake_error() {
    let (mut a, b) = tokio::io::duplex(1 << 16);
    let k = key();
    let accept = tokio::spawn(async move { Conn::accept(b, &k, T).await });
    a.write_all(&[0x42; 600]).await.unwrap();
    let err = accept.await.unwrap().unwrap_err();
    assert!(matches!(err, ConnError::Handshake(_)), "{err}");
}

#[tokio::test]
async fn size_prefix_65535_is_refused_before_reading_the_body() {
    let (mut a, b) = tokio::io::duplex(1 << 16);
    let k = key();
    let accept = tokio::spawn(async move { Conn::accept(b, &k, T).await });
    // Only the prefix is sent and the pipe stays open: a reader that believed the size
    // would wait for 65535 more bytes until the deadline.
    a.write_all(&[0xff, 0xff]).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(1), accept)
        .await
        .expect("not refused at once")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            ConnError::Handshake(HandshakeError::PacketTooLarge { size: 65535, .. })
        ),
        "{err}"
    );
}

#[tokio::test]
async fn truncated_auth_ends_at_the_deadline_or_eof() {
    // A real auth, cut short, then the pipe is held open: the handshake deadline ends it.
    let (mut a, b) = tokio::io::duplex(1 << 16);
    let (ka, kb) = (key(), key());
    let id_b = NodeId::from_secret(&kb);
    let auth = p2p::ecies::Initiator::random(&ka, &id_b)
        .unwrap()
        .auth_packet()
        .unwrap();
    let accept =
        tokio::spawn(async move { Conn::accept(b, &kb, Duration::from_millis(300)).await });
    a.write_all(&auth[..auth.len() / 2]).await.unwrap();
    let err = accept.await.unwrap().unwrap_err();
    assert!(matches!(err, ConnError::HandshakeTimeout(_)), "{err}");
    // And with EOF instead of silence it is an immediate typed error.
    let (mut a, b) = tokio::io::duplex(1 << 16);
    let kb = key();
    let accept = tokio::spawn(async move { Conn::accept(b, &kb, T).await });
    a.write_all(&auth[..100]).await.unwrap();
    a.shutdown().await.unwrap();
    drop(a);
    assert!(matches!(
        accept.await.unwrap().unwrap_err(),
        ConnError::Handshake(_)
    ));
}

/// Flip one bit of the next frame written by `from` at `offset` within the frame.
async fn tampered_frame(offset: usize) -> ConnError {
    let (a, mut mitm_a) = tokio::io::duplex(1 << 16);
    let (mut mitm_b, b) = tokio::io::duplex(1 << 16);
    let (ka, kb) = (key(), key());
    let id_b = NodeId::from_secret(&kb);
    // Relay the handshake untouched, then tamper with the first frame A sends.
    let relay = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        let mut a_to_b = Vec::new();
        // auth from A
        let n = mitm_a.read(&mut buf).await.unwrap();
        mitm_b.write_all(&buf[..n]).await.unwrap();
        // ack from B
        let n = mitm_b.read(&mut buf).await.unwrap();
        mitm_a.write_all(&buf[..n]).await.unwrap();
        // first frame from A (header 32 + body 16 + mac 16 for a tiny payload)
        while a_to_b.len() < 64 {
            let n = mitm_a.read(&mut buf).await.unwrap();
            a_to_b.extend_from_slice(&buf[..n]);
        }
        a_to_b[offset] ^= 0x01;
        mitm_b.write_all(&a_to_b).await.unwrap();
        (mitm_a, mitm_b)
    });
    let (ca, cb) = tokio::join!(Conn::initiate(a, &ka, &id_b, T), Conn::accept(b, &kb, T));
    let (mut ca, mut cb) = (ca.unwrap(), cb.unwrap());
    ca.writer.write(0x10, &[0xc0]).await.unwrap();
    let _keep = relay.await.unwrap();
    tokio::time::timeout(T, cb.reader.read())
        .await
        .unwrap()
        .unwrap_err()
}

#[tokio::test]
async fn flipped_bit_in_header_mac_is_refused() {
    let err = tampered_frame(20).await;
    assert!(
        matches!(err, ConnError::Frame(FrameError::HeaderMac)),
        "{err}"
    );
}

#[tokio::test]
async fn flipped_bit_in_frame_mac_is_refused() {
    let err = tampered_frame(60).await;
    assert!(
        matches!(err, ConnError::Frame(FrameError::FrameMac)),
        "{err}"
    );
}

#[tokio::test]
async fn snappy_frame_claiming_1_gib_is_refused_before_allocating() {
    let (mut a, mut b) = pair().await;
    a.reader.enable_snappy();
    b.reader.enable_snappy();
    // A snappy block whose length varint says 1 GiB, followed by a few bytes.
    let bomb = [0x80, 0x80, 0x80, 0x80, 0x04, 0x00, 0x00];
    a.writer.write(0x10, &bomb).await.unwrap();
    let start = std::time::Instant::now();
    let err = b.reader.read().await.unwrap_err();
    assert!(
        matches!(err, ConnError::Message(MessageError::TooLarge { .. })),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_millis(200));
}

#[tokio::test]
async fn hello_with_a_65_byte_id_gets_null_node_identity() {
    let (mut a, mut b) = pair().await;
    let ka = key();
    let mut bad = hello_for(&ka);
    bad.id.push(0);
    let good = hello_for(&key());
    let (ra, rb) = tokio::join!(
        async {
            // The remote writes its odd Hello and then listens for our verdict.
            a.writer.write(HELLO, &bad.encode()).await.unwrap();
            let _their_hello = a.reader.read().await.unwrap();
            told(&mut a).await
        },
        exchange_hello(&mut b, &good, T)
    );
    assert_eq!(ra, DisconnectReason::NullNodeIdentity);
    assert!(matches!(
        rb,
        Err(SessionError::Refused {
            reason: DisconnectReason::NullNodeIdentity,
            ..
        })
    ));
}

#[tokio::test]
async fn hello_for_another_key_gets_unexpected_identity() {
    let (mut a, mut b) = pair().await;
    let other = hello_for(&key()); // valid id, but not the key that did the handshake
    let good = hello_for(&key());
    let (ra, rb) = tokio::join!(
        async {
            a.writer.write(HELLO, &other.encode()).await.unwrap();
            let _ = a.reader.read().await.unwrap();
            told(&mut a).await
        },
        exchange_hello(&mut b, &good, T)
    );
    assert_eq!(ra, DisconnectReason::UnexpectedIdentity);
    assert_eq!(
        rb.unwrap_err().reason(),
        DisconnectReason::UnexpectedIdentity
    );
}

#[tokio::test]
async fn non_hello_first_message_is_a_protocol_breach() {
    let (mut a, mut b) = pair().await;
    let good = hello_for(&key());
    let (ra, rb) = tokio::join!(
        async {
            a.writer.write(0x10, &[0xc0]).await.unwrap();
            let _ = a.reader.read().await.unwrap();
            told(&mut a).await
        },
        exchange_hello(&mut b, &good, T)
    );
    assert_eq!(ra, DisconnectReason::ProtocolBreach);
    assert_eq!(rb.unwrap_err().reason(), DisconnectReason::ProtocolBreach);
}

#[tokio::test]
async fn oversized_hello_is_refused_from_its_header() {
    let (mut a, mut b) = pair().await;
    let ka = key();
    let mut big = hello_for(&ka);
    big.client_id = "x".repeat(4000);
    let good = hello_for(&key());
    let (ra, rb) = tokio::join!(
        async {
            a.writer.write(HELLO, &big.encode()).await.unwrap();
            let _ = a.reader.read().await.unwrap();
            told(&mut a).await
        },
        exchange_hello(&mut b, &good, T)
    );
    assert_eq!(ra, DisconnectReason::ProtocolBreach);
    assert!(matches!(rb, Err(SessionError::Refused { .. })));
}

#[tokio::test]
async fn disconnect_instead_of_hello_is_reported() {
    let (mut a, mut b) = pair().await;
    let good = hello_for(&key());
    // go-ethereum sends a bare, uncompressed Disconnect before Hello when it is full.
    a.writer
        .write(DISCONNECT, &DisconnectReason::TooManyPeers.encode())
        .await
        .unwrap();
    let err = exchange_hello(&mut b, &good, T).await.unwrap_err();
    assert!(matches!(
        err,
        SessionError::RemoteDisconnect(DisconnectReason::TooManyPeers)
    ));
}

#[tokio::test]
async fn silent_remote_times_out_the_hello_exchange() {
    let (_a, mut b) = pair().await;
    let good = hello_for(&key());
    let err = exchange_hello(&mut b, &good, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, SessionError::Timeout(_)));
}

#[tokio::test]
async fn snappy_turns_on_only_when_both_say_v5() {
    let (a, b) = tokio::io::duplex(1 << 16);
    let (ka, kb) = (key(), key());
    let id_b = NodeId::from_secret(&kb);
    let (ca, cb) = tokio::join!(Conn::initiate(a, &ka, &id_b, T), Conn::accept(b, &kb, T));
    let (mut ca, mut cb) = (ca.unwrap(), cb.unwrap());
    let mut ha = hello_for(&ka);
    ha.protocol_version = 4;
    let hb = hello_for(&kb);
    let (ra, rb) = tokio::join!(
        exchange_hello(&mut ca, &ha, T),
        exchange_hello(&mut cb, &hb, T)
    );
    assert_eq!(ra.unwrap().protocol_version, 5);
    assert_eq!(rb.unwrap().protocol_version, 4);
    assert!(!ca.writer.snappy_enabled() && !cb.writer.snappy_enabled());
    // Still talking, uncompressed.
    ca.writer.write(0x10, &[0xc3, 1, 2, 3]).await.unwrap();
    let msg = cb.reader.read().await.unwrap();
    assert_eq!(&msg.payload[..], &[0xc3, 1, 2, 3]);
    assert_eq!(msg.wire_size, 5);
}
