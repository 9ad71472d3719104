//! The server's NAT-PMP port mapping against a fake gateway on loopback: the external
//! address and the granted ports reach the enode, the node record and the node info;
//! mappings are renewed before their lease ends and deleted at shutdown; a new external
//! address on renewal is advertised.
//!
//! The fake gateway speaks RFC 6886 on 127.77.0.x:5351 and hands out a documentation
//! address (198.51.100.0/24) as the "external" one; nothing is ever sent there.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use p2p::nat::Nat;
use p2p::server::{Discovery, Server, ServerConfig};
use secp256k1::SecretKey;
use tokio::net::UdpSocket;

/// A request the fake gateway saw: (opcode, internal port, suggested external, lifetime).
type Seen = Arc<Mutex<Vec<(u8, u16, u16, u32)>>>;

struct FakeGateway {
    addr: Ipv4Addr,
    seen: Seen,
    external_ip: Arc<Mutex<Ipv4Addr>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Grants every mapping at `port_offset` above the internal port, for the lifetime asked.
async fn fake_gateway(addr: Ipv4Addr, port_offset: u16) -> FakeGateway {
    let socket = UdpSocket::bind(SocketAddr::from((addr, 5351)))
        .await
        .expect("bind the fake NAT-PMP gateway");
    let seen: Seen = Arc::default();
    let external_ip = Arc::new(Mutex::new(Ipv4Addr::new(198, 51, 100, 7)));
    let (log, ext) = (seen.clone(), external_ip.clone());
    let started = Instant::now();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let epoch = (started.elapsed().as_secs() as u32 + 1).to_be_bytes();
            let reply: Vec<u8> = match (n, buf[0], buf[1]) {
                (2, 0, 0) => {
                    let ip = ext.lock().unwrap().octets();
                    [&[0, 128, 0, 0][..], &epoch, &ip].concat()
                }
                (12, 0, op @ (1 | 2)) => {
                    let internal = u16::from_be_bytes([buf[4], buf[5]]);
                    let suggested = u16::from_be_bytes([buf[6], buf[7]]);
                    let lifetime = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                    log.lock()
                        .unwrap()
                        .push((op, internal, suggested, lifetime));
                    let external = if lifetime == 0 {
                        0
                    } else {
                        internal.wrapping_add(port_offset)
                    };
                    [
                        &[0, 128 + op, 0, 0][..],
                        &epoch,
                        &internal.to_be_bytes(),
                        &external.to_be_bytes(),
                        &lifetime.to_be_bytes(),
                    ]
                    .concat()
                }
                _ => continue,
            };
            let _ = socket.send_to(&reply, from).await;
        }
    });
    FakeGateway {
        addr,
        seen,
        external_ip,
        task,
    }
}

fn config(gateway: Ipv4Addr, lease: Duration) -> ServerConfig {
    let key = SecretKey::new(&mut rand::thread_rng());
    let mut cfg = ServerConfig::new(key, Some("127.0.0.1:0".parse().unwrap()));
    cfg.nat = Nat::Pmp(Some(gateway));
    cfg.nat_lease = lease;
    cfg.discovery = Discovery::V4;
    cfg
}

fn requests(gw: &FakeGateway, op: u8) -> Vec<(u8, u16, u16, u32)> {
    gw.seen
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|r| r.0 == op)
        .collect()
}

