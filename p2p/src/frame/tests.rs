//! Frame codec tests: public vectors (A.5 geth golden, A.6 EIP-8 session), round trips and
//! hostile input.

use crate::keccak::{Digest, Keccak256};
use bytes::BytesMut;
use ctr::cipher::StreamCipher;
use rand::{rngs::StdRng, Rng, SeedableRng};
use tokio_util::codec::Decoder;

use super::mac::RlpxMac;
use super::*;

fn unhex<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).expect("valid hex of the right length");
    out
}

fn unhex_vec(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    hex::decode(s).expect("valid hex")
}

/// Frame-data used by every vector: message code 0x08, payload `c401020304`.
const MSG_ID: &[u8] = &[0x08];
const PAYLOAD: &[u8] = &[0xc4, 0x01, 0x02, 0x03, 0x04];

// ---------------------------------------------------------------- A.5 geth golden frame

const KECCAK_EMPTY: &str = "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470";
const GOLDEN_HEADER_CT: &str = "00828ddae471818bb0bfa6b551d1cb42";
const GOLDEN_FRAME_CT: &str = "ba628a4ba590cb43f7848f41c4382885";

#[test]
fn geth_golden_ciphertexts() {
    let secret: [u8; 32] = unhex(KECCAK_EMPTY);
    // geth faked the MAC hash, so only the ciphertext parts can match; any MAC seed will do.
    let mut sealer = FrameSealer::new(&secret, &secret, Keccak256::new());
    let mut out = BytesMut::new();
    sealer.seal(&[MSG_ID, PAYLOAD], &mut out).expect("seal");
    assert_eq!(out.len(), 64);
    assert_eq!(hex::encode(&out[..16]), GOLDEN_HEADER_CT);
    assert_eq!(hex::encode(&out[32..48]), GOLDEN_FRAME_CT);
}

#[test]
fn geth_golden_decrypts() {
    let secret: [u8; 32] = unhex(KECCAK_EMPTY);
    let mut ks = keystream(&secret);
    let mut buf = unhex_vec(&format!("{GOLDEN_HEADER_CT}{GOLDEN_FRAME_CT}"));
    ks.apply_keystream(&mut buf);
    let zeros10 = "00".repeat(10);
    assert_eq!(
        hex::encode(&buf),
        format!("000006c28080{zeros10}08c401020304{zeros10}")
    );
    assert_eq!(header::decode_size(&unhex(&hex::encode(&buf[..16]))), 6);
}

// ---------------------------------------------------------------- A.6 EIP-8 session frames

