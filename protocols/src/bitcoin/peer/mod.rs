//! A btcd-grade bitcoin peer, written once against [`Transport`] and run over native
//! bitcoin TCP ([`NativeTransport`]) or the `btc` capability of a braid link
//! ([`braid::protocol`]).
//!
//! Behaviour follows btcd's `peer` package (handshake order, negotiated version = min of
//! both, self-connection nonces, FIFO queue with one message in flight, 10 s inventory
//! trickle, 2 min pings, 5 min idle timeout, stall detection, duplicate-request filtering),
//! except where btcd has known defects, which are fixed here:
//! known inventory is keyed by value, the addrv2 shuffle is a real shuffle, rejects that
//! the remote's version cannot carry are not attempted, the "not a version" reject names
//! the offending command, [`StatsSnapshot`] carries both advertised and negotiated versions,
//! [`Peer::services`] is 0 until the remote's version arrives, [`Peer::wait_for_disconnect`]
//! returns only after the peer's tasks ended, and callback time is excluded from stall
//! deadlines cumulatively.
//!
//! Every queue is bounded ([`OUTPUT_BUFFER_SIZE`] messages and inventory items, plus at
//! most [`MAX_TRICKLE_QUEUE`] items awaiting the trickle) and every wait has a deadline.

pub mod braid;
mod config;
mod error;
mod handshake;
mod listener;
mod lru;
mod native;
mod push;
mod queue;
mod reader;
mod stall;
mod stats;
mod transport;
pub mod v2;
mod writer;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use config::{
    Config, NewestBlockFn, DEFAULT_IDLE_TIMEOUT, DEFAULT_NEGOTIATE_TIMEOUT, DEFAULT_PING_INTERVAL,
    DEFAULT_STALL_RESPONSE, DEFAULT_STALL_TICK, DEFAULT_TRICKLE_INTERVAL,
    MIN_ACCEPTABLE_PROTOCOL_VERSION, USER_AGENT_PREFIX,
};
pub use error::{PeerError, WriteFailure};
pub use listener::{Listener, NoopListener};
pub use lru::{LruSet, SENT_NONCES_CAPACITY};
pub use native::{NativeReader, NativeTransport, NativeWriter};
pub use push::PushError;
pub use queue::{SendOutcome, OUTPUT_BUFFER_SIZE};
pub use stats::StatsSnapshot;
pub use transport::{
    Inbound, LinkClosed, Received, RecvError, SendError, Transport, TransportReader,
    TransportWriter,
};
pub use v2::{
    accept_auto, connect_auto, detect_inbound, AutoTransport, V2HandshakeError, V2Transport,
};
pub use writer::{MAX_INV_TRICKLE_SIZE, MAX_TRICKLE_QUEUE};

use crate::bitcoin::wire::{inv_type, BlockHeader, Hash256, InvVect, Message, NetAddress};
use queue::{Done, Outgoing, Queues};
use stall::StallState;
use stats::State;

/// btcd `maxKnownInventory`.
pub const MAX_KNOWN_INVENTORY: usize = 1000;

/// Process-wide peer id counter (ids are assigned when the remote's version arrives).
static NODE_COUNT: AtomicU64 = AtomicU64::new(0);

struct Inner {
    cfg: Config,
    inbound: bool,
    cancel: CancellationToken,
    state: Mutex<State>,
    known: Mutex<LruSet<InvVect>>,
    stall: Mutex<StallState>,
    out_tx: mpsc::Sender<Outgoing>,
    inv_tx: mpsc::Sender<InvVect>,
    queues: Mutex<Option<Queues>>,
    finished: watch::Sender<bool>,
}

/// A handle to one bitcoin peer; cheap to clone.
#[derive(Clone)]
pub struct Peer {
    inner: Arc<Inner>,
}

/// Locks `m`, recovering the data if a panicking thread poisoned it (our critical sections
/// never leave the state half-updated).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = if self.inner.inbound {
            "inbound"
        } else {
            "outbound"
        };
        write!(f, "{} ({dir})", self.addr())
    }
}

