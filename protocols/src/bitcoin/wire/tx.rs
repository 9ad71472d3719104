//! Transactions and blocks, kept as validated bytes.
//!
//! The codec does not model scripts or amounts: a [`Tx`] is its exact wire
//! bytes plus the one offset needed to hash its non-witness serialization.
//! Parsing walks the structure (BIP144 rules as in Core's
//! `UnserializeTransaction`) so that malformed data is rejected and every
//! count is bounded by the bytes actually present.

use bytes::Bytes;

use super::encoding::{put_compact_size, Reader};
use super::error::WireError;
use super::hash::Hash256;
use super::types::BlockHeader;

/// Core's `MAX_SIZE`: the largest count/length its deserializer accepts.
const MAX_SIZE: usize = 0x0200_0000;
/// Smallest input: outpoint (36) + empty script length (1) + sequence (4).
const MIN_TXIN_LEN: usize = 41;
/// Smallest output: value (8) + empty script length (1).
const MIN_TXOUT_LEN: usize = 9;
/// Smallest transaction: version, two empty counts, lock time.
pub(crate) const MIN_TX_LEN: usize = 10;
/// Most transactions a maximum-size block payload could hold.
const MAX_TX_PER_BLOCK: usize = 4_000_000 / MIN_TX_LEN;

fn malformed(reason: &'static str) -> WireError {
    WireError::Malformed { what: "tx", reason }
}

/// Where the parts of one serialized transaction lie, relative to its start.
struct TxLayout {
    /// Total serialized length.
    len: usize,
    /// End of the outputs when the witness serialization is used.
    witness_io_end: Option<usize>,
}

fn skip_inputs(r: &mut Reader<'_>, count: usize) -> Result<(), WireError> {
    for _ in 0..count {
        r.take(36)?;
        r.var_bytes("scriptSig", MAX_SIZE)?;
        r.take(4)?;
    }
    Ok(())
}

fn skip_outputs(r: &mut Reader<'_>) -> Result<(), WireError> {
    let count = r.count("tx outputs", MAX_SIZE, MIN_TXOUT_LEN)?;
    for _ in 0..count {
        r.take(8)?;
        r.var_bytes("scriptPubKey", MAX_SIZE)?;
    }
    Ok(())
}

/// Walks one transaction starting at the reader's position.
fn parse_tx(r: &mut Reader<'_>) -> Result<TxLayout, WireError> {
    let start = r.position();
    r.take(4)?; // version
    let mut n_in = r.count("tx inputs", MAX_SIZE, MIN_TXIN_LEN)?;
    let mut witness = false;
    if n_in == 0 {
        // Either the BIP144 marker (0x00) followed by the flag, or a
        // transaction with no inputs; Core treats flag 0 as the latter.
        match r.u8()? {
            0 => {}
            1 => {
                witness = true;
                n_in = r.count("tx inputs", MAX_SIZE, MIN_TXIN_LEN)?;
                skip_inputs(r, n_in)?;
                skip_outputs(r)?;
            }
            _ => return Err(malformed("unknown optional data flag")),
        }
    } else {
        skip_inputs(r, n_in)?;
        skip_outputs(r)?;
    }
    let io_end = r.position().saturating_sub(start);
    if witness {
        let mut any_witness = false;
        for _ in 0..n_in {
            let items = r.count("witness items", MAX_SIZE, 1)?;
            any_witness |= items > 0;
            for _ in 0..items {
                r.var_bytes("witness item", MAX_SIZE)?;
            }
        }
        if !any_witness {
            return Err(malformed("superfluous witness record"));
        }
    }
    r.take(4)?; // lock time
    Ok(TxLayout {
        len: r.position().saturating_sub(start),
        witness_io_end: witness.then_some(io_end),
    })
}

/// A transaction: its exact wire bytes, structurally validated.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tx {
    raw: Bytes,
    /// `Some(end of outputs)` for the BIP144 witness serialization.
    witness_io_end: Option<usize>,
}

impl Tx {
    /// Validates `raw` as exactly one serialized transaction.
    pub fn from_bytes(raw: Bytes) -> Result<Tx, WireError> {
        let mut r = Reader::new(&raw);
        let layout = parse_tx(&mut r)?;
        r.finish()?;
        Ok(Tx {
            witness_io_end: layout.witness_io_end,
            raw,
        })
    }

