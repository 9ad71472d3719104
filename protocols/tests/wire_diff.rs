//! Differential tests: our bitcoin wire codec against `bitcoin` 0.32 as an oracle.
//!
//! For every message both sides know, our payload encoding must equal
//! `bitcoin::consensus::encode::serialize(&NetworkMessage::…)`, we must decode
//! its bytes to the equal value, and our full frame must equal its
//! `RawNetworkMessage` serialization (and decode back on its side).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::p2p::address::{AddrV2 as TheirAddrV2, AddrV2Message, Address};
use bitcoin::p2p::message::{NetworkMessage, RawNetworkMessage};
use bitcoin::p2p::message_blockdata::{GetBlocksMessage, GetHeadersMessage, Inventory};
use bitcoin::p2p::message_bloom::{BloomFlags, FilterAdd, FilterLoad};
use bitcoin::p2p::message_compact_blocks::SendCmpct;
use bitcoin::p2p::message_network::{Reject, RejectReason, VersionMessage};
use bitcoin::p2p::{Magic, ServiceFlags};
use bitcoin::{BlockHash, Transaction, Txid, Wtxid};
use bytes::Bytes;
use protocols::bitcoin::wire::{
    checksum, encode_frame, inv_type, pver, reject_code, services, AddrV2, AddrV2Entry, Block,
    BlockHeader, Command, Hash256, InvVect, Message, MsgFilterLoad, MsgGetBlocks, MsgMerkleBlock,
    MsgPing, MsgReject, MsgVersion, NetAddress, Network, TimedNetAddress, Tx, WireError,
};

const PVER: u32 = pver::PROTOCOL_VERSION;

/// Mainnet tx a6eab3c14ab5272a58a5ba91505ba1a4b6d7a3a9fcbd187b6cd99a7b6d548cb7 (legacy).
const LEGACY_TX: &str = "0100000001a15d57094aa7a21a28cb20b59aab8fc7d1149a3bdbcddba9c622e4f5f6a99ece010000006c493046022100f93bb0e7d8db7bd46e40132d1f8242026e045f03a0efe71bbb8e3f475e970d790221009337cd7f1f929f00cc6ff01f03729b069a7c21b59b1736ddfee5db5946c5da8c0121033b9b137ee87d5a812d6f506efdd37f0affa7ffc310711c06c7f3e097c9447c52ffffffff0100e1f505000000001976a9140389035a9225b3839e2bbf32d826a1e222031fd888ac00000000";
/// Segwit tx f5864806e3565c34d1b41e716f72609d00b55ea5eac5b924c9719a842ef42206
/// (wtxid 80b7d8a82d5d5bf92905b06f2014dd699e03837ca172e3a59d51426ebbe3e7f5).
const SEGWIT_TX: &str = "02000000000101595895ea20179de87052b4046dfe6fd515860505d6511a9004cf12a1f93cac7c0100000000ffffffff01deb807000000000017a9140f3444e271620c736808aa7b33e370bd87cb5a078702483045022100fb60dad8df4af2841adc0346638c16d0b8035f5e3f3753b88db122e70c79f9370220756e6633b17fd2710e626347d28d60b0a2d6cbb41de51740644b9fb3ba7751040121028fa937ca8cba2197a37c007176ed8941055d3bcb8627d085e94553e62f057dcc00000000";
/// A segwit coinbase transaction (testnet, NinjaPool).
const SEGWIT_COINBASE: &str = "010000000001010000000000000000000000000000000000000000000000000000000000000000ffffffff3603da1b0e00045503bd5704c7dd8a0d0ced13bb5785010800000000000a636b706f6f6c122f4e696e6a61506f6f6c2f5345475749542fffffffff02b4e5a212000000001976a914876fbb82ec05caa6af7a3b5e5a983aae6c6cc6d688ac0000000000000000266a24aa21a9edf91c46b49eb8a29089980f02ee6b57e7d63d33b18b4fddac2bcd7db2a39837040120000000000000000000000000000000000000000000000000000000000000000000000000";
/// Mainnet block 00000000b0c5a240b2a61d2e75692224efd4cbecdf6eaf4cc2cf477ca7c270e7 (2 txs).
const MAINNET_BLOCK: &str = "010000004ddccd549d28f385ab457e98d1b11ce80bfea2c5ab93015ade4973e400000000bf4473e53794beae34e64fccc471dace6ae544180816f89591894e0f417a914cd74d6e49ffff001d323b3a7b0201000000010000000000000000000000000000000000000000000000000000000000000000ffffffff0804ffff001d026e04ffffffff0100f2052a0100000043410446ef0102d1ec5240f0d061a4246c1bdef63fc3dbab7733052fbbf0ecd8f41fc26bf049ebb4f9527f374280259e7cfa99c48b0e3f39c51347a19a5819651503a5ac00000000010000000321f75f3139a013f50f315b23b0c9a2b6eac31e2bec98e5891c924664889942260000000049483045022100cb2c6b346a978ab8c61b18b5e9397755cbd17d6eb2fe0083ef32e067fa6c785a02206ce44e613f31d9a6b0517e46f3db1576e9812cc98d159bfdaf759a5014081b5c01ffffffff79cda0945903627c3da1f85fc95d0b8ee3e76ae0cfdc9a65d09744b1f8fc85430000000049483045022047957cdd957cfd0becd642f6b84d82f49b6cb4c51a91f49246908af7c3cfdf4a022100e96b46621f1bffcf5ea5982f88cef651e9354f5791602369bf5a82a6cd61a62501fffffffffe09f5fe3ffbf5ee97a54eb5e5069e9da6b4856ee86fc52938c2f979b0f38e82000000004847304402204165be9a4cbab8049e1af9723b96199bfd3e85f44c6b4c0177e3962686b26073022028f638da23fc003760861ad481ead4099312c60030d4cb57820ce4d33812a5ce01ffffffff01009d966b01000000434104ea1feff861b51fe3f5f8a3b12d0f4712db80e919548a80839fc47c6a21e66d957e9c5d8cd108c7a2d2324bad71f9904ac0ae7336507d785b17a2c115e427a32fac00000000";

