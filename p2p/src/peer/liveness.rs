//! Liveness: our pings and the pong deadline, answers to their pings, and the token
//! bucket that bounds how often they may ping us.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Notify};

use super::Shared;
use crate::base::{DisconnectReason, EMPTY_LIST, PING, PONG};

/// Token bucket for inbound pings.
pub(super) struct PingBucket {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    last: Instant,
}

impl PingBucket {
    pub(super) fn new(burst: u32, refill: Duration) -> Self {
        PingBucket {
            tokens: burst as f64,
            burst: burst as f64,
            per_sec: 1.0 / refill.as_secs_f64().max(1e-3),
            // tokio's clock, as for `RawMessage::received_at` (see `take`).
            last: tokio::time::Instant::now().into_std(),
        }
    }

    pub(super) fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Pings the remote every `ping_interval`, ends the peer (0x0b) when a pong is late, and
/// answers the pings the read loop passes on.
pub(super) async fn control_loop(
    shared: Arc<Shared>,
    mut ping_rx: mpsc::Receiver<()>,
    pong_seen: Arc<Notify>,
) {
    let cfg = shared.config.clone();
    let mut next_ping = tokio::time::Instant::now() + cfg.ping_interval;
    let mut pong_deadline: Option<tokio::time::Instant> = None;
    loop {
        let deadline = pong_deadline;
        tokio::select! {
            _ = tokio::time::sleep_until(next_ping) => {
                if !shared.write_base(PING, &EMPTY_LIST).await {
                    return;
                }
                next_ping = tokio::time::Instant::now() + cfg.ping_interval;
                if pong_deadline.is_none() {
                    pong_deadline = Some(tokio::time::Instant::now() + cfg.pong_timeout);
                }
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if deadline.is_some() => {
                shared.close(DisconnectReason::PingTimeout, false, "no pong in time");
                return;
            }
            Some(()) = ping_rx.recv() => {
                if !shared.write_base(PONG, &EMPTY_LIST).await {
                    return;
                }
            }
            _ = pong_seen.notified() => {
                pong_deadline = None;
            }
        }
    }
}
