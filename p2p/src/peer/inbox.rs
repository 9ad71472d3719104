//! A protocol's inbound queue: bounded, one producer (the read loop) and one consumer (the
//! protocol's [`ProtoRw`](super::ProtoRw)), and no memory at all while empty.
//!
//! A plain deque under a short lock rather than a channel: a channel preallocates a block
//! of slots per protocol per peer (2 KiB for every idle peer), and its receiver needs an
//! async lock to be shared with the drain at the peer's end; here the drain and the reader
//! each take the lock for a few instructions.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll};

use futures::task::AtomicWaker;

use crate::protocol::Msg;

/// Why a message could not be queued (it is dropped).
pub(super) enum PushError {
    /// The queue holds its maximum number of messages.
    Full,
    /// The reader is gone (or the peer is ending): nobody will read it.
    Closed,
}

/// Above this many slots, a queue that empties gives its buffer back.
const KEEP_SLOTS: usize = 16;

pub(crate) struct Inbox {
    state: Mutex<State>,
    /// The reader's waker, woken on every push and on close.
    reader: AtomicWaker,
}

struct State {
    queue: VecDeque<Msg>,
    max: usize,
    closed: bool,
}

impl Inbox {
    /// An empty queue of at most `max` messages (at least one).
    pub(super) fn new(max: usize) -> Self {
        Inbox {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                max: max.max(1),
                closed: false,
            }),
            reader: AtomicWaker::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned lock still holds a valid deque.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `msg` for the reader, without waiting.
    pub(super) fn push(&self, msg: Msg) -> Result<(), PushError> {
        {
            let mut state = self.state();
            if state.closed {
                return Err(PushError::Closed);
            }
            if state.queue.len() >= state.max {
                return Err(PushError::Full);
            }
            state.queue.push_back(msg);
        }
        self.reader.wake();
        Ok(())
    }

    /// Wake the reader (if waiting) to look again: the peer is closing.
    pub(super) fn wake_reader(&self) {
        self.reader.wake();
    }

    /// Whether no message waits.
    pub(super) fn is_empty(&self) -> bool {
        self.state().queue.is_empty()
    }

    /// Whether more than half of its slots are taken.
    pub(super) fn over_half_full(&self) -> bool {
        let state = self.state();
        state.queue.len() > state.max / 2
    }

    /// The next message; `Ready(None)` once closed and empty. Only the one reader may poll.
    pub(super) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<Msg>> {
        // Registered before looking, so a push between the look and the return wakes us.
        self.reader.register(cx.waker());
        let mut state = self.state();
        match state.queue.pop_front() {
            Some(msg) => {
                if state.queue.is_empty() && state.queue.capacity() > KEEP_SLOTS {
                    state.queue = VecDeque::new();
                }
                Poll::Ready(Some(msg))
            }
            None if state.closed => Poll::Ready(None),
            None => Poll::Pending,
        }
    }

    /// The next message, or `None` once closed and empty.
    #[cfg(test)]
    pub(super) async fn recv(&self) -> Option<Msg> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Close the queue and hand back everything in it: later pushes fail with
    /// [`PushError::Closed`], and the reader sees the end once it has what was taken.
    pub(super) fn close(&self) -> VecDeque<Msg> {
        let taken = {
            let mut state = self.state();
            state.closed = true;
            std::mem::take(&mut state.queue)
        };
        self.reader.wake();
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::Arc;

    fn msg(code: u64) -> Msg {
        Msg {
            code,
            payload: Bytes::from_static(b"x"),
            received_at: std::time::Instant::now(),
        }
    }

    #[tokio::test]
    async fn delivers_in_order_and_refuses_beyond_its_bound() {
        let inbox = Inbox::new(3);
        for code in 0..3 {
            assert!(inbox.push(msg(code)).is_ok());
        }
        assert!(matches!(inbox.push(msg(9)), Err(PushError::Full)));
        for code in 0..3 {
            assert_eq!(inbox.recv().await.map(|m| m.code), Some(code));
        }
        assert!(!inbox.over_half_full());
        assert_eq!(inbox.state().queue.len(), 0);
    }

    #[tokio::test]
    async fn a_waiting_reader_wakes_on_push_and_on_close() {
        let inbox = Arc::new(Inbox::new(8));
        let reader = {
            let inbox = inbox.clone();
            tokio::spawn(async move {
                let first = inbox.recv().await.map(|m| m.code);
                let end = inbox.recv().await.map(|m| m.code);
                (first, end)
            })
        };
        tokio::task::yield_now().await;
        assert!(inbox.push(msg(7)).is_ok());
        tokio::task::yield_now().await;
        let _ = inbox.close();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), reader)
            .await
            .expect("reader woke")
            .expect("reader task");
        assert_eq!(got, (Some(7), None));
    }

    #[tokio::test]
    async fn close_hands_back_what_is_queued_and_refuses_more() {
        let inbox = Inbox::new(8);
        assert!(inbox.push(msg(1)).is_ok());
        assert!(inbox.push(msg(2)).is_ok());
        let taken: Vec<u64> = inbox.close().into_iter().map(|m| m.code).collect();
        assert_eq!(taken, vec![1, 2]);
        assert!(matches!(inbox.push(msg(3)), Err(PushError::Closed)));
        assert!(inbox.recv().await.is_none());
    }

    #[test]
    fn an_emptied_queue_gives_its_buffer_back() {
        let inbox = Inbox::new(1_000);
        for code in 0..100 {
            assert!(inbox.push(msg(code)).is_ok());
        }
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        while let Poll::Ready(Some(_)) = inbox.poll_recv(&mut cx) {}
        assert_eq!(inbox.state().queue.capacity(), 0);
    }
}
