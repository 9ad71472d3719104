//! The two sides of the handshake as plain state, with no I/O: build packets, read
//! packets, derive [`Secrets`]. The async driver and tests (with fixed keys and
//! nonces from the public vectors) both use these.

use rand::RngCore;
use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use secp256k1::{Message, PublicKey, SecretKey, SECP256K1};
use zeroize::{Zeroize, Zeroizing};

use crate::keccak::keccak256;

use super::crypt::ecdh_x;
use super::packets::{
    self, AckBody, AuthBody, WireFormat, HANDSHAKE_VERSION, LEGACY_ACK_LEN, LEGACY_AUTH_LEN,
};
use super::secrets::SecretsInput;
use super::{HandshakeError, Secrets};
use crate::node::NodeId;

/// 32 random bytes for a nonce.
fn random_nonce() -> [u8; 32] {
    let mut nonce = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut nonce);
    nonce
}

/// The message the initiator's ephemeral key signs: `static-shared-secret XOR nonce`.
fn signed_message(static_shared: &[u8; 32], nonce: &[u8; 32]) -> Message {
    let mut digest: [u8; 32] = std::array::from_fn(|i| static_shared[i] ^ nonce[i]);
    let message = Message::from_digest(digest);
    digest.zeroize();
    message
}

/// Overwrites the handshake secrets one side holds: its copy of the static key, its
/// ephemeral key and its nonce. Run on drop, so a finished or abandoned handshake
/// leaves none of them behind in memory it owned.
fn wipe(our_key: &mut SecretKey, ephemeral_key: &mut SecretKey, nonce: &mut [u8; 32]) {
    // `non_secure_erase` is secp256k1's volatile overwrite; "non-secure" because
    // copies the compiler made elsewhere are out of its reach (and of any library's).
    our_key.non_secure_erase();
    ephemeral_key.non_secure_erase();
    nonce.zeroize();
}

fn node_pubkey(id: &NodeId) -> Result<PublicKey, HandshakeError> {
    id.to_pubkey().ok_or(HandshakeError::InvalidPublicKey)
}

/// Tries the legacy layout first when the length fits it (EIP-8 §"recipient"),
/// falling back to EIP-8; returns the plaintext and the format it was in.
fn open_either(
    our_key: &SecretKey,
    packet: &[u8],
    legacy_len: usize,
) -> Result<(Vec<u8>, WireFormat), HandshakeError> {
    if packet.len() == legacy_len {
        match packets::open_legacy(our_key, packet) {
            Ok(plain) => return Ok((plain, WireFormat::Legacy)),
            // Only fall back if the bytes could be an EIP-8 packet at all; otherwise
            // the legacy error (bad R, bad tag) is the one that explains the failure.
            Err(e) if !packets::eip8_prefix_matches(packet) => return Err(e),
            Err(_) => {}
        }
    }
    Ok((packets::open_eip8(our_key, packet)?, WireFormat::Eip8))
}

/// The initiator (dialing) side. Its keys and nonce are wiped when it is dropped.
pub struct Initiator {
    our_key: SecretKey,
    remote_id: NodeId,
    remote_pubkey: PublicKey,
    ephemeral_key: SecretKey,
    nonce: [u8; 32],
}

/// An ack the initiator has decrypted and parsed.
#[derive(Debug, Clone)]
pub struct ReceivedAck {
    /// The format the ack came in.
    pub format: WireFormat,
    /// The decoded body.
    pub body: AckBody,
    remote_ephemeral: PublicKey,
    packet: Vec<u8>,
}

impl ReceivedAck {
    /// The ack exactly as received (incl. the size prefix for EIP-8).
    pub fn packet(&self) -> &[u8] {
        &self.packet
    }
}

impl Initiator {
    /// An initiator with the given ephemeral key and nonce (deterministic; for tests
    /// use the vector keys). Fails if `remote_id` is not a curve point.
    pub fn new(
        our_key: &SecretKey,
        remote_id: &NodeId,
        ephemeral_key: SecretKey,
        nonce: [u8; 32],
    ) -> Result<Self, HandshakeError> {
        Ok(Initiator {
            our_key: *our_key,
            remote_id: *remote_id,
            remote_pubkey: node_pubkey(remote_id)?,
            ephemeral_key,
            nonce,
        })
    }

    /// An initiator with a fresh random ephemeral key and nonce.
    pub fn random(our_key: &SecretKey, remote_id: &NodeId) -> Result<Self, HandshakeError> {
        let ephemeral = SecretKey::new(&mut rand::thread_rng());
        Self::new(our_key, remote_id, ephemeral, random_nonce())
    }

    /// The node this initiator dials.
    pub fn remote_id(&self) -> &NodeId {
        &self.remote_id
    }

    /// Our static key (the driver needs it to recognise a legacy ack).
    pub(crate) fn our_key(&self) -> &SecretKey {
        &self.our_key
    }

