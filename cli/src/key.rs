//! `braid key generate|inspect`: node keys as hex files, as `--nodekey` reads them.

use std::net::SocketAddr;
use std::path::Path;

use p2p::node::{Enode, NodeKey, NodeKeyError};
use serde_json::json;

use crate::output::Out;

/// Errors of the key commands.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading, parsing or writing the key failed.
    #[error(transparent)]
    Key(#[from] NodeKeyError),
    /// The output file already exists (keys are never overwritten).
    #[error("{0} already exists; refusing to overwrite a key")]
    Exists(String),
}

/// Generates a key; writes it to `out` (mode 0600, never overwriting) or prints it.
pub fn generate(out_file: Option<&Path>, out: Out) -> Result<(), KeyError> {
    let (key, written) = match out_file {
        Some(path) => {
            if path.exists() {
                return Err(KeyError::Exists(path.display().to_string()));
            }
            (
                NodeKey::load_or_create(path)?,
                Some(path.display().to_string()),
            )
        }
        None => (NodeKey::generate(), None),
    };
    let id = key.id();
    if out.json {
        let mut v = json!({ "id": id.to_string() });
        match &written {
            Some(path) => v["file"] = json!(path),
            None => v["key"] = json!(key.to_hex()),
        }
        out.json_line(&v);
        return Ok(());
    }
    match written {
        Some(path) => println!("key written to {path}"),
        None => println!("key:  {}", key.to_hex()),
    }
    println!("id:   {id}");
    Ok(())
}

/// Prints a key file's node id, and its enode for `addr` when given.
pub fn inspect(file: &Path, addr: Option<SocketAddr>, out: Out) -> Result<(), KeyError> {
    let key = NodeKey::load(file)?;
    let id = key.id();
    let enode = addr.map(|a| Enode::new(id, a).to_string());
    if out.json {
        out.json_line(&json!({ "id": id.to_string(), "enode": enode }));
        return Ok(());
    }
    println!("id:    {id}");
    if let Some(enode) = enode {
        println!("enode: {enode}");
    }
    Ok(())
}
