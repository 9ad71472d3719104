//! Prometheus metrics for a node, and a minimal HTTP endpoint that serves them.
//!
//! Built on `prometheus-client` (the Prometheus project's own Rust client): typed metric
//! families with label sets, and a collector hook for values read at scrape time. Two
//! kinds of metric live here:
//! - events the server counts as they happen (dials and their failures, disconnects by
//!   reason and side, handshake latency), in `NodeMetrics`;
//! - state read when scraped (peers by direction, traffic per protocol and code, bytes
//!   held in inbound queues and the node-wide memory budget), from a `Snapshot` the
//!   server supplies, so nothing on the message path touches a metric.
//!
//! Served as the Prometheus text format, version 0.0.4, on `GET /metrics`: a node exposes
//! it through [`Server::metrics_text`](crate::Server::metrics_text) and
//! [`Server::serve_metrics`](crate::Server::serve_metrics).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::base::DisconnectReason;
use crate::peer::{Direction, ProtocolTraffic};

/// The `Content-Type` of what [`Server::metrics_text`](crate::Server::metrics_text) produces.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Longest a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read (a GET line and a few headers).
const MAX_REQUEST: usize = 8 * 1024;

/// Node state read at scrape time.
#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// Peers that dialed us.
    pub(crate) inbound_peers: usize,
    /// Peers we dialed.
    pub(crate) outbound_peers: usize,
    /// Traffic per protocol and code over every peer the node has run.
    pub(crate) traffic: Vec<ProtocolTraffic>,
    /// Bytes waiting in protocols' inbound queues, all peers.
    pub(crate) queued_bytes: usize,
    /// Bytes charged to the node-wide memory budget now.
    pub(crate) budget_used: usize,
    /// The node-wide memory budget.
    pub(crate) budget_limit: usize,
}

type SnapshotFn = dyn Fn() -> Option<Snapshot> + Send + Sync;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DisconnectLabels {
    reason: String,
    side: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TrafficLabels {
    protocol: String,
    code: String,
    direction: &'static str,
}

/// A node's metrics: the counters the server bumps, and the registry they are served from.
pub(crate) struct NodeMetrics {
    registry: Registry,
    dials: Counter,
    dial_failures: Family<ReasonLabels, Counter>,
    disconnects: Family<DisconnectLabels, Counter>,
    handshakes: Family<DirectionLabels, Histogram>,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics").finish_non_exhaustive()
    }
}

/// The collector that reads a [`Snapshot`] on every scrape.
struct StateCollector {
    snapshot: Arc<SnapshotFn>,
}

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateCollector")
    }
}

fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    }
}

/// A Prometheus-friendly name for a disconnect reason (`too_many_peers`).
pub(crate) fn reason_label(reason: DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::DisconnectRequested => "requested",
        DisconnectReason::TcpSubsystemError => "tcp_error",
        DisconnectReason::ProtocolBreach => "protocol_breach",
        DisconnectReason::UselessPeer => "useless_peer",
        DisconnectReason::TooManyPeers => "too_many_peers",
        DisconnectReason::AlreadyConnected => "already_connected",
        DisconnectReason::IncompatibleP2PVersion => "incompatible_version",
        DisconnectReason::NullNodeIdentity => "null_identity",
        DisconnectReason::ClientQuitting => "client_quitting",
        DisconnectReason::UnexpectedIdentity => "unexpected_identity",
        DisconnectReason::ConnectedToSelf => "connected_to_self",
        DisconnectReason::PingTimeout => "ping_timeout",
        DisconnectReason::SubprotocolError => "subprotocol_error",
    }
}

