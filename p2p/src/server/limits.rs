//! Admission rules that need no peer state: the IP allow-list and the per-IP
//! inbound throttle.

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

/// Remembers recent inbound connection attempts per IP so one address cannot reconnect
/// faster than once per `window` (go-ethereum: 30 s). Loopback is exempt. Memory is
/// bounded: expired entries are pruned, and past `capacity` live entries new addresses
/// are refused until some expire.
#[derive(Debug)]
pub(crate) struct InboundThrottle {
    window: Duration,
    capacity: usize,
    seen: HashMap<IpAddr, Instant>,
}

impl InboundThrottle {
    pub(crate) fn new(window: Duration, capacity: usize) -> Self {
        InboundThrottle {
            window,
            capacity,
            seen: HashMap::new(),
        }
    }

    /// Record an attempt from `ip`; false if it must be refused.
    pub(crate) fn admit(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.window.is_zero() || canonical(ip).is_loopback() {
            return true;
        }
        if let Some(&last) = self.seen.get(&ip) {
            if now.saturating_duration_since(last) < self.window {
                return false;
            }
        }
        if self.seen.len() >= self.capacity {
            let window = self.window;
            self.seen
                .retain(|_, &mut t| now.saturating_duration_since(t) < window);
            if self.seen.len() >= self.capacity {
                return false;
            }
        }
        self.seen.insert(ip, now);
        true
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
        let mut t = InboundThrottle::new(Duration::from_secs(30), 2);
        let now = Instant::now();
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.2".parse().unwrap();
        let c: IpAddr = "203.0.113.3".parse().unwrap();
        assert!(t.admit(a, now));
        assert!(!t.admit(a, now + Duration::from_secs(5)));
        assert!(t.admit(a, now + Duration::from_secs(31)));
        assert!(t.admit(b, now + Duration::from_secs(31)));
        // Full of live entries: a new address is refused, memory does not grow.
        assert!(!t.admit(c, now + Duration::from_secs(32)));
        assert!(t.seen.len() <= 2);
        // After they expire there is room again.
        assert!(t.admit(c, now + Duration::from_secs(100)));
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert!(t.admit(lo, now) && t.admit(lo, now));
    }
}
