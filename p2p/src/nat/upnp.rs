//! UPnP IGD port mapping, with the `igd-next` crate: an SSDP search on the LAN finds the
//! gateway, then SOAP requests over HTTP ask for its external address and add or delete
//! port mappings.
//!
//! The gateway is a device on our own LAN, but its answers are still bounded in time:
//! every request runs under [`REQUEST_TIMEOUT`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use igd_next::aio::tokio::Tokio;
use igd_next::aio::Gateway;
use igd_next::{AddPortError, PortMappingProtocol, SearchOptions};

use super::{Granted, NatError, Transport};

/// How long one SSDP search waits for a gateway's answer.
pub(super) const SEARCH_TIMEOUT: Duration = Duration::from_secs(2);
/// SSDP searches before giving up (a lost multicast datagram is not retried by the crate).
pub(super) const SEARCH_ATTEMPTS: usize = 2;
/// Deadline of one SOAP request.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A UPnP Internet Gateway Device and the LAN address it forwards to.
#[derive(Debug, Clone)]
pub(crate) struct UpnpGateway {
    gateway: Gateway<Tokio>,
    /// Our address as the gateway sees it (the target of every mapping).
    local_ip: IpAddr,
}

impl UpnpGateway {
    /// Search the LAN for a gateway. `listen_ip` is the address the node listens on; when
    /// it is unspecified, the interface facing the gateway is used.
    pub(crate) async fn search(listen_ip: IpAddr) -> Result<UpnpGateway, NatError> {
        let bind_ip = match listen_ip {
            IpAddr::V4(v4) if !v4.is_unspecified() && !v4.is_loopback() => IpAddr::V4(v4),
            _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        };
        let options = || SearchOptions {
            bind_addr: SocketAddr::new(bind_ip, 0),
            timeout: Some(SEARCH_TIMEOUT),
            single_search_timeout: Some(SEARCH_TIMEOUT),
            ..SearchOptions::default()
        };
        let mut last = String::from("no answer");
        for _ in 0..SEARCH_ATTEMPTS {
            // The crate's own timeout covers the search; the outer one also covers the
            // description fetch that follows an answer.
            let found = tokio::time::timeout(
                SEARCH_TIMEOUT + REQUEST_TIMEOUT,
                igd_next::aio::tokio::search_gateway(options()),
            )
            .await;
            match found {
                Ok(Ok(gateway)) => {
                    let local_ip = if bind_ip.is_unspecified() {
                        local_ip_towards(gateway.addr).await?
                    } else {
                        bind_ip
                    };
                    tracing::debug!(gateway = %gateway.addr, %local_ip, "UPnP gateway found");
                    return Ok(UpnpGateway { gateway, local_ip });
                }
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "search timed out".into(),
            }
        }
        Err(NatError::NoUpnpGateway(last))
    }

    /// The gateway's public address.
    pub(crate) async fn external_ip(&self) -> Result<IpAddr, NatError> {
        timed("GetExternalIPAddress", self.gateway.get_external_ip())
            .await?
            .map_err(|e| upnp_error("GetExternalIPAddress", e))
    }

    /// Map `external_port` to our `internal_port`; if another host holds that external
    /// port, take any port the gateway offers. A gateway that only grants permanent
    /// mappings gets asked for one (removed at shutdown all the same).
    pub(crate) async fn map(
        &self,
        transport: Transport,
        internal_port: u16,
        external_port: u16,
        lease: Duration,
    ) -> Result<Granted, NatError> {
        let protocol = protocol(transport);
        let local = SocketAddr::new(self.local_ip, internal_port);
        let desc = description(transport);
        let mut lease_secs = lease_seconds(lease);
        for _ in 0..2 {
            let added = timed(
                "AddPortMapping",
                self.gateway
                    .add_port(protocol, external_port, local, lease_secs, desc),
            )
            .await?;
            match added {
                Ok(()) => {
                    return Ok(Granted {
                        external_port,
                        lease: (lease_secs != 0).then(|| Duration::from_secs(lease_secs.into())),
                    })
                }
                Err(AddPortError::OnlyPermanentLeasesSupported) if lease_secs != 0 => {
                    lease_secs = 0;
                }
                Err(AddPortError::PortInUse) => break,
                Err(e) => return Err(upnp_error("AddPortMapping", e)),
            }
        }
        let any = timed(
            "AddAnyPortMapping",
            self.gateway.add_any_port(protocol, local, lease_secs, desc),
        )
        .await?;
        match any {
            Ok(port) => Ok(Granted {
                external_port: port,
                lease: (lease_secs != 0).then(|| Duration::from_secs(lease_secs.into())),
            }),
            Err(e) => Err(upnp_error("AddAnyPortMapping", e)),
        }
    }

    /// Delete the mapping of `external_port`.
    pub(crate) async fn unmap(
        &self,
        transport: Transport,
        external_port: u16,
    ) -> Result<(), NatError> {
        timed(
            "DeletePortMapping",
            self.gateway.remove_port(protocol(transport), external_port),
        )
        .await?
        .map_err(|e| upnp_error("DeletePortMapping", e))
    }
}

fn protocol(transport: Transport) -> PortMappingProtocol {
    match transport {
        Transport::Tcp => PortMappingProtocol::TCP,
        Transport::Udp => PortMappingProtocol::UDP,
    }
}

/// What the router's mapping table shows for each mapping.
pub(super) fn description(transport: Transport) -> &'static str {
    match transport {
        Transport::Tcp => "braid p2p",
        Transport::Udp => "braid discovery",
    }
}

fn lease_seconds(lease: Duration) -> u32 {
    // 0 would mean "permanent": ask for at least a second.
    u32::try_from(lease.as_secs()).unwrap_or(u32::MAX).max(1)
}

fn upnp_error(action: &'static str, e: impl std::fmt::Display) -> NatError {
    NatError::Upnp {
        action,
        reason: e.to_string(),
    }
}

async fn timed<T>(
    action: &'static str,
    f: impl std::future::Future<Output = T>,
) -> Result<T, NatError> {
    tokio::time::timeout(REQUEST_TIMEOUT, f)
        .await
        .map_err(|_| NatError::Timeout(action))
}

/// The local address the kernel would use to reach `peer`: a UDP socket connected to it
/// (connecting sends nothing).
pub(crate) async fn local_ip_towards(peer: SocketAddr) -> Result<IpAddr, NatError> {
    let unspecified: IpAddr = match peer {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = tokio::net::UdpSocket::bind(SocketAddr::new(unspecified, 0)).await?;
    socket.connect(peer).await?;
    Ok(socket.local_addr()?.ip())
}
