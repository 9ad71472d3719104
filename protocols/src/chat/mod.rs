//! `chat/1`: a chat room flooded over every connected peer.
//!
//! Each line gets a random 16-byte id; a node delivers and forwards a line only the first
//! time it sees that id, so on any connected graph every node prints every line once
//! (a chain A–B–C delivers A's line to C through B).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use protocols::chat::ChatRoom;
//! use p2p::server::{Server, ServerConfig};
//! let (room, mut lines) = ChatRoom::new("ann");
//! let key = secp256k1::SecretKey::new(&mut rand::thread_rng());
//! let mut config = ServerConfig::new(key, Some("127.0.0.1:0".parse()?));
//! config.protocols.push(room.protocol());
//! let server = Server::start(config).await?;
//! room.say("hello");
//! while let Some(event) = lines.recv().await {
//!     println!("{event:?}");
//! }
//! # Ok(()) }
//! ```

pub mod wire;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use p2p::node::NodeId;
use p2p::peer::{Peer, ProtoRw};
use p2p::protocol::{Protocol, ProtocolError};
use tokio::sync::mpsc;
use tracing::debug;

pub use wire::{ChatError, Say};

/// Lines waiting to be written to one peer; beyond this a slow peer misses lines rather
/// than growing our memory.
const PEER_QUEUE: usize = 256;
/// How many message ids are remembered for duplicate suppression.
const SEEN_CAPACITY: usize = 8192;
/// Events waiting for the application.
const EVENT_QUEUE: usize = 1024;

/// What the room tells the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// A line from someone else (first time seen).
    Line {
        /// The peer we got it from (not necessarily its author).
        via: NodeId,
        /// The author's nick.
        nick: String,
        /// The text.
        text: String,
    },
    /// A peer joined the room and announced its nick.
    Joined {
        /// The peer.
        id: NodeId,
        /// Its nick.
        nick: String,
    },
    /// A peer left the room.
    Left {
        /// The peer.
        id: NodeId,
    },
}

/// Bounded set of recently seen ids (oldest forgotten first).
struct Seen {
    set: HashSet<[u8; 16]>,
    order: VecDeque<[u8; 16]>,
}

impl Seen {
    /// True if `id` is new.
    fn insert(&mut self, id: [u8; 16]) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > SEEN_CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

struct Member {
    nick: Option<String>,
    queue: mpsc::Sender<Bytes>,
}

struct Inner {
    nick: String,
    seen: Mutex<Seen>,
    /// Ordered by node id, so a line is queued to the members in the same order on every
    /// run (a deterministic simulation replays the same sends).
    members: Mutex<BTreeMap<NodeId, Member>>,
    events: mpsc::Sender<ChatEvent>,
}

/// A chat room shared by every peer that runs `chat/1` with us. Cheap to clone.
#[derive(Clone)]
pub struct ChatRoom {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ChatRoom {
    /// A room where we speak as `nick`; the receiver yields what happens in it.
    pub fn new(nick: &str) -> (ChatRoom, mpsc::Receiver<ChatEvent>) {
        let (events, rx) = mpsc::channel(EVENT_QUEUE);
        let nick: String = nick.chars().take(wire::MAX_NICK).collect();
        let room = ChatRoom {
            inner: Arc::new(Inner {
                nick,
                seen: Mutex::new(Seen {
                    set: HashSet::new(),
                    order: VecDeque::new(),
                }),
                members: Mutex::new(BTreeMap::new()),
                events,
            }),
        };
        (room, rx)
    }

    /// Our nick.
    pub fn nick(&self) -> &str {
        &self.inner.nick
    }

    /// The `chat/1` protocol, to add to a server's configuration.
    pub fn protocol(&self) -> Protocol {
        let room = self.clone();
        Protocol::new("chat", 1, wire::LENGTH, move |peer, rw| {
            let room = room.clone();
            async move { room.run(peer, rw).await }
        })
        .with_node_info({
            let room = self.clone();
            move || serde_json::json!({ "nick": room.nick(), "members": room.members().len() })
        })
        .with_peer_info({
            let room = self.clone();
            move |peer: &Peer| serde_json::json!({ "nick": room.nick_of(&peer.id()) })
        })
    }

    /// Say a line: sent to every peer in the room. Returns how many peers it was queued for.
    pub fn say(&self, text: &str) -> usize {
        let say = Say {
            id: rand::random(),
            nick: self.inner.nick.clone(),
            text: text.chars().take(wire::MAX_TEXT).collect(),
        };
        lock(&self.inner.seen).insert(say.id);
        self.forward(&say, None)
    }

    /// Peers in the room with their nicks (once announced).
    pub fn members(&self) -> Vec<(NodeId, Option<String>)> {
        lock(&self.inner.members)
            .iter()
            .map(|(id, m)| (*id, m.nick.clone()))
            .collect()
    }

    /// The nick a peer announced.
    pub fn nick_of(&self, id: &NodeId) -> Option<String> {
        lock(&self.inner.members)
            .get(id)
            .and_then(|m| m.nick.clone())
    }

    fn forward(&self, say: &Say, except: Option<NodeId>) -> usize {
        let payload = Bytes::from(say.encode());
        let members = lock(&self.inner.members);
        let mut sent = 0;
        for (id, member) in members.iter() {
            if Some(*id) == except {
                continue;
            }
            match member.queue.try_send(payload.clone()) {
                Ok(()) => sent += 1,
                Err(_) => debug!(peer = ?id, "chat queue full, line dropped for this peer"),
            }
        }
        sent
    }

    fn emit(&self, event: ChatEvent) {
        if self.inner.events.try_send(event).is_err() {
            debug!("chat event queue full or closed; event dropped");
        }
    }

    async fn run(&self, peer: Peer, mut rw: ProtoRw) -> Result<(), ProtocolError> {
        let id = peer.id();
        let (tx, mut rx) = mpsc::channel::<Bytes>(PEER_QUEUE);
        lock(&self.inner.members).insert(
            id,
            Member {
                nick: None,
                queue: tx,
            },
        );
        let writer = rw.writer();
        let result = async {
            writer
                .write(wire::NICK, &wire::encode_nick(&self.inner.nick))
                .await?;
            let send = async {
                while let Some(line) = rx.recv().await {
                    writer.write(wire::SAY, &line).await?;
                }
                Ok::<(), ProtocolError>(())
            };
            let receive = async {
                loop {
                    let msg = rw.read().await?;
                    match msg.code {
                        wire::SAY => {
                            let say = Say::decode(&msg.payload).map_err(ProtocolError::other)?;
                            if lock(&self.inner.seen).insert(say.id) {
                                self.forward(&say, Some(id));
                                self.emit(ChatEvent::Line {
                                    via: id,
                                    nick: say.nick,
                                    text: say.text,
                                });
                            }
                        }
                        wire::NICK => {
                            let nick =
                                wire::decode_nick(&msg.payload).map_err(ProtocolError::other)?;
                            if let Some(m) = lock(&self.inner.members).get_mut(&id) {
                                m.nick = Some(nick.clone());
                            }
                            self.emit(ChatEvent::Joined { id, nick });
                        }
                        _ => {}
                    }
                }
            };
            tokio::select! {
                r = send => r,
                r = receive => r,
            }
        }
        .await;
        lock(&self.inner.members).remove(&id);
        self.emit(ChatEvent::Left { id });
        result
    }
}
