//! Attacks before the encryption handshake completes: garbage, slowloris, half-open floods,
//! oversized or invalid auth packets, replayed auths.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_auth() {
    let scene = Scene::start().await;
    let addr = scene.addr();
    scene
        .run("garbage_instead_of_auth", 16 * MIB, async move {
            let mut worst = Duration::ZERO;
            for i in 0..20 {
                let mut garbage = random_bytes(1024);
                if i % 2 == 0 {
                    // A size prefix the hub refuses outright (> 2048)...
                    garbage[0] |= 0x80;
                } else {
                    // ...or a plausible one (256) over bytes that fail ECIES.
                    garbage[0] = 0x01;
                    garbage[1] = 0x00;
                    garbage[2] = 0x04;
                }
                let t = send_and_time_close(addr, &garbage, Duration::from_secs(2))
                    .await
                    .expect("hub closed the garbage connection within 2 s");
                worst = worst.max(t);
            }
            format!("20 connections closed, slowest after {worst:?}")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_handshake() {
    let scene = Scene::start().await;
    let (addr, id) = (scene.addr(), scene.id());
    scene
        .run("slowloris_handshake", 16 * MIB, async move {
            let auth = Initiator::random(&random_key(), &id)
                .unwrap()
                .auth_packet()
                .unwrap();
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut rd, mut wr) = stream.into_split();
            let start = Instant::now();
            let closer = tokio::spawn(async move {
                closed_within(&mut rd, HANDSHAKE_DEADLINE + Duration::from_secs(3)).await
            });
            // One byte per second, never more than 10 bytes (the hub must give up first).
            let mut sent = 0;
            for byte in auth.iter().take(10) {
                if closer.is_finished() || wr.write_all(&[*byte]).await.is_err() {
                    break;
                }
                sent += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let closed = closer.await.unwrap().expect("hub closed the slow handshake");
            let closed_at = start.elapsed().min(closed + Duration::from_millis(1));
            assert!(
                closed >= HANDSHAKE_DEADLINE - Duration::from_millis(500),
                "closed too early: {closed:?}"
            );
            assert!(
                closed <= HANDSHAKE_DEADLINE + Duration::from_secs(2),
                "closed too late: {closed:?}"
            );
            format!("{sent} bytes at 1 B/s; closed by the hub after {closed_at:.2?} (deadline {HANDSHAKE_DEADLINE:?})")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_half_open_connections() {
    let scene = Scene::start().await;
    let (addr, id) = (scene.addr(), scene.id());
    // Each half-open connection costs two descriptors here (both ends live in this
    // process); stay well inside the soft limit.
    let budget = process::fd_soft_limit()
        .unwrap_or(1024)
        .saturating_sub(process::open_fds().expect("/proc/self/fd") + 256)
        / 2;
    let n = budget.min(1000);
    assert!(
        n >= 100,
        "fd limit too low for this test: {}",
        process::fd_soft_limit().unwrap_or(1024)
    );
    scene
        .run("thousand_half_open_connections", 48 * MIB, async move {
            // All at once, each connect bounded: past the hub's max_pending (50) busy
            // handshakes and its listen backlog (std's 128), connects sit in SYN retry.
            let mut attempts = tokio::task::JoinSet::new();
            for _ in 0..n {
                attempts.spawn(async move {
                    tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await
                });
            }
            let mut conns = Vec::with_capacity(n);
            while let Some(r) = attempts.join_next().await {
                if let Ok(Ok(Ok(c))) = r {
                    conns.push(c);
                }
            }
            let established = conns.len();
            assert!(established >= 50, "only {established} connections established");
            // Hold them past the handshake deadline: the hub must close the ones it took
            // up (max_pending at a time) without any byte from us.
            tokio::time::sleep(HANDSHAKE_DEADLINE + Duration::from_millis(1500)).await;
            let mut closed = 0;
            let mut buf = [0u8; 1];
            for c in &conns {
                match c.try_read(&mut buf) {
                    Ok(0) => closed += 1,
                    Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => closed += 1,
                    _ => {}
                }
            }
            assert!(closed >= 50, "only {closed} idle handshakes closed at the deadline");
            drop(conns);
            // Once they are gone the hub takes new connections again, quickly.
            let start = Instant::now();
            let mut a = tokio::time::timeout(
                Duration::from_secs(10),
                Attacker::joined(addr, &id, &[("echo", 1)]),
            )
            .await
            .expect("new peer admitted after the flood");
            a.ping_pong().await;
            format!(
                "{n} concurrent connects, {established} established and left idle; {closed} closed by the hub at the {HANDSHAKE_DEADLINE:?} deadline; a new peer joined {:.0?} after they left",
                start.elapsed()
            )
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_size_prefix_65535() {
    let scene = Scene::start().await;
    let addr = scene.addr();
    scene
        .run("auth_size_prefix_65535", 8 * MIB, async move {
            let mut worst = Duration::ZERO;
            for prefix in [[0xff, 0xff], [0x08, 0x01]] {
                // Claim 65535 (or 2049) bytes, send a little, never the rest.
                let mut bytes = prefix.to_vec();
                bytes.extend(random_bytes(64));
                let t = send_and_time_close(addr, &bytes, Duration::from_secs(1))
                    .await
                    .expect("refused from the prefix alone, well before the deadline");
                worst = worst.max(t);
            }
            format!("prefixes 65535 and 2049 refused from the prefix, slowest close {worst:?}")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_curve_point() {
    let scene = Scene::start().await;
    let (addr, id) = (scene.addr(), scene.id());
    scene
        .run("invalid_curve_point", 16 * MIB, async move {
            // (a) ECIES R that is not on the curve: 0x04 ‖ (x=1, y=1).
            let mut packet = vec![0x01, 0x2c, 0x04];
            packet.extend([0u8; 31]);
            packet.push(1);
            packet.extend([0u8; 31]);
            packet.push(1);
            packet.extend(random_bytes(300 - 65));
            let ta = send_and_time_close(addr, &packet, Duration::from_secs(1))
                .await
                .expect("bad ECIES point refused at once");
            // (b) A correctly encrypted auth whose initiator key is not a curve point.
            let body = Initiator::random(&random_key(), &id).unwrap().auth_body();
            let forged = AuthBody {
                initiator_id: NodeId([0xff; 64]),
                ..body
            };
            let hub_key = id.to_pubkey().unwrap();
            let sealed = packets::seal_eip8(&hub_key, &forged.to_rlp()).unwrap();
            let tb = send_and_time_close(addr, &sealed, Duration::from_secs(1))
                .await
                .expect("bad initiator key refused at once");
            format!("off-curve ECIES R closed in {ta:?}; off-curve initiator id closed in {tb:?}")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_auth() {
    let scene = Scene::start().await;
    let (addr, id) = (scene.addr(), scene.id());
    scene
        .run("replayed_auth", 16 * MIB, async move {
            // A victim session; an eavesdropper captured its auth.
            let key = random_key();
            let mut victim = Attacker::joined_with_key(addr, &id, &[("echo", 1)], key).await;
            let captured = victim.auth.clone();
            // A round trip proves the hub runs the victim's peer (its Hello is done too).
            victim.ping_pong().await;

            // Replay while the victim is connected: the hub cannot tell it is a replay
            // (RLPx has no replay protection), answers with a fresh ack, and then refuses
            // the "already connected" id. The replayer never learns the session keys.
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut rd, mut wr) = stream.into_split();
            wr.write_all(&captured).await.unwrap();
            let ack = read_eip8_packet(&mut rd).await.expect("hub acks the replay");
            let t1 = closed_within(&mut rd, Duration::from_secs(2))
                .await
                .expect("replayed session closed");
            victim.ping_pong().await;

            // Replay after the victim left: the replayer cannot produce one valid frame;
            // its first (forged) frame ends the session at once and frees the id.
            drop(victim);
            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut rd, mut wr) = stream.into_split();
            wr.write_all(&captured).await.unwrap();
            read_eip8_packet(&mut rd).await.expect("hub acks the replay");
            wr.write_all(&random_bytes(64)).await.unwrap();
            let t2 = closed_within(&mut rd, Duration::from_secs(2))
                .await
                .expect("forged first frame closes the replayed session");
            // The real owner of the key can come back straight away.
            let start = Instant::now();
            loop {
                let mut a = Attacker::handshake(addr, &id, key).await;
                let hello = a.hello(&[("echo", 1)], NodeId::from_secret(&key).0.to_vec());
                match a.exchange_hello(&hello).await {
                    Ok(()) => break,
                    // The victim's own old session may take a moment to be reaped.
                    Err(DisconnectReason::AlreadyConnected)
                        if start.elapsed() < Duration::from_secs(3) =>
                    {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Err(r) => panic!("victim refused after replay: {r}"),
                }
            }
            format!(
                "replay acked ({} B) then closed in {t1:?} (victim online); forged frame closed it in {t2:?}; victim rejoined in {:.0?}",
                ack.len(),
                start.elapsed()
            )
        })
        .await;
}

/// Regression: a replayed auth that then stays silent used to hold the victim's node id
/// until the 5 s Hello deadline, refusing the real owner with "already connected". The id
/// is now only claimed once a Hello proves the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_replayed_auth_does_not_lock_out_the_owner() {
    let scene = Scene::start().await;
    let (addr, id) = (scene.addr(), scene.id());
    scene
        .run("silent_replayed_auth", 16 * MIB, async move {
            let key = random_key();
            let victim = Attacker::joined_with_key(addr, &id, &[("echo", 1)], key).await;
            let captured = victim.auth.clone();
            drop(victim);
            // Give the hub a moment to reap the victim's old session.
            tokio::time::sleep(Duration::from_millis(200)).await;

            let stream = TcpStream::connect(addr).await.unwrap();
            let (mut rd, mut wr) = stream.into_split();
            wr.write_all(&captured).await.unwrap();
            read_eip8_packet(&mut rd).await.expect("hub acks the replay");
            // ...and the replayer now says nothing, holding its connection open.

            let start = Instant::now();
            let mut owner = Attacker::handshake(addr, &id, key).await;
            let hello = owner.hello(&[("echo", 1)], NodeId::from_secret(&key).0.to_vec());
            owner
                .exchange_hello(&hello)
                .await
                .expect("the owner is admitted while the replayer is silent");
            let joined = start.elapsed();
            assert!(joined < Duration::from_secs(2), "owner waited {joined:?}");
            let t = closed_within(&mut rd, Duration::from_secs(8))
                .await
                .expect("the silent replayer is dropped at the Hello deadline");
            drop(wr);
            format!("owner admitted in {joined:?} while a replayer sat silent; replayer dropped after {t:?}")
        })
        .await;
}