    /// The signed auth body: the ephemeral key signs `static-shared XOR nonce`.
    pub fn auth_body(&self) -> AuthBody {
        let static_shared = Zeroizing::new(ecdh_x(&self.remote_pubkey, &self.our_key));
        let sig = SECP256K1.sign_ecdsa_recoverable(
            &signed_message(&static_shared, &self.nonce),
            &self.ephemeral_key,
        );
        let (recid, compact) = sig.serialize_compact();
        let mut signature = [0u8; 65];
        signature[..64].copy_from_slice(&compact);
        signature[64] = match recid {
            RecoveryId::Zero => 0,
            RecoveryId::One => 1,
            RecoveryId::Two => 2,
            RecoveryId::Three => 3,
        };
        AuthBody {
            signature,
            initiator_id: NodeId::from_secret(&self.our_key),
            nonce: self.nonce,
            version: HANDSHAKE_VERSION,
        }
    }

    /// A complete EIP-8 auth packet (size prefix included), randomly padded.
    /// Keep the exact bytes: [`Initiator::secrets`] needs them.
    pub fn auth_packet(&self) -> Result<Vec<u8>, HandshakeError> {
        packets::seal_eip8(&self.remote_pubkey, &self.auth_body().to_rlp())
    }

    /// A legacy (pre-EIP-8) 307-byte auth packet, for talking to old peers and tests.
    pub fn legacy_auth_packet(&self) -> Vec<u8> {
        let ephemeral_id = NodeId::from_secret(&self.ephemeral_key);
        let hash = keccak256(&ephemeral_id.0);
        packets::seal_legacy(&self.remote_pubkey, &self.auth_body().to_legacy(&hash))
    }

    /// Decrypts and parses an ack (EIP-8, or a legacy 210-byte ack).
    pub fn read_ack(&self, packet: &[u8]) -> Result<ReceivedAck, HandshakeError> {
        let (plain, format) = open_either(&self.our_key, packet, LEGACY_ACK_LEN)?;
        let body = match format {
            WireFormat::Legacy => AckBody::from_legacy(&plain)?,
            WireFormat::Eip8 => AckBody::from_rlp(&plain)?,
        };
        Ok(ReceivedAck {
            format,
            remote_ephemeral: node_pubkey(&body.ephemeral_id)?,
            body,
            packet: packet.to_vec(),
        })
    }

    /// The session secrets, given our auth exactly as sent and the parsed ack.
    pub fn secrets(&self, sent_auth: &[u8], ack: &ReceivedAck) -> Secrets {
        Secrets::derive(SecretsInput {
            ephemeral_shared: Zeroizing::new(ecdh_x(&ack.remote_ephemeral, &self.ephemeral_key)),
            initiator_nonce: &self.nonce,
            recipient_nonce: &ack.body.nonce,
            we_initiated: true,
            sent: sent_auth,
            received: &ack.packet,
            remote_id: self.remote_id,
        })
    }
}

/// The recipient (listening) side. Its keys and nonce are wiped when it is dropped.
pub struct Recipient {
    our_key: SecretKey,
    ephemeral_key: SecretKey,
    nonce: [u8; 32],
}

/// An auth the recipient has decrypted, parsed and whose signature it checked.
#[derive(Debug, Clone)]
pub struct ReceivedAuth {
    /// The format the auth came in; the ack must use the same one.
    pub format: WireFormat,
    /// The decoded body.
    pub body: AuthBody,
    remote_pubkey: PublicKey,
    remote_ephemeral: PublicKey,
    packet: Vec<u8>,
}

impl ReceivedAuth {
    /// The initiator's static node id (authenticated by the handshake once the
    /// initiator proves it can read our ack).
    pub fn remote_id(&self) -> NodeId {
        self.body.initiator_id
    }

    /// The initiator's ephemeral node id, recovered from the signature.
    pub fn remote_ephemeral_id(&self) -> NodeId {
        NodeId::from_pubkey(&self.remote_ephemeral)
    }

    /// The auth exactly as received (incl. the size prefix for EIP-8).
    pub fn packet(&self) -> &[u8] {
        &self.packet
    }
}

impl Recipient {
    /// A recipient with the given ephemeral key and nonce (deterministic; for tests).
    pub fn new(our_key: &SecretKey, ephemeral_key: SecretKey, nonce: [u8; 32]) -> Self {
        Recipient {
            our_key: *our_key,
            ephemeral_key,
            nonce,
        }
    }

    /// A recipient with a fresh random ephemeral key and nonce.
    pub fn random(our_key: &SecretKey) -> Self {
        let ephemeral = SecretKey::new(&mut rand::thread_rng());
        Self::new(our_key, ephemeral, random_nonce())
    }

