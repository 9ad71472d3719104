//! The in-memory pipe for protocol tests: linked peers and the scripted remote run the
//! real stack without sockets.

use std::time::Duration;

use p2p::base::DisconnectReason;
use p2p::pipe::{linked_peers, PipeError, ScriptedRemote};
use p2p::protocol::{Protocol, ProtocolError};

const T: Duration = Duration::from_secs(10);

/// Sends its own name once, then reports what the other side sent.
fn announce(name: &'static str, tx: tokio::sync::mpsc::Sender<String>) -> Protocol {
    Protocol::new("ann", 1, 1, move |_peer, mut rw| {
        let tx = tx.clone();
        async move {
            rw.write(0, &rlp::encode(&name)).await?;
            let msg = rw.read().await?;
            let heard: String = rlp::decode(&msg.payload)?;
            tx.send(heard).await.ok();
            std::future::pending::<()>().await;
            Ok(())
        }
    })
}

#[tokio::test]
async fn linked_peers_run_both_ends_of_a_protocol() {
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let (a, b) = linked_peers(&[announce("alice", tx.clone())], &[announce("bob", tx)])
        .await
        .unwrap();
    let mut heard = vec![rx.recv().await.unwrap(), rx.recv().await.unwrap()];
    heard.sort();
    assert_eq!(heard, ["alice", "bob"]);
    // Both speak p2p v5 (snappy), and a disconnect from one reaches the other side.
    assert!(a.snappy() && b.snappy());
    a.disconnect(DisconnectReason::ClientQuitting);
    let closed = tokio::time::timeout(T, b.closed()).await.unwrap();
    assert_eq!(closed.reason, DisconnectReason::ClientQuitting);
}

#[tokio::test]
async fn linked_peers_without_a_shared_capability_fail_typed() {
    let (tx, _rx) = tokio::sync::mpsc::channel(2);
    let other = Protocol::new("other", 1, 1, |_peer, _rw| async { Ok(()) });
    let err = linked_peers(&[announce("alice", tx)], &[other])
        .await
        .unwrap_err();
    assert!(matches!(err, PipeError::Start(_)), "{err}");
}

#[tokio::test]
async fn scripted_remote_sees_relative_codes_and_the_protocols_refusal() {
    // Doubles a number on code 0 and answers on code 2; anything else on code 1 is an error.
    let double = Protocol::new("dbl", 1, 3, |_peer, mut rw| async move {
        loop {
            let msg = rw.read().await?;
            match msg.code {
                0 => {
                    let n: u64 = rlp::decode(&msg.payload)?;
                    rw.write(2, &rlp::encode(&(n * 2))).await?;
                }
                _ => return Err(ProtocolError::other("unexpected code")),
            }
        }
    });
    let (peer, mut remote) = ScriptedRemote::start(&double).await.unwrap();
    assert_eq!(remote.capability().name, "dbl");
    assert_eq!(remote.capability().offset, 16);
    remote.send(0, &rlp::encode(&21u64)).await.unwrap();
    let (code, payload) = remote.recv().await.unwrap();
    assert_eq!(code, 2);
    assert_eq!(rlp::decode::<u64>(&payload).unwrap(), 42);
    // Codes past the protocol's length never reach the wire.
    assert!(matches!(
        remote.send(3, b"\xc0").await,
        Err(PipeError::InvalidCode { code: 3, length: 3 })
    ));
    // The protocol's error ends the peer with "subprotocol error", and the remote hears it.
    remote.send(1, b"\xc0").await.unwrap();
    let err = remote.recv().await.unwrap_err();
    assert!(
        matches!(
            err,
            PipeError::Disconnected(DisconnectReason::SubprotocolError)
        ),
        "{err}"
    );
    let closed = tokio::time::timeout(T, peer.closed()).await.unwrap();
    assert_eq!(closed.reason, DisconnectReason::SubprotocolError);
}
