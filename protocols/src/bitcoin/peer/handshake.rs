//! The version handshake, in btcd's order.
//!
//! Outbound: write version, read version, [wtxidrelay], [sendaddrv2], verack, wait for
//! verack. Inbound: read version, write version, then the same. `sendaddrv2` (and
//! `wtxidrelay`, when configured) is sent when the negotiated version is >= 70016. Both
//! sides send verack before receiving the remote's. When configured, BIP130 `sendheaders`
//! follows the remote's verack (>= 70012), as Bitcoin Core sends it: before the remote's
//! verack it would be an invalid handshake message.

use std::time::{SystemTime, UNIX_EPOCH};

use super::lru::{is_own_nonce, remember_sent_nonce};
use super::transport::{Inbound, Received, RecvError, TransportReader, TransportWriter};
use super::writer::write_direct;
use super::{Peer, PeerError, MIN_ACCEPTABLE_PROTOCOL_VERSION};
use crate::bitcoin::wire::{
    pver, reject_code, services, Message, MsgReject, MsgVersion, NetAddress,
};

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Read one item, counting its bytes and reporting it to `on_read`.
pub(crate) async fn read_counted<R: TransportReader>(
    peer: &Peer,
    r: &mut R,
    pv: u32,
) -> Result<Received, RecvError> {
    let res = r.recv(pv).await;
    let listener = &peer.config().listener;
    match &res {
        Ok(rec) => {
            peer.state().bytes_recv += rec.bytes as u64;
            let msg = match &rec.inbound {
                Inbound::Message(m) => Some(m),
                Inbound::Unknown(_) => None,
            };
            listener.on_read(peer, rec.bytes, msg, None);
        }
        Err(e) => {
            let bytes = match e {
                RecvError::Malformed { bytes, .. } => *bytes,
                RecvError::Closed(_) => 0,
            };
            peer.state().bytes_recv += bytes as u64;
            listener.on_read(peer, bytes, None, Some(&e.to_string()));
        }
    }
    res
}

pub(crate) fn recv_error(e: RecvError) -> PeerError {
    match e {
        RecvError::Closed(s) => PeerError::Closed(s),
        RecvError::Malformed { error, .. } => PeerError::Malformed(error),
    }
}

/// Run the whole handshake.
pub(crate) async fn negotiate<R: TransportReader, W: TransportWriter>(
    peer: &Peer,
    r: &mut R,
    w: &mut W,
) -> Result<(), PeerError> {
    if peer.inbound() {
        read_remote_version(peer, r, w).await?;
        send_version(peer, w).await?;
    } else {
        send_version(peer, w).await?;
        read_remote_version(peer, r, w).await?;
    }
    let pv = peer.protocol_version();
    // BIP339: between version and verack, before sendaddrv2 as Core orders them.
    if peer.config().wtxid_relay && pv >= pver::WTXID_RELAY {
        write_direct(peer, w, &Message::WtxidRelay, pv).await?;
    }
    if pv >= pver::ADDR_V2 {
        write_direct(peer, w, &Message::SendAddrV2, pv).await?;
    }
    write_direct(peer, w, &Message::Verack, pv).await?;
    wait_for_verack(peer, r, pv).await?;
    if peer.config().send_headers && pv >= pver::SEND_HEADERS {
        write_direct(peer, w, &Message::SendHeaders, pv).await?;
        peer.state().sent_send_headers = true;
    }
    Ok(())
}

/// Our version message (btcd `localVersionMsg`).
fn local_version(peer: &Peer) -> Result<MsgVersion, PeerError> {
    let cfg = peer.config();
    let start_height = match &cfg.newest_block {
        Some(f) => f().map_err(PeerError::NewestBlock)?.1,
        None => 0,
    };
    let nonce: u64 = rand::random();
    remember_sent_nonce(nonce);
    Ok(MsgVersion {
        version: i32::try_from(cfg.protocol_version).unwrap_or(i32::MAX),
        services: cfg.services,
        timestamp: unix_now(),
        addr_recv: peer.na().unwrap_or_default(),
        addr_from: NetAddress {
            services: cfg.services,
            ..NetAddress::default()
        },
        nonce,
        user_agent: cfg.user_agent(),
        start_height,
        relay: !cfg.disable_relay_tx,
    })
}

