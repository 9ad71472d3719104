//! A bitcoin relay chain of fifty braid nodes: each node runs the `btc` capability
//! (protocols::bitcoin over a braid link) and relays what it fetches, so a transaction
//! announced at one end is fetched hop by hop (inv, getdata, tx) to the other.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use braid_sim::{Event, Net, NetConfig, NodeCtx, Shared, Wiring};
use protocols::bitcoin::peer::{Config, Listener, Peer};
use protocols::bitcoin::wire::{inv_type, Hash256, InvVect, Message, Tx};

const NODES: usize = 50;

/// A one-input, one-output transaction (not valid on any chain; relays do not check).
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

/// One node's relay: fetch announced transactions it lacks (once), serve what it has,
/// and announce each new one to its other peers.
struct Relay {
    ctx: NodeCtx,
    peers: Mutex<Vec<Peer>>,
    have: Mutex<HashMap<Hash256, Tx>>,
    requested: Mutex<HashSet<Hash256>>,
}

impl Relay {
    fn announce(&self, txid: Hash256, except: Option<u64>) {
        let inv = InvVect {
            inv_type: inv_type::TX,
            hash: txid,
        };
        for p in self.peers.lock().unwrap().iter() {
            if Some(p.id()) != except && p.connected() {
                assert!(p.try_queue_message(Message::Inv(vec![inv]), None));
            }
        }
    }

    /// Peers whose bitcoin handshake is done.
    fn ready_peers(&self) -> usize {
        let peers = self.peers.lock().unwrap();
        peers
            .iter()
            .filter(|p| p.connected() && p.verack_received())
            .count()
    }
}

impl Listener for Relay {
    fn on_inv(&self, peer: &Peer, inv: &[InvVect]) {
        let wanted: Vec<InvVect> = inv
            .iter()
            .filter(|iv| iv.inv_type == inv_type::TX)
            .filter(|iv| !self.have.lock().unwrap().contains_key(&iv.hash))
            .filter(|iv| self.requested.lock().unwrap().insert(iv.hash))
            .copied()
            .collect();
        if !wanted.is_empty() {
            assert!(peer.try_queue_message(Message::GetData(wanted), None));
        }
    }

    fn on_get_data(&self, peer: &Peer, inv: &[InvVect]) {
        for iv in inv {
            let tx = self.have.lock().unwrap().get(&iv.hash).cloned();
            if let Some(tx) = tx {
                assert!(peer.try_queue_message(Message::Tx(tx), None));
            }
        }
    }

    fn on_tx(&self, peer: &Peer, tx: &Tx) {
        let txid = tx.txid();
        if self.have.lock().unwrap().insert(txid, tx.clone()).is_some() {
            return;
        }
        let via = peer
            .socket_addr()
            .and_then(|a| self.ctx.shared.node_at(a.ip()))
            .expect("a peer on the simulated network");
        self.ctx.record(Event::Delivered {
            via,
            what: format!("tx {txid}"),
        });
        self.announce(txid, Some(peer.id()));
    }
}

#[test]
fn a_relay_chain_of_fifty_nodes_carries_a_tx_end_to_end() {
    let mut cfg = NetConfig::new(50, NODES);
    cfg.wiring = Wiring::Chain;
    cfg.limit = Duration::from_secs(120);
    let relays: Arc<Mutex<Vec<Option<Arc<Relay>>>>> = Arc::new(Mutex::new(vec![None; NODES]));
    let registry = relays.clone();
    let protocols: braid_sim::Protocols = Arc::new(move |ctx: &NodeCtx| {
        let relay = Arc::new(Relay {
            ctx: ctx.clone(),
            peers: Mutex::new(Vec::new()),
            have: Mutex::new(HashMap::new()),
            requested: Mutex::new(HashSet::new()),
        });
        registry.lock().unwrap()[ctx.index] = Some(relay.clone());
        let config = Config {
            // Every node of the chain lives in this process and shares its
            // self-connection nonce set.
            allow_self_conns: true,
            user_agent_name: "braid-sim".into(),
            user_agent_version: "0.1".into(),
            listener: relay.clone(),
            ..Config::default()
        };
        let on_peer = relay.clone();
        vec![protocols::bitcoin::protocol(config, move |p| {
            on_peer.peers.lock().unwrap().push(p.clone())
        })]
    });
    let mut net = Net::new(&cfg, protocols);
    net.run_until(
        "every braid link up",
        Duration::from_secs(10),
        Shared::statics_linked,
    )
    .unwrap();
    let relay = |i: usize| relays.lock().unwrap()[i].clone().expect("node started");
    net.run_until(
        "every bitcoin handshake done",
        Duration::from_secs(10),
        |_| {
            (0..NODES).all(|i| {
                let want = if i == 0 || i == NODES - 1 { 1 } else { 2 };
                relay(i).ready_peers() == want
            })
        },
    )
    .unwrap();

    let tx = tx();
    let what = format!("tx {}", tx.txid());
    let origin = relay(0);
    origin.have.lock().unwrap().insert(tx.txid(), tx.clone());
    origin.announce(tx.txid(), None);
    let took = net
        .run_until("the tx at the far end", Duration::from_secs(30), |s| {
            s.node(NODES - 1).delivered.contains(&what)
        })
        .unwrap();
    net.run_for(Duration::from_secs(1)).unwrap();

    // Every relay got it exactly once, from its predecessor, after its predecessor.
    let trace = net.shared().trace();
    let deliveries: Vec<_> = trace
        .iter()
        .filter_map(|e| match &e.event {
            Event::Delivered { via, what: w } if *w == what => Some((e.node, *via, e.at)),
            _ => None,
        })
        .collect();
    assert_eq!(deliveries.len(), NODES - 1, "one delivery per relay");
    for (k, &(node, via, _)) in deliveries.iter().enumerate() {
        assert_eq!((node, via), (k + 1, k), "hop {k}");
    }
    assert!(deliveries.windows(2).all(|w| w[0].2 < w[1].2));
    for i in 1..NODES {
        let got = relay(i).have.lock().unwrap().get(&tx.txid()).cloned();
        assert_eq!(got.as_ref(), Some(&tx), "n{i} holds the same tx");
    }
    eprintln!(
        "sim: a tx crossed {} bitcoin-over-braid hops in {took:?} simulated ({:.1} ms per hop: \
         inv, getdata, tx); {:?} simulated from start in {:.2?} wall",
        NODES - 1,
        took.as_secs_f64() * 1000.0 / (NODES - 1) as f64,
        net.elapsed(),
        net.wall()
    );
}
