//! Your own protocol in 30 lines: `greet/1`, one message code, RLP payloads, two nodes.
//!
//! `cargo run --example minimal`

use std::time::Duration;

use p2p::node::NodeKey;
use p2p::protocol::Protocol;
use p2p::server::{Server, ServerConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (heard, mut lines) = tokio::sync::mpsc::channel(8);
    // A protocol is a name, a version, how many message codes it uses, and a function
    // run once for every peer that speaks it: read and write through `rw`.
    let greet = Protocol::new("greet", 1, 1, move |peer, mut rw| {
        let heard = heard.clone();
        async move {
            rw.write(0, &rlp::encode(&"hello")).await?; // code 0, an RLP string
            loop {
                let msg = rw.read().await?; // only greet/1's messages arrive here
                let text: String = rlp::decode(&msg.payload)?;
                let who = peer.id().short();
                let _ = heard.send(format!("{who} said {text:?}")).await;
            }
        }
    });
    // A configuration is a plain struct: `new` gives the defaults, then set fields.
    let node = |listen, greet| ServerConfig {
        protocols: vec![greet],
        ..ServerConfig::new(NodeKey::generate(), listen)
    };
    let a = Server::start(node(Some("127.0.0.1:0".parse()?), greet.clone())).await?;
    let b = Server::start(node(None, greet)).await?;
    b.dial(&a.enode().ok_or("a is not listening")?).await?;
    for _ in 0..2 {
        let line = tokio::time::timeout(Duration::from_secs(5), lines.recv()).await?;
        println!("{}", line.ok_or("no greeting")?);
    }
    tokio::join!(a.shutdown(), b.shutdown());
    Ok(())
}
