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

/// Our side of liveness: pings the remote every `ping_interval`, ends the peer (0x0b) when a
/// pong is late, and answers the pings the read loop passes on. Driven by the supervisor
/// (one task fewer per peer than a loop of its own).
pub(super) struct Liveness {
    ping_rx: mpsc::Receiver<()>,
    pong_seen: Arc<Notify>,
    next_ping: tokio::time::Instant,
    pong_deadline: Option<tokio::time::Instant>,
}

impl Liveness {
    pub(super) fn new(
        shared: &Shared,
        ping_rx: mpsc::Receiver<()>,
        pong_seen: Arc<Notify>,
    ) -> Self {
        Liveness {
            ping_rx,
            pong_seen,
            next_ping: tokio::time::Instant::now() + shared.config.ping_interval,
            pong_deadline: None,
        }
    }

    /// Wait for the next thing to do and do it. Returns false once the peer is ending (a
    /// write failed, or the pong came too late: the peer was closed with the reason).
    pub(super) async fn step(&mut self, shared: &Shared) -> bool {
        let cfg = &shared.config;
        let deadline = self.pong_deadline;
        tokio::select! {
            _ = tokio::time::sleep_until(self.next_ping) => {
                if !shared.write_base(PING, &EMPTY_LIST).await {
                    return false;
                }
                self.next_ping = tokio::time::Instant::now() + cfg.ping_interval;
                if self.pong_deadline.is_none() {
                    self.pong_deadline = Some(tokio::time::Instant::now() + cfg.pong_timeout);
                }
                true
            }
            _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if deadline.is_some() => {
                shared.close(DisconnectReason::PingTimeout, false, "no pong in time");
                false
            }
            Some(()) = self.ping_rx.recv() => shared.write_base(PONG, &EMPTY_LIST).await,
            _ = self.pong_seen.notified() => {
                self.pong_deadline = None;
                true
            }
        }
    }
}
