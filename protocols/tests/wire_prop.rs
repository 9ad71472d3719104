//! Property tests: every message type round-trips; arbitrary or mutated
//! input never panics the decoders.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use protocols::bitcoin::wire::{
    decode_frame, encode_frame, AddrV2, AddrV2Entry, Block, BlockHeader, Command, Hash256, InvVect,
    Message, MsgFilterLoad, MsgGetBlocks, MsgMerkleBlock, MsgPing, MsgReject, MsgVersion,
    NetAddress, Network, TimedNetAddress, Tx,
};

const PVER: u32 = 70016;

fn compact(out: &mut Vec<u8>, n: usize) {
    let n = n as u64;
    match n {
        0..=0xfc => out.push(n as u8),
        0xfd..=0xffff => {
            out.push(0xfd);
            out.extend((n as u16).to_le_bytes());
        }
        _ => {
            out.push(0xfe);
            out.extend((n as u32).to_le_bytes());
        }
    }
}

fn var_bytes(out: &mut Vec<u8>, b: &[u8]) {
    compact(out, b.len());
    out.extend(b);
}

/// A structurally valid transaction, serialized by the test itself.
#[derive(Debug, Clone)]
struct TxModel {
    version: i32,
    inputs: Vec<([u8; 32], u32, Vec<u8>, u32)>,
    outputs: Vec<(u64, Vec<u8>)>,
    witness: Option<Vec<Vec<Vec<u8>>>>,
    lock_time: u32,
}

impl TxModel {
    fn serialize(&self, with_witness: bool) -> Vec<u8> {
        let mut out = self.version.to_le_bytes().to_vec();
        let witness = self.witness.as_ref().filter(|_| with_witness);
        if witness.is_some() {
            out.extend([0, 1]);
        }
        compact(&mut out, self.inputs.len());
        for (h, n, script, seq) in &self.inputs {
            out.extend(h);
            out.extend(n.to_le_bytes());
            var_bytes(&mut out, script);
            out.extend(seq.to_le_bytes());
        }
        compact(&mut out, self.outputs.len());
        for (v, script) in &self.outputs {
            out.extend(v.to_le_bytes());
            var_bytes(&mut out, script);
        }
        if let Some(w) = witness {
            for stack in w {
                compact(&mut out, stack.len());
                for item in stack {
                    var_bytes(&mut out, item);
                }
            }
        }
        out.extend(self.lock_time.to_le_bytes());
        out
    }
}

fn tx_model() -> impl Strategy<Value = TxModel> {
    let input = (
        any::<[u8; 32]>(),
        any::<u32>(),
        vec(any::<u8>(), 0..40),
        any::<u32>(),
    );
    let output = (any::<u64>(), vec(any::<u8>(), 0..40));
    (
        any::<i32>(),
        vec(input, 1..4),
        vec(output, 0..4),
        any::<u32>(),
    )
        .prop_flat_map(|(version, inputs, outputs, lock_time)| {
            let n = inputs.len();
            // Each input gets a stack; the first is non-empty so the witness
            // record is never superfluous.
            let stacks = vec(vec(vec(any::<u8>(), 0..30), 0..3), n).prop_map(|mut s| {
                if s[0].is_empty() {
                    s[0].push(vec![0x01]);
                }
                s
            });
            (
                Just((version, inputs, outputs, lock_time)),
                proptest::option::of(stacks),
            )
        })
        .prop_map(|((version, inputs, outputs, lock_time), witness)| TxModel {
            version,
            inputs,
            outputs,
            witness,
            lock_time,
        })
}

fn hash() -> impl Strategy<Value = Hash256> {
    any::<[u8; 32]>().prop_map(Hash256)
}

fn header() -> impl Strategy<Value = BlockHeader> {
    (
        any::<i32>(),
        hash(),
        hash(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(version, prev_block, merkle_root, time, bits, nonce)| BlockHeader {
                version,
                prev_block,
                merkle_root,
                time,
                bits,
                nonce,
            },
        )
}

fn net_addr() -> impl Strategy<Value = NetAddress> {
    (any::<u64>(), any::<[u8; 16]>(), any::<u16>()).prop_map(|(services, ip, port)| NetAddress {
        services,
        ip,
        port,
    })
}

fn addr_v2() -> impl Strategy<Value = AddrV2> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(AddrV2::Ipv4),
        any::<[u8; 16]>().prop_map(AddrV2::Ipv6),
        any::<[u8; 10]>().prop_map(AddrV2::TorV2),
        any::<[u8; 32]>().prop_map(AddrV2::TorV3),
        any::<[u8; 32]>().prop_map(AddrV2::I2p),
        any::<[u8; 16]>().prop_map(AddrV2::Cjdns),
    ]
}