const AES_SECRET: &str = "80e8632c05fed6fc2a13b0f8d31a3cf645366239170ea067065aba8e28bac487";
const MAC_SECRET: &str = "2ea74ec5dae199227dff1af715362700e989d889d7a493cb0639691efb8e5f98";
const NONCE_A: &str = "7e968bba13b6c50e2c4cd7f241cc0d64d1ac25c7f5952df231ac6a2bda8ee5d6";
const NONCE_B: &str = "559aead08264d5795d3909718cdd05abd49572e84fe55590eef31a88a08fdffd";
const AUTH2: &str = "
01b304ab7578555167be8154d5cc456f567d5ba302662433674222360f08d5f1534499d3678b513b
0fca474f3a514b18e75683032eb63fccb16c156dc6eb2c0b1593f0d84ac74f6e475f1b8d56116b84
9634a8c458705bf83a626ea0384d4d7341aae591fae42ce6bd5c850bfe0b999a694a49bbbaf3ef6c
da61110601d3b4c02ab6c30437257a6e0117792631a4b47c1d52fc0f8f89caadeb7d02770bf999cc
147d2df3b62e1ffb2c9d8c125a3984865356266bca11ce7d3a688663a51d82defaa8aad69da39ab6
d5470e81ec5f2a7a47fb865ff7cca21516f9299a07b1bc63ba56c7a1a892112841ca44b6e0034dee
70c9adabc15d76a54f443593fafdc3b27af8059703f88928e199cb122362a4b35f62386da7caad09
c001edaeb5f8a06d2b26fb6cb93c52a9fca51853b68193916982358fe1e5369e249875bb8d0d0ec3
6f917bc5e1eafd5896d46bd61ff23f1a863a8a8dcd54c7b109b771c8e61ec9c8908c733c0263440e
2aa067241aaa433f0bb053c7b31a838504b148f570c0ad62837129e547678c5190341e4f1693956c
3bf7678318e2d5b5340c9e488eefea198576344afbdf66db5f51204a6961a63ce072c8926c";
const ACK2: &str = "
01ea0451958701280a56482929d3b0757da8f7fbe5286784beead59d95089c217c9b917788989470
b0e330cc6e4fb383c0340ed85fab836ec9fb8a49672712aeabbdfd1e837c1ff4cace34311cd7f4de
05d59279e3524ab26ef753a0095637ac88f2b499b9914b5f64e143eae548a1066e14cd2f4bd7f814
c4652f11b254f8a2d0191e2f5546fae6055694aed14d906df79ad3b407d94692694e259191cde171
ad542fc588fa2b7333313d82a9f887332f1dfc36cea03f831cb9a23fea05b33deb999e85489e645f
6aab1872475d488d7bd6c7c120caf28dbfc5d6833888155ed69d34dbdc39c1f299be1057810f34fb
e754d021bfca14dc989753d61c413d261934e1a9c67ee060a25eefb54e81a4d14baff922180c395d
3f998d70f46f6b58306f969627ae364497e73fc27f6d17ae45a413d322cb8814276be6ddd13b885b
201b943213656cde498fa0e9ddc8e0b8f8a53824fbd82254f3e2c17e8eaea009c38b4aa0a3f306e8
797db43c25d68e86f262e564086f59a2fc60511c42abfb3057c247a8a8fe4fb3ccbadde17514b7ac
8000cdb6a912778426260c47f38919a91f25f4b5ffb455d6aaaf150f7e5529c100ce62d6d92826a7
1778d809bdf60232ae21ce8a437eca8223f45ac37f6487452ce626f549b3b5fdee26afd2072e4bc7
5833c2464c805246155289f4";
const A_TO_B_1: &str = "f25926f27a7e8fa7ba4cbb3756ff0ca19f42a41b4755f5c38ad353abee06e37a3777d3dfefeae2c8e2a40120778b1d76cf23599d8234b933165d1b2bc4c8fa91";
const A_TO_B_2: &str = "c6b2956bb5cb17b2f98088cc80674b690205f75f7c8592ebe07c83d337e3327cb5a854b63efc12cb24452f012951442b188b6d2f01d19903f2cec95257247c58";
const B_TO_A_1: &str = "f25926f27a7e8fa7ba4cbb3756ff0ca109543909595a52962d730d0b682c31693777d3dfefeae2c8e2a40120778b1d76d2ad19bb4ef20bd47771484ed6e78d2e";

/// `keccak((mac-secret ^ nonce) ‖ packet)`, the RLPx MAC seed.
fn mac_seed(nonce: &str, packet: &str) -> Keccak256 {
    let mac: [u8; 32] = unhex(MAC_SECRET);
    let nonce: [u8; 32] = unhex(nonce);
    let mut xored = [0u8; 32];
    for (x, (m, n)) in xored.iter_mut().zip(mac.iter().zip(nonce)) {
        *x = m ^ n;
    }
    let mut k = Keccak256::new();
    k.update(xored);
    k.update(unhex_vec(packet));
    k
}

/// The EIP-8 session's four MAC states: (A egress = B ingress, B egress = A ingress).
fn a_egress() -> Keccak256 {
    mac_seed(NONCE_B, AUTH2)
}
fn b_egress() -> Keccak256 {
    mac_seed(NONCE_A, ACK2)
}

fn secrets() -> ([u8; 32], [u8; 32]) {
    (unhex(AES_SECRET), unhex(MAC_SECRET))
}

fn sealer(seed: Keccak256) -> FrameSealer {
    let (aes, mac) = secrets();
    FrameSealer::new(&aes, &mac, seed)
}