impl fmt::Debug for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Peer({self})")
    }
}

impl Peer {
    fn new(cfg: Config, inbound: bool, addr: Option<SocketAddr>) -> Peer {
        let cfg = cfg.normalized();
        let (out_tx, out) = mpsc::channel(OUTPUT_BUFFER_SIZE);
        let (inv_tx, inv) = mpsc::channel(OUTPUT_BUFFER_SIZE);
        let state = State {
            addr,
            na: addr.map(|a| NetAddress::from_socket_addr(a, 0)),
            protocol_version: cfg.protocol_version,
            ..State::default()
        };
        Peer {
            inner: Arc::new(Inner {
                cfg,
                inbound,
                cancel: CancellationToken::new(),
                state: Mutex::new(state),
                known: Mutex::new(LruSet::new(MAX_KNOWN_INVENTORY)),
                stall: Mutex::new(StallState::default()),
                out_tx,
                inv_tx,
                queues: Mutex::new(Some(Queues { out, inv })),
                finished: watch::channel(false).0,
            }),
        }
    }

    /// A peer that will accept a connection (it waits for the remote's version).
    pub fn new_inbound(cfg: Config) -> Peer {
        Peer::new(cfg, true, None)
    }

    /// A peer that dials `addr` (it sends its version first).
    pub fn new_outbound(cfg: Config, addr: SocketAddr) -> Peer {
        Peer::new(cfg, false, Some(addr))
    }

    /// Create an inbound peer on `transport` and start it.
    pub fn start_inbound<T: Transport>(cfg: Config, transport: T) -> Peer {
        let peer = Peer::new(cfg, true, transport.remote_addr());
        peer.associate(transport);
        peer
    }

    /// Create an outbound peer on `transport` and start it.
    pub fn start_outbound<T: Transport>(cfg: Config, transport: T) -> Peer {
        let peer = Peer::new(cfg, false, transport.remote_addr());
        peer.associate(transport);
        peer
    }

    /// Attach the connection and start the handshake. A second call is ignored (the extra
    /// transport is dropped, i.e. closed); a call after [`disconnect`](Self::disconnect)
    /// closes the transport. Must be called within a tokio runtime.
    pub fn associate<T: Transport>(&self, transport: T) {
        let mut st = lock(&self.inner.state);
        if st.associated {
            tracing::debug!(peer = %self.addr_of(&st), "already associated; closing the extra transport");
            return;
        }
        if self.inner.cancel.is_cancelled() {
            tracing::debug!("peer already disconnected; closing the transport");
            return;
        }
        st.associated = true;
        st.time_connected = Some(SystemTime::now());
        if self.inner.inbound || st.addr.is_none() {
            st.addr = transport.remote_addr();
            st.na = st.addr.map(|a| NetAddress::from_socket_addr(a, 0));
        }
        let queues = lock(&self.inner.queues).take();
        let span = tracing::info_span!("btc_peer", peer = %self.addr_of(&st), inbound = self.inner.inbound);
        drop(st);
        let Some(queues) = queues else {
            return;
        };
        tokio::spawn(writer::run(self.clone(), transport, queues).instrument(span));
    }

    fn addr_of(&self, st: &State) -> String {
        st.addr.map(|a| a.to_string()).unwrap_or_default()
    }

    /// Record why the peer ends (the first reason wins) and stop it. Idempotent.
    pub(crate) fn close(&self, reason: PeerError) {
        let mut st = lock(&self.inner.state);
        if st.close_reason.is_none() {
            tracing::debug!(%reason, "disconnecting");
            st.close_reason = Some(reason);
        }
        // Cancel under the lock so `associate` cannot start a run after this.
        self.inner.cancel.cancel();
        if !st.associated {
            self.inner.finished.send_replace(true);
        }
    }

    pub(crate) fn mark_finished(&self) {
        self.inner.finished.send_replace(true);
    }