    /// Decrypts and parses an auth (EIP-8, or a legacy 307-byte auth) and recovers
    /// the initiator's ephemeral key from its signature.
    pub fn read_auth(&self, packet: &[u8]) -> Result<ReceivedAuth, HandshakeError> {
        let (plain, format) = open_either(&self.our_key, packet, LEGACY_AUTH_LEN)?;
        let (body, ephemeral_hash) = match format {
            WireFormat::Legacy => {
                let (body, hash) = AuthBody::from_legacy(&plain)?;
                (body, Some(hash))
            }
            WireFormat::Eip8 => (AuthBody::from_rlp(&plain)?, None),
        };
        let remote_pubkey = node_pubkey(&body.initiator_id)?;
        let static_shared = Zeroizing::new(ecdh_x(&remote_pubkey, &self.our_key));

        let (recid_byte, compact) = body
            .signature
            .split_last()
            .ok_or(HandshakeError::InvalidSignature)?;
        let recid = RecoveryId::try_from(i32::from(*recid_byte))
            .map_err(|_| HandshakeError::InvalidSignature)?;
        let sig = RecoverableSignature::from_compact(compact, recid)
            .map_err(|_| HandshakeError::InvalidSignature)?;
        let remote_ephemeral = SECP256K1
            .recover_ecdsa(&signed_message(&static_shared, &body.nonce), &sig)
            .map_err(|_| HandshakeError::InvalidSignature)?;

        if let Some(hash) = ephemeral_hash {
            let actual: [u8; 32] = keccak256(&NodeId::from_pubkey(&remote_ephemeral).0);
            if actual != hash {
                return Err(HandshakeError::Malformed(
                    "legacy auth ephemeral-key hash mismatch",
                ));
            }
        }
        Ok(ReceivedAuth {
            format,
            body,
            remote_pubkey,
            remote_ephemeral,
            packet: packet.to_vec(),
        })
    }

    /// The ack body we answer with.
    pub fn ack_body(&self) -> AckBody {
        AckBody {
            ephemeral_id: NodeId::from_secret(&self.ephemeral_key),
            nonce: self.nonce,
            version: HANDSHAKE_VERSION,
        }
    }

    /// A complete ack packet in the auth's format (EIP-8 padded and prefixed, or
    /// legacy 210 bytes). Keep the exact bytes: [`Recipient::secrets`] needs them.
    pub fn ack_packet(&self, auth: &ReceivedAuth) -> Result<Vec<u8>, HandshakeError> {
        let body = self.ack_body();
        match auth.format {
            WireFormat::Eip8 => packets::seal_eip8(&auth.remote_pubkey, &body.to_rlp()),
            WireFormat::Legacy => Ok(packets::seal_legacy(&auth.remote_pubkey, &body.to_legacy())),
        }
    }

    /// The session secrets, given the parsed auth and our ack exactly as sent.
    pub fn secrets(&self, auth: &ReceivedAuth, sent_ack: &[u8]) -> Secrets {
        Secrets::derive(SecretsInput {
            ephemeral_shared: Zeroizing::new(ecdh_x(&auth.remote_ephemeral, &self.ephemeral_key)),
            initiator_nonce: &auth.body.nonce,
            recipient_nonce: &self.nonce,
            we_initiated: false,
            sent: sent_ack,
            received: &auth.packet,
            remote_id: auth.body.initiator_id,
        })
    }
}

impl Drop for Initiator {
    fn drop(&mut self) {
        wipe(&mut self.our_key, &mut self.ephemeral_key, &mut self.nonce);
    }
}

impl Drop for Recipient {
    fn drop(&mut self) {
        wipe(&mut self.our_key, &mut self.ephemeral_key, &mut self.nonce);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_byte_array(&[byte; 32]).unwrap()
    }

    /// The wipe that `Drop` runs, observed on a live value (reading the memory of a
    /// dropped one would be undefined behaviour): no byte of either key or the nonce
    /// survives it.
    #[test]
    fn wipe_overwrites_keys_and_nonce() {
        let remote = NodeId::from_secret(&key(9));
        let mut init = Initiator::new(&key(7), &remote, key(8), [0x5a; 32]).unwrap();
        wipe(&mut init.our_key, &mut init.ephemeral_key, &mut init.nonce);
        assert_ne!(init.our_key.secret_bytes(), [7; 32]);
        assert_ne!(init.ephemeral_key.secret_bytes(), [8; 32]);
        assert_eq!(init.nonce, [0; 32]);

        let mut resp = Recipient::new(&key(7), key(8), [0x5a; 32]);
        wipe(&mut resp.our_key, &mut resp.ephemeral_key, &mut resp.nonce);
        assert_ne!(resp.our_key.secret_bytes(), [7; 32]);
        assert_ne!(resp.ephemeral_key.secret_bytes(), [8; 32]);
        assert_eq!(resp.nonce, [0; 32]);
    }
}
