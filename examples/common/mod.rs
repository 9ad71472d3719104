//! Small helpers the examples share: logging to stderr, one-line fatal errors, the key
//! and discovery flags, and a human-readable peer table. Not an example in itself.

// Each example compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::process::ExitCode;

use p2p::discover::v4::Bootnode;
use p2p::node::{Enode, EnodeError, NodeKey, NodeKeyError};
use p2p::peer::Direction;
use p2p::server::{Discovery, Server, ServerConfig};
use tokio::sync::mpsc;

/// Typed lines waiting for the program; the reader thread blocks beyond this.
const INPUT_QUEUE: usize = 64;

/// Logs (tracing) go to stderr so stdout stays the program's own output, and only when
/// `RUST_LOG` is set (e.g. `RUST_LOG=p2p=debug`): without it a failing run prints its one
/// `error:` line and nothing else.
pub fn init_logging() {
    use std::io::IsTerminal;
    let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() else {
        return;
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Bad command line: `--help`/`--version` print as usual; anything else becomes the one
/// `error: ...` line clap puts first (its usage hints would only bury it), exit code 2.
pub fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let text = e.to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("bad arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("error: {first}");
    ExitCode::from(2)
}

/// A fatal error: exactly one line on stderr and exit code 1 (no panic, no backtrace).
pub fn fatal(e: impl std::fmt::Display) -> ExitCode {
    let text = e.to_string();
    eprintln!("error: {}", text.lines().collect::<Vec<_>>().join("; "));
    ExitCode::FAILURE
}

/// What `--key` warns on stderr once the key has parsed.
pub const KEY_FLAG_WARNING: &str = "warning: --key puts the node key in the process list \
    (ps, /proc/<pid>/cmdline) and shell history; prefer --nodekey FILE";

/// The node key from `--key HEX`, or `--nodekey FILE` (created if missing), or a fresh one.
/// `--key` works but warns: anyone on the machine can read a command line.
pub fn node_key(
    key_hex: Option<&str>,
    key_file: Option<&std::path::Path>,
) -> Result<NodeKey, NodeKeyError> {
    match (key_hex, key_file) {
        (Some(hex), _) => {
            let key = NodeKey::from_hex(hex.trim())?;
            // After parsing, so a bad key still fails with its one `error:` line.
            eprintln!("{KEY_FLAG_WARNING}");
            Ok(key)
        }
        (None, Some(path)) => NodeKey::load_or_create(path),
        (None, None) => Ok(NodeKey::generate()),
    }
}

/// An enode to dial, for `--dial` (clap's `value_parser`) and the `dial` commands:
/// parsed and checked dialable (no port 0, no unspecified or multicast address).
pub fn dialable_enode(text: &str) -> Result<Enode, EnodeError> {
    Enode::parse_dialable(text.trim())
}

/// The node-discovery and NAT flags of the chat and overlay examples.
///
/// Discovery (v4, UDP) runs by default, as in go-ethereum: a node started without
/// `--bootnodes` still answers discovery, so it can be the bootnode others start from, and
/// one started with `--bootnodes` finds the rest of the network through them. The dial
/// scheduler then fills the outbound slots with discovered nodes whose record lists one of
/// our protocols. `--no-discovery` leaves only `--dial` and inbound connections.
#[derive(clap::Args, Debug, Clone)]
pub struct DiscoveryArgs {
    /// Nodes to start discovery from: enode URLs or `enr:` records, comma-separated
    /// (repeatable).
    #[arg(long, value_name = "ENODE_OR_ENR", value_delimiter = ',', value_parser = bootnode)]
    pub bootnodes: Vec<Bootnode>,
    /// Run no node discovery: peers come only from --dial and from nodes that dial us.
    #[arg(long, conflicts_with_all = ["bootnodes", "udp_port", "discovery"])]
    pub no_discovery: bool,
    /// Which discovery protocol: v4, v5 (needs `enr:` bootnodes) or both (v5 on the v4
    /// UDP port + 1).
    #[arg(long, value_enum, default_value = "v4")]
    pub discovery: DiscoveryVersion,
    /// UDP port for discovery, on the listen address's IP (default: the TCP port; 0 picks
    /// a free one).
    #[arg(long, value_name = "PORT")]
    pub udp_port: Option<u16>,
    /// NAT traversal: none, extip:IP (ports forwarded by hand), upnp, pmp[:GATEWAY] or
    /// any (UPnP, then NAT-PMP). The enode printed at start carries the external address.
    #[arg(long, value_name = "METHOD", default_value = "none")]
    pub nat: p2p::nat::Nat,
}

/// `--discovery`: the protocol versions a node runs.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
#[value(rename_all = "lowercase")]
pub enum DiscoveryVersion {
    /// Discovery v4 (devp2p's UDP protocol).
    V4,
    /// Discovery v5 (sigp's `discv5`).
    V5,
    /// Both, feeding one dial scheduler.
    Both,
}

impl DiscoveryVersion {
    /// The flag's spelling.
    pub fn name(self) -> &'static str {
        match self {
            DiscoveryVersion::V4 => "v4",
            DiscoveryVersion::V5 => "v5",
            DiscoveryVersion::Both => "both",
        }
    }
}

impl DiscoveryArgs {
    /// Put the flags into a server configuration.
    pub fn apply(&self, config: &mut ServerConfig) {
        config.nat = self.nat;
        if self.no_discovery {
            config.discovery = Discovery::Off;
            return;
        }
        config.discovery = match self.discovery {
            DiscoveryVersion::V4 => Discovery::V4,
            DiscoveryVersion::V5 => Discovery::V5,
            DiscoveryVersion::Both => Discovery::Both,
        };
        config.bootnodes = self.bootnodes.clone();
        config.udp_port = self.udp_port;
        // Peers that do not speak our protocol would be dropped as useless right after
        // the handshake: skip them before dialing.
        config.dial_only_shared_caps = true;
    }

    /// One line saying how the node finds peers, printed at start.
    pub fn describe(&self, server: &Server) -> String {
        match server.enode() {
            Some(enode) if !self.no_discovery => {
                let mut line = format!(
                    "discovery: {} on udp {}:{}, {} bootnode(s)",
                    self.discovery.name(),
                    enode.ip,
                    enode.udp_port,
                    self.bootnodes.len()
                );
                // discv5 starts only from signed records: print ours for the next node.
                if self.discovery != DiscoveryVersion::V4 {
                    if let Some(record) = server.node_record() {
                        line.push_str(&format!("; record: {record}"));
                    }
                }
                line
            }
            _ => "discovery: off".into(),
        }
    }
}

/// A bootnode for `--bootnodes` (clap's `value_parser`): an enode URL or an `enr:` record
/// with a discovery endpoint that can be sent to (a unicast IP and a UDP port).
pub fn bootnode(text: &str) -> Result<Bootnode, String> {
    let bootnode: Bootnode = text.trim().parse().map_err(|e| format!("{e}"))?;
    let node = bootnode.node().map_err(|e| format!("{e}"))?;
    let ip = node.endpoint.ip;
    let broadcast = matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_unspecified() || ip.is_multicast() || broadcast {
        return Err(format!("bootnode address {ip} cannot be sent to"));
    }
    if node.endpoint.udp_port == 0 {
        return Err("bootnode has UDP port 0".into());
    }
    Ok(bootnode)
}

/// `--metrics ADDR`: serve the node's Prometheus metrics there and say where.
pub async fn serve_metrics(
    server: &Server,
    addr: Option<std::net::SocketAddr>,
) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(addr) = addr {
        let bound = server
            .serve_metrics(addr)
            .await
            .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
        println!("metrics: http://{bound}/metrics");
    }
    Ok(())
}

