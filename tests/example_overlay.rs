//! `examples/overlay.rs` (the kv/1 store) run as real processes on loopback: the demo, a
//! put on one process readable via get (local replica) and ask (GET over the wire) on
//! another, and three processes linking up through discovery from one bootnode.

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

/// Two overlay processes given only a bootnode discover each other and link directly;
/// a put on one replicates to both others.
#[tokio::test]
async fn nodes_given_one_bootnode_find_each_other() {
    let mut a = Example::spawn("overlay", &["--listen", "127.0.0.1:0"]);
    let a_enode = a.enode().await;
    let boot = format!("--bootnodes={a_enode}");
    let mut b = Example::spawn("overlay", &["--listen", "127.0.0.2:0", &boot]);
    let b_id = b.enode().await["enode://".len()..][..8].to_string();
    let mut c = Example::spawn("overlay", &["--listen", "127.0.0.3:0", &boot]);
    let c_id = c.enode().await["enode://".len()..][..8].to_string();
    // The event line names the peer by its id's first 8 hex characters.
    b.expect_line(&format!("event: peer {c_id} added"), WAIT)
        .await;
    c.expect_line(&format!("event: peer {b_id} added"), WAIT)
        .await;

    c.send_line("put color red").await;
    c.expect_line("ok color = red (v1)", WAIT).await;
    poll(&mut b, "get color", "color = red (v1)").await;
    poll(&mut a, "get color", "color = red (v1)").await;
    for mut node in [a, b, c] {
        node.send_line("quit").await;
        let (status, out, err) = node.wait(WAIT).await;
        assert!(status.success(), "{status}\n{}\n{err}", out.join("\n"));
    }
}

/// A hostile kv/1 writer (a braid node in this test process) floods a running overlay:
/// more new keys than one peer may introduce, a `u64::MAX` version meant to lock a key,
/// and a version far past the stored one. None of it sticks, and a local put still wins.
#[tokio::test]
async fn hostile_writer_cannot_exceed_the_caps() {
    use p2p::protocol::Protocol;
    use p2p::server::{Server, ServerConfig};
    use rlp::RlpStream;

    /// Must match examples/overlay.rs.
    const MAX_KEYS_PER_PEER: usize = 1000;
    const PUT: u64 = 0;
    const GET: u64 = 1;
    const GET_REPLY: u64 = 2;
    fn put(key: &str, value: &str, version: u64) -> Vec<u8> {
        let mut s = RlpStream::new_list(3);
        s.append(&key).append(&value).append(&version);
        s.out().to_vec()
    }

    let mut a = Example::spawn("overlay", &[]);
    let a_enode: p2p::node::Enode = a.enode().await.parse().unwrap();

    // Every message on one connection is handled in order, so once the last one (an
    // update to k0) shows up, every earlier one has been judged.
    let mut flood: Vec<Vec<u8>> = (0..MAX_KEYS_PER_PEER + 100)
        .map(|i| put(&format!("k{i}"), "x", 1))
        .collect();
    flood.push(put("locked", "mine forever", u64::MAX));
    flood.push(put("k1", "jumped", 5_000_000));
    flood.push(put("k0", "done", 2));
    let hostile = Protocol::new("kv", 1, 5, move |_peer, mut rw| {
        let flood = flood.clone();
        async move {
            let writer = rw.writer();
            // A GET round trip after every batch keeps what is in flight well under the
            // overlay's inbound queue, so the caps are what is tested, not the queue.
            for (n, batch) in flood.chunks(250).enumerate() {
                for payload in batch {
                    writer.write(PUT, payload).await?;
                }
                let mut get = RlpStream::new_list(2);
                get.append(&(n as u64)).append(&"k0");
                writer.write(GET, &get.out()).await?;
                while rw.read().await?.code != GET_REPLY {}
            }
            // Stay connected (and drain what a sends) until the test shuts us down.
            loop {
                rw.read().await?;
            }
        }
    });
    let key = secp256k1::SecretKey::new(&mut rand::thread_rng());
    let server = Server::start(ServerConfig {
        protocols: vec![hostile],
        ..ServerConfig::new(key, None)
    })
    .await
    .unwrap();
    server.dial(&a_enode).await.expect("dial the overlay");

    poll(&mut a, "get k0", "k0 = done (v2)").await;
    poll(&mut a, "get k999", "k999 = x (v1)").await;
    for absent in ["k1000", "k1099", "locked"] {
        poll(
            &mut a,
            &format!("get {absent}"),
            &format!("{absent}: not found"),
        )
        .await;
    }
    poll(&mut a, "get k1", "k1 = x (v1)").await;
    // The key the writer tried to lock is still free for a local write.
    a.send_line("put locked ours").await;
    a.expect_line("ok locked = ours (v1)", WAIT).await;

    server.shutdown().await;
    a.send_line("quit").await;
    let (status, out, err) = a.wait(WAIT).await;
    assert!(status.success(), "{status}\n{}\n{err}", out.join("\n"));
}
