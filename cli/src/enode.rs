//! `braid enode parse|to-enr|from-enr`: enode URLs and node records (ENR).

use std::path::Path;

use p2p::node::{Enode, EnodeError, NodeKey, NodeKeyError};
use p2p::record::{NodeRecord, RecordError};
use serde_json::json;

use crate::output::{printable, table, Out};

/// Errors of the record conversions.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The enode URL is malformed.
    #[error(transparent)]
    Enode(#[from] EnodeError),
    /// The key file could not be read.
    #[error(transparent)]
    Key(#[from] NodeKeyError),
    /// The record is malformed, badly signed, or not dialable.
    #[error(transparent)]
    Record(#[from] RecordError),
}

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

/// Signs a record for `enode` with the node's own key (a record is only valid when its
/// node signs it) and prints its text form.
pub fn to_enr(text: &str, key_file: &Path, seq: u64, out: Out) -> Result<(), ConvertError> {
    let enode: Enode = text.trim().parse()?;
    let key = NodeKey::load(key_file)?;
    let record = NodeRecord::from_enode(&key, seq, &enode)?;
    if out.json {
        out.json_line(&json!({ "enr": record.to_text(), "seq": record.seq() }));
    } else {
        println!("{record}");
    }
    Ok(())
}

/// Verifies a record and prints the enode it describes, its sequence number and
/// capabilities.
pub fn from_enr(text: &str, out: Out) -> Result<(), ConvertError> {
    let record: NodeRecord = text.parse()?;
    let id = record.node_id()?;
    let caps: Vec<String> = record
        .capabilities()?
        .iter()
        .map(|c| c.to_string())
        .collect();
    let enode = record.to_enode().ok();
    if out.json {
        out.json_line(&json!({
            "id": id.to_string(),
            "seq": record.seq(),
            "enode": enode.map(|e| e.to_string()),
            "tcp": record.tcp_addr().map(|a| a.to_string()),
            "udp": record.udp_addr().map(|a| a.to_string()),
            "capabilities": caps,
        }));
        return Ok(());
    }
    let show = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let rows = vec![
        vec!["id".to_string(), id.to_string()],
        vec!["seq".into(), record.seq().to_string()],
        vec!["enode".into(), show(enode.map(|e| e.to_string()))],
        vec!["tcp".into(), show(record.tcp_addr().map(|a| a.to_string()))],
        vec!["udp".into(), show(record.udp_addr().map(|a| a.to_string()))],
        vec!["capabilities".into(), printable(&caps.join(", "))],
    ];
    print!("{}", table(&rows, |_, _, s| s.to_string()));
    Ok(())
}
