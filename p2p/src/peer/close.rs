//! Why a peer ends: the first reason recorded wins, and closing starts with it.

use std::sync::atomic::Ordering;

use serde::Serialize;
use tracing::debug;

use super::Shared;
use crate::base::DisconnectReason;

/// Why a peer ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloseReason {
    /// The disconnect reason.
    pub reason: DisconnectReason,
    /// True when the remote sent the Disconnect; false when we ended the peer.
    pub remote: bool,
    /// What happened, for logs.
    pub detail: String,
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let who = if self.remote { "remote" } else { "local" };
        write!(f, "{who}: {} ({})", self.reason, self.detail)
    }
}

impl Shared {
    /// Record why the peer ends (the first reason wins) and start closing.
    pub(super) fn close(&self, reason: DisconnectReason, remote: bool, detail: impl Into<String>) {
        let detail = detail.into();
        if self
            .close_reason
            .set(CloseReason {
                reason,
                remote,
                detail: detail.clone(),
            })
            .is_ok()
        {
            debug!(%reason, remote, %detail, "peer closing");
        }
        self.closed.store(true, Ordering::Release);
        // Readers waiting on an empty queue see the flag when woken.
        for inbox in &self.inboxes {
            inbox.wake_reader();
        }
        self.closing.cancel();
    }

    /// Whether the peer has started closing (one atomic load).
    pub(super) fn is_closing(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Why the peer ends, once a reason has been recorded.
    pub(super) fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason.get().cloned()
    }
}
