use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use secp256k1::SecretKey;

use super::*;

/// Our own id in every test.
fn self_id() -> NodeId {
    node_id(0)
}

/// A deterministic valid node id.
fn node_id(i: u64) -> NodeId {
    let seed: [u8; 32] = Keccak256::digest(i.to_be_bytes()).into();
    NodeId::from_secret(&SecretKey::from_slice(&seed).expect("valid key"))
}

/// Pool of valid ids, grouped by log-distance from `self_id()` (computed once: deriving
/// public keys is the slow part).
fn pool() -> &'static HashMap<u32, Vec<NodeId>> {
    static POOL: OnceLock<HashMap<u32, Vec<NodeId>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let me = keyspace_hash(&self_id());
        let mut by_distance: HashMap<u32, Vec<NodeId>> = HashMap::new();
        for i in 1..=600 {
            let id = node_id(i);
            by_distance
                .entry(log_distance(&me, &keyspace_hash(&id)))
                .or_default()
                .push(id);
        }
        by_distance
    })
}

/// `count` ids at `distance` from us (the pool has ~300 at 256, ~150 at 255, …).
fn ids_at(distance: u32, count: usize) -> Vec<NodeId> {
    let ids = &pool()[&distance];
    assert!(ids.len() >= count, "pool has {} at {distance}", ids.len());
    ids[..count].to_vec()
}

fn node(id: NodeId, ip: [u8; 4]) -> Node {
    Node {
        id,
        endpoint: Endpoint {
            ip: IpAddr::V4(Ipv4Addr::from(ip)),
            udp_port: 30303,
            tcp_port: 30303,
        },
    }
}

/// Loopback addresses, each in its own /24.
fn distinct_ip(i: usize) -> [u8; 4] {
    [127, (i / 256) as u8, (i % 256) as u8, 1]
}

fn strict() -> TableConfig {
    TableConfig {
        exempt_lan: false,
        ..TableConfig::default()
    }
}

/// Recomputes what the table tracks incrementally and checks its invariants.
fn check_invariants(t: &Table) {
    let mut seen = std::collections::HashSet::new();
    let mut nets: HashMap<Subnet, usize> = HashMap::new();
    let mut len = 0;
    for (b, bucket) in t.buckets.iter().enumerate() {
        assert!(bucket.entries.len() <= BUCKET_SIZE);
        assert!(bucket.replacements.len() <= MAX_REPLACEMENTS);
        assert!(bucket.replacements.capacity() <= MAX_REPLACEMENTS.max(4));
        len += bucket.entries.len();
        let mut bucket_nets: HashMap<Subnet, usize> = HashMap::new();
        for e in bucket.entries.iter().chain(&bucket.replacements) {
            assert!(seen.insert(e.node.id), "node twice in the table");
            assert_eq!(t.bucket_index(&e.hash), Some(b), "node in the wrong bucket");
            if let Some(net) = t.subnet(e.node.endpoint.ip) {
                *nets.entry(net).or_default() += 1;
                *bucket_nets.entry(net).or_default() += 1;
            }
        }
        assert!(bucket_nets
            .values()
            .all(|&n| n <= t.config.bucket_subnet_limit));
    }
    assert_eq!(t.len(), len);
    assert_eq!(t.subnets, nets);
    assert!(nets.values().all(|&n| n <= t.config.table_subnet_limit));
}

#[test]
fn log_distance_is_the_bit_length_of_the_xor() {
    let a = [0u8; 32];
    let mut b = [0u8; 32];
    assert_eq!(log_distance(&a, &b), 0);
    b[31] = 1;
    assert_eq!(log_distance(&a, &b), 1);
    b[31] = 0x80;
    assert_eq!(log_distance(&a, &b), 8);
    b[0] = 0x80;
    assert_eq!(log_distance(&a, &b), 256);
    b = [0; 32];
    b[1] = 0x01;
    assert_eq!(log_distance(&a, &b), 241);
}

