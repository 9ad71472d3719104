//! The discv4 node table: a Kademlia routing table keyed by log-distance.
//!
//! The distance between two nodes is the XOR of the keccak256 hashes of their ids; a
//! node's *log-distance* from us (1..=256) is the bit length of that XOR and picks its
//! bucket. Each of the 256 buckets holds at most [`BUCKET_SIZE`] live-looking entries
//! (most recently seen first) and a replacement list of at most [`MAX_REPLACEMENTS`]
//! nodes to fall back on when an entry stops answering. As in go-ethereum, an attacker
//! cannot fill a bucket or the table from one network: at most
//! [`TableConfig::bucket_subnet_limit`] nodes (entries and replacements together) of one
//! /24 (IPv4) or /48 (IPv6) per bucket and [`TableConfig::table_subnet_limit`] per table,
//! loopback and LAN addresses exempt unless [`TableConfig::exempt_lan`] is off.
//!
//! The table is pure: it sends nothing and reads no clock. The caller reports what it saw
//! ([`Table::add_seen`] for nodes learnt from `Neighbors`, [`Table::add_verified`] for
//! nodes that completed a ping/pong) and drives revalidation: it asks
//! [`Table::next_to_revalidate`] for the entry checked least recently, pings it, and reports
//! the outcome to [`Table::revalidated`], which replaces a dead entry with its bucket's
//! newest replacement.
//!
//! Memory is bounded: 256 × ([`BUCKET_SIZE`] + [`MAX_REPLACEMENTS`]) entries of
//! `size_of::<Entry>()` bytes each (see [`Table::max_memory`]), plus one count per distinct
//! subnet present.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use sha3::{Digest, Keccak256};

use super::packet::{Endpoint, Neighbor};
use crate::node::NodeId;

/// Entries per bucket (Kademlia's k).
pub const BUCKET_SIZE: usize = 16;
/// Replacement nodes kept per bucket.
pub const MAX_REPLACEMENTS: usize = 10;
/// One bucket per log-distance 1..=256.
pub const NUM_BUCKETS: usize = 256;

/// A node as the table keeps it: its id and where it listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Node {
    /// The node id (secp256k1 public key).
    pub id: NodeId,
    /// IP, UDP (discovery) port and TCP (RLPx) port.
    pub endpoint: Endpoint,
}

impl From<Neighbor> for Node {
    fn from(n: Neighbor) -> Self {
        Node {
            id: n.id,
            endpoint: n.endpoint,
        }
    }
}

/// Limits of a [`Table`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableConfig {
    /// Nodes of one subnet (/24 IPv4, /48 IPv6) a bucket may hold, entries and
    /// replacements together (go-ethereum: 2).
    pub bucket_subnet_limit: usize,
    /// Nodes of one subnet the whole table may hold (go-ethereum: 10).
    pub table_subnet_limit: usize,
    /// Whether loopback and LAN addresses (private, link-local, IPv6 unique-local) are
    /// exempt from the subnet limits.
    pub exempt_lan: bool,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            bucket_subnet_limit: 2,
            table_subnet_limit: 10,
            exempt_lan: true,
        }
    }
}

/// One node in the table, with its bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The node.
    pub node: Node,
    /// keccak256 of the node id: its position in the keyspace.
    hash: [u8; 32],
    /// When the table first learnt of it.
    pub added_at: Instant,
    /// When it was last verified (ping/pong) or revalidated alive.
    pub last_seen: Option<Instant>,
    /// When it was last revalidated (successfully; a failed one removes it).
    pub last_checked: Option<Instant>,
    /// How many times it proved live (verified or revalidated).
    pub liveness_checks: u32,
}

impl Entry {
    fn new(node: Node, hash: [u8; 32], now: Instant) -> Self {
        Entry {
            node,
            hash,
            added_at: now,
            last_seen: None,
            last_checked: None,
            liveness_checks: 0,
        }
    }
}

/// What [`Table::add_seen`] or [`Table::add_verified`] did with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    /// Now an entry of its bucket.
    Added,
    /// Already an entry: a verified node moves to the front and takes the new endpoint
    /// (unless that would break a subnet limit); a seen one is left as it was.
    AlreadyPresent,
    /// Its bucket is full: kept in the replacement list.
    Replacement,
    /// Not kept.
    Rejected(RejectReason),
}

