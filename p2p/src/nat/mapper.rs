//! The port-mapping loop: find the gateway, learn its external address, map the TCP and
//! UDP ports, renew before the lease runs out, and delete the mappings on shutdown.

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::{Gateway, Nat, NatError, Transport};

/// Longest pause before trying again after a failure (go-ethereum: 5 minutes); shorter
/// leases retry at half the lease.
const MAX_RETRY: Duration = Duration::from_secs(5 * 60);
/// Bound on deleting the mappings at shutdown (the deletions run concurrently).
const UNMAP_DEADLINE: Duration = Duration::from_secs(6);
/// Shortest pause between renewals, whatever lease the gateway grants.
const MIN_RENEW: Duration = Duration::from_secs(1);

/// The node's address as the rest of the network dials it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct External {
    /// The gateway's public IP.
    pub ip: IpAddr,
    /// The external TCP (RLPx) port.
    pub tcp_port: u16,
    /// The external UDP (discovery) port, when one was mapped.
    pub udp_port: Option<u16>,
}

/// The local ports to map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MappedPorts {
    /// The RLPx listener's port.
    pub(crate) tcp: u16,
    /// Discovery's UDP port, when discovery runs.
    pub(crate) udp: Option<u16>,
}

/// A running port-mapping loop. Dropping it stops the loop, which then deletes its
/// mappings on its own; [`PortMapper::shutdown`] also waits for that.
#[derive(Debug)]
pub(crate) struct PortMapper {
    /// Rounds of discover-and-map finished, successful or not.
    rounds: watch::Receiver<u64>,
    external: watch::Receiver<Option<External>>,
    stop: CancellationToken,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl PortMapper {
    /// Start mapping `ports` for a node listening on `listen_ip`, by `nat` (a method
    /// that [maps ports](Nat::maps_ports)), asking for leases of `lease`.
    pub(crate) fn start(
        nat: Nat,
        listen_ip: IpAddr,
        ports: MappedPorts,
        lease: Duration,
    ) -> PortMapper {
        let (rounds_tx, rounds) = watch::channel(0u64);
        let (external_tx, external) = watch::channel(None);
        let stop = CancellationToken::new();
        let mut mapping = Mapping {
            nat,
            listen_ip,
            ports,
            lease: lease.max(MIN_RENEW * 2),
            gateway: None,
            mapped: Vec::new(),
        };
        let token = stop.clone();
        let span = tracing::info_span!("nat", method = %nat);
        let task = tokio::spawn(
            async move {
                loop {
                    let pause = match mapping.round().await {
                        Ok((now, renew_in)) => {
                            external_tx.send_if_modified(|e| {
                                let changed = *e != Some(now);
                                if changed {
                                    info!(ip = %now.ip, tcp = now.tcp_port, udp = ?now.udp_port, "NAT mapping in place");
                                    *e = Some(now);
                                }
                                changed
                            });
                            renew_in
                        }
                        Err(e) => {
                            warn!(error = %e, "NAT port mapping failed");
                            // Find the gateway afresh next time.
                            mapping.gateway = None;
                            (mapping.lease / 2).min(MAX_RETRY)
                        }
                    };
                    rounds_tx.send_modify(|n| *n += 1);
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
                mapping.unmap_all().await;
            }
            .instrument(span),
        );
        PortMapper {
            rounds,
            external,
            stop,
            task: Mutex::new(Some(task)),
        }
    }

    /// Wait (at most `timeout`) until the first round of discovery and mapping has
    /// finished; the external endpoint, if it succeeded.
    pub(crate) async fn first_round(&self, timeout: Duration) -> Option<External> {
        let mut rx = self.rounds.clone();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|n| *n > 0)).await;
        self.external()
    }

    /// The external endpoint, once a mapping is in place.
    pub(crate) fn external(&self) -> Option<External> {
        *self.external.borrow()
    }

    /// A receiver that wakes on every change of the external endpoint.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Option<External>> {
        self.external.clone()
    }

    /// Stop renewing and delete the mappings (bounded in time).
    pub(crate) async fn shutdown(&self) {
        self.stop.cancel();
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            if tokio::time::timeout(UNMAP_DEADLINE + Duration::from_secs(1), task)
                .await
                .is_err()
            {
                warn!("NAT mapper did not stop in time");
            }
        }
    }
}

impl Drop for PortMapper {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The loop's state: the gateway once found, and what is mapped on it.
struct Mapping {
    nat: Nat,
    listen_ip: IpAddr,
    ports: MappedPorts,
    lease: Duration,
    gateway: Option<Gateway>,
    /// (transport, internal port, external port) of each mapping in place.
    mapped: Vec<(Transport, u16, u16)>,
}

impl Mapping {
    /// One round: find the gateway if needed, read its address, map (or renew) both
    /// ports. Returns the external endpoint and when to renew.
    async fn round(&mut self) -> Result<(External, Duration), NatError> {
        if self.gateway.is_none() {
            self.gateway = Some(Gateway::discover(&self.nat, self.listen_ip).await?);
        }
        let Some(gateway) = self.gateway.clone() else {
            return Err(NatError::NoDefaultGateway);
        };
        let ip = gateway.external_ip().await?;
        let mut renew = self.lease;
        let mut external = External {
            ip,
            tcp_port: 0,
            udp_port: None,
        };
        let wanted = [
            Some((Transport::Tcp, self.ports.tcp)),
            self.ports.udp.map(|p| (Transport::Udp, p)),
        ];
        for (transport, internal) in wanted.into_iter().flatten() {
            // Ask for the port we had (renewal), else the internal port itself.
            let previous = self
                .mapped
                .iter()
                .find(|(t, i, _)| *t == transport && *i == internal)
                .map(|m| m.2);
            let want = previous.unwrap_or(internal);
            let granted = gateway.map(transport, internal, want, self.lease).await?;
            debug!(method = gateway.method(), %transport, internal, external = granted.external_port, lease = ?granted.lease, "port mapped");
            if let Some(old) = previous.filter(|old| *old != granted.external_port) {
                // The gateway moved us: drop the old mapping, quietly.
                let _ = gateway.unmap(transport, internal, old).await;
            }
            self.mapped
                .retain(|(t, i, _)| !(*t == transport && *i == internal));
            self.mapped
                .push((transport, internal, granted.external_port));
            if let Some(lease) = granted.lease {
                renew = renew.min(lease);
            }
            match transport {
                Transport::Tcp => external.tcp_port = granted.external_port,
                Transport::Udp => external.udp_port = Some(granted.external_port),
            }
        }
        Ok((external, (renew * 4 / 5).max(MIN_RENEW)))
    }

    /// Delete every mapping we made, concurrently and within [`UNMAP_DEADLINE`].
    async fn unmap_all(&mut self) {
        let Some(gateway) = self.gateway.take() else {
            return;
        };
        let mapped = std::mem::take(&mut self.mapped);
        let deletions = mapped.iter().map(|&(transport, internal, external)| {
            let gateway = &gateway;
            async move {
                match gateway.unmap(transport, internal, external).await {
                    Ok(()) => debug!(%transport, external, "port mapping deleted"),
                    Err(e) => {
                        warn!(%transport, external, error = %e, "deleting port mapping failed")
                    }
                }
            }
        });
        if tokio::time::timeout(UNMAP_DEADLINE, futures::future::join_all(deletions))
            .await
            .is_err()
        {
            warn!("deleting port mappings timed out");
        }
    }
}
