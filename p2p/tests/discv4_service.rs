//! The discv4 UDP service on loopback: a network of braid nodes filling their tables from
//! one bootnode, and hostile packets crafted with the packet codec by a raw UDP socket.
//!
//! Every node binds its own 127.0.x.y address (Linux routes all of 127.0.0.0/8 to
//! loopback), so per-IP and per-subnet rules see distinct hosts.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use p2p::base::Capability;
use p2p::discover::v4::packet::{
    self, Endpoint, EnrResponse, FindNode, Message, Neighbor, Neighbors, Packet, Ping, Pong,
    PING_VERSION,
};
use p2p::discover::v4::table::TableConfig;
use p2p::discover::v4::RateLimit;
use p2p::discover::v4::{Bootnode, Discv4, Discv4Config};
use p2p::node::{Enode, NodeKey};
use p2p::record::{NodeRecord, RecordSpec};
use tokio::net::UdpSocket;

fn ip(a: u8, b: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, a, b))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn config(ip: IpAddr, boot: Option<Enode>) -> Discv4Config {
    let mut c = Discv4Config::new(NodeKey::generate(), SocketAddr::new(ip, 0));
    c.tcp_port = 30303;
    c.capabilities = vec![Capability::new("braid-test", 1)];
    c.request_timeout = Duration::from_millis(700);
    c.revalidate_interval = Duration::from_millis(500);
    c.refresh_interval = Duration::from_secs(1);
    c.bootnodes = boot.into_iter().map(Bootnode::Enode).collect();
    c
}

/// Waits (bounded) until `cond` holds; returns whether it did.
async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_of_30_fills_tables_and_lookup_finds_a_node() {
    const N: usize = 30;
    // Enough that every node must have learnt of nodes beyond the bootnode.
    const MIN_TABLE: usize = 10;
    let boot = Discv4::start(config(ip(1, 250), None)).await.unwrap();
    let boot_enode = boot.local_enode();
    let mut nodes = Vec::new();
    for i in 0..N {
        nodes.push(
            Discv4::start(config(ip(1, i as u8 + 1), Some(boot_enode)))
                .await
                .unwrap(),
        );
    }
    let mut candidates = nodes[0].candidates().unwrap();
    let started = Instant::now();
    let filled = wait_until(Duration::from_secs(40), || {
        nodes.iter().all(|n| n.table_len() >= MIN_TABLE)
    })
    .await;
    let lens: Vec<usize> = nodes.iter().map(|n| n.table_len()).collect();
    assert!(filled, "tables not filled: {lens:?}");
    eprintln!(
        "{N} nodes reached >= {MIN_TABLE} table entries each in {:.1?}; table sizes {lens:?}",
        started.elapsed()
    );

    // A lookup from the first node finds the last one (which it need not know directly).
    let target = nodes[N - 1].local_id();
    let found = nodes[0].lookup(target).await;
    assert_eq!(
        found.first().map(|n| n.id),
        Some(target),
        "lookup result {:?}",
        found.iter().map(|n| n.endpoint.ip).collect::<Vec<_>>()
    );

    // Candidates carry the record fetched by ENRRequest, with the braid capability.
    let c = tokio::time::timeout(Duration::from_secs(5), candidates.recv())
        .await
        .expect("a candidate")
        .expect("stream open");
    let record = c.record.clone().expect("candidate's record fetched");
    assert_eq!(record.node_id().unwrap(), c.node.id);
    assert!(record.speaks_any(&[Capability::new("braid-test", 1)]));
    assert_eq!(c.tcp_addr().map(|a| a.port()), Some(30303));

    let stats: Vec<_> = nodes.iter().map(|n| n.stats()).collect();
    let secs = started.elapsed().as_secs_f64();
    let sent: u64 = stats.iter().map(|s| s.sent).sum();
    let recv: u64 = stats.iter().map(|s| s.received).sum();
    let max_sent = stats.iter().map(|s| s.sent).max().unwrap();
    eprintln!(
        "UDP packets per node over {secs:.1}s: sent avg {:.0} (max {max_sent}), received avg {:.0}; bootnode sent {} received {}",
        sent as f64 / N as f64,
        recv as f64 / N as f64,
        boot.stats().sent,
        boot.stats().received,
    );
    for n in nodes {
        n.shutdown().await;
    }
    boot.shutdown().await;
}

