//! `braid discv4 ping|resolve|crawl|test`: discovery v4 against any node.
//!
//! `ping`, `resolve` and `crawl` run braid's own discv4 service; `test` speaks raw packets
//! (built with braid's packet codec) so it can send what a well-behaved node never would.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use p2p::discover::v4::packet::{self, Endpoint, FindNode, Message, Ping};
use p2p::discover::v4::{Bootnode, DiscoveryError, Discv4, Discv4Config};
use p2p::node::{NodeId, NodeKey};
use serde_json::json;
use tokio::net::UdpSocket;

use crate::output::{printable, table, Out, Tone};
use crate::rlpx::suite::Verdict;

/// Errors of the discv4 commands.
#[derive(Debug, thiserror::Error)]
pub enum Discv4CmdError {
    /// The service failed, or the node is not a valid target.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// Socket trouble.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// No answer in time.
    #[error("{0}")]
    NoAnswer(String),
}

/// The local socket for talking to `target`: loopback targets get a loopback socket.
fn bind_for(target: IpAddr) -> SocketAddr {
    let ip: IpAddr = match (target.is_loopback(), target.is_ipv4()) {
        (true, true) => [127, 0, 0, 1].into(),
        (true, false) => std::net::Ipv6Addr::LOCALHOST.into(),
        (false, true) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        (false, false) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    SocketAddr::new(ip, 0)
}

async fn service(
    bootnodes: Vec<Bootnode>,
    bind: SocketAddr,
    timeout: Duration,
) -> Result<Discv4, Discv4CmdError> {
    let mut cfg = Discv4Config::new(NodeKey::generate(), bind);
    cfg.bootnodes = bootnodes;
    cfg.request_timeout = timeout.min(Duration::from_secs(2));
    Ok(Discv4::start(cfg).await?)
}

/// Bonds with the node and reports the round trip of one ping.
pub async fn ping(target: &str, timeout: Duration, out: Out) -> Result<(), Discv4CmdError> {
    let boot: Bootnode = target.parse()?;
    let node = boot.node()?;
    let disc = service(Vec::new(), bind_for(node.endpoint.ip), timeout).await?;
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, disc.ping(node))
        .await
        .map_err(|_| Discv4CmdError::NoAnswer(format!("no pong within {timeout:?}")))
        .and_then(|r| r.map_err(Discv4CmdError::from));
    let rtt = started.elapsed();
    disc.shutdown().await;
    result?;
    if out.json {
        out.json_line(&json!({ "id": node.id.to_string(), "rtt_ms": rtt.as_secs_f64() * 1e3 }));
    } else {
        println!(
            "pong from {} in {:.2} ms",
            short(&node.id),
            rtt.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// Bonds with the node and fetches its current record (EIP-868 ENRRequest).
pub async fn resolve(target: &str, timeout: Duration, out: Out) -> Result<(), Discv4CmdError> {
    let boot: Bootnode = target.parse()?;
    let node = boot.node()?;
    let disc = service(vec![boot], bind_for(node.endpoint.ip), timeout).await?;
    let mut candidates = disc.candidates()?;
    let found = tokio::time::timeout(timeout, async {
        while let Some(c) = candidates.recv().await {
            if c.node.id == node.id && c.record.is_some() {
                return Some(c);
            }
        }
        None
    })
    .await;
    disc.shutdown().await;
    let record = match found {
        Ok(Some(c)) => c.record.unwrap_or_else(|| unreachable!("filtered above")),
        _ => {
            return Err(Discv4CmdError::NoAnswer(format!(
                "no record from {} within {timeout:?}",
                short(&node.id)
            )))
        }
    };
    let caps: Vec<String> = record
        .capabilities()
        .unwrap_or_default()
        .iter()
        .map(|c| c.to_string())
        .collect();
    if out.json {
        out.json_line(&json!({
            "id": node.id.to_string(),
            "seq": record.seq(),
            "enr": record.to_text(),
            "enode": record.to_enode().ok().map(|e| e.to_string()),
            "capabilities": caps,
        }));
    } else {
        let rows = vec![
            vec!["seq".to_string(), record.seq().to_string()],
            vec!["enr".into(), record.to_text()],
            vec![
                "enode".into(),
                record.to_enode().map_or("-".into(), |e| e.to_string()),
            ],
            vec!["capabilities".into(), printable(&caps.join(", "))],
        ];
        print!("{}", table(&rows, |_, _, s| s.to_string()));
    }
    Ok(())
}

/// Walks the network from `bootnodes` with random lookups until `timeout`; prints (or
/// writes to `out_file`) every node found.
pub async fn crawl(
    bootnodes: &[String],
    timeout: Duration,
    out_file: Option<&Path>,
    out: Out,
) -> Result<(), Discv4CmdError> {
    let boots: Vec<Bootnode> = bootnodes
        .iter()
        .map(|b| b.parse())
        .collect::<Result<_, _>>()?;
    let first = boots
        .first()
        .ok_or_else(|| Discv4CmdError::NoAnswer("no --bootnodes given".into()))?;
    let disc = service(
        boots.clone(),
        bind_for(first.node()?.endpoint.ip),
        Duration::from_secs(2),
    )
    .await?;
    let deadline = Instant::now() + timeout;
    let mut rounds = 0;
    while Instant::now() < deadline {
        out.progress(&format!(
            "crawling: {} nodes after {rounds} lookups",
            disc.table_len()
        ));
        let left = deadline.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, disc.lookup_random())
            .await
            .is_err()
        {
            break;
        }
        rounds += 1;
    }
    out.done_progress();
    let mut nodes: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for n in disc.table_nodes() {
        nodes.insert(
            n.id.to_string(),
            json!({
                "id": n.id.to_string(),
                "ip": n.endpoint.ip.to_string(),
                "udp": n.endpoint.udp_port,
                "tcp": n.endpoint.tcp_port,
            }),
        );
    }
    disc.shutdown().await;
    let list: Vec<serde_json::Value> = nodes.into_values().collect();
    if let Some(path) = out_file {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&list).unwrap_or_default(),
        )?;
    }
    if out.json {
        out.json_line(&json!({ "lookups": rounds, "nodes": list }));
    } else {
        let mut rows = vec![vec![
            "ID".to_string(),
            "IP".into(),
            "UDP".into(),
            "TCP".into(),
        ]];
        for n in &list {
            rows.push(vec![
                n["id"]
                    .as_str()
                    .unwrap_or("")
                    .get(..16)
                    .unwrap_or("")
                    .to_string(),
                n["ip"].as_str().unwrap_or("").to_string(),
                n["udp"].to_string(),
                n["tcp"].to_string(),
            ]);
        }
        print!("{}", table(&rows, |_, _, s| s.to_string()));
        println!("{} nodes after {rounds} lookups", list.len());
    }
    Ok(())
}