/// Why a node was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// It is us.
    SelfNode,
    /// Its id is not a secp256k1 public key.
    InvalidId,
    /// Its IP is unspecified, multicast or broadcast, or its UDP port is 0.
    UnusableEndpoint,
    /// Its subnet already has as many nodes as the bucket or table allows.
    SubnetLimit,
}

/// What [`Table::revalidated`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revalidation {
    /// The node answered: marked checked and moved to the front of its bucket.
    Alive,
    /// The node did not answer and was removed; the bucket's newest replacement, if it
    /// had one, took its place (the caller may want to ping it).
    Removed {
        /// The replacement now in the bucket.
        replacement: Option<Node>,
    },
    /// The node is no longer in the table.
    NotFound,
}

/// Subnet of an IP for the diversity limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Subnet {
    V4([u8; 3]),
    V6([u8; 6]),
}

fn is_lan(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local(),
    }
}

#[derive(Debug, Default)]
struct Bucket {
    /// Most recently seen first.
    entries: Vec<Entry>,
    /// Newest last.
    replacements: Vec<Entry>,
}

/// The log-distance between two keyspace positions: the bit length of their XOR (0 when
/// equal, up to 256).
pub fn log_distance(a: &[u8; 32], b: &[u8; 32]) -> u32 {
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let d = x ^ y;
        if d != 0 {
            return (32 - i as u32) * 8 - d.leading_zeros();
        }
    }
    0
}

/// A node id's position in the keyspace: keccak256 of the id.
pub fn keyspace_hash(id: &NodeId) -> [u8; 32] {
    Keccak256::digest(id.0).into()
}

