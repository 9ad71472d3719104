//! The [`Message`] enum: payload-only encoding and decoding keyed by [`Command`].

use bytes::Bytes;

use super::command::Command;
use super::constants::pver;
use super::encoding::{check_count, put_compact_size, Reader};
use super::error::WireError;
use super::limits::{max_payload_len, MAX_ADDR_PER_MSG, MAX_HEADERS_PER_MSG, MAX_INV_PER_MSG};
use super::payloads::{
    decode_filter_add, encode_filter_add, MsgFilterLoad, MsgGetBlocks, MsgMerkleBlock, MsgPing,
    MsgReject, MsgVersion,
};
use super::tx::{Block, Tx};
use super::types::{AddrV2Entry, BlockHeader, InvVect, NetAddress, TimedNetAddress};

/// A decoded bitcoin P2P message (payload only; framing is separate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// `version`.
    Version(MsgVersion),
    /// `verack`.
    Verack,
    /// `ping`.
    Ping(MsgPing),
    /// `pong` with the echoed nonce.
    Pong(u64),
    /// `addr`, at most 1000 entries.
    Addr(Vec<TimedNetAddress>),
    /// `addrv2` (BIP155), at most 1000 entries; entries with unknown network
    /// ids are dropped while decoding.
    AddrV2(Vec<AddrV2Entry>),
    /// `getaddr`.
    GetAddr,
    /// `inv`, at most 50,000 entries.
    Inv(Vec<InvVect>),
    /// `getdata`, at most 50,000 entries.
    GetData(Vec<InvVect>),
    /// `notfound`, at most 50,000 entries.
    NotFound(Vec<InvVect>),
    /// `getblocks`.
    GetBlocks(MsgGetBlocks),
    /// `getheaders`.
    GetHeaders(MsgGetBlocks),
    /// `headers`, at most 2000.
    Headers(Vec<BlockHeader>),
    /// `block`.
    Block(Block),
    /// `tx`.
    Tx(Tx),
    /// `reject` (protocol version >= 70002).
    Reject(MsgReject),
    /// `sendheaders` (>= 70012).
    SendHeaders,
    /// `feefilter` in satoshis per kvB (>= 70013).
    FeeFilter(i64),
    /// `mempool` (>= 60002).
    MemPool,
    /// `filterload` (>= 70001).
    FilterLoad(MsgFilterLoad),
    /// `filteradd` data element (>= 70001).
    FilterAdd(Vec<u8>),
    /// `filterclear` (>= 70001).
    FilterClear,
    /// `merkleblock` (>= 70001).
    MerkleBlock(MsgMerkleBlock),
    /// `sendcmpct` (BIP152).
    SendCmpct {
        /// Whether to announce new blocks with `cmpctblock`.
        announce: bool,
        /// Compact block version (1, or 2 for segwit).
        version: u64,
    },
    /// `wtxidrelay` (BIP339).
    WtxidRelay,
    /// `sendaddrv2` (BIP155, >= 70016).
    SendAddrV2,
}

fn check_gate(cmd: Command, pv: u32) -> Result<(), WireError> {
    if pv < cmd.min_protocol_version() {
        return Err(WireError::UnsupportedAtVersion {
            command: cmd,
            pver: pv,
        });
    }
    Ok(())
}

fn check_payload_len(cmd: Command, len: usize, pv: u32) -> Result<(), WireError> {
    let max = max_payload_len(cmd, pv);
    if len > max {
        return Err(WireError::PayloadTooLarge {
            command: cmd,
            len,
            max,
        });
    }
    Ok(())
}

/// Below protocol version 209 `addr` may carry only one entry (btcd `MultipleAddressVersion`).
fn max_addr(pv: u32) -> usize {
    if pv < pver::MULTIPLE_ADDRESS {
        1
    } else {
        MAX_ADDR_PER_MSG
    }
}

fn encode_inv(list: &[InvVect], out: &mut Vec<u8>) -> Result<(), WireError> {
    check_count("inventory vectors", list.len(), MAX_INV_PER_MSG)?;
    put_compact_size(out, list.len() as u64);
    for iv in list {
        iv.encode(out);
    }
    Ok(())
}

fn decode_inv(r: &mut Reader<'_>) -> Result<Vec<InvVect>, WireError> {
    let n = r.count("inventory vectors", MAX_INV_PER_MSG, InvVect::LEN)?;
    let mut list = Vec::with_capacity(n);
    for _ in 0..n {
        list.push(InvVect::decode(r)?);
    }
    Ok(list)
}

fn encode_addr(list: &[TimedNetAddress], pv: u32, out: &mut Vec<u8>) -> Result<(), WireError> {
    check_count("addresses", list.len(), max_addr(pv))?;
    put_compact_size(out, list.len() as u64);
    for a in list {
        if pv >= pver::NET_ADDRESS_TIME {
            out.extend_from_slice(&a.time.to_le_bytes());
        }
        a.addr.encode(out);
    }
    Ok(())
}