/// Checks one message pair both ways, as payload and as a regtest frame.
fn check(theirs: NetworkMessage, ours: Message) {
    let name = theirs.cmd();
    let cmd = Command::from_name(name.as_bytes()).expect("command known to both");
    assert_eq!(cmd, ours.command(), "{name}");

    let their_payload = serialize(&theirs);
    let our_payload = ours.to_payload(PVER).unwrap();
    assert_eq!(
        hex::encode(&our_payload),
        hex::encode(&their_payload),
        "{name} payload"
    );
    assert_eq!(
        Message::decode_payload(cmd, &their_payload, PVER).unwrap(),
        ours,
        "{name} decode"
    );

    let raw = RawNetworkMessage::new(Magic::REGTEST, theirs);
    let their_frame = serialize(&raw);
    let our_frame = encode_frame(Network::Regtest, &ours, PVER).unwrap();
    assert_eq!(
        hex::encode(&our_frame),
        hex::encode(&their_frame),
        "{name} frame"
    );
    let back: RawNetworkMessage = deserialize(&our_frame).unwrap();
    // Compared re-serialized: the oracle's own merkleblock round trip pads the flag bits.
    assert_eq!(
        serialize(&back),
        their_frame,
        "{name}: oracle decodes our frame"
    );
    let (decoded, used) =
        protocols::bitcoin::wire::decode_frame(&their_frame, Network::Regtest, PVER).unwrap();
    assert_eq!(decoded, ours);
    assert_eq!(used, their_frame.len());
}

fn their_addr(ip: SocketAddr, svc: u64) -> Address {
    Address::new(&ip, ServiceFlags::from(svc))
}

fn our_addr(ip: SocketAddr, svc: u64) -> NetAddress {
    NetAddress::from_socket_addr(ip, svc)
}

fn h(b: u8) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, x) in out.iter_mut().enumerate() {
        *x = b.wrapping_add(i as u8);
    }
    out
}

