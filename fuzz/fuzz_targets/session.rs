//! Structure-aware: a whole session against a real peer. The victim runs what a server
//! runs for an inbound link (ECIES accept, Hello exchange, `Peer` with two protocols) over
//! an in-memory pipe; the fuzzer scripts the remote: a genuine handshake (EIP-8 or
//! legacy, from the vector keys) followed by a sequence of operations: Hellos with chosen
//! fields, well-formed and malformed messages, raw frame-data, forged MACs, garbage and
//! waits. Time is paused, so every timer (hello, ping, read deadlines) fires at no cost.
//! The victim must end every session, without panicking, within its deadlines.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use p2p::base::{Capability, DisconnectReason, Hello, DISCONNECT, HELLO, PING, PONG};
use p2p::conn::Conn;
use p2p::frame::FrameSealer;
use p2p::message::{encode_id, Snappy};
use p2p::node::NodeId;
use p2p::peer::{Direction, Peer, PeerConfig, PeerInfo};
use p2p::protocol::{InboundLimits, Protocol};
use p2p::session::exchange_hello;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const NAMES: [&str; 4] = ["echo", "slow", "eth", ""];

#[derive(Arbitrary, Debug)]
enum IdKind {
    Ours,
    Other,
    Zero,
    Short,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Hello {
        version: u8,
        caps: Vec<(u8, u8)>,
        id: IdKind,
    },
    Msg {
        code: u8,
        payload: Vec<u8>,
        compress: bool,
    },
    FrameData(Vec<u8>),
    Forged {
        from_end: u8,
        payload: Vec<u8>,
    },
    Garbage(Vec<u8>),
    Ping,
    Pong,
    Disconnect(u8),
    Wait(u8),
}

#[derive(Arbitrary, Debug)]
struct Script {
    legacy_auth: bool,
    ops: Vec<Op>,
}

fn echo() -> Protocol {
    Protocol::new("echo", 1, 2, |_peer, mut rw| async move {
        loop {
            let m = rw.read().await?;
            if m.code == 0 {
                rw.write(1, &m.payload).await?;
            }
        }
    })
}

fn slow() -> Protocol {
    Protocol::new("slow", 1, 2, |_peer, mut rw| async move {
        loop {
            rw.read().await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .with_inbound_limits(InboundLimits {
        max_messages: 4,
        max_bytes: 4096,
    })
}

async fn victim(io: DuplexStream) {
    let key = braid_fuzz::key(braid_fuzz::KEY_B);
    let Ok(mut conn) = Conn::accept(io, &key, Duration::from_secs(5)).await else {
        return;
    };
    let protocols = [echo(), slow()];
    let ours = Hello::new(
        "victim",
        protocols.iter().map(|p| p.capability()).collect(),
        0,
        NodeId::from_secret(&key),
    );
    let Ok(theirs) = exchange_hello(&mut conn, &ours, Duration::from_secs(5)).await else {
        return;
    };
    let info = PeerInfo {
        id: conn.remote_id,
        remote_addr: None,
        direction: Direction::Inbound,
        trusted: false,
    };
    let Ok(peer) = Peer::start(conn, theirs, &protocols, info, PeerConfig::default(), None).await
    else {
        return;
    };
    // The remote has hung up by now or will go silent: the read deadline (30 s) or the
    // pong deadline ends the peer in any case.
    tokio::time::timeout(Duration::from_secs(120), peer.closed())
        .await
        .expect("peer ends within its deadlines");
}

struct Remote {
    wr: tokio::io::WriteHalf<DuplexStream>,
    sealer: FrameSealer,
    snappy: Snappy,
}

impl Remote {
    fn seal(&mut self, parts: &[&[u8]]) -> BytesMut {
        let mut out = BytesMut::new();
        self.sealer
            .seal(parts, &mut out)
            .expect("small frames seal");
        out
    }

    fn message(&mut self, code: u64, payload: &[u8], compress: bool) -> BytesMut {
        let mut id = BytesMut::new();
        encode_id(code, &mut id);
        let data = if compress {
            self.snappy.compress(payload).expect("compress").to_vec()
        } else {
            payload.to_vec()
        };
        self.seal(&[&id, &data])
    }

    /// False once the victim has gone.
    async fn send(&mut self, bytes: &[u8]) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.wr.write_all(bytes)).await,
            Ok(Ok(()))
        )
    }
}

