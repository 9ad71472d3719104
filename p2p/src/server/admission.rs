//! Who may become a peer: the admission state and its rules, with no sockets and no tasks.
//!
//! A connection passes three steps. At the *checkpoint*, right after the encryption
//! handshake, it is counted toward the limits as *pending* (its node id is not proven yet:
//! an auth can be replayed, so a pending connection never makes a node "already
//! connected"). After a valid Hello it *claims* its node id: from then on a second
//! connection of that node is refused. Once its peer runs it is *activated* and carries the
//! server's handle (`P`). A connection that fails on the way is *released*; a peer that ends
//! is *removed*.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use tracing::debug;

use crate::base::DisconnectReason;
use crate::node::NodeId;
use crate::peer::Direction;

use super::limits::{Netgroup, SubnetCap};

/// The limits the checkpoint enforces. Trusted nodes are exempt from all but "self" and
/// "already connected".
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Most untrusted connections, pending and running, in both directions.
    pub(crate) max_peers: usize,
    /// Most untrusted inbound connections (the rest of `max_peers` is kept for dialing).
    pub(crate) max_inbound: usize,
    /// Most untrusted inbound connections from one network group.
    pub(crate) subnet: SubnetCap,
}

/// A pending connection's place in the limits, from the checkpoint until it is claimed or
/// released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Ticket(u64);

/// What the checkpoint granted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admitted {
    /// Hand back to [`Admission::claim`] or [`Admission::release`].
    pub(crate) ticket: Ticket,
    /// Whether the remote was trusted at the checkpoint (it was exempt from the limits).
    pub(crate) trusted: bool,
}

/// A connection past the checkpoint whose Hello has not arrived yet.
struct Pending {
    direction: Direction,
    trusted: bool,
    /// The network group it counts toward under the subnet cap.
    group: Option<Netgroup>,
}

/// A node id owned by one connection: claimed (its peer is starting) or running (`peer`).
struct Slot<P> {
    /// The connection that claimed it, so only that one's failure can release it.
    ticket: Ticket,
    direction: Direction,
    /// The network group it counts toward under the subnet cap (inbound, untrusted at the
    /// checkpoint, not exempt).
    group: Option<Netgroup>,
    peer: Option<P>,
}

/// The admission state of a node: node ids owned by connections, pending connections, the
/// trusted set. Generic over the handle of a running peer so it holds nothing but data.
pub(crate) struct Admission<P> {
    me: NodeId,
    limits: Limits,
    closed: bool,
    slots: HashMap<NodeId, Slot<P>>,
    pending: HashMap<Ticket, Pending>,
    next_ticket: u64,
    trusted: HashSet<NodeId>,
}

impl<P> Admission<P> {
    /// Admission for the node `me`, with `trusted` nodes exempt from the limits.
    pub(crate) fn new(
        me: NodeId,
        limits: Limits,
        trusted: impl IntoIterator<Item = NodeId>,
    ) -> Self {
        Admission {
            me,
            limits,
            closed: false,
            slots: HashMap::new(),
            pending: HashMap::new(),
            next_ticket: 0,
            trusted: trusted.into_iter().collect(),
        }
    }

    /// The checkpoint: count a connection of `id` toward the limits, or say why not (in
    /// order: self, shutting down, already connected, too many peers, too many inbound,
    /// too many inbound from its subnet).
    pub(crate) fn checkpoint(
        &mut self,
        id: NodeId,
        direction: Direction,
        addr: Option<SocketAddr>,
    ) -> Result<Admitted, DisconnectReason> {
        if id == self.me {
            return Err(DisconnectReason::ConnectedToSelf);
        }
        if self.closed {
            return Err(DisconnectReason::ClientQuitting);
        }
        if self.slots.contains_key(&id) {
            return Err(DisconnectReason::AlreadyConnected);
        }
        let trusted = self.trusted.contains(&id);
        if !trusted {
            if self.counted(None) >= self.limits.max_peers {
                return Err(DisconnectReason::TooManyPeers);
            }
            if direction == Direction::Inbound
                && self.counted(Some(Direction::Inbound)) >= self.limits.max_inbound
            {
                return Err(DisconnectReason::TooManyPeers);
            }
        }
        let group = self.group_of(direction, trusted, addr);
        if let Some(group) = group {
            if !self.limits.subnet.admits(group, self.inbound_groups()) {
                debug!(?addr, "refusing inbound peer: too many from its subnet");
                return Err(DisconnectReason::TooManyPeers);
            }
        }
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.pending.insert(
            ticket,
            Pending {
                direction,
                trusted,
                group,
            },
        );
        Ok(Admitted { ticket, trusted })
    }