fn our_header(hd: &bitcoin::block::Header) -> BlockHeader {
    BlockHeader {
        version: hd.version.to_consensus(),
        prev_block: Hash256(hd.prev_blockhash.to_byte_array()),
        merkle_root: Hash256(hd.merkle_root.to_byte_array()),
        time: hd.time,
        bits: hd.bits.to_consensus(),
        nonce: hd.nonce,
    }
}

fn their_tx(hex_str: &str) -> Transaction {
    deserialize(&hex::decode(hex_str).unwrap()).unwrap()
}

fn our_tx(hex_str: &str) -> Tx {
    Tx::from_bytes(Bytes::from(hex::decode(hex_str).unwrap())).unwrap()
}

#[test]
fn network_magics_match_oracle() {
    assert_eq!(Network::Mainnet.magic(), Magic::BITCOIN.to_bytes());
    assert_eq!(Network::Testnet3.magic(), Magic::TESTNET3.to_bytes());
    assert_eq!(Network::Testnet4.magic(), Magic::TESTNET4.to_bytes());
    assert_eq!(Network::Signet.magic(), Magic::SIGNET.to_bytes());
    assert_eq!(Network::Regtest.magic(), Magic::REGTEST.to_bytes());
    for n in Network::ALL {
        assert_eq!(Network::from_magic(n.magic()), Some(n));
    }
    assert_eq!(Network::from_magic([0x16, 0x1c, 0x14, 0x12]), None);
}

#[test]
fn version() {
    let recv: SocketAddr = "203.0.113.7:8333".parse().unwrap();
    let from: SocketAddr = "[2001:db8::5]:18444".parse().unwrap();
    let svc = services::NETWORK | services::WITNESS | services::NETWORK_LIMITED;
    let theirs = VersionMessage {
        version: 70016,
        services: ServiceFlags::from(svc),
        timestamp: 1_700_000_000,
        receiver: their_addr(recv, services::NETWORK),
        sender: their_addr(from, svc),
        nonce: 0x0123_4567_89ab_cdef,
        user_agent: "/braid:0.1.0/".into(),
        start_height: 840_000,
        relay: false,
    };
    let ours = MsgVersion {
        version: 70016,
        services: svc,
        timestamp: 1_700_000_000,
        addr_recv: our_addr(recv, services::NETWORK),
        addr_from: our_addr(from, svc),
        nonce: 0x0123_4567_89ab_cdef,
        user_agent: "/braid:0.1.0/".into(),
        start_height: 840_000,
        relay: false,
    };
    assert_eq!(ours.addr_recv.socket_addr(), recv);
    assert_eq!(ours.addr_from.socket_addr(), from);
    check(
        NetworkMessage::Version(theirs.clone()),
        Message::Version(ours.clone()),
    );
    // relay = true as well (the byte value is what differs).
    check(
        NetworkMessage::Version(VersionMessage {
            relay: true,
            ..theirs
        }),
        Message::Version(MsgVersion {
            relay: true,
            ..ours
        }),
    );
}

#[test]
fn empty_messages() {
    check(NetworkMessage::Verack, Message::Verack);
    check(NetworkMessage::GetAddr, Message::GetAddr);
    check(NetworkMessage::SendHeaders, Message::SendHeaders);
    check(NetworkMessage::MemPool, Message::MemPool);
    check(NetworkMessage::FilterClear, Message::FilterClear);
    check(NetworkMessage::WtxidRelay, Message::WtxidRelay);
    check(NetworkMessage::SendAddrV2, Message::SendAddrV2);
}

#[test]
fn ping_pong_feefilter_sendcmpct() {
    check(
        NetworkMessage::Ping(0xdead_beef_0042),
        Message::Ping(MsgPing {
            nonce: 0xdead_beef_0042,
        }),
    );
    check(NetworkMessage::Pong(u64::MAX), Message::Pong(u64::MAX));
    check(NetworkMessage::FeeFilter(1000), Message::FeeFilter(1000));
    check(
        NetworkMessage::SendCmpct(SendCmpct {
            send_compact: true,
            version: 2,
        }),
        Message::SendCmpct {
            announce: true,
            version: 2,
        },
    );
    check(
        NetworkMessage::SendCmpct(SendCmpct {
            send_compact: false,
            version: 1,
        }),
        Message::SendCmpct {
            announce: false,
            version: 1,
        },
    );
}

