//! `examples/overlay.rs` (the kv/1 store) run as real processes on loopback: the demo, and
//! a put on one process readable via get (local replica) and ask (GET over the wire) on
//! another.

#[path = "support/example.rs"]
mod example;

use std::time::Duration;

use example::Example;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn demo_replicates_and_serves_gets() {
    let (status, out, err) = Example::spawn("overlay", &["--demo"]).wait(WAIT).await;
    let out = out.join("\n");
    assert!(status.success(), "demo failed: {status}\n{out}\n{err}");
    for line in [
        "[B] synced from A on connect: color = blue (v1)",
        "[C] dialed B and synced: color = blue (v1)",
        "[A] replica, two hops from C: answer = 42 (v1)",
        "[A] asks B over the wire (GET/GET_REPLY): answer = 42 (v1)",
        "[A] asks B for a key nobody has: nothing: not found",
        "[B] node-info hook: {\"kv/1\":{\"keys\":2}}",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    let peer_infos = out.matches("peer-info hook for").count();
    assert_eq!(peer_infos, 2, "{out}");
}

/// Type `cmd` until a line containing `want` comes back (replication is asynchronous).
async fn poll(node: &mut Example, cmd: &str, want: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        node.send_line(cmd).await;
        let line = node.next_line(WAIT).await.expect("an answer");
        if line.contains(want) {
            return line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{cmd:?} never gave {want:?}; output:\n{}",
            node.seen.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn put_on_one_process_is_readable_on_another() {
    let mut a = Example::spawn("overlay", &[]);
    let a_enode = a.enode().await;
    let mut b = Example::spawn("overlay", &["--dial", &a_enode]);
    b.enode().await;
    a.expect_line("event: peer", WAIT).await;

    // Before the put, b has nothing.
    poll(&mut b, "get color", "color: not found").await;
    a.send_line("put color blue").await;
    a.expect_line("ok color = blue (v1)", WAIT).await;
    poll(&mut b, "get color", "color = blue (v1)").await;

    // A second write wins on every replica; b also reads it from a over the wire.
    b.send_line("put color green").await;
    b.expect_line("ok color = green (v2)", WAIT).await;
    poll(&mut a, "get color", "color = green (v2)").await;
    let asked = poll(&mut a, "ask color", "color = green (v2)").await;
    assert!(asked.contains(": color"), "{asked}");

    for node in [a, b] {
        let mut node = node;
        node.send_line("quit").await;
        let (status, out, err) = node.wait(WAIT).await;
        assert!(status.success(), "{status}\n{}\n{err}", out.join("\n"));
    }
}
