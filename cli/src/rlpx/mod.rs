//! `braid rlpx ping|test`: talk RLPx to any node.

pub mod link;
pub mod suite;

use std::time::Duration;

use p2p::base::DisconnectReason;
use p2p::node::{Enode, NodeKey};
use serde_json::json;

use crate::output::{printable, table, Out, Tone};
use link::{AuthStyle, HelloSpec, Link, LinkError};
use suite::{SuiteConfig, Verdict};

/// Handshake, Hello, one p2p ping, then Disconnect 0x08.
///
/// Hellos cross on the wire, so ours cannot be shaped by theirs on the same link: a first
/// link learns the remote's capabilities, and the second offers them back, so the remote
/// keeps the link up (instead of answering "useless peer") long enough for the ping.
pub async fn ping(
    target: &Enode,
    legacy: bool,
    timeout: Duration,
    out: Out,
) -> Result<(), LinkError> {
    let style = if legacy {
        AuthStyle::Legacy
    } else {
        AuthStyle::Eip8
    };
    out.progress(&format!("handshake with {}", target.socket_addr()));
    let mut probe = Link::connect(target, NodeKey::generate().secret(), style, timeout).await?;
    let first = probe.hello(&HelloSpec::v5(&[]), timeout).await?;
    probe.bye(DisconnectReason::ClientQuitting).await;
    let caps: Vec<(String, u32)> = first
        .capabilities
        .iter()
        .map(|c| (c.name.clone(), c.version))
        .collect();
    let mut link = Link::connect(target, NodeKey::generate().secret(), style, timeout).await?;
    let theirs = link.hello(&HelloSpec::v5(&caps), timeout).await?;
    let rtt = link.ping(timeout).await;
    out.done_progress();
    link.bye(DisconnectReason::ClientQuitting).await;
    let caps: Vec<String> = theirs.capabilities.iter().map(|c| c.to_string()).collect();
    let id_ok = theirs.node_id().is_ok_and(|id| id == target.id);
    let rtt_text = match &rtt {
        Ok(d) => format!("{:.2} ms", d.as_secs_f64() * 1e3),
        Err(e) => format!("no pong ({e})"),
    };
    if out.json {
        out.json_line(&json!({
            "enode": target.to_string(),
            "client_id": theirs.client_id,
            "p2p_version": theirs.protocol_version,
            "capabilities": caps,
            "listen_port": theirs.listen_port,
            "id_matches": id_ok,
            "handshake": if legacy { "legacy" } else { "eip8" },
            "ping_rtt_ms": rtt.as_ref().ok().map(|d| d.as_secs_f64() * 1e3),
        }));
    } else {
        let rows = vec![
            vec!["client".to_string(), printable(&theirs.client_id)],
            vec!["p2p version".into(), theirs.protocol_version.to_string()],
            vec!["capabilities".into(), printable(&caps.join(", "))],
            vec!["listen port".into(), theirs.listen_port.to_string()],
            vec![
                "identity".into(),
                if id_ok {
                    "matches the enode".into()
                } else {
                    "DIFFERS from the enode".into()
                },
            ],
            vec![
                "handshake".into(),
                if legacy {
                    "legacy (pre-EIP-8)".into()
                } else {
                    "EIP-8".into()
                },
            ],
            vec!["ping".into(), rtt_text],
        ];
        print!("{}", table(&rows, |_, _, s| s.to_string()));
    }
    rtt.map(|_| ())
}

/// Runs the conformance suite; returns how many cases failed.
pub async fn test(
    target: &Enode,
    pattern: Option<&str>,
    step_timeout: Duration,
    idle_wait: Duration,
    out: Out,
) -> Result<usize, LinkError> {
    let cfg = SuiteConfig {
        target: *target,
        step_timeout,
        idle_wait,
    };
    let results = suite::run(
        cfg,
        pattern,
        |case| out.progress(&format!("{} — {}", case.name, case.about)),
        |r| {
            out.done_progress();
            if out.json {
                out.json_line(&serde_json::to_value(r).unwrap_or_default());
            }
        },
    )
    .await?;
    let failed = results
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .count();
    if !out.json {
        let mut rows = vec![vec![
            "TEST".to_string(),
            "RESULT".into(),
            "TIME".into(),
            "SEEN".into(),
        ]];
        for r in &results {
            let verdict = match r.verdict {
                Verdict::Pass => "pass",
                Verdict::Fail => "FAIL",
                Verdict::Skip => "skip",
            };
            rows.push(vec![
                r.name.to_string(),
                verdict.into(),
                format!("{} ms", r.millis),
                printable(&r.detail),
            ]);
        }
        print!(
            "{}",
            table(&rows, |row, col, s| match (row, col) {
                (0, _) | (_, 0) | (_, 2) | (_, 3) => s.to_string(),
                _ => out.paint(
                    s,
                    match s {
                        "pass" => Tone::Good,
                        "FAIL" => Tone::Bad,
                        _ => Tone::Meh,
                    }
                ),
            })
        );
        let passed = results
            .iter()
            .filter(|r| r.verdict == Verdict::Pass)
            .count();
        let skipped = results.len() - passed - failed;
        println!("{passed} passed, {failed} failed, {skipped} skipped");
    }
    Ok(failed)
}
