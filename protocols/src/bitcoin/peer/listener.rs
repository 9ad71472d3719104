//! Callbacks for every message, run serially on the peer's task.
//!
//! Callbacks must not block. Reading, writing, pings and the stall ticker of one peer run
//! in one task, so a callback that blocks pauses all of them for that peer (time spent in
//! callbacks is excluded from stall deadlines, so the peer is not punished for it), and
//! waiting on the same peer (e.g. for its disconnect) from a callback would deadlock it.
//! Answer with [`Peer::try_queue_message`]; hand longer work to another task through a
//! bounded channel (`try_send`), as `examples/btc_relay/` does.

use super::Peer;
use crate::bitcoin::wire::{
    AddrV2Entry, Block, BlockHeader, InvVect, Message, MsgFilterLoad, MsgGetBlocks, MsgMerkleBlock,
    MsgPing, MsgReject, MsgVersion, TimedNetAddress, Tx,
};

/// Per-message callbacks (btcd's `MessageListeners`). Every method has a no-op default.
#[allow(unused_variables)]
pub trait Listener: Send + Sync + 'static {
    /// The remote's `version` (handshake only). Returning a reject sends it (if the
    /// negotiated version can carry it) and fails the handshake.
    fn on_version(&self, peer: &Peer, msg: &MsgVersion) -> Option<MsgReject> {
        None
    }
    /// The remote's `verack` (handshake only).
    fn on_verack(&self, peer: &Peer) {}
    /// The remote's `sendaddrv2` (handshake only).
    fn on_send_addr_v2(&self, peer: &Peer) {}
    /// The remote's `wtxidrelay` (handshake only).
    fn on_wtxid_relay(&self, peer: &Peer) {}
    /// `getaddr`.
    fn on_get_addr(&self, peer: &Peer) {}
    /// `addr`.
    fn on_addr(&self, peer: &Peer, addrs: &[TimedNetAddress]) {}
    /// `addrv2`.
    fn on_addr_v2(&self, peer: &Peer, addrs: &[AddrV2Entry]) {}
    /// `ping` (after the peer has answered it with `pong`).
    fn on_ping(&self, peer: &Peer, msg: &MsgPing) {}
    /// `pong` (after ping statistics were updated).
    fn on_pong(&self, peer: &Peer, nonce: u64) {}
    /// `mempool`.
    fn on_mem_pool(&self, peer: &Peer) {}
    /// `tx`.
    fn on_tx(&self, peer: &Peer, tx: &Tx) {}
    /// `block` (the raw bytes are `block.as_bytes()`).
    fn on_block(&self, peer: &Peer, block: &Block) {}
    /// `inv`.
    fn on_inv(&self, peer: &Peer, inv: &[InvVect]) {}
    /// `headers`.
    fn on_headers(&self, peer: &Peer, headers: &[BlockHeader]) {}
    /// `notfound`.
    fn on_not_found(&self, peer: &Peer, inv: &[InvVect]) {}
    /// `getdata`.
    fn on_get_data(&self, peer: &Peer, inv: &[InvVect]) {}
    /// `getblocks`.
    fn on_get_blocks(&self, peer: &Peer, msg: &MsgGetBlocks) {}
    /// `getheaders`.
    fn on_get_headers(&self, peer: &Peer, msg: &MsgGetBlocks) {}
    /// `feefilter` (sat/kvB, unchecked).
    fn on_fee_filter(&self, peer: &Peer, rate: i64) {}
    /// `filteradd` (only when we offer NODE_BLOOM; otherwise the peer disconnects).
    fn on_filter_add(&self, peer: &Peer, data: &[u8]) {}
    /// `filterclear` (only when we offer NODE_BLOOM).
    fn on_filter_clear(&self, peer: &Peer) {}
    /// `filterload` (only when we offer NODE_BLOOM).
    fn on_filter_load(&self, peer: &Peer, msg: &MsgFilterLoad) {}
    /// `merkleblock`.
    fn on_merkle_block(&self, peer: &Peer, msg: &MsgMerkleBlock) {}
    /// `reject`.
    fn on_reject(&self, peer: &Peer, msg: &MsgReject) {}
    /// `sendheaders` (after `wants_headers` was set).
    fn on_send_headers(&self, peer: &Peer) {}
    /// `sendcmpct` (BIP152; the peer does not implement compact blocks itself).
    fn on_send_cmpct(&self, peer: &Peer, announce: bool, version: u64) {}
    /// Every read attempt: bytes consumed, the message (None for an unknown command or an
    /// error) and the error text, if any.
    fn on_read(&self, peer: &Peer, bytes: usize, msg: Option<&Message>, error: Option<&str>) {}
    /// Every write attempt: bytes written, the message and the error text, if any.
    fn on_write(&self, peer: &Peer, bytes: usize, msg: &Message, error: Option<&str>) {}
}

/// A listener that does nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopListener;

impl Listener for NoopListener {}
