//! The baselines of the idle-peer memory shape: a hub process holding N connections from a
//! dialer process, over raw TCP, geth-like RLPx and libp2p (braid's roles are in `main.rs`).
//! Each hub prints the address to dial on its first line of stdout.

use std::time::Duration;

use futures::StreamExt;
use libp2p::multiaddr::Protocol as MaProto;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::SwarmEvent;
use libp2p::Multiaddr;
use p2p::base::{Capability, Hello, PING, PONG};
use p2p::conn::Conn;
use p2p::node::{Enode, NodeKey};
use p2p::session::exchange_hello;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::{wait_for_parent, BoxError};

const TIMEOUT: Duration = Duration::from_secs(10);
/// As braid's idle peers: a keep-alive ping every 2 s from both ends (geth-like only; raw TCP
/// has no pings and libp2p runs no ping protocol here).
const PING_EVERY: Duration = Duration::from_secs(2);

/// Run a hub for `stack` until the parent closes stdin.
pub async fn hub(stack: &str) -> Result<(), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    match stack {
        "raw" => {
            println!("{addr}");
            tokio::spawn(async move {
                while let Ok((mut s, _)) = listener.accept().await {
                    tokio::spawn(async move {
                        let mut buf = [0u8; 64];
                        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                    });
                }
            });
        }
        "geth-like" => {
            let key = NodeKey::generate();
            println!("{}", Enode::new(key.id(), addr));
            tokio::spawn(async move {
                while let Ok((s, _)) = listener.accept().await {
                    let secret = *key.secret();
                    let id = key.id();
                    tokio::spawn(async move {
                        if let Ok(mut conn) = Conn::accept(s, &secret, TIMEOUT).await {
                            let hello =
                                Hello::new("bench", vec![Capability::new("bench", 1)], 0, id);
                            if exchange_hello(&mut conn, &hello, TIMEOUT).await.is_ok() {
                                serve(conn).await;
                            }
                        }
                    });
                }
            });
        }
        "libp2p" => {
            drop(listener);
            let mut swarm = node()?;
            let peer = *swarm.local_peer_id();
            swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
            let addr = loop {
                if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                    break address;
                }
            };
            println!("{}", addr.with(MaProto::P2p(peer)));
            tokio::spawn(async move {
                loop {
                    swarm.select_next_some().await;
                }
            });
        }
        other => return Err(format!("unknown stack {other}").into()),
    }
    wait_for_parent().await;
    Ok(())
}

/// Dial `n` connections of `stack` to the hub at `addr`; returns what keeps them open.
pub async fn dial(stack: &str, addr: &str, n: usize) -> Result<Box<dyn std::any::Any>, BoxError> {
    match stack {
        "raw" => {
            let addr: std::net::SocketAddr = addr.parse()?;
            let mut held = Vec::with_capacity(n);
            for _ in 0..n {
                held.push(TcpStream::connect(addr).await?);
            }
            Ok(Box::new(held))
        }
        "geth-like" => {
            let enode: Enode = addr.parse()?;
            let key = NodeKey::generate();
            let hello = Hello::new("bench", vec![Capability::new("bench", 1)], 0, key.id());
            let mut held = Vec::with_capacity(n);
            for _ in 0..n {
                let s = TcpStream::connect(enode.socket_addr()).await?;
                let mut conn = Conn::initiate(s, key.secret(), &enode.id, TIMEOUT).await?;
                exchange_hello(&mut conn, &hello, TIMEOUT).await?;
                held.push(tokio::spawn(serve(conn)));
            }
            Ok(Box::new(held))
        }
        "libp2p" => {
            let addr: Multiaddr = addr.parse()?;
            let Some(MaProto::P2p(peer)) = addr.iter().last() else {
                return Err("libp2p hub address without /p2p/".into());
            };
            let mut swarm = node()?;
            for _ in 0..n {
                // Always a new connection, though the hub's peer id is the same each time.
                swarm.dial(
                    DialOpts::peer_id(peer)
                        .addresses(vec![addr.clone()])
                        .condition(PeerCondition::Always)
                        .build(),
                )?;
                let wait = async {
                    loop {
                        match swarm.select_next_some().await {
                            SwarmEvent::ConnectionEstablished { .. } => return Ok(()),
                            SwarmEvent::OutgoingConnectionError { error, .. } => {
                                return Err(format!("libp2p dial: {error}"))
                            }
                            _ => {}
                        }
                    }
                };
                tokio::time::timeout(TIMEOUT, wait)
                    .await
                    .map_err(|_| "libp2p dial timed out")??;
            }
            Ok(Box::new(tokio::spawn(async move {
                loop {
                    swarm.select_next_some().await;
                }
            })))
        }
        other => Err(format!("unknown stack {other}").into()),
    }
}

/// One geth-like link held open: answer pings, send one every [`PING_EVERY`].
async fn serve(conn: Conn) {
    let (mut reader, mut writer) = (conn.reader, conn.writer);
    let mut tick = tokio::time::interval(PING_EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            msg = reader.read() => match msg {
                Ok(m) if m.code == PING => {
                    if writer.write(PONG, &[0xc0]).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            },
            _ = tick.tick() => {
                if writer.write(PING, &[0xc0]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Idle connections stay open: no stream is ever opened on them.
fn node() -> Result<libp2p::Swarm<libp2p_stream::Behaviour>, BoxError> {
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )?
        .with_behaviour(|_| libp2p_stream::Behaviour::new())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build())
}
