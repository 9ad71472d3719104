//! The geth-like baseline: plain RLPx as go-ethereum runs it for one protocol, without braid's
//! peer runtime. The same link as braid (ECIES handshake, sealed frames, snappy, the p2p Hello
//! exchange) but no multiplexing, no per-protocol tasks and no write token: one task reads the
//! link, one writes it. Against braid it shows what the runtime costs apart from the crypto.

use std::sync::Arc;
use std::time::{Duration, Instant};

use p2p::base::{Capability, Hello};
use p2p::conn::{Conn, ConnReader, ConnWriter};
use p2p::node::NodeKey;
use p2p::session::exchange_hello;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::{
    random_bytes, summarize, BoxError, Connects, PingPong, BULK, BULK_SIZE, PING, PONG, SMALL,
    WINDOW,
};

/// Messages of the benchmark's protocol sit after the base protocol's 16 codes, as on the wire.
const OFFSET: u64 = 0x10;
const TIMEOUT: Duration = Duration::from_secs(10);

fn hello(key: &NodeKey) -> Hello {
    Hello::new("bench", vec![Capability::new("bench", 1)], 0, key.id())
}

/// One RLPx link on loopback, both ends through the ECIES handshake and Hello (snappy on).
async fn pair() -> Result<(Conn, Conn), BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let hub_key = NodeKey::generate();
    let hub_id = hub_key.id();
    let client_key = NodeKey::generate();
    let accept = async {
        let (s, _) = listener.accept().await?;
        s.set_nodelay(true)?;
        let mut conn = Conn::accept(s, hub_key.secret(), TIMEOUT).await?;
        exchange_hello(&mut conn, &hello(&hub_key), TIMEOUT).await?;
        Ok::<_, BoxError>(conn)
    };
    let dial = async {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let mut conn = Conn::initiate(s, client_key.secret(), &hub_id, TIMEOUT).await?;
        exchange_hello(&mut conn, &hello(&client_key), TIMEOUT).await?;
        Ok::<_, BoxError>(conn)
    };
    let (hub, client) = tokio::join!(accept, dial);
    Ok((hub?, client?))
}

/// The hub's reader task: answers every PING with a PONG of the same payload.
fn echo(mut reader: ConnReader, mut writer: ConnWriter) {
    tokio::spawn(async move {
        while let Ok(msg) = reader.read().await {
            if msg.code == OFFSET + PING && writer.write(OFFSET + PONG, &msg.payload).await.is_err()
            {
                return;
            }
        }
    });
}

pub async fn pingpong(n: usize) -> Result<PingPong, BoxError> {
    let (hub, client) = pair().await?;
    echo(hub.reader, hub.writer);
    let (mut rd, mut wr) = (client.reader, client.writer);
    let msg = random_bytes(SMALL);
    let mut rtts = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        wr.write(OFFSET + PING, &msg).await?;
        rd.read().await?;
        rtts.push(t.elapsed());
    }
    Ok(summarize(rtts, start.elapsed()))
}

pub async fn window(n: usize) -> Result<f64, BoxError> {
    let (hub, client) = pair().await?;
    echo(hub.reader, hub.writer);
    let (mut rd, mut wr) = (client.reader, client.writer);
    let window = Arc::new(Semaphore::new(WINDOW));
    let w = window.clone();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        let msg = random_bytes(SMALL);
        for _ in 0..n {
            w.acquire().await.expect("open").forget();
            wr.write(OFFSET + PING, &msg).await?;
        }
        Ok::<_, p2p::conn::ConnError>(wr)
    });
    for _ in 0..n {
        rd.read().await?;
        window.add_permits(1);
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(writer.await??);
    Ok(rate)
}

/// 1 MiB messages one way; TCP's own window is the flow control, as for raw TCP.
pub async fn bulk(n: usize) -> Result<f64, BoxError> {
    let (mut hub, client) = pair().await?;
    let reader = tokio::spawn(async move {
        for _ in 0..n {
            hub.reader.read().await?;
        }
        Ok::<_, p2p::conn::ConnError>(hub)
    });
    let mut wr = client.writer;
    let data = random_bytes(BULK_SIZE);
    let start = Instant::now();
    for _ in 0..n {
        wr.write(OFFSET + BULK, &data).await?;
    }
    drop(reader.await??);
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Sequential links: TCP connect, ECIES, Hello both ways, then close. The latency is the
/// dialer's, from connect until its Hello exchange is done.
pub async fn handshakes(n: usize) -> Result<Connects, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let hub_key = Arc::new(NodeKey::generate());
    let hub_id = hub_key.id();
    let hub = tokio::spawn({
        let hub_key = hub_key.clone();
        async move {
            for _ in 0..n {
                let (s, _) = listener.accept().await?;
                s.set_nodelay(true)?;
                let mut conn = Conn::accept(s, hub_key.secret(), TIMEOUT).await?;
                exchange_hello(&mut conn, &hello(&hub_key), TIMEOUT).await?;
                // Wait for the dialer to close, as a server notices a peer leaving.
                let _ = tokio::time::timeout(TIMEOUT, conn.reader.read()).await;
            }
            Ok::<_, BoxError>(())
        }
    });
    let client_key = NodeKey::generate();
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let mut conn = Conn::initiate(s, client_key.secret(), &hub_id, TIMEOUT).await?;
        exchange_hello(&mut conn, &hello(&client_key), TIMEOUT).await?;
        lat.push(t.elapsed());
        conn.writer.shutdown().await?;
        drop(conn);
    }
    hub.await??;
    Ok(summarize(lat, start.elapsed()))
}
