//! Learning our public IP from what other nodes saw: each discovery pong says which
//! address our ping came from. Behind a NAT without UPnP or NAT-PMP that is the router's
//! public address, which nothing local can tell.
//!
//! One vote per reporting IP (its latest), votes expire after a window, and an address
//! is predicted only when enough distinct reporters agree (go-ethereum asks for 10
//! statements within 5 minutes), so a few lying nodes cannot move us.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::interface::is_dialable;

/// Distinct reporters that must agree before an address is believed (go-ethereum's).
pub(crate) const DEFAULT_MIN_VOTES: usize = 10;
/// How long a vote counts.
pub(crate) const DEFAULT_WINDOW: Duration = Duration::from_secs(5 * 60);
/// Reporters remembered at most; the oldest vote is forgotten first.
pub(crate) const MAX_REPORTERS: usize = 256;

/// Votes on our public IP, by reporter.
#[derive(Debug, Clone)]
pub(crate) struct EndpointVotes {
    min_votes: usize,
    window: Duration,
    votes: HashMap<IpAddr, (IpAddr, Instant)>,
}

impl EndpointVotes {
    /// A tally that believes an address once `min_votes` (at least 1) distinct reporters
    /// named it within `window`.
    pub(crate) fn new(min_votes: usize, window: Duration) -> EndpointVotes {
        EndpointVotes {
            min_votes: min_votes.max(1),
            window,
            votes: HashMap::new(),
        }
    }

    /// `reporter` saw us at `seen`. Undialable addresses are ignored.
    pub(crate) fn add(&mut self, reporter: IpAddr, seen: IpAddr, now: Instant) {
        if !is_dialable(seen) {
            return;
        }
        self.expire(now);
        if !self.votes.contains_key(&reporter) && self.votes.len() >= MAX_REPORTERS {
            if let Some(oldest) = self
                .votes
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(r, _)| *r)
            {
                self.votes.remove(&oldest);
            }
        }
        self.votes.insert(reporter, (seen, now));
    }

    /// The address most reporters named, if at least `min_votes` did.
    pub(crate) fn predict(&self, now: Instant) -> Option<IpAddr> {
        let mut tally: HashMap<IpAddr, usize> = HashMap::new();
        for (seen, at) in self.votes.values() {
            if now.saturating_duration_since(*at) <= self.window {
                *tally.entry(*seen).or_default() += 1;
            }
        }
        tally
            .into_iter()
            .filter(|(_, n)| *n >= self.min_votes)
            .max_by_key(|(ip, n)| (*n, *ip))
            .map(|(ip, _)| ip)
    }

    fn expire(&mut self, now: Instant) {
        let window = self.window;
        self.votes
            .retain(|_, (_, at)| now.saturating_duration_since(*at) <= window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn needs_enough_distinct_reporters() {
        let now = Instant::now();
        let mut v = EndpointVotes::new(3, DEFAULT_WINDOW);
        v.add(ip("10.0.0.1"), ip("198.51.100.9"), now);
        // The same reporter again is still one vote.
        v.add(ip("10.0.0.1"), ip("198.51.100.9"), now);
        v.add(ip("10.0.0.2"), ip("198.51.100.9"), now);
        assert_eq!(v.predict(now), None);
        v.add(ip("10.0.0.3"), ip("198.51.100.9"), now);
        assert_eq!(v.predict(now), Some(ip("198.51.100.9")));
    }

    #[test]
    fn the_majority_wins_and_a_reporter_can_change_its_vote() {
        let now = Instant::now();
        let mut v = EndpointVotes::new(2, DEFAULT_WINDOW);
        for r in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
            v.add(ip(r), ip("198.51.100.9"), now);
        }
        for r in ["10.0.0.4", "10.0.0.5"] {
            v.add(ip(r), ip("203.0.113.1"), now);
        }
        assert_eq!(v.predict(now), Some(ip("198.51.100.9")));
        v.add(ip("10.0.0.1"), ip("203.0.113.1"), now);
        v.add(ip("10.0.0.2"), ip("203.0.113.1"), now);
        assert_eq!(v.predict(now), Some(ip("203.0.113.1")));
    }

    #[test]
    fn votes_expire_and_junk_is_ignored() {
        let t0 = Instant::now();
        let mut v = EndpointVotes::new(2, Duration::from_secs(60));
        v.add(ip("10.0.0.1"), ip("198.51.100.9"), t0);
        v.add(ip("10.0.0.2"), ip("198.51.100.9"), t0);
        assert!(v.predict(t0).is_some());
        assert_eq!(v.predict(t0 + Duration::from_secs(61)), None);
        v.add(ip("10.0.0.3"), ip("0.0.0.0"), t0);
        v.add(ip("10.0.0.4"), ip("0.0.0.0"), t0);
        v.add(ip("10.0.0.5"), ip("224.0.0.1"), t0);
        assert_eq!(v.predict(t0), Some(ip("198.51.100.9")));
    }

    #[test]
    fn reporters_are_bounded() {
        let now = Instant::now();
        let mut v = EndpointVotes::new(1, DEFAULT_WINDOW);
        for i in 0..(MAX_REPORTERS as u32 + 50) {
            let reporter = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000u32 + i));
            v.add(
                reporter,
                ip("198.51.100.9"),
                now + Duration::from_millis(i.into()),
            );
        }
        assert_eq!(v.votes.len(), MAX_REPORTERS);
    }
}
