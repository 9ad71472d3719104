//! Shared helpers for the bitcoin peer tests: a recording listener, an in-memory native
//! transport pair, and a scripted "raw" remote that speaks framed messages directly.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use protocols::bitcoin::peer::{Config, Listener, NativeTransport, Peer};
use protocols::bitcoin::wire::{
    encode_frame, read_frame, services, AddrV2Entry, Block, BlockHeader, Command, InvVect, Message,
    MsgFilterLoad, MsgGetBlocks, MsgMerkleBlock, MsgPing, MsgReject, MsgVersion, NetAddress,
    Network, TimedNetAddress, Tx, WireError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::mpsc;

pub const NET: Network = Network::Regtest;
/// Virtual-time patience for "this should happen promptly".
pub const SOON: Duration = Duration::from_secs(5);
const DUPLEX: usize = 4 << 20;

/// What the recording listener saw.
#[derive(Debug, Clone)]
pub enum Ev {
    Version(MsgVersion),
    Verack,
    SendAddrV2,
    WtxidRelay,
    Msg(Message),
    Read {
        bytes: usize,
        cmd: Option<Command>,
        err: Option<String>,
    },
    Write {
        bytes: usize,
        cmd: Command,
        err: Option<String>,
    },
}

/// A listener that forwards every callback to a bounded channel.
pub struct Recorder {
    tx: mpsc::Sender<Ev>,
    /// Returned from `on_version` when set.
    pub reject_version: Mutex<Option<MsgReject>>,
}

impl Recorder {
    fn put(&self, ev: Ev) {
        // Tests read promptly; a full channel only loses events no test waits for.
        let _ = self.tx.try_send(ev);
    }
    fn msg(&self, m: Message) {
        self.put(Ev::Msg(m));
    }
}

pub fn recorder() -> (Arc<Recorder>, mpsc::Receiver<Ev>) {
    let (tx, rx) = mpsc::channel(100_000);
    (
        Arc::new(Recorder {
            tx,
            reject_version: Mutex::new(None),
        }),
        rx,
    )
}

impl Listener for Recorder {
    fn on_version(&self, _: &Peer, msg: &MsgVersion) -> Option<MsgReject> {
        self.put(Ev::Version(msg.clone()));
        self.reject_version.lock().unwrap().clone()
    }
    fn on_verack(&self, _: &Peer) {
        self.put(Ev::Verack);
    }
    fn on_send_addr_v2(&self, _: &Peer) {
        self.put(Ev::SendAddrV2);
    }
    fn on_wtxid_relay(&self, _: &Peer) {
        self.put(Ev::WtxidRelay);
    }
    fn on_get_addr(&self, _: &Peer) {
        self.msg(Message::GetAddr);
    }
    fn on_addr(&self, _: &Peer, a: &[TimedNetAddress]) {
        self.msg(Message::Addr(a.to_vec()));
    }
    fn on_addr_v2(&self, _: &Peer, a: &[AddrV2Entry]) {
        self.msg(Message::AddrV2(a.to_vec()));
    }
    fn on_ping(&self, _: &Peer, p: &MsgPing) {
        self.msg(Message::Ping(*p));
    }
    fn on_pong(&self, _: &Peer, n: u64) {
        self.msg(Message::Pong(n));
    }
    fn on_mem_pool(&self, _: &Peer) {
        self.msg(Message::MemPool);
    }
    fn on_tx(&self, _: &Peer, t: &Tx) {
        self.msg(Message::Tx(t.clone()));
    }
    fn on_block(&self, _: &Peer, b: &Block) {
        self.msg(Message::Block(b.clone()));
    }
    fn on_inv(&self, _: &Peer, i: &[InvVect]) {
        self.msg(Message::Inv(i.to_vec()));
    }
    fn on_headers(&self, _: &Peer, h: &[BlockHeader]) {
        self.msg(Message::Headers(h.to_vec()));
    }
    fn on_not_found(&self, _: &Peer, i: &[InvVect]) {
        self.msg(Message::NotFound(i.to_vec()));
    }
    fn on_get_data(&self, _: &Peer, i: &[InvVect]) {
        self.msg(Message::GetData(i.to_vec()));
    }
    fn on_get_blocks(&self, _: &Peer, m: &MsgGetBlocks) {
        self.msg(Message::GetBlocks(m.clone()));
    }
    fn on_get_headers(&self, _: &Peer, m: &MsgGetBlocks) {
        self.msg(Message::GetHeaders(m.clone()));
    }
    fn on_fee_filter(&self, _: &Peer, r: i64) {
        self.msg(Message::FeeFilter(r));
    }
    fn on_filter_add(&self, _: &Peer, d: &[u8]) {
        self.msg(Message::FilterAdd(d.to_vec()));
    }
    fn on_filter_clear(&self, _: &Peer) {
        self.msg(Message::FilterClear);
    }
    fn on_filter_load(&self, _: &Peer, m: &MsgFilterLoad) {
        self.msg(Message::FilterLoad(m.clone()));
    }
    fn on_merkle_block(&self, _: &Peer, m: &MsgMerkleBlock) {
        self.msg(Message::MerkleBlock(m.clone()));
    }
    fn on_reject(&self, _: &Peer, m: &MsgReject) {
        self.msg(Message::Reject(m.clone()));
    }
    fn on_send_headers(&self, _: &Peer) {
        self.msg(Message::SendHeaders);
    }
    fn on_send_cmpct(&self, _: &Peer, announce: bool, version: u64) {
        self.msg(Message::SendCmpct { announce, version });
    }
    fn on_read(&self, _: &Peer, bytes: usize, msg: Option<&Message>, err: Option<&str>) {
        self.put(Ev::Read {
            bytes,
            cmd: msg.map(Message::command),
            err: err.map(str::to_owned),
        });
    }
    fn on_write(&self, _: &Peer, bytes: usize, msg: &Message, err: Option<&str>) {
        self.put(Ev::Write {
            bytes,
            cmd: msg.command(),
            err: err.map(str::to_owned),
        });
    }
}

/// The next event matching `pred` within `limit` (panics otherwise).
pub async fn next_ev(
    rx: &mut mpsc::Receiver<Ev>,
    limit: Duration,
    pred: impl Fn(&Ev) -> bool,
) -> Ev {
    let fut = async {
        loop {
            match rx.recv().await {
                Some(ev) if pred(&ev) => return ev,
                Some(_) => continue,
                None => panic!("listener channel closed"),
            }
        }
    };
    tokio::time::timeout(limit, fut)
        .await
        .expect("expected listener event did not arrive")
}

/// Poll `cond` (virtual time) until true or panic after `limit`.
pub async fn wait_until(limit: Duration, what: &str, cond: impl Fn() -> bool) {
    let fut = async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for: {what}"));
}

/// A test config: regtest, self-connections allowed (both ends live in this process),
/// user agent "peer"/"1.0"/["comment"].
pub fn cfg() -> Config {
    Config {
        network: NET,
        allow_self_conns: true,
        user_agent_name: "peer".into(),
        user_agent_version: "1.0".into(),
        user_agent_comments: vec!["comment".into()],
        ..Config::default()
    }
}

pub fn with_listener(mut c: Config, l: Arc<Recorder>) -> Config {
    c.listener = l;
    c
}

/// Two peers over an in-memory native link: (outbound, inbound).
pub fn peer_pair(out_cfg: Config, in_cfg: Config) -> (Peer, Peer) {
    let (a, b) = tokio::io::duplex(DUPLEX);
    let out = Peer::start_outbound(out_cfg, NativeTransport::new(a, NET, None));
    let inb = Peer::start_inbound(in_cfg, NativeTransport::new(b, NET, None));
    (out, inb)
}

/// A scripted remote speaking framed messages on the other end of a duplex.
pub struct Raw {
    r: ReadHalf<DuplexStream>,
    w: WriteHalf<DuplexStream>,
    pub pver: u32,
    pub version: MsgVersion,
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub fn remote_version(pver: i32) -> MsgVersion {
    MsgVersion {
        version: pver,
        services: services::NETWORK | services::WITNESS,
        timestamp: unix_now(),
        addr_recv: NetAddress::default(),
        addr_from: NetAddress::default(),
        nonce: rand::random(),
        user_agent: "/raw:0.1/".into(),
        start_height: 0,
        relay: true,
    }
}

/// A peer with `cfg` (inbound if `peer_inbound`) and a raw remote at 70016.
pub fn raw_pair(cfg: Config, peer_inbound: bool) -> (Peer, Raw) {
    let (a, b) = tokio::io::duplex(DUPLEX);
    let t = NativeTransport::new(a, NET, None);
    let peer = if peer_inbound {
        Peer::start_inbound(cfg, t)
    } else {
        Peer::start_outbound(cfg, t)
    };
    let (r, w) = tokio::io::split(b);
    (
        peer,
        Raw {
            r,
            w,
            pver: 70016,
            version: remote_version(70016),
        },
    )
}

impl Raw {
    pub async fn send(&mut self, msg: &Message) {
        let f = encode_frame(NET, msg, self.pver).expect("encode");
        self.send_raw(&f).await;
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.expect("raw write");
        self.w.flush().await.expect("raw flush");
    }

    /// The next frame within `SOON` (virtual).
    pub async fn recv(&mut self) -> Result<Message, WireError> {
        self.recv_within(SOON).await
    }

    /// The next frame within `limit` (virtual).
    pub async fn recv_within(&mut self, limit: Duration) -> Result<Message, WireError> {
        match tokio::time::timeout(limit, read_frame(&mut self.r, NET, self.pver)).await {
            Ok(r) => r.map(|(m, _)| m),
            Err(_) => panic!("raw remote: nothing received in time"),
        }
    }

    /// The next frame, skipping pings (answered) and other keep-alive noise.
    pub async fn recv_cmd(&mut self) -> Message {
        loop {
            let m = self.recv().await.expect("raw recv");
            if let Message::Ping(p) = &m {
                self.send(&Message::Pong(p.nonce)).await;
                continue;
            }
            return m;
        }
    }

    /// Everything until the peer closes (panics if it does not close within `limit`).
    pub async fn until_eof(&mut self, limit: Duration) -> Vec<Message> {
        let fut = async {
            let mut got = Vec::new();
            loop {
                match read_frame(&mut self.r, NET, self.pver).await {
                    Ok((m, _)) => got.push(m),
                    Err(WireError::Io(_)) => return got,
                    Err(e) => panic!("unexpected frame error {e}"),
                }
            }
        };
        tokio::time::timeout(limit, fut)
            .await
            .expect("peer did not close the connection")
    }

    /// True if nothing at all arrives within `limit` and the stream is still open.
    pub async fn silent_for(&mut self, limit: Duration) -> bool {
        let mut b = [0u8; 1];
        tokio::time::timeout(limit, self.r.read(&mut b))
            .await
            .is_err()
    }

    /// Complete the handshake against an inbound peer (we speak first).
    pub async fn handshake_with_inbound(&mut self) -> MsgVersion {
        let v = Message::Version(self.version.clone());
        self.send(&v).await;
        self.finish_handshake().await
    }

    /// Complete the handshake against an outbound peer (it speaks first).
    pub async fn handshake_with_outbound(&mut self) -> MsgVersion {
        let theirs = match self.recv().await.expect("version") {
            Message::Version(v) => v,
            other => panic!("expected version, got {other:?}"),
        };
        let v = Message::Version(self.version.clone());
        self.send(&v).await;
        self.expect_sendaddrv2_verack().await;
        self.send(&Message::Verack).await;
        theirs
    }

    async fn finish_handshake(&mut self) -> MsgVersion {
        let theirs = match self.recv().await.expect("version") {
            Message::Version(v) => v,
            other => panic!("expected version, got {other:?}"),
        };
        self.expect_sendaddrv2_verack().await;
        self.send(&Message::Verack).await;
        theirs
    }

    async fn expect_sendaddrv2_verack(&mut self) {
        let pv = self.pver.min(70016);
        if pv >= 70016 {
            assert!(matches!(
                self.recv().await.expect("sendaddrv2"),
                Message::SendAddrV2
            ));
        }
        assert!(matches!(
            self.recv().await.expect("verack"),
            Message::Verack
        ));
    }
}

/// A peer (inbound by default) that has completed the handshake with a raw remote.
pub async fn handshaken(cfg: Config, peer_inbound: bool) -> (Peer, Raw) {
    let (peer, mut raw) = raw_pair(cfg, peer_inbound);
    if peer_inbound {
        raw.handshake_with_inbound().await;
    } else {
        raw.handshake_with_outbound().await;
    }
    wait_until(SOON, "handshake", || peer.verack_received()).await;
    (peer, raw)
}

/// A minimal valid transaction (1 input, 1 output) distinguished by `tag`.
pub fn sample_tx_bytes(tag: u8) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&1i32.to_le_bytes());
    t.push(1); // inputs
    t.extend_from_slice(&[tag; 32]);
    t.extend_from_slice(&0u32.to_le_bytes());
    t.push(0); // script
    t.extend_from_slice(&u32::MAX.to_le_bytes());
    t.push(1); // outputs
    t.extend_from_slice(&5000u64.to_le_bytes());
    t.push(1);
    t.push(0x51); // OP_TRUE
    t.extend_from_slice(&0u32.to_le_bytes());
    t
}

pub fn sample_tx(tag: u8) -> Tx {
    Tx::from_bytes(sample_tx_bytes(tag).into()).expect("valid tx")
}

pub fn sample_block() -> Block {
    let mut b = vec![0u8; 80];
    b.push(1);
    b.extend_from_slice(&sample_tx_bytes(9));
    Block::from_bytes(b.into()).expect("valid block")
}
