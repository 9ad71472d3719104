//! Growing from a link into a network: node discovery (v4, v5 or both, their candidates
//! merged) feeds the dial scheduler, which fills the free outbound slots.
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
use crate::discover::v4::{DiscoveryError, Discv4, Discv4Config, Discv4Stats};
use crate::discover::v5::{Discv5, Discv5Config, Discv5Error, Discv5Stats};
use crate::discover::{Bootnode, Candidate, Candidates};
use crate::node::Enode;
use crate::peer::Direction;
use futures::StreamExt;

use super::config::Discovery;
use super::dial_scheduler::{DialLimits, DialScheduler, DialTarget};
use super::limits::{Netgroup, SubnetCap};
use super::{lock, PeerEvent, Server, ServerConfig, ServerError, Transport};

/// Now on tokio's clock, which a simulated network (or a test with paused time) drives, so
/// that lookup pacing and dial backoff follow the network's time.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

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

/// The discoveries a server runs, each optional; clones share them (the dial loop holds
/// one, for lookups).
#[derive(Default, Clone)]
pub(super) struct Discoveries {
    pub(super) v4: Option<Arc<Discv4>>,
    pub(super) v5: Option<Arc<Discv5>>,
}

/// How long shutdown waits for the dial loop to let go of discovery before dropping its
/// own reference instead (dropping the last one stops the services' tasks as well).
const RELEASE_WAIT: Duration = Duration::from_secs(1);

impl Discoveries {
    /// Whether any discovery runs.
    pub(super) fn running(&self) -> bool {
        self.v4.is_some() || self.v5.is_some()
    }

    /// One candidate stream from every discovery running (`None` when none runs).
    pub(super) fn candidates(&self) -> Result<Option<Candidates>, ServerError> {
        let v4 = self.v4.as_ref().map(|d| d.candidates()).transpose()?;
        let v5 = self.v5.as_ref().map(|d| d.candidates()).transpose()?;
        Ok(match (v4, v5) {
            (Some(a), Some(b)) => Some(a.merge(b)),
            (a, b) => a.or(b),
        })
    }

    /// The UDP port a NAT method maps and the enode names: discv4's, else discv5's.
    pub(super) fn advertised_udp_port(&self) -> Option<u16> {
        self.v4
            .as_ref()
            .map(|d| d.local_addr().port())
            .or_else(|| self.v5.as_ref().map(|d| d.local_addr().port()))
    }

    /// The IP discovery announces now (discv4's endpoint, else discv5's record), which
    /// follows what other nodes observed when the node learns its address from them.
    pub(super) fn learned_ip(&self) -> Option<std::net::IpAddr> {
        if let Some(v4) = &self.v4 {
            return Some(v4.local_enode().ip);
        }
        let record = self.v5.as_ref()?.local_record().ok()?;
        record.udp_addr().map(|a| a.ip())
    }

    /// One lookup towards a random id on every discovery running, at the same time;
    /// discv4 pings its bootnodes again first when its table is empty (discv5 re-adds
    /// its own when its table empties).
    async fn lookup_random(&self, bootnodes: &[Bootnode]) {
        let v4 = async {
            if let Some(d) = &self.v4 {
                if d.table_len() == 0 {
                    reseed(d, bootnodes).await;
                }
                d.lookup_random().await;
            }
        };
        let v5 = async {
            if let Some(d) = &self.v5 {
                if let Err(e) = d.lookup_random().await {
                    debug!(error = %e, "discv5 lookup failed");
                }
            }
        };
        tokio::join!(v4, v5);
    }

    /// Stops every discovery, waiting (bounded) for their tasks.
    pub(super) async fn shutdown(self) {
        let Discoveries { v4, v5 } = self;
        let v4 = async {
            if let Some(d) = release(v4).await {
                d.shutdown().await;
            }
        };
        let v5 = async {
            if let Some(d) = release(v5).await {
                d.shutdown().await;
            }
        };
        tokio::join!(v4, v5);
    }
}

