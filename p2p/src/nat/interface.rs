//! Which local address a node advertises when it listens on every interface, and where
//! its default IPv4 gateway is.
//!
//! A node listening on `0.0.0.0` (or `::`) must never advertise that address: nobody can
//! dial it. Without a NAT method telling the external address it advertises one of its
//! interface addresses, preferring public over private over anything else, and loopback
//! only when nothing else exists.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether another node could dial `ip` at all (not unspecified, multicast or broadcast).
pub(crate) fn is_dialable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

/// How good an address is to advertise; lower is better, `None` never.
fn rank(ip: IpAddr, want_v6: bool) -> Option<u8> {
    if !is_dialable(ip) {
        return None;
    }
    // The listen socket's family first: a `0.0.0.0` listener cannot take IPv6.
    let family = u8::from(ip.is_ipv6() != want_v6) * 10;
    let class = match ip {
        IpAddr::V4(v4) if v4.is_loopback() => 4,
        IpAddr::V4(v4) if v4.is_link_local() => 3,
        IpAddr::V4(v4) if is_private_v4(v4) => 1,
        IpAddr::V4(_) => 0,
        IpAddr::V6(v6) if v6.is_loopback() => 4,
        IpAddr::V6(v6) if is_link_local_v6(v6) => return None, // needs a scope id
        IpAddr::V6(v6) if is_unique_local_v6(v6) => 1,
        IpAddr::V6(_) => 0,
    };
    if !want_v6 && ip.is_ipv6() {
        return None;
    }
    Some(family + class)
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    // RFC 1918 and the carrier-grade NAT range (RFC 6598): reachable only behind a NAT.
    ip.is_private() || (ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64)
}

fn is_link_local_v6(ip: Ipv6Addr) -> bool {
    (ip.segments()[0] & 0xffc0) == 0xfe80
}

fn is_unique_local_v6(ip: Ipv6Addr) -> bool {
    (ip.segments()[0] & 0xfe00) == 0xfc00
}

/// The best address to advertise among `candidates` for a listener on `listen_ip`
/// (unspecified): public, then private, then link-local, then loopback, the listener's
/// family first. `None` when there is none at all.
pub(crate) fn pick_advertised(
    listen_ip: IpAddr,
    candidates: impl IntoIterator<Item = IpAddr>,
) -> Option<IpAddr> {
    let want_v6 = listen_ip.is_ipv6();
    candidates
        .into_iter()
        .filter_map(|ip| rank(ip, want_v6).map(|r| (r, ip)))
        .min_by_key(|(r, _)| *r)
        .map(|(_, ip)| ip)
}

/// The address to advertise for a listener bound to `listen_ip`: the address itself when
/// it is specific, else the best interface address ([`pick_advertised`]), else loopback.
pub(crate) fn advertised_ip(listen_ip: IpAddr) -> IpAddr {
    if !listen_ip.is_unspecified() {
        return listen_ip;
    }
    let addrs = match if_addrs::get_if_addrs() {
        Ok(ifaces) => ifaces.into_iter().map(|i| i.ip()).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list interface addresses");
            Vec::new()
        }
    };
    pick_advertised(listen_ip, addrs).unwrap_or(match listen_ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    })
}

/// The gateway of the default IPv4 route, from a Linux `/proc/net/route` table.
pub(crate) fn parse_default_gateway(route_table: &str) -> Option<Ipv4Addr> {
    // Columns: Iface Destination Gateway Flags ...; addresses are little-endian hex.
    const RTF_GATEWAY: u32 = 0x2;
    route_table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (dest, gw, flags) = (cols.get(1)?, cols.get(2)?, cols.get(3)?);
        let dest = u32::from_str_radix(dest, 16).ok()?;
        let gw = u32::from_str_radix(gw, 16).ok()?;
        let flags = u32::from_str_radix(flags, 16).ok()?;
        (dest == 0 && gw != 0 && flags & RTF_GATEWAY != 0).then(|| Ipv4Addr::from(gw.swap_bytes()))
    })
}

/// This host's default IPv4 gateway (Linux only; `None` elsewhere or without one).
pub(crate) fn default_gateway() -> Option<Ipv4Addr> {
    let table = std::fs::read_to_string("/proc/net/route").ok()?;
    parse_default_gateway(&table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn unspecified_listener_advertises_public_then_private_then_loopback() {
        let any4: IpAddr = "0.0.0.0".parse().unwrap();
        let pick = |l: &[&str]| pick_advertised(any4, ips(l)).map(|ip| ip.to_string());
        assert_eq!(
            pick(&["127.0.0.1", "192.168.1.5", "203.0.113.9"]).as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(
            pick(&["127.0.0.1", "169.254.3.3", "10.1.2.3"]).as_deref(),
            Some("10.1.2.3")
        );
        assert_eq!(pick(&["127.0.0.1"]).as_deref(), Some("127.0.0.1"));
        // An IPv4 listener never advertises IPv6.
        assert_eq!(pick(&["2001:db8::5", "::1"]), None);
        assert_eq!(pick(&["0.0.0.0", "224.0.0.1"]), None);
    }

    #[test]
    fn v6_listener_prefers_global_v6_and_skips_link_local() {
        let any6: IpAddr = "::".parse().unwrap();
        let pick = |l: &[&str]| pick_advertised(any6, ips(l)).map(|ip| ip.to_string());
        assert_eq!(
            pick(&["fe80::1", "fd00::7", "2001:db8::5", "192.0.2.1"]).as_deref(),
            Some("2001:db8::5")
        );
        assert_eq!(
            pick(&["fe80::1", "192.0.2.1"]).as_deref(),
            Some("192.0.2.1")
        );
    }

    #[test]
    fn a_specific_listener_advertises_itself() {
        let ip: IpAddr = "10.9.8.7".parse().unwrap();
        assert_eq!(advertised_ip(ip), ip);
        assert!(!advertised_ip("0.0.0.0".parse().unwrap()).is_unspecified());
    }

    #[test]
    fn default_gateway_from_the_route_table() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t004DA8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            eth0\t00000000\t014DA8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(
            parse_default_gateway(table),
            Some(Ipv4Addr::new(192, 168, 77, 1))
        );
        assert_eq!(parse_default_gateway("Iface\tDestination\n"), None);
        assert_eq!(parse_default_gateway("garbage\nx y z\n"), None);
    }
}
