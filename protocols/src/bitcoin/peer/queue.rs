//! The outgoing queue's items and the "sent, or will never be sent" notification.

use tokio::sync::{mpsc, oneshot};

use crate::bitcoin::wire::{InvVect, Message};

/// btcd `outputBufferSize`: capacity of the message and inventory queues.
pub const OUTPUT_BUFFER_SIZE: usize = 50;

/// What became of a queued message. Delivered exactly once per notification channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Written to the transport.
    Sent,
    /// The write failed (the peer disconnects).
    Failed,
    /// Never written: not connected, queue full/closed, or drained at shutdown.
    Dropped,
}

/// Fires its notification once; dropping it unfired reports [`SendOutcome::Dropped`], so
/// every path (including shutdown drains and cancelled sends) notifies.
#[derive(Debug, Default)]
pub(crate) struct Done(Option<oneshot::Sender<SendOutcome>>);

impl Done {
    pub(crate) fn new(tx: Option<oneshot::Sender<SendOutcome>>) -> Self {
        Done(tx)
    }

    pub(crate) fn fire(mut self, outcome: SendOutcome) {
        if let Some(tx) = self.0.take() {
            // The receiver may be gone; nobody is waiting then.
            let _ = tx.send(outcome);
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(SendOutcome::Dropped);
        }
    }
}

/// One queued message.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub msg: Message,
    pub done: Done,
}

/// The receiving ends of the queues, owned by the writer task once the peer runs.
#[derive(Debug)]
pub(crate) struct Queues {
    pub out: mpsc::Receiver<Outgoing>,
    pub inv: mpsc::Receiver<InvVect>,
}

impl Queues {
    /// Close both queues and drop what they hold (firing each notification as Dropped).
    pub(crate) fn drain(mut self) {
        self.out.close();
        self.inv.close();
        while self.out.try_recv().is_ok() {}
        while self.inv.try_recv().is_ok() {}
    }
}
