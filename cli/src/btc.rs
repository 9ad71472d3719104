//! `braid btc ping HOST:PORT`: the version handshake against any bitcoin node, then a
//! ping, over plain bitcoin TCP with braid's own wire codec.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use protocols::bitcoin::wire::{
    encode_frame, pver, read_frame, services, Message, MsgPing, MsgVersion, NetAddress, Network,
    WireError,
};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::output::{printable, table, Out};

/// Errors of the bitcoin probe.
#[derive(Debug, thiserror::Error)]
pub enum BtcError {
    /// TCP connect failed.
    #[error("cannot connect to {0}: {1}")]
    Connect(SocketAddr, std::io::Error),
    /// A step did not finish in time.
    #[error("{0} timed out after {1:?}")]
    Timeout(&'static str, Duration),
    /// The bytes were not valid bitcoin wire messages.
    #[error("wire: {0}")]
    Wire(#[from] WireError),
    /// Writing failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The node sent messages in an order the handshake does not allow.
    #[error("handshake: {0}")]
    Handshake(String),
}

/// Most messages read while waiting for one reply (a node may send sendcmpct, feefilter…).
const MAX_MESSAGES_PER_STEP: usize = 64;

/// `network` names the magic; `timeout` bounds every step.
pub async fn ping(
    addr: SocketAddr,
    network: Network,
    timeout: Duration,
    out: Out,
) -> Result<(), BtcError> {
    let mut stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(BtcError::Connect(addr, e)),
        Err(_) => return Err(BtcError::Timeout("connect", timeout)),
    };
    let pv = pver::PROTOCOL_VERSION;
    let started = Instant::now();
    let ours = MsgVersion {
        version: pv as i32,
        services: services::NONE,
        timestamp: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
        addr_recv: NetAddress::from_socket_addr(addr, services::NONE),
        addr_from: NetAddress::from_socket_addr(
            SocketAddr::from(([0, 0, 0, 0], 0)),
            services::NONE,
        ),
        nonce: rand::random(),
        user_agent: concat!("/braid-cli:", env!("CARGO_PKG_VERSION"), "/").into(),
        start_height: 0,
        relay: false,
    };
    send(&mut stream, network, &Message::Version(ours), pv).await?;
    let theirs = match next(&mut stream, network, pv, timeout, "version").await? {
        Message::Version(v) => v,
        other => {
            return Err(BtcError::Handshake(format!(
                "expected version, got {:?}",
                other.command()
            )))
        }
    };
    let handshake = started.elapsed();
    let agreed = (theirs.version.max(0) as u32).min(pv);
    send(&mut stream, network, &Message::Verack, agreed).await?;
    let mut got_verack = false;
    for _ in 0..MAX_MESSAGES_PER_STEP {
        if let Message::Verack = next(&mut stream, network, agreed, timeout, "verack").await? {
            got_verack = true;
            break;
        }
    }
    if !got_verack {
        return Err(BtcError::Handshake("no verack".into()));
    }
    let nonce: u64 = rand::random();
    let sent = Instant::now();
    send(
        &mut stream,
        network,
        &Message::Ping(MsgPing { nonce }),
        agreed,
    )
    .await?;
    let mut rtt = None;
    for _ in 0..MAX_MESSAGES_PER_STEP {
        match next(&mut stream, network, agreed, timeout, "pong").await? {
            Message::Pong(n) if n == nonce => {
                rtt = Some(sent.elapsed());
                break;
            }
            Message::Ping(p) => send(&mut stream, network, &Message::Pong(p.nonce), agreed).await?,
            _ => {}
        }
    }
    let _ = stream.shutdown().await;
    let rtt = rtt.ok_or_else(|| BtcError::Handshake("no pong with our nonce".into()))?;
    if out.json {
        out.json_line(&json!({
            "addr": addr.to_string(),
            "version": theirs.version,
            "services": theirs.services,
            "user_agent": theirs.user_agent,
            "start_height": theirs.start_height,
            "relay": theirs.relay,
            "handshake_ms": handshake.as_secs_f64() * 1e3,
            "ping_rtt_ms": rtt.as_secs_f64() * 1e3,
        }));
    } else {
        let rows = vec![
            vec!["version".to_string(), theirs.version.to_string()],
            vec![
                "services".into(),
                format!(
                    "{:#x} ({})",
                    theirs.services,
                    service_names(theirs.services)
                ),
            ],
            vec!["user agent".into(), printable(&theirs.user_agent)],
            vec!["height".into(), theirs.start_height.to_string()],
            vec!["ping".into(), format!("{:.2} ms", rtt.as_secs_f64() * 1e3)],
        ];
        print!("{}", table(&rows, |_, _, s| s.to_string()));
    }
    Ok(())
}

async fn send(
    stream: &mut TcpStream,
    network: Network,
    msg: &Message,
    pv: u32,
) -> Result<(), BtcError> {
    stream.write_all(&encode_frame(network, msg, pv)?).await?;
    Ok(())
}

async fn next(
    stream: &mut TcpStream,
    network: Network,
    pv: u32,
    timeout: Duration,
    waiting_for: &'static str,
) -> Result<Message, BtcError> {
    loop {
        match tokio::time::timeout(timeout, read_frame(stream, network, pv)).await {
            Err(_) => return Err(BtcError::Timeout(waiting_for, timeout)),
            Ok(Ok((msg, _))) => return Ok(msg),
            // Commands we do not know are skipped whole by the reader; keep going.
            Ok(Err(WireError::UnknownCommand { .. })) => continue,
            Ok(Err(e)) => return Err(e.into()),
        }
    }
}

fn service_names(bits: u64) -> String {
    let names = [
        (services::NETWORK, "NETWORK"),
        (services::GETUTXO, "GETUTXO"),
        (services::BLOOM, "BLOOM"),
        (services::WITNESS, "WITNESS"),
        (services::COMPACT_FILTERS, "COMPACT_FILTERS"),
        (services::NETWORK_LIMITED, "NETWORK_LIMITED"),
        (services::P2P_V2, "P2P_V2"),
    ];
    let set: Vec<&str> = names
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if set.is_empty() {
        "none".into()
    } else {
        set.join("|")
    }
}
