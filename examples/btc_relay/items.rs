//! Relayed items (txs and blocks, by txid or wtxid) and the bounded payload cache.

use super::*;

/// The kinds of item relayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    /// A transaction by txid.
    Tx,
    /// A transaction by wtxid (BIP339 `MSG_WTX`).
    Wtx,
    Block,
}

/// One relayed item: kind and txid / wtxid / block hash (witness and non-witness
/// inventory types name the same item). A transaction is tracked under the id it was
/// announced by; both ids are known once it arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Item {
    pub(super) kind: Kind,
    pub(super) hash: Hash256,
}

impl Item {
    /// The item an inventory vector names; `None` for kinds we do not relay (filtered
    /// and compact blocks).
    pub(super) fn of(iv: &InvVect) -> Option<Item> {
        let kind = match iv.inv_type {
            inv_type::TX | inv_type::WITNESS_TX => Kind::Tx,
            inv_type::WTX => Kind::Wtx,
            inv_type::BLOCK | inv_type::WITNESS_BLOCK => Kind::Block,
            _ => return None,
        };
        Some(Item {
            kind,
            hash: iv.hash,
        })
    }

    /// How to announce it (announcements never carry the witness flag).
    pub(super) fn announcement(self) -> InvVect {
        let inv_type = match self.kind {
            Kind::Tx => inv_type::TX,
            Kind::Wtx => inv_type::WTX,
            Kind::Block => inv_type::BLOCK,
        };
        InvVect {
            inv_type,
            hash: self.hash,
        }
    }

    /// How to ask `peer` for it: with witness data when the peer offers it (`MSG_WTX`
    /// always means with witness data).
    pub(super) fn request(self, peer: &Peer) -> InvVect {
        let mut iv = self.announcement();
        if self.kind != Kind::Wtx && peer.is_witness_enabled() {
            iv.inv_type |= inv_type::WITNESS_FLAG;
        }
        iv
    }

    pub(super) fn kind_name(self) -> &'static str {
        match self.kind {
            Kind::Tx | Kind::Wtx => "tx",
            Kind::Block => "block",
        }
    }
}

/// A transaction or block as received (exact bytes).
#[derive(Clone)]
pub(super) enum Payload {
    Tx(Tx),
    Block(Block),
}

impl Payload {
    /// The item under its txid or block hash (the cache key).
    pub(super) fn item(&self) -> Item {
        match self {
            Payload::Tx(tx) => Item {
                kind: Kind::Tx,
                hash: tx.txid(),
            },
            Payload::Block(block) => Item {
                kind: Kind::Block,
                hash: block.hash(),
            },
        }
    }

    /// Every id the payload goes by: a transaction's txid and wtxid, a block's hash.
    pub(super) fn items(&self) -> Vec<Item> {
        match self {
            Payload::Tx(tx) => vec![
                self.item(),
                Item {
                    kind: Kind::Wtx,
                    hash: tx.wtxid(),
                },
            ],
            Payload::Block(_) => vec![self.item()],
        }
    }

    /// How to announce it to `peer`: by wtxid when the link negotiated BIP339.
    pub(super) fn announcement_for(&self, peer: &Peer) -> InvVect {
        match self {
            Payload::Tx(tx) if peer.wtxid_relay() => Item {
                kind: Kind::Wtx,
                hash: tx.wtxid(),
            }
            .announcement(),
            _ => self.item().announcement(),
        }
    }

    /// Bytes held. Only exact for a [`detached`](Self::detached) payload, which owns
    /// exactly its bytes; a payload as parsed may share a larger buffer.
    pub(super) fn len(&self) -> usize {
        match self {
            Payload::Tx(tx) => tx.len(),
            Payload::Block(block) => block.as_bytes().len(),
        }
    }

    /// A copy in its own allocation of exactly [`len`](Self::len) bytes, so what the
    /// cache counts is what it keeps alive.
    pub(super) fn detached(&self) -> Payload {
        match self {
            Payload::Tx(tx) => Payload::Tx(tx.detached()),
            Payload::Block(block) => Payload::Block(block.detached()),
        }
    }

    /// What answers a `getdata` entry of type `inv_type`: a peer that asked for a plain
    /// `tx` or `block` gets it without witness data (Core's `TX_NO_WITNESS`).
    pub(super) fn answer(&self, inv_type: u32) -> Option<Payload> {
        match self {
            Payload::Tx(tx) if inv_type == inv_type::TX && tx.has_witness() => {
                Tx::from_bytes(tx.to_base_bytes()).ok().map(Payload::Tx)
            }
            Payload::Block(block) if inv_type == inv_type::BLOCK && block.has_witness() => {
                Some(Payload::Block(block.without_witness()))
            }
            other => Some(other.clone()),
        }
    }

    pub(super) fn into_message(self) -> Message {
        match self {
            Payload::Tx(tx) => Message::Tx(tx),
            Payload::Block(block) => Message::Block(block),
        }
    }
}

/// Payloads by item, bounded in count and bytes; the oldest go first. Payloads are
/// stored [`detached`](Payload::detached), so the byte count is what they hold.
#[derive(Default)]
pub(super) struct Cache {
    pub(super) items: HashMap<Item, Payload>,
    /// wtxid -> txid of the cached transactions (as many entries as cached txs).
    pub(super) wtxids: HashMap<Hash256, Hash256>,
    pub(super) order: VecDeque<Item>,
    pub(super) bytes: usize,
}

impl Cache {
    pub(super) fn get(&self, item: &Item) -> Option<&Payload> {
        if item.kind == Kind::Wtx {
            let txid = self.wtxids.get(&item.hash)?;
            return self.items.get(&Item {
                kind: Kind::Tx,
                hash: *txid,
            });
        }
        self.items.get(item)
    }

    pub(super) fn insert(&mut self, payload: &Payload) {
        let item = payload.item();
        if self.items.contains_key(&item) {
            return;
        }
        let payload = payload.detached();
        while self.items.len() >= CACHE_ITEMS || self.bytes + payload.len() > CACHE_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.items.remove(&old) {
                self.bytes -= gone.len();
                if let Payload::Tx(tx) = &gone {
                    self.wtxids.remove(&tx.wtxid());
                }
            }
        }
        if let Payload::Tx(tx) = &payload {
            self.wtxids.insert(tx.wtxid(), tx.txid());
        }
        self.bytes += payload.len();
        self.order.push_back(item);
        self.items.insert(item, payload);
    }
}