    /// Disconnect: close the connection and stop every task. Idempotent; safe before
    /// [`associate`](Self::associate).
    pub fn disconnect(&self) {
        self.close(PeerError::Disconnected);
    }

    /// Wait until the peer has disconnected and all its tasks have ended.
    pub async fn wait_for_disconnect(&self) {
        let mut rx = self.inner.finished.subscribe();
        // The sender lives in `inner`, which we hold, so this cannot fail.
        let _ = rx.wait_for(|done| *done).await;
    }

    /// Whether the peer has finished (disconnected and its tasks ended).
    pub fn is_done(&self) -> bool {
        *self.inner.finished.borrow()
    }

    /// Why the peer ended, once it has.
    pub fn close_reason(&self) -> Option<PeerError> {
        lock(&self.inner.state).close_reason.clone()
    }

    /// Associated and not disconnecting.
    pub fn connected(&self) -> bool {
        lock(&self.inner.state).associated && !self.inner.cancel.is_cancelled()
    }

    pub(crate) fn config(&self) -> &Config {
        &self.inner.cfg
    }

    pub(crate) fn cancel_token(&self) -> &CancellationToken {
        &self.inner.cancel
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    pub(crate) fn stall(&self) -> MutexGuard<'_, StallState> {
        lock(&self.inner.stall)
    }

