//! The node-wide memory budget: every byte held on a peer's behalf (its frame buffer, the
//! decompressed payload being built, its protocols' inbound queues) is charged to that
//! peer's `Holder` and to one [`MemoryBudget`] shared by the whole node.
//!
//! When a charge does not fit, the holder holding the most is evicted (its peer is
//! disconnected); a claim that would make the claimant itself the largest holder is
//! refused instead, so a peer announcing a huge frame pays for it, not its neighbours.
//! Each holder may always keep up to [`PEER_ALLOWANCE`] bytes even over the budget, so an
//! honest peer with little queued is never blocked or evicted by an attacker filling the
//! budget: the node's worst case is the budget plus that allowance per peer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::Notify;

/// Bytes a holder may hold whatever the budget says (the fixed per-peer overhead).
pub const PEER_ALLOWANCE: usize = 256 * 1024;

/// Default node-wide budget.
pub const DEFAULT_BUDGET_BYTES: usize = 256 * 1024 * 1024;

/// A claim could not be granted.
#[derive(Debug, Clone, thiserror::Error)]
#[error("node memory budget: {claim} bytes refused ({held} held by this peer, {used} of {limit} in use)")]
pub struct BudgetExceeded {
    /// Bytes asked for.
    pub claim: usize,
    /// Bytes the claimant already held.
    pub held: usize,
    /// Bytes charged node-wide at the time.
    pub used: usize,
    /// The node-wide limit.
    pub limit: usize,
}

/// One node-wide memory budget; cheap to clone (all clones share it).
#[derive(Clone)]
pub struct MemoryBudget {
    inner: Arc<BudgetInner>,
}

struct BudgetInner {
    limit: usize,
    used: AtomicUsize,
    holders: Mutex<HashMap<u64, Weak<HolderInner>>>,
    next_id: AtomicU64,
    released: Notify,
    /// Chargers waiting for room. A release notifies only when there are some: every
    /// message read releases bytes, and `notify_waiters` takes a node-wide lock each time.
    waiting: AtomicUsize,
}

impl BudgetInner {
    /// `n` bytes are free again: wake the chargers waiting for room, if any.
    fn give_back(&self, n: usize) {
        // SeqCst with the waiters' count: a charger either counts itself before this
        // load (and is notified) or retries after the subtraction (and sees the room).
        self.used.fetch_sub(n, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.released.notify_waiters();
        }
    }
}

impl std::fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("limit", &self.inner.limit)
            .field("used", &self.used())
            .finish()
    }
}

impl Default for MemoryBudget {
    fn default() -> Self {
        Self::new(DEFAULT_BUDGET_BYTES)
    }
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        MemoryBudget {
            inner: Arc::new(BudgetInner {
                limit,
                used: AtomicUsize::new(0),
                holders: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                released: Notify::new(),
                waiting: AtomicUsize::new(0),
            }),
        }
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes charged now, node-wide.
    pub fn used(&self) -> usize {
        self.inner.used.load(Ordering::Acquire)
    }

    /// A new holder (one per peer), charged against this budget.
    pub(crate) fn holder(&self) -> Holder {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let inner = Arc::new(HolderInner {
            id,
            budget: self.inner.clone(),
            held: AtomicUsize::new(0),
            evict: OnceLock::new(),
        });
        lock(&self.inner.holders).insert(id, Arc::downgrade(&inner));
        Holder { inner }
    }
}

type EvictFn = Box<dyn Fn(String) + Send + Sync>;

struct HolderInner {
    id: u64,
    budget: Arc<BudgetInner>,
    held: AtomicUsize,
    evict: OnceLock<EvictFn>,
}

impl Drop for HolderInner {
    fn drop(&mut self) {
        // Whatever is still counted belongs to nobody any more.
        let held = self.held.swap(0, Ordering::AcqRel);
        if held > 0 {
            self.budget.give_back(held);
        }
        lock(&self.budget.holders).remove(&self.id);
    }
}

