//! Node records (EIP-778 ENR): a node's signed, versioned self-description, as discovery
//! passes it around.
//!
//! A braid record carries the usual `secp256k1` key, `ip`/`ip6`, `tcp`/`udp` ports, and a
//! `braid` entry listing the node's capabilities as an RLP list of `[name, version]`
//! pairs, so a dialer can pick nodes that speak its protocols before it connects.
//!
//! Records are built, signed, encoded and verified by the `enr` crate (sigp, the one
//! discv5 uses); this module only maps them to braid's types. Text form:
//! `enr:<base64url>` ([`NodeRecord::to_text`], [`str::parse`]).

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use enr::{CombinedKey, CombinedPublicKey, Enr, EnrPublicKey};
use rlp::{Rlp, RlpStream};

use crate::base::Capability;
use crate::node::{Enode, NodeId, NodeKey};

/// The record entry that lists a node's capabilities.
pub const CAPS_KEY: &str = "braid";

/// Most characters accepted in a record's text form: EIP-778 caps a record at 300 bytes,
/// which is 400 characters of base64 plus the `enr:` prefix.
pub const MAX_TEXT_LEN: usize = 4 + 400;

/// Why a record could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The text is not `enr:` + base64 of a valid, correctly signed record.
    #[error("invalid node record: {0}")]
    Invalid(String),
    /// The text is longer than any valid record's.
    #[error("node record text of {0} characters is longer than any valid record ({MAX_TEXT_LEN})")]
    TooLong(usize),
    /// The record is signed with a scheme other than secp256k1 ("v4"), so it has no
    /// devp2p node id.
    #[error("node record is not signed with a secp256k1 key")]
    NotSecp256k1,
    /// The record has no IP address or TCP port, so it cannot be dialed.
    #[error("node record has no {0}")]
    Missing(&'static str),
    /// The `braid` entry is not a list of `[name, version]` pairs.
    #[error("node record's braid entry is malformed: {0}")]
    BadCapabilities(String),
    /// Signing failed (the record would exceed 300 bytes, say).
    #[error("cannot sign node record: {0}")]
    Sign(String),
}

/// What goes into our own record.
#[derive(Debug, Clone, Default)]
pub struct RecordSpec {
    /// The address others should use (IPv4 or IPv6); none for a node that only dials.
    pub ip: Option<IpAddr>,
    /// TCP (RLPx) port.
    pub tcp_port: Option<u16>,
    /// UDP (discovery) port.
    pub udp_port: Option<u16>,
    /// Capabilities to announce in the `braid` entry.
    pub capabilities: Vec<Capability>,
}

/// A verified node record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord(Enr<CombinedKey>);

/// The record-signing form of a node key. The 32 secret bytes are copied once into
/// `enr`'s own key type and wiped from the stack right after.
pub(crate) fn signing_key(key: &NodeKey) -> CombinedKey {
    let mut bytes = key.secret().secret_bytes();
    let combined = CombinedKey::secp256k1_from_bytes(&mut bytes)
        .expect("a valid secp256k1 secret key is a valid k256 signing key");
    bytes.fill(0);
    combined
}

impl NodeRecord {
    /// Builds and signs a record with sequence number `seq`.
    pub fn build(key: &NodeKey, seq: u64, spec: &RecordSpec) -> Result<NodeRecord, RecordError> {
        let signer = signing_key(key);
        let mut builder = Enr::<CombinedKey>::builder();
        builder.seq(seq);
        if let Some(ip) = spec.ip {
            builder.ip(ip);
        }
        match (spec.ip, spec.tcp_port) {
            (Some(IpAddr::V6(_)), Some(port)) => {
                builder.tcp6(port);
            }
            (_, Some(port)) => {
                builder.tcp4(port);
            }
            _ => {}
        }
        match (spec.ip, spec.udp_port) {
            (Some(IpAddr::V6(_)), Some(port)) => {
                builder.udp6(port);
            }
            (_, Some(port)) => {
                builder.udp4(port);
            }
            _ => {}
        }
        if !spec.capabilities.is_empty() {
            builder.add_value_rlp(CAPS_KEY, encode_caps(&spec.capabilities).into());
        }
        let enr = builder
            .build(&signer)
            .map_err(|e| RecordError::Sign(e.to_string()))?;
        Ok(NodeRecord(enr))
    }

