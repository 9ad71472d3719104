//! Capability matching: which subprotocols two nodes share, at which version, and the
//! message-code range each gets on the link.
//!
//! It depends only on the base protocol's [`Capability`], so the peer (which runs the
//! matched protocols) and [`crate::protocol`] (which defines them) both sit above it
//! and neither needs the other for it.

use crate::base::{Capability, BASE_PROTOCOL_LENGTH};

/// A capability both sides share, with its code range on this link.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SharedCapability {
    /// Capability name.
    pub name: String,
    /// The highest version both sides have.
    pub version: u32,
    /// First message code of the range on the wire.
    pub offset: u64,
    /// Number of codes (from our own definition of that version).
    pub length: u64,
}

/// Match our capabilities (with their lengths) against the remote's: for every name both
/// have, the highest version both have; matched names sorted byte-wise get consecutive
/// code ranges starting right after the base protocol (0x10).
pub fn match_capabilities(
    local: &[(Capability, u64)],
    remote: &[Capability],
) -> Vec<SharedCapability> {
    let mut best: std::collections::BTreeMap<&str, (u32, u64)> = Default::default();
    for (cap, length) in local {
        if !remote.contains(cap) {
            continue;
        }
        let entry = best
            .entry(cap.name.as_str())
            .or_insert((cap.version, *length));
        if cap.version > entry.0 {
            *entry = (cap.version, *length);
        }
    }
    // BTreeMap<&str> iterates in byte order, as go-ethereum's strings.Compare sorts.
    let mut offset = BASE_PROTOCOL_LENGTH;
    best.into_iter()
        .map(|(name, (version, length))| {
            let shared = SharedCapability {
                name: name.to_string(),
                version,
                offset,
                length,
            };
            offset = offset.saturating_add(length);
            shared
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(name: &str, version: u32) -> Capability {
        Capability {
            name: name.into(),
            version,
        }
    }

    fn shared(name: &str, version: u32, offset: u64, length: u64) -> SharedCapability {
        SharedCapability {
            name: name.into(),
            version,
            offset,
            length,
        }
    }

    // The go-ethereum TestMatchProtocols matrix, re-expressed.
    #[test]
    fn no_remote_no_local_no_mutual() {
        assert!(match_capabilities(&[(cap("a", 1), 1)], &[]).is_empty());
        assert!(match_capabilities(&[], &[cap("a", 1)]).is_empty());
        assert!(match_capabilities(&[(cap("a", 1), 1)], &[cap("b", 1)]).is_empty());
    }

    #[test]
    fn partial_overlap() {
        let local = [(cap("a", 1), 1), (cap("b", 2), 2)];
        let remote = [cap("a", 1), cap("c", 3)];
        assert_eq!(
            match_capabilities(&local, &remote),
            vec![shared("a", 1, 16, 1)]
        );
    }

    #[test]
    fn alphabetical_order() {
        let local = [
            (cap("aa", 1), 1),
            (cap("ab", 1), 1),
            (cap("ba", 1), 1),
            (cap("bb", 1), 1),
        ];
        let remote = [cap("bb", 1), cap("ba", 1), cap("ab", 1), cap("aa", 1)];
        let got = match_capabilities(&local, &remote);
        assert_eq!(
            got,
            vec![
                shared("aa", 1, 16, 1),
                shared("ab", 1, 17, 1),
                shared("ba", 1, 18, 1),
                shared("bb", 1, 19, 1)
            ]
        );
    }

    #[test]
    fn no_mutual_version() {
        assert!(match_capabilities(&[(cap("a", 1), 1)], &[cap("a", 2)]).is_empty());
    }

    #[test]
    fn multiple_versions_single_common() {
        let local = [(cap("a", 1), 1), (cap("a", 2), 2)];
        assert_eq!(
            match_capabilities(&local, &[cap("a", 2)]),
            vec![shared("a", 2, 16, 2)]
        );
    }

    #[test]
    fn multiple_common_highest_wins_unordered() {
        let local = [(cap("a", 3), 3), (cap("a", 1), 1), (cap("a", 2), 2)];
        let remote = [cap("a", 2), cap("a", 3), cap("a", 1)];
        assert_eq!(
            match_capabilities(&local, &remote),
            vec![shared("a", 3, 16, 3)]
        );
    }

    #[test]
    fn versions_override_lengths() {
        let local = [
            (cap("", 1), 1),
            (cap("", 2), 2),
            (cap("", 3), 3),
            (cap("a", 1), 1),
        ];
        let remote = [cap("", 1), cap("", 2), cap("", 3), cap("a", 1)];
        assert_eq!(
            match_capabilities(&local, &remote),
            vec![shared("", 3, 16, 3), shared("a", 1, 19, 1)]
        );
    }

    #[test]
    fn byte_order_not_case_folded() {
        let local = [(cap("B", 1), 2), (cap("a", 1), 2)];
        let remote = [cap("a", 1), cap("B", 1)];
        let got = match_capabilities(&local, &remote);
        assert_eq!(got[0].name, "B");
        assert_eq!(got[1].offset, 18);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn caps() -> impl Strategy<Value = Vec<(Capability, u64)>> {
            proptest::collection::vec(("[a-d]{1,2}", 1u32..4, 1u64..20), 0..10).prop_map(|v| {
                v.into_iter()
                    .map(|(n, ver, len)| (cap(&n, ver), len))
                    .collect()
            })
        }

        proptest! {
            #[test]
            fn ranges_are_consecutive_sorted_and_mutual(local in caps(), remote in caps()) {
                let remote: Vec<Capability> = remote.into_iter().map(|(c, _)| c).collect();
                let got = match_capabilities(&local, &remote);
                let mut next = BASE_PROTOCOL_LENGTH;
                for pair in got.windows(2) {
                    prop_assert!(pair[0].name < pair[1].name);
                }
                for s in &got {
                    prop_assert_eq!(s.offset, next);
                    next += s.length;
                    let c = cap(&s.name, s.version);
                    prop_assert!(remote.contains(&c));
                    prop_assert!(local.iter().any(|(l, len)| *l == c && *len == s.length));
                    // No higher version is mutual.
                    prop_assert!(!local.iter().any(|(l, _)| l.name == s.name && l.version > s.version && remote.contains(l)));
                }
                // Every mutual name is matched.
                for (l, _) in &local {
                    if remote.contains(l) {
                        prop_assert!(got.iter().any(|s| s.name == l.name));
                    }
                }
            }
        }
    }
}