    /// After a valid Hello: turn the pending connection into the owner of `id`, unless
    /// another connection of the same node got there first. The ticket stops being pending
    /// either way.
    pub(crate) fn claim(
        &mut self,
        ticket: Ticket,
        id: NodeId,
        direction: Direction,
    ) -> Result<(), DisconnectReason> {
        let group = self.pending.remove(&ticket).and_then(|p| p.group);
        if self.closed {
            return Err(DisconnectReason::ClientQuitting);
        }
        if self.slots.contains_key(&id) {
            return Err(DisconnectReason::AlreadyConnected);
        }
        self.slots.insert(
            id,
            Slot {
                ticket,
                direction,
                group,
                peer: None,
            },
        );
        Ok(())
    }

    /// The claimed `id`'s peer runs: the slot holds its handle from now on. Only the
    /// connection that claimed `id` calls this, and its slot stays until then (nothing else
    /// removes a claimed slot), so the slot is there.
    pub(crate) fn activate(&mut self, id: NodeId, peer: P) {
        let slot = self.slots.get_mut(&id);
        debug_assert!(
            slot.as_ref().is_some_and(|s| s.peer.is_none()),
            "activating an id that was not claimed"
        );
        if let Some(slot) = slot {
            slot.peer = Some(peer);
        }
    }

    /// Forget a connection that failed before its peer ran: its pending place, and the id
    /// it claimed (not one another connection of the same node owns).
    pub(crate) fn release(&mut self, ticket: Ticket, id: &NodeId) {
        self.pending.remove(&ticket);
        if self
            .slots
            .get(id)
            .is_some_and(|s| s.ticket == ticket && s.peer.is_none())
        {
            self.slots.remove(id);
        }
    }

    /// A running peer ended: free its id when `is_this_one` says the running peer there is
    /// the one that ended (a newer connection may have taken the id since).
    pub(crate) fn remove(&mut self, id: &NodeId, is_this_one: impl FnOnce(&P) -> bool) {
        if self
            .slots
            .get(id)
            .and_then(|s| s.peer.as_ref())
            .is_some_and(is_this_one)
        {
            self.slots.remove(id);
        }
    }

    /// Refuse every connection from now on (shutdown); peers already running stay.
    pub(crate) fn close(&mut self) {
        self.closed = true;
    }

    /// Whether [`Admission::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Mark a node as trusted (exempt from the limits).
    pub(crate) fn add_trusted(&mut self, id: NodeId) {
        self.trusted.insert(id);
    }

    /// Remove a node from the trusted set.
    pub(crate) fn remove_trusted(&mut self, id: &NodeId) {
        self.trusted.remove(id);
    }

    /// The running peers.
    pub(crate) fn peers(&self) -> impl Iterator<Item = &P> {
        self.slots.values().filter_map(|s| s.peer.as_ref())
    }

    /// The running peer of `id`.
    pub(crate) fn peer(&self, id: &NodeId) -> Option<&P> {
        self.slots.get(id)?.peer.as_ref()
    }

    /// Whether a connection owns `id`: claimed (its peer is starting) or running.
    pub(crate) fn owns(&self, id: &NodeId) -> bool {
        self.slots.contains_key(id)
    }

    /// Whether some connection is between its claim and running as a peer.
    pub(crate) fn has_claimed(&self) -> bool {
        self.slots.values().any(|s| s.peer.is_none())
    }

    /// Connections counted toward the limits (untrusted ones, pending, claimed and running),
    /// in `direction` or in both. A slot's node counts as trusted if it is trusted now; a
    /// pending connection if it was at the checkpoint (its id is not proven).
    pub(crate) fn counted(&self, direction: Option<Direction>) -> usize {
        let wanted = |d: Direction| direction.is_none_or(|w| w == d);
        let slots = self
            .slots
            .iter()
            .filter(|(id, s)| !self.trusted.contains(id) && wanted(s.direction))
            .count();
        let pending = self
            .pending
            .values()
            .filter(|p| !p.trusted && wanted(p.direction))
            .count();
        slots + pending
    }

