//! Which peer to ask for which announced item, modelled on Bitcoin Core's
//! `TxRequestTracker`.
//!
//! Every announcement is remembered per announcing peer, so when the peer that was asked
//! fails (answers `notfound`, times out, disconnects, or the request could not be sent)
//! the next announcer is asked. Bounds keep one peer from starving everyone else:
//! at most [`TxRequestConfig::max_announcements_per_peer`] live announcements per peer
//! (more are ignored) and at most [`TxRequestConfig::max_in_flight_per_peer`] outstanding
//! requests per peer; a peer at its request cap is passed over in favour of another
//! announcer of the same item.
//!
//! The tracker is pure state: no sockets, no tasks, no clock of its own. Every call that
//! depends on time takes `now`, so it is tested with an injected clock.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// Core's `MAX_PEER_TX_ANNOUNCEMENTS`.
pub const MAX_PEER_ANNOUNCEMENTS: usize = 5000;
/// Core's `MAX_PEER_TX_REQUEST_IN_FLIGHT`.
pub const MAX_PEER_IN_FLIGHT: usize = 100;
/// Core's `GETDATA_TX_INTERVAL`: how long a request may stay unanswered.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Core's `NONPREF_PEER_TX_DELAY`: announcements from non-preferred (inbound) peers wait
/// this long, so a preferred announcer is asked first.
pub const NON_PREFERRED_DELAY: Duration = Duration::from_secs(2);
/// Core's `OVERLOADED_PEER_TX_DELAY`: extra wait for announcements from a peer that
/// already has [`MAX_PEER_IN_FLIGHT`] requests outstanding.
pub const OVERLOADED_DELAY: Duration = Duration::from_secs(2);

/// The tracker's bounds and delays; [`Default`] gives Bitcoin Core's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxRequestConfig {
    /// Live announcements kept per peer; beyond this a peer's announcements are ignored.
    pub max_announcements_per_peer: usize,
    /// Outstanding requests per peer.
    pub max_in_flight_per_peer: usize,
    /// A request unanswered for this long fails and the next announcer is asked.
    pub request_timeout: Duration,
    /// Delay before an announcement from a non-preferred peer may be requested.
    pub non_preferred_delay: Duration,
    /// Delay for announcements from a peer at its request cap.
    pub overloaded_delay: Duration,
}

impl Default for TxRequestConfig {
    fn default() -> Self {
        TxRequestConfig {
            max_announcements_per_peer: MAX_PEER_ANNOUNCEMENTS,
            max_in_flight_per_peer: MAX_PEER_IN_FLIGHT,
            request_timeout: REQUEST_TIMEOUT,
            non_preferred_delay: NON_PREFERRED_DELAY,
            overloaded_delay: OVERLOADED_DELAY,
        }
    }
}

/// What became of an announcement passed to [`TxRequestTracker::received_inv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvOutcome {
    /// Remembered.
    Added,
    /// This peer had already announced the item.
    Duplicate,
    /// The peer is at its announcement cap (or unknown to the tracker); ignored.
    OverLimit,
}

/// One announcement's timing.
#[derive(Debug, Clone, Copy)]
struct Ann {
    /// Not requested before this.
    ready_at: Instant,
    /// Global announcement order: among equals, the first announcer is asked first.
    seq: u64,
}

#[derive(Debug)]
struct PeerState<K> {
    preferred: bool,
    /// Every live announcement of this peer, requested or not.
    announced: HashMap<K, Ann>,
    /// Outstanding requests and their deadlines (a subset of `announced`).
    requested: HashMap<K, Instant>,
}

#[derive(Debug, Default)]
struct ItemState {
    /// Peers with a live announcement of the item (each at most once).
    announcers: Vec<u64>,
    /// The peer currently asked, if any.
    requested_from: Option<u64>,
}

/// Tracks announcements and requests of items of type `K` (e.g. a txid) by peer id.
#[derive(Debug)]
pub struct TxRequestTracker<K> {
    cfg: TxRequestConfig,
    peers: HashMap<u64, PeerState<K>>,
    items: HashMap<K, ItemState>,
    next_seq: u64,
}