/// A charger counted among those waiting for room, until dropped.
struct Waiting<'a>(&'a BudgetInner);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One peer's account in the node budget. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Holder {
    inner: Arc<HolderInner>,
}

impl std::fmt::Debug for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holder")
            .field("held", &self.held())
            .finish()
    }
}

impl Holder {
    /// What to do when this holder is chosen for eviction (set once, by the peer).
    pub(crate) fn on_evict(&self, f: impl Fn(String) + Send + Sync + 'static) {
        let _ = self.inner.evict.set(Box::new(f));
    }

    /// Bytes held now.
    pub(crate) fn held(&self) -> usize {
        self.inner.held.load(Ordering::Acquire)
    }

    /// Give back `n` bytes charged earlier.
    pub(crate) fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.inner.held.fetch_sub(n, Ordering::AcqRel);
        self.inner.budget.give_back(n);
    }

    fn add(&self, n: usize) {
        self.inner.held.fetch_add(n, Ordering::AcqRel);
        self.inner.budget.used.fetch_add(n, Ordering::AcqRel);
    }

    /// Charge `n` bytes now if they fit in the budget, or if this holder stays within its
    /// allowance. Otherwise the largest holder is chosen: if that is this holder (counting
    /// the claim) the claim is refused, else the largest is evicted and `Ok(None)` returned
    /// (room should appear once its bytes are released).
    fn try_charge(&self, n: usize) -> Result<Option<Charge>, BudgetExceeded> {
        let budget = &self.inner.budget;
        let held = self.held();
        let fits = budget
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(n).filter(|&u| u <= budget.limit)
            })
            .is_ok();
        if fits {
            self.inner.held.fetch_add(n, Ordering::AcqRel);
            return Ok(Some(Charge::new(self.clone(), n)));
        }
        if held.saturating_add(n) <= PEER_ALLOWANCE {
            self.add(n);
            // Over the budget on allowances alone: make room by evicting the largest, as
            // long as that is someone holding more than the allowance.
            self.evict_largest(0);
            return Ok(Some(Charge::new(self.clone(), n)));
        }
        if self.evict_largest(n) {
            return Ok(None);
        }
        Err(BudgetExceeded {
            claim: n,
            held,
            used: budget.used.load(Ordering::Acquire),
            limit: budget.limit,
        })
    }

    /// Evict the holder holding the most (this one counted with `claim` more). Returns
    /// false when this holder is the largest, or nobody else holds more than the allowance.
    fn evict_largest(&self, claim: usize) -> bool {
        let budget = &self.inner.budget;
        let mine = self.held().saturating_add(claim);
        let victim = {
            let holders = lock(&budget.holders);
            holders
                .values()
                .filter_map(Weak::upgrade)
                .filter(|h| h.id != self.inner.id)
                .max_by_key(|h| h.held.load(Ordering::Acquire))
        };
        let Some(victim) = victim else {
            return false;
        };
        let theirs = victim.held.load(Ordering::Acquire);
        if theirs < mine || theirs <= PEER_ALLOWANCE {
            return false;
        }
        if let Some(evict) = victim.evict.get() {
            evict(format!(
                "node memory budget full ({} of {} bytes): evicting the largest holder ({theirs} bytes)",
                budget.used.load(Ordering::Acquire),
                budget.limit
            ));
        }
        true
    }

    /// Charge `n` bytes, waiting (up to `wait`) for room after evicting the largest holder.
    /// Refused when this holder would be the largest, or when no room appears in time.
    pub(crate) async fn charge(&self, n: usize, wait: Duration) -> Result<Charge, BudgetExceeded> {
        // Almost always there is room: then no clock read and no waiter registration.
        if let Some(charge) = self.try_charge(n)? {
            return Ok(charge);
        }
        let deadline = tokio::time::Instant::now() + wait;
        let budget = &self.inner.budget;
        budget.waiting.fetch_add(1, Ordering::SeqCst);
        let _counted = Waiting(budget);
        loop {
            let released = budget.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            match self.try_charge(n) {
                Ok(Some(charge)) => return Ok(charge),
                Ok(None) => {}
                Err(e) => return Err(e),
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return Err(BudgetExceeded {
                    claim: n,
                    held: self.held(),
                    used: budget.used.load(Ordering::Acquire),
                    limit: budget.limit,
                });
            }
        }
    }

    /// Take over `n` bytes charged earlier (say by [`Charge::keep`]) so that they are given
    /// back when the returned charge drops.
    pub(crate) fn adopt(&self, n: usize) -> Charge {
        Charge::new(self.clone(), n)
    }
}