/// The service itself once no one else holds it (waiting up to [`RELEASE_WAIT`]); `None`
/// when another reference outlived the wait, in which case the last one dropped stops it.
async fn release<T>(mut shared: Option<Arc<T>>) -> Option<T> {
    let deadline = now() + RELEASE_WAIT;
    loop {
        match Arc::try_unwrap(shared?) {
            Ok(service) => return Some(service),
            Err(still) if now() < deadline => {
                shared = Some(still);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => return None,
        }
    }
}

/// Start discovery as configured: bound on the listen IP, advertising the bound TCP port
/// and our protocols' capabilities. discv4 runs on `transport`'s datagram socket and wall
/// clock; discv5 opens its own socket on the host (the server refuses it over any other
/// transport). discv4's UDP port is `udp_port` or the TCP port;
/// discv5's is `udp_port_v5`, else the TCP port when it runs alone and discv4's port + 1
/// beside discv4. Nothing runs when discovery is off or the node does not listen.
///
/// Each discovery signs its own record, naming its own UDP port (a record has one `udp`
/// entry, and discv5 accepts a record only when that entry is where its packets come
/// from); both records carry the same key, IP, TCP port and capabilities.
pub(super) async fn start_discovery(
    config: &ServerConfig,
    local_addr: Option<SocketAddr>,
    transport: &dyn Transport,
) -> Result<Discoveries, ServerError> {
    let Some(tcp) = local_addr else {
        return Ok(Discoveries::default());
    };
    let key = config.key.clone();
    let v4_port = config.udp_port.unwrap_or(tcp.port());
    let mut running = Discoveries::default();
    if config.discovery.v4() {
        let bind = SocketAddr::new(tcp.ip(), v4_port);
        let mut cfg = Discv4Config::new(key.clone(), bind);
        cfg.tcp_port = tcp.port();
        cfg.capabilities = capabilities(config);
        cfg.bootnodes = config.bootnodes.clone();
        cfg.wall_clock = transport.wall_clock();
        let socket = transport
            .bind_udp(bind)
            .await
            .map_err(|source| DiscoveryError::Bind { addr: bind, source })?;
        running.v4 = Some(Arc::new(Discv4::start_on(cfg, socket)?));
    }
    if config.discovery.v5() {
        let port = match (config.udp_port_v5, config.discovery) {
            (Some(port), _) => port,
            (None, Discovery::Both) => v4_port.checked_add(1).ok_or_else(|| {
                Discv5Error::Start("no default discv5 port above UDP port 65535".into())
            })?,
            (None, _) => tcp.port(),
        };
        let mut cfg = Discv5Config::new(key, SocketAddr::new(tcp.ip(), port));
        cfg.tcp_port = tcp.port();
        cfg.capabilities = capabilities(config);
        cfg.bootnodes = config.bootnodes.clone();
        match Discv5::start(cfg).await {
            Ok(d) => running.v5 = Some(Arc::new(d)),
            Err(e) => {
                running.shutdown().await;
                return Err(e.into());
            }
        }
    }
    Ok(running)
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
    pub(super) async fn dial_loop(&self, mut candidates: Candidates, discovery: Discoveries) {
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
        let mut pace = LookupPace::new(now());
        loop {
            // In this order, whatever else is ready: the same inputs then take the same
            // path (a simulation replays), and candidates that arrive as a lookup ends
            // count for that lookup's pace.
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                c = candidates.recv() => match c {
                    Some(c) => self.offer(&mut scheduler, c, &caps),
                    None => return,
                },
                Some((id, ok)) = done_rx.recv() => scheduler.dial_done(&id, ok, now()),
                _ = async { if let Some(l) = lookup.as_mut() { l.await } }, if lookup.is_some() => {
                    lookup = None;
                    let has_peers = lock(&self.inner.admission).peers().next().is_some();
                    pace.done(now(), scheduler.known(), has_peers);
                }
                _ = tick.tick() => {}
            }
            let (targets, free) = self.pick(&mut scheduler);
            let idle = scheduler.queued() == 0 && scheduler.in_flight() == 0;
            if free > 0 && idle && lookup.is_none() && now() >= pace.next {
                pace.known_before = scheduler.known();
                let d = discovery.clone();
                let boot = self.inner.config.bootnodes.clone();
                debug!("outbound slots free and nothing to dial: looking up more nodes");
                lookup = Some(Box::pin(async move { d.lookup_random(&boot).await }));
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
                                    id: target.id,
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
        if scheduler.add_candidate(target, now()) {
            let _ = self.inner.events.send(PeerEvent::Discovered {
                id: c.node.id,
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
        let targets = scheduler.next_dials(now(), free, |id| admission.owns(id), groups);
        (targets, free)
    }
}

impl Server {
    /// Discovery v4's packet counters (datagrams sent, received, dropped), while it runs.
    pub fn discv4_stats(&self) -> Option<Discv4Stats> {
        let discovery = lock(&self.inner.discovery);
        discovery.as_ref()?.v4.as_ref().map(|d| d.stats())
    }

    /// Discovery v5's counters (sessions, lookups, candidates), while it runs.
    pub fn discv5_stats(&self) -> Option<Discv5Stats> {
        let discovery = lock(&self.inner.discovery);
        discovery.as_ref()?.v5.as_ref().map(|d| d.stats())
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
