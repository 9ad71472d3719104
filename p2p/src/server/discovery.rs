//! Growing from a link into a network: node discovery feeds the dial scheduler, which fills
//! the free outbound slots.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info_span, Instrument};

use crate::base::Capability;
use crate::discover::v4::{Candidate, Candidates, Discv4, Discv4Config};
use crate::node::{Enode, NodeKey};
use crate::peer::Direction;

use super::config::Discovery;
use super::dial_scheduler::{DialLimits, DialScheduler, DialTarget};
use super::limits::{Netgroup, SubnetCap};
use super::{lock, PeerEvent, Server, ServerConfig, ServerError};

/// How often the scheduler looks for free slots even when nothing else happened (a peer
/// dropped, a backoff expired).
const TICK: Duration = Duration::from_millis(500);

/// Start discovery as configured: bound on the listen IP and the UDP port, advertising the
/// bound TCP port and our protocols' capabilities. `None` when it is off or the node does
/// not listen.
pub(super) async fn start_discovery(
    config: &ServerConfig,
    local_addr: Option<SocketAddr>,
) -> Result<Option<Discv4>, ServerError> {
    let (Discovery::V4, Some(tcp)) = (config.discovery, local_addr) else {
        return Ok(None);
    };
    let bind = SocketAddr::new(tcp.ip(), config.udp_port.unwrap_or(tcp.port()));
    let mut cfg = Discv4Config::new(NodeKey::from_secret(config.key), bind);
    cfg.tcp_port = tcp.port();
    cfg.capabilities = capabilities(config);
    cfg.bootnodes = config.bootnodes.clone();
    Ok(Some(Discv4::start(cfg).await?))
}

fn capabilities(config: &ServerConfig) -> Vec<Capability> {
    config.protocols.iter().map(|p| p.capability()).collect()
}

impl Server {
    /// Dial discovered nodes into the free outbound slots until shutdown.
    pub(super) async fn dial_loop(&self, mut candidates: Candidates) {
        let cfg = &self.inner.config;
        let limits = DialLimits {
            max_in_flight: cfg.max_dials_in_flight.max(1),
            subnet: SubnetCap {
                max: cfg.max_dialed_per_subnet,
                exempt_loopback: cfg.exempt_loopback,
            },
            ..DialLimits::default()
        };
        let caps = capabilities(cfg);
        let mut scheduler = DialScheduler::new(self.inner.id, limits);
        // Every dial in flight sends exactly one result, so the channel never holds more
        // than the in-flight bound.
        let (done_tx, mut done_rx) = mpsc::channel(limits.max_in_flight);
        let mut tick = tokio::time::interval(TICK);
        let stop = self.inner.shutdown.clone();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                c = candidates.recv() => match c {
                    Some(c) => self.offer(&mut scheduler, c, &caps),
                    None => return,
                },
                Some((id, ok)) = done_rx.recv() => scheduler.dial_done(&id, ok, Instant::now()),
                _ = tick.tick() => {}
            }
            for target in self.pick(&mut scheduler) {
                let s = self.clone();
                let done = done_tx.clone();
                let span = info_span!("dial", peer = %hex::encode(&target.id.0[..8]));
                self.spawn(
                    async move {
                        let enode = Enode::new(target.id, target.addr);
                        let ok = match s.dial(&enode).await {
                            Ok(_) => true,
                            Err(e) => {
                                debug!(error = %e, "dial failed");
                                let _ = s.inner.events.send(PeerEvent::DialFailed {
                                    id: target.id.to_string(),
                                    reason: e.kind().to_string(),
                                });
                                false
                            }
                        };
                        let _ = done.send((target.id, ok)).await;
                    }
                    .instrument(span),
                );
            }
        }
    }

    fn offer(&self, scheduler: &mut DialScheduler, c: Candidate, caps: &[Capability]) {
        let Some(addr) = c.tcp_addr() else {
            return;
        };
        if self.inner.config.dial_only_shared_caps
            && !c.record.as_ref().is_some_and(|r| r.speaks_any(caps))
        {
            debug!(id = %c.node.id, "not dialing: no shared capability in its record");
            return;
        }
        if scheduler.add_candidate(DialTarget {
            id: c.node.id,
            addr,
        }) {
            let _ = self.inner.events.send(PeerEvent::Discovered {
                id: c.node.id.to_string(),
                addr,
            });
        }
    }

    fn pick(&self, scheduler: &mut DialScheduler) -> Vec<DialTarget> {
        let cfg = &self.inner.config;
        let subnet = SubnetCap {
            max: cfg.max_dialed_per_subnet,
            exempt_loopback: cfg.exempt_loopback,
        };
        let admission = lock(&self.inner.admission);
        let outbound = admission.counted(Some(Direction::Outbound));
        let free = cfg.max_dialed().saturating_sub(outbound);
        // The subnet cap here counts outbound peers, apart from the inbound one admission
        // enforces.
        let groups: Vec<Netgroup> = admission
            .peers()
            .filter(|p| p.direction() == Direction::Outbound)
            .filter_map(|p| p.remote_addr())
            .filter_map(|a| subnet.group(a.ip()))
            .collect();
        scheduler.next_dials(
            Instant::now(),
            free,
            |id| admission.peer(id).is_some(),
            groups,
        )
    }
}
