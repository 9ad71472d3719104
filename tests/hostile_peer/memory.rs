//! Node memory bounds: what a peer makes the node hold, and for how long.

use super::*;

/// A protocol that keeps every payload it reads (as a relay's cache would), counting them.
fn keeper(kept: Arc<Mutex<Vec<bytes::Bytes>>>) -> Protocol {
    Protocol::new("keep", 1, 1, move |_peer, mut rw| {
        let kept = kept.clone();
        async move {
            loop {
                let m = rw.read().await?;
                kept.lock().unwrap().push(m.payload);
            }
        }
    })
}

/// A protocol that holds its reader and never reads: everything sent to it stays queued.
fn hoard() -> Protocol {
    Protocol::new("hoard", 1, 1, |_peer, rw| async move {
        let _rw = rw;
        std::future::pending::<()>().await;
        Ok(())
    })
    .with_inbound_limits(InboundLimits {
        max_messages: 64,
        max_bytes: 2 << 20,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_kept_payloads_after_reserved_code_bombs() {
    const PAIRS: usize = 12;
    let kept: Arc<Mutex<Vec<bytes::Bytes>>> = Arc::default();
    let mut cfg = hub_config();
    cfg.protocols.push(keeper(kept.clone()));
    // The attacker neither answers pings nor hurries: only memory is under test here.
    // A debug build under a loaded 2-core machine can take minutes to seal and open 50 MiB:
    // the read timeout must not be what ends an attacker.
    cfg.peer.read_timeout = Duration::from_secs(300);
    cfg.peer.ping_interval = Duration::from_secs(600);
    // Frames are sealed between the ECIES handshake and our Hello, slowly on a loaded machine.
    cfg.hello_timeout = Duration::from_secs(60);
    let scene = Scene::with(cfg).await;
    let (addr, id) = (scene.addr(), scene.id());
    let hub = scene.hub.clone();
    let bomb = Snappy::new()
        .compress(&vec![0u8; p2p::message::MAX_DECOMPRESSED_SIZE])
        .unwrap()
        .to_vec();
    let small = Snappy::new().compress(&[7u8; 32]).unwrap().to_vec();
    // Sealed before our Hello, so the hub's read timer does not run while a debug build seals.
    let mut a = Attacker::handshake(addr, &id, random_key()).await;
    let hello = a.hello_frame(&[("keep", 1)]);
    let mut frames = BytesMut::new();
    for _ in 0..PAIRS {
        // 0x05: a reserved base code; 16 MiB of zeros in ~0.8 MB. Then one small message
        // for `keep` (the only shared protocol, at offset 0x10).
        frames.extend_from_slice(&a.raw_frame(&[&[0x05][..], &bomb].concat()));
        frames.extend_from_slice(&a.raw_frame(&[&[OFFSET as u8][..], &small].concat()));
    }
    a.finish_hello(&hello).await.expect("hub hello");
    drop(bomb);
    scene
        .run(
            "small_kept_payloads_after_reserved_code_bombs",
            48 * MIB,
            async move {
                a.send_raw(&frames).await;
                // A debug build takes a while to open ~10 MB of frames: wait for the pong.
                a.send(PING, &EMPTY_LIST).await;
                loop {
                    let msg = a.recv(Duration::from_secs(20)).await.expect("pong");
                    match msg.code {
                        PONG => break,
                        DISCONNECT => panic!("hub disconnected: {}", decode_reason(&msg.payload)),
                        _ => {}
                    }
                }
                let start = Instant::now();
                while kept.lock().unwrap().len() < PAIRS {
                    assert!(start.elapsed() < Duration::from_secs(10), "keeper starved");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let held = hub.memory_budget().used();
                format!(
                    "{PAIRS} x (16 MiB of zeros on reserved code 0x05, 32-byte message kept by the protocol): link up, {} payloads kept, {held} bytes charged after",
                    kept.lock().unwrap().len()
                )
            },
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_hostile_peers_filling_the_node_budget() {
    const ATTACKERS: usize = 50;
    const BUDGET: usize = 8 << 20;
    const MSG: usize = 32 * 1024;
    const PER_ATTACKER: usize = 32; // 1 MiB each, half of what `hoard` would queue
    let mut cfg = hub_config();
    cfg.protocols.push(hoard());
    cfg.memory_budget_bytes = BUDGET;
    cfg.max_peers = 2 * ATTACKERS;
    // The attackers neither answer pings nor hurry: only memory is under test here.
    // A debug build under a loaded 2-core machine can take minutes to seal and open 50 MiB:
    // the read timeout must not be what ends an attacker.
    cfg.peer.read_timeout = Duration::from_secs(300);
    cfg.peer.ping_interval = Duration::from_secs(600);
    // Frames are sealed between the ECIES handshake and our Hello, slowly on a loaded machine.
    cfg.hello_timeout = Duration::from_secs(60);
    let scene = Scene::with(cfg).await;
    let (addr, id) = (scene.addr(), scene.id());
    let hub = scene.hub.clone();
    let mut attackers = Vec::new();
    for _ in 0..ATTACKERS {
        let mut a = Attacker::handshake(addr, &id, random_key()).await;
        let hello = a.hello_frame(&[("hoard", 1)]);
        // Random bytes: snappy cannot shrink them, so the hub really holds 32 KiB each.
        let payload = Snappy::new().compress(&random_bytes(MSG)).unwrap().to_vec();
        let mut frames = BytesMut::new();
        for _ in 0..PER_ATTACKER {
            frames.extend_from_slice(&a.raw_frame(&[&[OFFSET as u8][..], &payload].concat()));
        }
        a.finish_hello(&hello).await.expect("hub hello");
        attackers.push((a, frames));
    }
    // A frame header claiming more than the whole budget, sealed ahead like the rest.
    let mut claimer = Attacker::handshake(addr, &id, random_key()).await;
    let hello = claimer.hello_frame(&[("hoard", 1)]);
    let claim = {
        let mut f = claimer.raw_frame(&vec![0u8; BUDGET + (1 << 20)]);
        f.truncate(4096);
        f.to_vec()
    };
    claimer.finish_hello(&hello).await.expect("hub hello");
    let budget = hub.memory_budget().clone();
    scene
        .run(
            "fifty_hostile_peers_filling_the_node_budget",
            48 * MIB,
            async move {
                let peak = Arc::new(AtomicU64::new(0));
                let stop = Arc::new(AtomicBool::new(false));
                let sampler = {
                    let (peak, stop, budget) = (peak.clone(), stop.clone(), budget.clone());
                    tokio::spawn(async move {
                        while !stop.load(Ordering::Relaxed) {
                            peak.fetch_max(budget.used() as u64, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                    })
                };
                let runs: Vec<_> = attackers
                    .into_iter()
                    .map(|(mut a, frames)| {
                        tokio::spawn(async move {
                            a.send_raw(&frames).await;
                            // Evicted, or still connected once everything was taken. The
                            // frames stay alive till then, so that the attacker's own memory
                            // does not shrink under the hub's in the RSS figure.
                            let outcome = loop {
                                // A hub reader waits at most 5 s for room before giving up.
                                match a.recv(Duration::from_secs(12)).await {
                                    Ok(m) if m.code == DISCONNECT => {
                                        break Some(decode_reason(&m.payload))
                                    }
                                    Ok(_) => {}
                                    Err(_) => break None,
                                }
                            };
                            drop(frames);
                            (outcome, a)
                        })
                    })
                    .collect();
                let mut evicted = 0;
                let mut stayed = 0;
                let mut links = Vec::new();
                for run in runs {
                    let (outcome, link) = run.await.unwrap();
                    links.push(link);
                    match outcome {
                        Some(DisconnectReason::TooManyPeers) => evicted += 1,
                        Some(other) => panic!("attacker dropped with {other}"),
                        None => stayed += 1,
                    }
                }
                stop.store(true, Ordering::Relaxed);
                sampler.await.unwrap();
                let peak = peak.load(Ordering::Relaxed) as usize;
                let bound = BUDGET + (ATTACKERS + 2) * p2p::budget::PEER_ALLOWANCE;
                assert!(peak <= bound, "budget peak {peak} over {bound}");
                // Whoever stayed has all of its megabyte queued at the hub, within the budget.
                assert!(
                    stayed * PER_ATTACKER * MSG <= bound,
                    "{stayed} attackers kept, {evicted} evicted"
                );
                assert!(budget.used() <= bound);
                // A header claiming more than the budget: refused before the body is read.
                claimer.send_raw(&claim).await;
                let (reason, t) = claimer.expect_disconnect(Duration::from_secs(3)).await;
                assert_eq!(reason, DisconnectReason::TooManyPeers);
                format!(
                    "{ATTACKERS} peers x {} KiB queued toward a never-reading protocol, budget {} MiB: {evicted} evicted ({}), {stayed} kept, budget peak {:.1} MiB (bound {:.1} MiB); {} MiB frame header: {reason} in {t:.2?}",
                    PER_ATTACKER * MSG / 1024,
                    BUDGET >> 20,
                    DisconnectReason::TooManyPeers,
                    peak as f64 / MIB as f64,
                    bound as f64 / MIB as f64,
                    (BUDGET >> 20) + 1,
                )
            },
        )
        .await;
}
