//! A protocol's view of its peer: read its own messages, write through the token.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;

use super::metrics::ProtoCounters;
use super::token::Flush;
use super::Peer;
use crate::capability::SharedCapability;
use crate::protocol::{Msg, ProtocolError};

/// The read/write handle a protocol's `run` receives. Codes are relative to the protocol:
/// it never sees another protocol's messages, and cannot write outside its own range.
///
/// Read with [`ProtoRw::read`], or use it as a [`Stream`] of messages that ends when the
/// peer starts closing:
///
/// ```no_run
/// # async fn run(mut rw: p2p::peer::ProtoRw) {
/// use futures::StreamExt;
/// while let Some(msg) = rw.next().await {
///     let _ = rw.write(msg.code, &msg.payload).await; // echo
/// }
/// # }
/// ```
pub struct ProtoRw {
    inbox: Inbox,
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
        inbox: Inbox,
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
        std::future::poll_fn(|cx| self.poll_read(cx))
            .await
            .ok_or(ProtocolError::PeerClosed)
    }

    /// The next message, or `None` once the peer is closing: closing wins over queued
    /// messages. The closing flag is one atomic load, and closing wakes every waiting
    /// reader, so a read needs no closing future of its own (a lock on the cancellation
    /// token per read).
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Option<Msg>> {
        let shared = &self.writer.peer.shared;
        if shared.is_closing() {
            return Poll::Ready(None);
        }
        match self.inbox.poll_recv(cx) {
            Poll::Ready(Some(msg)) => {
                release(&self.writer.peer, &self.queued_bytes, msg.payload.len());
                Poll::Ready(Some(msg))
            }
            Poll::Ready(None) => Poll::Ready(None),
            // Closed between the first look and registering: its wake may have been missed.
            Poll::Pending if shared.is_closing() => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Write one message (see [`ProtoWriter::write`]). With no message of this protocol
    /// waiting to be read, the protocol is about to wait for the remote: the message (and
    /// whatever was queued before it) is written at once rather than coalesced, so an answer
    /// to a lone request loses no time.
    pub async fn write(&self, code: u64, payload: &[u8]) -> Result<(), ProtocolError> {
        let flush = if self.inbox.is_empty() {
            Flush::Now
        } else {
            Flush::Soon
        };
        self.writer.write_with(code, payload, flush).await
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

/// Messages until the peer starts closing, exactly as [`ProtoRw::read`] delivers them.
impl Stream for ProtoRw {
    type Item = Msg;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Msg>> {
        self.get_mut().poll_read(cx)
    }
}

/// A protocol that drops its reader chooses not to read: what is queued is released now,
/// and the read loop discards (without charging) whatever arrives for it afterwards.
impl Drop for ProtoRw {
    fn drop(&mut self) {
        drain(&self.inbox, &self.writer.peer, &self.queued_bytes);
    }
}

/// A protocol's inbound queue, shared between its [`ProtoRw`] and the peer's read loop
/// (which drains it when the peer ends, so queued bytes go back to the node budget at once
/// rather than when the protocol gets round to returning).
pub(crate) type Inbox = Arc<super::inbox::Inbox>;

/// A message of `size` bytes left a queue: it is no longer held on the peer's behalf.
fn release(peer: &Peer, queued_bytes: &AtomicUsize, size: usize) {
    let shared = &peer.shared;
    queued_bytes.fetch_sub(size, Ordering::AcqRel);
    shared.total_queued.fetch_sub(size, Ordering::AcqRel);
    shared.budget.release(size);
}

/// Close `inbox` and release everything still queued in it. Closed first, so a push racing
/// with this either lands before (and is released here) or fails (and the read loop
/// releases it).
pub(crate) fn drain(inbox: &Inbox, peer: &Peer, queued_bytes: &AtomicUsize) {
    for msg in inbox.close() {
        release(peer, queued_bytes, msg.payload.len());
    }
}

impl ProtoWriter {
    /// Write one message with code `code` (relative to the protocol). Rejects
    /// `code >= length` with [`ProtocolError::InvalidCode`]; then waits for the peer's
    /// write-start token, seals the message, and gives the token back.
    ///
    /// The sealed message is coalesced with others written before the writing task yields:
    /// the peer's supervisor writes them to the socket together as soon as it does (see
    /// [`Peer`](super::Peer)). Once a peer's queued bytes pass 64 KiB the writer writes them
    /// itself, waiting for the socket. A write error ends the peer.
    pub async fn write(&self, code: u64, payload: &[u8]) -> Result<(), ProtocolError> {
        self.write_with(code, payload, Flush::Soon).await
    }

    async fn write_with(
        &self,
        code: u64,
        payload: &[u8],
        flush: Flush,
    ) -> Result<(), ProtocolError> {
        if code >= self.cap.length {
            return Err(ProtocolError::InvalidCode {
                code,
                length: self.cap.length,
            });
        }
        let shared = &self.peer.shared;
        let size = shared
            .write_message(self.cap.offset + code, payload, flush)
            .await
            .ok_or(ProtocolError::PeerClosed)?;
        self.counters.egress(code, size);
        shared.emit(&self.cap.name, code, size, false);
        Ok(())
    }

    /// The peer this writer belongs to.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }
}