fn xor(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// The node table. See the [module docs](self).
#[derive(Debug)]
pub struct Table {
    self_id: NodeId,
    self_hash: [u8; 32],
    config: TableConfig,
    buckets: Vec<Bucket>,
    /// Nodes (entries and replacements) per subnet, for the table-wide limit.
    subnets: HashMap<Subnet, usize>,
    len: usize,
}

impl Table {
    /// An empty table around our own id.
    pub fn new(self_id: NodeId, config: TableConfig) -> Self {
        Table {
            self_id,
            self_hash: keyspace_hash(&self_id),
            config,
            buckets: (0..NUM_BUCKETS).map(|_| Bucket::default()).collect(),
            subnets: HashMap::new(),
            len: 0,
        }
    }

    /// Our own id.
    pub fn self_id(&self) -> NodeId {
        self.self_id
    }

    /// The upper bound on the heap and inline memory the table's entries can take:
    /// every bucket and replacement list full, plus the bucket array. The subnet counts
    /// add at most one small map slot per node on top.
    pub fn max_memory() -> usize {
        NUM_BUCKETS
            * ((BUCKET_SIZE + MAX_REPLACEMENTS) * std::mem::size_of::<Entry>()
                + std::mem::size_of::<Bucket>())
    }

    /// Entries (not counting replacements).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entry for `id`, if it is one.
    pub fn get(&self, id: &NodeId) -> Option<&Entry> {
        let b = self.bucket_index(&keyspace_hash(id))?;
        self.buckets[b].entries.iter().find(|e| e.node.id == *id)
    }

    /// Whether `id` is an entry (replacements do not count).
    pub fn contains(&self, id: &NodeId) -> bool {
        self.get(id).is_some()
    }

    /// Every entry, nearest buckets first.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flat_map(|b| b.entries.iter())
    }

    /// Entries at log-distance `distance` (1..=256) from us.
    pub fn bucket(&self, distance: u32) -> &[Entry] {
        match distance {
            1..=256 => &self.buckets[distance as usize - 1].entries,
            _ => &[],
        }
    }

    /// Replacements at log-distance `distance` (1..=256) from us, newest last.
    pub fn replacements(&self, distance: u32) -> &[Entry] {
        match distance {
            1..=256 => &self.buckets[distance as usize - 1].replacements,
            _ => &[],
        }
    }

    fn bucket_index(&self, hash: &[u8; 32]) -> Option<usize> {
        match log_distance(&self.self_hash, hash) {
            0 => None,
            d => Some(d as usize - 1),
        }
    }

    fn subnet(&self, ip: IpAddr) -> Option<Subnet> {
        if self.config.exempt_lan && is_lan(ip) {
            return None;
        }
        Some(match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                Subnet::V4([o[0], o[1], o[2]])
            }
            IpAddr::V6(v6) => {
                let o = v6.octets();
                Subnet::V6([o[0], o[1], o[2], o[3], o[4], o[5]])
            }
        })
    }

    /// Whether one more node of `ip`'s subnet fits bucket `b` and the table, not
    /// counting the node `ignoring` (whose address is being replaced).
    fn ip_fits(&self, b: usize, ip: IpAddr, ignoring: Option<&NodeId>) -> bool {
        let Some(net) = self.subnet(ip) else {
            return true;
        };
        let bucket = &self.buckets[b];
        let mut ignored_same_net = false;
        let in_bucket = bucket
            .entries
            .iter()
            .chain(&bucket.replacements)
            .filter(|e| self.subnet(e.node.endpoint.ip) == Some(net))
            .filter(|e| {
                let ignore = Some(&e.node.id) == ignoring;
                ignored_same_net |= ignore;
                !ignore
            })
            .count();
        let in_table = self
            .subnets
            .get(&net)
            .copied()
            .unwrap_or(0)
            .saturating_sub(usize::from(ignored_same_net));
        in_bucket < self.config.bucket_subnet_limit && in_table < self.config.table_subnet_limit
    }

    fn count_ip(&mut self, ip: IpAddr) {
        if let Some(net) = self.subnet(ip) {
            *self.subnets.entry(net).or_insert(0) += 1;
        }
    }

    fn release_ip(&mut self, ip: IpAddr) {
        if let Some(net) = self.subnet(ip) {
            if let Some(n) = self.subnets.get_mut(&net) {
                *n -= 1;
                if *n == 0 {
                    self.subnets.remove(&net);
                }
            }
        }
    }

    fn check(&self, node: &Node) -> Result<(usize, [u8; 32]), RejectReason> {
        if node.id == self.self_id {
            return Err(RejectReason::SelfNode);
        }
        let ip = node.endpoint.ip;
        let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
        if ip.is_unspecified() || ip.is_multicast() || broadcast || node.endpoint.udp_port == 0 {
            return Err(RejectReason::UnusableEndpoint);
        }
        let hash = keyspace_hash(&node.id);
        // Equal hashes with different ids would need a keccak256 collision.
        let b = self.bucket_index(&hash).ok_or(RejectReason::SelfNode)?;
        if node.id.to_pubkey().is_none() {
            return Err(RejectReason::InvalidId);
        }
        Ok((b, hash))
    }

    /// Records a node learnt from someone else (a `Neighbors` answer), not yet verified.
    /// It joins the back of its bucket if there is room, else the replacement list; an
    /// existing entry is left unchanged (the claim is second-hand).
    pub fn add_seen(&mut self, node: Node, now: Instant) -> AddOutcome {
        let (b, hash) = match self.check(&node) {
            Ok(ok) => ok,
            Err(reason) => return AddOutcome::Rejected(reason),
        };
        if self.buckets[b].entries.iter().any(|e| e.node.id == node.id) {
            return AddOutcome::AlreadyPresent;
        }
        self.insert(b, Entry::new(node, hash, now), false)
    }

    /// Records a node that proved its endpoint (it answered our ping, or pinged us and
    /// answered ours). An existing entry moves to the front of its bucket and takes the new
    /// endpoint if the subnet limits allow; a new node goes to the front if there is room,
    /// else to the replacement list.
    pub fn add_verified(&mut self, node: Node, now: Instant) -> AddOutcome {
        let (b, hash) = match self.check(&node) {
            Ok(ok) => ok,
            Err(reason) => return AddOutcome::Rejected(reason),
        };
        if let Some(i) = self.buckets[b]
            .entries
            .iter()
            .position(|e| e.node.id == node.id)
        {
            let old_ip = self.buckets[b].entries[i].node.endpoint.ip;
            let new_ip = node.endpoint.ip;
            let move_ok = old_ip == new_ip || self.ip_fits(b, new_ip, Some(&node.id));
            if move_ok && old_ip != new_ip {
                self.release_ip(old_ip);
                self.count_ip(new_ip);
            }
            let mut entry = self.buckets[b].entries.remove(i);
            if move_ok {
                entry.node.endpoint = node.endpoint;
            }
            entry.last_seen = Some(now);
            entry.liveness_checks = entry.liveness_checks.saturating_add(1);
            self.buckets[b].entries.insert(0, entry);
            return AddOutcome::AlreadyPresent;
        }
        let mut entry = Entry::new(node, hash, now);
        entry.last_seen = Some(now);
        entry.liveness_checks = 1;
        self.insert(b, entry, true)
    }

    /// Puts a node that is not an entry of bucket `b` into it (front or back) or, when
    /// full, into its replacement list.
    fn insert(&mut self, b: usize, entry: Entry, front: bool) -> AddOutcome {
        let id = entry.node.id;
        let ip = entry.node.endpoint.ip;
        let old = self.buckets[b]
            .replacements
            .iter()
            .position(|r| r.node.id == id);
        // A replacement being promoted or refreshed does not count against itself.
        if !self.ip_fits(b, ip, old.map(|_| &id)) {
            return AddOutcome::Rejected(RejectReason::SubnetLimit);
        }
        if let Some(i) = old {
            let old = self.buckets[b].replacements.remove(i);
            self.release_ip(old.node.endpoint.ip);
        }
        self.count_ip(ip);
        let bucket = &mut self.buckets[b];
        if bucket.entries.len() < BUCKET_SIZE {
            if front {
                bucket.entries.insert(0, entry);
            } else {
                bucket.entries.push(entry);
            }
            self.len += 1;
            return AddOutcome::Added;
        }
        if bucket.replacements.capacity() == 0 {
            bucket.replacements.reserve_exact(MAX_REPLACEMENTS);
        }
        let evicted = if bucket.replacements.len() == MAX_REPLACEMENTS {
            Some(bucket.replacements.remove(0))
        } else {
            None
        };
        bucket.replacements.push(entry);
        if let Some(evicted) = evicted {
            self.release_ip(evicted.node.endpoint.ip);
        }
        AddOutcome::Replacement
    }

    /// The entry whose last successful check is oldest (never-checked entries first, the
    /// earliest added of them first): the one to ping next. O(entries).
    pub fn next_to_revalidate(&self) -> Option<&Entry> {
        self.entries().min_by_key(|e| (e.last_checked, e.added_at))
    }

    /// Records the outcome of pinging entry `id`: alive entries are marked checked and
    /// moved to the front; a dead one is removed and replaced by the newest replacement.
    pub fn revalidated(&mut self, id: &NodeId, alive: bool, now: Instant) -> Revalidation {
        let Some(b) = self.bucket_index(&keyspace_hash(id)) else {
            return Revalidation::NotFound;
        };
        let bucket = &mut self.buckets[b];
        let Some(i) = bucket.entries.iter().position(|e| e.node.id == *id) else {
            return Revalidation::NotFound;
        };
        let mut entry = bucket.entries.remove(i);
        if alive {
            entry.last_checked = Some(now);
            entry.last_seen = Some(now);
            entry.liveness_checks = entry.liveness_checks.saturating_add(1);
            bucket.entries.insert(0, entry);
            return Revalidation::Alive;
        }
        // The replacement's address is already counted against the limits.
        let replacement = bucket.replacements.pop();
        let promoted = replacement.as_ref().map(|r| r.node);
        if let Some(r) = replacement {
            bucket.entries.push(r);
        } else {
            self.len -= 1;
        }
        self.release_ip(entry.node.endpoint.ip);
        Revalidation::Removed {
            replacement: promoted,
        }
    }

    /// Removes `id` from the table (entry or replacement); an entry is not replaced.
    /// Returns whether it was there.
    pub fn remove(&mut self, id: &NodeId) -> bool {
        let Some(b) = self.bucket_index(&keyspace_hash(id)) else {
            return false;
        };
        let bucket = &mut self.buckets[b];
        let removed = if let Some(i) = bucket.entries.iter().position(|e| e.node.id == *id) {
            self.len -= 1;
            bucket.entries.remove(i)
        } else if let Some(i) = bucket.replacements.iter().position(|e| e.node.id == *id) {
            bucket.replacements.remove(i)
        } else {
            return false;
        };
        self.release_ip(removed.node.endpoint.ip);
        true
    }

    /// Up to `n` entries closest to `target` by XOR distance of their keyspace hashes,
    /// nearest first. With `live_only`, only entries that have proved live at least once
    /// (what to answer a `FindNode` with).
    pub fn closest(&self, target: &NodeId, n: usize, live_only: bool) -> Vec<Node> {
        let target = keyspace_hash(target);
        let mut found: Vec<([u8; 32], Node)> = self
            .entries()
            .filter(|e| !live_only || e.liveness_checks > 0)
            .map(|e| (xor(&e.hash, &target), e.node))
            .collect();
        found.sort_unstable_by_key(|a| a.0);
        found.truncate(n);
        found.into_iter().map(|(_, node)| node).collect()
    }
}

#[cfg(test)]
mod tests;