fn opener(seed: Keccak256) -> FrameOpener {
    let (aes, mac) = secrets();
    FrameOpener::new(&aes, &mac, seed)
}

#[test]
fn eip8_mac_seeds_match_published_foo_digests() {
    // Cross-check of the seed construction against the EIP-8 / A.6 "foo" values.
    assert_eq!(
        hex::encode(b_egress().chain_update(b"foo").finalize()),
        "64f0b10a107ff6f066a9e0a48a47230e1ab816b85584cdcf3364c42ae6e4c75a"
    );
    assert_eq!(
        hex::encode(a_egress().chain_update(b"foo").finalize()),
        "0c7ec6340062cc46f5e9f1e3cf86f8c8c403c5a0964f5df0ebd34a75ddc86db5"
    );
}

#[test]
fn eip8_session_frames_byte_exact() {
    let mut a = sealer(a_egress());
    let mut out = BytesMut::new();
    a.seal(&[MSG_ID, PAYLOAD], &mut out).expect("seal");
    assert_eq!(hex::encode(&out), A_TO_B_1);
    out.clear();
    a.seal(&[MSG_ID, PAYLOAD], &mut out).expect("seal");
    assert_eq!(hex::encode(&out), A_TO_B_2);

    let mut b = sealer(b_egress());
    out.clear();
    b.seal(&[MSG_ID, PAYLOAD], &mut out).expect("seal");
    assert_eq!(hex::encode(&out), B_TO_A_1);
}

#[test]
fn eip8_session_frames_open() {
    let want = unhex_vec("08c401020304");

    let mut b_in = opener(a_egress());
    let mut src = BytesMut::from(&unhex_vec(&format!("{A_TO_B_1}{A_TO_B_2}"))[..]);
    assert_eq!(
        b_in.decode(&mut src).expect("frame 1"),
        Some(want[..].into())
    );
    assert_eq!(
        b_in.decode(&mut src).expect("frame 2"),
        Some(want[..].into())
    );
    assert_eq!(b_in.decode(&mut src).expect("empty"), None);
    assert!(src.is_empty());

    let mut a_in = opener(b_egress());
    let mut src = BytesMut::from(&unhex_vec(B_TO_A_1)[..]);
    assert_eq!(a_in.decode(&mut src).expect("frame"), Some(want[..].into()));
}

#[test]
fn frames_are_direction_bound() {
    // B's first frame shares its ciphertext with A's but not its MACs: A's ingress refuses A's own frame.
    let mut a_in = opener(b_egress());
    let mut src = BytesMut::from(&unhex_vec(A_TO_B_1)[..]);
    assert!(matches!(a_in.decode(&mut src), Err(FrameError::HeaderMac)));
}

// ---------------------------------------------------------------- round trips

fn pair() -> (FrameSealer, FrameOpener) {
    (sealer(a_egress()), opener(a_egress()))
}

fn random_payload(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    v
}

#[test]
fn round_trip_random_sizes() {
    let mut rng = StdRng::seed_from_u64(0x0062_7261_6964);
    let (mut tx, mut rx) = pair();
    let mut sizes = vec![0, 1, 15, 16, 17, 31, 32, 33, 2048, 65_535, 69_999];
    sizes.extend((0..25).map(|_| rng.gen_range(0..70_000)));
    let mut wire = BytesMut::new();
    for size in sizes {
        let payload = random_payload(&mut rng, size);
        tx.seal(&[&payload], &mut wire).expect("seal");
        assert_eq!(
            wire.len(),
            32 + padded_len(size) + 16,
            "wire size for {size}"
        );
        let got = rx.decode(&mut wire).expect("open").expect("whole frame");
        assert_eq!(&got[..], &payload[..], "payload of size {size}");
        assert!(wire.is_empty());
    }
}

#[test]
fn multipart_seal_equals_single_part() {
    let (mut one, _) = pair();
    let (mut many, _) = pair();
    let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
    one.seal(&[b"\x10hello world"], &mut a).expect("seal");
    many.seal(&[b"\x10", b"hello", b"", b" world"], &mut b)
        .expect("seal");
    assert_eq!(a, b);
}