#[test]
fn addr() {
    let a: SocketAddr = "198.51.100.1:8333".parse().unwrap();
    let b: SocketAddr = "[2001:db8::1:2]:8334".parse().unwrap();
    let theirs = vec![
        (1_700_000_001, their_addr(a, services::NETWORK)),
        (
            1_700_000_002,
            their_addr(b, services::NETWORK | services::WITNESS),
        ),
    ];
    let ours = vec![
        TimedNetAddress {
            time: 1_700_000_001,
            addr: our_addr(a, services::NETWORK),
        },
        TimedNetAddress {
            time: 1_700_000_002,
            addr: our_addr(b, services::NETWORK | services::WITNESS),
        },
    ];
    check(NetworkMessage::Addr(theirs), Message::Addr(ours));
    check(NetworkMessage::Addr(vec![]), Message::Addr(vec![]));
}

#[test]
fn addrv2() {
    let ipv6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x42);
    let cjdns = Ipv6Addr::new(0xfc00, 1, 2, 3, 4, 5, 6, 7);
    let entries = [
        (
            TheirAddrV2::Ipv4(Ipv4Addr::new(192, 0, 2, 9)),
            AddrV2::Ipv4([192, 0, 2, 9]),
        ),
        (TheirAddrV2::Ipv6(ipv6), AddrV2::Ipv6(ipv6.octets())),
        (TheirAddrV2::TorV3(h(7)), AddrV2::TorV3(h(7))),
        (TheirAddrV2::I2p(h(9)), AddrV2::I2p(h(9))),
        (TheirAddrV2::Cjdns(cjdns), AddrV2::Cjdns(cjdns.octets())),
    ];
    let mut theirs = Vec::new();
    let mut ours = Vec::new();
    for (i, (t, o)) in entries.into_iter().enumerate() {
        let svc = if i % 2 == 0 { 0x409 } else { 1 << 40 }; // 3- and 9-byte CompactSize
        theirs.push(AddrV2Message {
            time: 1_700_000_000 + i as u32,
            services: ServiceFlags::from(svc),
            addr: t,
            port: 8333 + i as u16,
        });
        ours.push(AddrV2Entry {
            time: 1_700_000_000 + i as u32,
            services: svc,
            addr: o,
            port: 8333 + i as u16,
        });
    }
    check(NetworkMessage::AddrV2(theirs), Message::AddrV2(ours));
}

fn inv_pairs() -> (Vec<Inventory>, Vec<InvVect>) {
    let theirs = vec![
        Inventory::Transaction(Txid::from_byte_array(h(1))),
        Inventory::Block(BlockHash::from_byte_array(h(2))),
        Inventory::CompactBlock(BlockHash::from_byte_array(h(3))),
        Inventory::WTx(Wtxid::from_byte_array(h(4))),
        Inventory::WitnessTransaction(Txid::from_byte_array(h(5))),
        Inventory::WitnessBlock(BlockHash::from_byte_array(h(6))),
        Inventory::Unknown {
            inv_type: inv_type::FILTERED_BLOCK,
            hash: h(7),
        },
        Inventory::Unknown {
            inv_type: inv_type::FILTERED_WITNESS_BLOCK,
            hash: h(8),
        },
    ];
    let ours = [
        (inv_type::TX, 1),
        (inv_type::BLOCK, 2),
        (inv_type::CMPCT_BLOCK, 3),
        (inv_type::WTX, 4),
        (inv_type::WITNESS_TX, 5),
        (inv_type::WITNESS_BLOCK, 6),
        (inv_type::FILTERED_BLOCK, 7),
        (inv_type::FILTERED_WITNESS_BLOCK, 8),
    ]
    .into_iter()
    .map(|(t, b)| InvVect {
        inv_type: t,
        hash: Hash256(h(b)),
    })
    .collect();
    (theirs, ours)
}

