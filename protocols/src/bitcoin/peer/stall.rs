//! Stall detection: deadlines for the responses our requests expect.
//!
//! Deadlines are armed when a request is handed to the writer and keyed by the expected
//! response command, so a second request of a kind replaces the first's deadline. Time the
//! reading task spends in listener callbacks is added to every pending deadline (btcd only
//! extends deadlines for the check window the callback ran in; we make it cumulative).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::bitcoin::wire::Command;

/// The responses that satisfy a `getdata`.
const GETDATA_RESPONSES: [Command; 4] = [
    Command::Block,
    Command::MerkleBlock,
    Command::Tx,
    Command::NotFound,
];

/// Pending response deadlines plus the running callback, if any.
#[derive(Debug, Default)]
pub(crate) struct StallState {
    deadlines: HashMap<Command, Instant>,
    handler_start: Option<Instant>,
}

impl StallState {
    /// `sent` went to the writer at `now`: arm the deadlines of its responses.
    pub(crate) fn sent(&mut self, sent: Command, now: Instant, base: Duration) {
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
    pub(crate) fn received(&mut self, cmd: Command) {
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
}
