//! A protocol's view of its peer: read its own messages, write through the token.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::metrics::ProtoCounters;
use super::Peer;
use crate::protocol::{Msg, ProtocolError, SharedCapability};

/// The read/write handle a protocol's `run` receives. Codes are relative to the protocol:
/// it never sees another protocol's messages, and cannot write outside its own range.
pub struct ProtoRw {
    inbox: mpsc::Receiver<Msg>,
    queued_bytes: Arc<AtomicUsize>,
    writer: ProtoWriter,
}

/// The writing half of a [`ProtoRw`]; cheap to clone, so several tasks of one protocol
/// may write (each write still waits for the peer's write-start token).
#[derive(Clone)]
pub struct ProtoWriter {
    peer: Peer,
    cap: Arc<SharedCapability>,
    counters: Arc<ProtoCounters>,
}

impl ProtoRw {
    pub(crate) fn new(
        peer: Peer,
        cap: SharedCapability,
        inbox: mpsc::Receiver<Msg>,
        queued_bytes: Arc<AtomicUsize>,
        counters: Arc<ProtoCounters>,
    ) -> Self {
        ProtoRw {
            inbox,
            queued_bytes,
            writer: ProtoWriter {
                peer,
                cap: Arc::new(cap),
                counters,
            },
        }
    }

    /// The next message of this protocol. Fails with [`ProtocolError::PeerClosed`] once the
    /// peer is closing.
    pub async fn read(&mut self) -> Result<Msg, ProtocolError> {
        let shared = &self.writer.peer.shared;
        let msg = tokio::select! {
            biased;
            _ = shared.closing.cancelled() => None,
            msg = self.inbox.recv() => msg,
        };
        let msg = msg.ok_or(ProtocolError::PeerClosed)?;
        self.release(msg.size);
        Ok(msg)
    }

    /// A message of `size` bytes left the queue: it is no longer held on the peer's behalf.
    fn release(&self, size: usize) {
        let shared = &self.writer.peer.shared;
        self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
        shared.total_queued.fetch_sub(size, Ordering::AcqRel);
        shared.budget.release(size);
    }

    /// Write one message (see [`ProtoWriter::write`]).
    pub async fn write(&self, code: u64, payload: &[u8]) -> Result<(), ProtocolError> {
        self.writer.write(code, payload).await
    }

    /// A cloneable writer for this protocol.
    pub fn writer(&self) -> ProtoWriter {
        self.writer.clone()
    }

    /// The peer this handle belongs to.
    pub fn peer(&self) -> &Peer {
        &self.writer.peer
    }

    /// The negotiated capability (name, version, offset, length).
    pub fn capability(&self) -> &SharedCapability {
        &self.writer.cap
    }
}

/// A protocol that drops its reader chooses not to read: what is queued is released now,
/// and the read loop discards (without charging) whatever arrives for it afterwards.
impl Drop for ProtoRw {
    fn drop(&mut self) {
        // Closed first, so a send racing with this drop either lands before (and is drained
        // here) or fails (and the read loop releases it).
        self.inbox.close();
        while let Ok(msg) = self.inbox.try_recv() {
            self.release(msg.size);
        }
    }
}

impl ProtoWriter {
    /// Write one message with code `code` (relative to the protocol). Rejects
    /// `code >= length` with [`ProtocolError::InvalidCode`]; then waits for the peer's
    /// write-start token, writes, and gives the token back. A write error ends the peer.
    pub async fn write(&self, code: u64, payload: &[u8]) -> Result<(), ProtocolError> {
        if code >= self.cap.length {
            return Err(ProtocolError::InvalidCode {
                code,
                length: self.cap.length,
            });
        }
        let shared = &self.peer.shared;
        let size = shared
            .write_message(self.cap.offset + code, payload)
            .await
            .ok_or(ProtocolError::PeerClosed)?;
        self.counters.egress(code, size);
        shared.emit(&self.cap.name, code, size, false);
        Ok(())
    }

    /// Write a payload held in `Bytes`.
    pub async fn write_bytes(&self, code: u64, payload: Bytes) -> Result<(), ProtocolError> {
        self.write(code, &payload).await
    }

    /// The peer this writer belongs to.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }
}
