//! `braid enode parse`: what an enode URL says, checked the way the dialer checks it.

use p2p::node::{Enode, EnodeError};
use serde_json::json;

use crate::output::{table, Out};

/// Prints the parts of `text` (an `enode://` URL).
pub fn parse(text: &str, out: Out) -> Result<(), EnodeError> {
    let enode: Enode = text.trim().parse()?;
    if out.json {
        out.json_line(&json!({
            "id": enode.id.to_string(),
            "ip": enode.ip.to_string(),
            "tcp_port": enode.tcp_port,
            "udp_port": enode.udp_port,
            "enode": enode.to_string(),
        }));
        return Ok(());
    }
    let rows = vec![
        vec!["id".to_string(), enode.id.to_string()],
        vec!["ip".into(), enode.ip.to_string()],
        vec!["tcp port".into(), enode.tcp_port.to_string()],
        vec!["udp port".into(), enode.udp_port.to_string()],
    ];
    print!("{}", table(&rows, |_, _, s| s.to_string()));
    Ok(())
}