/// A hand-driven discv4 endpoint: any packet, right or wrong.
struct Raw {
    key: NodeKey,
    sock: UdpSocket,
}

impl Raw {
    async fn bind(ip: IpAddr) -> Raw {
        Raw {
            key: NodeKey::generate(),
            sock: UdpSocket::bind(SocketAddr::new(ip, 0)).await.unwrap(),
        }
    }

    fn endpoint(&self) -> Endpoint {
        let a = self.sock.local_addr().unwrap();
        Endpoint {
            ip: a.ip(),
            udp_port: a.port(),
            tcp_port: 0,
        }
    }

    async fn send(&self, to: SocketAddr, msg: &Message) -> [u8; 32] {
        let (bytes, hash) = packet::encode(msg, self.key.secret()).unwrap();
        self.sock.send_to(&bytes, to).await.unwrap();
        hash
    }

    fn ping_msg(&self, to: SocketAddr, expiration: u64) -> Message {
        Message::Ping(Ping {
            version: PING_VERSION,
            from: self.endpoint(),
            to: Endpoint {
                ip: to.ip(),
                udp_port: to.port(),
                tcp_port: 0,
            },
            expiration,
            enr_seq: None,
            rest: Vec::new(),
        })
    }

    fn pong_msg(&self, to: SocketAddr, ping_hash: [u8; 32]) -> Message {
        Message::Pong(Pong {
            to: Endpoint {
                ip: to.ip(),
                udp_port: to.port(),
                tcp_port: 0,
            },
            ping_hash,
            expiration: unix_now() + 20,
            enr_seq: None,
            rest: Vec::new(),
        })
    }

    async fn find_node(&self, to: SocketAddr) {
        let msg = Message::FindNode(FindNode {
            target: NodeKey::generate().id(),
            expiration: unix_now() + 20,
            rest: Vec::new(),
        });
        self.send(to, &msg).await;
    }

    /// Every packet received within `window`.
    async fn recv_for(&self, window: Duration) -> Vec<Packet> {
        let deadline = tokio::time::Instant::now() + window;
        let mut out = Vec::new();
        let mut buf = [0u8; 1500];
        while let Ok(Ok((n, _))) =
            tokio::time::timeout_at(deadline, self.sock.recv_from(&mut buf)).await
        {
            out.push(packet::decode(&buf[..n]).expect("the service sends valid packets"));
        }
        out
    }

    /// Pings `to` and returns the packets it sent back within `window` (its pong and,
    /// when we are not bonded, its ping).
    async fn ping_and_collect(&self, to: SocketAddr, window: Duration) -> ([u8; 32], Vec<Packet>) {
        let hash = self.send(to, &self.ping_msg(to, unix_now() + 20)).await;
        (hash, self.recv_for(window).await)
    }

