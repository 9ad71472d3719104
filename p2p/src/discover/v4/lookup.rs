//! Iterative Kademlia lookup over the discv4 service: ask the [`ALPHA`] closest nodes not
//! yet asked for their neighbours of the target, merge the answers into the
//! [`BUCKET_SIZE`] closest known, and stop when every one of those has been asked.
//!
//! Each query bonds first (see the service's endpoint proofs) and is retried once on
//! timeout; a node that never answers leaves the result. The number of queries per
//! lookup is capped by [`MAX_LOOKUP_QUERIES`], so a lookup ends within
//! `MAX_LOOKUP_QUERIES / ALPHA` rounds of at most a few request timeouts each.

use std::collections::HashSet;
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use tracing::{debug, trace, Instrument};

use super::service::{find_node, lock, DiscoveryError, Inner};
use super::table::{keyspace_hash, Node, BUCKET_SIZE};
use crate::node::NodeId;

/// Lookup concurrency (Kademlia's alpha).
pub(super) const ALPHA: usize = 3;
/// Most `FindNode` requests one lookup sends, whatever the answers say.
pub(super) const MAX_LOOKUP_QUERIES: usize = 64;

fn xor_distance(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

/// The iterative lookup: ask the [`ALPHA`] closest unasked nodes at a time, merge their
/// answers into the [`BUCKET_SIZE`] closest known, until every one of those was asked.
pub(super) async fn lookup(inner: &Arc<Inner>, target: NodeId) -> Vec<Node> {
    let span = tracing::debug_span!("lookup", target = %target);
    async {
        let target_hash = keyspace_hash(&target);
        let dist = |n: &Node| xor_distance(&keyspace_hash(&n.id), &target_hash);
        let mut closest: Vec<([u8; 32], Node)> = lock(&inner.state)
            .table
            .closest(&target, BUCKET_SIZE, false)
            .into_iter()
            .map(|n| (dist(&n), n))
            .collect();
        let mut seen: HashSet<NodeId> = closest.iter().map(|(_, n)| n.id).collect();
        let mut asked: HashSet<NodeId> = HashSet::new();
        let mut answered: HashSet<NodeId> = HashSet::new();
        let mut inflight = FuturesUnordered::new();
        let mut queries = 0;
        loop {
            while inflight.len() < ALPHA && queries < MAX_LOOKUP_QUERIES {
                let Some((_, node)) = closest.iter().find(|(_, n)| !asked.contains(&n.id)) else {
                    break;
                };
                let node = *node;
                asked.insert(node.id);
                queries += 1;
                inflight.push(async move {
                    // One retry: a single lost datagram should not drop a node from
                    // the result.
                    let result = match find_node(inner, node, target).await {
                        Err(DiscoveryError::Timeout) => find_node(inner, node, target).await,
                        other => other,
                    };
                    (node, result)
                });
            }
            let Some((node, result)) = inflight.next().await else {
                break;
            };
            match result {
                Ok(found) => {
                    answered.insert(node.id);
                    inner.verified(node);
                    for n in found {
                        if n.id == inner.id || !seen.insert(n.id) || n.id.to_pubkey().is_none() {
                            continue;
                        }
                        closest.push((dist(&n), n));
                    }
                    closest.sort_unstable_by_key(|(d, _)| *d);
                    closest.truncate(BUCKET_SIZE);
                }
                Err(e) => {
                    trace!(id = %node.id, error = %e, "lookup query failed");
                    closest.retain(|(_, n)| n.id != node.id);
                }
            }
        }
        let result: Vec<Node> = closest
            .into_iter()
            .filter(|(_, n)| answered.contains(&n.id))
            .map(|(_, n)| n)
            .collect();
        debug!(queries, found = result.len(), "lookup done");
        result
    }
    .instrument(span)
    .await
}
