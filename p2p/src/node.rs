//! Node identity: secp256k1 node keys, 64-byte node ids, enode URLs.

use secp256k1::{PublicKey, SecretKey};

/// A node id: the 64-byte uncompressed secp256k1 public key without its 0x04 prefix.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; 64]);

impl NodeId {
    /// The node id of a public key.
    pub fn from_pubkey(key: &PublicKey) -> Self {
        let full = key.serialize_uncompressed();
        let mut id = [0u8; 64];
        id.copy_from_slice(&full[1..]);
        NodeId(id)
    }

    /// The node id belonging to a secret key.
    pub fn from_secret(key: &SecretKey) -> Self {
        Self::from_pubkey(&PublicKey::from_secret_key_global(key))
    }

    /// The public key, or `None` if these 64 bytes are not a point on the curve.
    pub fn to_pubkey(&self) -> Option<PublicKey> {
        let mut full = [0u8; 65];
        full[0] = 4;
        full[1..].copy_from_slice(&self.0);
        PublicKey::from_slice(&full).ok()
    }

    /// Raw bytes.
    pub fn as_bytes(&self) -> &[u8; 64] {
        &self.0
    }
}

impl std::fmt::Debug for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeId({}…)", &hex::encode(self.0)[..16])
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}