    /// How many connections are past the checkpoint but have not claimed their id.
    #[cfg(test)]
    fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// The network group a connection counts toward under the subnet cap: inbound,
    /// untrusted and not exempt ones only.
    fn group_of(
        &self,
        direction: Direction,
        trusted: bool,
        addr: Option<SocketAddr>,
    ) -> Option<Netgroup> {
        if direction != Direction::Inbound || trusted {
            return None;
        }
        self.limits.subnet.group(addr?.ip())
    }

    /// The network groups of every connection counted under the subnet cap.
    fn inbound_groups(&self) -> impl Iterator<Item = Netgroup> + '_ {
        let pending = self.pending.values().filter_map(|p| p.group);
        let slots = self.slots.values().filter_map(|s| s.group);
        pending.chain(slots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Inbound, Outbound};

    fn node(n: u8) -> NodeId {
        NodeId([n; 64])
    }

    fn at(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().unwrap(), 30303))
    }

    fn limits(max_peers: usize, max_inbound: usize, per_subnet: usize) -> Limits {
        Limits {
            max_peers,
            max_inbound,
            subnet: SubnetCap {
                max: per_subnet,
                exempt_loopback: false,
            },
        }
    }

    fn admission(l: Limits) -> Admission<u32> {
        Admission::new(node(0), l, [])
    }

    /// Checkpoint, claim and activate `id` as a running peer (handle `id`'s first byte).
    fn run(a: &mut Admission<u32>, id: NodeId, direction: Direction, addr: Option<SocketAddr>) {
        let t = a.checkpoint(id, direction, addr).unwrap().ticket;
        a.claim(t, id, direction).unwrap();
        a.activate(id, u32::from(id.0[0]));
    }

    #[test]
    fn refuses_self() {
        let mut a = admission(limits(10, 5, 0));
        assert_eq!(
            a.checkpoint(node(0), Outbound, None).unwrap_err(),
            DisconnectReason::ConnectedToSelf
        );
        assert_eq!(a.counted(None), 0);
    }

    #[test]
    fn max_peers_counts_pending_claimed_and_running() {
        let mut a = admission(limits(3, 3, 0));
        run(&mut a, node(1), Outbound, None);
        let claimed = a.checkpoint(node(2), Outbound, None).unwrap().ticket;
        a.claim(claimed, node(2), Outbound).unwrap();
        a.checkpoint(node(3), Inbound, None).unwrap();
        assert_eq!(a.pending_count(), 1);
        assert_eq!(a.counted(None), 3);
        assert_eq!(
            a.checkpoint(node(4), Outbound, None).unwrap_err(),
            DisconnectReason::TooManyPeers
        );
    }

    #[test]
    fn dial_ratio_keeps_room_for_outbound() {
        // Two of four slots are for inbound peers: a third inbound is refused, a dial fits.
        let mut a = admission(limits(4, 2, 0));
        run(&mut a, node(1), Inbound, None);
        a.checkpoint(node(2), Inbound, None).unwrap();
        assert_eq!(
            a.checkpoint(node(3), Inbound, None).unwrap_err(),
            DisconnectReason::TooManyPeers
        );
        a.checkpoint(node(4), Outbound, None).unwrap();
        assert_eq!(a.counted(Some(Inbound)), 2);
        assert_eq!(a.counted(Some(Outbound)), 1);
    }

    #[test]
    fn trusted_are_exempt_from_limits_but_not_duplicates() {
        let mut a = admission(limits(1, 1, 1));
        a.add_trusted(node(9));
        run(&mut a, node(1), Inbound, at("10.0.0.1"));
        let got = a.checkpoint(node(9), Inbound, at("10.0.0.2")).unwrap();
        assert!(got.trusted);
        // Trusted connections are not counted, so an untrusted one is still refused only by
        // the untrusted peer already running.
        assert_eq!(a.counted(None), 1);
        a.claim(got.ticket, node(9), Inbound).unwrap();
        a.activate(node(9), 9);
        assert_eq!(
            a.checkpoint(node(9), Inbound, at("10.0.0.3")).unwrap_err(),
            DisconnectReason::AlreadyConnected
        );
        // Untrusting a running peer makes it count again.
        a.remove_trusted(&node(9));
        assert_eq!(a.counted(None), 2);
    }

    #[test]
    fn refuses_an_already_connected_node() {
        let mut a = admission(limits(10, 5, 0));
        run(&mut a, node(1), Outbound, None);
        assert_eq!(
            a.checkpoint(node(1), Inbound, None).unwrap_err(),
            DisconnectReason::AlreadyConnected
        );
        // A pending connection does not own its id yet: a second one passes the checkpoint.
        a.checkpoint(node(2), Inbound, None).unwrap();
        a.checkpoint(node(2), Inbound, None).unwrap();
    }

    #[test]
    fn subnet_cap_counts_untrusted_inbound_per_group() {
        let mut a = admission(limits(10, 10, 2));
        run(&mut a, node(1), Inbound, at("10.0.0.1"));
        a.checkpoint(node(2), Inbound, at("10.0.0.2")).unwrap();
        assert_eq!(
            a.checkpoint(node(3), Inbound, at("10.0.0.3")).unwrap_err(),
            DisconnectReason::TooManyPeers
        );
        // Another /24, an outbound connection and a trusted node are not capped.
        a.checkpoint(node(4), Inbound, at("10.0.1.1")).unwrap();
        a.checkpoint(node(5), Outbound, at("10.0.0.5")).unwrap();
        a.add_trusted(node(6));
        a.checkpoint(node(6), Inbound, at("10.0.0.6")).unwrap();
        // The running peer leaving makes room in its group.
        a.remove(&node(1), |p| *p == 1);
        a.checkpoint(node(3), Inbound, at("10.0.0.3")).unwrap();
    }

    #[test]
    fn release_frees_the_place_of_a_failed_connection() {
        let mut a = admission(limits(1, 1, 1));
        let pending = a.checkpoint(node(1), Inbound, at("10.0.0.1")).unwrap();
        a.release(pending.ticket, &node(1));
        let claimed = a.checkpoint(node(2), Inbound, at("10.0.0.2")).unwrap();
        a.claim(claimed.ticket, node(2), Inbound).unwrap();
        assert!(a.has_claimed());
        a.release(claimed.ticket, &node(2));
        assert!(!a.has_claimed());
        assert_eq!(a.counted(None), 0);
        run(&mut a, node(3), Inbound, at("10.0.0.3"));
        // Releasing after the peer runs leaves it: only `remove` ends a running peer.
        a.release(Ticket(2), &node(3));
        assert_eq!(a.peers().count(), 1);
    }

    #[test]
    fn claim_race_leaves_the_winner_in_place() {
        // Two connections of one node pass the checkpoint; the first Hello wins.
        let mut a = admission(limits(10, 10, 0));
        let first = a.checkpoint(node(1), Inbound, None).unwrap().ticket;
        let second = a.checkpoint(node(1), Outbound, None).unwrap().ticket;
        a.claim(first, node(1), Inbound).unwrap();
        assert_eq!(
            a.claim(second, node(1), Outbound).unwrap_err(),
            DisconnectReason::AlreadyConnected
        );
        // The loser's failure releases only its own place, never the winner's claim.
        a.release(second, &node(1));
        assert!(a.has_claimed());
        assert_eq!(
            a.checkpoint(node(1), Inbound, None).unwrap_err(),
            DisconnectReason::AlreadyConnected
        );
        a.activate(node(1), 1);
        assert_eq!(a.peer(&node(1)), Some(&1));
        assert_eq!(a.counted(None), 1);
    }

    #[test]
    fn remove_spares_a_newer_peer_of_the_same_node() {
        let mut a = admission(limits(10, 10, 0));
        run(&mut a, node(1), Inbound, None);
        a.remove(&node(1), |p| *p == 7);
        assert_eq!(a.peer(&node(1)), Some(&1));
        a.remove(&node(1), |p| *p == 1);
        assert_eq!(a.peer(&node(1)), None);
        assert_eq!(a.counted(None), 0);
    }

    #[test]
    fn closed_refuses_checkpoints_and_claims() {
        let mut a = admission(limits(10, 10, 0));
        let t = a.checkpoint(node(1), Inbound, None).unwrap().ticket;
        a.close();
        assert_eq!(
            a.checkpoint(node(2), Inbound, None).unwrap_err(),
            DisconnectReason::ClientQuitting
        );
        assert_eq!(
            a.claim(t, node(1), Inbound).unwrap_err(),
            DisconnectReason::ClientQuitting
        );
        assert_eq!(a.pending_count(), 0);
        // Self is still named as such.
        assert_eq!(
            a.checkpoint(node(0), Inbound, None).unwrap_err(),
            DisconnectReason::ConnectedToSelf
        );
    }
}
