//! Helpers that build and queue common messages (btcd's `Push*Msg`).

use rand::Rng;
use tokio::sync::oneshot;

use super::Peer;
use crate::bitcoin::wire::{
    pver, AddrV2Entry, Hash256, Message, MsgGetBlocks, MsgReject, TimedNetAddress,
    MAX_ADDR_PER_MSG, MAX_LOCATOR_HASHES,
};

/// Why a push helper refused to build a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// A block locator longer than the wire allows.
    #[error("block locator has {0} hashes, more than the maximum of 500")]
    LocatorTooLong(usize),
}

/// Keep a uniformly random `max` of `items` (partial Fisher–Yates: every position up to
/// `max` is swapped with a random later one, then the tail is cut).
fn random_subset<T>(items: &mut Vec<T>, max: usize) {
    if items.len() <= max {
        return;
    }
    let mut rng = rand::thread_rng();
    let n = items.len();
    for i in 0..max {
        let j = rng.gen_range(i..n);
        items.swap(i, j);
    }
    items.truncate(max);
}

impl Peer {
    /// Queue an `addr` with at most 1000 of `addrs` (a random choice when there are more).
    /// Returns the addresses sent; nothing is sent for an empty list.
    pub async fn push_addr(&self, addrs: &[TimedNetAddress]) -> Vec<TimedNetAddress> {
        let mut list = addrs.to_vec();
        random_subset(&mut list, MAX_ADDR_PER_MSG);
        if !list.is_empty() {
            self.queue_message(Message::Addr(list.clone()), None).await;
        }
        list
    }

    /// Queue an `addrv2` with at most 1000 of `addrs` (a random choice when there are more).
    pub async fn push_addr_v2(&self, addrs: &[AddrV2Entry]) -> Vec<AddrV2Entry> {
        let mut list = addrs.to_vec();
        random_subset(&mut list, MAX_ADDR_PER_MSG);
        if !list.is_empty() {
            self.queue_message(Message::AddrV2(list.clone()), None)
                .await;
        }
        list
    }

    /// Queue a `getblocks`, unless it repeats the previous one (same first locator hash
    /// and stop hash, non-empty locator). Returns whether it was queued.
    pub async fn push_get_blocks(
        &self,
        locator: &[Hash256],
        stop: Hash256,
    ) -> Result<bool, PushError> {
        self.push_locator(locator, stop, false).await
    }

    /// Queue a `getheaders`, with the same back-to-back duplicate filtering as
    /// [`push_get_blocks`](Self::push_get_blocks).
    pub async fn push_get_headers(
        &self,
        locator: &[Hash256],
        stop: Hash256,
    ) -> Result<bool, PushError> {
        self.push_locator(locator, stop, true).await
    }

    async fn push_locator(
        &self,
        locator: &[Hash256],
        stop: Hash256,
        headers: bool,
    ) -> Result<bool, PushError> {
        if locator.len() > MAX_LOCATOR_HASHES {
            return Err(PushError::LocatorTooLong(locator.len()));
        }
        let begin = locator.first().copied();
        {
            let mut st = self.state();
            let prev = if headers {
                &mut st.prev_get_headers
            } else {
                &mut st.prev_get_blocks
            };
            if let (Some(b), Some((pb, ps))) = (begin, *prev) {
                if b == pb && stop == ps {
                    tracing::trace!(headers, "filtering duplicate locator request");
                    return Ok(false);
                }
            }
            *prev = begin.map(|b| (b, stop));
        }
        let body = MsgGetBlocks {
            version: pver::PROTOCOL_VERSION,
            locator: locator.to_vec(),
            hash_stop: stop,
        };
        let msg = if headers {
            Message::GetHeaders(body)
        } else {
            Message::GetBlocks(body)
        };
        self.queue_message(msg, None).await;
        Ok(true)
    }

    /// Queue a `reject` for `command`. Not sent when the negotiated version cannot carry
    /// one (< 70002). The hash is attached for `tx`/`block` (zero if `None`). With `wait`,
    /// returns once the reject was written or dropped (bounded by the write timeout).
    pub async fn push_reject(
        &self,
        command: &str,
        code: u8,
        reason: &str,
        hash: Option<Hash256>,
        wait: bool,
    ) {
        if self.version_known() && self.protocol_version() < pver::REJECT {
            return;
        }
        let msg = Message::Reject(MsgReject {
            message: command.to_owned(),
            code,
            reason: reason.to_owned(),
            hash: hash.filter(|_| command == "tx" || command == "block"),
        });
        if !wait {
            self.queue_message(msg, None).await;
            return;
        }
        let (tx, rx) = oneshot::channel();
        self.queue_message(msg, Some(tx)).await;
        let limit = self.config().write_timeout + self.config().queue_timeout;
        // Every path fires the notification; the timeout only guards a stuck writer.
        let _ = tokio::time::timeout(limit, rx).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_subset_keeps_distinct_items() {
        let mut v: Vec<u32> = (0..5000).collect();
        random_subset(&mut v, 1000);
        assert_eq!(v.len(), 1000);
        let mut d = v.clone();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), 1000, "a shuffle never duplicates entries");
        // Not simply the first 1000.
        assert!(v.iter().any(|&x| x >= 1000));
        let mut small = vec![1, 2, 3];
        random_subset(&mut small, 1000);
        assert_eq!(small, vec![1, 2, 3]);
    }
}
