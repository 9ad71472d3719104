//! NAT-PMP (RFC 6886) port mapping, with the `crab_nat` crate's client: requests go to
//! UDP port 5351 of the default gateway (or the one configured), with the RFC's retry
//! schedule cut short (250 ms doubling, three retries: under 4 s in all).

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU16;
use std::time::Duration;

use crab_nat::natpmp;
use crab_nat::{GatewayAddress, InternetProtocol, PortMappingOptions, TimeoutConfig};

use super::{interface, Granted, NatError, Transport};

/// Retry schedule of every request.
const TIMEOUTS: TimeoutConfig = TimeoutConfig {
    initial_timeout: Duration::from_millis(250),
    max_retries: 3,
    max_retry_timeout: Some(Duration::from_secs(2)),
};

/// A NAT-PMP gateway.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PmpGateway {
    gateway: Ipv4Addr,
}

impl PmpGateway {
    /// The gateway at `gateway`, or the default route's gateway when `None`.
    pub(crate) fn new(gateway: Option<Ipv4Addr>) -> Result<PmpGateway, NatError> {
        let gateway = gateway
            .or_else(interface::default_gateway)
            .ok_or(NatError::NoDefaultGateway)?;
        Ok(PmpGateway { gateway })
    }

    /// The gateway's public address.
    pub(crate) async fn external_ip(&self) -> Result<Ipv4Addr, NatError> {
        natpmp::external_address(GatewayAddress::IpV4(self.gateway), Some(TIMEOUTS))
            .await
            .map_err(|e| pmp_error("external address", e))
    }

    /// Map `external_port` (a wish: the gateway may grant another) to `internal_port`.
    pub(crate) async fn map(
        &self,
        transport: Transport,
        internal_port: u16,
        external_port: u16,
        lease: Duration,
    ) -> Result<Granted, NatError> {
        let internal = NonZeroU16::new(internal_port).ok_or(NatError::Pmp {
            action: "map",
            reason: "internal port 0".into(),
        })?;
        let options = PortMappingOptions {
            external_port: NonZeroU16::new(external_port),
            lifetime_seconds: Some(u32::try_from(lease.as_secs()).unwrap_or(u32::MAX).max(1)),
            timeout_config: Some(TIMEOUTS),
        };
        let mapping = natpmp::port_mapping(
            GatewayAddress::IpV4(self.gateway),
            protocol(transport),
            internal,
            options,
        )
        .await
        .map_err(|e| pmp_error("map", e))?;
        Ok(Granted {
            external_port: mapping.external_port().get(),
            lease: Some(Duration::from_secs(mapping.lifetime().into())),
        })
    }

    /// Delete our mapping of `internal_port` (a request with lifetime 0).
    pub(crate) async fn unmap(
        &self,
        transport: Transport,
        internal_port: u16,
    ) -> Result<(), NatError> {
        natpmp::try_drop_mapping(
            GatewayAddress::IpV4(self.gateway),
            protocol(transport),
            NonZeroU16::new(internal_port),
            Some(TIMEOUTS),
        )
        .await
        .map_err(|e| pmp_error("delete", e))
    }
}

impl From<PmpGateway> for IpAddr {
    fn from(g: PmpGateway) -> IpAddr {
        IpAddr::V4(g.gateway)
    }
}

fn protocol(transport: Transport) -> InternetProtocol {
    match transport {
        Transport::Tcp => InternetProtocol::Tcp,
        Transport::Udp => InternetProtocol::Udp,
    }
}

fn pmp_error(action: &'static str, e: natpmp::Failure) -> NatError {
    match e {
        natpmp::Failure::Timeout => NatError::Timeout(action),
        e => NatError::Pmp {
            action,
            reason: e.to_string(),
        },
    }
}
