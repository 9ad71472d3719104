//! The address the server advertises (enode, node record, discovery endpoint): the
//! external one a NAT method gives, else the listen address, and never an unspecified one.

use std::net::{IpAddr, SocketAddr};

use tracing::{debug, info, warn};

use crate::nat::{interface, External, MappedPorts, Nat, PortMapper};

use super::discovery::Discoveries;
use super::{lock, Server, ServerConfig};

/// How long [`Server::start`](super::Server::start) waits for the first NAT mapping
/// (UPnP's search and requests, or NAT-PMP's retries, and for `any` both), so that the
/// enode it reports is already the external one. Mapping goes on in the background
/// when this runs out.
pub const NAT_START_WAIT: std::time::Duration = std::time::Duration::from_secs(12);

/// What the node tells others to dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Advertised {
    pub(super) ip: IpAddr,
    pub(super) tcp_port: u16,
    pub(super) udp_port: u16,
    /// Set when the address came from a NAT method (extip or a mapping).
    pub(super) external: Option<External>,
}

impl Advertised {
    /// Before any NAT method spoke: the listen address, or a routable interface address
    /// when listening on every interface.
    pub(super) fn local(local: SocketAddr, udp_port: Option<u16>) -> Advertised {
        Advertised {
            ip: interface::advertised_ip(local.ip()),
            tcp_port: local.port(),
            udp_port: udp_port.unwrap_or(local.port()),
            external: None,
        }
    }

    fn with_external(self, e: External) -> Advertised {
        Advertised {
            ip: e.ip,
            tcp_port: e.tcp_port,
            udp_port: e.udp_port.unwrap_or(self.udp_port),
            external: Some(e),
        }
    }
}

/// Apply the configured NAT method to a listener on `local` (with discovery on
/// `udp_port`): the address to advertise now, and the port mapper when the method maps
/// ports (its first round awaited up to [`NAT_START_WAIT`]).
pub(super) async fn advertise(
    config: &ServerConfig,
    local: SocketAddr,
    udp_port: Option<u16>,
) -> (Advertised, Option<PortMapper>) {
    let base = Advertised::local(local, udp_port);
    match config.nat {
        Nat::None => (base, None),
        Nat::ExtIp(ip) => {
            let external = External {
                ip,
                tcp_port: local.port(),
                udp_port,
            };
            (base.with_external(external), None)
        }
        nat => {
            let ports = MappedPorts {
                tcp: local.port(),
                udp: udp_port,
            };
            let mapper = PortMapper::start(nat, local.ip(), ports, config.nat_lease);
            let advertised = match mapper.first_round(NAT_START_WAIT).await {
                Some(e) => base.with_external(e),
                None => {
                    warn!(%nat, advertised = %base.ip, "no NAT mapping yet; advertising the local address until one succeeds");
                    base
                }
            };
            (advertised, Some(mapper))
        }
    }
}

/// Point discovery at what we advertise (a re-signed record when it changed). The
/// advertised UDP port is the one NAT methods map: discv4's, or discv5's when it runs
/// alone; beside discv4, discv5 keeps announcing its own port.
pub(super) fn update_discovery(discovery: &Discoveries, a: &Advertised) {
    if let Some(v4) = &discovery.v4 {
        if let Err(e) = v4.set_advertised(a.ip, a.tcp_port, a.udp_port) {
            warn!(error = %e, "cannot update the discovery endpoint");
        }
    }
    if let Some(v5) = &discovery.v5 {
        let udp_port = match discovery.v4 {
            Some(_) => v5.local_addr().port(),
            None => a.udp_port,
        };
        if let Err(e) = v5.set_advertised(a.ip, a.tcp_port, udp_port) {
            warn!(error = %e, "cannot update the discv5 record");
        }
    }
}

/// Whether the node should learn its IP from discovery's pongs: no NAT method tells it,
/// and it listens on every interface (a specific listen address is what it advertises).
fn learns_from_pongs(config: &ServerConfig, local: Option<SocketAddr>) -> bool {
    config.nat == Nat::None && local.is_some_and(|l| l.ip().is_unspecified())
}

/// Discovery's first endpoint, and learning from pongs when nothing else tells the
/// node its public IP.
pub(super) fn attach_discovery(
    config: &ServerConfig,
    local: Option<SocketAddr>,
    discovery: &Discoveries,
    a: &Advertised,
) {
    update_discovery(discovery, a);
    // discv5 learns its address from its own PONG votes (the crate re-signs the record).
    if let (Some(v4), true) = (&discovery.v4, learns_from_pongs(config, local)) {
        v4.learn_endpoint(crate::nat::votes::DEFAULT_MIN_VOTES);
    }
}

impl Server {
    /// What others are told to dial now: the NAT's external endpoint, else the address
    /// discovery learned from other nodes' pongs, else the local one.
    pub(super) fn advertised(&self) -> Option<Advertised> {
        let a = (*lock(&self.inner.advertised))?;
        if a.external.is_none() && learns_from_pongs(&self.inner.config, self.inner.local_addr) {
            if let Some(ip) = lock(&self.inner.discovery)
                .as_ref()
                .and_then(Discoveries::learned_ip)
            {
                return Some(Advertised { ip, ..a });
            }
        }
        Some(a)
    }

    /// Follow the port mapper: each new external endpoint becomes the advertised one,
    /// in the enode and in discovery.
    pub(super) async fn follow_nat(
        &self,
        mut external: tokio::sync::watch::Receiver<Option<External>>,
    ) {
        let stop = self.inner.shutdown.clone();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = external.changed() => if changed.is_err() { return },
            }
            let Some(e) = *external.borrow_and_update() else {
                continue;
            };
            let advertised = {
                let mut a = lock(&self.inner.advertised);
                let Some(current) = *a else { return };
                let next = current.with_external(e);
                *a = Some(next);
                next
            };
            info!(ip = %advertised.ip, tcp = advertised.tcp_port, udp = advertised.udp_port, "advertising the NAT's external address");
            if let Some(d) = lock(&self.inner.discovery).as_ref() {
                update_discovery(d, &advertised);
            }
        }
    }

    /// Stop the port mapper, deleting its mappings.
    pub(super) async fn stop_nat(&self) {
        let mapper = lock(&self.inner.nat).take();
        if let Some(mapper) = mapper {
            mapper.shutdown().await;
            debug!("NAT mappings removed");
        }
    }
}
