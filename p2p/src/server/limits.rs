//! Admission rules as pure policy (state and time in, decision out; no sockets): the IP
//! allow-list, the per-source inbound throttle and the per-subnet inbound cap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// An IP network in CIDR form (`10.0.0.0/8`, `::1/128`); a bare address means one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// A malformed CIDR string.
#[derive(Debug, thiserror::Error)]
#[error("invalid IP network {0:?} (expected ADDR or ADDR/PREFIX)")]
pub struct IpNetError(String);

impl IpNet {
    /// Whether `ip` lies in this network. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = (prefix / 8) as usize;
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

impl FromStr for IpNet {
    type Err = IpNetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || IpNetError(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = canonical(IpAddr::from_str(addr).map_err(|_| err())?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| err())?,
            None => max,
        };
        if prefix > max {
            return Err(err());
        }
        Ok(IpNet { addr, prefix })
    }
}

/// The addresses treated as one source by the inbound throttle: one IPv4 address, or one
/// IPv6 /64 (a single host is usually handed a whole /64, so exact IPv6 addresses would let
/// it rotate through 2^64 "new" sources).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ThrottleKey {
    V4([u8; 4]),
    V6([u8; 8]),
}

impl ThrottleKey {
    fn of(ip: IpAddr) -> Self {
        match canonical(ip) {
            IpAddr::V4(v4) => ThrottleKey::V4(v4.octets()),
            IpAddr::V6(v6) => {
                let o = v6.octets();
                ThrottleKey::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
            }
        }
    }
}

/// Remembers recent inbound connection attempts per source (an IPv4 address or an IPv6
/// /64) so one source cannot reconnect faster than once per `window` (go-ethereum: 30 s).
/// Loopback is exempt when `exempt_loopback` is set.
///
/// Memory is bounded by `capacity`: past it, expired entries are pruned and then the oldest
/// live entry is evicted. A full table never refuses a new source, so filling it (from
/// many addresses) cannot lock anyone out; it only shortens how long the oldest sources
/// are remembered.
#[derive(Debug)]
pub(crate) struct InboundThrottle {
    window: Duration,
    capacity: usize,
    exempt_loopback: bool,
    seen: HashMap<ThrottleKey, Instant>,
}

impl InboundThrottle {
    pub(crate) fn new(window: Duration, capacity: usize, exempt_loopback: bool) -> Self {
        InboundThrottle {
            window,
            capacity: capacity.max(1),
            exempt_loopback,
            seen: HashMap::new(),
        }
    }

    /// Record an attempt from `ip`; false if it must be refused (the same source came
    /// less than `window` ago).
    pub(crate) fn admit(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.window.is_zero() || (self.exempt_loopback && canonical(ip).is_loopback()) {
            return true;
        }
        let key = ThrottleKey::of(ip);
        if let Some(&last) = self.seen.get(&key) {
            if now.saturating_duration_since(last) < self.window {
                return false;
            }
        }
        if !self.seen.contains_key(&key) && self.seen.len() >= self.capacity {
            let window = self.window;
            self.seen
                .retain(|_, &mut t| now.saturating_duration_since(t) < window);
            if self.seen.len() >= self.capacity {
                // O(capacity) per eviction; only reached while the table is full of live
                // entries, and cheaper than the handshake the connection costs anyway.
                if let Some(oldest) = self.seen.iter().min_by_key(|(_, &t)| t).map(|(k, _)| *k) {
                    self.seen.remove(&oldest);
                }
            }
        }
        self.seen.insert(key, now);
        true
    }
}

/// A network group for inbound diversity: an IPv4 /24 or an IPv6 /64 (IPv4-mapped IPv6
/// counts as IPv4), in the spirit of Bitcoin Core's netgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Netgroup {
    V4([u8; 3]),
    V6([u8; 8]),
}

impl Netgroup {
    pub(crate) fn of(ip: IpAddr) -> Self {
        match canonical(ip) {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                Netgroup::V4([o[0], o[1], o[2]])
            }
            IpAddr::V6(v6) => {
                let o = v6.octets();
                Netgroup::V6([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
            }
        }
    }
}

/// The per-subnet cap on concurrent inbound peers: at most `max` inbound connections
/// (past the admission checkpoint, not yet ended) from one [`Netgroup`]. Pure policy: the
/// caller says which groups are already counted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SubnetCap {
    /// Most inbound connections per group; 0 disables the cap.
    pub(crate) max: usize,
    /// Loopback connections are not counted.
    pub(crate) exempt_loopback: bool,
}

impl SubnetCap {
    /// The group an inbound connection from `ip` counts toward, or `None` when it is not
    /// counted (cap disabled, or exempt loopback).
    pub(crate) fn group(&self, ip: IpAddr) -> Option<Netgroup> {
        if self.max == 0 || (self.exempt_loopback && canonical(ip).is_loopback()) {
            return None;
        }
        Some(Netgroup::of(ip))
    }

