//! Bad input at the examples' command lines: one `error: ...` line on stderr, a non-zero
//! exit, no panic, no backtrace, and nothing started.

#[path = "support/example.rs"]
mod example;

use std::time::Duration;

use example::Example;

const WAIT: Duration = Duration::from_secs(20);

/// Run `name args` with no input and check it fails with exactly one `error:` line that
/// contains `expect`.
async fn fails_with(name: &str, args: &[&str], expect: &str) {
    let (status, out, err) = Example::spawn(name, args).wait(WAIT).await;
    assert!(
        !status.success(),
        "{name} {args:?} succeeded; stdout: {out:?}"
    );
    assert!(
        status.code().is_some(),
        "{name} {args:?} died by signal: {status}"
    );
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{name} {args:?}: stderr is not one line: {err:?}"
    );
    assert!(lines[0].starts_with("error: "), "{:?}", lines[0]);
    assert!(lines[0].contains(expect), "{:?} lacks {expect:?}", lines[0]);
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"));
    assert!(
        !out.iter().any(|l| l.starts_with("enode:")),
        "started anyway: {out:?}"
    );
}

#[tokio::test]
async fn malformed_enode() {
    fails_with(
        "chat",
        &["--dial", "enode://1234@127.0.0.1:30303"],
        "--dial",
    )
    .await;
    fails_with("chat", &["--dial", "http://example"], "enode://").await;
    fails_with("overlay", &["--dial", "enode://zz@127.0.0.1:1"], "--dial").await;
}

/// Well-formed enodes that name no dialable peer are refused at the command line.
#[tokio::test]
async fn undialable_enode() {
    let id = "1dd9d65c4552b5eb43d5ad55a2ee3f56c6cbc1c64a5c8d659f51fcd51bace24351232b8d7821617d2b29b54b81cdefb9b3e9c37d7fd5f63270bcc9e1a6f6a439";
    for (host, why) in [
        ("127.0.0.1:0", "port is 0"),
        ("0.0.0.0:30303", "unspecified"),
        ("[::]:30303", "unspecified"),
        ("224.0.0.1:30303", "multicast"),
        ("[ff02::1]:30303", "multicast"),
    ] {
        let url = format!("enode://{id}@{host}");
        for name in ["chat", "overlay", "btc_relay"] {
            fails_with(name, &["--dial", &url], why).await;
        }
    }
}

#[tokio::test]
async fn unreadable_nodekey() {
    let dir = std::env::temp_dir().join(format!("braid-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A directory where the key file should be.
    fails_with(
        "chat",
        &["--nodekey", dir.to_str().unwrap()],
        "not a regular file",
    )
    .await;
    // A file that holds no key.
    let bad = dir.join("nodekey");
    std::fs::write(&bad, "not a key\n").unwrap();
    fails_with("chat", &["--nodekey", bad.to_str().unwrap()], "malformed").await;
    // A file that cannot be created.
    let missing = dir.join("no/such/dir/nodekey");
    fails_with(
        "chat",
        &["--nodekey", missing.to_str().unwrap()],
        "cannot create",
    )
    .await;
    fails_with("chat", &["--key", "abcd"], "64 hex").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn port_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    fails_with("chat", &["--listen", &addr], "in use").await;
    fails_with("overlay", &["--listen", &addr], "in use").await;
}

#[tokio::test]
async fn bad_flags() {
    fails_with("chat", &["--listen", "nowhere"], "--listen").await;
    fails_with("chat", &["--no-such-flag"], "--no-such-flag").await;
    fails_with("chat", &["--demo", "--nick", "x"], "--demo").await;
}

#[tokio::test]
async fn nodekey_file_is_created_and_reused() {
    let dir = std::env::temp_dir().join(format!("braid-cli-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("nodekey");
    let key = key.to_str().unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let mut node = Example::spawn("chat", &["--nodekey", key]);
        let enode = node.enode().await;
        ids.push(enode.split('@').next().unwrap().to_string());
        node.send_line("/quit").await;
        let (status, _, err) = node.wait(WAIT).await;
        assert!(status.success(), "{err}");
    }
    assert_eq!(ids[0], ids[1], "the second run must reuse the key file");
    assert_eq!(std::fs::read_to_string(key).unwrap().trim().len(), 64);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--key` still works, but says on stderr that the key is visible to other users.
#[tokio::test]
async fn key_flag_warns() {
    let key = "b71c71a67e1177ad4e901695e1b4b9ee17ae16c6668d313eac2f96dbcda3f291";
    let mut node = Example::spawn("chat", &["--key", key]);
    node.enode().await;
    node.send_line("/quit").await;
    let (status, _, err) = node.wait(WAIT).await;
    assert!(status.success(), "{err}");
    assert!(
        err.contains("--key puts the node key in the process list") && err.contains("--nodekey"),
        "{err:?}"
    );
}