    /// Completes the endpoint proof in both directions.
    async fn bond(&self, to: SocketAddr) {
        let (_, got) = self.ping_and_collect(to, Duration::from_millis(300)).await;
        let their_ping = got
            .iter()
            .find(|p| matches!(p.message, Message::Ping(_)))
            .expect("the service pings an unbonded node back");
        self.send(to, &self.pong_msg(to, their_ping.hash)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn count_neighbors(packets: &[Packet]) -> usize {
    packets
        .iter()
        .filter(|p| matches!(p.message, Message::Neighbors(_)))
        .count()
}

/// A node with one live table entry (a second node that bootstrapped from it), so a
/// bonded `FindNode` has something to answer with.
async fn node_with_a_neighbour(ip_a: IpAddr, ip_b: IpAddr) -> (Discv4, Discv4) {
    let mut ca = config(ip_a, None);
    ca.request_timeout = Duration::from_millis(900);
    let a = Discv4::start(ca).await.unwrap();
    let b = Discv4::start(config(ip_b, Some(a.local_enode())))
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || a.table_len() >= 1).await);
    (a, b)
}

#[tokio::test]
async fn findnode_from_unbonded_source_gets_no_neighbors() {
    let (a, _b) = node_with_a_neighbour(ip(2, 1), ip(2, 2)).await;
    let to = a.local_addr();
    let raw = Raw::bind(ip(2, 3)).await;

    // No ping/pong first: a spoofed-source findnode must not be amplified.
    raw.find_node(to).await;
    let got = raw.recv_for(Duration::from_millis(500)).await;
    assert_eq!(got.len(), 0, "unbonded findnode answered: {got:?}");

    // After the endpoint proof the same request is answered.
    raw.bond(to).await;
    raw.find_node(to).await;
    let got = raw.recv_for(Duration::from_millis(500)).await;
    assert_eq!(count_neighbors(&got), 1, "bonded findnode: {got:?}");
}

#[tokio::test]
async fn forged_or_late_pong_does_not_bond() {
    let (a, _b) = node_with_a_neighbour(ip(2, 11), ip(2, 12)).await;
    let to = a.local_addr();
    let raw = Raw::bind(ip(2, 13)).await;

    let (_, got) = raw.ping_and_collect(to, Duration::from_millis(300)).await;
    let their_ping = got
        .iter()
        .find(|p| matches!(p.message, Message::Ping(_)))
        .expect("ping-back");
    assert!(got.iter().any(|p| matches!(p.message, Message::Pong(_))));

    // A pong quoting the wrong hash is ignored: no bond, so findnode stays unanswered.
    let mut wrong = their_ping.hash;
    wrong[0] ^= 1;
    raw.send(to, &raw.pong_msg(to, wrong)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    raw.find_node(to).await;
    let got = raw.recv_for(Duration::from_millis(300)).await;
    assert_eq!(count_neighbors(&got), 0, "forged pong bonded: {got:?}");

    // The right hash, but after the request timed out: ignored as well.
    tokio::time::sleep(Duration::from_millis(900)).await;
    raw.send(to, &raw.pong_msg(to, their_ping.hash)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    raw.find_node(to).await;
    let got = raw.recv_for(Duration::from_millis(300)).await;
    assert_eq!(count_neighbors(&got), 0, "late pong bonded: {got:?}");
}

#[tokio::test]
async fn ping_with_wrong_from_is_answered_to_its_source_only() {
    let a = Discv4::start(config(ip(2, 21), None)).await.unwrap();
    let to = a.local_addr();
    let raw = Raw::bind(ip(2, 22)).await;
    let victim = UdpSocket::bind(SocketAddr::new(ip(2, 23), 0))
        .await
        .unwrap();
    let v = victim.local_addr().unwrap();
    let msg = Message::Ping(Ping {
        version: PING_VERSION,
        from: Endpoint {
            ip: v.ip(),
            udp_port: v.port(),
            tcp_port: 0,
        },
        to: Endpoint {
            ip: to.ip(),
            udp_port: to.port(),
            tcp_port: 0,
        },
        expiration: unix_now() + 20,
        enr_seq: None,
        rest: Vec::new(),
    });
    let hash = raw.send(to, &msg).await;
    let got = raw.recv_for(Duration::from_millis(400)).await;
    assert!(
        got.iter()
            .any(|p| matches!(&p.message, Message::Pong(pong) if pong.ping_hash == hash)),
        "pong to the real source: {got:?}"
    );
    let mut buf = [0u8; 1500];
    let leaked = tokio::time::timeout(Duration::from_millis(300), victim.recv_from(&mut buf)).await;
    assert!(leaked.is_err(), "the claimed `from` address got a packet");
}

#[tokio::test]
async fn unsolicited_neighbors_flood_is_ignored() {
    let a = Discv4::start(config(ip(2, 31), None)).await.unwrap();
    let to = a.local_addr();
    let raw = Raw::bind(ip(2, 32)).await;
    raw.bond(to).await;
    assert!(wait_until(Duration::from_secs(2), || a.table_len() == 1).await);
    for _ in 0..20 {
        let nodes = (0..12)
            .map(|i| Neighbor {
                endpoint: Endpoint {
                    ip: ip(9, i),
                    udp_port: 30303,
                    tcp_port: 30303,
                },
                id: NodeKey::generate().id(),
            })
            .collect();
        let msg = Message::Neighbors(Neighbors {
            nodes,
            expiration: unix_now() + 20,
            rest: Vec::new(),
        });
        raw.send(to, &msg).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.table_len(), 1, "flooded nodes entered the table");
    assert!(a.stats().dropped >= 20, "stats {:?}", a.stats());
}

#[tokio::test]
async fn oversized_and_expired_packets_are_dropped() {
    let a = Discv4::start(config(ip(2, 41), None)).await.unwrap();
    let to = a.local_addr();
    let raw = Raw::bind(ip(2, 42)).await;

    // A valid ping padded past 1280 bytes (bytes after the RLP list are otherwise
    // ignored, so only the size rule can reject it).
    let (mut bytes, _) =
        packet::encode(&raw.ping_msg(to, unix_now() + 20), raw.key.secret()).unwrap();
    bytes.resize(2000, 0);
    raw.sock.send_to(&bytes, to).await.unwrap();
    let got = raw.recv_for(Duration::from_millis(300)).await;
    assert!(got.is_empty(), "oversized ping answered: {got:?}");

    // Expired a second ago.
    raw.send(to, &raw.ping_msg(to, unix_now() - 1)).await;
    let got = raw.recv_for(Duration::from_millis(300)).await;
    assert!(got.is_empty(), "expired ping answered: {got:?}");
    assert_eq!(a.stats().dropped, 2);

    // The node still serves a valid ping.
    let (hash, got) = raw.ping_and_collect(to, Duration::from_millis(300)).await;
    assert!(got
        .iter()
        .any(|p| matches!(&p.message, Message::Pong(pong) if pong.ping_hash == hash)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_poisoning_from_one_subnet_is_bounded() {
    const ATTACKERS: usize = 20;
    let mut c = config(ip(3, 250), None);
    c.table = TableConfig {
        exempt_lan: false,
        ..TableConfig::default()
    };
    let limit = c.table.table_subnet_limit;
    let a = Discv4::start(c).await.unwrap();
    let mut attackers = Vec::new();
    for i in 0..ATTACKERS {
        attackers.push(
            Discv4::start(config(ip(4, i as u8 + 1), Some(a.local_enode())))
                .await
                .unwrap(),
        );
    }
    // Every attacker bonded with the node (it answered their pings and they its).
    assert!(
        wait_until(Duration::from_secs(10), || attackers
            .iter()
            .all(|n| n.table_len() >= 1))
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let len = a.table_len();
    assert!(len >= 2, "some attackers admitted: {len}");
    assert!(
        len <= limit,
        "{len} nodes of one /24 in the table (limit {limit})"
    );
}

#[tokio::test]
async fn enr_response_must_be_signed_by_the_sender() {
    let mut c = config(ip(2, 51), None);
    c.capabilities = vec![Capability::new("braid-test", 1)];
    let a = Discv4::start(c).await.unwrap();
    let mut candidates = a.candidates().unwrap();
    assert!(matches!(
        a.candidates(),
        Err(p2p::discover::v4::DiscoveryError::CandidatesTaken)
    ));
    let to = a.local_addr();

    // `good` answers with its own record, `liar` with a record of another key.
    for (host, honest) in [(52, true), (53, false)] {
        let raw = Raw::bind(ip(2, host)).await;
        raw.bond(to).await;
        let got = raw.recv_for(Duration::from_millis(500)).await;
        let request = got
            .iter()
            .find(|p| matches!(p.message, Message::EnrRequest(_)))
            .expect("a newly verified node is asked for its record");
        let signer = if honest {
            raw.key.clone()
        } else {
            NodeKey::generate()
        };
        let e = raw.endpoint();
        let spec = RecordSpec {
            ip: Some(e.ip),
            tcp_port: Some(30303),
            udp_port: Some(e.udp_port),
            capabilities: vec![Capability::new("braid-test", 1)],
        };
        let record = NodeRecord::build(&signer, 1, &spec).unwrap();
        let msg = Message::EnrResponse(EnrResponse {
            request_hash: request.hash,
            enr: alloy_rlp::encode(record.as_enr()),
            rest: Vec::new(),
        });
        raw.send(to, &msg).await;
        let c = tokio::time::timeout(Duration::from_secs(3), candidates.recv())
            .await
            .expect("candidate")
            .expect("open");
        assert_eq!(c.node.id, raw.key.id());
        assert_eq!(
            c.record.is_some(),
            honest,
            "record accepted: {:?}",
            c.record
        );
    }
}

#[tokio::test]
async fn dead_node_is_dropped_by_revalidation() {
    let a = Discv4::start(config(ip(2, 61), None)).await.unwrap();
    let b = Discv4::start(config(ip(2, 62), Some(a.local_enode())))
        .await
        .unwrap();
    assert!(wait_until(Duration::from_secs(5), || a.table_len() == 1).await);
    b.shutdown().await;
    // Revalidation pings every 500 ms, a ping times out after 700 ms.
    assert!(
        wait_until(Duration::from_secs(6), || a.table_len() == 0).await,
        "dead node still in the table"
    );
}

#[tokio::test]
async fn endpoint_change_bumps_the_record_sequence() {
    let a = Discv4::start(config(ip(2, 71), None)).await.unwrap();
    let r1 = a.local_record();
    assert_eq!(r1.node_id().unwrap(), a.local_id());
    assert_eq!(r1.udp_addr(), Some(a.local_addr()));
    let same = a.set_endpoint(ip(2, 71), 30303).unwrap();
    assert_eq!(same.seq(), r1.seq());
    let r2 = a.set_endpoint(ip(2, 72), 30304).unwrap();
    assert_eq!(r2.seq(), r1.seq() + 1);
    assert_eq!(a.local_record(), r2);
    assert_eq!(r2.tcp_addr(), Some(SocketAddr::new(ip(2, 72), 30304)));
    assert_eq!(a.local_enode().tcp_port, 30304);
}

#[tokio::test]
async fn pings_beyond_the_per_ip_rate_are_dropped() {
    let mut c = config(ip(2, 81), None);
    c.rate_limit = RateLimit {
        burst: 20.0,
        per_sec: 5.0,
    };
    let a = Discv4::start(c).await.unwrap();
    let to = a.local_addr();
    let raw = Raw::bind(ip(2, 82)).await;
    for _ in 0..100 {
        raw.send(to, &raw.ping_msg(to, unix_now() + 20)).await;
    }
    let got = raw.recv_for(Duration::from_millis(500)).await;
    let pongs = got
        .iter()
        .filter(|p| matches!(p.message, Message::Pong(_)))
        .count();
    // The burst, plus what refills while the pings are sent.
    assert!((20..=25).contains(&pongs), "{pongs} pongs for 100 pings");
    // Another source is not affected.
    let other = Raw::bind(ip(2, 83)).await;
    let (hash, got) = other.ping_and_collect(to, Duration::from_millis(300)).await;
    assert!(got
        .iter()
        .any(|p| matches!(&p.message, Message::Pong(pong) if pong.ping_hash == hash)));
}