impl prometheus_client::collector::Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // The node is gone (only scrapes racing its shutdown see this): report nothing.
        let Some(s) = (self.snapshot)() else {
            return Ok(());
        };
        let peers = [
            (Direction::Inbound, s.inbound_peers),
            (Direction::Outbound, s.outbound_peers),
        ];
        let mut family = encoder.encode_descriptor(
            "braid_peers",
            "Peers connected now, by who dialed",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (dir, n) in peers {
            let labels = DirectionLabels {
                direction: direction_name(dir),
            };
            ConstGauge::new(n as i64).encode(family.encode_family(&labels)?)?;
        }
        let gauges = [
            (
                "braid_inbound_queued_bytes",
                "Bytes waiting in protocols' inbound queues, all peers",
                s.queued_bytes,
            ),
            (
                "braid_memory_budget_used_bytes",
                "Bytes charged to the node-wide memory budget (queues and read buffers)",
                s.budget_used,
            ),
            (
                "braid_memory_budget_limit_bytes",
                "The node-wide memory budget",
                s.budget_limit,
            ),
        ];
        for (name, help, value) in gauges {
            let metric = ConstGauge::new(value as i64);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        for (name, help, pick) in [
            (
                "braid_protocol_messages",
                "Messages per protocol and code (relative to the protocol), both directions",
                true,
            ),
            (
                "braid_protocol_bytes",
                "Bytes on the wire per protocol and code, both directions",
                false,
            ),
        ] {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for proto in &s.traffic {
                let protocol = format!("{}/{}", proto.name, proto.version);
                for code in &proto.per_code {
                    for (direction, stats) in [("in", &code.ingress), ("out", &code.egress)] {
                        let value = if pick { stats.messages } else { stats.bytes };
                        if value == 0 {
                            continue;
                        }
                        let labels = TrafficLabels {
                            protocol: protocol.clone(),
                            code: code.code.to_string(),
                            direction,
                        };
                        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl NodeMetrics {
    /// Metrics whose state part is read from `snapshot` on every scrape; `snapshot`
    /// returns `None` once the node has gone.
    pub(crate) fn new(
        snapshot: impl Fn() -> Option<Snapshot> + Send + Sync + 'static,
    ) -> NodeMetrics {
        let mut registry = Registry::default();
        let dials = Counter::default();
        registry.register("braid_dials", "Outbound connection attempts", dials.clone());
        let dial_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "braid_dial_failures",
            "Outbound attempts that did not become a peer, by reason",
            dial_failures.clone(),
        );
        let disconnects = Family::<DisconnectLabels, Counter>::default();
        registry.register(
            "braid_disconnects",
            "Peers that ended, by disconnect reason and by which side ended them",
            disconnects.clone(),
        );
        let handshakes = Family::<DirectionLabels, Histogram>::new_with_constructor(|| {
            // 1 ms .. ~4 s: loopback handshakes take a few ms, a far peer hundreds.
            Histogram::new([
                0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
            ])
        });
        registry.register(
            "braid_handshake_seconds",
            "Time from TCP connect (or accept) to a running peer: ECIES, Hello, admission",
            handshakes.clone(),
        );
        registry.register_collector(Box::new(StateCollector {
            snapshot: Arc::new(snapshot),
        }));
        NodeMetrics {
            registry,
            dials,
            dial_failures,
            disconnects,
            handshakes,
        }
    }

    /// One outbound attempt started.
    pub(crate) fn dial_started(&self) {
        self.dials.inc();
    }

    /// An outbound attempt failed, `reason` a short label such as `connect` or
    /// `too_many_peers`.
    pub(crate) fn dial_failed(&self, reason: &str) {
        self.dial_failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// A peer ended with `reason`, sent by the remote or by us.
    pub(crate) fn peer_ended(&self, reason: DisconnectReason, remote: bool) {
        self.disconnects
            .get_or_create(&DisconnectLabels {
                reason: reason_label(reason).to_string(),
                side: if remote { "remote" } else { "local" },
            })
            .inc();
    }

    /// A connection became a running peer after `took`.
    pub(crate) fn handshake_done(&self, direction: Direction, took: Duration) {
        self.handshakes
            .get_or_create(&DirectionLabels {
                direction: direction_name(direction),
            })
            .observe(took.as_secs_f64());
    }

    /// Everything, in the Prometheus text format (version 0.0.4).
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            // Only a bug in an encoder can get here; say so in the output itself.
            let _ = writeln!(out, "# encoding failed: {e}");
        }
        out
    }
}

/// Serves `GET /metrics` from `metrics` on `addr` until `stop`; returns the bound address.
/// One request per connection, each bounded in size and time; anything else gets 404.
pub(crate) async fn serve(
    addr: SocketAddr,
    metrics: Arc<dyn Fn() -> String + Send + Sync>,
    stop: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let (mut stream, peer) = tokio::select! {
                _ = stop.cancelled() => return,
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        warn!(error = %e, "metrics accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut head = Vec::with_capacity(512);
                let mut buf = [0u8; 1024];
                let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return false,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    true
                })
                .await;
                if !matches!(read, Ok(true)) {
                    debug!(%peer, "metrics request incomplete");
                    return;
                }
                let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
                let ok = line.starts_with(b"GET /metrics ") || line == b"GET /metrics";
                let (status, body, kind) = if ok {
                    ("200 OK", metrics(), CONTENT_TYPE)
                } else {
                    (
                        "404 Not Found",
                        "not found: try /metrics\n".to_string(),
                        "text/plain",
                    )
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ =
                    tokio::time::timeout(REQUEST_TIMEOUT, stream.write_all(response.as_bytes()))
                        .await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_labels_are_snake_case() {
        assert_eq!(
            reason_label(DisconnectReason::TooManyPeers),
            "too_many_peers"
        );
        assert_eq!(
            reason_label(DisconnectReason::IncompatibleP2PVersion),
            "incompatible_version"
        );
    }

    #[test]
    fn counters_and_snapshot_appear_in_the_text() {
        let m = NodeMetrics::new(|| {
            Some(Snapshot {
                inbound_peers: 2,
                outbound_peers: 1,
                budget_limit: 1024,
                budget_used: 10,
                ..Snapshot::default()
            })
        });
        m.dial_started();
        m.dial_failed("connect");
        m.peer_ended(DisconnectReason::PingTimeout, true);
        m.handshake_done(Direction::Inbound, Duration::from_millis(3));
        let text = m.encode();
        for line in [
            "braid_dials_total 1",
            "braid_dial_failures_total{reason=\"connect\"} 1",
            "braid_disconnects_total{reason=\"ping_timeout\",side=\"remote\"} 1",
            "braid_handshake_seconds_count{direction=\"inbound\"} 1",
            "braid_peers{direction=\"inbound\"} 2",
            "braid_peers{direction=\"outbound\"} 1",
            "braid_memory_budget_limit_bytes 1024",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
