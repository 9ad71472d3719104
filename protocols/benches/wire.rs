//! Bitcoin wire codec and inventory relay benchmarks.
//!
//! `cargo bench -p protocols --bench wire`
//!
//! Codec: encode/decode of `inv` with 50,000 items, `headers` with 2,000, a ~1 MB block, and
//! whole native frames (whose checksum is a double SHA-256 of the payload), next to two
//! same-run baselines over the same bytes: a memcpy and a double SHA-256.
//! BIP324 v2: packet encryption and decryption of the ~1 MB block (the `bip324` crate's
//! forward-secure ciphers, as our v2 transport uses them) next to raw ChaCha20-Poly1305
//! from the same primitive crate over the same bytes, in the same run.
//! Relay: inventory through one peer pair over an in-memory native link, the sender
//! trickling every 10 ms (throughput does not depend on the trickle period as long as the
//! queue drains each tick; btcd's default is 10 s), items/s end to end.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{black_box, criterion_group, Criterion, Throughput};
use protocols::bitcoin::peer::{Config, Listener, NativeTransport, Peer};
use protocols::bitcoin::wire::{
    decode_frame, encode_frame, inv_type, pver, Block, BlockHeader, Command, Hash256, InvVect,
    Message, Network,
};

const PVER: u32 = pver::PROTOCOL_VERSION;

fn inv_message() -> Message {
    Message::Inv(
        (0..50_000u32)
            .map(|i| InvVect {
                inv_type: inv_type::TX,
                hash: Hash256::hash(&i.to_le_bytes()),
            })
            .collect(),
    )
}

fn headers_message() -> Message {
    let mut prev = Hash256::ZERO;
    let headers = (0..2_000u32)
        .map(|i| {
            let h = BlockHeader {
                version: 0x2000_0000,
                prev_block: prev,
                merkle_root: Hash256::hash(&i.to_be_bytes()),
                time: 1_700_000_000 + i * 600,
                bits: 0x1703_4219,
                nonce: i.wrapping_mul(2_654_435_761),
            };
            prev = h.hash();
            h
        })
        .collect();
    Message::Headers(headers)
}

/// A pay-to-pubkey-hash style transaction: one input with a 107-byte script, two outputs.
fn tx_bytes(i: u32) -> Vec<u8> {
    let mut t = Vec::with_capacity(226);
    t.extend_from_slice(&2i32.to_le_bytes());
    t.push(1);
    t.extend_from_slice(&Hash256::hash(&i.to_le_bytes()).0);
    t.extend_from_slice(&0u32.to_le_bytes());
    t.push(107);
    t.extend((0..107u32).map(|b| (b ^ i) as u8));
    t.extend_from_slice(&0xffff_fffdu32.to_le_bytes());
    t.push(2);
    for value in [50_000u64, 1_234_567] {
        t.extend_from_slice(&value.to_le_bytes());
        t.push(25);
        t.extend_from_slice(&[0x76, 0xa9, 0x14]);
        t.extend((0..20u32).map(|b| (b * 7 + i) as u8));
        t.extend_from_slice(&[0x88, 0xac]);
    }
    t.extend_from_slice(&0u32.to_le_bytes());
    t
}

/// A ~1 MB block of 4,400 such transactions.
fn block_message() -> Message {
    let n = 4_400u32;
    let mut b = vec![0u8; 80];
    b.extend_from_slice(&[0xfd, (n & 0xff) as u8, (n >> 8) as u8]);
    for i in 0..n {
        b.extend_from_slice(&tx_bytes(i));
    }
    Message::Block(Block::from_bytes(Bytes::from(b)).expect("valid block"))
}

fn payload(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    msg.encode_payload(PVER, &mut out).expect("encodes");
    out
}

fn double_sha256(data: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(Sha256::digest(data)).into()
}

fn codec(c: &mut Criterion) {
    let cases = [
        ("inv 50k", Command::Inv, inv_message()),
        ("headers 2k", Command::Headers, headers_message()),
        ("block 1MB", Command::Block, block_message()),
    ];
    for (name, cmd, msg) in cases {
        let bytes = payload(&msg);
        let frame = encode_frame(Network::Regtest, &msg, PVER).expect("frame");
        let mut g = c.benchmark_group(name);
        g.sample_size(20).measurement_time(Duration::from_secs(2));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        let mut out = Vec::with_capacity(bytes.len());
        g.bench_function("encode", |b| {
            b.iter(|| {
                out.clear();
                black_box(&msg)
                    .encode_payload(PVER, &mut out)
                    .expect("encodes");
            })
        });
        let shared = Bytes::from(bytes.clone());
        g.bench_function("decode", |b| {
            b.iter(|| {
                Message::decode_payload_bytes(cmd, black_box(shared.clone()), PVER)
                    .expect("decodes")
            })
        });
        g.bench_function("frame encode", |b| {
            b.iter(|| encode_frame(Network::Regtest, black_box(&msg), PVER))
        });
        g.bench_function("frame decode", |b| {
            b.iter(|| decode_frame(black_box(&frame), Network::Regtest, PVER))
        });
        g.bench_function("baseline memcpy", |b| b.iter(|| black_box(bytes.clone())));
        g.bench_function("baseline double-sha256", |b| {
            b.iter(|| double_sha256(black_box(&bytes)))
        });
        g.finish();
    }
}

