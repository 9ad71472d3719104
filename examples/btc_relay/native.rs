//! The native side: one outbound connection per `--bitcoin` node, redialed when it drops.

use super::*;

/// Dial the native node, BIP324 v2 first with a v1 retry as Core does, and complete the
/// version handshake. Over v2 the relay advertises `NODE_P2P_V2`, so the node keeps
/// preferring v2 when it dials or gossips us.
pub(super) async fn connect_native(addr: SocketAddr, mut config: Config) -> Result<Peer, String> {
    let transport = connect_auto(addr, config.network, CONNECT_TIMEOUT, true)
        .await
        .map_err(|e| e.to_string())?;
    if transport.is_v2() {
        config.services |= services::P2P_V2;
    }
    tracing::debug!(%addr, v2 = transport.is_v2(), "native transport up");
    let peer = Peer::start_outbound(config, transport);
    let handshake = async {
        // The peer has no "handshake done" signal besides its listener; poll its state.
        while !peer.verack_received() && !peer.is_done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .is_err()
    {
        peer.disconnect();
        return Err(format!("no version handshake within {HANDSHAKE_TIMEOUT:?}"));
    }
    if !peer.verack_received() {
        let why = peer.close_reason().map(|r| r.to_string());
        return Err(format!(
            "version handshake failed: {}",
            why.unwrap_or_else(|| "disconnected".into())
        ));
    }
    Ok(peer)
}

/// Keep a native connection: when it drops, dial again every [`RECONNECT_DELAY`].
pub(super) async fn keep_native(addr: SocketAddr, mut peer: Peer, config: Config) {
    loop {
        peer.wait_for_disconnect().await;
        println!("! bitcoin node {addr} went away; redialing every {RECONNECT_DELAY:?}");
        peer = loop {
            tokio::time::sleep(RECONNECT_DELAY).await;
            match connect_native(addr, config.clone()).await {
                Ok(peer) => break peer,
                Err(e) => println!("! bitcoin node {addr}: {e}"),
            }
        };
    }
}