/// Bytes charged to a holder, given back when dropped (or handed over with [`Charge::keep`]).
#[derive(Debug)]
pub(crate) struct Charge {
    holder: Holder,
    amount: usize,
}

impl Charge {
    fn new(holder: Holder, amount: usize) -> Self {
        Charge { holder, amount }
    }

    /// Lower the charge to `n` bytes (the memory shrank), releasing the rest now.
    pub(crate) fn shrink_to(&mut self, n: usize) {
        if n < self.amount {
            self.holder.release(self.amount - n);
            self.amount = n;
        }
    }

    /// Stop tracking: the bytes stay charged, and whoever took them over must
    /// [`Holder::release`] them.
    pub(crate) fn keep(mut self) -> usize {
        std::mem::take(&mut self.amount)
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.holder.release(self.amount);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    fn evict_flag(h: &Holder) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        h.on_evict(move |_| f.store(true, Ordering::SeqCst));
        flag
    }

    #[tokio::test]
    async fn charges_are_released_exactly() {
        let budget = MemoryBudget::new(1 << 20);
        let h = budget.holder();
        let a = h.charge(1000, Duration::ZERO).await.unwrap();
        let mut b = h.charge(5000, Duration::ZERO).await.unwrap();
        assert_eq!((h.held(), budget.used()), (6000, 6000));
        b.shrink_to(100);
        assert_eq!(budget.used(), 1100);
        let kept = b.keep();
        drop(a);
        assert_eq!(budget.used(), 100);
        h.release(kept);
        assert_eq!((h.held(), budget.used()), (0, 0));
    }

    #[tokio::test]
    async fn the_largest_holder_is_evicted_never_the_small_one() {
        let budget = MemoryBudget::new(4 << 20);
        let big = budget.holder();
        let small = budget.holder();
        let big_evicted = evict_flag(&big);
        let small_evicted = evict_flag(&small);
        let hog = big.charge(4 << 20, Duration::ZERO).await.unwrap();
        // A small claim over the budget is granted from the allowance; the hog goes.
        let s = small.charge(1000, Duration::ZERO).await.unwrap();
        assert!(big_evicted.load(Ordering::SeqCst));
        assert!(!small_evicted.load(Ordering::SeqCst));
        // A claim bigger than what the hog holds makes the claimant the largest: refused.
        let other = budget.holder();
        let other_evicted = evict_flag(&other);
        assert!(other.charge(5 << 20, Duration::ZERO).await.is_err());
        assert!(!other_evicted.load(Ordering::SeqCst));
        // A big claim waits for the evicted hog's bytes, then is granted.
        let waiter = tokio::spawn({
            let other = other.clone();
            async move { other.charge(2 << 20, Duration::from_secs(10)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(hog);
        let granted = waiter.await.unwrap().unwrap();
        assert_eq!(budget.used(), 1000 + (2 << 20));
        drop((granted, s));
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn a_dropped_holder_gives_back_what_it_still_held() {
        let budget = MemoryBudget::new(1 << 20);
        let h = budget.holder();
        h.charge(500, Duration::ZERO).await.unwrap().keep();
        drop(h);
        assert_eq!(budget.used(), 0);
    }
}
