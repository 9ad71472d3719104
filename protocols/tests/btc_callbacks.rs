//! Stall detection excludes time spent in listener callbacks, checked through a running
//! peer on the real clock (a paused clock cannot advance while a sync callback blocks).
//!
//! We send a `getdata` (arming its stall deadline); the remote then sends an `inv` whose
//! callback blocks (a real `std::thread::sleep`) for much longer than the stall timeout,
//! and answers the `getdata` only after that callback has returned. With the blocking
//! callback the deadline moved back by the callback's duration, so the answer is in time:
//! no stall. Control, the same remote without the blocking callback (so the same request
//! goes unanswered for as long): disconnected for stalling.
//!
//! The peer's reader, writer and stall ticker share one task, so the ticker cannot fire
//! while a callback blocks; it fires as soon as the reader waits for the answer, and that
//! is when the moved deadline matters.
//!
//! Margins (a loaded 2-core machine): stall timeout 600 ms, checked every 25 ms. The `inv`
//! must reach the callback within 600 ms of the `getdata` (it takes milliseconds). The
//! answer comes 2.1 s after the request and at least 100 ms after a 2 s callback returned:
//! 1.5 s past the control's deadline, and about 500 ms before the moved one.

mod btc_support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use btc_support::*;
use protocols::bitcoin::peer::{Config, Listener, Peer, PeerError};
use protocols::bitcoin::wire::{inv_type, Command, Hash256, InvVect, Message, Tx};

const STALL_TIMEOUT: Duration = Duration::from_millis(600);
const STALL_TICK: Duration = Duration::from_millis(25);
/// The remote answers the getdata this long after receiving it...
const ANSWER_AFTER: Duration = Duration::from_millis(2100);
/// ...and at least this long after the `inv` callback returned, so the stall ticker has
/// run in between.
const GAP: Duration = Duration::from_millis(100);
/// How long the blocking callback blocks.
const BLOCK: Duration = Duration::from_millis(2000);
/// Real-time patience for things that should happen promptly.
const PROMPTLY: Duration = Duration::from_secs(10);

/// Blocks in `on_inv` for `block`; counts transactions. Reports through atomics, so the
/// test never depends on a task woken from inside a blocked callback.
struct SlowInv {
    block: Duration,
    inv_started: AtomicBool,
    /// When the callback returned and how long it took.
    inv_done: Mutex<Option<(Instant, Duration)>>,
    txs: AtomicUsize,
}

impl Listener for SlowInv {
    fn on_inv(&self, _: &Peer, _: &[InvVect]) {
        self.inv_started.store(true, Ordering::SeqCst);
        let start = Instant::now();
        if !self.block.is_zero() {
            std::thread::sleep(self.block);
        }
        *self.inv_done.lock().unwrap() = Some((Instant::now(), start.elapsed()));
    }
    fn on_tx(&self, _: &Peer, _: &Tx) {
        self.txs.fetch_add(1, Ordering::SeqCst);
    }
}

/// Polls `cond` on the real clock.
async fn poll_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + PROMPTLY;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Handshake; our `getdata`; the remote's `inv`, whose callback blocks for `block`; the
/// remote's `tx` answer [`ANSWER_AFTER`] after the request and [`GAP`] after the callback
/// returned (if the peer is still up).
/// Returns the remote too: dropping it would close the connection.
async fn scenario(block: Duration) -> (Peer, Arc<SlowInv>, Raw) {
    let listener = Arc::new(SlowInv {
        block,
        inv_started: AtomicBool::new(false),
        inv_done: Mutex::new(None),
        txs: AtomicUsize::new(0),
    });
    let config = Config {
        stall_response_timeout: STALL_TIMEOUT,
        stall_tick_interval: STALL_TICK,
        listener: listener.clone(),
        ..cfg()
    };
    let (peer, mut raw) = handshaken(config, true).await;

    let tx = sample_tx(7);
    let request = InvVect {
        inv_type: inv_type::TX,
        hash: tx.txid(),
    };
    peer.queue_message(Message::GetData(vec![request]), None)
        .await;
    assert_eq!(raw.recv_cmd().await, Message::GetData(vec![request]));
    let asked = Instant::now();
    let announced = InvVect {
        inv_type: inv_type::TX,
        hash: Hash256([1; 32]),
    };
    raw.send(&Message::Inv(vec![announced])).await;
    poll_until("the inv callback to start", || {
        listener.inv_started.load(Ordering::SeqCst)
    })
    .await;
    tokio::time::sleep(ANSWER_AFTER.saturating_sub(asked.elapsed())).await;
    poll_until("the inv callback to return", || {
        listener.inv_done.lock().unwrap().is_some()
    })
    .await;
    let returned = listener.inv_done.lock().unwrap().map(|(at, _)| at);
    if let Some(at) = returned {
        tokio::time::sleep(GAP.saturating_sub(at.elapsed())).await;
    }
    if peer.connected() {
        raw.send(&Message::Tx(tx)).await;
    }
    (peer, listener, raw)
}

// Multi-threaded: the remote (this test) must keep running while the callback blocks
// the peer's thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_time_does_not_count_toward_a_stall() {
    let (peer, listener, _raw) = scenario(BLOCK).await;
    poll_until("the tx answer to be read", || {
        listener.txs.load(Ordering::SeqCst) == 1 || peer.is_done()
    })
    .await;
    assert!(
        peer.connected(),
        "disconnected although the callback held the answer up: {:?}",
        peer.close_reason()
    );
    let (_, spent) = listener
        .inv_done
        .lock()
        .unwrap()
        .expect("callback returned");
    assert!(spent >= BLOCK, "the callback really blocked ({spent:?})");
    // Nothing is pending now, so a few more stall timeouts pass without a disconnect.
    tokio::time::sleep(STALL_TIMEOUT * 3).await;
    assert!(peer.connected(), "{:?}", peer.close_reason());
    peer.disconnect();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_blocking_callback_the_same_answer_is_a_stall() {
    let (peer, listener, _raw) = scenario(Duration::ZERO).await;
    poll_until("the stall disconnect", || peer.is_done()).await;
    // Any of the four getdata answers was awaited; the lowest command is reported.
    assert_eq!(
        peer.close_reason(),
        Some(PeerError::Stalled(Command::NotFound))
    );
    assert_eq!(
        listener.txs.load(Ordering::SeqCst),
        0,
        "the answer came too late"
    );
    assert!(listener.inv_started.load(Ordering::SeqCst));
}
