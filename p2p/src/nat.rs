//! NAT traversal: how a node behind a home router learns the address the rest of the
//! network must dial, and opens its ports there.
//!
//! The methods are go-ethereum's (`--nat`): [`Nat::None`] advertises what the node listens
//! on; [`Nat::ExtIp`] states the public IP by hand (the operator forwarded the ports);
//! [`Nat::Upnp`] asks an Internet Gateway Device (UPnP IGD) on the LAN, found by SSDP
//! multicast, to forward the ports; [`Nat::Pmp`] asks the default gateway by NAT-PMP
//! (RFC 6886); [`Nat::Any`] tries UPnP, then NAT-PMP.
//!
//! A port mapper maps the TCP (RLPx) port and the UDP (discovery) port, each asking for
//! the same external port as the internal one, renews both before the lease ends, and
//! removes them when it stops; it publishes the external endpoint it got. The server puts
//! that endpoint into its enode, its node record and its discovery endpoint.
//!
//! Without a method, a node listening on every interface can still learn its public IP
//! from discovery: `votes` tallies the address other nodes' pongs say our pings came
//! from, and discovery advertises it once enough of them agree.
//!
//! Modules: `upnp` and `pmp` (one gateway protocol each), `interface` (the local
//! addresses a node may advertise, the default gateway), `votes` (the pong tally),
//! `mapper` (the renewal loop).

pub(crate) mod interface;
mod mapper;
mod pmp;
mod upnp;
pub(crate) mod votes;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

pub use mapper::External;
pub(crate) use mapper::{MappedPorts, PortMapper};

/// How long a mapping is asked for (go-ethereum: 10 minutes); it is renewed at four
/// fifths of what the gateway granted.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10 * 60);

/// How a node finds and opens its public address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Nat {
    /// No NAT traversal: advertise the listen address (or, when that is unspecified, a
    /// routable interface address).
    #[default]
    None,
    /// The public IP is known and the ports are forwarded by hand.
    ExtIp(IpAddr),
    /// UPnP IGD: find the gateway by SSDP and add port mappings.
    Upnp,
    /// NAT-PMP (RFC 6886) to the given gateway, or to the default route's gateway.
    Pmp(Option<Ipv4Addr>),
    /// UPnP, and NAT-PMP when no UPnP gateway answers.
    Any,
}

impl Nat {
    /// Whether this method maps ports on a gateway (and so needs a port mapper).
    pub fn maps_ports(&self) -> bool {
        matches!(self, Nat::Upnp | Nat::Pmp(_) | Nat::Any)
    }
}

impl fmt::Display for Nat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Nat::None => f.write_str("none"),
            Nat::ExtIp(ip) => write!(f, "extip:{ip}"),
            Nat::Upnp => f.write_str("upnp"),
            Nat::Pmp(None) => f.write_str("pmp"),
            Nat::Pmp(Some(gw)) => write!(f, "pmp:{gw}"),
            Nat::Any => f.write_str("any"),
        }
    }
}

/// A `--nat` value that is not one of the methods.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NatParseError {
    /// Not a method name.
    #[error("unknown NAT method {0:?} (use none, extip:IP, upnp, pmp, pmp:GATEWAY or any)")]
    UnknownMethod(String),
    /// `extip:` or `pmp:` followed by something that is not an IP address.
    #[error("{method}: {value:?} is not an IP address")]
    BadAddress {
        /// `extip` or `pmp`.
        method: &'static str,
        /// What followed the colon.
        value: String,
    },
    /// An address no other node can dial (unspecified, multicast, broadcast).
    #[error("extip: {0} cannot be dialed")]
    NotDialable(IpAddr),
}

impl FromStr for Nat {
    type Err = NatParseError;

