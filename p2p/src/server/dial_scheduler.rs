//! Which discovered nodes to dial, and when: the dial scheduler's state and rules, with no
//! sockets and no tasks.
//!
//! In go-ethereum's manner it fills the free outbound slots from a bounded, deduplicated
//! queue of candidates. It never dials itself, a node already connected or being dialed, or
//! a node whose last dial failed recently (exponential backoff per node); it keeps outbound
//! peers spread over network groups (at most `per_subnet` per IPv4 /24 or IPv6 /64, loopback
//! exempt when configured); and it keeps at most `max_in_flight` dials running at once.
//! Candidates it skips are dropped from the queue: discovery keeps finding nodes, so a stale
//! queue entry is worth less than the room it takes.
//!
//! Every candidate is also remembered (a bounded list, oldest forgotten first). When the
//! queue runs dry with slots still free, the remembered nodes are tried in turn — a peer
//! that left, a node whose backoff has passed or that was full before — each at most once
//! per `redial_interval`, as go-ethereum keeps a dialed node out of the way for 35 s
//! whatever the outcome. Discovery reports a node only when it first verifies it, so
//! without this a node would never dial again the nodes it already knows.
//!
//! Discovery verifies two nodes to each other at the same moment (each answers the other's
//! ping), so both would dial at once; each would then keep the connection it dialed and
//! refuse the other's as "already connected", and both connections would end. So a fresh
//! candidate whose id is smaller than ours waits `yield_to_smaller_id` in the queue: the
//! node with the smaller id dials first, and the other dials only if no connection came.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::trace;

use crate::node::NodeId;

use super::limits::{Netgroup, SubnetCap};

/// The scheduler's limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DialLimits {
    /// Most dials running at once.
    pub(crate) max_in_flight: usize,
    /// Most candidates waiting; the oldest is forgotten to make room for a new one.
    pub(crate) queue_capacity: usize,
    /// Most outbound peers (connected or being dialed) per network group.
    pub(crate) subnet: SubnetCap,
    /// Wait after a node's first failed dial; doubled for each failure in a row.
    pub(crate) backoff_base: Duration,
    /// Longest wait after a failed dial.
    pub(crate) backoff_max: Duration,
    /// Most nodes whose failures are remembered.
    pub(crate) history_capacity: usize,
    /// Most discovered nodes remembered for dialing again.
    pub(crate) known_capacity: usize,
    /// Least time between two dials of a remembered node taken from the remembered list.
    pub(crate) redial_interval: Duration,
    /// How long a fresh candidate with a smaller id than ours waits before we dial it.
    pub(crate) yield_to_smaller_id: Duration,
}

impl Default for DialLimits {
    fn default() -> Self {
        DialLimits {
            max_in_flight: 16,
            queue_capacity: 512,
            subnet: SubnetCap {
                max: 2,
                exempt_loopback: true,
            },
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
            history_capacity: 4096,
            known_capacity: 1024,
            redial_interval: Duration::from_secs(30),
            yield_to_smaller_id: Duration::from_secs(2),
        }
    }
}

/// A node worth dialing, as discovery or the user reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DialTarget {
    pub(crate) id: NodeId,
    pub(crate) addr: SocketAddr,
}

/// A node's recent failed dials.
#[derive(Debug, Clone, Copy)]
struct Failure {
    /// Not dialed again before this.
    until: Instant,
    /// Failures in a row, for the exponential backoff.
    streak: u32,
}

/// A candidate in the queue.
#[derive(Debug, Clone, Copy)]
struct Queued {
    target: DialTarget,
    /// Not dialed before this, if set.
    due: Option<Instant>,
}

/// A discovered node kept for dialing again.
#[derive(Debug, Clone, Copy)]
struct Known {
    target: DialTarget,
    /// When it was last picked for a dial.
    dialed: Option<Instant>,
}

