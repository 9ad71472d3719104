//! A bounded least-recently-used set keyed by value, and the process-wide set of version
//! nonces we sent (self-connection detection).

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Mutex, OnceLock};

/// A set that holds at most `capacity` values, forgetting the least recently used one.
/// Membership is by value (btcd >= 0.21 keyed its known-inventory cache by pointer, which
/// made lookups of equal inventory miss; this does not).
#[derive(Debug)]
pub struct LruSet<K> {
    capacity: usize,
    /// value -> recency stamp
    stamps: HashMap<K, u64>,
    /// recency stamp -> value, oldest first
    order: BTreeMap<u64, K>,
    next: u64,
}

impl<K: Hash + Eq + Clone> LruSet<K> {
    /// An empty set holding at most `capacity` values (0 holds nothing).
    pub fn new(capacity: usize) -> Self {
        LruSet {
            capacity,
            stamps: HashMap::new(),
            order: BTreeMap::new(),
            next: 0,
        }
    }

    fn touch(&mut self, k: &K) -> bool {
        let Some(stamp) = self.stamps.get_mut(k) else {
            return false;
        };
        if let Some(v) = self.order.remove(stamp) {
            *stamp = self.next;
            self.order.insert(self.next, v);
            self.next += 1;
        }
        true
    }

    /// Add `k` (or refresh it), evicting the least recently used value when full.
    pub fn insert(&mut self, k: K) {
        if self.capacity == 0 || self.touch(&k) {
            return;
        }
        if self.stamps.len() >= self.capacity {
            if let Some((_, old)) = self.order.pop_first() {
                self.stamps.remove(&old);
            }
        }
        self.stamps.insert(k.clone(), self.next);
        self.order.insert(self.next, k);
        self.next += 1;
    }

    /// Whether `k` is present; a hit counts as a use (as in btcd's LRU).
    pub fn contains(&mut self, k: &K) -> bool {
        self.touch(k)
    }

    /// Remove `k` if present.
    pub fn remove(&mut self, k: &K) {
        if let Some(stamp) = self.stamps.remove(k) {
            self.order.remove(&stamp);
        }
    }

    /// Number of values held.
    pub fn len(&self) -> usize {
        self.stamps.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.stamps.is_empty()
    }
}

/// btcd `sentNonces`: 50 entries shared by every peer in the process.
pub const SENT_NONCES_CAPACITY: usize = 50;

fn sent_nonces() -> &'static Mutex<LruSet<u64>> {
    static SET: OnceLock<Mutex<LruSet<u64>>> = OnceLock::new();
    SET.get_or_init(|| Mutex::new(LruSet::new(SENT_NONCES_CAPACITY)))
}

/// Remember a nonce we put in a `version`.
pub(crate) fn remember_sent_nonce(nonce: u64) {
    if let Ok(mut set) = sent_nonces().lock() {
        set.insert(nonce);
    }
}

/// Whether `nonce` is one of the last 50 we sent (i.e. we are talking to ourselves).
pub(crate) fn is_own_nonce(nonce: u64) -> bool {
    sent_nonces()
        .lock()
        .map(|mut set| set.contains(&nonce))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    // btcd v0.20.1 TestMruInventoryMap, re-expressed: for several limits, only the newest
    // `limit` of 10 values remain; refreshing the oldest protects it; remove works.
    #[test]
    fn only_newest_limit_entries_remain() {
        for limit in [0usize, 1, 5, 7, 9, 10] {
            let mut s = LruSet::new(limit);
            for i in 0..10u32 {
                s.insert(i);
            }
            for i in 0..10u32 {
                let want = (i as usize) >= 10 - limit;
                assert_eq!(s.contains(&i), want, "limit {limit} value {i}");
            }
            assert_eq!(s.len(), limit);
        }
    }

    #[test]
    fn refreshing_protects_from_eviction() {
        let mut s = LruSet::new(3);
        s.insert(1);
        s.insert(2);
        s.insert(3);
        assert!(s.contains(&1)); // 1 is now newest
        s.insert(4); // evicts 2
        assert!(!s.contains(&2));
        assert!(s.contains(&1) && s.contains(&3) && s.contains(&4));
        s.insert(3); // re-insert refreshes, no growth
        assert_eq!(s.len(), 3);
        s.remove(&3);
        s.remove(&99);
        assert!(!s.contains(&3));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn membership_is_by_value() {
        let mut s = LruSet::new(2);
        s.insert(String::from("a"));
        let other = String::from("a");
        assert!(s.contains(&other));
    }
}
