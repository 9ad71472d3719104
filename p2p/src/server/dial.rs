//! Dialing: one attempt ([`Server::dial`]) and static peers kept up with backoff.

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

use crate::base::DisconnectReason;
use crate::conn::Conn;
use crate::node::{Enode, NodeId};
use crate::peer::{Direction, Peer};

use super::{lock, Server, ServerError};

impl Server {
    /// Keep a connection to `enode` up: dial it now and again whenever it drops, with
    /// exponential backoff between failed attempts.
    pub fn add_static(&self, enode: Enode) {
        let token = self.inner.shutdown.child_token();
        {
            let mut statics = lock(&self.inner.statics);
            if statics.contains_key(&enode.id) {
                return;
            }
            statics.insert(enode.id, token.clone());
        }
        let s = self.clone();
        let span = info_span!("static", peer = %hex::encode(&enode.id.0[..8]));
        self.spawn(async move { s.static_loop(enode, token).await }.instrument(span));
    }

    /// Stop redialing a static peer (an existing connection stays up).
    pub fn remove_static(&self, id: &NodeId) {
        if let Some(token) = lock(&self.inner.statics).remove(id) {
            token.cancel();
        }
    }

    async fn static_loop(&self, enode: Enode, stop: CancellationToken) {
        let cfg = &self.inner.config;
        let mut backoff = cfg.static_backoff_min;
        loop {
            let connected = self.peer(&enode.id);
            let wait = match connected {
                Some(peer) => {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = peer.closed() => {}
                    }
                    backoff = cfg.static_backoff_min;
                    backoff
                }
                None => match self.dial(&enode).await {
                    Ok(_) => {
                        backoff = cfg.static_backoff_min;
                        continue;
                    }
                    Err(ServerError::ShuttingDown) => return,
                    Err(e @ ServerError::NotDialable(_)) => {
                        warn!(error = %e, "static peer can never be dialed; giving up on it");
                        return;
                    }
                    Err(ServerError::Refused(DisconnectReason::AlreadyConnected)) => backoff,
                    Err(e) => {
                        debug!(error = %e, ?backoff, "static dial failed");
                        let wait = backoff;
                        backoff = (backoff * 2).min(cfg.static_backoff_max);
                        wait
                    }
                },
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Dial `enode` once and run it as a peer.
    pub async fn dial(&self, enode: &Enode) -> Result<Peer, ServerError> {
        let started = Instant::now();
        self.inner.metrics.dial_started();
        let result = self.dial_once(enode).await;
        match &result {
            Ok(_) => self
                .inner
                .metrics
                .handshake_done(Direction::Outbound, started.elapsed()),
            Err(e) => self.inner.metrics.dial_failed(e.kind()),
        }
        result
    }

    async fn dial_once(&self, enode: &Enode) -> Result<Peer, ServerError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(ServerError::ShuttingDown);
        }
        enode.check_dialable()?;
        let addr = enode.socket_addr();
        self.check_allowed(addr.ip())?;
        let cfg = &self.inner.config;
        let connect = self.inner.transport.connect(addr);
        let stream = match tokio::time::timeout(cfg.dial_timeout, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(ServerError::Connect { addr, source }),
            Err(_) => {
                let source = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
                return Err(ServerError::Connect { addr, source });
            }
        };
        let conn =
            Conn::initiate(stream, cfg.key.secret(), &enode.id, cfg.handshake_timeout).await?;
        self.setup(conn, Some(addr), Direction::Outbound).await
    }
}
