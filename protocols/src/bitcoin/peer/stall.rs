//! Stall detection: deadlines for the responses our requests expect.
//!
//! Deadlines are armed when a request is handed to the writer and keyed by the expected
//! response command, so a second request of a kind replaces the first's deadline. Time the
//! reading task spends in listener callbacks is added to every pending deadline (btcd only
//! extends deadlines for the check window the callback ran in; we make it cumulative).
//!
//! A `getdata` is satisfied item by item: its deadline is cleared only when every item
//! it named was answered (by a `tx`, `block`, `merkleblock`, or a `notfound` naming it),
//! and pushed back by one timeout whenever an answer names one of them. A reply that
//! names nothing we asked for (an empty `notfound`, an unsolicited `tx`) changes nothing,
//! so it cannot keep a peer that withholds data from being found stalled. (btcd clears
//! the deadline on any such reply.)

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

use crate::bitcoin::wire::{Command, Hash256, Message, MAX_INV_PER_MSG};

/// The responses that satisfy a `getdata`.
const GETDATA_RESPONSES: [Command; 4] = [
    Command::Block,
    Command::MerkleBlock,
    Command::Tx,
    Command::NotFound,
];

/// Most `getdata` items remembered as awaiting an answer. Items beyond this are not
/// tracked one by one; while the set is empty any `getdata` answer clears the deadline.
const MAX_PENDING_ITEMS: usize = 2 * MAX_INV_PER_MSG;

/// Pending response deadlines plus the running callback, if any.
#[derive(Debug, Default)]
pub(crate) struct StallState {
    deadlines: HashMap<Command, Instant>,
    handler_start: Option<Instant>,
    /// Hashes named by our `getdata`s and not answered yet.
    pending: HashSet<Hash256>,
    /// The `getdata` response timeout last armed (to push the deadline back).
    getdata_timeout: Duration,
}

impl StallState {
    /// `msg` went to the writer at `now`: arm the deadlines of its responses and, for a
    /// `getdata`, remember the items it asks for.
    pub(crate) fn sent_message(&mut self, msg: &Message, now: Instant, base: Duration) {
        if let Message::GetData(inv) = msg {
            self.getdata_timeout = base;
            for iv in inv {
                if self.pending.len() >= MAX_PENDING_ITEMS {
                    break;
                }
                self.pending.insert(iv.hash);
            }
        }
        self.sent(msg.command(), now, base);
    }

    /// `msg` arrived at `now`: the expectations it satisfies are gone (see the module
    /// documentation for `getdata` answers).
    pub(crate) fn received_message(&mut self, msg: &Message, now: Instant) {
        if self.pending.is_empty() || !GETDATA_RESPONSES.contains(&msg.command()) {
            self.received(msg.command());
            return;
        }
        let mut answered = false;
        let mut take = |h: Hash256| answered |= self.pending.remove(&h);
        match msg {
            Message::Tx(tx) => take(tx.txid()),
            Message::Block(block) => take(block.hash()),
            Message::MerkleBlock(mb) => take(mb.header.hash()),
            Message::NotFound(inv) => inv.iter().for_each(|iv| take(iv.hash)),
            _ => {}
        }
        if !answered {
            return;
        }
        if self.pending.is_empty() {
            self.received(msg.command());
        } else {
            let deadline = now + self.getdata_timeout;
            for r in GETDATA_RESPONSES {
                if let Some(d) = self.deadlines.get_mut(&r) {
                    *d = (*d).max(deadline);
                }
            }
        }
    }

    /// `sent` went to the writer at `now`: arm the deadlines of its responses.
    fn sent(&mut self, sent: Command, now: Instant, base: Duration) {
        let (responses, timeout): (&[Command], Duration) = match sent {
            Command::Version => (&[Command::Verack], base),
            Command::MemPool | Command::GetBlocks => (&[Command::Inv], base),
            Command::GetData => (&GETDATA_RESPONSES, base),
            Command::GetHeaders => (&[Command::Headers], base.saturating_mul(3)),
            // Pings are deliberately untracked (a missing pong is not a stall).
            _ => return,
        };
        for r in responses {
            self.deadlines.insert(*r, now + timeout);
        }
    }

    /// `cmd` arrived: the expectations it satisfies are gone.
    fn received(&mut self, cmd: Command) {
        if GETDATA_RESPONSES.contains(&cmd) {
            for r in GETDATA_RESPONSES {
                self.deadlines.remove(&r);
            }
        } else {
            self.deadlines.remove(&cmd);
        }
    }

    /// A listener callback starts.
    pub(crate) fn handler_start(&mut self, now: Instant) {
        self.handler_start = Some(now);
    }

    /// The running callback ended: push every deadline back by its duration.
    pub(crate) fn handler_done(&mut self, now: Instant) {
        if let Some(start) = self.handler_start.take() {
            let spent = now.saturating_duration_since(start);
            for d in self.deadlines.values_mut() {
                *d += spent;
            }
        }
    }