fn short(id: &NodeId) -> String {
    id.short()
}

fn expiration(from_now: i64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    (now + from_now).max(0) as u64
}

/// A raw discv4 client: one socket, one key, packets as given.
struct Raw {
    socket: UdpSocket,
    key: NodeKey,
    target: SocketAddr,
    target_id: NodeId,
    wait: Duration,
}

impl Raw {
    async fn new(target: &Bootnode, wait: Duration) -> Result<Raw, Discv4CmdError> {
        let node = target.node()?;
        let addr = SocketAddr::new(node.endpoint.ip, node.endpoint.udp_port);
        let socket = UdpSocket::bind(bind_for(addr.ip())).await?;
        Ok(Raw {
            socket,
            key: NodeKey::generate(),
            target: addr,
            target_id: node.id,
            wait,
        })
    }

    fn our_endpoint(&self) -> Endpoint {
        let local = self.socket.local_addr().unwrap_or(self.target);
        Endpoint {
            ip: local.ip(),
            udp_port: local.port(),
            tcp_port: 0,
        }
    }

    fn their_endpoint(&self) -> Endpoint {
        Endpoint {
            ip: self.target.ip(),
            udp_port: self.target.port(),
            tcp_port: 0,
        }
    }

    async fn send(&self, msg: &Message) -> Result<[u8; 32], String> {
        let (bytes, hash) = packet::encode(msg, self.key.secret()).map_err(|e| e.to_string())?;
        self.socket
            .send_to(&bytes, self.target)
            .await
            .map_err(|e| e.to_string())?;
        Ok(hash)
    }