    /// The record for an enode URL's facts (no capabilities), signed by `key`, which must
    /// be the enode's own key.
    pub fn from_enode(key: &NodeKey, seq: u64, enode: &Enode) -> Result<NodeRecord, RecordError> {
        if key.id() != enode.id {
            return Err(RecordError::Sign("the key is not the enode's key".into()));
        }
        NodeRecord::build(
            key,
            seq,
            &RecordSpec {
                ip: Some(enode.ip),
                tcp_port: Some(enode.tcp_port),
                udp_port: Some(enode.udp_port),
                capabilities: Vec::new(),
            },
        )
    }

    /// The record's sequence number (higher is newer).
    pub fn seq(&self) -> u64 {
        self.0.seq()
    }

    /// The devp2p node id: the secp256k1 public key, uncompressed, without its prefix.
    pub fn node_id(&self) -> Result<NodeId, RecordError> {
        match self.0.public_key() {
            CombinedPublicKey::Secp256k1(key) => {
                let raw = key.encode_uncompressed();
                let bytes: [u8; 64] = raw
                    .as_ref()
                    .try_into()
                    .map_err(|_| RecordError::Invalid("public key is not 64 bytes".into()))?;
                Ok(NodeId(bytes))
            }
            _ => Err(RecordError::NotSecp256k1),
        }
    }

    /// The address to dial: IPv4 first, then IPv6, with its TCP port.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.0
            .tcp4_socket()
            .map(SocketAddr::V4)
            .or_else(|| self.0.tcp6_socket().map(SocketAddr::V6))
    }

    /// The discovery address: IPv4 first, then IPv6 (UDP port, or the TCP port when the
    /// record has none, as an enode URL would).
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.0
            .udp4_socket()
            .map(SocketAddr::V4)
            .or_else(|| self.0.udp6_socket().map(SocketAddr::V6))
    }

    /// The enode URL this record describes; needs an IP and a TCP port.
    pub fn to_enode(&self) -> Result<Enode, RecordError> {
        let id = self.node_id()?;
        let tcp = self
            .tcp_addr()
            .ok_or(RecordError::Missing("ip and tcp port"))?;
        let udp_port = self
            .udp_addr()
            .filter(|u| u.ip() == tcp.ip())
            .map_or(tcp.port(), |u| u.port());
        Ok(Enode {
            id,
            ip: tcp.ip(),
            tcp_port: tcp.port(),
            udp_port,
        })
    }

    /// The capabilities in the `braid` entry (empty when the record has none).
    pub fn capabilities(&self) -> Result<Vec<Capability>, RecordError> {
        match self.0.get_raw_rlp(CAPS_KEY) {
            Some(raw) => decode_caps(raw),
            None => Ok(Vec::new()),
        }
    }

    /// Whether the record announces at least one of `wanted` (same name and version).
    /// A record without a braid entry, or with a malformed one, speaks none.
    pub fn speaks_any(&self, wanted: &[Capability]) -> bool {
        self.capabilities()
            .map(|caps| caps.iter().any(|c| wanted.contains(c)))
            .unwrap_or(false)
    }

    /// `enr:` followed by the base64url of the record.
    pub fn to_text(&self) -> String {
        self.0.to_base64()
    }

    /// The record as `enr` knows it, for discovery implementations built on that crate.
    pub fn as_enr(&self) -> &Enr<CombinedKey> {
        &self.0
    }

    /// Wraps a record from `enr`, checking its signature.
    pub fn from_enr(enr: Enr<CombinedKey>) -> Result<NodeRecord, RecordError> {
        if !enr.verify() {
            return Err(RecordError::Invalid("bad signature".into()));
        }
        Ok(NodeRecord(enr))
    }
}

impl FromStr for NodeRecord {
    type Err = RecordError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() > MAX_TEXT_LEN {
            return Err(RecordError::TooLong(s.len()));
        }
        if !s.starts_with("enr:") {
            return Err(RecordError::Invalid("expected the enr: prefix".into()));
        }
        let enr = Enr::<CombinedKey>::from_str(s).map_err(RecordError::Invalid)?;
        NodeRecord::from_enr(enr)
    }
}

impl std::fmt::Display for NodeRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_text())
    }
}

fn encode_caps(caps: &[Capability]) -> Vec<u8> {
    let mut s = RlpStream::new_list(caps.len());
    for cap in caps {
        s.begin_list(2);
        s.append(&cap.name.as_str());
        s.append(&cap.version);
    }
    s.out().to_vec()
}

