//! Attacks on the frame layer: forged MACs, a stalled 16 MiB frame, snappy bombs.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mac_forgery_in_header() {
    let scene = Scene::start().await;
    let (addr, id) = (scene.addr(), scene.id());
    scene
        .run("mac_forgery_in_header", 16 * MIB, async move {
            let mut out = Vec::new();
            // Flip a bit of the header MAC, and of the header ciphertext.
            for byte in [16usize, 0] {
                let mut a = Attacker::joined(addr, &id, &[("echo", 1)]).await;
                let mut frame = a.frame(OFFSET, b"hello");
                frame[byte] ^= 0x01;
                a.send_raw(&frame).await;
                let (reason, t) = a.expect_disconnect(Duration::from_secs(2)).await;
                assert_eq!(reason, DisconnectReason::ProtocolBreach);
                out.push(format!("byte {byte}: {reason} in {t:?}"));
            }
            out.join("; ")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mac_forgery_in_body() {
    let scene = Scene::start().await;
    let (addr, id) = (scene.addr(), scene.id());
    scene
        .run("mac_forgery_in_body", 16 * MIB, async move {
            let mut out = Vec::new();
            // Flip a bit of the frame MAC (last byte), and of the body ciphertext.
            for from_end in [1usize, 17] {
                let mut a = Attacker::joined(addr, &id, &[("echo", 1)]).await;
                let mut frame = a.frame(OFFSET, b"hello");
                let at = frame.len() - from_end;
                frame[at] ^= 0x80;
                a.send_raw(&frame).await;
                let (reason, t) = a.expect_disconnect(Duration::from_secs(2)).await;
                assert_eq!(reason, DisconnectReason::ProtocolBreach);
                out.push(format!("byte len-{from_end}: {reason} in {t:?}"));
            }
            out.join("; ")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_claiming_16_mib_then_stalling() {
    let mut cfg = hub_config();
    // Sealing a real 16 MiB frame (the only way to get a header with a valid MAC) takes
    // seconds in a debug build; it happens between the ECIES handshake and our Hello.
    cfg.hello_timeout = Duration::from_secs(30);
    let scene = Scene::with(cfg).await;
    let (addr, id) = (scene.addr(), scene.id());
    let mut a = Attacker::handshake(addr, &id, random_key()).await;
    let hello = a.hello_frame(&[("echo", 1)]);
    let head = {
        let big = vec![0u8; p2p::frame::MAX_FRAME_SIZE];
        let mut frame = a.raw_frame(&big);
        frame.truncate(4096);
        frame.to_vec()
    };
    // Before Hello, the same kind of claim is refused from the header alone. This link is
    // set up before `a` finishes its Hello: the hub's read timer for `a` starts there, and on
    // a loaded machine a handshake in between could outlast it, so that `a`'s stalled header
    // would hit a closed socket and the reset would swallow the hub's Disconnect.
    let mut early = Attacker::handshake(addr, &id, random_key()).await;
    let early_frame = {
        let big = vec![0u8; 1 << 20];
        let mut f = early.raw_frame(&big);
        f.truncate(64);
        f.to_vec()
    };
    a.finish_hello(&hello).await.expect("hub hello");
    // The hub's read timer runs from the last whole message it read (our Hello), not from
    // the stalled header.
    let hello_done = Instant::now();
    scene
        .run("frame_claiming_16_mib_then_stalling", 16 * MIB, async move {
            // The header (size 0xffffff, valid MAC) and 4 KiB of body, then nothing.
            a.send_raw(&head).await;
            let (reason, t) = a
                .expect_disconnect(HUB_READ_TIMEOUT + Duration::from_secs(3))
                .await;
            let since_hello = hello_done.elapsed();
            assert_eq!(reason, DisconnectReason::PingTimeout);
            assert!(
                since_hello >= HUB_READ_TIMEOUT - Duration::from_millis(500),
                "dropped before the read timeout: {since_hello:?} after the last whole message"
            );

            early.send_raw(&early_frame).await;
            let (early_reason, te) = early.expect_disconnect(Duration::from_secs(2)).await;
            assert_eq!(early_reason, DisconnectReason::ProtocolBreach);
            format!(
                "stalled 16 MiB frame: {reason} after {t:.2?} (read timeout {HUB_READ_TIMEOUT:?}); 1 MiB frame before Hello: {early_reason} in {te:?}"
            )
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snappy_bomb() {
    let scene = Scene::start().await;
    let (addr, id) = (scene.addr(), scene.id());
    // A real bomb: 16 MiB of zeros (the most a message may decompress to) in ~0.8 MB.
    let bomb = {
        let zeros = vec![0u8; p2p::message::MAX_DECOMPRESSED_SIZE];
        let mut s = Snappy::new();
        s.compress(&zeros).unwrap().to_vec()
    };
    // Seal the bombs before our Hello goes out, so the hub's read timer does not run
    // while a debug build seals them. Code 1 of echo is read and dropped by the hub;
    // code 0 of `slow` lands in a 1 MiB queue.
    let mut full = Attacker::handshake(addr, &id, random_key()).await;
    let hello = full.hello_frame(&[("echo", 1)]);
    let bombs: Vec<Vec<u8>> = (0..2)
        .map(|_| {
            full.raw_frame(&[&[(OFFSET + 1) as u8][..], &bomb].concat())
                .to_vec()
        })
        .collect();
    full.finish_hello(&hello).await.expect("hub hello");
    let mut slow = Attacker::handshake(addr, &id, random_key()).await;
    let hello = slow.hello_frame(&[("slow", 1)]);
    let slow_bomb = slow
        .raw_frame(&[&[OFFSET as u8][..], &bomb].concat())
        .to_vec();
    slow.finish_hello(&hello).await.expect("hub hello");
    drop(bomb);
    scene
        .run("snappy_bomb", 96 * MIB, async move {
            let mut out = Vec::new();
            // Claims past the 16 MiB limit are refused from the 5-byte length header.
            for claim in [u32::MAX, 16 * 1024 * 1024 + 1] {
                let mut a = Attacker::joined(addr, &id, &[("echo", 1)]).await;
                let mut payload = Vec::new();
                let mut n = claim;
                while n >= 0x80 {
                    payload.push((n as u8) | 0x80);
                    n >>= 7;
                }
                payload.push(n as u8);
                payload.extend([0u8; 16]);
                let frame = a.raw_frame(&[&[OFFSET as u8][..], &payload].concat());
                a.send_raw(&frame).await;
                let (reason, t) = a.expect_disconnect(Duration::from_secs(2)).await;
                assert_eq!(reason, DisconnectReason::ProtocolBreach);
                out.push(format!("claim {claim} B: {reason} in {t:?}"));
            }
            // Two honest-sized bombs fit the per-peer budget (32 MiB): taken, decompressed,
            // dropped, and the link stays up.
            for f in &bombs {
                full.send_raw(f).await;
            }
            full.ping_pong().await;
            out.push("2 x (0.8 MB -> 16 MiB) to echo accepted, link up".into());
            // The same bomb toward a protocol with a 1 MiB queue is a breach.
            slow.send_raw(&slow_bomb).await;
            let (reason, t) = slow.expect_disconnect(Duration::from_secs(3)).await;
            assert_eq!(reason, DisconnectReason::ProtocolBreach);
            out.push(format!("16 MiB bomb to a 1 MiB queue: {reason} in {t:?}"));
            out.join("; ")
        })
        .await;
}
