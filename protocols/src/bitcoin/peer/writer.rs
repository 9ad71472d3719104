//! The peer's lifecycle task and its writing side: handshake writes, the FIFO queue with
//! one message in flight, the inventory trickle, keep-alive pings and the stall ticker.

use std::collections::VecDeque;
use std::time::SystemTime;

use tokio::time::{interval_at, Instant, MissedTickBehavior};

use super::error::WriteFailure;
use super::queue::{Done, Queues, SendOutcome};
use super::transport::{Transport, TransportWriter};
use super::{handshake, reader, Peer, PeerError};
use crate::bitcoin::wire::{inv_type, pver, InvVect, Message, MsgPing};

/// btcd `maxInvTrickleSize`: most inventory vectors per trickled `inv`.
pub const MAX_INV_TRICKLE_SIZE: usize = 1000;
/// Most inventory items waiting for the next trickle (btcd's list is unbounded); newer
/// items are dropped beyond this.
pub const MAX_TRICKLE_QUEUE: usize = 50_000;

/// Runs one peer on `transport`: handshake within the negotiation timeout, then the
/// reading, writing and stall tasks until any of them ends the peer.
pub(crate) async fn run<T: Transport>(peer: Peer, transport: T, queues: Queues) {
    let (mut reader, mut writer) = transport.split();
    let timeout = peer.config().negotiate_timeout;
    let negotiated = tokio::select! {
        biased;
        _ = peer.cancel_token().cancelled() => Err(PeerError::Disconnected),
        res = tokio::time::timeout(timeout, handshake::negotiate(&peer, &mut reader, &mut writer)) => {
            res.unwrap_or(Err(PeerError::NegotiationTimeout))
        }
    };
    match negotiated {
        Err(e) => {
            tracing::debug!(error = %e, "handshake failed");
            peer.close(e);
            queues.drain();
        }
        Ok(()) => {
            tracing::debug!(pver = peer.protocol_version(), "handshake complete");
            tokio::join!(
                reader::in_loop(peer.clone(), reader),
                out_loop(peer.clone(), writer, queues),
                stall_loop(peer.clone()),
            );
        }
    }
    peer.close(PeerError::Disconnected);
    peer.mark_finished();
}

/// Write one message directly (handshake): counted and reported to `on_write`, but not
/// through the queue, the stall detector or `last_send` (as btcd).
pub(crate) async fn write_direct<W: TransportWriter>(
    peer: &Peer,
    w: &mut W,
    msg: &Message,
    pv: u32,
) -> Result<usize, PeerError> {
    let res = w.send(msg, pv).await;
    account_write(peer, msg, &res);
    res.map_err(|e| PeerError::WriteFailed(WriteFailure::of(msg.command(), e)))
}

fn account_write<E: std::fmt::Display>(peer: &Peer, msg: &Message, res: &Result<usize, E>) {
    let listener = &peer.config().listener;
    match res {
        Ok(n) => {
            peer.state().bytes_sent += *n as u64;
            listener.on_write(peer, *n, msg, None);
        }
        Err(e) => listener.on_write(peer, 0, msg, Some(&e.to_string())),
    }
}

/// Write one queued message: record ping state, arm stall deadlines, write within the
/// write timeout, notify `done`. A failure ends the peer.
async fn write_queued<W: TransportWriter>(
    peer: &Peer,
    w: &mut W,
    msg: Message,
    done: Done,
) -> Result<(), PeerError> {
    let cfg = peer.config();
    if peer.cancel_token().is_cancelled() {
        // Dropping `done` reports Dropped: a disconnecting peer writes nothing more.
        return Err(PeerError::Disconnected);
    }
    let pv = peer.protocol_version();
    let now = Instant::now();
    if let Message::Ping(p) = &msg {
        if pv > pver::BIP0031 {
            let mut st = peer.state();
            st.last_ping_nonce = p.nonce;
            st.last_ping_instant = Some(now);
            st.last_ping_time = Some(SystemTime::now());
        }
    }
    if !cfg.disable_stall_handler {
        peer.stall()
            .sent_message(&msg, now, cfg.stall_response_timeout);
    }
    let res = tokio::select! {
        biased;
        _ = peer.cancel_token().cancelled() => return Err(PeerError::Disconnected),
        res = tokio::time::timeout(cfg.write_timeout, w.send(&msg, pv)) => match res {
            Ok(r) => r.map_err(|e| WriteFailure::of(msg.command(), e)),
            Err(_) => Err(WriteFailure::TimedOut(cfg.write_timeout)),
        },
    };
    account_write(peer, &msg, &res);
    match res {
        Ok(_) => {
            peer.state().last_send = Some(SystemTime::now());
            done.fire(SendOutcome::Sent);
            Ok(())
        }
        Err(e) => {
            tracing::debug!(command = %msg.command(), error = %e, "write failed");
            done.fire(SendOutcome::Failed);
            Err(PeerError::WriteFailed(e))
        }
    }
}