fn decode_caps(raw: &[u8]) -> Result<Vec<Capability>, RecordError> {
    let bad = |e: &dyn std::fmt::Display| RecordError::BadCapabilities(e.to_string());
    let list = Rlp::new(raw);
    if !list.is_list() {
        return Err(RecordError::BadCapabilities("not a list".into()));
    }
    // A record is at most 300 bytes, so this iteration is bounded by the record itself.
    list.iter()
        .map(|item| {
            let name: String = item.val_at(0).map_err(|e| bad(&e))?;
            let version: u32 = item.val_at(1).map_err(|e| bad(&e))?;
            Ok(Capability::new(name, version))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RecordSpec {
        RecordSpec {
            ip: Some("127.0.0.7".parse().unwrap()),
            tcp_port: Some(30303),
            udp_port: Some(30301),
            capabilities: vec![Capability::new("chat", 1), Capability::new("btc", 1)],
        }
    }

    #[test]
    fn build_text_parse_round_trip() {
        let key = NodeKey::generate();
        let record = NodeRecord::build(&key, 3, &spec()).unwrap();
        let text = record.to_text();
        assert!(text.starts_with("enr:"));
        let back: NodeRecord = text.parse().unwrap();
        assert_eq!(back, record);
        assert_eq!(back.seq(), 3);
        assert_eq!(back.node_id().unwrap(), key.id());
        let enode = back.to_enode().unwrap();
        assert_eq!(enode.id, key.id());
        assert_eq!(enode.socket_addr(), "127.0.0.7:30303".parse().unwrap());
        assert_eq!(enode.udp_port, 30301);
        assert_eq!(back.capabilities().unwrap(), spec().capabilities);
        assert!(back.speaks_any(&[Capability::new("btc", 1)]));
        assert!(!back.speaks_any(&[Capability::new("btc", 2)]));
    }

    #[test]
    fn enode_to_record_and_back() {
        let key = NodeKey::generate();
        let enode = Enode {
            id: key.id(),
            ip: "::1".parse().unwrap(),
            tcp_port: 4000,
            udp_port: 4001,
        };
        let record = NodeRecord::from_enode(&key, 1, &enode).unwrap();
        assert_eq!(record.to_enode().unwrap(), enode);
        let other = NodeKey::generate();
        assert!(NodeRecord::from_enode(&other, 1, &enode).is_err());
    }

    #[test]
    fn the_eip778_example_record_reads() {
        // EIP-778's example record: 127.0.0.1, udp 30303, key b71c71a6…f291.
        let text = "enr:-IS4QHCYrYZbAKWCBRlAy5zzaDZXJBGkcnh4MHcBFZntXNFrdvJjX04jRzjzCBOonrkTfj499SZuOh8R33Ls8RRcy5wBgmlkgnY0gmlwhH8AAAGJc2VjcDI1NmsxoQPKY0yuDUmstAHYpMa2_oxVtw0RW_QAdpzBQA8yWM0xOIN1ZHCCdl8";
        let record: NodeRecord = text.parse().unwrap();
        let key =
            NodeKey::from_hex("b71c71a67e1177ad4e901695e1b4b9ee17ae16c6668d313eac2f96dbcda3f291")
                .unwrap();
        assert_eq!(record.node_id().unwrap(), key.id());
        assert_eq!(record.seq(), 1);
        assert_eq!(record.udp_addr(), Some("127.0.0.1:30303".parse().unwrap()));
        // No TCP port: not dialable.
        assert!(matches!(record.to_enode(), Err(RecordError::Missing(_))));
        assert!(record.capabilities().unwrap().is_empty());
    }

    #[test]
    fn hostile_text_is_a_typed_error() {
        let key = NodeKey::generate();
        let good = NodeRecord::build(&key, 1, &spec()).unwrap().to_text();
        // One character changed in the signed content: the signature no longer holds (or
        // the base64/RLP breaks); either way an error, never a panic.
        for i in [10, good.len() / 2, good.len() - 2] {
            let mut bytes = good.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let text = String::from_utf8(bytes).unwrap();
            assert!(text.parse::<NodeRecord>().is_err(), "tampered at {i}");
        }
        assert!(matches!(
            "enr:".repeat(200).parse::<NodeRecord>(),
            Err(RecordError::TooLong(_))
        ));
        for bad in ["", "enr:", "enr:!!!!", "abc", "enr:-IS4"] {
            assert!(bad.parse::<NodeRecord>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn malformed_braid_entry_is_typed() {
        assert!(decode_caps(&[0x80]).is_err());
        assert!(decode_caps(&[0xc2, 0xc1, 0x80]).is_err());
        assert_eq!(decode_caps(&[0xc0]).unwrap(), Vec::<Capability>::new());
    }
}