/// The dial scheduler's state.
pub(crate) struct DialScheduler {
    me: NodeId,
    limits: DialLimits,
    queue: VecDeque<Queued>,
    queued: HashSet<NodeId>,
    /// Dials running, with the network group each counts toward (if any).
    in_flight: HashMap<NodeId, Option<Netgroup>>,
    history: HashMap<NodeId, Failure>,
    /// Every candidate seen, oldest first; tried in turn when the queue is empty.
    known: VecDeque<Known>,
}

impl DialScheduler {
    /// A scheduler for the node `me`.
    pub(crate) fn new(me: NodeId, limits: DialLimits) -> Self {
        DialScheduler {
            me,
            limits,
            queue: VecDeque::new(),
            queued: HashSet::new(),
            in_flight: HashMap::new(),
            history: HashMap::new(),
            known: VecDeque::new(),
        }
    }

    /// Queue a candidate found at `now` (and remember it). Returns false when it is not
    /// queued: itself, already queued or being dialed. A full queue forgets its oldest
    /// candidate.
    pub(crate) fn add_candidate(&mut self, target: DialTarget, now: Instant) -> bool {
        if target.id == self.me {
            return false;
        }
        self.remember(target);
        if self.queued.contains(&target.id)
            || self.in_flight.contains_key(&target.id)
            || self.limits.queue_capacity == 0
        {
            return false;
        }
        while self.queue.len() >= self.limits.queue_capacity {
            if let Some(old) = self.queue.pop_front() {
                self.queued.remove(&old.target.id);
            }
        }
        let due = (target.id < self.me).then(|| now + self.limits.yield_to_smaller_id);
        self.queued.insert(target.id);
        self.queue.push_back(Queued { target, due });
        true
    }

    /// Keep `target` in the remembered list (its address updated if it is there already).
    fn remember(&mut self, target: DialTarget) {
        if let Some(k) = self.known.iter_mut().find(|k| k.target.id == target.id) {
            k.target.addr = target.addr;
            return;
        }
        if self.limits.known_capacity == 0 {
            return;
        }
        while self.known.len() >= self.limits.known_capacity {
            self.known.pop_front();
        }
        self.known.push_back(Known {
            target,
            dialed: None,
        });
    }

    /// Candidates waiting.
    pub(crate) fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Dials running.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Nodes remembered for dialing again.
    pub(crate) fn known(&self) -> usize {
        self.known.len()
    }

    /// The candidates to dial now, marked as in flight until [`Self::dial_done`].
    ///
    /// `free_slots` is how many more outbound peers the limits allow (max dialed minus the
    /// outbound connections admission counts); dials in flight take slots too, so a dial
    /// past the encryption handshake counts twice for a moment, which only errs on the side
    /// of dialing less. `connected` says whether a node already has a connection;
    /// `outbound_groups` are the network groups of the outbound peers already connected.
    pub(crate) fn next_dials(
        &mut self,
        now: Instant,
        free_slots: usize,
        connected: impl Fn(&NodeId) -> bool,
        outbound_groups: impl IntoIterator<Item = Netgroup>,
    ) -> Vec<DialTarget> {
        let mut groups: Vec<Netgroup> = outbound_groups.into_iter().collect();
        groups.extend(self.in_flight.values().flatten().copied());
        let mut picked = Vec::new();
        // Picked candidates join `in_flight` at once, so it counts them too.
        let room = self.limits.max_in_flight.min(free_slots);
        // Candidates not due yet keep their places.
        let mut waiting = VecDeque::new();
        while self.in_flight.len() < room {
            let Some(queued) = self.queue.pop_front() else {
                break;
            };
            if queued.due.is_some_and(|due| now < due) {
                waiting.push_back(queued);
                continue;
            }
            self.queued.remove(&queued.target.id);
            self.pick(queued.target, now, &connected, &mut groups, &mut picked);
        }
        while let Some(queued) = waiting.pop_back() {
            self.queue.push_front(queued);
        }
        // The queue ran dry with room left: the remembered nodes, in turn, so that none is
        // always last.
        let mut turns = self.known.len();
        while self.in_flight.len() < room && turns > 0 {
            turns -= 1;
            let Some(known) = self.known.pop_front() else {
                break;
            };
            self.known.push_back(known);
            let recent = known
                .dialed
                .is_some_and(|t| now.saturating_duration_since(t) < self.limits.redial_interval);
            let id = known.target.id;
            if !recent && !self.in_flight.contains_key(&id) && !self.queued.contains(&id) {
                self.pick(known.target, now, &connected, &mut groups, &mut picked);
            }
        }
        picked
    }

