//! What discovery hands a dialer: verified nodes as [`Candidate`]s, on one bounded
//! [`Candidates`] stream per service, merged into one stream when several run.
//!
//! Merged or not, the stream yields a node at most once per [`DEDUP_WINDOW`] (remembering
//! at most [`DEDUP_CAPACITY`] ids), except that a candidate carrying a record passes when
//! the earlier one had none: a node found by discv4 before its record arrived is not
//! hidden from a dialer that filters by the record's capabilities.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::v4::table::Node;
use crate::node::NodeId;
use crate::record::NodeRecord;

/// How long a yielded node id suppresses the same node from any source. Past it a node
/// found again is offered again, and the dial scheduler's backoff decides whether it is
/// worth a dial; so a node that refused us once (full, say) is not forgotten for good.
pub(super) const DEDUP_WINDOW: Duration = Duration::from_secs(60);
/// Most node ids remembered for deduplication; the oldest are forgotten first.
pub(super) const DEDUP_CAPACITY: usize = 4096;

/// A node that proved its endpoint, offered to a dialer.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The node and the discovery endpoint it answered from (TCP port as it announced it).
    pub node: Node,
    /// Its record (signature and id checked): from discv4's `ENRRequest` when the node
    /// answered it, or the one discv5 verified against the node's address.
    pub record: Option<NodeRecord>,
}

impl Candidate {
    /// The TCP address to dial: the record's, else the endpoint's when it has a TCP port.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.record
            .as_ref()
            .and_then(NodeRecord::tcp_addr)
            .or((self.node.endpoint.tcp_port != 0)
                .then(|| SocketAddr::new(self.node.endpoint.ip, self.node.endpoint.tcp_port)))
    }
}

/// The stream of [`Candidate`]s from one discovery service, or from several merged.
///
/// Each source is a bounded channel its service fills (dropping candidates when full);
/// sources are polled in turn so a busy one cannot starve another.
#[derive(Debug)]
pub struct Candidates {
    sources: Vec<mpsc::Receiver<Candidate>>,
    /// Source polled first next time.
    next: usize,
    recent: RecentIds,
}

impl Candidates {
    /// The stream of one service's channel.
    pub(crate) fn new(rx: mpsc::Receiver<Candidate>) -> Candidates {
        Candidates {
            sources: vec![rx],
            next: 0,
            recent: RecentIds::new(DEDUP_CAPACITY, DEDUP_WINDOW),
        }
    }

    /// One stream of both streams' candidates, deduplicated by node id; it ends when both
    /// have ended.
    pub fn merge(mut self, other: Candidates) -> Candidates {
        self.sources.extend(other.sources);
        self
    }

    /// The next candidate; `None` once every source has shut down.
    pub async fn recv(&mut self) -> Option<Candidate> {
        std::future::poll_fn(|cx| self.poll_candidate(cx)).await
    }

