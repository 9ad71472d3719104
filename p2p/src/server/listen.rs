//! Listening: accept inbound connections within the pending-handshake bound, the
//! allow-list and the per-source throttle.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info_span, warn, Instrument};

use crate::conn::Conn;
use crate::peer::Direction;

use super::{lock, Server};

impl Server {
    /// Accept inbound connections until shutdown, each handshaken and set up in its own
    /// task.
    pub(super) async fn accept_loop(self, mut listener: Box<dyn super::Listener>) {
        loop {
            // Bound the handshakes in flight: wait for a slot before accepting more.
            let permit = tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                p = self.inner.pending.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let (stream, addr) = tokio::select! {
                _ = self.inner.shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            if let Err(e) = self.check_allowed(addr.ip()) {
                debug!(%addr, error = %e, "refusing inbound connection");
                continue;
            }
            // tokio's clock (the wall clock unless a runtime pauses or simulates time).
            if !lock(&self.inner.throttle).admit(addr.ip(), Instant::now().into_std()) {
                debug!(%addr, "refusing inbound connection: throttled");
                continue;
            }
            let s = self.clone();
            let span = info_span!("inbound", %addr);
            self.spawn(
                async move {
                    let cfg = &s.inner.config;
                    let started = Instant::now();
                    // Shutdown does not wait out a handshake in progress.
                    let accepted = tokio::select! {
                        _ = s.inner.shutdown.cancelled() => return,
                        r = Conn::accept(stream, cfg.key.secret(), cfg.handshake_timeout) => r,
                    };
                    let conn = match accepted {
                        Ok(conn) => conn,
                        Err(e) => {
                            debug!(error = %e, "inbound handshake failed");
                            return;
                        }
                    };
                    drop(permit);
                    match s.setup(conn, Some(addr), Direction::Inbound).await {
                        Ok(_) => s
                            .inner
                            .metrics
                            .handshake_done(Direction::Inbound, started.elapsed()),
                        Err(e) => debug!(error = %e, "inbound peer refused"),
                    }
                }
                .instrument(span),
            );
        }
    }
}