/// A completed v2 cipher pair (initiator, responder) from an in-memory handshake.
fn v2_sessions() -> (bip324::CipherSession, bip324::CipherSession) {
    use bip324::{Handshake, Initialized, Role, VersionResult};
    let magic = Network::Regtest.magic();
    let ini = Handshake::<Initialized>::new(magic, Role::Initiator).expect("init");
    let res = Handshake::<Initialized>::new(magic, Role::Responder).expect("init");
    let mut ik = vec![0u8; Handshake::<Initialized>::send_key_len(None)];
    let mut rk = ik.clone();
    let ini = ini.send_key(None, &mut ik).expect("key");
    let res = res.send_key(None, &mut rk).expect("key");
    let ini = ini.receive_key(rk[..64].try_into().unwrap()).expect("ecdh");
    let res = res.receive_key(ik[..64].try_into().unwrap()).expect("ecdh");
    let mut iv = vec![0u8; Handshake::send_version_len(None)];
    let mut rv = iv.clone();
    let ini = ini.send_version(&mut iv, None).expect("version");
    let res = res.send_version(&mut rv, None).expect("version");
    let finish = |hs: Handshake<bip324::SentVersion>, theirs: &[u8]| {
        let bip324::GarbageResult::FoundGarbage {
            mut handshake,
            consumed_bytes,
        } = hs.receive_garbage(theirs).expect("garbage")
        else {
            panic!("terminator not found")
        };
        let rest = &theirs[consumed_bytes..];
        let len = handshake
            .decrypt_packet_len(rest[..3].try_into().unwrap())
            .expect("len");
        let mut pkt = rest[3..3 + len].to_vec();
        match handshake.receive_version(&mut pkt).expect("version") {
            VersionResult::Complete { cipher } => cipher,
            VersionResult::Decoy(_) => panic!("no decoys sent"),
        }
    };
    (finish(ini, &rv), finish(res, &iv))
}

/// Raw ChaCha20-Poly1305 (the primitive under BIP324's ciphers) seal + open in place.
fn raw_aead_roundtrip(buf: &mut [u8]) {
    use chacha20_poly1305::{ChaCha20Poly1305, Key, Nonce};
    let key = Key::new([7u8; 32]);
    let tag = ChaCha20Poly1305::new(key, Nonce::new([1u8; 12])).encrypt(buf, None);
    ChaCha20Poly1305::new(key, Nonce::new([1u8; 12]))
        .decrypt(buf, tag, None)
        .expect("opens");
}

/// One v2 packet out and back in: encrypt the contents into `packet`, decrypt it in place.
fn v2_roundtrip(
    out: &mut bip324::OutboundCipher,
    inb: &mut bip324::InboundCipher,
    contents: &[u8],
    packet: &mut [u8],
) {
    out.encrypt(contents, packet, bip324::PacketType::Genuine, None)
        .expect("buffer sized");
    let len = inb.decrypt_packet_len(packet[..3].try_into().unwrap());
    inb.decrypt_in_place(&mut packet[3..3 + len], None)
        .expect("authentic");
}

fn v2(c: &mut Criterion) {
    let bytes = payload(&block_message());
    let (ini, res) = v2_sessions();
    let (_, mut out) = ini.into_split();
    let (mut inb, _) = res.into_split();
    let mut packet = vec![0u8; bip324::OutboundCipher::encryption_buffer_len(bytes.len())];
    let mut raw = bytes.clone();
    let mut g = c.benchmark_group("v2 block 1MB");
    g.sample_size(20).measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("v2 encrypt+decrypt", |b| {
        b.iter(|| v2_roundtrip(&mut out, &mut inb, black_box(&bytes), &mut packet))
    });
    g.bench_function("baseline raw chacha20-poly1305 seal+open", |b| {
        b.iter(|| raw_aead_roundtrip(black_box(&mut raw)))
    });
    g.finish();
}

criterion_group!(benches, codec, v2);