    fn poll_candidate(&mut self, cx: &mut Context<'_>) -> Poll<Option<Candidate>> {
        // tokio's clock, which a simulated network drives.
        let now = tokio::time::Instant::now().into_std();
        let mut i = 0;
        while i < self.sources.len() {
            let at = (self.next + i) % self.sources.len();
            match self.sources[at].poll_recv(cx) {
                Poll::Ready(Some(c)) => {
                    if self.recent.admit(c.node.id, c.record.is_some(), now) {
                        self.next = (at + 1) % self.sources.len();
                        return Poll::Ready(Some(c));
                    }
                    // A duplicate: poll the same source again. Each item is consumed, so
                    // this ends when the channel is empty.
                }
                Poll::Ready(None) => {
                    self.sources.remove(at);
                    if self.sources.is_empty() {
                        return Poll::Ready(None);
                    }
                    self.next %= self.sources.len();
                }
                Poll::Pending => i += 1,
            }
        }
        if self.sources.is_empty() {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

impl futures::Stream for Candidates {
    type Item = Candidate;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Candidate>> {
        self.poll_candidate(cx)
    }
}

/// Node ids seen recently, bounded in count and age.
#[derive(Debug)]
pub(crate) struct RecentIds {
    capacity: usize,
    window: Duration,
    /// When each id was last admitted, and whether that candidate had a record.
    seen: HashMap<NodeId, (Instant, bool)>,
    /// Admissions, oldest first; an entry whose time no longer matches `seen` is stale.
    order: VecDeque<(NodeId, Instant)>,
}

impl RecentIds {
    pub(crate) fn new(capacity: usize, window: Duration) -> RecentIds {
        RecentIds {
            capacity: capacity.max(1),
            window,
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Whether a candidate for `id` should pass: not seen within the window, or seen only
    /// without a record while this one has one. Remembers it when it passes.
    pub(crate) fn admit(&mut self, id: NodeId, has_record: bool, now: Instant) -> bool {
        if let Some(&(at, had_record)) = self.seen.get(&id) {
            if now.duration_since(at) < self.window && (had_record || !has_record) {
                return false;
            }
        }
        self.seen.insert(id, (now, has_record));
        self.order.push_back((id, now));
        while self.order.len() > self.capacity
            || self
                .order
                .front()
                .is_some_and(|(_, at)| now.duration_since(*at) >= self.window)
        {
            let Some((old, at)) = self.order.pop_front() else {
                break;
            };
            if self.seen.get(&old).is_some_and(|(t, _)| *t == at) {
                self.seen.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discover::v4::packet::Endpoint;
    use crate::node::NodeKey;
    use crate::record::RecordSpec;

    fn candidate(key: &NodeKey, with_record: bool) -> Candidate {
        let record = with_record.then(|| {
            NodeRecord::build(
                key,
                1,
                &RecordSpec {
                    ip: Some("127.0.0.3".parse().unwrap()),
                    tcp_port: Some(30303),
                    udp_port: Some(30303),
                    capabilities: Vec::new(),
                },
            )
            .unwrap()
        });
        Candidate {
            node: Node {
                id: key.id(),
                endpoint: Endpoint {
                    ip: "127.0.0.3".parse().unwrap(),
                    udp_port: 30303,
                    tcp_port: 30303,
                },
            },
            record,
        }
    }

    #[tokio::test]
    async fn merged_streams_yield_each_node_once_and_end_together() {
        let (tx4, rx4) = mpsc::channel(8);
        let (tx5, rx5) = mpsc::channel(8);
        let mut merged = Candidates::new(rx4).merge(Candidates::new(rx5));
        let a = NodeKey::generate();
        let b = NodeKey::generate();
        tx4.send(candidate(&a, true)).await.unwrap();
        tx5.send(candidate(&a, true)).await.unwrap();
        tx5.send(candidate(&b, true)).await.unwrap();
        let mut ids = vec![
            merged.recv().await.unwrap().node.id,
            merged.recv().await.unwrap().node.id,
        ];
        ids.sort_by_key(|id| id.0);
        let mut want = vec![a.id(), b.id()];
        want.sort_by_key(|id| id.0);
        assert_eq!(ids, want);
        // Nothing else: the second `a` was a duplicate.
        drop(tx4);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), merged.recv())
                .await
                .is_err()
        );
        drop(tx5);
        assert!(merged.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_record_passes_after_a_recordless_duplicate() {
        let (tx, rx) = mpsc::channel(8);
        let mut stream = Candidates::new(rx);
        let a = NodeKey::generate();
        tx.send(candidate(&a, false)).await.unwrap();
        tx.send(candidate(&a, true)).await.unwrap();
        tx.send(candidate(&a, false)).await.unwrap();
        tx.send(candidate(&a, true)).await.unwrap();
        drop(tx);
        assert!(stream.recv().await.unwrap().record.is_none());
        assert!(stream.recv().await.unwrap().record.is_some());
        assert!(stream.recv().await.is_none());
    }

    #[test]
    fn recent_ids_are_bounded_in_count_and_age() {
        let window = Duration::from_secs(60);
        let mut recent = RecentIds::new(3, window);
        let t0 = Instant::now();
        let ids: Vec<NodeId> = (0..5).map(|_| NodeKey::generate().id()).collect();
        for id in &ids {
            assert!(recent.admit(*id, true, t0));
        }
        assert!(recent.seen.len() <= 3 && recent.order.len() <= 3);
        // The newest are remembered, the oldest forgotten.
        assert!(!recent.admit(ids[4], true, t0));
        assert!(recent.admit(ids[0], true, t0));
        // Past the window everything passes again.
        let later = t0 + window;
        assert!(recent.admit(ids[4], true, later));
        assert_eq!(recent.seen.len(), 1);
    }
}
