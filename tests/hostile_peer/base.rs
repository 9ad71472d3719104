//! Attacks on the base protocol: identity games, a second Hello, unknown codes, floods.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_with_wrong_or_zero_identity() {
    let scene = Scene::start().await;
    let (addr, id) = (scene.addr(), scene.id());
    scene
        .run("hello_with_wrong_or_zero_identity", 16 * MIB, async move {
            let cases: [(&str, Vec<u8>, DisconnectReason); 4] = [
                (
                    "another key's id",
                    NodeId::from_secret(&random_key()).0.to_vec(),
                    DisconnectReason::UnexpectedIdentity,
                ),
                ("zero id", vec![0u8; 64], DisconnectReason::NullNodeIdentity),
                (
                    "63-byte id",
                    vec![7u8; 63],
                    DisconnectReason::NullNodeIdentity,
                ),
                ("empty id", Vec::new(), DisconnectReason::NullNodeIdentity),
            ];
            let mut out = Vec::new();
            for (what, hello_id, expected) in cases {
                let mut a = Attacker::handshake(addr, &id, random_key()).await;
                let hello = a.hello(&[("echo", 1)], hello_id);
                a.send(HELLO, &hello.encode()).await;
                let (reason, t) = a.expect_disconnect(Duration::from_secs(2)).await;
                assert_eq!(reason, expected, "{what}");
                out.push(format!("{what}: {reason} in {t:?}"));
            }
            out.join("; ")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_hello() {
    let scene = Scene::start().await;
    let (addr, id) = (scene.addr(), scene.id());
    scene
        .run("second_hello", 16 * MIB, async move {
            let mut a = Attacker::joined(addr, &id, &[("echo", 1)]).await;
            let hello = a.hello(&[("echo", 1)], NodeId::from_secret(&a.key).0.to_vec());
            a.send(HELLO, &hello.encode()).await;
            let (reason, t) = a.expect_disconnect(Duration::from_secs(2)).await;
            assert_eq!(reason, DisconnectReason::ProtocolBreach);
            format!("{reason} in {t:?}")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_message_codes() {
    let scene = Scene::start().await;
    let (addr, id) = (scene.addr(), scene.id());
    scene
        .run("unknown_message_codes", 16 * MIB, async move {
            let mut out = Vec::new();
            // Reserved base-protocol codes are ignored (as geth does): the link stays up.
            let mut a = Attacker::joined(addr, &id, &[("echo", 1)]).await;
            for code in 4..OFFSET {
                a.send(code, &EMPTY_LIST).await;
            }
            a.ping_pong().await;
            out.push("reserved 0x04..0x0f ignored".to_string());
            // A code past every shared protocol (echo is 0x10..0x11 for this peer).
            let mut a = Attacker::joined(addr, &id, &[("echo", 1)]).await;
            a.send(0x7f, &EMPTY_LIST).await;
            let (reason, t) = a.expect_disconnect(Duration::from_secs(2)).await;
            assert_eq!(reason, DisconnectReason::ProtocolBreach);
            out.push(format!("0x7f: {reason} in {t:?}"));
            // A huge code, and non-canonical id encodings.
            for data in [
                vec![0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc0],
                vec![0x81, 0x05, 0xc0],
                vec![0x00, 0xc0],
                vec![0xc1, 0x80],
            ] {
                let mut a = Attacker::joined(addr, &id, &[("echo", 1)]).await;
                let frame = a.raw_frame(&data);
                a.send_raw(&frame).await;
                let (reason, t) = a.expect_disconnect(Duration::from_secs(2)).await;
                assert_eq!(
                    reason,
                    DisconnectReason::ProtocolBreach,
                    "{}",
                    hex::encode(&data)
                );
                out.push(format!(
                    "id {}: {reason} in {t:?}",
                    hex::encode(&data[..data.len() - 1])
                ));
            }
            out.join("; ")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_flood() {
    let scene = Scene::start().await;
    let (addr, id) = (scene.addr(), scene.id());
    scene
        .run("ping_flood", 16 * MIB, async move {
            let mut a = Attacker::joined(addr, &id, &[("echo", 1)]).await;
            let mut burst = BytesMut::new();
            for _ in 0..200 {
                burst.extend_from_slice(&a.frame(PING, &EMPTY_LIST));
            }
            a.send_raw(&burst).await;
            let start = Instant::now();
            let mut pongs = 0;
            let reason = loop {
                let msg = a
                    .recv(Duration::from_secs(3).saturating_sub(start.elapsed()))
                    .await
                    .expect("disconnect after the flood");
                match msg.code {
                    PONG => pongs += 1,
                    DISCONNECT => break decode_reason(&msg.payload),
                    _ => {}
                }
            };
            assert_eq!(reason, DisconnectReason::ProtocolBreach);
            assert!(pongs <= 6, "{pongs} pongs for a flood (burst is 5)");
            format!(
                "200 pings: {pongs} pongs, then {reason} in {:?}",
                start.elapsed()
            )
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_flood_toward_a_slow_protocol() {
    let scene = Scene::start().await;
    let (addr, id) = (scene.addr(), scene.id());
    scene
        .run(
            "message_flood_toward_a_slow_protocol",
            32 * MIB,
            async move {
                // Only `slow` is shared, so it sits at offset 0x10.
                let mut a = Attacker::joined(addr, &id, &[("slow", 1)]).await;
                let payload = vec![0xab; 1024];
                let mut sent = 0;
                let start = Instant::now();
                let mut batch = BytesMut::new();
                for _ in 0..500 {
                    batch.extend_from_slice(&a.frame(OFFSET, &payload));
                    sent += 1;
                }
                a.send_raw(&batch).await;
                let (reason, t) = a.expect_disconnect(Duration::from_secs(3)).await;
                assert_eq!(reason, DisconnectReason::ProtocolBreach);
                format!(
                    "{sent} x 1 KiB toward a 32-message queue: {reason} in {t:?} ({:?} total)",
                    start.elapsed()
                )
            },
        )
        .await;
}
