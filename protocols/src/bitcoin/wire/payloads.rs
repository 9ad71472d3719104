//! Payload structs of the messages that have more than one field.

use super::constants::pver;
use super::encoding::check_count;
use super::encoding::{check_len, put_compact_size, put_var_bytes, Reader};
use super::error::WireError;
use super::hash::Hash256;
use super::limits::{
    MAX_FILTER_ADD_DATA_SIZE, MAX_FILTER_LOAD_FILTER_SIZE, MAX_FILTER_LOAD_HASH_FUNCS,
    MAX_FLAGS_PER_MERKLE_BLOCK, MAX_LOCATOR_HASHES, MAX_PROTOCOL_MESSAGE_LENGTH, MAX_TX_PER_BLOCK,
    MAX_USER_AGENT_LEN,
};
use super::types::{BlockHeader, NetAddress};

/// `version`: the first message each side sends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MsgVersion {
    /// Highest protocol version the sender speaks. Signed as in Core and
    /// btcd, so a negative value is "too old" rather than "very new".
    pub version: i32,
    /// Sender's service flags.
    pub services: u64,
    /// Sender's clock, seconds since the Unix epoch.
    pub timestamp: i64,
    /// The receiver's address as the sender sees it.
    pub addr_recv: NetAddress,
    /// The sender's address (often all zeros). Optional on the wire.
    pub addr_from: NetAddress,
    /// Random nonce for self-connection detection. Optional on the wire.
    pub nonce: u64,
    /// BIP14 user agent, at most 256 bytes. Optional on the wire.
    pub user_agent: String,
    /// Sender's best block height. Optional on the wire.
    pub start_height: i32,
    /// BIP37: whether to relay transactions before a filter is loaded.
    /// Written only at protocol version >= 70001; `true` when absent.
    pub relay: bool,
}

impl MsgVersion {
    pub(crate) fn encode(&self, pv: u32, out: &mut Vec<u8>) -> Result<(), WireError> {
        check_len("user agent", self.user_agent.len(), MAX_USER_AGENT_LEN)?;
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.services.to_le_bytes());
        out.extend_from_slice(&self.timestamp.to_le_bytes());
        self.addr_recv.encode(out);
        self.addr_from.encode(out);
        out.extend_from_slice(&self.nonce.to_le_bytes());
        put_var_bytes(out, self.user_agent.as_bytes());
        out.extend_from_slice(&self.start_height.to_le_bytes());
        if pv >= pver::BIP0037 {
            out.push(u8::from(self.relay));
        }
        Ok(())
    }

    /// Like btcd and Core, every field after `addr_recv` is optional: a
    /// message may end at any field boundary and the rest take defaults.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let mut msg = MsgVersion {
            version: r.i32_le()?,
            services: r.u64_le()?,
            timestamp: r.i64_le()?,
            addr_recv: NetAddress::decode(r)?,
            addr_from: NetAddress::default(),
            nonce: 0,
            user_agent: String::new(),
            start_height: 0,
            relay: true,
        };
        if r.is_empty() {
            return Ok(msg);
        }
        msg.addr_from = NetAddress::decode(r)?;
        if r.is_empty() {
            return Ok(msg);
        }
        msg.nonce = r.u64_le()?;
        if r.is_empty() {
            return Ok(msg);
        }
        msg.user_agent = r.var_str("user agent", MAX_USER_AGENT_LEN)?;
        if r.is_empty() {
            return Ok(msg);
        }
        msg.start_height = r.i32_le()?;
        if r.is_empty() {
            return Ok(msg);
        }
        msg.relay = r.bool()?;
        Ok(msg)
    }
}

/// `ping`. Below BIP31 (protocol version <= 60000) the nonce is not sent and
/// decodes as 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MsgPing {
    /// Nonce the `pong` must echo.
    pub nonce: u64,
}

/// `getblocks` and `getheaders`: a block locator and a stop hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MsgGetBlocks {
    /// The sender's protocol version (a separate field on the wire).
    pub version: u32,
    /// Block locator hashes, newest first; at most 500.
    pub locator: Vec<Hash256>,
    /// Last block wanted, or zero for "as many as allowed".
    pub hash_stop: Hash256,
}

impl MsgGetBlocks {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        check_count("locator hashes", self.locator.len(), MAX_LOCATOR_HASHES)?;
        out.extend_from_slice(&self.version.to_le_bytes());
        put_compact_size(out, self.locator.len() as u64);
        for h in &self.locator {
            out.extend_from_slice(&h.0);
        }
        out.extend_from_slice(&self.hash_stop.0);
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let version = r.u32_le()?;
        let n = r.count("locator hashes", MAX_LOCATOR_HASHES, 32)?;
        let mut locator = Vec::with_capacity(n);
        for _ in 0..n {
            locator.push(Hash256(r.array()?));
        }
        Ok(MsgGetBlocks {
            version,
            locator,
            hash_stop: Hash256(r.array()?),
        })
    }
}

