//! Attacks on admission: self-connection, duplicates, more peers than allowed.

use super::*;

fn refused_with(err: ServerError) -> DisconnectReason {
    match err {
        ServerError::Session(SessionError::RemoteDisconnect(r)) | ServerError::Refused(r) => r,
        other => panic!("unexpected error: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_self() {
    let scene = Scene::start().await;
    let hub = scene.hub.clone();
    scene
        .run("connecting_to_self", 16 * MIB, async move {
            let start = Instant::now();
            let err = hub.dial(&hub.enode().unwrap()).await.unwrap_err();
            let reason = refused_with(err);
            assert_eq!(reason, DisconnectReason::ConnectedToSelf);
            // Neither end of the loop left a slot behind.
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(hub.peer_count(), 1);
            format!("{reason} in {:?}; peer count still 1", start.elapsed())
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_connection() {
    let scene = Scene::start().await;
    let (addr, id) = (scene.addr(), scene.id());
    scene
        .run("duplicate_connection", 16 * MIB, async move {
            let key = random_key();
            let mut first = Attacker::joined_with_key(addr, &id, &[("echo", 1)], key).await;
            // A round trip proves the hub runs the first link's peer (its Hello is done too).
            first.ping_pong().await;
            let mut second = Attacker::handshake(addr, &id, key).await;
            // Refused at the checkpoint: a Disconnect *instead of* the hub's Hello.
            let msg = second.recv(Duration::from_secs(2)).await.expect("refusal");
            assert_eq!(
                msg.code, DISCONNECT,
                "expected a disconnect before any hello"
            );
            let reason = decode_reason(&msg.payload);
            assert_eq!(reason, DisconnectReason::AlreadyConnected);
            first.ping_pong().await;
            format!("second link: {reason} before Hello; first link still answers pings")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_inbound_peers_than_allowed() {
    let mut cfg = hub_config();
    cfg.max_peers = 6;
    cfg.dial_ratio = 3; // 2 dial slots, 4 inbound slots; the honest peer takes one
    let scene = Scene::with(cfg).await;
    let (addr, id) = (scene.addr(), scene.id());
    let hub = scene.hub.clone();
    scene
        .run("more_inbound_peers_than_allowed", 16 * MIB, async move {
            let mut admitted = Vec::new();
            let mut refused = 0;
            for _ in 0..10 {
                let mut a = Attacker::handshake(addr, &id, random_key()).await;
                let hello = a.hello(&[("echo", 1)], NodeId::from_secret(&a.key).0.to_vec());
                match a.exchange_hello(&hello).await {
                    Ok(()) => admitted.push(a),
                    Err(DisconnectReason::TooManyPeers) => refused += 1,
                    Err(r) => panic!("unexpected refusal {r}"),
                }
            }
            assert_eq!(admitted.len(), 3);
            assert_eq!(refused, 7);
            assert_eq!(hub.peer_count(), 4);
            drop(admitted);
            let start = Instant::now();
            while hub.peer_count() != 1 {
                assert!(start.elapsed() < Duration::from_secs(5), "slots not released");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            format!("10 attempts on 3 free inbound slots: 3 admitted, 7 {}; slots freed {:.0?} after they left", DisconnectReason::TooManyPeers, start.elapsed())
        })
        .await;
}
