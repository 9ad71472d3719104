//! The rust-libp2p baseline: TCP + Noise (XX) + Yamux, the usual libp2p stack, with one
//! `libp2p-stream` stream per shape. The hub's swarm and the client's swarm each run in their
//! own task, as an application would drive them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p::multiaddr::Protocol as MaProto;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

use crate::{random_bytes, summarize, BoxError, Connects, PingPong, BULK_SIZE, SMALL, WINDOW};

const ECHO: StreamProtocol = StreamProtocol::new("/bench/echo/1");
const SINK: StreamProtocol = StreamProtocol::new("/bench/sink/1");
const TIMEOUT: Duration = Duration::from_secs(10);

type Node = Swarm<libp2p_stream::Behaviour>;

fn node() -> Result<Node, BoxError> {
    Ok(libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )?
        .with_behaviour(|_| libp2p_stream::Behaviour::new())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build())
}

/// Drive `swarm` until `pick` accepts an event, within the timeout.
async fn next_event<T>(
    swarm: &mut Node,
    mut pick: impl FnMut(SwarmEvent<()>) -> Option<Result<T, BoxError>>,
) -> Result<T, BoxError> {
    let wait = async {
        loop {
            if let Some(r) = pick(swarm.select_next_some().await) {
                return r;
            }
        }
    };
    tokio::time::timeout(TIMEOUT, wait)
        .await
        .map_err(|_| "libp2p: timed out waiting for a swarm event")?
}

/// What the hub's swarm saw of a connection.
#[derive(Debug, PartialEq)]
enum HubEvent {
    Established,
    /// Closed after being established, or failed before.
    Gone,
}

/// A listening hub: echo and sink protocols, its swarm in its own task. Reports connections
/// coming and going on `events`.
struct Hub {
    addr: Multiaddr,
    sink_done: mpsc::Receiver<usize>,
    events: mpsc::Receiver<HubEvent>,
    task: JoinHandle<()>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hub() -> Result<Hub, BoxError> {
    let mut swarm = node()?;
    let peer = *swarm.local_peer_id();
    swarm.listen_on("/ip4/127.0.0.1/tcp/0".parse()?)?;
    let addr = next_event(&mut swarm, |e| match e {
        SwarmEvent::NewListenAddr { address, .. } => Some(Ok(address)),
        _ => None,
    })
    .await?
    .with(MaProto::P2p(peer));
    let mut control = swarm.behaviour().new_control();
    let mut echo_in = control.accept(ECHO)?;
    let mut sink_in = control.accept(SINK)?;
    let (sink_tx, sink_done) = mpsc::channel(16);
    let (events_tx, events) = mpsc::channel(1024);
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                e = swarm.select_next_some() => {
                    let ev = match e {
                        SwarmEvent::ConnectionEstablished { .. } => Some(HubEvent::Established),
                        SwarmEvent::ConnectionClosed { .. }
                        | SwarmEvent::IncomingConnectionError { .. } => Some(HubEvent::Gone),
                        _ => None,
                    };
                    if let Some(ev) = ev {
                        let _ = events_tx.try_send(ev);
                    }
                }
                Some((_, mut s)) = echo_in.next() => {
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; SMALL];
                        while s.read_exact(&mut buf).await.is_ok() {
                            if s.write_all(&buf).await.is_err() || s.flush().await.is_err() {
                                return;
                            }
                        }
                    });
                }
                Some((_, mut s)) = sink_in.next() => {
                    let sink_tx = sink_tx.clone();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        let mut total = 0usize;
                        while let Ok(got) = s.read(&mut buf).await {
                            if got == 0 {
                                break;
                            }
                            total += got;
                        }
                        let _ = sink_tx.send(total).await;
                    });
                }
            }
        }
    });
    Ok(Hub {
        addr,
        sink_done,
        events,
        task,
    })
}

/// A client connected to `hub`, its swarm driven in its own task, and one stream of `proto`.
async fn client(
    hub: &Hub,
    proto: StreamProtocol,
) -> Result<(JoinHandle<()>, libp2p::Stream), BoxError> {
    let mut swarm = node()?;
    swarm.dial(hub.addr.clone())?;
    let peer = connected(&mut swarm).await?;
    let mut control = swarm.behaviour().new_control();
    let task = tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });
    let stream = tokio::time::timeout(TIMEOUT, control.open_stream(peer, proto))
        .await
        .map_err(|_| "libp2p: timed out opening a stream")??;
    Ok((task, stream))
}