#[test]
fn many_frames_fed_in_random_chunks() {
    let mut rng = StdRng::seed_from_u64(7);
    let (mut tx, mut rx) = pair();
    let payloads: Vec<Vec<u8>> = (0..30)
        .map(|i| {
            let len = if i % 7 == 0 {
                0
            } else {
                rng.gen_range(0..70_000)
            };
            random_payload(&mut rng, len)
        })
        .collect();
    let mut wire = BytesMut::new();
    for p in &payloads {
        tx.seal(&[&p[..1.min(p.len())], &p[1.min(p.len())..]], &mut wire)
            .expect("seal");
    }

    let mut src = BytesMut::new();
    let mut got = Vec::new();
    while !wire.is_empty() {
        let n = rng.gen_range(1..=5_000).min(wire.len());
        src.extend_from_slice(&wire.split_to(n));
        while let Some(frame) = rx.decode(&mut src).expect("open") {
            got.push(frame.to_vec());
        }
    }
    assert!(src.is_empty());
    assert_eq!(got, payloads);
}

#[test]
fn byte_at_a_time_header_is_macd_once() {
    // If a partial header were MAC'd on each call the MAC state would drift and this would fail.
    let (mut tx, mut rx) = pair();
    let mut wire = BytesMut::new();
    tx.seal(&[MSG_ID, PAYLOAD], &mut wire).expect("seal");
    tx.seal(&[MSG_ID, PAYLOAD], &mut wire).expect("seal");
    let mut src = BytesMut::new();
    let mut frames = 0;
    for b in wire.iter() {
        src.extend_from_slice(&[*b]);
        if let Some(f) = rx.decode(&mut src).expect("open") {
            assert_eq!(&f[..], &unhex_vec("08c401020304")[..]);
            frames += 1;
        }
    }
    assert_eq!(frames, 2);
}

#[tokio::test]
async fn framed_read_write_over_duplex() {
    use futures::{SinkExt, StreamExt};
    use std::time::Duration;
    use tokio_util::codec::{FramedRead, FramedWrite};

    let (client, server) = tokio::io::duplex(1024);
    let (mut tx, rx) = pair();
    let mut write = FramedWrite::new(client, sealer(b_egress()));
    let mut read = FramedRead::new(server, rx);

    let big = vec![0x5au8; 50_000];
    let writer = async {
        // Direct seal into the write buffer, the way the conn layer does it, then the Encoder path.
        tx.seal(&[MSG_ID, PAYLOAD], write.write_buffer_mut())
            .expect("seal");
        std::mem::swap(write.encoder_mut(), &mut tx);
        write.send(&big[..]).await.expect("send");
        write.send(&b""[..]).await.expect("send");
    };
    let reader = async {
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(read.next().await.expect("frame").expect("valid").to_vec());
        }
        out
    };
    let ((), got) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(writer, reader)
    })
    .await
    .expect("no deadlock");
    assert_eq!(
        got,
        vec![unhex_vec("08c401020304"), big.clone(), Vec::new()]
    );
}

// ---------------------------------------------------------------- hostile input

fn one_frame(payload: &[u8]) -> BytesMut {
    let (mut tx, _) = pair();
    let mut wire = BytesMut::new();
    tx.seal(&[payload], &mut wire).expect("seal");
    wire
}

fn flip_and_open(bit_index: usize) -> Result<Option<BytesMut>, FrameError> {
    let mut wire = one_frame(&[0x42; 40]);
    wire[bit_index / 8] ^= 1 << (bit_index % 8);
    let (_, mut rx) = pair();
    rx.decode(&mut wire)
}

#[test]
fn flipped_header_ct_bit_is_header_mac() {
    assert!(matches!(flip_and_open(3), Err(FrameError::HeaderMac)));
}

#[test]
fn flipped_header_mac_bit_is_header_mac() {
    assert!(matches!(
        flip_and_open(16 * 8 + 5),
        Err(FrameError::HeaderMac)
    ));
}