#[test]
fn inv_getdata_notfound() {
    let (t, o) = inv_pairs();
    check(NetworkMessage::Inv(t.clone()), Message::Inv(o.clone()));
    check(
        NetworkMessage::GetData(t.clone()),
        Message::GetData(o.clone()),
    );
    check(NetworkMessage::NotFound(t), Message::NotFound(o));
    assert_eq!(inv_type::WITNESS_TX, 0x4000_0001);
    assert_eq!(inv_type::WITNESS_BLOCK, 0x4000_0002);
    assert_eq!(inv_type::FILTERED_WITNESS_BLOCK, 0x4000_0003);
}

#[test]
fn getblocks_getheaders() {
    let locator: Vec<BlockHash> = (0..10)
        .map(|i| BlockHash::from_byte_array(h(i * 3)))
        .collect();
    let ours_loc: Vec<Hash256> = (0..10).map(|i| Hash256(h(i * 3))).collect();
    let stop = BlockHash::from_byte_array(h(99));
    let ours = MsgGetBlocks {
        version: PVER,
        locator: ours_loc,
        hash_stop: Hash256(h(99)),
    };
    check(
        NetworkMessage::GetBlocks(GetBlocksMessage {
            version: PVER,
            locator_hashes: locator.clone(),
            stop_hash: stop,
        }),
        Message::GetBlocks(ours.clone()),
    );
    check(
        NetworkMessage::GetHeaders(GetHeadersMessage {
            version: PVER,
            locator_hashes: locator,
            stop_hash: BlockHash::all_zeros(),
        }),
        Message::GetHeaders(MsgGetBlocks {
            hash_stop: Hash256::ZERO,
            ..ours
        }),
    );
}

#[test]
fn headers_and_block_hashes() {
    let genesis = bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Bitcoin);
    let block: bitcoin::Block = deserialize(&hex::decode(MAINNET_BLOCK).unwrap()).unwrap();
    let theirs = vec![genesis.header, block.header];
    let ours: Vec<BlockHeader> = theirs.iter().map(our_header).collect();
    assert_eq!(ours[0].hash().to_string(), genesis.block_hash().to_string());
    assert_eq!(
        ours[1].hash().to_string(),
        "00000000b0c5a240b2a61d2e75692224efd4cbecdf6eaf4cc2cf477ca7c270e7"
    );
    check(NetworkMessage::Headers(theirs), Message::Headers(ours));
}

/// A regtest frame around `payload`, checksum and all, whatever the payload holds.
fn raw_frame(command: &str, payload: &[u8]) -> Vec<u8> {
    let mut f = Network::Regtest.magic().to_vec();
    let mut name = [0u8; 12];
    name[..command.len()].copy_from_slice(command.as_bytes());
    f.extend_from_slice(&name);
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(&checksum(payload));
    f.extend_from_slice(payload);
    f
}