async fn remote(io: DuplexStream, script: Script) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let init = braid_fuzz::initiator();
    let auth = if script.legacy_auth {
        init.legacy_auth_packet()
    } else {
        init.auth_packet().expect("auth seals")
    };
    if wr.write_all(&auth).await.is_err() {
        return;
    }
    let mut ack = vec![0u8; 2];
    if rd.read_exact(&mut ack).await.is_err() {
        return;
    }
    let rest = if script.legacy_auth {
        210 - 2
    } else {
        usize::from(u16::from_be_bytes([ack[0], ack[1]]))
    };
    ack.resize(2 + rest, 0);
    if rd.read_exact(&mut ack[2..]).await.is_err() {
        return;
    }
    let Ok(ack) = init.read_ack(&ack) else {
        return;
    };
    let secrets = init.secrets(&auth, &ack);
    // Whatever the victim sends is drained so it never blocks on a full pipe.
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = rd.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
    let mut r = Remote {
        wr,
        sealer: FrameSealer::new(&secrets.aes_secret, &secrets.mac_secret, secrets.egress_mac),
        snappy: Snappy::new(),
    };
    let our_key = braid_fuzz::key(braid_fuzz::KEY_A);
    for op in script.ops.into_iter().take(32) {
        let bytes = match op {
            Op::Hello { version, caps, id } => {
                let id = match id {
                    IdKind::Ours => NodeId::from_secret(&our_key).0.to_vec(),
                    IdKind::Other => NodeId::from_secret(&braid_fuzz::key(braid_fuzz::EPH_A))
                        .0
                        .to_vec(),
                    IdKind::Zero => vec![0; 64],
                    IdKind::Short => vec![1; 33],
                };
                let hello = Hello {
                    protocol_version: u64::from(version),
                    client_id: "fuzz".into(),
                    capabilities: caps
                        .iter()
                        .take(8)
                        .map(|(n, v)| Capability::new(NAMES[usize::from(*n) % 4], u32::from(*v)))
                        .collect(),
                    listen_port: 0,
                    id,
                };
                r.message(HELLO, &hello.encode(), false)
            }
            Op::Msg {
                code,
                payload,
                compress,
            } => r.message(u64::from(code), &payload, compress),
            Op::FrameData(data) => r.seal(&[&data]),
            Op::Forged { from_end, payload } => {
                let mut f = r.message(16, &payload, true);
                let at = f.len() - 1 - usize::from(from_end) % f.len();
                f[at] ^= 0x01;
                f
            }
            Op::Garbage(g) => BytesMut::from(&g[..]),
            Op::Ping => r.message(PING, &[0xc0], true),
            Op::Pong => r.message(PONG, &[0xc0], true),
            Op::Disconnect(reason) => {
                let reason = DisconnectReason::from_code(reason)
                    .unwrap_or(DisconnectReason::DisconnectRequested);
                r.message(DISCONNECT, &reason.encode(), reason.code() % 2 == 0)
            }
            Op::Wait(n) => {
                tokio::time::sleep(Duration::from_millis(u64::from(n) * 100)).await;
                continue;
            }
        };
        if !r.send(&bytes).await {
            break;
        }
    }
    drop(r);
    drain.abort();
}

fuzz_target!(|script: Script| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let victim = tokio::spawn(victim(b));
        remote(a, script).await;
        tokio::time::timeout(Duration::from_secs(300), victim)
            .await
            .expect("victim ends")
            .expect("victim does not panic");
    });
});