/// `reject` (BIP61, deprecated but still spoken by btcd).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MsgReject {
    /// Command of the rejected message.
    pub message: String,
    /// Reject code (see [`reject_code`](super::constants::reject_code)).
    pub code: u8,
    /// Human-readable reason.
    pub reason: String,
    /// Hash of the rejected object. On the wire only when `message` is
    /// `"tx"` or `"block"` (then zero if `None`); decoded as `Some` exactly then.
    pub hash: Option<Hash256>,
}

impl MsgReject {
    fn carries_hash(message: &str) -> bool {
        message == "tx" || message == "block"
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        put_var_bytes(out, self.message.as_bytes());
        out.push(self.code);
        put_var_bytes(out, self.reason.as_bytes());
        if Self::carries_hash(&self.message) {
            out.extend_from_slice(&self.hash.unwrap_or_default().0);
        }
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let message = r.var_str("reject message", MAX_PROTOCOL_MESSAGE_LENGTH)?;
        let code = r.u8()?;
        let reason = r.var_str("reject reason", MAX_PROTOCOL_MESSAGE_LENGTH)?;
        let hash = if Self::carries_hash(&message) {
            Some(Hash256(r.array()?))
        } else {
            None
        };
        Ok(MsgReject {
            message,
            code,
            reason,
            hash,
        })
    }
}

/// `filterload` (BIP37).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MsgFilterLoad {
    /// The bloom filter bit field, at most 36,000 bytes.
    pub filter: Vec<u8>,
    /// Number of hash functions, at most 50.
    pub hash_funcs: u32,
    /// Random tweak added to the hash seeds.
    pub tweak: u32,
    /// Update flags (`BLOOM_UPDATE_*`), kept as sent.
    pub flags: u8,
}

impl MsgFilterLoad {
    fn check_hash_funcs(n: u32) -> Result<(), WireError> {
        if n > MAX_FILTER_LOAD_HASH_FUNCS {
            return Err(WireError::ValueOutOfRange {
                what: "filterload hash functions",
                value: u64::from(n),
                max: u64::from(MAX_FILTER_LOAD_HASH_FUNCS),
            });
        }
        Ok(())
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        check_len(
            "bloom filter",
            self.filter.len(),
            MAX_FILTER_LOAD_FILTER_SIZE,
        )?;
        Self::check_hash_funcs(self.hash_funcs)?;
        put_var_bytes(out, &self.filter);
        out.extend_from_slice(&self.hash_funcs.to_le_bytes());
        out.extend_from_slice(&self.tweak.to_le_bytes());
        out.push(self.flags);
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let filter = r
            .var_bytes("bloom filter", MAX_FILTER_LOAD_FILTER_SIZE)?
            .to_vec();
        let hash_funcs = r.u32_le()?;
        Self::check_hash_funcs(hash_funcs)?;
        Ok(MsgFilterLoad {
            filter,
            hash_funcs,
            tweak: r.u32_le()?,
            flags: r.u8()?,
        })
    }
}

/// `filteradd` data is a single element of at most 520 bytes.
pub(crate) fn encode_filter_add(data: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
    check_len("filteradd data", data.len(), MAX_FILTER_ADD_DATA_SIZE)?;
    put_var_bytes(out, data);
    Ok(())
}

/// Decodes the single `filteradd` element.
pub(crate) fn decode_filter_add(r: &mut Reader<'_>) -> Result<Vec<u8>, WireError> {
    Ok(r.var_bytes("filteradd data", MAX_FILTER_ADD_DATA_SIZE)?
        .to_vec())
}

/// `merkleblock` (BIP37): a header plus a partial merkle tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MsgMerkleBlock {
    /// The block header.
    pub header: BlockHeader,
    /// Number of transactions in the full block.
    pub total_txs: u32,
    /// Hashes of the partial merkle tree, depth-first.
    pub hashes: Vec<Hash256>,
    /// Flag bits of the partial merkle tree, packed LSB first.
    pub flags: Vec<u8>,
}

impl MsgMerkleBlock {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        check_count("merkle hashes", self.hashes.len(), MAX_TX_PER_BLOCK)?;
        check_len("merkle flags", self.flags.len(), MAX_FLAGS_PER_MERKLE_BLOCK)?;
        self.header.encode(out);
        out.extend_from_slice(&self.total_txs.to_le_bytes());
        put_compact_size(out, self.hashes.len() as u64);
        for h in &self.hashes {
            out.extend_from_slice(&h.0);
        }
        put_var_bytes(out, &self.flags);
        Ok(())
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let header = BlockHeader::decode(r)?;
        let total_txs = r.u32_le()?;
        let n = r.count("merkle hashes", MAX_TX_PER_BLOCK, 32)?;
        let mut hashes = Vec::with_capacity(n);
        for _ in 0..n {
            hashes.push(Hash256(r.array()?));
        }
        let flags = r
            .var_bytes("merkle flags", MAX_FLAGS_PER_MERKLE_BLOCK)?
            .to_vec();
        Ok(MsgMerkleBlock {
            header,
            total_txs,
            hashes,
            flags,
        })
    }
}
