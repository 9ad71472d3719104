//! Deadlines paid only when a wait happens: for the per-message reads and writes of a
//! running peer, and the writes of its end.
//!
//! `tokio::time::timeout` registers a timer (a clock read and a lock on the timer wheel)
//! every call, and most reads (from the buffer) and writes (into the socket's buffer)
//! complete on the first poll. So the future is polled once first; the timer is armed only
//! if it has to wait. Arming one is not only a lock: a deadline earlier than the one the
//! runtime's timer is parked on wakes the thread parked there, another core on a small
//! machine.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

/// `fut`'s output, or `Err(Elapsed)` when it has not completed within `limit`.
pub(crate) async fn within<F: Future>(limit: Duration, fut: F) -> Result<F::Output, Elapsed> {
    let mut fut = pin!(fut);
    if let Poll::Ready(out) = futures::poll!(fut.as_mut()) {
        return Ok(out);
    }
    tokio::time::timeout(limit, fut).await.map_err(|_| Elapsed)
}

/// The wait ran out of time.
#[derive(Debug)]
pub(crate) struct Elapsed;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ready_futures_need_no_timer_and_slow_ones_time_out() {
        assert_eq!(within(Duration::ZERO, async { 7 }).await.ok(), Some(7));
        let slow = tokio::time::sleep(Duration::from_secs(10));
        assert!(within(Duration::from_secs(1), slow).await.is_err());
        let in_time = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            8
        };
        assert_eq!(within(Duration::from_secs(1), in_time).await.ok(), Some(8));
    }
}