    /// Take `target` for dialing unless it is connected, backing off, or its network group
    /// has its share of outbound peers.
    fn pick(
        &mut self,
        target: DialTarget,
        now: Instant,
        connected: &impl Fn(&NodeId) -> bool,
        groups: &mut Vec<Netgroup>,
        picked: &mut Vec<DialTarget>,
    ) {
        if connected(&target.id) {
            trace!(id = ?target.id, "not dialing: connected");
            return;
        }
        if self.history.get(&target.id).is_some_and(|f| now < f.until) {
            trace!(id = ?target.id, "not dialing: failed recently");
            return;
        }
        let group = self.limits.subnet.group(target.addr.ip());
        if let Some(group) = group {
            if !self.limits.subnet.admits(group, groups.iter().copied()) {
                trace!(addr = %target.addr, "not dialing: subnet has its share of peers");
                return;
            }
            groups.push(group);
        }
        if let Some(k) = self.known.iter_mut().find(|k| k.target.id == target.id) {
            k.dialed = Some(now);
        }
        self.in_flight.insert(target.id, group);
        picked.push(target);
    }

    /// A dial ended: on success the node's failure streak is forgotten; on failure it is
    /// not dialed again until its backoff passes.
    pub(crate) fn dial_done(&mut self, id: &NodeId, ok: bool, now: Instant) {
        self.in_flight.remove(id);
        if ok {
            self.history.remove(id);
            return;
        }
        let streak = self
            .history
            .get(id)
            .map_or(0, |f| f.streak)
            .saturating_add(1);
        let wait = self
            .limits
            .backoff_base
            .saturating_mul(1u32 << (streak - 1).min(16))
            .min(self.limits.backoff_max);
        if !self.history.contains_key(id) && self.history.len() >= self.limits.history_capacity {
            self.forget_oldest_failure(now);
        }
        if self.history.len() < self.limits.history_capacity {
            self.history.insert(
                *id,
                Failure {
                    until: now + wait,
                    streak,
                },
            );
        }
    }

    /// Whether `id` is backing off after a failed dial.
    #[cfg(test)]
    pub(crate) fn is_backing_off(&self, id: &NodeId, now: Instant) -> bool {
        self.history.get(id).is_some_and(|f| now < f.until)
    }

