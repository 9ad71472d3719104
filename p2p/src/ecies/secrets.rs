//! Session secrets derived from a completed handshake (devp2p RLPx §"Secrets").

use crate::keccak::{Digest, Keccak256};
use zeroize::Zeroizing;

use crate::node::NodeId;

/// What a completed handshake yields: the keys and MAC states for the frame layer.
///
/// The two keys are [`Zeroizing`], so they are wiped when the `Secrets` is dropped
/// (the frame layer keeps its own expanded cipher state). They dereference to
/// `[u8; 32]`, so `&secrets.aes_secret` passes wherever a `&[u8; 32]` is expected.
/// The Keccak MAC states are not wiped: `sha3` offers no zeroizing state, and they are
/// moved into the frame layer for the life of the session anyway.
pub struct Secrets {
    /// `keccak256(ephemeral-key ‖ shared-secret)`: the AES-256-CTR frame key.
    pub aes_secret: Zeroizing<[u8; 32]>,
    /// `keccak256(ephemeral-key ‖ aes-secret)`: the AES-256 key of the frame MAC.
    pub mac_secret: Zeroizing<[u8; 32]>,
    /// Legacy Keccak-256 state `keccak((mac-secret ^ remote-nonce) ‖ our packet as sent)`,
    /// the packet including its 2-byte size prefix for EIP-8.
    pub egress_mac: Keccak256,
    /// Legacy Keccak-256 state `keccak((mac-secret ^ our-nonce) ‖ their packet as received)`,
    /// the packet including its 2-byte size prefix for EIP-8.
    pub ingress_mac: Keccak256,
    /// The authenticated remote node id.
    pub remote_id: NodeId,
}

impl std::fmt::Debug for Secrets {
    /// Shows only the remote id: key material must never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("remote_id", &self.remote_id)
            .finish_non_exhaustive()
    }
}

/// Everything the derivation needs, named so the two nonces cannot be swapped.
pub(crate) struct SecretsInput<'a> {
    /// x(our ephemeral key · remote ephemeral public key); wiped when the input drops.
    pub(crate) ephemeral_shared: Zeroizing<[u8; 32]>,
    pub(crate) initiator_nonce: &'a [u8; 32],
    pub(crate) recipient_nonce: &'a [u8; 32],
    /// True when we are the initiator.
    pub(crate) we_initiated: bool,
    /// Our handshake packet exactly as sent.
    pub(crate) sent: &'a [u8],
    /// Their handshake packet exactly as received.
    pub(crate) received: &'a [u8],
    pub(crate) remote_id: NodeId,
}

/// Every value this returns is derived key material, so it comes wiped-on-drop.
fn keccak(parts: &[&[u8]]) -> Zeroizing<[u8; 32]> {
    let mut h = Keccak256::new();
    for part in parts {
        h.update(part);
    }
    Zeroizing::new(h.finalize().into())
}

fn xor(a: &[u8; 32], b: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    Zeroizing::new(std::array::from_fn(|i| a[i] ^ b[i]))
}

impl Secrets {
    /// Derives the session secrets per the RLPx spec.
    pub(crate) fn derive(input: SecretsInput<'_>) -> Secrets {
        let eph = &input.ephemeral_shared[..];
        let nonce_hash = keccak(&[input.recipient_nonce, input.initiator_nonce]);
        let shared_secret = keccak(&[eph, &nonce_hash[..]]);
        let aes_secret = keccak(&[eph, &shared_secret[..]]);
        let mac_secret = keccak(&[eph, &aes_secret[..]]);

        let (our_nonce, remote_nonce) = if input.we_initiated {
            (input.initiator_nonce, input.recipient_nonce)
        } else {
            (input.recipient_nonce, input.initiator_nonce)
        };
        let mut egress_mac = Keccak256::new();
        egress_mac.update(&xor(&mac_secret, remote_nonce)[..]);
        egress_mac.update(input.sent);
        let mut ingress_mac = Keccak256::new();
        ingress_mac.update(&xor(&mac_secret, our_nonce)[..]);
        ingress_mac.update(input.received);

        Secrets {
            aes_secret,
            mac_secret,
            egress_mac,
            ingress_mac,
            remote_id: input.remote_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroize;

    /// The keys are wiped by `Zeroizing`'s drop; the same `Zeroize` call, observed on
    /// a live value, leaves no byte of either key behind.
    #[test]
    fn session_keys_zeroize() {
        let mut s = Secrets::derive(SecretsInput {
            ephemeral_shared: Zeroizing::new([3; 32]),
            initiator_nonce: &[1; 32],
            recipient_nonce: &[2; 32],
            we_initiated: true,
            sent: b"auth",
            received: b"ack",
            remote_id: NodeId([4; 64]),
        });
        assert_ne!(*s.aes_secret, [0; 32]);
        assert_ne!(*s.mac_secret, [0; 32]);
        s.aes_secret.zeroize();
        s.mac_secret.zeroize();
        assert_eq!(*s.aes_secret, [0; 32]);
        assert_eq!(*s.mac_secret, [0; 32]);
    }
}
