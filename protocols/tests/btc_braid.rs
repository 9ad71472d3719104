//! The same peer logic over a braid link: two braid servers run the `btc` capability and
//! exchange a version handshake, then inv -> getdata -> tx.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2p::server::{Server, ServerConfig};
use protocols::bitcoin::peer::{Config, Listener, Peer};
use protocols::bitcoin::wire::{inv_type, Command, InvVect, Message, Tx};
use tokio::sync::mpsc;

const T: Duration = Duration::from_secs(20);

fn tx() -> Tx {
    let mut t = Vec::new();
    t.extend_from_slice(&2i32.to_le_bytes());
    t.push(1);
    t.extend_from_slice(&[0x11; 32]);
    t.extend_from_slice(&1u32.to_le_bytes());
    t.push(0);
    t.extend_from_slice(&u32::MAX.to_le_bytes());
    t.push(1);
    t.extend_from_slice(&1234u64.to_le_bytes());
    t.push(0);
    t.extend_from_slice(&0u32.to_le_bytes());
    Tx::from_bytes(t.into()).unwrap()
}

/// Serves `tx` to getdata.
struct Holder {
    tx: Tx,
}

impl Listener for Holder {
    fn on_get_data(&self, peer: &Peer, inv: &[InvVect]) {
        if inv.iter().any(|iv| iv.hash == self.tx.txid()) {
            assert!(peer.try_queue_message(Message::Tx(self.tx.clone()), None));
        }
    }
}

/// Asks for announced transactions and reports what arrives.
struct Fetcher {
    got: mpsc::Sender<Tx>,
}

impl Listener for Fetcher {
    fn on_inv(&self, peer: &Peer, inv: &[InvVect]) {
        assert!(peer.try_queue_message(Message::GetData(inv.to_vec()), None));
    }
    fn on_tx(&self, _: &Peer, tx: &Tx) {
        let _ = self.got.try_send(tx.clone());
    }
}

async fn server(cfg: Config, peers: Arc<Mutex<Vec<Peer>>>) -> Server {
    let key = secp256k1::SecretKey::new(&mut rand::thread_rng());
    let proto = protocols::bitcoin::protocol(cfg, move |p| peers.lock().unwrap().push(p.clone()));
    let mut sc = ServerConfig::new(key, Some("127.0.0.1:0".parse().unwrap()));
    sc.protocols.push(proto);
    Server::start(sc).await.expect("server start")
}

#[tokio::test]
async fn btc_over_braid_handshake_inv_getdata_tx() {
    let tx = tx();
    let (got_tx, mut got) = mpsc::channel(4);
    let base = Config {
        // Both nodes live in this process and share the self-connection nonce set.
        allow_self_conns: true,
        user_agent_name: "braid".into(),
        user_agent_version: "0.1".into(),
        trickle_interval: Duration::from_millis(200),
        ..Config::default()
    };
    let a_peers = Arc::new(Mutex::new(Vec::new()));
    let b_peers = Arc::new(Mutex::new(Vec::new()));
    let a = server(
        Config {
            listener: Arc::new(Holder { tx: tx.clone() }),
            ..base.clone()
        },
        a_peers.clone(),
    )
    .await;
    let b = server(
        Config {
            listener: Arc::new(Fetcher { got: got_tx }),
            ..base
        },
        b_peers.clone(),
    )
    .await;
    a.dial(&b.enode().unwrap()).await.expect("dial");

    let handshaken = |peers: &Arc<Mutex<Vec<Peer>>>| {
        peers
            .lock()
            .unwrap()
            .first()
            .filter(|p| p.verack_received())
            .cloned()
    };
    let deadline = tokio::time::Instant::now() + T;
    let (pa, pb) = loop {
        if let (Some(pa), Some(pb)) = (handshaken(&a_peers), handshaken(&b_peers)) {
            break (pa, pb);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "btc handshake over braid"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(!pa.inbound() && pb.inbound(), "the dialer speaks first");
    assert_eq!(pa.protocol_version(), 70016);
    assert!(pa.wants_addr_v2() && pb.wants_addr_v2());
    assert_eq!(pb.user_agent(), "/btcwire:0.5.0/braid:0.1/");
    // Payload bytes only (the link frames): version payload + sendaddrv2 (0) + verack (0).
    assert_eq!(pa.bytes_sent(), pb.bytes_received());

    // Block inventory bypasses the trickle, so use a tx inv and let the trickle run.
    pa.queue_inventory(InvVect {
        inv_type: inv_type::TX,
        hash: tx.txid(),
    })
    .await;
    let fetched = tokio::time::timeout(T, got.recv())
        .await
        .expect("tx relayed over braid")
        .unwrap();
    assert_eq!(fetched.txid(), tx.txid());
    assert_eq!(fetched, tx);
    assert_eq!(Command::COUNT, 26);
    a.shutdown().await;
    b.shutdown().await;
}