/// Median of `runs` timings of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[runs / 2]
}

struct InvCounter {
    items: AtomicUsize,
    messages: AtomicUsize,
}

impl Listener for InvCounter {
    fn on_inv(&self, _peer: &Peer, inv: &[InvVect]) {
        self.items.fetch_add(inv.len(), Ordering::Relaxed);
        self.messages.fetch_add(1, Ordering::Relaxed);
    }
}

/// Items/s and inv messages for `n` items relayed through one peer pair.
async fn relay(n: usize) -> (f64, usize) {
    let counter = Arc::new(InvCounter {
        items: AtomicUsize::new(0),
        messages: AtomicUsize::new(0),
    });
    let cfg = |listener: Arc<dyn Listener>| Config {
        network: Network::Regtest,
        allow_self_conns: true,
        trickle_interval: Duration::from_millis(10),
        listener,
        ..Config::default()
    };
    let (a, b) = tokio::io::duplex(1 << 20);
    let sender = Peer::start_outbound(
        cfg(Arc::new(protocols::bitcoin::peer::NoopListener)),
        NativeTransport::new(a, Network::Regtest, None),
    );
    let receiver = Peer::start_inbound(
        cfg(counter.clone()),
        NativeTransport::new(b, Network::Regtest, None),
    );
    while !(sender.verack_received() && receiver.verack_received()) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let start = Instant::now();
    for i in 0..n as u32 {
        sender
            .queue_inventory(InvVect {
                inv_type: inv_type::TX,
                hash: Hash256::hash(&i.to_be_bytes()),
            })
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while counter.items.load(Ordering::Relaxed) < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = counter.items.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
    sender.disconnect();
    receiver.disconnect();
    (rate, counter.messages.load(Ordering::Relaxed))
}

fn summary() {
    println!("\n== bitcoin wire: same-run ratios (median of 15)");
    for (name, cmd, msg) in [
        ("inv 50k", Command::Inv, inv_message()),
        ("headers 2k", Command::Headers, headers_message()),
        ("block 1MB", Command::Block, block_message()),
    ] {
        let bytes = payload(&msg);
        let shared = Bytes::from(bytes.clone());
        let frame = encode_frame(Network::Regtest, &msg, PVER).expect("frame");
        let mut out = Vec::with_capacity(bytes.len());
        let enc = median(15, || {
            out.clear();
            msg.encode_payload(PVER, &mut out).expect("encodes");
        });
        let dec = median(15, || {
            black_box(Message::decode_payload_bytes(cmd, shared.clone(), PVER).expect("decodes"));
        });
        let fdec = median(15, || {
            black_box(decode_frame(&frame, Network::Regtest, PVER).expect("decodes"));
        });
        let sha = median(15, || {
            black_box(double_sha256(&bytes));
        });
        let mb = bytes.len() as f64 / 1e6;
        println!(
            "{name:>10}: {:.2} MB; encode {:.0} MB/s, decode {:.0} MB/s, frame decode {:.0} MB/s; \
             decode takes {:.2}x a double-SHA-256 of the same bytes, frame decode {:.2}x",
            mb,
            mb / enc.as_secs_f64(),
            mb / dec.as_secs_f64(),
            mb / fdec.as_secs_f64(),
            dec.as_secs_f64() / sha.as_secs_f64(),
            fdec.as_secs_f64() / sha.as_secs_f64(),
        );
    }
    {
        let bytes = payload(&block_message());
        let (ini, res) = v2_sessions();
        let (_, mut out) = ini.into_split();
        let (mut inb, _) = res.into_split();
        let mut packet = vec![0u8; bip324::OutboundCipher::encryption_buffer_len(bytes.len())];
        let mut raw = bytes.clone();
        let v2 = median(15, || v2_roundtrip(&mut out, &mut inb, &bytes, &mut packet));
        let base = median(15, || raw_aead_roundtrip(&mut raw));
        let mb = bytes.len() as f64 / 1e6;
        println!(
            "v2 (BIP324) block 1MB: encrypt+decrypt {:.0} MB/s vs raw ChaCha20-Poly1305 seal+open {:.0} MB/s: {:.2}x",
            mb / v2.as_secs_f64(),
            mb / base.as_secs_f64(),
            base.as_secs_f64() / v2.as_secs_f64(),
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let n = 100_000;
    let mut runs: Vec<(f64, usize)> = (0..3).map(|_| rt.block_on(relay(n))).collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (rate, invs) = runs[1];
    println!("relay: {n} inventory items through one peer pair: {rate:.0} items/s (median of 3), {invs} inv messages");
}

fn main() {
    benches();
    summary();
    Criterion::default().configure_from_args().final_summary();
}