/// BIP130's two messages at their edges: a full 2000-header `headers` matches the oracle;
/// 2001 headers, a non-zero tx count after a header (plain or as a non-canonical
/// CompactSize) are refused by us with typed errors and by the oracle too (it has no
/// count limit, so 2001 is ours alone); `sendheaders` carries nothing.
#[test]
fn headers_edges_and_sendheaders() {
    let block: bitcoin::Block = deserialize(&hex::decode(MAINNET_BLOCK).unwrap()).unwrap();
    let theirs: Vec<bitcoin::block::Header> = (0..2000u32)
        .map(|n| bitcoin::block::Header {
            nonce: n,
            ..block.header
        })
        .collect();
    let ours: Vec<BlockHeader> = theirs.iter().map(our_header).collect();
    check(
        NetworkMessage::Headers(theirs.clone()),
        Message::Headers(ours.clone()),
    );
    let full = serialize(&NetworkMessage::Headers(theirs.clone()));
    assert_eq!(full.len(), 3 + 2000 * 81);

    let mut over = theirs;
    over.push(block.header);
    let over_payload = serialize(&NetworkMessage::Headers(over));
    // Refused on its length before any header is parsed (the count alone is refused in
    // wire_limits.rs).
    assert!(matches!(
        Message::decode_payload(Command::Headers, &over_payload, PVER),
        Err(WireError::PayloadTooLarge {
            command: Command::Headers,
            len: 162_084,
            max: 162_009
        })
    ));
    let mut ours_over = ours;
    ours_over.push(our_header(&block.header));
    assert!(matches!(
        Message::Headers(ours_over).to_payload(PVER),
        Err(WireError::TooManyItems {
            count: 2001,
            max: 2000,
            ..
        })
    ));

    // One header; then its tx count replaced.
    let one = serialize(&NetworkMessage::Headers(vec![block.header]));
    assert_eq!(one.len(), 82);
    assert_eq!(one[81], 0, "the oracle writes a zero tx count");
    let bad_counts: [&[u8]; 3] = [&[1], &[0xfd, 0x00, 0x00], &[0xfd, 0x01, 0x00]];
    for count in bad_counts {
        let mut payload = one[..81].to_vec();
        payload.extend_from_slice(count);
        let ours = Message::decode_payload(Command::Headers, &payload, PVER).unwrap_err();
        assert!(
            matches!(
                ours,
                WireError::HeaderTxCount(_) | WireError::NonCanonicalCompactSize { .. }
            ),
            "{count:02x?}: {ours:?}"
        );
        let oracle: Result<RawNetworkMessage, _> = deserialize(&raw_frame("headers", &payload));
        assert!(oracle.is_err(), "{count:02x?}: the oracle accepts it");
    }
    assert!(matches!(
        Message::decode_payload(Command::Headers, &[0x01, 0x00], PVER),
        Err(WireError::Truncated { .. })
    ));

    assert!(serialize(&NetworkMessage::SendHeaders).is_empty());
    assert!(matches!(
        Message::decode_payload(Command::SendHeaders, &[0], PVER),
        Err(WireError::PayloadTooLarge { max: 0, .. })
    ));
}

fn check_tx(hex_str: &str) {
    let theirs = their_tx(hex_str);
    let ours = our_tx(hex_str);
    assert_eq!(
        ours.txid().to_byte_array(),
        theirs.compute_txid().to_byte_array()
    );
    assert_eq!(
        ours.wtxid().to_byte_array(),
        theirs.compute_wtxid().to_byte_array()
    );
    assert_eq!(ours.txid().to_string(), theirs.compute_txid().to_string());
    // The stripped serialization equals the oracle's non-witness encoding.
    let mut stripped = theirs.clone();
    stripped.input.iter_mut().for_each(|i| i.witness.clear());
    assert_eq!(
        ours.to_base_bytes().as_ref(),
        serialize(&stripped).as_slice()
    );
    assert_eq!(
        ours.has_witness(),
        theirs.input.iter().any(|i| !i.witness.is_empty())
    );
    check(NetworkMessage::Tx(theirs), Message::Tx(ours));
}

#[test]
fn tx_legacy_mainnet() {
    check_tx(LEGACY_TX);
    assert_eq!(
        our_tx(LEGACY_TX).txid().to_string(),
        "a6eab3c14ab5272a58a5ba91505ba1a4b6d7a3a9fcbd187b6cd99a7b6d548cb7"
    );
}

#[test]
fn tx_segwit() {
    check_tx(SEGWIT_TX);
    check_tx(SEGWIT_COINBASE);
    let tx = our_tx(SEGWIT_TX);
    assert_eq!(
        tx.txid().to_string(),
        "f5864806e3565c34d1b41e716f72609d00b55ea5eac5b924c9719a842ef42206"
    );
    assert_eq!(
        tx.wtxid().to_string(),
        "80b7d8a82d5d5bf92905b06f2014dd699e03837ca172e3a59d51426ebbe3e7f5"
    );
}