#[test]
fn full_bucket_spills_into_a_bounded_replacement_list() {
    let now = Instant::now();
    let mut t = Table::new(self_id(), TableConfig::default());
    let ids = ids_at(256, BUCKET_SIZE + MAX_REPLACEMENTS + 2);
    for (i, id) in ids.iter().enumerate() {
        let expected = if i < BUCKET_SIZE {
            AddOutcome::Added
        } else {
            AddOutcome::Replacement
        };
        assert_eq!(
            t.add_seen(node(*id, distinct_ip(i)), now),
            expected,
            "node {i}"
        );
    }
    assert_eq!(t.len(), BUCKET_SIZE);
    assert_eq!(t.bucket(256).len(), BUCKET_SIZE);
    // The two oldest replacements were evicted for the two newest.
    let reps: Vec<NodeId> = t.replacements(256).iter().map(|e| e.node.id).collect();
    assert_eq!(reps, ids[BUCKET_SIZE + 2..]);
    assert_eq!(
        t.add_seen(node(ids[0], [127, 0, 0, 1]), now),
        AddOutcome::AlreadyPresent
    );
    check_invariants(&t);
}

#[test]
fn unusable_nodes_are_rejected() {
    let now = Instant::now();
    let mut t = Table::new(self_id(), TableConfig::default());
    let id = ids_at(256, 1)[0];
    assert_eq!(
        t.add_seen(node(self_id(), [127, 0, 0, 1]), now),
        AddOutcome::Rejected(RejectReason::SelfNode)
    );
    assert_eq!(
        t.add_verified(node(NodeId([0; 64]), [127, 0, 0, 1]), now),
        AddOutcome::Rejected(RejectReason::InvalidId)
    );
    for ip in [[0, 0, 0, 0], [224, 0, 0, 1], [255, 255, 255, 255]] {
        assert_eq!(
            t.add_seen(node(id, ip), now),
            AddOutcome::Rejected(RejectReason::UnusableEndpoint)
        );
    }
    let mut no_udp = node(id, [127, 0, 0, 1]);
    no_udp.endpoint.udp_port = 0;
    assert_eq!(
        t.add_seen(no_udp, now),
        AddOutcome::Rejected(RejectReason::UnusableEndpoint)
    );
    assert!(t.is_empty());
}

#[test]
fn bucket_subnet_limit_counts_entries_and_replacements() {
    let now = Instant::now();
    let mut t = Table::new(self_id(), strict());
    let ids = ids_at(256, 4);
    assert_eq!(
        t.add_seen(node(ids[0], [127, 9, 9, 1]), now),
        AddOutcome::Added
    );
    assert_eq!(
        t.add_seen(node(ids[1], [127, 9, 9, 2]), now),
        AddOutcome::Added
    );
    assert_eq!(
        t.add_seen(node(ids[2], [127, 9, 9, 3]), now),
        AddOutcome::Rejected(RejectReason::SubnetLimit)
    );
    // Another /24 is fine.
    assert_eq!(
        t.add_seen(node(ids[3], [127, 9, 10, 1]), now),
        AddOutcome::Added
    );
    // Removing one frees its slot.
    assert!(t.remove(&ids[0]));
    assert_eq!(
        t.add_seen(node(ids[2], [127, 9, 9, 3]), now),
        AddOutcome::Added
    );
    check_invariants(&t);

    // The same adds with the LAN exemption on (the default) all succeed.
    let mut t = Table::new(self_id(), TableConfig::default());
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            t.add_seen(node(*id, [127, 9, 9, i as u8]), now),
            AddOutcome::Added
        );
    }
    check_invariants(&t);
}

#[test]
fn table_subnet_limit_spans_buckets() {
    let now = Instant::now();
    let mut t = Table::new(self_id(), strict());
    let mut added = 0;
    // Two per bucket (the bucket limit) over five buckets reaches the table limit of 10.
    for distance in 252..=256 {
        for (i, id) in ids_at(distance, 2).into_iter().enumerate() {
            let out = t.add_seen(
                node(id, [127, 5, 5, (distance as u8).wrapping_add(i as u8)]),
                now,
            );
            assert_eq!(out, AddOutcome::Added);
            added += 1;
        }
    }
    assert_eq!(added, 10);
    let extra = ids_at(251, 1)[0];
    assert_eq!(
        t.add_seen(node(extra, [127, 5, 5, 200]), now),
        AddOutcome::Rejected(RejectReason::SubnetLimit)
    );
    assert_eq!(
        t.add_seen(node(extra, [127, 5, 6, 200]), now),
        AddOutcome::Added
    );
    check_invariants(&t);
}

