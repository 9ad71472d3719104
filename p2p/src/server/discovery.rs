//! Growing from a link into a network: node discovery feeds the dial scheduler, which fills
//! the free outbound slots.
//!
//! Discovery offers a node when it first verifies it. While outbound slots stay free and
//! the scheduler has nothing left to dial, the dial loop asks discovery for more: a lookup
//! towards a random id (one at a time, as go-ethereum's dialer pulls nodes from random
//! lookups), paced from [`LOOKUP_PAUSE_MIN`] and doubled up to [`LOOKUP_PAUSE_MAX`] while
//! lookups turn up no node it did not know, so a node in a network too small to fill its
//! slots settles to one lookup a minute. A node without any peer keeps trying more often
//! (every [`LOOKUP_PAUSE_LONELY`] at most): its first lookups may have failed only because
//! everyone, its bootnodes first, was busy at once.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info_span, Instrument};

use crate::base::Capability;
use crate::discover::v4::service::Discv4Stats;
use crate::discover::v4::{Bootnode, Candidate, Candidates, Discv4, Discv4Config};
use crate::node::{Enode, NodeKey};
use crate::peer::Direction;
use futures::StreamExt;

use super::config::Discovery;
use super::dial_scheduler::{DialLimits, DialScheduler, DialTarget};
use super::limits::{Netgroup, SubnetCap};
use super::{lock, PeerEvent, Server, ServerConfig, ServerError};

/// How often the scheduler looks for free slots even when nothing else happened (a peer
/// dropped, a backoff expired).
const TICK: Duration = Duration::from_millis(500);
/// Shortest pause between two lookups the dial loop asks for.
pub(super) const LOOKUP_PAUSE_MIN: Duration = Duration::from_secs(1);
/// Longest pause, reached while lookups find nothing new.
pub(super) const LOOKUP_PAUSE_MAX: Duration = Duration::from_secs(60);
/// Longest pause while the node has no peer at all.
pub(super) const LOOKUP_PAUSE_LONELY: Duration = Duration::from_secs(4);

/// When the dial loop may next ask for a lookup.
struct LookupPace {
    pause: Duration,
    next: Instant,
    /// Nodes the scheduler knew when the last lookup started.
    known_before: usize,
}

impl LookupPace {
    fn new(now: Instant) -> Self {
        LookupPace {
            pause: LOOKUP_PAUSE_MIN,
            next: now + LOOKUP_PAUSE_MIN,
            known_before: 0,
        }
    }

    /// A lookup ended: pause longer unless the scheduler learnt of new nodes since it began
    /// (and not long while we have no peer).
    fn done(&mut self, now: Instant, known: usize, has_peers: bool) {
        let max = if has_peers {
            LOOKUP_PAUSE_MAX
        } else {
            LOOKUP_PAUSE_LONELY
        };
        self.pause = if known > self.known_before {
            LOOKUP_PAUSE_MIN
        } else {
            (self.pause * 2).min(max)
        };
        self.next = now + self.pause;
    }
}

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

/// Bootnodes pinged at once when the table has to be seeded again.
const RESEED_CONCURRENCY: usize = 16;

/// Ping the bootnodes again (each answer puts one in the table): discovery pings them once
/// at start, and if none answered then (lost datagrams, a bootnode started later) the
/// table stays empty and no lookup can get anywhere.
async fn reseed(discovery: &Discv4, bootnodes: &[Bootnode]) {
    debug!(
        bootnodes = bootnodes.len(),
        "node table empty: pinging the bootnodes again"
    );
    futures::stream::iter(bootnodes.iter().filter_map(|b| b.node().ok()))
        .for_each_concurrent(RESEED_CONCURRENCY, |node| async move {
            let _ = discovery.ping(node).await;
        })
        .await;
}

fn capabilities(config: &ServerConfig) -> Vec<Capability> {
    config.protocols.iter().map(|p| p.capability()).collect()
}

impl Server {
    /// Dial discovered nodes into the free outbound slots until shutdown, asking
    /// `discovery` for lookups while slots stay free and nothing is left to dial.
    pub(super) async fn dial_loop(&self, mut candidates: Candidates, discovery: Arc<Discv4>) {
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
        let mut lookup: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
        let mut pace = LookupPace::new(Instant::now());
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                c = candidates.recv() => match c {
                    Some(c) => self.offer(&mut scheduler, c, &caps),
                    None => return,
                },
                Some((id, ok)) = done_rx.recv() => scheduler.dial_done(&id, ok, Instant::now()),
                _ = async { if let Some(l) = lookup.as_mut() { l.await } }, if lookup.is_some() => {
                    lookup = None;
                    let has_peers = lock(&self.inner.admission).peers().next().is_some();
                    pace.done(Instant::now(), scheduler.known(), has_peers);
                }
                _ = tick.tick() => {}
            }
            let (targets, free) = self.pick(&mut scheduler);
            let idle = scheduler.queued() == 0 && scheduler.in_flight() == 0;
            if free > 0 && idle && lookup.is_none() && Instant::now() >= pace.next {
                pace.known_before = scheduler.known();
                let d = discovery.clone();
                let boot = self.inner.config.bootnodes.clone();
                debug!("outbound slots free and nothing to dial: looking up more nodes");
                lookup = Some(Box::pin(async move {
                    if d.table_len() == 0 {
                        reseed(&d, &boot).await;
                    }
                    d.lookup_random().await;
                }));
            }
            for target in targets {
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
        let target = DialTarget {
            id: c.node.id,
            addr,
        };
        if scheduler.add_candidate(target, Instant::now()) {
            let _ = self.inner.events.send(PeerEvent::Discovered {
                id: c.node.id.to_string(),
                addr,
            });
        }
    }

    /// The nodes to dial now, and how many outbound slots were free before them.
    fn pick(&self, scheduler: &mut DialScheduler) -> (Vec<DialTarget>, usize) {
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
        let targets = scheduler.next_dials(Instant::now(), free, |id| admission.owns(id), groups);
        (targets, free)
    }
}

impl Server {
    /// Discovery v4's packet counters (datagrams sent, received, dropped), while it runs.
    pub fn discv4_stats(&self) -> Option<Discv4Stats> {
        lock(&self.inner.discovery).as_ref().map(|d| d.stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_pause_longer_while_they_find_nothing_new() {
        let t0 = Instant::now();
        let mut pace = LookupPace::new(t0);
        assert_eq!(pace.next, t0 + LOOKUP_PAUSE_MIN);
        pace.known_before = 5;
        let mut pauses = Vec::new();
        for _ in 0..8 {
            pace.done(t0, 5, true);
            pauses.push(pace.pause.as_secs());
        }
        assert_eq!(pauses, vec![2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(pace.next, t0 + LOOKUP_PAUSE_MAX);
        // A lookup that taught us of a new node: back to the shortest pause.
        pace.done(t0, 6, true);
        assert_eq!(pace.pause, LOOKUP_PAUSE_MIN);
        // Without a peer the pause stays short.
        for _ in 0..8 {
            pace.done(t0, 5, false);
        }
        assert_eq!(pace.pause, LOOKUP_PAUSE_LONELY);
    }
}