fn decode_addr(r: &mut Reader<'_>, pv: u32) -> Result<Vec<TimedNetAddress>, WireError> {
    let timed = pv >= pver::NET_ADDRESS_TIME;
    let item_len = if timed {
        TimedNetAddress::LEN
    } else {
        NetAddress::LEN
    };
    let n = r.count("addresses", max_addr(pv), item_len)?;
    let mut list = Vec::with_capacity(n);
    for _ in 0..n {
        let time = if timed { r.u32_le()? } else { 0 };
        list.push(TimedNetAddress {
            time,
            addr: NetAddress::decode(r)?,
        });
    }
    Ok(list)
}

fn encode_addrv2(list: &[AddrV2Entry], out: &mut Vec<u8>) -> Result<(), WireError> {
    check_count("addresses", list.len(), MAX_ADDR_PER_MSG)?;
    put_compact_size(out, list.len() as u64);
    for a in list {
        a.encode(out);
    }
    Ok(())
}

fn decode_addrv2(r: &mut Reader<'_>) -> Result<Vec<AddrV2Entry>, WireError> {
    let n = r.count("addresses", MAX_ADDR_PER_MSG, AddrV2Entry::MIN_LEN)?;
    let mut list = Vec::with_capacity(n);
    for _ in 0..n {
        if let Some(entry) = AddrV2Entry::decode(r)? {
            list.push(entry);
        }
    }
    Ok(list)
}

fn encode_headers(list: &[BlockHeader], out: &mut Vec<u8>) -> Result<(), WireError> {
    check_count("headers", list.len(), MAX_HEADERS_PER_MSG)?;
    put_compact_size(out, list.len() as u64);
    for h in list {
        h.encode(out);
        out.push(0); // tx count, always 0 in `headers`
    }
    Ok(())
}

fn decode_headers(r: &mut Reader<'_>) -> Result<Vec<BlockHeader>, WireError> {
    let n = r.count("headers", MAX_HEADERS_PER_MSG, BlockHeader::LEN + 1)?;
    let mut list = Vec::with_capacity(n);
    for _ in 0..n {
        list.push(BlockHeader::decode(r)?);
        match r.compact_size()? {
            0 => {}
            c => return Err(WireError::HeaderTxCount(c)),
        }
    }
    Ok(list)
}

impl Message {
    /// The command of this message.
    pub fn command(&self) -> Command {
        match self {
            Message::Version(_) => Command::Version,
            Message::Verack => Command::Verack,
            Message::Ping(_) => Command::Ping,
            Message::Pong(_) => Command::Pong,
            Message::Addr(_) => Command::Addr,
            Message::AddrV2(_) => Command::AddrV2,
            Message::GetAddr => Command::GetAddr,
            Message::Inv(_) => Command::Inv,
            Message::GetData(_) => Command::GetData,
            Message::NotFound(_) => Command::NotFound,
            Message::GetBlocks(_) => Command::GetBlocks,
            Message::GetHeaders(_) => Command::GetHeaders,
            Message::Headers(_) => Command::Headers,
            Message::Block(_) => Command::Block,
            Message::Tx(_) => Command::Tx,
            Message::Reject(_) => Command::Reject,
            Message::SendHeaders => Command::SendHeaders,
            Message::FeeFilter(_) => Command::FeeFilter,
            Message::MemPool => Command::MemPool,
            Message::FilterLoad(_) => Command::FilterLoad,
            Message::FilterAdd(_) => Command::FilterAdd,
            Message::FilterClear => Command::FilterClear,
            Message::MerkleBlock(_) => Command::MerkleBlock,
            Message::SendCmpct { .. } => Command::SendCmpct,
            Message::WtxidRelay => Command::WtxidRelay,
            Message::SendAddrV2 => Command::SendAddrV2,
        }
    }

    /// Appends the payload encoding for protocol version `pver` to `out`.
    ///
    /// Fails (leaving `out` unchanged) if the message does not exist at
    /// `pver` or breaks a count/size limit a conforming peer would enforce.
    pub fn encode_payload(&self, pver: u32, out: &mut Vec<u8>) -> Result<(), WireError> {
        let cmd = self.command();
        check_gate(cmd, pver)?;
        let start = out.len();
        let res = self
            .encode_body(pver, out)
            .and_then(|()| check_payload_len(cmd, out.len() - start, pver));
        if res.is_err() {
            out.truncate(start);
        }
        res
    }

    /// The payload encoding as a new vector.
    pub fn to_payload(&self, pver: u32) -> Result<Vec<u8>, WireError> {
        let mut out = Vec::new();
        self.encode_payload(pver, &mut out)?;
        Ok(out)
    }