fn check_block(theirs: bitcoin::Block) {
    let bytes = Bytes::from(serialize(&theirs));
    let ours = Block::from_bytes(bytes).unwrap();
    assert_eq!(
        ours.hash().to_byte_array(),
        theirs.block_hash().to_byte_array()
    );
    assert_eq!(*ours.header(), our_header(&theirs.header));
    let their_ids: Vec<[u8; 32]> = theirs
        .txdata
        .iter()
        .map(|t| t.compute_txid().to_byte_array())
        .collect();
    let our_ids: Vec<[u8; 32]> = ours.txids().iter().map(|t| t.to_byte_array()).collect();
    assert_eq!(our_ids, their_ids);
    for (o, t) in ours.txs().iter().zip(&theirs.txdata) {
        assert_eq!(o.wtxid().to_byte_array(), t.compute_wtxid().to_byte_array());
    }
    check(NetworkMessage::Block(theirs), Message::Block(ours));
}

#[test]
fn block_mainnet_and_segwit() {
    check_block(deserialize(&hex::decode(MAINNET_BLOCK).unwrap()).unwrap());
    check_block(bitcoin::blockdata::constants::genesis_block(
        bitcoin::Network::Bitcoin,
    ));
    // A block mixing witness and non-witness transactions (structure only;
    // the header is reused from the mainnet block).
    let base: bitcoin::Block = deserialize(&hex::decode(MAINNET_BLOCK).unwrap()).unwrap();
    let mixed = bitcoin::Block {
        header: base.header,
        txdata: vec![
            their_tx(SEGWIT_COINBASE),
            their_tx(LEGACY_TX),
            their_tx(SEGWIT_TX),
        ],
    };
    check_block(mixed);
}

#[test]
fn reject() {
    check(
        NetworkMessage::Reject(Reject {
            message: "tx".into(),
            ccode: RejectReason::Dust,
            reason: "dust output".into(),
            hash: sha256d::Hash::from_byte_array(h(0x30)),
        }),
        Message::Reject(MsgReject {
            message: "tx".into(),
            code: reject_code::DUST,
            reason: "dust output".into(),
            hash: Some(Hash256(h(0x30))),
        }),
    );
    check(
        NetworkMessage::Reject(Reject {
            message: "block".into(),
            ccode: RejectReason::Invalid,
            reason: "bad-txns".into(),
            hash: sha256d::Hash::from_byte_array(h(0x31)),
        }),
        Message::Reject(MsgReject {
            message: "block".into(),
            code: reject_code::INVALID,
            reason: "bad-txns".into(),
            hash: Some(Hash256(h(0x31))),
        }),
    );
}

#[test]
fn bloom_messages() {
    let filter: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    check(
        NetworkMessage::FilterLoad(FilterLoad {
            filter: filter.clone(),
            hash_funcs: 11,
            tweak: 0xfeed_beef,
            flags: BloomFlags::PubkeyOnly,
        }),
        Message::FilterLoad(MsgFilterLoad {
            filter,
            hash_funcs: 11,
            tweak: 0xfeed_beef,
            flags: 2,
        }),
    );
    check(
        NetworkMessage::FilterAdd(FilterAdd {
            data: vec![0xab; 520],
        }),
        Message::FilterAdd(vec![0xab; 520]),
    );
}

#[test]
fn merkleblock() {
    let block: bitcoin::Block = deserialize(&hex::decode(MAINNET_BLOCK).unwrap()).unwrap();
    let txids: Vec<Txid> = block.txdata.iter().map(|t| t.compute_txid()).collect();
    let wanted = txids[1];
    let theirs =
        bitcoin::MerkleBlock::from_header_txids_with_predicate(&block.header, &txids, |t| {
            *t == wanted
        });
    // Our struct from the oracle's partial tree fields, via its wire layout:
    // header | total u32 | hashes | flags.
    let raw = serialize(&theirs);
    let total = u32::from_le_bytes(raw[80..84].try_into().unwrap());
    let ours = MsgMerkleBlock {
        header: our_header(&block.header),
        total_txs: total,
        hashes: theirs
            .txn
            .hashes()
            .iter()
            .map(|x| Hash256(x.to_byte_array()))
            .collect(),
        flags: raw[raw.len() - 1..].to_vec(),
    };
    assert_eq!(total, 2);
    assert_eq!(raw[raw.len() - 2], 1, "one flag byte");
    check(
        NetworkMessage::MerkleBlock(theirs),
        Message::MerkleBlock(ours),
    );
}