#[tokio::test]
async fn pmp_mapping_is_advertised_renewed_and_deleted() {
    let gw = fake_gateway(Ipv4Addr::new(127, 77, 0, 1), 1000).await;
    let server = Server::start(config(gw.addr, Duration::from_secs(2)))
        .await
        .unwrap();
    let local = server.local_addr().unwrap();
    let enode = server.enode().unwrap();
    assert_eq!(
        enode.ip,
        "198.51.100.7".parse::<std::net::IpAddr>().unwrap()
    );
    assert_eq!(enode.tcp_port, local.port().wrapping_add(1000));
    let record = server.node_record().expect("discovery runs");
    let udp = record.udp_addr().expect("record has a UDP address");
    assert_eq!(udp.ip(), enode.ip);
    assert_eq!(udp.port(), enode.udp_port);
    assert_eq!(record.tcp_addr().unwrap().port(), enode.tcp_port);
    let info = serde_json::to_value(server.node_info()).unwrap();
    assert_eq!(info["nat"], "pmp:127.77.0.1");
    assert_eq!(info["external"]["ip"], "198.51.100.7");
    assert_eq!(info["external"]["tcp_port"], enode.tcp_port);

    // Both ports mapped at once, asking for the internal port and a 2 s lease.
    let tcp = requests(&gw, 2);
    let udp_reqs = requests(&gw, 1);
    assert_eq!(tcp.len(), 1, "{tcp:?}");
    assert_eq!(tcp[0], (2, local.port(), local.port(), 2));
    assert_eq!(udp_reqs.len(), 1, "{udp_reqs:?}");

    // Renewed at 4/5 of the lease (1.6 s), asking for the port granted before; and a
    // new external address is advertised after the renewal.
    *gw.external_ip.lock().unwrap() = Ipv4Addr::new(198, 51, 100, 8);
    let deadline = Instant::now() + Duration::from_secs(5);
    while requests(&gw, 2).len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tcp = requests(&gw, 2);
    assert!(tcp.len() >= 2, "no renewal within 5 s: {tcp:?}");
    assert_eq!(tcp[1].2, local.port().wrapping_add(1000), "{tcp:?}");
    let deadline = Instant::now() + Duration::from_secs(3);
    while server.enode().unwrap().ip.to_string() != "198.51.100.8" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.enode().unwrap().ip.to_string(), "198.51.100.8");
    assert_eq!(
        server
            .node_record()
            .unwrap()
            .udp_addr()
            .unwrap()
            .ip()
            .to_string(),
        "198.51.100.8"
    );

    // Shutdown deletes both: lifetime 0 for the internal ports.
    server.shutdown().await;
    let deletes: Vec<_> = gw
        .seen
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|r| r.3 == 0)
        .collect();
    assert!(
        deletes.contains(&(2, local.port(), 0, 0)),
        "TCP mapping not deleted: {deletes:?}"
    );
    assert_eq!(deletes.len(), 2, "{deletes:?}");
}

#[tokio::test]
async fn without_a_gateway_the_local_address_is_advertised_and_start_is_bounded() {
    // Nothing listens on 127.77.0.2:5351: every request times out (under 4 s).
    let started = Instant::now();
    let server = Server::start(config(
        Ipv4Addr::new(127, 77, 0, 2),
        Duration::from_secs(600),
    ))
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let enode = server.enode().unwrap();
    assert_eq!(enode.ip.to_string(), "127.0.0.1");
    assert_eq!(enode.tcp_port, server.local_addr().unwrap().port());
    assert!(server.node_info().external.is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn extip_is_advertised_without_any_request() {
    let key = SecretKey::new(&mut rand::thread_rng());
    let mut cfg = ServerConfig::new(key, Some("127.0.0.1:0".parse().unwrap()));
    cfg.nat = "extip:203.0.113.9".parse().unwrap();
    cfg.discovery = Discovery::V4;
    let server = Server::start(cfg).await.unwrap();
    let port = server.local_addr().unwrap().port();
    let enode = server.enode().unwrap();
    assert_eq!(enode.ip.to_string(), "203.0.113.9");
    assert_eq!(enode.tcp_port, port);
    let record = server.node_record().unwrap();
    assert_eq!(
        record.tcp_addr().unwrap().to_string(),
        format!("203.0.113.9:{port}")
    );
    let info = serde_json::to_value(server.node_info()).unwrap();
    assert_eq!(info["nat"], "extip:203.0.113.9");
    assert_eq!(info["external"]["ip"], "203.0.113.9");
    server.shutdown().await;
}