    pub(crate) fn known(&self) -> MutexGuard<'_, LruSet<InvVect>> {
        lock(&self.inner.known)
    }

    pub(crate) fn next_id() -> u64 {
        NODE_COUNT.fetch_add(1, Ordering::Relaxed) + 1
    }

    // ---- queueing -------------------------------------------------------------------

    /// Queue `msg` for sending (FIFO, one message in flight). Waits for room in the
    /// 50-slot queue for at most the configured queue timeout. `done`, if given, receives
    /// exactly one [`SendOutcome`]: sent, failed, or dropped (not connected, timed out,
    /// drained at shutdown).
    pub async fn queue_message(&self, msg: Message, done: Option<oneshot::Sender<SendOutcome>>) {
        let item = Outgoing {
            msg,
            done: Done::new(done),
        };
        if !self.connected() {
            tracing::trace!(command = %item.msg.command(), "not connected; dropping message");
            return;
        }
        let timeout = self.inner.cfg.queue_timeout;
        tokio::select! {
            biased;
            _ = self.inner.cancel.cancelled() => {}
            res = tokio::time::timeout(timeout, self.inner.out_tx.send(item)) => {
                if res.is_err() {
                    tracing::debug!("send queue full for {timeout:?}; dropping message");
                }
            }
        }
    }

    /// Queue `msg` and return the receiver of its [`SendOutcome`].
    pub async fn queue_message_notify(&self, msg: Message) -> oneshot::Receiver<SendOutcome> {
        let (tx, rx) = oneshot::channel();
        self.queue_message(msg, Some(tx)).await;
        rx
    }

    /// Queue `msg` without waiting (for listener callbacks). Returns false, and reports
    /// [`SendOutcome::Dropped`] to `done`, if not connected or the queue is full.
    pub fn try_queue_message(
        &self,
        msg: Message,
        done: Option<oneshot::Sender<SendOutcome>>,
    ) -> bool {
        let item = Outgoing {
            msg,
            done: Done::new(done),
        };
        if !self.connected() {
            return false;
        }
        self.inner.out_tx.try_send(item).is_ok()
    }

    /// Queue an inventory item for the next trickle. Ignored if the item is known to the
    /// remote (see [`add_known_inventory`](Self::add_known_inventory)) or the peer is not
    /// connected. Block inventory bypasses the trickle.
    pub async fn queue_inventory(&self, iv: InvVect) {
        if self.known().contains(&iv) || !self.connected() {
            return;
        }
        let timeout = self.inner.cfg.queue_timeout;
        tokio::select! {
            biased;
            _ = self.inner.cancel.cancelled() => {}
            res = tokio::time::timeout(timeout, self.inner.inv_tx.send(iv)) => {
                if res.is_err() {
                    tracing::debug!("inventory queue full for {timeout:?}; dropping item");
                }
            }
        }
    }

    /// Queue an inventory item for the next trickle without waiting (for code that must
    /// not block on one slow peer). Returns false if the inventory queue is full or the
    /// peer is not connected; true also when the item is skipped as known.
    pub fn try_queue_inventory(&self, iv: InvVect) -> bool {
        if !self.connected() {
            return false;
        }
        if self.known().contains(&iv) {
            return true;
        }
        self.inner.inv_tx.try_send(iv).is_ok()
    }

    /// Announce a new block without waiting, the way the remote asked for: by `headers`
    /// (the block's header alone) when it sent BIP130 `sendheaders`, by `inv` otherwise.
    /// Either way the block becomes known inventory, so it is announced once. Returns false
    /// if the peer is not connected or the queue is full; true also when the block is
    /// skipped as known.
    ///
    /// Bitcoin Core announces by `headers` only when the remote is known to have the
    /// parent; a peer without chain state cannot know that, so the remote may answer a
    /// header it cannot connect with `getheaders`.
    pub fn try_announce_block(&self, header: &BlockHeader) -> bool {
        let iv = InvVect {
            inv_type: inv_type::BLOCK,
            hash: header.hash(),
        };
        if !self.connected() {
            return false;
        }
        if self.known().contains(&iv) {
            return true;
        }
        // Block inventory skips the trickle, which is what marks trickled items known.
        let queued = if self.wants_headers() {
            self.try_queue_message(Message::Headers(vec![*header]), None)
        } else {
            self.inner.inv_tx.try_send(iv).is_ok()
        };
        if queued {
            self.known().insert(iv);
        }
        queued
    }

    /// Mark `iv` as known to the remote, so it is not announced to it.
    pub fn add_known_inventory(&self, iv: InvVect) {
        self.known().insert(iv);
    }

    /// Whether `iv` is in the known-inventory cache (a hit counts as a use of the entry).
    pub fn is_known_inventory(&self, iv: &InvVect) -> bool {
        self.known().contains(iv)
    }

    // ---- accessors --------------------------------------------------------------------

    /// Process-unique id (0 until the remote's version arrived).
    pub fn id(&self) -> u64 {
        self.state().id
    }

    /// Remote address as `host:port` (empty if unknown).
    pub fn addr(&self) -> String {
        let st = self.state();
        self.addr_of(&st)
    }

    /// Remote socket address, if known.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.state().addr
    }

    /// The remote's network address as used in our version.
    pub fn na(&self) -> Option<NetAddress> {
        self.state().na
    }

    /// Whether the remote dialed us.
    pub fn inbound(&self) -> bool {
        self.inner.inbound
    }

    /// Remote service flags (0 until its version arrived).
    pub fn services(&self) -> u64 {
        self.state().services
    }

    /// Remote user agent.
    pub fn user_agent(&self) -> String {
        self.state().user_agent.clone()
    }

    /// Last block the remote announced (set by the application).
    pub fn last_announced_block(&self) -> Option<Hash256> {
        self.state().last_announced_block
    }

    /// Record the last block the remote announced.
    pub fn update_last_announced_block(&self, hash: Hash256) {
        self.state().last_announced_block = Some(hash);
    }

    /// Nonce of the outstanding ping (0 if none).
    pub fn last_ping_nonce(&self) -> u64 {
        self.state().last_ping_nonce
    }

    /// When the last tracked ping was written.
    pub fn last_ping_time(&self) -> Option<SystemTime> {
        self.state().last_ping_time
    }

    /// Round trip of the last answered ping in microseconds.
    pub fn last_ping_micros(&self) -> i64 {
        self.state().last_ping_micros
    }

    /// Whether the remote's version arrived.
    pub fn version_known(&self) -> bool {
        self.state().version_known
    }

    /// Whether the remote's verack arrived.
    pub fn verack_received(&self) -> bool {
        self.state().verack_received
    }

    /// The negotiated protocol version (ours until the remote's version arrived).
    pub fn protocol_version(&self) -> u32 {
        self.state().protocol_version
    }

    /// The protocol version the remote advertised.
    pub fn advertised_protocol_version(&self) -> u32 {
        self.state().advertised_version
    }

    /// The remote's best known height.
    pub fn last_block(&self) -> i32 {
        self.state().last_block
    }

    /// Raise the remote's best known height (never lowers it).
    pub fn update_last_block_height(&self, height: i32) {
        let mut st = self.state();
        if height > st.last_block {
            st.last_block = height;
        }
    }

    /// When we last wrote a queued message.
    pub fn last_send(&self) -> Option<SystemTime> {
        self.state().last_send
    }

    /// When we last received a message after the handshake.
    pub fn last_recv(&self) -> Option<SystemTime> {
        self.state().last_recv
    }

    /// Bytes written, handshake included.
    pub fn bytes_sent(&self) -> u64 {
        self.state().bytes_sent
    }

    /// Bytes read, handshake included.
    pub fn bytes_received(&self) -> u64 {
        self.state().bytes_recv
    }

    /// When the transport was associated.
    pub fn time_connected(&self) -> Option<SystemTime> {
        self.state().time_connected
    }

    /// Remote clock minus ours, in seconds.
    pub fn time_offset(&self) -> i64 {
        self.state().time_offset
    }

    /// Height the remote announced in its version.
    pub fn starting_height(&self) -> i32 {
        self.state().starting_height
    }

    /// Whether the remote sent BIP130 `sendheaders`: it prefers new blocks announced by
    /// `headers` rather than `inv` (see [`try_announce_block`](Self::try_announce_block)).
    pub fn wants_headers(&self) -> bool {
        self.state().wants_headers
    }

    /// Whether we sent BIP130 `sendheaders` after the handshake (per
    /// [`Config::send_headers`], at version >= 70012).
    pub fn sent_send_headers(&self) -> bool {
        self.state().sent_send_headers
    }

    /// Whether the remote advertised NODE_WITNESS.
    pub fn is_witness_enabled(&self) -> bool {
        self.state().witness_enabled
    }

    /// Whether the remote sent `sendaddrv2` during the handshake.
    pub fn wants_addr_v2(&self) -> bool {
        self.state().wants_addr_v2
    }

    /// Whether the remote sent `wtxidrelay` during the handshake.
    pub fn wants_wtxid_relay(&self) -> bool {
        self.state().wants_wtxid_relay
    }

    /// Whether BIP339 was negotiated: both sides sent `wtxidrelay` (ours per
    /// [`Config::wtxid_relay`], at version >= 70016), so transactions go by wtxid
    /// (`MSG_WTX`) on this link.
    pub fn wtxid_relay(&self) -> bool {
        let st = self.state();
        self.config().wtxid_relay
            && st.protocol_version >= crate::bitcoin::wire::pver::WTXID_RELAY
            && st.wants_wtxid_relay
    }

    /// A copy of the statistics.
    pub fn stats_snapshot(&self) -> StatsSnapshot {
        let st = self.state();
        StatsSnapshot {
            id: st.id,
            addr: self.addr_of(&st),
            services: st.services,
            last_send: st.last_send,
            last_recv: st.last_recv,
            bytes_sent: st.bytes_sent,
            bytes_recv: st.bytes_recv,
            conn_time: st.time_connected,
            time_offset: st.time_offset,
            advertised_version: st.advertised_version,
            negotiated_version: st.protocol_version,
            user_agent: st.user_agent.clone(),
            inbound: self.inner.inbound,
            starting_height: st.starting_height,
            last_block: st.last_block,
            last_ping_nonce: st.last_ping_nonce,
            last_ping_time: st.last_ping_time,
            last_ping_micros: st.last_ping_micros,
        }
    }
}