    fn encode_body(&self, pv: u32, out: &mut Vec<u8>) -> Result<(), WireError> {
        match self {
            Message::Version(v) => v.encode(pv, out)?,
            Message::Ping(p) => {
                if pv > pver::BIP0031 {
                    out.extend_from_slice(&p.nonce.to_le_bytes());
                }
            }
            Message::Pong(n) => out.extend_from_slice(&n.to_le_bytes()),
            Message::Addr(list) => encode_addr(list, pv, out)?,
            Message::AddrV2(list) => encode_addrv2(list, out)?,
            Message::Inv(list) | Message::GetData(list) | Message::NotFound(list) => {
                encode_inv(list, out)?
            }
            Message::GetBlocks(m) | Message::GetHeaders(m) => m.encode(out)?,
            Message::Headers(list) => encode_headers(list, out)?,
            Message::Block(b) => out.extend_from_slice(b.as_bytes()),
            Message::Tx(t) => out.extend_from_slice(t.as_bytes()),
            Message::Reject(m) => m.encode(out)?,
            Message::FeeFilter(rate) => out.extend_from_slice(&rate.to_le_bytes()),
            Message::FilterLoad(m) => m.encode(out)?,
            Message::FilterAdd(data) => encode_filter_add(data, out)?,
            Message::MerkleBlock(m) => m.encode(out)?,
            Message::SendCmpct { announce, version } => {
                out.push(u8::from(*announce));
                out.extend_from_slice(&version.to_le_bytes());
            }
            Message::Verack
            | Message::GetAddr
            | Message::SendHeaders
            | Message::MemPool
            | Message::FilterClear
            | Message::WtxidRelay
            | Message::SendAddrV2 => {}
        }
        Ok(())
    }

    /// Decodes the payload of a `cmd` message at protocol version `pver`.
    ///
    /// The length is checked against [`max_payload_len`] before parsing, and
    /// the payload must be consumed exactly.
    pub fn decode_payload(cmd: Command, payload: &[u8], pver: u32) -> Result<Message, WireError> {
        Self::decode_with(cmd, payload, pver, || Bytes::copy_from_slice(payload))
    }

    /// Like [`decode_payload`](Self::decode_payload), but `tx`/`block`
    /// messages share `payload` instead of copying it.
    pub fn decode_payload_bytes(
        cmd: Command,
        payload: Bytes,
        pver: u32,
    ) -> Result<Message, WireError> {
        Self::decode_with(cmd, &payload, pver, || payload.clone())
    }

    fn decode_with(
        cmd: Command,
        payload: &[u8],
        pv: u32,
        owned: impl FnOnce() -> Bytes,
    ) -> Result<Message, WireError> {
        check_payload_len(cmd, payload.len(), pv)?;
        check_gate(cmd, pv)?;
        let mut r = Reader::new(payload);
        let msg = match cmd {
            Command::Version => Message::Version(MsgVersion::decode(&mut r)?),
            Command::Verack => Message::Verack,
            Command::Ping => Message::Ping(MsgPing {
                nonce: if pv > pver::BIP0031 { r.u64_le()? } else { 0 },
            }),
            Command::Pong => Message::Pong(r.u64_le()?),
            Command::Addr => Message::Addr(decode_addr(&mut r, pv)?),
            Command::AddrV2 => Message::AddrV2(decode_addrv2(&mut r)?),
            Command::GetAddr => Message::GetAddr,
            Command::Inv => Message::Inv(decode_inv(&mut r)?),
            Command::GetData => Message::GetData(decode_inv(&mut r)?),
            Command::NotFound => Message::NotFound(decode_inv(&mut r)?),
            Command::GetBlocks => Message::GetBlocks(MsgGetBlocks::decode(&mut r)?),
            Command::GetHeaders => Message::GetHeaders(MsgGetBlocks::decode(&mut r)?),
            Command::Headers => Message::Headers(decode_headers(&mut r)?),
            Command::Reject => Message::Reject(MsgReject::decode(&mut r)?),
            Command::SendHeaders => Message::SendHeaders,
            Command::FeeFilter => Message::FeeFilter(r.i64_le()?),
            Command::MemPool => Message::MemPool,
            Command::FilterLoad => Message::FilterLoad(MsgFilterLoad::decode(&mut r)?),
            Command::FilterAdd => Message::FilterAdd(decode_filter_add(&mut r)?),
            Command::FilterClear => Message::FilterClear,
            Command::MerkleBlock => Message::MerkleBlock(MsgMerkleBlock::decode(&mut r)?),
            Command::SendCmpct => Message::SendCmpct {
                announce: r.bool()?,
                version: r.u64_le()?,
            },
            Command::WtxidRelay => Message::WtxidRelay,
            Command::SendAddrV2 => Message::SendAddrV2,
            // Tx and Block validate their own bytes, including trailing data.
            Command::Tx => return Tx::from_bytes(owned()).map(Message::Tx),
            Command::Block => return Block::from_bytes(owned()).map(Message::Block),
        };
        r.finish()?;
        Ok(msg)
    }
}
