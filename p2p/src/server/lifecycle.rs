//! A connection's life from the admission checkpoint to a running peer and its end, and
//! the server's shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use tracing::{info, warn};

use crate::base::{DisconnectReason, Hello, BASE_PROTOCOL_VERSION};
use crate::conn::Conn;
use crate::node::NodeId;
use crate::peer::{Direction, Peer, PeerInfo};
use crate::session::{exchange_hello, send_disconnect};

use super::admission::{Admitted, Ticket};
use super::error::refused;
use super::{lock, merge_into, PeerEvent, Server, ServerError};

impl Server {
    /// Admit a connection whose encryption handshake is done and run it as a peer: the
    /// checkpoint, the Hello exchange, the claim of its node id, the peer's start.
    pub(super) async fn setup(
        &self,
        mut conn: Conn,
        addr: Option<SocketAddr>,
        direction: Direction,
    ) -> Result<Peer, ServerError> {
        let id = conn.remote_id;
        let admitted = lock(&self.inner.admission).checkpoint(id, direction, addr);
        let Admitted { ticket, trusted } = match admitted {
            Ok(admitted) => admitted,
            Err(reason) => {
                // Refused before the protocol handshake: a Disconnect instead of a Hello.
                send_disconnect(&mut conn.writer, reason).await;
                let _ = conn.writer.shutdown().await;
                return Err(refused(reason));
            }
        };
        // Released on failure and also when the caller drops this future mid-setup (a dial
        // abandoned during the Hello), so an abandoned attempt never keeps its slot.
        let mut held = HeldTicket {
            server: self,
            ticket,
            id,
            armed: true,
        };
        let result = self.run_peer(conn, ticket, addr, direction, trusted).await;
        held.armed = result.is_err();
        result
    }

    async fn run_peer(
        &self,
        mut conn: Conn,
        ticket: Ticket,
        addr: Option<SocketAddr>,
        direction: Direction,
        trusted: bool,
    ) -> Result<Peer, ServerError> {
        let cfg = &self.inner.config;
        let ours = Hello {
            protocol_version: BASE_PROTOCOL_VERSION,
            client_id: cfg.client_id.clone(),
            capabilities: cfg.protocols.iter().map(|p| p.capability()).collect(),
            listen_port: cfg
                .announce_port
                .or(self.inner.local_addr.map(|a| a.port()))
                .unwrap_or(0),
            id: self.inner.id.0.to_vec(),
        };
        // Shutdown does not wait out a Hello in progress.
        let theirs = tokio::select! {
            _ = self.inner.shutdown.cancelled() => return Err(ServerError::ShuttingDown),
            r = exchange_hello(&mut conn, &ours, cfg.hello_timeout) => r?,
        };
        let claimed = lock(&self.inner.admission).claim(ticket, conn.remote_id, direction);
        if let Err(reason) = claimed {
            send_disconnect(&mut conn.writer, reason).await;
            let _ = conn.writer.shutdown().await;
            return Err(refused(reason));
        }
        let info = PeerInfo {
            id: conn.remote_id,
            remote_addr: addr,
            direction,
            trusted,
        };
        let peer = Peer::start(
            conn,
            theirs,
            &cfg.protocols,
            info,
            self.peer_config(),
            self.inner.msg_events.clone(),
        )
        .await?;
        {
            let mut admission = lock(&self.inner.admission);
            admission.activate(peer.id(), peer.clone());
            // Shutdown closes admission, then snapshots the peers under this lock: a peer
            // that becomes active after the snapshot sees the closing here and ends itself.
            if admission.is_closed() {
                peer.disconnect(DisconnectReason::ClientQuitting);
            }
        }
        let _ = self.inner.events.send(PeerEvent::Added {
            id: peer.id(),
            addr,
            direction,
            protocols: peer
                .protocols()
                .iter()
                .map(|c| format!("{}/{}", c.name, c.version))
                .collect(),
        });
        info!(peer = %hex::encode(&peer.id().0[..8]), ?addr, ?direction, client = peer.client_id(), "peer added");
        // Run by the peer's own task as it ends (no watcher task per peer): the slot is free
        // and Dropped sent before `closed()` returns. Weak: the server may be gone by then.
        let server = std::sync::Arc::downgrade(&self.inner);
        peer.on_end(move |watched, reason| {
            let Some(inner) = server.upgrade() else {
                return;
            };
            inner.metrics.peer_ended(reason.reason, reason.remote);
            merge_into(&mut lock(&inner.finished_traffic), &watched.traffic());
            // Only remove our own entry: a newer connection may have taken the id.
            lock(&inner.admission).remove(&watched.id(), |p| p.same(watched));
            info!(peer = %hex::encode(&watched.id().0[..8]), %reason, "peer dropped");
            let _ = inner.events.send(PeerEvent::Dropped {
                id: watched.id(),
                reason: reason.clone(),
            });
        });
        Ok(peer)
    }

    /// Stop: close the listener, stop dialing, send every peer "client quitting" (0x08) and
    /// wait (bounded) until every task the server started has ended, including peers that
    /// became active while shutdown ran and the tasks they spawned.
    pub async fn shutdown(&self) {
        {
            // Closed and cancelled under the admission lock, so no checkpoint, claim or
            // activation sees one without the other.
            let mut admission = lock(&self.inner.admission);
            admission.close();
            self.inner.shutdown.cancel();
        }
        let discovery = lock(&self.inner.discovery).take();
        if let Some(discovery) = discovery {
            // The dial loop may still hold its references for a moment: shutdown waits for
            // them briefly, else dropping the last one stops the services' tasks.
            discovery.shutdown().await;
        }
        let grace = self.inner.config.peer.protocol_grace + Duration::from_secs(3);
        let deadline = tokio::time::Instant::now() + grace;
        // No connection can be claimed any more; let those already claimed become peers
        // (only the bounded useless-peer Disconnect can lie between the two) so the
        // snapshot below holds them.
        while lock(&self.inner.admission).has_claimed() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let peers = self.peers();
        for peer in &peers {
            peer.disconnect(DisconnectReason::ClientQuitting);
        }
        for peer in &peers {
            if tokio::time::timeout_at(deadline, peer.closed())
                .await
                .is_err()
            {
                warn!(peer = ?peer.id(), "peer did not close in time");
            }
        }
        // Tasks may still be spawned while we wait (a dial or lookup finishing), so drain
        // until the set stays empty; past the deadline, abort what is left.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            let mut tasks = std::mem::take(&mut *lock(&self.inner.tasks));
            if tasks.is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, async {
                while tasks.join_next().await.is_some() {}
            })
            .await
            .is_err()
            {
                warn!(
                    left = tasks.len(),
                    "server tasks did not end in time; aborting them"
                );
                tasks.shutdown().await;
            }
        }
        // Last: the mappings stay while peers say goodbye.
        self.stop_nat().await;
        info!("server stopped");
    }
}

/// A connection's place in the limits between the checkpoint and becoming a running peer;
/// released on drop unless disarmed.
struct HeldTicket<'a> {
    server: &'a Server,
    ticket: Ticket,
    id: NodeId,
    armed: bool,
}

impl Drop for HeldTicket<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.server.inner.admission).release(self.ticket, &self.id);
        }
    }
}