    /// Parses go-ethereum's spellings, case-insensitively: `none` (or empty), `extip:IP`,
    /// `upnp`, `pmp`, `pmp:GATEWAY`, `any`.
    fn from_str(s: &str) -> Result<Nat, NatParseError> {
        let s = s.trim();
        let (method, value) = match s.split_once(':') {
            Some((m, v)) => (m.to_ascii_lowercase(), Some(v.trim())),
            None => (s.to_ascii_lowercase(), None),
        };
        let address = |method: &'static str, v: &str| {
            v.parse::<IpAddr>().map_err(|_| NatParseError::BadAddress {
                method,
                value: v.to_string(),
            })
        };
        match (method.as_str(), value) {
            ("" | "none" | "off", None) => Ok(Nat::None),
            ("upnp", None) => Ok(Nat::Upnp),
            ("any", None) => Ok(Nat::Any),
            ("pmp" | "natpmp", None) => Ok(Nat::Pmp(None)),
            ("pmp" | "natpmp", Some(v)) => match address("pmp", v)? {
                IpAddr::V4(gw) if !gw.is_unspecified() => Ok(Nat::Pmp(Some(gw))),
                _ => Err(NatParseError::BadAddress {
                    method: "pmp",
                    value: v.to_string(),
                }),
            },
            ("extip", Some(v)) => {
                let ip = address("extip", v)?;
                if !interface::is_dialable(ip) {
                    return Err(NatParseError::NotDialable(ip));
                }
                Ok(Nat::ExtIp(ip))
            }
            _ => Err(NatParseError::UnknownMethod(s.to_string())),
        }
    }
}

/// The two transports a node maps: TCP for RLPx, UDP for discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Transport {
    /// RLPx.
    Tcp,
    /// Discovery.
    Udp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        })
    }
}

/// Why a gateway could not be found or would not map a port.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NatError {
    /// No UPnP gateway answered the SSDP search.
    #[error("no UPnP gateway found: {0}")]
    NoUpnpGateway(String),
    /// No default IPv4 gateway to send NAT-PMP requests to.
    #[error("no default IPv4 gateway for NAT-PMP")]
    NoDefaultGateway,
    /// The UPnP gateway refused or failed a request.
    #[error("UPnP {action}: {reason}")]
    Upnp {
        /// The SOAP action.
        action: &'static str,
        /// The gateway's or the client's error.
        reason: String,
    },
    /// The NAT-PMP gateway refused or failed a request.
    #[error("NAT-PMP {action}: {reason}")]
    Pmp {
        /// The request.
        action: &'static str,
        /// The gateway's or the client's error.
        reason: String,
    },
    /// The gateway named an external address no one can dial (it has no public address
    /// itself, say).
    #[error("gateway reports an unusable external address {0}")]
    BadExternalAddress(IpAddr),
    /// A request got no answer in time.
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// A local socket operation failed.
    #[error("local socket: {0}")]
    Io(#[from] std::io::Error),
}

/// A gateway found by one of the mapping methods.
#[derive(Debug, Clone)]
pub(crate) enum Gateway {
    Upnp(upnp::UpnpGateway),
    Pmp(pmp::PmpGateway),
}

/// A port mapping the gateway granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Granted {
    pub(crate) external_port: u16,
    /// How long it lasts; `None` for a permanent one.
    pub(crate) lease: Option<Duration>,
}

impl Gateway {
    /// Find the gateway `nat` names; `local_ip` is the address the node listens on.
    pub(crate) async fn discover(nat: &Nat, local_ip: IpAddr) -> Result<Gateway, NatError> {
        match nat {
            Nat::Upnp => Ok(Gateway::Upnp(upnp::UpnpGateway::search(local_ip).await?)),
            Nat::Pmp(gw) => Ok(Gateway::Pmp(pmp::PmpGateway::new(*gw)?)),
            Nat::Any => match upnp::UpnpGateway::search(local_ip).await {
                Ok(g) => Ok(Gateway::Upnp(g)),
                Err(e) => {
                    tracing::debug!(error = %e, "no UPnP gateway; trying NAT-PMP");
                    let gw = pmp::PmpGateway::new(None)?;
                    // Only a gateway that answers is taken.
                    gw.external_ip().await?;
                    Ok(Gateway::Pmp(gw))
                }
            },
            Nat::None | Nat::ExtIp(_) => Err(NatError::NoDefaultGateway),
        }
    }