impl<K: Copy + Eq + Hash> TxRequestTracker<K> {
    /// An empty tracker.
    pub fn new(cfg: TxRequestConfig) -> Self {
        TxRequestTracker {
            cfg,
            peers: HashMap::new(),
            items: HashMap::new(),
            next_seq: 0,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &TxRequestConfig {
        &self.cfg
    }

    /// Start tracking `peer`. Preferred peers (Core: outbound ones) are asked before
    /// non-preferred ones. A second call only updates the preference.
    pub fn peer_connected(&mut self, peer: u64, preferred: bool) {
        self.peers
            .entry(peer)
            .or_insert_with(|| PeerState {
                preferred,
                announced: HashMap::new(),
                requested: HashMap::new(),
            })
            .preferred = preferred;
    }

    /// Forget `peer` and all its announcements; its outstanding requests fail, so the
    /// items become requestable from their other announcers.
    pub fn peer_disconnected(&mut self, peer: u64) {
        let Some(state) = self.peers.remove(&peer) else {
            return;
        };
        for item in state.announced.keys() {
            self.detach(*item, peer);
        }
    }

    /// `peer` announced `item` at `now`.
    pub fn received_inv(&mut self, peer: u64, item: K, now: Instant) -> InvOutcome {
        let cfg = self.cfg;
        let Some(state) = self.peers.get_mut(&peer) else {
            return InvOutcome::OverLimit;
        };
        if state.announced.contains_key(&item) {
            return InvOutcome::Duplicate;
        }
        if state.announced.len() >= cfg.max_announcements_per_peer {
            return InvOutcome::OverLimit;
        }
        let mut ready_at = now;
        if !state.preferred {
            ready_at += cfg.non_preferred_delay;
        }
        if state.requested.len() >= cfg.max_in_flight_per_peer {
            ready_at += cfg.overloaded_delay;
        }
        state.announced.insert(
            item,
            Ann {
                ready_at,
                seq: self.next_seq,
            },
        );
        self.next_seq += 1;
        self.items.entry(item).or_default().announcers.push(peer);
        InvOutcome::Added
    }

    /// Fail every request whose deadline passed at `now` (the peer's announcement is
    /// dropped, as after a `notfound`). Returns how many failed.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut expired = Vec::new();
        for (peer, state) in &self.peers {
            for (item, deadline) in &state.requested {
                if now >= *deadline {
                    expired.push((*peer, *item));
                }
            }
        }
        for (peer, item) in &expired {
            self.drop_announcement(*peer, *item);
        }
        expired.len()
    }

    /// The items to ask `peer` for now, oldest announcement first, marked as requested
    /// with a deadline of `now` + the request timeout. An item is requested from one
    /// peer at a time: the ready announcer (not at its request cap) that is preferred,
    /// then the earliest. Call [`expire`](Self::expire) first so timed-out requests
    /// move on.
    pub fn requestable(&mut self, peer: u64, now: Instant) -> Vec<K> {
        let max = self.cfg.max_in_flight_per_peer;
        let Some(state) = self.peers.get(&peer) else {
            return Vec::new();
        };
        let room = max.saturating_sub(state.requested.len());
        if room == 0 {
            return Vec::new();
        }
        let mut ready: Vec<(u64, K)> = state
            .announced
            .iter()
            .filter(|(item, ann)| ann.ready_at <= now && !state.requested.contains_key(item))
            .map(|(item, ann)| (ann.seq, *item))
            .collect();
        ready.sort_unstable_by_key(|(seq, _)| *seq);
        let mut chosen = Vec::new();
        for (_, item) in ready {
            if chosen.len() == room {
                break;
            }
            if self.best_candidate(item, now) == Some(peer) {
                chosen.push(item);
            }
        }
        let deadline = now + self.cfg.request_timeout;
        for item in &chosen {
            if let Some(state) = self.peers.get_mut(&peer) {
                state.requested.insert(*item, deadline);
            }
            if let Some(it) = self.items.get_mut(item) {
                it.requested_from = Some(peer);
            }
        }
        chosen
    }

    /// Who should be asked for `item` now: none while a request is outstanding.
    fn best_candidate(&self, item: K, now: Instant) -> Option<u64> {
        let it = self.items.get(&item)?;
        if it.requested_from.is_some() {
            return None;
        }
        it.announcers
            .iter()
            .filter_map(|p| {
                let state = self.peers.get(p)?;
                let ann = state.announced.get(&item)?;
                let has_room = state.requested.len() < self.cfg.max_in_flight_per_peer;
                (ann.ready_at <= now && has_room).then_some((!state.preferred, ann.seq, *p))
            })
            .min()
            .map(|(_, _, p)| p)
    }

    /// The item arrived from `peer`. Returns whether it was requested from that peer;
    /// if so the item is finished and forgotten (every announcement of it). An item
    /// that was not requested from `peer` is left as it is.
    pub fn received(&mut self, peer: u64, item: K) -> bool {
        let asked = self
            .items
            .get(&item)
            .is_some_and(|it| it.requested_from == Some(peer));
        if asked {
            self.forget(item);
        }
        asked
    }

    /// `peer` does not have `item` (a `notfound` naming it), or the request to it could
    /// not be sent: its announcement is dropped and the next announcer will be asked.
    /// Returns whether `peer` had an announcement of the item.
    pub fn not_found(&mut self, peer: u64, item: K) -> bool {
        self.drop_announcement(peer, item)
    }

    /// Stop tracking `item` entirely (e.g. it was obtained another way).
    pub fn forget(&mut self, item: K) {
        let Some(it) = self.items.remove(&item) else {
            return;
        };
        for p in it.announcers {
            if let Some(state) = self.peers.get_mut(&p) {
                state.announced.remove(&item);
                state.requested.remove(&item);
            }
        }
    }

    fn drop_announcement(&mut self, peer: u64, item: K) -> bool {
        let had = match self.peers.get_mut(&peer) {
            Some(state) => {
                state.requested.remove(&item);
                state.announced.remove(&item).is_some()
            }
            None => false,
        };
        if had {
            self.detach(item, peer);
        }
        had
    }

    /// Remove `peer` from `item`'s announcers (the peer's own maps are handled by the
    /// caller); the item is forgotten when nobody announces it any more.
    fn detach(&mut self, item: K, peer: u64) {
        let Some(it) = self.items.get_mut(&item) else {
            return;
        };
        it.announcers.retain(|p| *p != peer);
        if it.requested_from == Some(peer) {
            it.requested_from = None;
        }
        if it.announcers.is_empty() {
            self.items.remove(&item);
        }
    }

    /// Whether any peer has announced `item` and it is still tracked.
    pub fn is_tracked(&self, item: &K) -> bool {
        self.items.contains_key(item)
    }

    /// The peer currently asked for `item`.
    pub fn requested_from(&self, item: &K) -> Option<u64> {
        self.items.get(item).and_then(|it| it.requested_from)
    }

    /// Items tracked.
    pub fn items(&self) -> usize {
        self.items.len()
    }

    /// Live announcements of `peer`.
    pub fn announced_by(&self, peer: u64) -> usize {
        self.peers.get(&peer).map_or(0, |s| s.announced.len())
    }

    /// Outstanding requests to `peer`.
    pub fn in_flight(&self, peer: u64) -> usize {
        self.peers.get(&peer).map_or(0, |s| s.requested.len())
    }

    /// Peers tracked (for [`requestable`](Self::requestable) sweeps).
    pub fn peer_ids(&self) -> Vec<u64> {
        self.peers.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATTACKER: u64 = 1;
    const HONEST: u64 = 2;
    const OTHER: u64 = 3;

    fn tracker() -> TxRequestTracker<u32> {
        let mut t = TxRequestTracker::new(TxRequestConfig::default());
        for p in [ATTACKER, HONEST, OTHER] {
            t.peer_connected(p, true);
        }
        t
    }

    #[test]
    fn per_peer_announcement_cap() {
        let mut t = tracker();
        let now = Instant::now();
        for i in 0..10_000 {
            let expect = if i < 5000 {
                InvOutcome::Added
            } else {
                InvOutcome::OverLimit
            };
            assert_eq!(t.received_inv(ATTACKER, i, now), expect, "{i}");
        }
        assert_eq!(t.announced_by(ATTACKER), 5000);
        // Another peer is not affected by the attacker's cap.
        assert_eq!(t.received_inv(HONEST, 9_999, now), InvOutcome::Added);
        assert_eq!(t.received_inv(HONEST, 9_999, now), InvOutcome::Duplicate);
        assert_eq!(t.requestable(HONEST, now), vec![9_999]);
        assert_eq!(
            t.received_inv(99, 1, now),
            InvOutcome::OverLimit,
            "unknown peer"
        );
    }

    #[test]
    fn at_most_100_requests_in_flight_per_peer_in_announcement_order() {
        let mut t = tracker();
        let now = Instant::now();
        for i in (0..300).rev() {
            t.received_inv(ATTACKER, i, now);
        }
        let first = t.requestable(ATTACKER, now);
        assert_eq!(first, (200..300).rev().collect::<Vec<_>>());
        assert!(t.requestable(ATTACKER, now).is_empty(), "cap reached");
        assert_eq!(t.in_flight(ATTACKER), 100);
        // One answer frees one slot.
        assert!(t.received(ATTACKER, 299));
        assert_eq!(t.requestable(ATTACKER, now), vec![199]);
    }

    #[test]
    fn withheld_item_falls_back_to_the_next_announcer_on_notfound() {
        let mut t = tracker();
        let now = Instant::now();
        t.received_inv(ATTACKER, 7, now);
        t.received_inv(HONEST, 7, now);
        assert!(
            t.requestable(HONEST, now).is_empty(),
            "first announcer first"
        );
        assert_eq!(t.requestable(ATTACKER, now), vec![7]);
        assert_eq!(t.requested_from(&7), Some(ATTACKER));
        // A notfound naming other items changes nothing.
        assert!(!t.not_found(ATTACKER, 8));
        assert!(t.requestable(HONEST, now).is_empty());
        assert!(t.not_found(ATTACKER, 7));
        assert_eq!(t.requestable(HONEST, now), vec![7]);
        // A late answer from the attacker is unrequested now.
        assert!(!t.received(ATTACKER, 7));
        assert!(t.received(HONEST, 7));
        assert!(!t.is_tracked(&7));
        assert_eq!(t.announced_by(ATTACKER), 0);
    }

    #[test]
    fn withheld_item_falls_back_on_timeout() {
        let mut t = tracker();
        let t0 = Instant::now();
        t.received_inv(ATTACKER, 7, t0);
        assert_eq!(t.requestable(ATTACKER, t0), vec![7]);
        t.received_inv(HONEST, 7, t0);
        let almost = t0 + REQUEST_TIMEOUT - Duration::from_millis(1);
        assert_eq!(t.expire(almost), 0);
        assert!(t.requestable(HONEST, almost).is_empty());
        let late = t0 + REQUEST_TIMEOUT;
        assert_eq!(t.expire(late), 1);
        assert_eq!(t.requestable(HONEST, late), vec![7]);
        assert_eq!(t.announced_by(ATTACKER), 0);
    }

    #[test]
    fn disconnect_moves_requests_to_other_announcers() {
        let mut t = tracker();
        let now = Instant::now();
        t.received_inv(ATTACKER, 7, now);
        t.received_inv(ATTACKER, 8, now);
        t.received_inv(HONEST, 7, now);
        assert_eq!(t.requestable(ATTACKER, now), vec![7, 8]);
        t.peer_disconnected(ATTACKER);
        assert!(!t.is_tracked(&8), "nobody else announced 8");
        assert_eq!(t.requestable(HONEST, now), vec![7]);
    }

    #[test]
    fn a_peer_at_its_request_cap_is_passed_over() {
        let mut t = tracker();
        let now = Instant::now();
        // The attacker fills its 100 slots with bogus ids, then announces the real item
        // before the honest peer does.
        for i in 0..10_000 {
            t.received_inv(ATTACKER, 1000 + i, now);
        }
        assert_eq!(t.requestable(ATTACKER, now).len(), 100);
        t.received_inv(ATTACKER, 7, now); // over its announcement cap: ignored
        t.received_inv(HONEST, 7, now);
        assert_eq!(t.requestable(HONEST, now), vec![7]);

        // Real item announced early (within the cap, behind 100 in-flight requests).
        let mut t = tracker();
        for i in 0..100 {
            t.received_inv(ATTACKER, 1000 + i, now);
        }
        t.received_inv(ATTACKER, 7, now);
        assert_eq!(t.requestable(ATTACKER, now).len(), 100);
        t.received_inv(HONEST, 7, now);
        assert_eq!(t.requestable(HONEST, now), vec![7]);
    }

    #[test]
    fn preferred_announcers_first_and_non_preferred_delay() {
        let mut t = TxRequestTracker::new(TxRequestConfig::default());
        t.peer_connected(ATTACKER, false);
        t.peer_connected(HONEST, true);
        let t0 = Instant::now();
        t.received_inv(ATTACKER, 7, t0);
        assert!(t.requestable(ATTACKER, t0).is_empty(), "delayed");
        let t1 = t0 + Duration::from_millis(100);
        t.received_inv(HONEST, 7, t1);
        assert!(
            t.requestable(ATTACKER, t0 + NON_PREFERRED_DELAY).is_empty(),
            "a ready preferred announcer wins"
        );
        assert_eq!(t.requestable(HONEST, t0 + NON_PREFERRED_DELAY), vec![7]);
        // Alone, a non-preferred announcer is asked after the delay.
        t.received_inv(ATTACKER, 9, t0);
        assert_eq!(t.requestable(ATTACKER, t0 + NON_PREFERRED_DELAY), vec![9]);
    }

    #[test]
    fn state_is_bounded_and_freed() {
        let mut t = tracker();
        let now = Instant::now();
        for p in [ATTACKER, HONEST, OTHER] {
            for i in 0..20_000 {
                t.received_inv(p, i + p as u32 * 100_000, now);
            }
        }
        assert_eq!(t.items(), 3 * MAX_PEER_ANNOUNCEMENTS);
        for p in [ATTACKER, HONEST, OTHER] {
            t.peer_disconnected(p);
        }
        assert_eq!(t.items(), 0);
        assert!(t.peers.is_empty());
    }
}
