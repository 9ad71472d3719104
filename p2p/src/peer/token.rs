//! The write-start token: every write of a peer (protocol messages, pings, pongs, the
//! final Disconnect) holds the one per-peer async mutex around the link's writer, so
//! exactly one message is on the wire at a time and waiters are served in FIFO order.

use super::Shared;
use crate::base::DisconnectReason;
use crate::deadline::within;

impl Shared {
    /// Write one message (wire code) under the write-start token, within the write timeout.
    /// Returns the frame-data size, or `None` when the peer is closing or the write failed
    /// (a failed or timed-out write ends the peer).
    pub(super) async fn write_message(&self, wire_code: u64, payload: &[u8]) -> Option<usize> {
        // Free most of the time: taken without a closing future (a lock on the token's tree).
        let mut writer = match self.writer.try_lock() {
            Ok(w) => w,
            Err(_) => tokio::select! {
                biased;
                _ = self.closing.cancelled() => return None,
                w = self.writer.lock() => w,
            },
        };
        // The token may have been handed over just as the peer started closing.
        if self.is_closing() {
            return None;
        }
        let detail = match within(self.config.write_timeout, writer.write(wire_code, payload)).await
        {
            Ok(Ok(size)) => return Some(size),
            Ok(Err(e)) => format!("write failed: {e}"),
            Err(_) => "write timed out".to_string(),
        };
        self.close(DisconnectReason::TcpSubsystemError, false, detail);
        None
    }

    /// Write one base-protocol message under the token.
    pub(super) async fn write_base(&self, code: u64, payload: &[u8]) -> bool {
        let Some(size) = self.write_message(code, payload).await else {
            return false;
        };
        self.base_counters.egress(code, size);
        true
    }
}