fn inv_list() -> impl Strategy<Value = Vec<InvVect>> {
    vec(
        (any::<u32>(), hash()).prop_map(|(inv_type, hash)| InvVect { inv_type, hash }),
        0..20,
    )
}

fn getblocks() -> impl Strategy<Value = MsgGetBlocks> {
    (any::<u32>(), vec(hash(), 0..20), hash()).prop_map(|(version, locator, hash_stop)| {
        MsgGetBlocks {
            version,
            locator,
            hash_stop,
        }
    })
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[ -~é]{{0,{max}}}")).unwrap()
}

fn message(cmd: Command) -> BoxedStrategy<Message> {
    match cmd {
        Command::Version => (
            (
                any::<i32>(),
                any::<u64>(),
                any::<i64>(),
                net_addr(),
                net_addr(),
            ),
            (any::<u64>(), text(80), any::<i32>(), any::<bool>()),
        )
            .prop_map(
                |(
                    (version, services, timestamp, addr_recv, addr_from),
                    (nonce, user_agent, start_height, relay),
                )| {
                    Message::Version(MsgVersion {
                        version,
                        services,
                        timestamp,
                        addr_recv,
                        addr_from,
                        nonce,
                        user_agent,
                        start_height,
                        relay,
                    })
                },
            )
            .boxed(),
        Command::Verack => Just(Message::Verack).boxed(),
        Command::Ping => any::<u64>()
            .prop_map(|nonce| Message::Ping(MsgPing { nonce }))
            .boxed(),
        Command::Pong => any::<u64>().prop_map(Message::Pong).boxed(),
        Command::Addr => vec(
            (any::<u32>(), net_addr()).prop_map(|(time, addr)| TimedNetAddress { time, addr }),
            0..20,
        )
        .prop_map(Message::Addr)
        .boxed(),
        Command::AddrV2 => vec(
            (any::<u32>(), any::<u64>(), addr_v2(), any::<u16>()).prop_map(
                |(time, services, addr, port)| AddrV2Entry {
                    time,
                    services,
                    addr,
                    port,
                },
            ),
            0..20,
        )
        .prop_map(Message::AddrV2)
        .boxed(),
        Command::GetAddr => Just(Message::GetAddr).boxed(),
        Command::Inv => inv_list().prop_map(Message::Inv).boxed(),
        Command::GetData => inv_list().prop_map(Message::GetData).boxed(),
        Command::NotFound => inv_list().prop_map(Message::NotFound).boxed(),
        Command::GetBlocks => getblocks().prop_map(Message::GetBlocks).boxed(),
        Command::GetHeaders => getblocks().prop_map(Message::GetHeaders).boxed(),
        Command::Headers => vec(header(), 0..10).prop_map(Message::Headers).boxed(),
        Command::Block => (header(), vec(tx_model(), 0..4))
            .prop_map(|(h, txs)| {
                let mut raw = h.to_bytes().to_vec();
                compact(&mut raw, txs.len());
                for t in &txs {
                    raw.extend(t.serialize(true));
                }
                Message::Block(Block::from_bytes(Bytes::from(raw)).expect("valid block"))
            })
            .boxed(),
        Command::Tx => tx_model()
            .prop_map(|t| {
                Message::Tx(Tx::from_bytes(Bytes::from(t.serialize(true))).expect("valid tx"))
            })
            .boxed(),
        Command::Reject => (
            prop_oneof![Just("tx".to_string()), Just("block".to_string()), text(12)],
            any::<u8>(),
            text(100),
            hash(),
        )
            .prop_map(|(message, code, reason, h)| {
                let hash = (message == "tx" || message == "block").then_some(h);
                Message::Reject(MsgReject {
                    message,
                    code,
                    reason,
                    hash,
                })
            })
            .boxed(),
        Command::SendHeaders => Just(Message::SendHeaders).boxed(),
        Command::FeeFilter => any::<i64>().prop_map(Message::FeeFilter).boxed(),
        Command::MemPool => Just(Message::MemPool).boxed(),
        Command::FilterLoad => (
            vec(any::<u8>(), 0..300),
            0..=50u32,
            any::<u32>(),
            any::<u8>(),
        )
            .prop_map(|(filter, hash_funcs, tweak, flags)| {
                Message::FilterLoad(MsgFilterLoad {
                    filter,
                    hash_funcs,
                    tweak,
                    flags,
                })
            })
            .boxed(),
        Command::FilterAdd => vec(any::<u8>(), 0..=520)
            .prop_map(Message::FilterAdd)
            .boxed(),
        Command::FilterClear => Just(Message::FilterClear).boxed(),
        Command::MerkleBlock => (
            header(),
            any::<u32>(),
            vec(hash(), 0..10),
            vec(any::<u8>(), 0..10),
        )
            .prop_map(|(header, total_txs, hashes, flags)| {
                Message::MerkleBlock(MsgMerkleBlock {
                    header,
                    total_txs,
                    hashes,
                    flags,
                })
            })
            .boxed(),
        Command::SendCmpct => (any::<bool>(), any::<u64>())
            .prop_map(|(announce, version)| Message::SendCmpct { announce, version })
            .boxed(),
        Command::WtxidRelay => Just(Message::WtxidRelay).boxed(),
        Command::SendAddrV2 => Just(Message::SendAddrV2).boxed(),
    }
}