    /// Whether one more connection in `group` fits beside the `counted` ones.
    pub(crate) fn admits(
        &self,
        group: Netgroup,
        counted: impl IntoIterator<Item = Netgroup>,
    ) -> bool {
        self.max == 0 || counted.into_iter().filter(|g| *g == group).count() < self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_matching() {
        let net: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let host: IpNet = "127.0.0.1".parse().unwrap();
        assert!(host.contains("127.0.0.1".parse().unwrap()));
        assert!(!host.contains("127.0.0.2".parse().unwrap()));
        let odd: IpNet = "192.168.0.0/23".parse().unwrap();
        assert!(odd.contains("192.168.1.255".parse().unwrap()));
        assert!(!odd.contains("192.168.2.0".parse().unwrap()));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "x/8",
            "10.0.0.0/-1",
            "10.0.0.0/",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn throttle_refuses_fast_reconnects_but_not_loopback() {
        let mut t = InboundThrottle::new(Duration::from_secs(30), 2, true);
        let now = Instant::now();
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        assert!(t.admit(a, now));
        assert!(!t.admit(a, now + Duration::from_secs(5)));
        assert!(t.admit(a, now + Duration::from_secs(31)));
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(t.admit(lo, now) && t.admit(lo, now));
        // Without the exemption loopback is throttled like any other source.
        let mut strict = InboundThrottle::new(Duration::from_secs(30), 2, false);
        assert!(strict.admit(lo, now));
        assert!(!strict.admit(lo, now + Duration::from_secs(1)));
    }

    #[test]
    fn a_full_throttle_table_evicts_the_oldest_instead_of_refusing() {
        let mut t = InboundThrottle::new(Duration::from_secs(30), 2, true);
        let now = Instant::now();
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.2".parse().unwrap();
        let c: IpAddr = "203.0.113.3".parse().unwrap();
        assert!(t.admit(a, now));
        assert!(t.admit(b, now + Duration::from_secs(1)));
        // Full of live entries: a new source is still admitted, memory does not grow,
        // and the oldest entry (a) is the one forgotten.
        assert!(t.admit(c, now + Duration::from_secs(2)));
        assert_eq!(t.seen.len(), 2);
        assert!(!t.admit(b, now + Duration::from_secs(3)));
        assert!(!t.admit(c, now + Duration::from_secs(3)));
        assert!(t.admit(a, now + Duration::from_secs(3)));
        assert!(t.seen.len() <= 2);
    }

    #[test]
    fn one_ipv6_slash64_cannot_lock_out_the_throttle() {
        let mut t = InboundThrottle::new(Duration::from_secs(30), 16, true);
        let now = Instant::now();
        // An attacker rotating through addresses of one /64 is one source.
        for i in 0..1000u16 {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            assert_eq!(t.admit(ip, now), i == 0, "{ip}");
        }
        assert_eq!(t.seen.len(), 1);
        // Many /64s fill the table, yet honest sources keep getting in.
        for i in 0..1000u16 {
            let ip: IpAddr = format!("2001:db8:{i:x}::1").parse().unwrap();
            assert!(t.admit(ip, now + Duration::from_secs(1)));
        }
        assert_eq!(t.seen.len(), 16);
        assert!(t.admit(
            "198.51.100.7".parse().unwrap(),
            now + Duration::from_secs(2)
        ));
        // IPv4 stays per address: a neighbour in the same /24 is a different source.
        assert!(t.admit(
            "198.51.100.8".parse().unwrap(),
            now + Duration::from_secs(2)
        ));
        assert!(!t.admit(
            "::ffff:198.51.100.7".parse().unwrap(),
            now + Duration::from_secs(3)
        ));
    }

    #[test]
    fn netgroups_are_ipv4_slash24_and_ipv6_slash64() {
        let g = |s: &str| Netgroup::of(s.parse().unwrap());
        assert_eq!(g("10.1.2.3"), g("10.1.2.250"));
        assert_ne!(g("10.1.2.3"), g("10.1.3.3"));
        assert_eq!(g("::ffff:10.1.2.9"), g("10.1.2.3"));
        assert_eq!(g("2001:db8:1:2::1"), g("2001:db8:1:2:ffff::9"));
        assert_ne!(g("2001:db8:1:2::1"), g("2001:db8:1:3::1"));
    }

    #[test]
    fn subnet_cap_counts_per_group_and_exempts_loopback_only_when_configured() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let cap = SubnetCap {
            max: 2,
            exempt_loopback: false,
        };
        let a = cap.group(ip("203.0.113.1")).unwrap();
        let a2 = cap.group(ip("203.0.113.99")).unwrap();
        let b = cap.group(ip("198.51.100.1")).unwrap();
        assert!(cap.admits(a, []));
        assert!(cap.admits(a, [a2, b, b]));
        assert!(!cap.admits(a, [a, a2, b]));
        assert!(cap.admits(b, [a, a2]));
        let lo = cap.group(ip("127.0.0.5")).unwrap();
        assert!(!cap.admits(lo, [cap.group(ip("127.0.0.1")).unwrap(); 2]));
        let exempt = SubnetCap {
            max: 2,
            exempt_loopback: true,
        };
        assert_eq!(exempt.group(ip("127.0.0.5")), None);
        assert_eq!(exempt.group(ip("::1")), None);
        assert!(exempt.group(ip("203.0.113.1")).is_some());
        let off = SubnetCap {
            max: 0,
            exempt_loopback: false,
        };
        assert_eq!(off.group(ip("203.0.113.1")), None);
        assert!(off.admits(a, [a, a, a]));
    }
}