#[test]
fn verified_nodes_move_to_the_front_and_take_the_new_endpoint() {
    let t0 = Instant::now();
    let mut t = Table::new(self_id(), strict());
    let ids = ids_at(256, 3);
    for (i, id) in ids.iter().enumerate() {
        t.add_seen(node(*id, distinct_ip(i)), t0);
    }
    assert_eq!(t.bucket(256)[2].node.id, ids[2]);
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(
        t.add_verified(node(ids[2], [127, 200, 0, 1]), t1),
        AddOutcome::AlreadyPresent
    );
    let front = &t.bucket(256)[0];
    assert_eq!(front.node.id, ids[2]);
    assert_eq!(front.node.endpoint.ip, IpAddr::from([127, 200, 0, 1]));
    assert_eq!(front.last_seen, Some(t1));
    assert_eq!(front.liveness_checks, 1);
    // A second-hand sighting does not move it or change its address.
    assert_eq!(
        t.add_seen(node(ids[2], [127, 201, 0, 1]), t1),
        AddOutcome::AlreadyPresent
    );
    assert_eq!(
        t.bucket(256)[0].node.endpoint.ip,
        IpAddr::from([127, 200, 0, 1])
    );
    check_invariants(&t);

    // Moving into a full subnet keeps the old address but still counts as seen.
    let mover = ids_at(256, 4)[3];
    t.add_seen(node(mover, [127, 8, 8, 1]), t1);
    for distance in 251..=255 {
        for (i, id) in ids_at(distance, 2).iter().enumerate() {
            let out = t.add_seen(
                node(*id, [127, 7, 7, (distance - 240) as u8 * 2 + i as u8]),
                t1,
            );
            assert_eq!(out, AddOutcome::Added);
        }
    }
    // 127.7.7.0/24 now holds 10 nodes: the table limit.
    assert_eq!(t.subnets[&Subnet::V4([127, 7, 7])], 10);
    t.add_verified(node(mover, [127, 7, 7, 99]), t1);
    assert_eq!(
        t.get(&mover).unwrap().node.endpoint.ip,
        IpAddr::from([127, 8, 8, 1])
    );
    assert_eq!(t.bucket(256)[0].node.id, mover);
    check_invariants(&t);
}

#[test]
fn revalidation_checks_the_least_recently_checked_and_replaces_the_dead() {
    let t0 = Instant::now();
    let mut t = Table::new(self_id(), TableConfig::default());
    let ids = ids_at(256, BUCKET_SIZE + 2);
    for (i, id) in ids.iter().enumerate() {
        t.add_seen(
            node(*id, distinct_ip(i)),
            t0 + Duration::from_secs(i as u64),
        );
    }
    // Never checked, earliest added first.
    assert_eq!(t.next_to_revalidate().unwrap().node.id, ids[0]);
    let t1 = t0 + Duration::from_secs(100);
    assert_eq!(t.revalidated(&ids[0], true, t1), Revalidation::Alive);
    assert_eq!(t.bucket(256)[0].node.id, ids[0]);
    assert_eq!(t.get(&ids[0]).unwrap().last_checked, Some(t1));
    assert_eq!(t.next_to_revalidate().unwrap().node.id, ids[1]);

    // ids[1] is dead: the newest replacement (ids[17]) takes its place.
    assert_eq!(
        t.revalidated(&ids[1], false, t1),
        Revalidation::Removed {
            replacement: Some(node(ids[BUCKET_SIZE + 1], distinct_ip(BUCKET_SIZE + 1)))
        }
    );
    assert!(!t.contains(&ids[1]));
    assert!(t.contains(&ids[BUCKET_SIZE + 1]));
    assert_eq!(t.len(), BUCKET_SIZE);
    assert_eq!(t.replacements(256).len(), 1);
    assert_eq!(t.revalidated(&ids[1], false, t1), Revalidation::NotFound);
    check_invariants(&t);

    // Once every entry has been checked, the oldest check comes next.
    for (i, e) in t.bucket(256).to_vec().iter().enumerate() {
        let at = t1 + Duration::from_secs(1 + i as u64);
        assert_eq!(t.revalidated(&e.node.id, true, at), Revalidation::Alive);
    }
    let first_checked = t.bucket(256).last().unwrap().node.id;
    assert_eq!(t.next_to_revalidate().unwrap().node.id, first_checked);

    // With no replacements left a dead entry just goes.
    t.revalidated(&ids[2], false, t1);
    assert_eq!(
        t.revalidated(&ids[3], false, t1),
        Revalidation::Removed { replacement: None }
    );
    assert_eq!(t.len(), BUCKET_SIZE - 1);
    check_invariants(&t);
}

