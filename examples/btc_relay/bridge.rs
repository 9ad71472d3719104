//! Peer callbacks turned into relay events, tagged with the side they came from.

use super::*;

/// Which side of the bridge a peer is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Side {
    Native,
    Overlay,
}

impl Side {
    pub(super) fn name(self) -> &'static str {
        match self {
            Side::Native => "native",
            Side::Overlay => "overlay",
        }
    }
}

/// What the peers' callbacks tell the relay loop. Peers are named by [`Peer::id`], which
/// is set before the handshake completes and unique in the process.
pub(super) enum Event {
    Up(Side, Peer),
    Down(u64),
    Inv(u64, Vec<InvVect>),
    /// At most [`MAX_ANNOUNCED_HEADERS`] headers.
    Headers(u64, Vec<BlockHeader>),
    GetData(u64, Vec<InvVect>),
    NotFound(u64, Vec<InvVect>),
    Payload(u64, Payload),
}

/// The listener of every relay peer. Callbacks run on the peer's reader and must not
/// block, so they only hand the message to the relay loop (bounded; dropped when full).
pub(super) struct Bridge {
    pub(super) side: Side,
    pub(super) events: mpsc::Sender<Event>,
}

impl Bridge {
    pub(super) fn send(&self, event: Event) {
        if self.events.try_send(event).is_err() {
            tracing::warn!("relay loop is behind or gone; dropping a message");
        }
    }
}

impl Listener for Bridge {
    fn on_verack(&self, peer: &Peer) {
        // Sent from the reader itself, so it is queued before any message of this peer.
        if self
            .events
            .try_send(Event::Up(self.side, peer.clone()))
            .is_err()
        {
            tracing::warn!(%peer, "relay loop is behind or gone; dropping the peer");
            peer.disconnect();
            return;
        }
        let (peer, events) = (peer.clone(), self.events.clone());
        tokio::spawn(async move {
            peer.wait_for_disconnect().await;
            // Bounded: a relay loop that is gone (or stuck) drops the send.
            let _ = events
                .send_timeout(Event::Down(peer.id()), HANDSHAKE_TIMEOUT)
                .await;
        });
    }
    fn on_inv(&self, peer: &Peer, inv: &[InvVect]) {
        self.send(Event::Inv(peer.id(), inv.to_vec()));
    }
    fn on_headers(&self, peer: &Peer, headers: &[BlockHeader]) {
        let newest = &headers[headers.len().saturating_sub(MAX_ANNOUNCED_HEADERS)..];
        if newest.len() < headers.len() {
            tracing::debug!(%peer, count = headers.len(), "long headers message; only the newest are taken");
        }
        if !newest.is_empty() {
            self.send(Event::Headers(peer.id(), newest.to_vec()));
        }
    }
    fn on_get_data(&self, peer: &Peer, inv: &[InvVect]) {
        self.send(Event::GetData(peer.id(), inv.to_vec()));
    }
    fn on_not_found(&self, peer: &Peer, inv: &[InvVect]) {
        self.send(Event::NotFound(peer.id(), inv.to_vec()));
    }
    fn on_tx(&self, peer: &Peer, tx: &Tx) {
        self.send(Event::Payload(peer.id(), Payload::Tx(tx.clone())));
    }
    fn on_block(&self, peer: &Peer, block: &Block) {
        self.send(Event::Payload(peer.id(), Payload::Block(block.clone())));
    }
}