#[test]
fn every_command_is_covered_by_the_oracle() {
    // Names of the oracle's messages that we implement must match ours.
    let names = [
        "version",
        "verack",
        "ping",
        "pong",
        "addr",
        "addrv2",
        "getaddr",
        "inv",
        "getdata",
        "notfound",
        "getblocks",
        "getheaders",
        "headers",
        "block",
        "tx",
        "reject",
        "sendheaders",
        "feefilter",
        "mempool",
        "filterload",
        "filteradd",
        "filterclear",
        "merkleblock",
        "sendcmpct",
        "wtxidrelay",
        "sendaddrv2",
    ];
    assert_eq!(names.len(), Command::COUNT);
    for (code, name) in names.iter().enumerate() {
        let cmd = Command::from_code(code as u8).unwrap();
        assert_eq!(cmd.as_str(), *name);
    }
}

/// A block holding a segwit coinbase, a legacy tx and a segwit tx, built and serialized
/// (with witnesses) by the oracle.
fn their_segwit_block() -> bitcoin::Block {
    let mainnet: bitcoin::Block = deserialize(&hex::decode(MAINNET_BLOCK).unwrap()).unwrap();
    bitcoin::Block {
        header: mainnet.header,
        txdata: vec![
            their_tx(SEGWIT_COINBASE),
            their_tx(LEGACY_TX),
            their_tx(SEGWIT_TX),
        ],
    }
}

#[test]
fn block_without_witness_matches_oracle() {
    let theirs = their_segwit_block();
    let with = serialize(&theirs);
    let ours = Block::from_bytes(Bytes::from(with.clone())).unwrap();
    assert!(ours.has_witness());
    assert_eq!(ours.as_bytes().as_ref(), with.as_slice());
    // The oracle's non-witness encoding: every witness cleared.
    let mut stripped = theirs.clone();
    for tx in &mut stripped.txdata {
        tx.input.iter_mut().for_each(|i| i.witness.clear());
    }
    let base = serialize(&stripped);
    assert!(base.len() < with.len());
    assert_eq!(ours.to_base_bytes().as_ref(), base.as_slice());
    let without = ours.without_witness();
    assert!(!without.has_witness());
    assert_eq!(without.as_bytes().as_ref(), base.as_slice());
    assert_eq!(without.hash(), ours.hash());
    assert_eq!(without.txids(), ours.txids());
    // A block without witnesses is returned as is.
    let legacy = Block::from_bytes(Bytes::from(hex::decode(MAINNET_BLOCK).unwrap())).unwrap();
    assert!(!legacy.has_witness());
    assert_eq!(legacy.to_base_bytes(), *legacy.as_bytes());
    check(
        NetworkMessage::Block(stripped),
        Message::Block(ours.without_witness()),
    );
}

#[test]
fn detached_copies_own_exactly_their_bytes() {
    let with = serialize(&their_segwit_block());
    // A block parsed out of a larger buffer shares it; the detached copy does not.
    let mut big = with.clone();
    big.extend_from_slice(&[0u8; 4096]);
    let big = Bytes::from(big);
    let ours = Block::from_bytes(big.slice(..with.len())).unwrap();
    let detached = ours.detached();
    assert_eq!(detached, ours);
    assert_eq!(detached.txids(), ours.txids());
    for (a, b) in detached.txs().iter().zip(ours.txs()) {
        assert_eq!(a.as_bytes(), b.as_bytes());
        assert_eq!(a.wtxid(), b.wtxid());
    }
    let tx = ours.txs()[2].detached();
    assert_eq!(tx.txid(), ours.txs()[2].txid());
    assert_eq!(tx.as_bytes().len(), tx.len());
}