/// Text from the network may hold terminal escapes: show control characters as `�`.
pub fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// `1234` -> `1.2 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A table of the server's peers: id prefix, address, direction, client, protocols, and
/// traffic in and out (messages and bytes on the wire, all protocols including p2p).
pub fn peer_table(server: &Server) -> String {
    let mut peers = server.peers();
    peers.sort_by_key(|p| p.id().0);
    let mut rows = vec![[
        "ID".to_string(),
        "ADDRESS".into(),
        "DIR".into(),
        "CLIENT".into(),
        "PROTOCOLS".into(),
        "IN".into(),
        "OUT".into(),
    ]];
    for peer in &peers {
        let (mut in_msgs, mut in_bytes, mut out_msgs, mut out_bytes) = (0, 0, 0, 0);
        for t in peer.traffic() {
            in_msgs += t.ingress.messages;
            in_bytes += t.ingress.bytes;
            out_msgs += t.egress.messages;
            out_bytes += t.egress.bytes;
        }
        let protocols: Vec<String> = peer
            .protocols()
            .iter()
            .map(|c| format!("{}/{}", c.name, c.version))
            .collect();
        rows.push([
            peer.id().short(),
            peer.remote_addr()
                .map_or_else(|| "-".into(), |a| a.to_string()),
            match peer.direction() {
                Direction::Inbound => "in".into(),
                Direction::Outbound => "out".into(),
            },
            printable(peer.client_id()),
            protocols.join(","),
            format!("{in_msgs} msg {}", human_bytes(in_bytes)),
            format!("{out_msgs} msg {}", human_bytes(out_bytes)),
        ]);
    }
    if peers.is_empty() {
        return "(no peers)".into();
    }
    let widths: Vec<usize> = (0..7)
        .map(|col| {
            rows.iter()
                .map(|r| r[col].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", cells.join("  ").trim_end());
    }
    out.trim_end().to_string()
}

/// Lines from stdin, read on a plain thread: tokio's stdin would hold up exit while it
/// waits for a line. The channel closes at end of input.
pub fn stdin_lines() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A positive duration from the command line: a whole number with an optional unit,
/// `ms`, `s` (the default) or `m`, e.g. `250ms`, `10s`, `10`, `2m`. For clap's
/// `value_parser`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 250ms, 10s or 2m"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => return Err(format!("unknown unit {unit:?} (use ms, s or m)")),
    };
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}
