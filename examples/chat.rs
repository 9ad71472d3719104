//! A chat node on braid: the `chat/1` room from `protocols::chat`, flooded to every peer
//! with duplicate suppression, so lines travel across a chain of nodes.
//!
//! ```text
//! cargo run --example chat -- --demo                      # three nodes in one process
//! cargo run --example chat -- --nick ann                  # prints "enode: enode://…"
//! cargo run --example chat -- --nick bob --dial enode://…
//! cargo run --example chat -- --nick cat --bootnodes enode://…   # finds the others
//! ```
//!
//! Discovery v4 runs by default (UDP on the TCP port, or `--udp-port`), so every node can
//! be a bootnode for the next; `--bootnodes` lists where to start, `--no-discovery` turns
//! it off.
//!
//! Type a line to say it. Commands: `/peers`, `/dial ENODE`, `/quit` (also Ctrl-C or
//! end of input): peers are told "client quitting" (0x08). Logs go to stderr, set by
//! `RUST_LOG` (warnings only by default).

mod common;

use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use p2p::node::{Enode, NodeId};
use p2p::server::{PeerEvent, Server, ServerConfig};
use protocols::chat::{ChatEvent, ChatRoom};
use tokio::sync::{broadcast, mpsc};

use common::{peer_table, printable, DiscoveryArgs};

/// Client id sent in our Hello (shows up in other nodes' peer tables).
const CLIENT_ID: &str = concat!("braid-chat/v", env!("CARGO_PKG_VERSION"));
/// How long the demo waits for any one thing (a link, a line) before calling it a failure.
const DEMO_WAIT: Duration = Duration::from_secs(5);

/// Command-line flags.
#[derive(Parser, Debug)]
#[command(about = "A chat node on braid (chat/1 over RLPx)")]
struct Args {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Node key file (64 hex characters); created if missing.
    #[arg(long, value_name = "FILE", conflicts_with = "key")]
    nodekey: Option<PathBuf>,
    /// Node key as 64 hex characters. Any user can read it in the process list: prefer
    /// --nodekey.
    #[arg(long, value_name = "HEX")]
    key: Option<String>,
    /// Peer to dial at start (repeatable).
    #[arg(long, value_name = "ENODE", value_parser = common::dialable_enode)]
    dial: Vec<Enode>,
    /// Our name in the room (default: our node id's first 8 hex characters).
    #[arg(long, value_name = "NAME")]
    nick: Option<String>,
    /// Serve Prometheus metrics on http://ADDR/metrics (e.g. 127.0.0.1:9100).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    #[command(flatten)]
    discovery: DiscoveryArgs,
    /// Run three nodes in this process (alice — bob — carol), chat, print, exit.
    #[arg(long, conflicts_with_all = [
        "listen", "nodekey", "key", "dial", "nick", "metrics",
        "bootnodes", "no_discovery", "udp_port", "nat",
    ])]
    demo: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => return common::usage_error(e),
    };
    common::init_logging();
    let result = if args.demo {
        demo().await
    } else {
        interactive(args).await
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => common::fatal(e),
    }
}

/// A server running the chat room, with our nick; discovery as the flags say (off when
/// there are none).
async fn start_node(
    key: secp256k1::SecretKey,
    listen: SocketAddr,
    nick: &str,
    discovery: Option<&DiscoveryArgs>,
) -> Result<(Server, ChatRoom, mpsc::Receiver<ChatEvent>), Box<dyn Error>> {
    let (room, events) = ChatRoom::new(nick);
    let mut config = ServerConfig::new(key, Some(listen));
    config.protocols.push(room.protocol());
    config.client_id = CLIENT_ID.into();
    if let Some(discovery) = discovery {
        discovery.apply(&mut config);
    }
    let server = Server::start(config).await?;
    Ok((server, room, events))
}

// ---------------------------------------------------------------------------------------
// Interactive node
// ---------------------------------------------------------------------------------------