    /// `upnp` or `pmp`, for logs.
    pub(crate) fn method(&self) -> &'static str {
        match self {
            Gateway::Upnp(_) => "upnp",
            Gateway::Pmp(_) => "pmp",
        }
    }

    /// The gateway's public address.
    pub(crate) async fn external_ip(&self) -> Result<IpAddr, NatError> {
        let ip = match self {
            Gateway::Upnp(g) => g.external_ip().await?,
            Gateway::Pmp(g) => IpAddr::V4(g.external_ip().await?),
        };
        if !interface::is_dialable(ip) {
            return Err(NatError::BadExternalAddress(ip));
        }
        Ok(ip)
    }

    /// Map `external_port` (or another one the gateway picks) to our `internal_port`.
    pub(crate) async fn map(
        &self,
        transport: Transport,
        internal_port: u16,
        external_port: u16,
        lease: Duration,
    ) -> Result<Granted, NatError> {
        match self {
            Gateway::Upnp(g) => g.map(transport, internal_port, external_port, lease).await,
            Gateway::Pmp(g) => g.map(transport, internal_port, external_port, lease).await,
        }
    }

    /// Remove a mapping made by [`Gateway::map`].
    pub(crate) async fn unmap(
        &self,
        transport: Transport,
        internal_port: u16,
        external_port: u16,
    ) -> Result<(), NatError> {
        match self {
            Gateway::Upnp(g) => g.unmap(transport, external_port).await,
            Gateway::Pmp(g) => g.unmap(transport, internal_port).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gethlike_spellings() {
        assert_eq!("none".parse(), Ok(Nat::None));
        assert_eq!("".parse(), Ok(Nat::None));
        assert_eq!("UPnP".parse(), Ok(Nat::Upnp));
        assert_eq!("pmp".parse(), Ok(Nat::Pmp(None)));
        assert_eq!(
            "pmp:192.168.1.1".parse(),
            Ok(Nat::Pmp(Some(Ipv4Addr::new(192, 168, 1, 1))))
        );
        assert_eq!("any".parse(), Ok(Nat::Any));
        assert_eq!(
            "extip:203.0.113.7".parse(),
            Ok(Nat::ExtIp("203.0.113.7".parse().unwrap()))
        );
        assert_eq!(
            "extip:2001:db8::1".parse(),
            Ok(Nat::ExtIp("2001:db8::1".parse().unwrap()))
        );
        for nat in [
            Nat::None,
            Nat::Upnp,
            Nat::Any,
            Nat::Pmp(None),
            Nat::Pmp(Some(Ipv4Addr::new(10, 0, 0, 1))),
            Nat::ExtIp("198.51.100.1".parse().unwrap()),
        ] {
            assert_eq!(nat.to_string().parse(), Ok(nat), "{nat}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_method_or_not_dialable() {
        assert!(matches!(
            "stun".parse::<Nat>(),
            Err(NatParseError::UnknownMethod(_))
        ));
        assert!(matches!(
            "upnp:1.2.3.4".parse::<Nat>(),
            Err(NatParseError::UnknownMethod(_))
        ));
        assert!(matches!(
            "extip".parse::<Nat>(),
            Err(NatParseError::UnknownMethod(_))
        ));
        assert!(matches!(
            "extip:host.example".parse::<Nat>(),
            Err(NatParseError::BadAddress { .. })
        ));
        for bad in [
            "extip:0.0.0.0",
            "extip:::",
            "extip:224.0.0.1",
            "extip:255.255.255.255",
        ] {
            assert!(
                matches!(bad.parse::<Nat>(), Err(NatParseError::NotDialable(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            "pmp:::1".parse::<Nat>(),
            Err(NatParseError::BadAddress { .. })
        ));
        assert!(matches!(
            "pmp:0.0.0.0".parse::<Nat>(),
            Err(NatParseError::BadAddress { .. })
        ));
    }
}