fn any_command() -> impl Strategy<Value = Command> {
    proptest::sample::select(Command::ALL.to_vec())
}

fn any_message() -> impl Strategy<Value = Message> {
    any_command().prop_flat_map(message)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn payload_round_trip(msg in any_message()) {
        let bytes = msg.to_payload(PVER).unwrap();
        let back = Message::decode_payload(msg.command(), &bytes, PVER).unwrap();
        prop_assert_eq!(&back, &msg);
        // Zero-copy decoding agrees.
        let back2 = Message::decode_payload_bytes(msg.command(), Bytes::from(bytes), PVER).unwrap();
        prop_assert_eq!(back2, msg);
    }

    #[test]
    fn frame_round_trip(msg in any_message(), net in proptest::sample::select(Network::ALL.to_vec())) {
        let frame = encode_frame(net, &msg, PVER).unwrap();
        let (back, used) = decode_frame(&frame, net, PVER).unwrap();
        prop_assert_eq!(used, frame.len());
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn tx_hashes_consistent(t in tx_model()) {
        let full = Tx::from_bytes(Bytes::from(t.serialize(true))).unwrap();
        let base = Tx::from_bytes(Bytes::from(t.serialize(false))).unwrap();
        prop_assert_eq!(full.txid(), base.txid());
        prop_assert_eq!(base.txid(), base.wtxid());
        prop_assert_eq!(full.has_witness(), t.witness.is_some());
        prop_assert_eq!(full.to_base_bytes(), base.as_bytes().clone());
    }

    #[test]
    fn arbitrary_payload_never_panics(cmd in any_command(), bytes in vec(any::<u8>(), 0..600), pv in any::<u32>()) {
        let _ = Message::decode_payload(cmd, &bytes, pv);
        let _ = Tx::from_bytes(Bytes::from(bytes.clone()));
        let _ = Block::from_bytes(Bytes::from(bytes));
    }

    #[test]
    fn mutated_payload_never_panics(msg in any_message(), edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4), cut in any::<prop::sample::Index>()) {
        let mut bytes = msg.to_payload(PVER).unwrap();
        if !bytes.is_empty() {
            for (i, b) in edits {
                let at = i.index(bytes.len());
                bytes[at] = b;
            }
            let _ = Message::decode_payload(msg.command(), &bytes, PVER);
            bytes.truncate(cut.index(bytes.len()));
        }
        let _ = Message::decode_payload(msg.command(), &bytes, PVER);
    }

    #[test]
    fn arbitrary_frame_never_panics(bytes in vec(any::<u8>(), 0..200), pv in any::<u32>()) {
        let _ = decode_frame(&bytes, Network::Regtest, pv);
        // With a valid magic prefix the header checks get exercised too.
        let mut framed = Network::Regtest.magic().to_vec();
        framed.extend(&bytes);
        let _ = decode_frame(&framed, Network::Regtest, pv);
    }

    #[test]
    fn ping_round_trip_at_any_version(nonce in any::<u64>(), pv in any::<u32>()) {
        let msg = Message::Ping(MsgPing { nonce });
        let bytes = msg.to_payload(pv).unwrap();
        let back = Message::decode_payload(Command::Ping, &bytes, pv).unwrap();
        let expect = if pv > 60_000 { nonce } else { 0 };
        prop_assert_eq!(back, Message::Ping(MsgPing { nonce: expect }));
    }
}
