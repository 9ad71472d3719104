//! Small pieces that tests of braid nodes keep needing: reference protocols, fresh keys, a
//! loopback server configuration, and probes of this process's memory and descriptors.
//!
//! They are part of the library (not hidden behind a feature) because protocol authors'
//! own test suites need the same things, as do the examples' tests and the fuzz targets.
//!
//! ```
//! use p2p::testkit::{echo_protocol, loopback_config};
//! let cfg = loopback_config(vec![echo_protocol()]);
//! assert!(cfg.listen_addr.unwrap().ip().is_loopback());
//! ```

use std::time::Duration;

use secp256k1::SecretKey;

use crate::protocol::{InboundLimits, Protocol};
use crate::server::ServerConfig;

/// `echo/1` with two codes: a message on code 0 comes back unchanged on code 1; anything
/// else is read and dropped. Runs until the peer ends.
pub fn echo_protocol() -> Protocol {
    Protocol::new("echo", 1, 2, |_peer, mut rw| async move {
        loop {
            let m = rw.read().await?;
            if m.code == 0 {
                rw.write(1, &m.payload).await?;
            }
        }
    })
}

/// `slow/1` with two codes: reads one message per 100 ms, with an inbound queue of
/// `limits` — a protocol that falls behind, for testing backpressure and budgets.
pub fn slow_protocol(limits: InboundLimits) -> Protocol {
    Protocol::new("slow", 1, 2, |_peer, mut rw| async move {
        loop {
            rw.read().await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .with_inbound_limits(limits)
}

/// A fresh random node key.
pub fn random_key() -> SecretKey {
    SecretKey::new(&mut rand::thread_rng())
}

/// A server configuration with a fresh key, listening on 127.0.0.1 on a free port, running
/// `protocols`; everything else at its default.
pub fn loopback_config(protocols: Vec<Protocol>) -> ServerConfig {
    let mut cfg = ServerConfig::new(random_key(), Some(([127, 0, 0, 1], 0).into()));
    cfg.protocols = protocols;
    cfg
}

/// Probes of this process, read from `/proc` (Linux); `None` where that is unavailable.
pub mod process {
    /// Resident set size in bytes (`VmRSS`).
    pub fn rss_bytes() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(kb * 1024)
    }

    /// Number of open file descriptors.
    pub fn open_fds() -> Option<usize> {
        std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
    }

    /// The soft limit on open files.
    pub fn fd_soft_limit() -> Option<usize> {
        std::fs::read_to_string("/proc/self/limits")
            .ok()?
            .lines()
            .find(|l| l.starts_with("Max open files"))?
            .split_whitespace()
            .nth(3)?
            .parse()
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::process::*;

    #[test]
    fn probes_read_this_process() {
        if !std::path::Path::new("/proc/self/status").exists() {
            return; // not Linux
        }
        let before = open_fds().unwrap();
        let f = std::fs::File::open("/proc/self/status").unwrap();
        assert_eq!(open_fds().unwrap(), before + 1);
        drop(f);
        assert!(rss_bytes().unwrap() > 1024 * 1024);
        assert!(fd_soft_limit().unwrap() >= 64);
    }
}

/// An undirected graph of nodes: each node's set of neighbours.
pub type Graph = std::collections::HashMap<crate::NodeId, std::collections::HashSet<crate::NodeId>>;

/// The peer graph of running servers: one node per server, an edge for every peer a server
/// lists (both directions, so a link one side has not yet registered still counts).
pub fn peer_graph(servers: &[crate::Server]) -> Graph {
    let mut graph: Graph = servers
        .iter()
        .map(|s| (s.id(), Default::default()))
        .collect();
    for server in servers {
        for peer in server.peers() {
            graph.entry(server.id()).or_default().insert(peer.id());
            graph.entry(peer.id()).or_default().insert(server.id());
        }
    }
    graph
}

/// Whether every node of `graph` is reachable from any one (true for an empty graph).
pub fn is_connected(graph: &Graph) -> bool {
    let Some(start) = graph.keys().next() else {
        return true;
    };
    let mut seen = std::collections::HashSet::from([*start]);
    let mut queue = std::collections::VecDeque::from([*start]);
    while let Some(node) = queue.pop_front() {
        for next in graph.get(&node).into_iter().flatten() {
            if seen.insert(*next) {
                queue.push_back(*next);
            }
        }
    }
    seen.len() == graph.len()
}

#[cfg(test)]
mod graph_tests {
    use super::*;
    use crate::NodeId;

    #[test]
    fn connectivity_follows_the_edges() {
        let id = |b: u8| NodeId([b; 64]);
        let mut graph = Graph::new();
        graph.entry(id(1)).or_default().insert(id(2));
        graph.entry(id(2)).or_default().insert(id(1));
        graph.entry(id(3)).or_default();
        assert!(!is_connected(&graph), "node 3 has no edge");
        graph.entry(id(3)).or_default().insert(id(2));
        graph.entry(id(2)).or_default().insert(id(3));
        assert!(is_connected(&graph));
        assert!(is_connected(&Graph::new()));
    }
}