async fn interactive(args: Args) -> Result<(), Box<dyn Error>> {
    let key = common::node_key(args.key.as_deref(), args.nodekey.as_deref())?;
    let nick = args.nick.unwrap_or_else(|| key.id().short());
    let (server, room, mut chat) =
        start_node(*key.secret(), args.listen, &nick, Some(&args.discovery)).await?;
    let mut peer_events = server.subscribe();
    let enode = server.enode().ok_or("server is not listening")?;
    println!("enode: {enode}");
    println!("{}", args.discovery.describe(&server));
    common::serve_metrics(&server, args.metrics).await?;
    println!(
        "chatting as <{}>; type a line, or /peers, /dial ENODE, /quit",
        room.nick()
    );

    // Dials run in the background; their failures come back here to be printed.
    let (notes, mut dial_notes) = mpsc::channel::<String>(16);
    for enode in args.dial {
        spawn_dial(&server, enode, notes.clone());
    }
    let mut input = common::stdin_lines();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    // Peers' nicks as announced, so "left" can name them after the room forgot them.
    let mut nicks: HashMap<NodeId, String> = HashMap::new();

    loop {
        tokio::select! {
            line = input.recv() => {
                // End of input quits, like /quit.
                let Some(line) = line else { break };
                match line.trim() {
                    "" => {}
                    "/quit" => break,
                    "/peers" => println!("{}", peer_table(&server)),
                    cmd if cmd.starts_with("/dial") => {
                        match cmd.trim_start_matches("/dial").trim().parse::<Enode>() {
                            Ok(enode) => spawn_dial(&server, enode, notes.clone()),
                            Err(e) => println!("! bad enode URL: {e}"),
                        }
                    }
                    cmd if cmd.starts_with('/') => {
                        println!("! unknown command {cmd:?}; try /peers, /dial ENODE, /quit")
                    }
                    text => {
                        if room.say(text) == 0 {
                            println!("! nobody in the room yet: line not sent");
                        }
                    }
                }
            }
            Some(event) = chat.recv() => match event {
                ChatEvent::Line { nick, text, .. } => {
                    println!("<{}> {}", printable(&nick), printable(&text))
                }
                ChatEvent::Joined { id, nick } => {
                    println!("* {} joined ({})", printable(&nick), id.short());
                    nicks.insert(id, nick);
                }
                ChatEvent::Left { id } => {
                    let who = nicks.remove(&id).unwrap_or_else(|| id.short());
                    println!("* {} left ({})", printable(&who), id.short());
                }
            },
            event = peer_events.recv() => match event {
                Ok(event) => print_peer_event(&event),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            },
            Some(note) = dial_notes.recv() => println!("{note}"),
            _ = &mut ctrl_c => break,
        }
    }
    println!(
        "* quitting: telling {} peer(s) \"client quitting\"",
        server.peer_count()
    );
    server.shutdown().await;
    Ok(())
}

/// The server's event stream, as lines: who connected, who left and why.
fn print_peer_event(event: &PeerEvent) {
    match event {
        PeerEvent::Added {
            id,
            addr,
            direction,
            protocols,
        } => {
            let addr = addr.map_or_else(|| "?".into(), |a| a.to_string());
            let dir = format!("{direction:?}").to_lowercase();
            let protocols = protocols.join(",");
            println!("* connected {} {addr} ({dir}) {protocols}", id.short());
        }
        PeerEvent::Dropped { id, reason } => {
            println!("* disconnected {}: {reason}", id.short());
        }
        PeerEvent::Message(_) | PeerEvent::Discovered { .. } | PeerEvent::DialFailed { .. } => {}
    }
}

/// Dial in the background; a failure is reported as a line (the node keeps running).
fn spawn_dial(server: &Server, enode: Enode, notes: mpsc::Sender<String>) {
    let server = server.clone();
    tokio::spawn(async move {
        if let Err(e) = server.dial(&enode).await {
            let who = format!("{}@{}", enode.id.short(), enode.socket_addr());
            let _ = notes.send(format!("! dial {who} failed: {e}")).await;
        }
    });
}

// ---------------------------------------------------------------------------------------
// --demo: three nodes in one process
// ---------------------------------------------------------------------------------------

/// One demo participant.
struct DemoNode {
    nick: &'static str,
    server: Server,
    room: ChatRoom,
    events: mpsc::Receiver<ChatEvent>,
}

impl DemoNode {
    async fn start(nick: &'static str) -> Result<DemoNode, Box<dyn Error>> {
        let key = p2p::node::NodeKey::generate();
        let listen = "127.0.0.1:0".parse()?;
        let (server, room, events) = start_node(*key.secret(), listen, nick, None).await?;
        Ok(DemoNode {
            nick,
            server,
            room,
            events,
        })
    }

