//! The reading side after the handshake: idle timeout, stall bookkeeping, dispatch to
//! listeners, and the read-error policy (reject "malformed", then disconnect).

use std::time::SystemTime;

use tokio::time::Instant;

use super::handshake::read_counted;
use super::transport::{Inbound, RecvError, TransportReader};
use super::{Peer, PeerError};
use crate::bitcoin::wire::{pver, reject_code, services, Message};

/// Read and dispatch until the peer ends.
pub(crate) async fn in_loop<R: TransportReader>(peer: Peer, mut r: R) {
    let idle = peer.config().idle_timeout;
    let cancel = peer.cancel_token().clone();
    loop {
        let pv = peer.protocol_version();
        let res = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            res = tokio::time::timeout(idle, read_counted(&peer, &mut r, pv)) => res,
        };
        let rec = match res {
            Err(_) => {
                tracing::debug!(?idle, "no message received; disconnecting");
                peer.close(PeerError::IdleTimeout(idle));
                return;
            }
            Ok(Err(RecvError::Closed(e))) => {
                peer.close(PeerError::Closed(e));
                return;
            }
            Ok(Err(RecvError::Malformed { error, .. })) => {
                tracing::debug!(%error, "malformed message");
                let reason = format!("Can't read message from {peer}: {error}");
                peer.push_reject("malformed", reject_code::MALFORMED, &reason, None, true)
                    .await;
                peer.close(PeerError::Malformed(error));
                return;
            }
            Ok(Ok(rec)) => rec,
        };
        let msg = match rec.inbound {
            Inbound::Unknown(name) => {
                tracing::debug!(command = %name, "ignoring unknown message");
                continue;
            }
            Inbound::Message(m) => m,
        };
        peer.state().last_recv = Some(SystemTime::now());
        {
            let mut stall = peer.stall();
            let now = Instant::now();
            stall.received_message(&msg, now);
            stall.handler_start(now);
        }
        let res = dispatch(&peer, msg).await;
        peer.stall().handler_done(Instant::now());
        if let Err(e) = res {
            peer.close(e);
            return;
        }
    }
}

/// Peer-level handling of one message, then its listener.
async fn dispatch(peer: &Peer, msg: Message) -> Result<(), PeerError> {
    let listener = peer.config().listener.clone();
    let pv = peer.protocol_version();
    match &msg {
        Message::Version(_) | Message::Verack => {
            let cmd = msg.command();
            let reason = format!("duplicate {cmd} message");
            peer.push_reject(cmd.as_str(), reject_code::DUPLICATE, &reason, None, true)
                .await;
            return Err(PeerError::Duplicate(cmd));
        }
        Message::SendAddrV2 => return Err(PeerError::LateSendAddrV2),
        Message::Ping(p) => {
            if pv > pver::BIP0031 {
                peer.queue_message(Message::Pong(p.nonce), None).await;
            }
            listener.on_ping(peer, p);
        }
        Message::Pong(nonce) => {
            if pv > pver::BIP0031 {
                let mut st = peer.state();
                if st.last_ping_nonce != 0 && *nonce == st.last_ping_nonce {
                    if let Some(sent) = st.last_ping_instant {
                        let rtt = Instant::now().saturating_duration_since(sent);
                        st.last_ping_micros = i64::try_from(rtt.as_micros()).unwrap_or(i64::MAX);
                    }
                    st.last_ping_nonce = 0;
                }
            }
            listener.on_pong(peer, *nonce);
        }
        Message::SendHeaders => {
            peer.state().wants_headers = true;
            listener.on_send_headers(peer);
        }
        Message::FilterLoad(_) | Message::FilterAdd(_) | Message::FilterClear
            if peer.config().services & services::BLOOM == 0 =>
        {
            // BIP111: a node that does not offer NODE_BLOOM disconnects (btcd's server
            // does so for every version; it also bans at >= 70011).
            return Err(PeerError::BloomNotOffered(msg.command()));
        }
        Message::FilterLoad(m) => listener.on_filter_load(peer, m),
        Message::FilterAdd(d) => listener.on_filter_add(peer, d),
        Message::FilterClear => listener.on_filter_clear(peer),
        Message::WtxidRelay => {
            // btcd does not know wtxidrelay and skips it; Core would disconnect.
            tracing::debug!("ignoring wtxidrelay after verack");
        }
        Message::SendCmpct { announce, version } => {
            listener.on_send_cmpct(peer, *announce, *version)
        }
        Message::GetAddr => listener.on_get_addr(peer),
        Message::Addr(a) => listener.on_addr(peer, a),
        Message::AddrV2(a) => listener.on_addr_v2(peer, a),
        Message::MemPool => listener.on_mem_pool(peer),
        Message::Tx(t) => listener.on_tx(peer, t),
        Message::Block(b) => listener.on_block(peer, b),
        Message::Inv(i) => listener.on_inv(peer, i),
        Message::Headers(h) => listener.on_headers(peer, h),
        Message::NotFound(i) => listener.on_not_found(peer, i),
        Message::GetData(i) => listener.on_get_data(peer, i),
        Message::GetBlocks(m) => listener.on_get_blocks(peer, m),
        Message::GetHeaders(m) => listener.on_get_headers(peer, m),
        Message::FeeFilter(rate) => listener.on_fee_filter(peer, *rate),
        Message::MerkleBlock(m) => listener.on_merkle_block(peer, m),
        Message::Reject(m) => listener.on_reject(peer, m),
    }
    Ok(())
}
