//! The Hello message (id 0x00): the first message on every link, never compressed.

use super::items;
use super::{BaseError, Capability, DisconnectReason, BASE_PROTOCOL_VERSION, MAX_HELLO_SIZE};
use crate::node::NodeId;
use rlp::RlpStream;

/// A Hello payload: `[protocolVersion, clientId, [[capName, capVersion], ...], listenPort, nodeId, ...]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Base protocol version the sender speaks (5 enables snappy).
    pub protocol_version: u64,
    /// Free-form client name, e.g. `Geth/v1.14.0/linux-amd64/go1.22`.
    pub client_id: String,
    /// Capabilities the sender offers.
    pub capabilities: Vec<Capability>,
    /// Legacy listening port; the spec says it should be ignored.
    pub listen_port: u16,
    /// Node id bytes exactly as received; validated by [`Hello::node_id`].
    pub id: Vec<u8>,
}

impl Hello {
    /// Our Hello: current protocol version and our node id.
    pub fn new(
        client_id: impl Into<String>,
        capabilities: Vec<Capability>,
        listen_port: u16,
        id: NodeId,
    ) -> Self {
        Hello {
            protocol_version: BASE_PROTOCOL_VERSION,
            client_id: client_id.into(),
            capabilities,
            listen_port,
            id: id.0.to_vec(),
        }
    }

    /// RLP payload only (no message id).
    pub fn encode(&self) -> Vec<u8> {
        let mut s = RlpStream::new_list(5);
        s.append(&self.protocol_version);
        s.append(&self.client_id.as_str());
        s.begin_list(self.capabilities.len());
        for cap in &self.capabilities {
            s.begin_list(2);
            s.append(&cap.name.as_str());
            s.append(&cap.version);
        }
        s.append(&self.listen_port);
        s.append(&self.id.as_slice());
        s.out().to_vec()
    }

    /// Decodes a Hello payload (no message id) of any protocol version.
    ///
    /// - A payload larger than [`MAX_HELLO_SIZE`] is refused before parsing.
    /// - Extra list elements after the node id are ignored (EIP-8), as are extra
    ///   elements inside a capability entry; bytes after the outer list are an error.
    /// - The client id and capability names are decoded lossily: non-UTF-8 bytes become
    ///   U+FFFD. geth treats them as opaque byte strings, so rejecting a peer for an
    ///   odd name would cost interop for nothing; a mangled capability name simply
    ///   never matches one of ours.
    /// - A listen port above `u16::MAX` or a capability version above `u32::MAX` is an
    ///   error; the node id may have any length here (see [`Hello::node_id`]).
    pub fn decode(payload: &[u8]) -> Result<Hello, BaseError> {
        if payload.len() > MAX_HELLO_SIZE {
            return Err(BaseError::HelloTooLarge {
                size: payload.len(),
                max: MAX_HELLO_SIZE,
            });
        }
        let top = items::whole(payload, "hello")?;
        let fields = items::list(&top, "hello")?;
        let (version, client, caps, port, id) = match fields.as_slice() {
            [version, client, caps, port, id, ..] => (version, client, caps, port, id),
            [_, _, _, _] => return Err(BaseError::MissingField("nodeId")),
            [_, _, _] => return Err(BaseError::MissingField("listenPort")),
            [_, _] => return Err(BaseError::MissingField("capabilities")),
            [_] => return Err(BaseError::MissingField("clientId")),
            [] => return Err(BaseError::MissingField("protocolVersion")),
        };
        let protocol_version = items::uint(version, "hello protocolVersion")?;
        let client_id = lossy(items::bytes(client, "hello clientId")?);
        let capabilities = items::list(caps, "hello capabilities")?
            .iter()
            .map(decode_capability)
            .collect::<Result<Vec<_>, _>>()?;
        let port = items::uint(port, "hello listenPort")?;
        let listen_port = u16::try_from(port).map_err(|_| BaseError::ListenPortTooLarge(port))?;
        let id = items::bytes(id, "hello nodeId")?;
        Ok(Hello {
            protocol_version,
            client_id,
            capabilities,
            listen_port,
            id,
        })
    }

    /// The sender's node id: 64 bytes that are not all zero.
    ///
    /// Anything else is answered with [`DisconnectReason::NullNodeIdentity`], as geth
    /// does. Whether the id matches the key from the encryption handshake is the
    /// caller's check ([`DisconnectReason::UnexpectedIdentity`]).
    pub fn node_id(&self) -> Result<NodeId, DisconnectReason> {
        let bytes: [u8; 64] = self
            .id
            .as_slice()
            .try_into()
            .map_err(|_| DisconnectReason::NullNodeIdentity)?;
        if bytes.iter().all(|&b| b == 0) {
            return Err(DisconnectReason::NullNodeIdentity);
        }
        Ok(NodeId(bytes))
    }
}

fn decode_capability(item: &rlp::Rlp<'_>) -> Result<Capability, BaseError> {
    let parts = items::list(item, "hello capability")?;
    let [name, version, ..] = parts.as_slice() else {
        return Err(BaseError::rlp(
            "hello capability",
            "expected [name, version]",
        ));
    };
    let name = lossy(items::bytes(name, "hello capability name")?);
    let version = items::uint(version, "hello capability version")?;
    let version = u32::try_from(version).map_err(|_| BaseError::CapVersionTooLarge {
        name: name.clone(),
        version,
    })?;
    Ok(Capability { name, version })
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