    fn enode(&self) -> Result<Enode, Box<dyn Error>> {
        Ok(self.server.enode().ok_or("demo node is not listening")?)
    }

    /// Wait until each of `nicks` has announced itself to us (the link is up and
    /// its chat/1 is running on both ends).
    async fn wait_joined(&mut self, nicks: &[&str]) -> Result<(), Box<dyn Error>> {
        let mut missing: HashSet<&str> = nicks.iter().copied().collect();
        while !missing.is_empty() {
            match self.next_event().await? {
                ChatEvent::Joined { nick, .. } => missing.remove(nick.as_str()),
                _ => false,
            };
        }
        Ok(())
    }

    /// The next line said to us, as (author, text, relayed-by).
    async fn next_line(&mut self) -> Result<(String, String, String), Box<dyn Error>> {
        loop {
            if let ChatEvent::Line { via, nick, text } = self.next_event().await? {
                let via = self.room.nick_of(&via).unwrap_or_else(|| via.short());
                return Ok((nick, text, via));
            }
        }
    }

    async fn next_event(&mut self) -> Result<ChatEvent, Box<dyn Error>> {
        match tokio::time::timeout(DEMO_WAIT, self.events.recv()).await {
            Ok(Some(event)) => Ok(event),
            Ok(None) => Err(format!("{}'s chat room closed", self.nick).into()),
            Err(_) => Err(format!("{} heard nothing for {DEMO_WAIT:?}", self.nick).into()),
        }
    }
}

async fn demo() -> Result<(), Box<dyn Error>> {
    let started = Instant::now();
    println!("braid chat demo: three nodes on 127.0.0.1, linked in a line alice — bob — carol");
    let mut nodes = [
        DemoNode::start("alice").await?,
        DemoNode::start("bob").await?,
        DemoNode::start("carol").await?,
    ];
    for node in &nodes {
        let enode = node.enode()?;
        let id = enode.id.short();
        println!("  {:<6} enode://{id}…@{}", node.nick, enode.socket_addr());
    }

    // bob dials alice, carol dials bob: alice and carol never meet.
    nodes[1].server.dial(&nodes[0].enode()?).await?;
    nodes[2].server.dial(&nodes[1].enode()?).await?;
    nodes[0].wait_joined(&["bob"]).await?;
    nodes[1].wait_joined(&["alice", "carol"]).await?;
    nodes[2].wait_joined(&["bob"]).await?;
    println!("links up: alice–bob and bob–carol (no link alice–carol)\n");

    let script = [
        (0, "hi all, alice here"),
        (2, "hello alice! carol, two hops away"),
        (1, "bob in the middle, relaying for you both"),
    ];
    for (speaker, text) in script {
        println!("{} says: {text}", nodes[speaker].nick);
        nodes[speaker].room.say(text);
        for (i, listener) in nodes.iter_mut().enumerate() {
            if i == speaker {
                continue;
            }
            let (nick, text, via) = listener.next_line().await?;
            let how = if via == nick {
                "direct".to_string()
            } else {
                format!("relayed by {via}")
            };
            println!("  {:<6} got <{nick}> {text}   ({how})", listener.nick);
        }
    }

    // Flooding must not echo: give stray copies a moment to show up, then check none did.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for node in nodes.iter_mut() {
        while let Ok(event) = node.events.try_recv() {
            if let ChatEvent::Line { nick, text, .. } = event {
                return Err(format!("{} got a duplicate: <{nick}> {text}", node.nick).into());
            }
        }
    }
    println!("\nevery line reached every other node exactly once\n");
    println!("bob's peers (the relay in the middle):");
    println!("{}", peer_table(&nodes[1].server));

    let [a, b, c] = &nodes;
    tokio::join!(
        a.server.shutdown(),
        b.server.shutdown(),
        c.server.shutdown()
    );
    println!("\ndemo done in {:.2?}", started.elapsed());
    println!(
        "next: `cargo run --example chat -- --nick ann` prints an enode; in a second terminal,"
    );
    println!("      `cargo run --example chat -- --nick bob --dial <that enode>`, then type away");
    Ok(())
}
