//! The write-start token: every write of a peer (protocol messages, pings, pongs, the
//! final Disconnect) holds the one per-peer async mutex around the link's writer, so
//! exactly one message is sealed at a time, frames leave in the order they were sealed, and
//! waiters are served in FIFO order.
//!
//! **Writes are coalesced.** A write seals its frame into the link's send buffer and asks
//! the supervisor to flush; the supervisor wakes on the worker the writer runs on and
//! flushes once the writer yields. A protocol answering a burst of requests therefore sends
//! all of its answers in one write to the socket instead of one each (on loopback, 17 to 32
//! answers per flush in the 32-in-flight benchmark). Once more than [`FLUSH_AT`] bytes wait,
//! the writer flushes itself, so a writer faster than the socket still waits for it.

use std::sync::atomic::Ordering;

use tokio::sync::MutexGuard;

use super::Shared;
use crate::base::DisconnectReason;
use crate::conn::ConnWriter;
use crate::deadline::within;

/// When a write's frame goes to the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flush {
    /// Now, with whatever was queued before it (the writer waits for the socket).
    Now,
    /// When the supervisor next runs, with whatever else is queued by then.
    Soon,
}

/// Queued bytes above which a writer flushes at once instead of leaving it to the
/// supervisor: the bound on a peer's send buffer, and the writer's back-pressure.
pub(super) const FLUSH_AT: usize = 64 * 1024;

impl Shared {
    /// Write one message (wire code) under the write-start token, within the write timeout.
    /// Returns the frame-data size, or `None` when the peer is closing or the write failed
    /// (a failed or timed-out write ends the peer).
    pub(super) async fn write_message(
        &self,
        wire_code: u64,
        payload: &[u8],
        flush: Flush,
    ) -> Option<usize> {
        let mut writer = self.take_token().await?;
        // The token may have been handed over just as the peer started closing.
        if self.is_closing() {
            return None;
        }
        let size = match writer.queue(wire_code, payload) {
            Ok(size) => size,
            Err(e) => {
                self.close(
                    DisconnectReason::TcpSubsystemError,
                    false,
                    format!("write failed: {e}"),
                );
                return None;
            }
        };
        if flush == Flush::Now || writer.queued() >= FLUSH_AT {
            return self.flush_locked(&mut writer).await.then_some(size);
        }
        // One request per batch: the flag stays set until the supervisor takes the token.
        if !self.flush_requested.swap(true, Ordering::AcqRel) {
            self.flush_wanted.notify_one();
        }
        Some(size)
    }

    /// Write what the link has queued (the supervisor's side of coalescing).
    pub(super) async fn flush(&self) -> bool {
        match self.take_token().await {
            Some(mut writer) => self.flush_locked(&mut writer).await,
            None => false,
        }
    }

    /// Take the write-start token (FIFO), or `None` if the peer closes first.
    async fn take_token(&self) -> Option<MutexGuard<'_, ConnWriter>> {
        // Free most of the time: taken without a closing future (a lock on the token's tree).
        if let Ok(writer) = self.writer.try_lock() {
            return Some(writer);
        }
        tokio::select! {
            biased;
            _ = self.closing.cancelled() => None,
            writer = self.writer.lock() => Some(writer),
        }
    }

    /// Write what is queued, holding the token, within the write timeout; a failed or
    /// timed-out write ends the peer.
    async fn flush_locked(&self, writer: &mut ConnWriter) -> bool {
        // Cleared under the token: a write queued after this asks again.
        self.flush_requested.store(false, Ordering::Release);
        if writer.queued() == 0 {
            return true;
        }
        let detail = match within(self.config.write_timeout, writer.flush_queued()).await {
            Ok(Ok(())) => return true,
            Ok(Err(e)) => format!("write failed: {e}"),
            Err(_) => "write timed out".to_string(),
        };
        self.close(DisconnectReason::TcpSubsystemError, false, detail);
        false
    }

    /// Write one base-protocol message under the token.
    pub(super) async fn write_base(&self, code: u64, payload: &[u8]) -> bool {
        let Some(size) = self.write_message(code, payload, Flush::Soon).await else {
            return false;
        };
        self.base_counters.egress(code, size);
        true
    }
}