    /// The first expected response whose deadline passed at `now`, not counting the time
    /// of a callback still running.
    pub(crate) fn overdue(&self, now: Instant) -> Option<Command> {
        let running = self
            .handler_start
            .map(|s| now.saturating_duration_since(s))
            .unwrap_or_default();
        self.deadlines
            .iter()
            .filter(|(_, d)| now >= **d + running)
            .map(|(c, _)| *c)
            .min()
    }

    /// Whether a response to `cmd` is awaited (for tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn expects(&self, cmd: Command) -> bool {
        self.deadlines.contains_key(&cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn getdata_is_satisfied_by_any_of_four() {
        for resp in GETDATA_RESPONSES {
            let mut s = StallState::default();
            let t0 = Instant::now();
            s.sent(Command::GetData, t0, B);
            assert!(s.expects(Command::Tx));
            s.received(resp);
            assert_eq!(s.overdue(t0 + B * 10), None, "{resp}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn getheaders_gets_three_times_the_base() {
        let mut s = StallState::default();
        let t0 = Instant::now();
        s.sent(Command::GetHeaders, t0, B);
        assert_eq!(s.overdue(t0 + B * 3 - Duration::from_millis(1)), None);
        assert_eq!(s.overdue(t0 + B * 3), Some(Command::Headers));
    }

    #[tokio::test(start_paused = true)]
    async fn ping_is_not_tracked_and_other_replies_do_not_clear() {
        let mut s = StallState::default();
        let t0 = Instant::now();
        s.sent(Command::Ping, t0, B);
        assert_eq!(s.overdue(t0 + B * 10), None);
        s.sent(Command::GetBlocks, t0, B);
        s.received(Command::Headers);
        assert_eq!(s.overdue(t0 + B), Some(Command::Inv));
    }

    #[tokio::test(start_paused = true)]
    async fn callback_time_is_excluded_cumulatively() {
        let mut s = StallState::default();
        let t0 = Instant::now();
        s.sent(Command::MemPool, t0, B);
        // A 20 s callback, then a second 20 s callback: 70 s of budget in total.
        s.handler_start(t0 + Duration::from_secs(1));
        assert_eq!(
            s.overdue(t0 + Duration::from_secs(40)),
            None,
            "running callback"
        );
        s.handler_done(t0 + Duration::from_secs(21));
        s.handler_start(t0 + Duration::from_secs(22));
        s.handler_done(t0 + Duration::from_secs(42));
        assert_eq!(s.overdue(t0 + Duration::from_secs(69)), None);
        assert_eq!(s.overdue(t0 + Duration::from_secs(70)), Some(Command::Inv));
    }

    fn iv(n: u8) -> crate::bitcoin::wire::InvVect {
        crate::bitcoin::wire::InvVect {
            inv_type: crate::bitcoin::wire::inv_type::TX,
            hash: Hash256::hash(&[n]),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn notfound_clears_only_the_items_it_names() {
        let mut s = StallState::default();
        let t0 = Instant::now();
        s.sent_message(&Message::GetData(vec![iv(1), iv(2)]), t0, B);
        // An empty notfound, or one naming items never asked for, satisfies nothing.
        s.received_message(&Message::NotFound(vec![]), t0);
        s.received_message(&Message::NotFound(vec![iv(9)]), t0);
        assert!(s.overdue(t0 + B).is_some());
        // Naming one item is progress: the deadline moves, the other item still counts.
        let t1 = t0 + Duration::from_secs(10);
        s.received_message(&Message::NotFound(vec![iv(1)]), t1);
        assert_eq!(s.overdue(t0 + B), None);
        assert!(s.overdue(t1 + B).is_some());
        s.received_message(&Message::NotFound(vec![iv(2), iv(3)]), t1);
        assert_eq!(s.overdue(t1 + B * 10), None, "every item answered");
    }

    #[tokio::test(start_paused = true)]
    async fn unsolicited_tx_does_not_satisfy_a_getdata() {
        let tx = crate::bitcoin::wire::Tx::from_bytes(bytes::Bytes::from_static(&[
            1, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ]))
        .unwrap();
        let mut s = StallState::default();
        let t0 = Instant::now();
        s.sent_message(&Message::GetData(vec![iv(1)]), t0, B);
        s.received_message(&Message::Tx(tx.clone()), t0);
        assert!(s.overdue(t0 + B).is_some());
        let asked = crate::bitcoin::wire::InvVect {
            inv_type: crate::bitcoin::wire::inv_type::WITNESS_TX,
            hash: tx.txid(),
        };
        s.sent_message(&Message::GetData(vec![asked]), t0, B);
        s.received_message(&Message::Tx(tx), t0);
        s.received_message(&Message::NotFound(vec![iv(1)]), t0);
        assert_eq!(s.overdue(t0 + B * 10), None);
    }
}