    /// The wire bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.raw
    }

    /// Serialized length in bytes.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Always false: a valid transaction is at least 10 bytes.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// Whether the bytes use the BIP144 witness serialization.
    pub fn has_witness(&self) -> bool {
        self.witness_io_end.is_some()
    }

    /// The parts of the non-witness serialization: version, inputs and
    /// outputs, lock time. Parsing guaranteed these ranges exist.
    fn base_parts(&self) -> [&[u8]; 3] {
        match self.witness_io_end {
            None => [&self.raw[..], &[], &[]],
            Some(io_end) => {
                let lock = self.raw.len() - 4;
                // Skip the 2-byte marker and flag after the version.
                [&self.raw[..4], &self.raw[6..io_end], &self.raw[lock..]]
            }
        }
    }

    /// The transaction id: double SHA-256 of the non-witness serialization.
    pub fn txid(&self) -> Hash256 {
        Hash256::hash_parts(&self.base_parts())
    }

    /// The witness transaction id (BIP141); equals [`txid`](Self::txid)
    /// without witness data.
    pub fn wtxid(&self) -> Hash256 {
        Hash256::hash(&self.raw)
    }

    /// The non-witness serialization, for peers that did not ask for witnesses.
    pub fn to_base_bytes(&self) -> Bytes {
        match self.witness_io_end {
            None => self.raw.clone(),
            Some(_) => Bytes::from(self.base_parts().concat()),
        }
    }

    /// The same transaction in a fresh allocation of exactly its length. A parsed
    /// transaction may share (and so keep alive) a much larger buffer, e.g. the block or
    /// read buffer it came from; keep the detached copy when storing it for long.
    pub fn detached(&self) -> Tx {
        Tx {
            raw: Bytes::copy_from_slice(&self.raw),
            witness_io_end: self.witness_io_end,
        }
    }
}

/// A block: its exact wire bytes, header and transactions (sharing the bytes).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Block {
    raw: Bytes,
    header: BlockHeader,
    txs: Vec<Tx>,
}

impl Block {
    /// Validates `raw` as exactly one serialized block.
    pub fn from_bytes(raw: Bytes) -> Result<Block, WireError> {
        let mut r = Reader::new(&raw);
        let header = BlockHeader::decode(&mut r)?;
        let count = r.count("block transactions", MAX_TX_PER_BLOCK, MIN_TX_LEN)?;
        // `count` is bounded by the bytes present, so this cannot be inflated
        // by a peer beyond ~1/10 of the payload size.
        let mut txs = Vec::with_capacity(count);
        for _ in 0..count {
            let start = r.position();
            let layout = parse_tx(&mut r)?;
            txs.push(Tx {
                raw: raw.slice(start..start + layout.len),
                witness_io_end: layout.witness_io_end,
            });
        }
        r.finish()?;
        Ok(Block { raw, header, txs })
    }

    /// The wire bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.raw
    }

    /// The header.
    pub fn header(&self) -> &BlockHeader {
        &self.header
    }

    /// The transactions, in block order.
    pub fn txs(&self) -> &[Tx] {
        &self.txs
    }

    /// The block hash: double SHA-256 of the 80-byte header.
    pub fn hash(&self) -> Hash256 {
        Hash256::hash(&self.raw[..BlockHeader::LEN])
    }

    /// The txids of all transactions, in block order.
    pub fn txids(&self) -> Vec<Hash256> {
        self.txs.iter().map(Tx::txid).collect()
    }

    /// Whether any transaction uses the BIP144 witness serialization.
    pub fn has_witness(&self) -> bool {
        self.txs.iter().any(Tx::has_witness)
    }

    /// The block without witness data (Core's `TX_NO_WITNESS`, btcd's base encoding),
    /// which is what a `getdata` of `MSG_BLOCK` must be answered with. The exact bytes
    /// when no transaction carries a witness.
    pub fn to_base_bytes(&self) -> Bytes {
        if !self.has_witness() {
            return self.raw.clone();
        }
        let mut out = Vec::with_capacity(self.raw.len());
        out.extend_from_slice(&self.raw[..BlockHeader::LEN]);
        put_compact_size(&mut out, self.txs.len() as u64);
        for tx in &self.txs {
            for part in tx.base_parts() {
                out.extend_from_slice(part);
            }
        }
        Bytes::from(out)
    }

    /// The block without witness data, as a [`Block`] (see
    /// [`to_base_bytes`](Self::to_base_bytes)).
    pub fn without_witness(&self) -> Block {
        if !self.has_witness() {
            return self.clone();
        }
        // Stripping keeps every transaction well formed, so this parses.
        Block::from_bytes(self.to_base_bytes()).unwrap_or_else(|_| self.clone())
    }

    /// The same block in a fresh allocation of exactly its length (see
    /// [`Tx::detached`]).
    pub fn detached(&self) -> Block {
        let raw = Bytes::copy_from_slice(&self.raw);
        // The transactions fill the end of the block, back to back.
        let total: usize = self.txs.iter().map(Tx::len).sum();
        let mut pos = raw.len() - total;
        let txs = self
            .txs
            .iter()
            .map(|tx| {
                let start = pos;
                pos += tx.len();
                Tx {
                    raw: raw.slice(start..pos),
                    witness_io_end: tx.witness_io_end,
                }
            })
            .collect();
        Block {
            raw,
            header: self.header,
            txs,
        }
    }
}
