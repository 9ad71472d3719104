//! Serving `getdata`: one task per peer, with a bounded backlog, so no peer holds up the relay.

use super::*;

/// The answers to one `getdata`, and the payload bytes they count against the peer's
/// serving budget.
pub(super) struct Job {
    pub(super) messages: Vec<Message>,
    pub(super) bytes: usize,
}

/// The relay loop's side of a peer's serving task.
pub(super) struct Serving {
    pub(super) jobs: mpsc::Sender<Job>,
    /// Payload bytes accepted and not yet handed to the peer's send queue.
    pub(super) backlog: Arc<AtomicUsize>,
}

impl Serving {
    /// Start the serving task of `peer`: it feeds the answers into the peer's own send
    /// queue, waiting there as long as that peer needs (bounded by the peer's queue
    /// timeout), so only this peer's answers are held up. It ends with the peer.
    pub(super) fn start(peer: Peer) -> Serving {
        let (jobs, mut rx) = mpsc::channel::<Job>(SERVE_JOBS);
        let backlog = Arc::new(AtomicUsize::new(0));
        let left = backlog.clone();
        tokio::spawn(async move {
            loop {
                let job = tokio::select! {
                    job = rx.recv() => job,
                    _ = peer.wait_for_disconnect() => None,
                };
                let Some(job) = job else { return };
                for msg in job.messages {
                    peer.queue_message(msg, None).await;
                }
                left.fetch_sub(job.bytes, Ordering::Relaxed);
            }
        });
        Serving { jobs, backlog }
    }
}
