//! Per-peer traffic counters: messages and bytes in and out, per protocol and per code.
//! Counters are atomics sized by each protocol's length, so the hot path takes no lock.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// Counters for one protocol (or the base protocol) on one peer.
#[derive(Debug)]
pub(crate) struct ProtoCounters {
    pub(crate) name: String,
    pub(crate) version: u32,
    ingress_msgs: Vec<AtomicU64>,
    ingress_bytes: Vec<AtomicU64>,
    egress_msgs: Vec<AtomicU64>,
    egress_bytes: Vec<AtomicU64>,
}

fn zeros(n: usize) -> Vec<AtomicU64> {
    (0..n).map(|_| AtomicU64::new(0)).collect()
}

impl ProtoCounters {
    pub(crate) fn new(name: &str, version: u32, length: u64) -> Self {
        // Lengths come from our own protocol definitions; clamp anyway so a silly length
        // cannot allocate much.
        let n = length.min(4096) as usize;
        ProtoCounters {
            name: name.to_string(),
            version,
            ingress_msgs: zeros(n),
            ingress_bytes: zeros(n),
            egress_msgs: zeros(n),
            egress_bytes: zeros(n),
        }
    }

    fn add(msgs: &[AtomicU64], bytes: &[AtomicU64], code: u64, size: usize) {
        if let (Some(m), Some(b)) = (msgs.get(code as usize), bytes.get(code as usize)) {
            m.fetch_add(1, Ordering::Relaxed);
            b.fetch_add(size as u64, Ordering::Relaxed);
        }
    }

    pub(crate) fn ingress(&self, code: u64, size: usize) {
        Self::add(&self.ingress_msgs, &self.ingress_bytes, code, size);
    }

    pub(crate) fn egress(&self, code: u64, size: usize) {
        Self::add(&self.egress_msgs, &self.egress_bytes, code, size);
    }

    pub(crate) fn snapshot(&self) -> ProtocolTraffic {
        let load = |v: &[AtomicU64]| {
            v.iter()
                .map(|a| a.load(Ordering::Relaxed))
                .collect::<Vec<_>>()
        };
        let (im, ib, em, eb) = (
            load(&self.ingress_msgs),
            load(&self.ingress_bytes),
            load(&self.egress_msgs),
            load(&self.egress_bytes),
        );
        let per_code = (0..im.len())
            .filter(|&c| im[c] + em[c] > 0)
            .map(|c| CodeTraffic {
                code: c as u64,
                ingress: Traffic {
                    messages: im[c],
                    bytes: ib[c],
                },
                egress: Traffic {
                    messages: em[c],
                    bytes: eb[c],
                },
            })
            .collect();
        ProtocolTraffic {
            name: self.name.clone(),
            version: self.version,
            ingress: Traffic {
                messages: im.iter().sum(),
                bytes: ib.iter().sum(),
            },
            egress: Traffic {
                messages: em.iter().sum(),
                bytes: eb.iter().sum(),
            },
            per_code,
        }
    }
}

/// A message and byte count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Traffic {
    /// Messages.
    pub messages: u64,
    /// Bytes (message id + payload as framed, i.e. compressed size when snappy is on).
    pub bytes: u64,
}

/// Traffic of one message code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CodeTraffic {
    /// Code relative to its protocol.
    pub code: u64,
    /// Received.
    pub ingress: Traffic,
    /// Sent.
    pub egress: Traffic,
}

/// Traffic of one protocol on one peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProtocolTraffic {
    /// Protocol name ("p2p" for the base protocol).
    pub name: String,
    /// Protocol version.
    pub version: u32,
    /// Received, all codes.
    pub ingress: Traffic,
    /// Sent, all codes.
    pub egress: Traffic,
    /// Codes with any traffic.
    pub per_code: Vec<CodeTraffic>,
}

impl Traffic {
    fn add(&mut self, other: &Traffic) {
        self.messages += other.messages;
        self.bytes += other.bytes;
    }
}

impl ProtocolTraffic {
    /// Add `other`'s counts (same protocol) into these.
    pub fn merge(&mut self, other: &ProtocolTraffic) {
        self.ingress.add(&other.ingress);
        self.egress.add(&other.egress);
        for code in &other.per_code {
            match self.per_code.iter_mut().find(|c| c.code == code.code) {
                Some(mine) => {
                    mine.ingress.add(&code.ingress);
                    mine.egress.add(&code.egress);
                }
                None => self.per_code.push(code.clone()),
            }
        }
        self.per_code.sort_by_key(|c| c.code);
    }

    /// Traffic of one code, zero if none.
    pub fn code(&self, code: u64) -> CodeTraffic {
        self.per_code
            .iter()
            .find(|c| c.code == code)
            .cloned()
            .unwrap_or(CodeTraffic {
                code,
                ingress: Traffic::default(),
                egress: Traffic::default(),
            })
    }
}
