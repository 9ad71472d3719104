//! What an operator sees: the Prometheus endpoint, fetched with `curl` and read by
//! Prometheus's own text-format parser, and the per-peer / per-protocol tracing spans on a
//! log line written from inside a protocol's `run`.

#[path = "support/example.rs"]
mod example;
#[path = "support/verystable.rs"]
mod verystable;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2p::base::DisconnectReason;
use p2p::node::{Enode, NodeKey};
use p2p::protocol::Protocol;
use p2p::server::{Server, ServerConfig};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

/// A protocol that sends one message, reads one, logs a line, then stays up.
fn greet() -> Protocol {
    Protocol::new("greet", 1, 2, |_peer, mut rw| async move {
        rw.write(1, &rlp::encode(&"hello")).await?;
        let msg = rw.read().await?;
        tracing::info!(code = msg.code, "greeting read inside run");
        std::future::pending::<()>().await;
        Ok(())
    })
}

async fn node(listen: bool) -> Server {
    let listen = listen.then(|| "127.0.0.1:0".parse().unwrap());
    Server::start(ServerConfig {
        protocols: vec![greet()],
        ..ServerConfig::new(NodeKey::generate(), listen)
    })
    .await
    .unwrap()
}

/// `curl -sS URL`, with its exit status and body.
fn curl(url: &str) -> (bool, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl is installed (.ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), text)
}

/// Parses Prometheus text with `prometheus_client.parser` (the reference Python client) and
/// returns every sample as `name{labels}` → value.
fn parse_with_prometheus(python: &std::path::Path, text: &str) -> BTreeMap<String, f64> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    let mut child = Command::new(python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser rejected the output: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: BTreeMap<String, Value> = serde_json::from_slice(&out.stdout).unwrap();
    parsed
        .into_iter()
        .map(|(k, v)| (k, v.as_f64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_serves_valid_prometheus_text() {
    let Some(python) = tokio::task::spawn_blocking(verystable::ensure_installed)
        .await
        .unwrap()
    else {
        eprintln!(
            "!!! SKIPPING the metrics endpoint test: python unavailable (set CI to make this fail)"
        );
        return;
    };
    let hub = node(true).await;
    let endpoint = hub
        .serve_metrics("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let a = node(false).await;
    let b = node(false).await;
    a.dial(&hub.enode().unwrap()).await.unwrap();
    b.dial(&hub.enode().unwrap()).await.unwrap();
    // The hub dials out too: once to a node that is not there (a failed dial), once to a
    // listening node (an outbound peer).
    let gone = Enode::new(NodeKey::generate().id(), "127.0.0.1:1".parse().unwrap());
    assert!(hub.dial(&gone).await.is_err());
    let c = node(true).await;
    hub.dial(&c.enode().unwrap()).await.unwrap();
    // Every greeting read, then b leaves with "client quitting".
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.peers()[0].disconnect(DisconnectReason::ClientQuitting);
    let deadline = tokio::time::Instant::now() + WAIT;
    while hub.peer_count() != 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(hub.peer_count(), 2);

    let url = format!("http://{endpoint}/metrics");
    let (ok, body) = tokio::task::spawn_blocking(move || curl(&url))
        .await
        .unwrap();
    assert!(ok, "curl failed: {body}");
    let (text, status) = body.rsplit_once('\n').unwrap();
    assert_eq!(status, "200");
    let samples = parse_with_prometheus(&python, text);
    let get = |key: &str| {
        *samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in {samples:#?}"))
    };
    assert_eq!(get(r#"braid_peers{direction="inbound"}"#), 1.0);
    assert_eq!(get(r#"braid_peers{direction="outbound"}"#), 1.0);
    assert_eq!(get("braid_dials_total{}"), 2.0);
    assert_eq!(get(r#"braid_dial_failures_total{reason="connect"}"#), 1.0);
    assert_eq!(
        get(r#"braid_disconnects_total{reason="client_quitting",side="remote"}"#),
        1.0
    );
    assert_eq!(
        get(r#"braid_handshake_seconds_count{direction="inbound"}"#),
        2.0
    );
    assert_eq!(
        get(r#"braid_handshake_seconds_count{direction="outbound"}"#),
        1.0
    );
    // Three greetings in (one per peer), three out, on greet/1 code 1.
    assert_eq!(
        get(r#"braid_protocol_messages_total{code="1",direction="in",protocol="greet/1"}"#),
        3.0
    );
    assert_eq!(
        get(r#"braid_protocol_messages_total{code="1",direction="out",protocol="greet/1"}"#),
        3.0
    );
    assert!(get(r#"braid_protocol_bytes_total{code="1",direction="in",protocol="greet/1"}"#) > 0.0);
    assert_eq!(
        get("braid_memory_budget_limit_bytes{}"),
        ServerConfig::new(*NodeKey::generate().secret(), None).memory_budget_bytes as f64
    );
    assert!(samples.contains_key("braid_inbound_queued_bytes{}"));
    assert!(samples.contains_key("braid_memory_budget_used_bytes{}"));

    let url = format!("http://{endpoint}/other");
    let (_, body) = tokio::task::spawn_blocking(move || curl(&url))
        .await
        .unwrap();
    assert!(body.ends_with("\n404"), "{body}");

    for n in [a, b, c, hub] {
        n.shutdown().await;
    }
}

/// Collects everything the fmt subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_log_lines_carry_peer_and_protocol_spans() {
    let captured = Captured::default();
    // Peer and protocol tasks run on the runtime's worker threads, so the subscriber is
    // the binary's global one; no other test here installs one.
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .expect("no other subscriber in this test binary");
    let a = node(true).await;
    let b = node(false).await;
    b.dial(&a.enode().unwrap()).await.unwrap();
    let short = |s: &Server| hex::encode(&s.id().as_bytes()[..8]);
    let deadline = tokio::time::Instant::now() + WAIT;
    let wanted = [
        // a's protocol, on the peer b (which dialed a).
        format!(
            "peer{{id={} dir=Inbound}}:protocol{{name=greet version=1}}",
            short(&b)
        ),
        // b's protocol, on the peer a.
        format!(
            "peer{{id={} dir=Outbound}}:protocol{{name=greet version=1}}",
            short(&a)
        ),
    ];
    loop {
        let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
        let found = wanted.iter().all(|span| {
            text.lines().any(|l| {
                l.contains(span.as_str())
                    && l.contains("greeting read inside run")
                    && l.contains("code=1")
            })
        });
        if found {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no line with {wanted:?} in:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_example_serves_metrics_with_its_peer() {
    let mut chat = example::Example::spawn("chat", &["--metrics", "127.0.0.1:0", "--nick", "m"]);
    let enode: Enode = chat.enode().await.parse().unwrap();
    let line = chat.expect_line("metrics: http://", WAIT).await;
    let url = line.trim().trim_start_matches("metrics: ").to_string();
    let other = node(false).await;
    // `other` does not speak chat/1: the chat node answers "useless peer".
    assert!(other.dial(&enode).await.is_err());
    let (ok, body) = tokio::task::spawn_blocking(move || curl(&url))
        .await
        .unwrap();
    assert!(ok, "curl failed: {body}");
    assert!(body.ends_with("\n200"), "{body}");
    assert!(body.contains("# TYPE braid_peers gauge"), "{body}");
    chat.send_line("/quit").await;
    let (status, _, err) = chat.wait(WAIT).await;
    assert!(status.success(), "{err}");
    other.shutdown().await;
}