    async fn send_bytes(&self, bytes: &[u8]) -> Result<(), String> {
        self.socket
            .send_to(bytes, self.target)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Every valid packet from the target within the wait, answering its pings (so a
    /// node that bonds back gets its pong).
    async fn collect(&self) -> Vec<Message> {
        let mut got = Vec::new();
        let deadline = Instant::now() + self.wait;
        let mut buf = [0u8; packet::MAX_PACKET_SIZE];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(Ok((n, from))) =
                tokio::time::timeout(left, self.socket.recv_from(&mut buf)).await
            else {
                return got;
            };
            if from != self.target {
                continue;
            }
            let Ok(p) = packet::decode(&buf[..n]) else {
                continue;
            };
            if p.sender != self.target_id {
                continue;
            }
            if let Message::Ping(ping) = &p.message {
                let pong = Message::Pong(packet::Pong {
                    to: ping.from,
                    ping_hash: p.hash,
                    expiration: expiration(20),
                    enr_seq: None,
                    rest: Vec::new(),
                });
                let _ = self.send(&pong).await;
            }
            got.push(p.message);
        }
    }

    fn ping(&self, to: Endpoint, expires_in: i64) -> Message {
        Message::Ping(Ping {
            version: 4,
            from: self.our_endpoint(),
            to,
            expiration: expiration(expires_in),
            enr_seq: None,
            rest: Vec::new(),
        })
    }

    fn findnode(&self) -> Message {
        Message::FindNode(FindNode {
            target: self.key.id(),
            expiration: expiration(20),
            rest: Vec::new(),
        })
    }

    /// Ping and wait for the matching pong (answering the node's own ping): a bond.
    async fn bond(&self) -> Result<(), String> {
        let hash = self.send(&self.ping(self.their_endpoint(), 20)).await?;
        let got = self.collect().await;
        if pong_for(&got, &hash) {
            Ok(())
        } else {
            Err("no pong to our ping".into())
        }
    }
}

fn pong_for(got: &[Message], hash: &[u8; 32]) -> bool {
    got.iter()
        .any(|m| matches!(m, Message::Pong(p) if &p.ping_hash == hash))
}

/// Neighbours packets received (an empty one still answers the findnode).
fn neighbors(got: &[Message]) -> usize {
    got.iter()
        .filter(|m| matches!(m, Message::Neighbors(_)))
        .count()
}

type CaseResult = (&'static str, Verdict, String);

/// The discv4 conformance cases (after go-ethereum's `devp2p discv4 test`), each with a
/// fresh key and socket.
pub async fn test(target: &str, wait: Duration, out: Out) -> Result<usize, Discv4CmdError> {
    let boot: Bootnode = target.parse()?;
    let mut results: Vec<CaseResult> = Vec::new();
    macro_rules! case {
        ($name:literal, $body:expr) => {{
            out.progress($name);
            let raw = Raw::new(&boot, wait).await?;
            let (verdict, detail): (Verdict, String) = $body(raw).await;
            out.done_progress();
            if out.json {
                out.json_line(&json!({ "name": $name, "verdict": verdict, "detail": detail }));
            }
            results.push(($name, verdict, detail));
        }};
    }
    case!("ping/basic", |raw: Raw| async move {
        let hash = match raw.send(&raw.ping(raw.their_endpoint(), 20)).await {
            Ok(h) => h,
            Err(e) => return (Verdict::Fail, e),
        };
        if pong_for(&raw.collect().await, &hash) {
            (Verdict::Pass, "pong with our ping's hash".into())
        } else {
            (Verdict::Fail, "no pong".into())
        }
    });
    case!("ping/wrong-to", |raw: Raw| async move {
        let wrong = Endpoint {
            ip: "127.0.0.254".parse().unwrap(),
            udp_port: 1,
            tcp_port: 1,
        };
        let hash = match raw.send(&raw.ping(wrong, 20)).await {
            Ok(h) => h,
            Err(e) => return (Verdict::Fail, e),
        };
        if pong_for(&raw.collect().await, &hash) {
            (
                Verdict::Pass,
                "answered (the 'to' field is informational)".into(),
            )
        } else {
            (Verdict::Fail, "no pong to a ping with a wrong 'to'".into())
        }
    });
    case!("ping/extra-data", |raw: Raw| async move {
        let mut ping = raw.ping(raw.their_endpoint(), 20);
        if let Message::Ping(p) = &mut ping {
            p.enr_seq = Some(1);
            p.rest = vec![vec![0x82, 0x99, 0x99], vec![0xc1, 0x01]];
        }
        let hash = match raw.send(&ping).await {
            Ok(h) => h,
            Err(e) => return (Verdict::Fail, e),
        };
        if pong_for(&raw.collect().await, &hash) {
            (
                Verdict::Pass,
                "answered despite extra list elements (EIP-8)".into(),
            )
        } else {
            (
                Verdict::Fail,
                "no pong to a ping with extra elements".into(),
            )
        }
    });
    case!("ping/expired", |raw: Raw| async move {
        let hash = match raw.send(&raw.ping(raw.their_endpoint(), -60)).await {
            Ok(h) => h,
            Err(e) => return (Verdict::Fail, e),
        };
        if pong_for(&raw.collect().await, &hash) {
            (Verdict::Fail, "answered an expired ping".into())
        } else {
            (Verdict::Pass, "expired ping ignored".into())
        }
    });
    case!("packet/unknown-type", |raw: Raw| async move {
        // A correctly hashed and signed packet of type 0xff: dropped, node still answers.
        let (bytes, _) = match packet::seal(0xff, &[0xc1, 0x01], raw.key.secret()) {
            Ok(x) => x,
            Err(e) => return (Verdict::Fail, e.to_string()),
        };
        if let Err(e) = raw.send_bytes(&bytes).await {
            return (Verdict::Fail, e);
        }
        let got = raw.collect().await;
        if got.iter().any(|m| matches!(m, Message::Pong(_))) {
            return (Verdict::Fail, "answered a packet of unknown type".into());
        }
        match raw.bond().await {
            Ok(()) => (Verdict::Pass, "ignored; still answers pings".into()),
            Err(e) => (Verdict::Fail, format!("after an unknown packet type: {e}")),
        }
    });
    case!("findnode/without-endpoint-proof", |raw: Raw| async move {
        if let Err(e) = raw.send(&raw.findnode()).await {
            return (Verdict::Fail, e);
        }
        let got = raw.collect().await;
        match neighbors(&got) {
            0 => (
                Verdict::Pass,
                "no neighbours before bonding (no amplification)".into(),
            ),
            n => (
                Verdict::Fail,
                format!("sent {n} neighbours packet(s) to an unbonded node"),
            ),
        }
    });
    case!("findnode/after-bond", |raw: Raw| async move {
        if let Err(e) = raw.bond().await {
            return (Verdict::Fail, e);
        }
        if let Err(e) = raw.send(&raw.findnode()).await {
            return (Verdict::Fail, e);
        }
        let packets = neighbors(&raw.collect().await);
        if packets > 0 {
            (Verdict::Pass, format!("{packets} neighbours packet(s)"))
        } else {
            (Verdict::Fail, "no neighbours reply after bonding".into())
        }
    });
    case!("neighbors/unsolicited", |raw: Raw| async move {
        let fake = packet::Neighbor {
            endpoint: Endpoint {
                ip: "127.0.0.253".parse().unwrap(),
                udp_port: 30303,
                tcp_port: 30303,
            },
            id: NodeKey::generate().id(),
        };
        let msg = Message::Neighbors(packet::Neighbors {
            nodes: vec![fake],
            expiration: expiration(20),
            rest: Vec::new(),
        });
        if let Err(e) = raw.send(&msg).await {
            return (Verdict::Fail, e);
        }
        let _ = raw.collect().await;
        match raw.bond().await {
            Ok(()) => (Verdict::Pass, "ignored; still answers pings".into()),
            Err(e) => (Verdict::Fail, format!("after unsolicited neighbours: {e}")),
        }
    });
    let failed = results.iter().filter(|r| r.1 == Verdict::Fail).count();
    if !out.json {
        let mut rows = vec![vec!["TEST".to_string(), "RESULT".into(), "SEEN".into()]];
        for (name, verdict, detail) in &results {
            let v = match verdict {
                Verdict::Pass => "pass",
                Verdict::Fail => "FAIL",
                Verdict::Skip => "skip",
            };
            rows.push(vec![name.to_string(), v.into(), printable(detail)]);
        }
        print!(
            "{}",
            table(&rows, |r, c, s| if r > 0 && c == 1 {
                out.paint(s, if s == "pass" { Tone::Good } else { Tone::Bad })
            } else {
                s.to_string()
            })
        );
        let passed = results.len() - failed;
        println!("{passed} passed, {failed} failed, 0 skipped");
    }
    Ok(failed)
}
