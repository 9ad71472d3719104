//! The chat protocol's own behaviour, over in-memory links (no sockets): nick exchange,
//! flooding with duplicate suppression, and hostile payloads.

use std::time::Duration;

use p2p::base::DisconnectReason;
use p2p::pipe::{linked_peers, PipeError, ScriptedRemote};
use protocols::chat::{wire, ChatEvent, ChatRoom, Say};
use tokio::sync::mpsc::Receiver;

const T: Duration = Duration::from_secs(10);

async fn next_event(rx: &mut Receiver<ChatEvent>) -> ChatEvent {
    tokio::time::timeout(T, rx.recv())
        .await
        .expect("chat event in time")
        .expect("room open")
}

#[tokio::test]
async fn two_rooms_exchange_nicks_and_lines() {
    let (alice, mut alice_ev) = ChatRoom::new("alice");
    let (bob, mut bob_ev) = ChatRoom::new("bob");
    let (_a, _b) = linked_peers(&[alice.protocol()], &[bob.protocol()])
        .await
        .unwrap();
    assert!(
        matches!(next_event(&mut alice_ev).await, ChatEvent::Joined { nick, .. } if nick == "bob")
    );
    assert!(
        matches!(next_event(&mut bob_ev).await, ChatEvent::Joined { nick, .. } if nick == "alice")
    );
    assert_eq!(alice.say("hi bob"), 1);
    match next_event(&mut bob_ev).await {
        ChatEvent::Line { nick, text, .. } => {
            assert_eq!((nick.as_str(), text.as_str()), ("alice", "hi bob"))
        }
        other => panic!("expected a line, got {other:?}"),
    }
}

#[tokio::test]
async fn a_line_is_delivered_once_and_not_echoed_back() {
    let (room, mut events) = ChatRoom::new("hub");
    let (_peer, mut remote) = ScriptedRemote::start(&room.protocol()).await.unwrap();
    // The room announces its nick first.
    let (code, payload) = remote.recv().await.unwrap();
    assert_eq!(code, wire::NICK);
    assert_eq!(wire::decode_nick(&payload).unwrap(), "hub");
    remote
        .send(wire::NICK, &wire::encode_nick("eve"))
        .await
        .unwrap();
    assert!(
        matches!(next_event(&mut events).await, ChatEvent::Joined { nick, .. } if nick == "eve")
    );
    let say = Say {
        id: [7; 16],
        nick: "eve".into(),
        text: "once".into(),
    };
    let second = Say {
        id: [8; 16],
        nick: "eve".into(),
        text: "second".into(),
    };
    for s in [&say, &say, &second] {
        remote.send(wire::SAY, &s.encode()).await.unwrap();
    }
    // Messages are handled in order, so a second event for the duplicate would come
    // between these two.
    assert!(
        matches!(next_event(&mut events).await, ChatEvent::Line { text, .. } if text == "once")
    );
    assert!(
        matches!(next_event(&mut events).await, ChatEvent::Line { text, .. } if text == "second")
    );
    // Nothing is flooded back to its sender: the next thing the remote hears is the
    // room's own line.
    room.say("from the hub");
    let (code, payload) = remote.recv().await.unwrap();
    assert_eq!(code, wire::SAY);
    assert_eq!(Say::decode(&payload).unwrap().text, "from the hub");
}

#[tokio::test]
async fn a_malformed_line_ends_the_peer_with_subprotocol_error() {
    let (room, _events) = ChatRoom::new("hub");
    let (peer, mut remote) = ScriptedRemote::start(&room.protocol()).await.unwrap();
    remote.recv().await.unwrap(); // the room's nick
                                  // A Say whose id is 3 bytes instead of 16.
    remote
        .send(wire::SAY, b"\xc9\x83abc\x81x\x81y")
        .await
        .unwrap();
    let err = remote.recv().await.unwrap_err();
    assert!(
        matches!(
            err,
            PipeError::Disconnected(DisconnectReason::SubprotocolError)
        ),
        "{err}"
    );
    assert_eq!(
        tokio::time::timeout(T, peer.closed()).await.unwrap().reason,
        DisconnectReason::SubprotocolError
    );
    assert!(room.members().is_empty(), "the peer left the room");
}