#[test]
fn closest_sorts_by_xor_distance_to_the_target() {
    let now = Instant::now();
    let mut t = Table::new(self_id(), TableConfig::default());
    let mut all = Vec::new();
    for distance in 251..=256 {
        for id in ids_at(distance, 4) {
            assert_eq!(
                t.add_seen(node(id, distinct_ip(all.len())), now),
                AddOutcome::Added
            );
            all.push(id);
        }
    }
    let target = node_id(9999);
    let th = keyspace_hash(&target);
    let mut expected = all.clone();
    expected.sort_by_key(|id| xor(&keyspace_hash(id), &th));
    let got: Vec<NodeId> = t.closest(&target, 16, false).iter().map(|n| n.id).collect();
    assert_eq!(got, expected[..16]);
    assert_eq!(t.closest(&target, 100, false).len(), all.len());

    // Only proven-live entries when asked.
    assert!(t.closest(&target, 16, true).is_empty());
    t.add_verified(node(all[5], distinct_ip(5)), now);
    t.revalidated(&all[7], true, now);
    let mut live: Vec<NodeId> = t.closest(&target, 16, true).iter().map(|n| n.id).collect();
    live.sort();
    let mut want = vec![all[5], all[7]];
    want.sort();
    assert_eq!(live, want);
}

#[test]
fn memory_is_bounded() {
    let entry = std::mem::size_of::<Entry>();
    // The bound the module docs promise, and a guard against the entry growing unnoticed.
    assert_eq!(
        Table::max_memory(),
        NUM_BUCKETS * ((BUCKET_SIZE + MAX_REPLACEMENTS) * entry + std::mem::size_of::<Bucket>())
    );
    assert!(entry <= 200, "Entry is {entry} bytes");
    println!(
        "discv4 table: {entry} bytes per entry, {} bytes bound",
        Table::max_memory()
    );

    // Feeding far more nodes than fit keeps every bucket and list within bounds.
    let now = Instant::now();
    let mut t = Table::new(self_id(), TableConfig::default());
    for i in 1..=600u64 {
        t.add_seen(node(node_id(i), distinct_ip(i as usize)), now);
    }
    check_invariants(&t);
    assert!(t.len() < 600);
}

#[derive(Debug, Clone)]
enum Op {
    Seen(usize, u8),
    Verified(usize, u8),
    Revalidated(usize, bool),
    Remove(usize),
}

fn arb_op() -> impl Strategy<Value = Op> {
    // 64 ids (48 in one bucket) over 16 subnets: enough to fill a bucket and its
    // replacements while the subnet limits still bite.
    prop_oneof![
        (0..64usize, 0..16u8).prop_map(|(i, n)| Op::Seen(i, n)),
        (0..64usize, 0..16u8).prop_map(|(i, n)| Op::Verified(i, n)),
        (0..64usize, any::<bool>()).prop_map(|(i, a)| Op::Revalidated(i, a)),
        (0..64usize).prop_map(Op::Remove),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn invariants_hold_under_any_operation_sequence(
        ops in prop::collection::vec(arb_op(), 1..400),
        exempt_lan in any::<bool>(),
    ) {
        let config = TableConfig { exempt_lan, ..TableConfig::default() };
        let mut t = Table::new(self_id(), config);
        let ids: Vec<NodeId> = ids_at(256, 48).into_iter().chain(ids_at(255, 16)).collect();
        let t0 = Instant::now();
        for (step, op) in ops.into_iter().enumerate() {
            let now = t0 + Duration::from_secs(step as u64);
            let host = |i: usize, net: u8| node(ids[i], [127, 3, net, i as u8 + 1]);
            match op {
                Op::Seen(i, net) => { t.add_seen(host(i, net), now); }
                Op::Verified(i, net) => { t.add_verified(host(i, net), now); }
                Op::Revalidated(i, alive) => { t.revalidated(&ids[i], alive, now); }
                Op::Remove(i) => { t.remove(&ids[i]); }
            }
            check_invariants(&t);
        }
    }
}