fn is_block(iv: &InvVect) -> bool {
    iv.inv_type == inv_type::BLOCK || iv.inv_type == inv_type::WITNESS_BLOCK
}

/// A nonzero random nonce (0 means "no ping outstanding").
fn ping_nonce() -> u64 {
    loop {
        let n: u64 = rand::random();
        if n != 0 {
            return n;
        }
    }
}

/// Split the trickle queue into `inv` messages of at most 1000 items, skipping items
/// that became known meanwhile and marking the announced ones as known.
fn trickle_batches(peer: &Peer, pending: &mut VecDeque<InvVect>) -> Vec<Vec<InvVect>> {
    let mut batches = Vec::new();
    let mut current = Vec::new();
    let mut known = peer.known();
    for iv in pending.drain(..) {
        if known.contains(&iv) {
            continue;
        }
        known.insert(iv);
        current.push(iv);
        if current.len() == MAX_INV_TRICKLE_SIZE {
            batches.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// The writer: queued messages in FIFO order, one at a time; block inventory at once;
/// other inventory every trickle interval; a ping every ping interval.
pub(crate) async fn out_loop<W: TransportWriter>(peer: Peer, mut w: W, mut queues: Queues) {
    let cfg = peer.config().clone();
    let start = Instant::now();
    let mut trickle = interval_at(start + cfg.trickle_interval, cfg.trickle_interval);
    trickle.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut ping = interval_at(start + cfg.ping_interval, cfg.ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pending: VecDeque<InvVect> = VecDeque::new();
    let cancel = peer.cancel_token().clone();
    let result: Result<(), PeerError> = async {
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return Ok(()),
                Some(item) = queues.out.recv() => {
                    write_queued(&peer, &mut w, item.msg, item.done).await?;
                }
                Some(iv) = queues.inv.recv() => {
                    if is_block(&iv) {
                        write_queued(&peer, &mut w, Message::Inv(vec![iv]), Done::default()).await?;
                    } else if pending.len() < MAX_TRICKLE_QUEUE {
                        pending.push_back(iv);
                    } else {
                        tracing::debug!("trickle queue full; dropping inventory item");
                    }
                }
                _ = trickle.tick() => {
                    for batch in trickle_batches(&peer, &mut pending) {
                        write_queued(&peer, &mut w, Message::Inv(batch), Done::default()).await?;
                    }
                }
                _ = ping.tick() => {
                    let msg = Message::Ping(MsgPing { nonce: ping_nonce() });
                    write_queued(&peer, &mut w, msg, Done::default()).await?;
                }
            }
        }
    }
    .await;
    if let Err(e) = result {
        peer.close(e);
    }
    queues.drain();
}

/// Every stall tick, disconnect if an expected response is overdue.
pub(crate) async fn stall_loop(peer: Peer) {
    let cfg = peer.config();
    if cfg.disable_stall_handler {
        return;
    }
    let period = cfg.stall_tick_interval;
    let mut tick = interval_at(Instant::now() + period, period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = peer.cancel_token().cancelled() => return,
            _ = tick.tick() => {
                let overdue = peer.stall().overdue(Instant::now());
                if let Some(cmd) = overdue {
                    tracing::debug!(%cmd, "peer appears to be stalled");
                    peer.close(PeerError::Stalled(cmd));
                    return;
                }
            }
        }
    }
}