async fn connected(swarm: &mut Node) -> Result<PeerId, BoxError> {
    next_event(swarm, |e| match e {
        SwarmEvent::ConnectionEstablished { peer_id, .. } => Some(Ok(peer_id)),
        SwarmEvent::OutgoingConnectionError { error, .. } => {
            Some(Err(format!("libp2p dial: {error}").into()))
        }
        _ => None,
    })
    .await
}

pub async fn pingpong(n: usize) -> Result<PingPong, BoxError> {
    let hub = hub().await?;
    let (task, mut s) = client(&hub, ECHO).await?;
    let msg = random_bytes(SMALL);
    let mut buf = vec![0u8; SMALL];
    let mut rtts = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(&msg).await?;
        s.flush().await?;
        s.read_exact(&mut buf).await?;
        rtts.push(t.elapsed());
    }
    let total = start.elapsed();
    task.abort();
    Ok(summarize(rtts, total))
}

pub async fn window(n: usize) -> Result<f64, BoxError> {
    let hub = hub().await?;
    let (task, s) = client(&hub, ECHO).await?;
    let (mut rd, mut wr) = s.split();
    let window = Arc::new(Semaphore::new(WINDOW));
    let w = window.clone();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let msg = random_bytes(SMALL);
        for _ in 0..n {
            w.acquire().await.expect("open").forget();
            wr.write_all(&msg).await?;
            wr.flush().await?;
        }
        Ok::<_, std::io::Error>(wr)
    });
    let mut buf = vec![0u8; SMALL];
    for _ in 0..n {
        rd.read_exact(&mut buf).await?;
        window.add_permits(1);
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(writer.await??);
    task.abort();
    Ok(rate)
}

/// 1 MiB writes one way on one stream; Yamux's stream window is the flow control.
pub async fn bulk(n: usize) -> Result<f64, BoxError> {
    let mut hub = hub().await?;
    let (task, mut s) = client(&hub, SINK).await?;
    let data = random_bytes(BULK_SIZE);
    let start = Instant::now();
    for _ in 0..n {
        s.write_all(&data).await?;
    }
    s.close().await?;
    let got = tokio::time::timeout(Duration::from_secs(60), hub.sink_done.recv())
        .await
        .map_err(|_| "libp2p bulk: the sink never finished")?
        .ok_or("libp2p bulk: hub gone")?;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    task.abort();
    if got != n * BULK_SIZE {
        return Err(format!("libp2p bulk: sink got {got} bytes of {}", n * BULK_SIZE).into());
    }
    Ok(rate)
}

/// Sequential connections: TCP connect + Noise + Yamux until the dialer's swarm reports the
/// connection established (the latency); once the hub has it established too, close it and
/// wait until both swarms report it closed.
pub async fn handshakes(n: usize) -> Result<Connects, BoxError> {
    let mut hub = hub().await?;
    let mut swarm = node()?;
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        swarm.dial(hub.addr.clone())?;
        let peer = connected(&mut swarm).await?;
        lat.push(t.elapsed());
        hub_event(&mut hub, HubEvent::Established).await?;
        let _ = swarm.disconnect_peer_id(peer);
        next_event(&mut swarm, |e| match e {
            SwarmEvent::ConnectionClosed { .. } => Some(Ok(())),
            _ => None,
        })
        .await?;
        hub_event(&mut hub, HubEvent::Gone).await?;
    }
    Ok(summarize(lat, start.elapsed()))
}

async fn hub_event(hub: &mut Hub, want: HubEvent) -> Result<(), BoxError> {
    let got = tokio::time::timeout(TIMEOUT, hub.events.recv())
        .await
        .map_err(|_| format!("libp2p: the hub never reported {want:?}"))?
        .ok_or("libp2p: hub gone")?;
    if got != want {
        return Err(format!("libp2p: hub reported {got:?}, expected {want:?}").into());
    }
    Ok(())
}