#[test]
fn flipped_body_bit_is_frame_mac() {
    assert!(matches!(
        flip_and_open(32 * 8 + 1),
        Err(FrameError::FrameMac)
    ));
    // A flip in the padding is caught too: the MAC covers the padded ciphertext.
    assert!(matches!(
        flip_and_open((32 + 47) * 8),
        Err(FrameError::FrameMac)
    ));
}

#[test]
fn flipped_frame_mac_bit_is_frame_mac() {
    let last = (32 + 48 + 15) * 8 + 7;
    assert!(matches!(flip_and_open(last), Err(FrameError::FrameMac)));
}

#[test]
fn decoder_is_poisoned_after_error() {
    let mut wire = one_frame(b"abc");
    wire[0] ^= 1;
    let (_, mut rx) = pair();
    assert!(matches!(rx.decode(&mut wire), Err(FrameError::HeaderMac)));
    assert!(matches!(rx.decode(&mut wire), Err(FrameError::Poisoned)));
}

/// A correctly encrypted and MAC'd header stating `size`, without any body.
fn lying_header(size: usize) -> BytesMut {
    let (aes, mac) = secrets();
    let mut ks = keystream(&aes);
    let mut mac = RlpxMac::new(&mac, a_egress());
    let mut head = header::encode(size);
    ks.apply_keystream(&mut head);
    let tag = mac.update_header(&head);
    let mut out = BytesMut::with_capacity(64);
    out.extend_from_slice(&head);
    out.extend_from_slice(&tag);
    out
}

#[test]
fn oversized_header_refused_before_reserving() {
    let mut src = lying_header(MAX_FRAME_SIZE);
    let cap_before = src.capacity();
    let (_, mut rx) = pair();
    rx.set_max_frame_size(2048);
    match rx.decode(&mut src) {
        Err(FrameError::TooLarge { size, max }) => {
            assert_eq!((size, max), (MAX_FRAME_SIZE, 2048));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Consuming the header may shrink the view; nothing may have grown it towards 16 MiB.
    assert!(src.capacity() <= cap_before);
    assert!(src.capacity() < 4096);
}

#[test]
fn limit_is_inclusive() {
    let (mut tx, mut rx) = pair();
    rx.set_max_frame_size(2048);
    let mut wire = BytesMut::new();
    tx.seal(&[&[1u8; 2048]], &mut wire).expect("seal");
    assert_eq!(
        rx.decode(&mut wire).expect("open").map(|f| f.len()),
        Some(2048)
    );
    tx.seal(&[&[1u8; 2049]], &mut wire).expect("seal");
    assert!(matches!(
        rx.decode(&mut wire),
        Err(FrameError::TooLarge {
            size: 2049,
            max: 2048
        })
    ));
}

#[test]
fn accepted_header_reserves_the_body() {
    // Within the limit the decoder makes room for the whole body at once.
    let mut src = lying_header(100_000);
    let (_, mut rx) = pair();
    assert!(rx.decode(&mut src).expect("header ok").is_none());
    assert!(src.capacity() >= padded_len(100_000) + 16);
}

#[test]
fn max_frame_size_is_clamped() {
    let (_, mut rx) = pair();
    rx.set_max_frame_size(usize::MAX);
    assert_eq!(rx.max_frame_size(), MAX_FRAME_SIZE);
}

#[test]
fn seal_too_large_appends_nothing_and_keeps_state() {
    let (mut tx, mut rx) = pair();
    let half = vec![0u8; MAX_FRAME_SIZE / 2 + 1];
    let mut wire = BytesMut::from(&b"prefix"[..]);
    match tx.seal(&[&half, &half], &mut wire) {
        Err(FrameError::TooLarge { size, max }) => {
            assert_eq!((size, max), (MAX_FRAME_SIZE + 1, MAX_FRAME_SIZE));
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(&wire[..], b"prefix");
    wire.clear();
    tx.seal(&[b"after"], &mut wire).expect("seal");
    assert_eq!(
        &rx.decode(&mut wire).expect("open").expect("frame")[..],
        b"after"
    );
}