    /// Make room in the failure history: drop every expired entry, or else the one that
    /// expires first.
    fn forget_oldest_failure(&mut self, now: Instant) {
        self.history.retain(|_, f| now < f.until);
        if self.history.len() >= self.limits.history_capacity {
            if let Some(id) = self
                .history
                .iter()
                .min_by_key(|(_, f)| f.until)
                .map(|(id, _)| *id)
            {
                self.history.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId([n; 64])
    }

    fn target(n: u8, addr: &str) -> DialTarget {
        DialTarget {
            id: id(n),
            addr: addr.parse().unwrap(),
        }
    }

    fn limits() -> DialLimits {
        DialLimits {
            max_in_flight: 4,
            queue_capacity: 8,
            subnet: SubnetCap {
                max: 2,
                exempt_loopback: true,
            },
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(35),
            history_capacity: 8,
            known_capacity: 8,
            redial_interval: Duration::from_secs(30),
            yield_to_smaller_id: Duration::from_secs(2),
        }
    }

    fn ids(v: &[DialTarget]) -> Vec<NodeId> {
        v.iter().map(|t| t.id).collect()
    }

    #[test]
    fn never_queues_itself_or_a_duplicate() {
        let mut s = DialScheduler::new(id(0), limits());
        assert!(!s.add_candidate(target(0, "10.0.0.1:1"), Instant::now()));
        assert!(s.add_candidate(target(1, "10.0.0.1:1"), Instant::now()));
        assert!(!s.add_candidate(target(1, "10.0.0.2:1"), Instant::now()));
        assert_eq!(s.queued(), 1);
    }

    #[test]
    fn a_full_queue_forgets_its_oldest_candidate() {
        let mut s = DialScheduler::new(id(0), limits());
        for n in 1..=10 {
            assert!(s.add_candidate(target(n, &format!("10.0.{n}.1:1")), Instant::now()));
        }
        assert_eq!(s.queued(), 8);
        let got = s.next_dials(Instant::now(), 100, |_| false, []);
        assert_eq!(ids(&got), vec![id(3), id(4), id(5), id(6)]);
    }

    #[test]
    fn fills_free_slots_and_no_more_counting_dials_in_flight() {
        let mut s = DialScheduler::new(id(0), limits());
        for n in 1..=6 {
            s.add_candidate(target(n, &format!("10.0.{n}.1:1")), Instant::now());
        }
        let now = Instant::now();
        assert_eq!(s.next_dials(now, 2, |_| false, []).len(), 2);
        // The two in flight fill both slots.
        assert!(s.next_dials(now, 2, |_| false, []).is_empty());
        s.dial_done(&id(1), true, now);
        // Now connected, the caller reports one slot free out of the two.
        assert_eq!(
            ids(&s.next_dials(now, 1, |_| false, [])),
            Vec::<NodeId>::new()
        );
        assert_eq!(ids(&s.next_dials(now, 2, |_| false, [])), vec![id(3)]);
    }

    #[test]
    fn bounds_dials_in_flight() {
        let mut s = DialScheduler::new(id(0), limits());
        for n in 1..=8 {
            s.add_candidate(target(n, &format!("10.0.{n}.1:1")), Instant::now());
        }
        let now = Instant::now();
        assert_eq!(s.next_dials(now, 100, |_| false, []).len(), 4);
        assert!(s.next_dials(now, 100, |_| false, []).is_empty());
        assert_eq!(s.in_flight(), 4);
        s.dial_done(&id(1), false, now);
        assert_eq!(ids(&s.next_dials(now, 100, |_| false, [])), vec![id(5)]);
    }

    #[test]
    fn skips_connected_and_in_flight_nodes() {
        let mut s = DialScheduler::new(id(0), limits());
        s.add_candidate(target(1, "10.0.1.1:1"), Instant::now());
        s.add_candidate(target(2, "10.0.2.1:1"), Instant::now());
        let now = Instant::now();
        assert_eq!(
            ids(&s.next_dials(now, 10, |n| *n == id(1), [])),
            vec![id(2)]
        );
        // Rediscovered while its dial runs: not queued again.
        assert!(!s.add_candidate(target(2, "10.0.2.1:1"), Instant::now()));
    }

    #[test]
    fn backs_off_a_failed_node_exponentially_and_forgets_after_success() {
        let mut s = DialScheduler::new(id(0), limits());
        let t0 = Instant::now();
        let retry = |s: &mut DialScheduler, at: Instant| {
            s.add_candidate(target(1, "10.0.1.1:1"), Instant::now());
            ids(&s.next_dials(at, 10, |_| false, []))
        };
        assert_eq!(retry(&mut s, t0), vec![id(1)]);
        s.dial_done(&id(1), false, t0);
        assert!(s.is_backing_off(&id(1), t0 + Duration::from_secs(9)));
        assert!(retry(&mut s, t0 + Duration::from_secs(9)).is_empty());
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(retry(&mut s, t1), vec![id(1)]);
        s.dial_done(&id(1), false, t1);
        // Second failure in a row: twice the wait.
        assert!(retry(&mut s, t1 + Duration::from_secs(19)).is_empty());
        let t2 = t1 + Duration::from_secs(20);
        assert_eq!(retry(&mut s, t2), vec![id(1)]);
        s.dial_done(&id(1), false, t2);
        // Third: capped at the maximum (35 s rather than 40 s).
        assert!(!s.is_backing_off(&id(1), t2 + Duration::from_secs(35)));
        let t3 = t2 + Duration::from_secs(35);
        assert_eq!(retry(&mut s, t3), vec![id(1)]);
        s.dial_done(&id(1), true, t3);
        s.dial_done(&id(1), false, t3);
        // The success reset the streak: back to the base wait.
        assert!(!s.is_backing_off(&id(1), t3 + Duration::from_secs(10)));
    }

    #[test]
    fn spreads_outbound_peers_over_subnets() {
        let mut s = DialScheduler::new(id(0), limits());
        // One peer of 10.0.0.0/24 connected already; two more candidates there and one
        // elsewhere.
        s.add_candidate(target(1, "10.0.0.2:1"), Instant::now());
        s.add_candidate(target(2, "10.0.0.3:1"), Instant::now());
        s.add_candidate(target(3, "10.0.1.2:1"), Instant::now());
        let connected_group = [Netgroup::of("10.0.0.1".parse().unwrap())];
        let got = s.next_dials(Instant::now(), 10, |_| false, connected_group);
        assert_eq!(ids(&got), vec![id(1), id(3)]);
    }

    #[test]
    fn dials_in_flight_count_toward_their_subnet() {
        let mut s = DialScheduler::new(id(0), limits());
        let now = Instant::now();
        s.add_candidate(target(1, "10.0.0.2:1"), Instant::now());
        s.add_candidate(target(2, "10.0.0.3:1"), Instant::now());
        assert_eq!(s.next_dials(now, 10, |_| false, []).len(), 2);
        s.add_candidate(target(3, "10.0.0.4:1"), Instant::now());
        assert!(s.next_dials(now, 10, |_| false, []).is_empty());
    }

    #[test]
    fn loopback_is_exempt_from_the_subnet_cap_only_when_configured() {
        let now = Instant::now();
        let mut s = DialScheduler::new(id(0), limits());
        for n in 1..=4 {
            s.add_candidate(target(n, &format!("127.0.0.{n}:1")), Instant::now());
        }
        assert_eq!(s.next_dials(now, 10, |_| false, []).len(), 4);

        let mut strict = limits();
        strict.subnet.exempt_loopback = false;
        let mut s = DialScheduler::new(id(0), strict);
        for n in 1..=4 {
            s.add_candidate(target(n, &format!("127.0.0.{n}:1")), Instant::now());
        }
        assert_eq!(s.next_dials(now, 10, |_| false, []).len(), 2);
    }

    #[test]
    fn remembered_nodes_are_dialed_again_once_the_queue_is_empty() {
        let mut s = DialScheduler::new(id(0), limits());
        let t0 = Instant::now();
        s.add_candidate(target(1, "10.0.1.1:1"), Instant::now());
        s.add_candidate(target(2, "10.0.2.1:1"), Instant::now());
        assert_eq!(s.next_dials(t0, 10, |_| false, []).len(), 2);
        s.dial_done(&id(1), true, t0);
        s.dial_done(&id(2), false, t0);
        assert_eq!(s.queued(), 0);
        // Not within the redial interval, whatever the outcome.
        assert!(s
            .next_dials(t0 + Duration::from_secs(29), 10, |_| false, [])
            .is_empty());
        // Past it: node 1 (it left meanwhile) is dialed again, and node 2, whose 10 s
        // backoff is over too.
        let t1 = t0 + Duration::from_secs(30);
        let got = s.next_dials(t1, 10, |_| false, []);
        assert_eq!(ids(&got), vec![id(1), id(2)]);
        // A connected node is left alone.
        s.dial_done(&id(1), true, t1);
        s.dial_done(&id(2), false, t1);
        let t2 = t1 + Duration::from_secs(30);
        assert_eq!(ids(&s.next_dials(t2, 10, |n| *n == id(1), [])), vec![id(2)]);
    }

    #[test]
    fn remembered_nodes_respect_the_slots_and_a_longer_backoff() {
        let mut l = limits();
        l.redial_interval = Duration::from_secs(1);
        let mut s = DialScheduler::new(id(0), l);
        let t0 = Instant::now();
        for n in 1..=3 {
            s.add_candidate(target(n, &format!("10.0.{n}.1:1")), Instant::now());
        }
        assert_eq!(s.next_dials(t0, 10, |_| false, []).len(), 3);
        for n in 1..=3 {
            s.dial_done(&id(n), false, t0);
        }
        // Backoff (10 s) outlasts the redial interval (1 s).
        assert!(s
            .next_dials(t0 + Duration::from_secs(5), 10, |_| false, [])
            .is_empty());
        // Free slots bound the picks; the rest wait their turn.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(ids(&s.next_dials(t1, 1, |_| false, [])), vec![id(1)]);
        s.dial_done(&id(1), true, t1);
        assert_eq!(ids(&s.next_dials(t1, 2, |_| false, [])), vec![id(2), id(3)]);
    }

    #[test]
    fn the_remembered_list_is_bounded_and_never_holds_us() {
        let mut l = limits();
        l.known_capacity = 3;
        let mut s = DialScheduler::new(id(0), l);
        s.add_candidate(target(0, "10.0.0.1:1"), Instant::now());
        for n in 1..=5 {
            s.add_candidate(target(n, &format!("10.0.{n}.1:1")), Instant::now());
            // Seen again with a new address: still one entry.
            s.add_candidate(target(n, &format!("10.1.{n}.1:1")), Instant::now());
        }
        assert_eq!(s.known(), 3);
        let kept: Vec<NodeId> = s.known.iter().map(|k| k.target.id).collect();
        assert_eq!(kept, vec![id(3), id(4), id(5)]);
        assert!(s
            .known
            .iter()
            .all(|k| k.target.addr.ip().to_string().starts_with("10.1.")));
    }

    #[test]
    fn a_fresh_candidate_with_a_smaller_id_waits_its_turn() {
        // We are node 5: node 3 dials us first, node 7 we dial at once.
        let mut s = DialScheduler::new(id(5), limits());
        let t0 = Instant::now();
        s.add_candidate(target(3, "10.0.3.1:1"), t0);
        s.add_candidate(target(7, "10.0.7.1:1"), t0);
        assert_eq!(ids(&s.next_dials(t0, 10, |_| false, [])), vec![id(7)]);
        assert_eq!(s.queued(), 1);
        let wait = s.limits.yield_to_smaller_id;
        assert!(s.next_dials(t0 + wait / 2, 10, |_| false, []).is_empty());
        // Node 3 dialed us meanwhile: nothing to do.
        assert!(s.next_dials(t0 + wait, 10, |n| *n == id(3), []).is_empty());
        // Had it not, we would dial it now.
        s.add_candidate(target(3, "10.0.3.1:1"), t0);
        assert_eq!(
            ids(&s.next_dials(t0 + wait, 10, |_| false, [])),
            vec![id(3)]
        );
    }

    #[test]
    fn the_failure_history_is_bounded() {
        let mut l = limits();
        l.history_capacity = 3;
        let mut s = DialScheduler::new(id(0), l);
        let now = Instant::now();
        for n in 1..=5 {
            s.dial_done(&id(n), false, now + Duration::from_secs(n.into()));
        }
        assert_eq!(s.history.len(), 3);
        // The ones that expire first were forgotten.
        assert!(!s.is_backing_off(&id(1), now + Duration::from_secs(6)));
        assert!(s.is_backing_off(&id(5), now + Duration::from_secs(6)));
    }
}