async fn send_version<W: TransportWriter>(peer: &Peer, w: &mut W) -> Result<(), PeerError> {
    let msg = Message::Version(local_version(peer)?);
    write_direct(peer, w, &msg, peer.config().protocol_version).await?;
    Ok(())
}

/// Send a reject during the handshake if `pv` can carry one (rejects below 70002 cannot
/// be encoded; btcd tries anyway and fails silently).
async fn reject_if_possible<W: TransportWriter>(peer: &Peer, w: &mut W, rej: MsgReject, pv: u32) {
    if pv < pver::REJECT {
        tracing::debug!(pver = pv, "remote cannot receive reject; not sending one");
        return;
    }
    // The handshake is failing anyway; a failed reject write changes nothing.
    let _ = write_direct(peer, w, &Message::Reject(rej), pv).await;
}

/// btcd `readRemoteVersionMsg`, in its order.
async fn read_remote_version<R: TransportReader, W: TransportWriter>(
    peer: &Peer,
    r: &mut R,
    w: &mut W,
) -> Result<(), PeerError> {
    let cfg = peer.config();
    let ours = cfg.protocol_version;
    let rec = read_counted(peer, r, ours).await.map_err(recv_error)?;
    let v = match rec.inbound {
        Inbound::Message(Message::Version(v)) => v,
        Inbound::Message(other) => {
            let cmd = other.command().as_str().to_owned();
            let rej = MsgReject {
                message: cmd.clone(),
                code: reject_code::MALFORMED,
                reason: "a version message must precede all others".into(),
                hash: None,
            };
            reject_if_possible(peer, w, rej, ours).await;
            return Err(PeerError::VersionNotFirst(cmd));
        }
        Inbound::Unknown(name) => return Err(PeerError::VersionNotFirst(name)),
    };
    if !cfg.allow_self_conns && is_own_nonce(v.nonce) {
        return Err(PeerError::SelfConnection);
    }
    let advertised = u32::try_from(v.version).unwrap_or(0);
    let negotiated = ours.min(advertised);
    {
        let mut st = peer.state();
        st.advertised_version = advertised;
        st.protocol_version = negotiated;
        st.version_known = true;
        st.services = v.services;
        st.last_block = v.start_height;
        st.starting_height = v.start_height;
        st.time_offset = v.timestamp.saturating_sub(unix_now());
        st.id = Peer::next_id();
        st.user_agent = v.user_agent.clone();
        st.witness_enabled = v.services & services::WITNESS != 0;
    }
    if let Some(rej) = cfg.listener.on_version(peer, &v) {
        let reason = rej.reason.clone();
        reject_if_possible(peer, w, rej, negotiated).await;
        return Err(PeerError::VersionRejected(reason));
    }
    if advertised < MIN_ACCEPTABLE_PROTOCOL_VERSION {
        // A peer this old cannot decode a reject (< 70002), so none is sent.
        return Err(PeerError::ObsoleteVersion(v.version));
    }
    Ok(())
}

/// btcd `waitToFinishNegotiation`: skip unknown commands (and wtxidrelay/sendcmpct, which
/// btcd does not know), accept sendaddrv2, finish on verack; anything else is an error.
async fn wait_for_verack<R: TransportReader>(
    peer: &Peer,
    r: &mut R,
    pv: u32,
) -> Result<(), PeerError> {
    let listener = &peer.config().listener;
    loop {
        let rec = read_counted(peer, r, pv).await.map_err(recv_error)?;
        let msg = match rec.inbound {
            Inbound::Unknown(name) => {
                tracing::debug!(command = %name, "ignoring unknown message during handshake");
                continue;
            }
            Inbound::Message(m) => m,
        };
        match msg {
            Message::Verack => {
                peer.state().verack_received = true;
                listener.on_verack(peer);
                return Ok(());
            }
            // Decoding already refused sendaddrv2 below 70016.
            Message::SendAddrV2 => {
                peer.state().wants_addr_v2 = true;
                listener.on_send_addr_v2(peer);
            }
            Message::WtxidRelay => {
                peer.state().wants_wtxid_relay = true;
                listener.on_wtxid_relay(peer);
            }
            Message::SendCmpct { .. } => {
                tracing::debug!("ignoring sendcmpct during handshake");
            }
            other => return Err(PeerError::InvalidHandshake(other.command())),
        }
    }
}
