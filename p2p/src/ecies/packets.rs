//! Auth and ack packet bodies in both wire formats, and their sealing into packets.
//!
//! EIP-8: `size(2, BE) ‖ ECIES(rlp-list ‖ padding, authdata = size)`, where `size` is
//! the ECIES ciphertext length.
//! - auth list: `[sig(65), initiator-pubk(64), initiator-nonce(32), version, ...]`
//! - ack list:  `[recipient-ephemeral-pubk(64), recipient-nonce(32), version, ...]`
//!
//! Legacy (pre-EIP-8), no prefix, empty authdata:
//! - auth: `ECIES(sig(65) ‖ keccak(ephemeral-pubk)(32) ‖ pubk(64) ‖ nonce(32) ‖ 0x00)`, 307 bytes
//! - ack:  `ECIES(ephemeral-pubk(64) ‖ nonce(32) ‖ 0x00)`, 210 bytes
//!
//! Receivers ignore the version value, extra list elements and anything after the
//! list, as EIP-8 requires for forward compatibility.

use rand::{Rng, RngCore};
use rlp::{Rlp, RlpStream};
use secp256k1::{PublicKey, SecretKey};

use super::crypt::{self, ECIES_OVERHEAD};
use super::{HandshakeError, MAX_HANDSHAKE_PACKET};
use crate::node::NodeId;

/// The auth/ack version we send (receivers ignore it).
pub const HANDSHAKE_VERSION: u64 = 4;
/// Length of a legacy (pre-EIP-8) auth packet.
pub const LEGACY_AUTH_LEN: usize = LEGACY_AUTH_BODY_LEN + ECIES_OVERHEAD;
/// Length of a legacy (pre-EIP-8) ack packet.
pub const LEGACY_ACK_LEN: usize = LEGACY_ACK_BODY_LEN + ECIES_OVERHEAD;
/// Length of the EIP-8 size prefix.
pub const SIZE_PREFIX_LEN: usize = 2;
/// Least random padding appended to an EIP-8 body (EIP-8: "at least 100 bytes").
pub const MIN_PADDING: usize = 100;
/// Most random padding appended to an EIP-8 body (EIP-8 recommends 100..=300).
pub const MAX_PADDING: usize = 300;

const LEGACY_AUTH_BODY_LEN: usize = 65 + 32 + 64 + 32 + 1;
const LEGACY_ACK_BODY_LEN: usize = 64 + 32 + 1;

/// Which packet layout a handshake message used; the recipient answers in kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// EIP-8: size-prefixed, RLP body, random padding.
    Eip8,
    /// Pre-EIP-8 fixed layout (307-byte auth, 210-byte ack).
    Legacy,
}

/// The decoded contents of an auth message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthBody {
    /// Recoverable signature `r ‖ s ‖ v` by the initiator's ephemeral key over
    /// `static-shared-secret XOR initiator-nonce`.
    pub signature: [u8; 65],
    /// The initiator's static node id.
    pub initiator_id: NodeId,
    /// The initiator's nonce.
    pub nonce: [u8; 32],
    /// The version the sender claims (legacy packets report [`HANDSHAKE_VERSION`]).
    pub version: u64,
}

/// The decoded contents of an ack message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckBody {
    /// The recipient's ephemeral public key.
    pub ephemeral_id: NodeId,
    /// The recipient's nonce.
    pub nonce: [u8; 32],
    /// The version the sender claims (legacy packets report [`HANDSHAKE_VERSION`]).
    pub version: u64,
}

impl AuthBody {
    /// RLP list `[sig, pubk, nonce, version]` (without padding).
    pub fn to_rlp(&self) -> Vec<u8> {
        let mut s = RlpStream::new_list(4);
        s.append(&&self.signature[..]);
        s.append(&&self.initiator_id.0[..]);
        s.append(&&self.nonce[..]);
        s.append(&self.version);
        s.out().to_vec()
    }

    /// Decodes an EIP-8 auth plaintext (RLP list, then ignored padding).
    pub fn from_rlp(plaintext: &[u8]) -> Result<Self, HandshakeError> {
        let list = first_list(plaintext)?;
        Ok(AuthBody {
            signature: fixed(&list, 0, "auth signature")?,
            initiator_id: NodeId(fixed(&list, 1, "auth public key")?),
            nonce: fixed(&list, 2, "auth nonce")?,
            version: version(&list, 3)?,
        })
    }

    /// The legacy fixed layout; `ephemeral_hash` = keccak256 of the initiator's
    /// ephemeral node id.
    pub fn to_legacy(&self, ephemeral_hash: &[u8; 32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEGACY_AUTH_BODY_LEN);
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(ephemeral_hash);
        out.extend_from_slice(&self.initiator_id.0);
        out.extend_from_slice(&self.nonce);
        out.push(0x00); // "token flag": no session token
        out
    }

    /// Decodes a legacy auth plaintext; returns the body and the claimed
    /// keccak256 of the initiator's ephemeral node id.
    pub fn from_legacy(plaintext: &[u8]) -> Result<(Self, [u8; 32]), HandshakeError> {
        let body: &[u8; LEGACY_AUTH_BODY_LEN] = plaintext
            .try_into()
            .map_err(|_| HandshakeError::Malformed("legacy auth has the wrong length"))?;
        let (signature, rest) = split::<65>(body);
        let (hash, rest) = split::<32>(rest);
        let (id, rest) = split::<64>(rest);
        let (nonce, _token_flag) = split::<32>(rest);
        Ok((
            AuthBody {
                signature,
                initiator_id: NodeId(id),
                nonce,
                version: HANDSHAKE_VERSION,
            },
            hash,
        ))
    }
}

impl AckBody {
    /// RLP list `[ephemeral-pubk, nonce, version]` (without padding).
    pub fn to_rlp(&self) -> Vec<u8> {
        let mut s = RlpStream::new_list(3);
        s.append(&&self.ephemeral_id.0[..]);
        s.append(&&self.nonce[..]);
        s.append(&self.version);
        s.out().to_vec()
    }

    /// Decodes an EIP-8 ack plaintext (RLP list, then ignored padding).
    pub fn from_rlp(plaintext: &[u8]) -> Result<Self, HandshakeError> {
        let list = first_list(plaintext)?;
        Ok(AckBody {
            ephemeral_id: NodeId(fixed(&list, 0, "ack ephemeral key")?),
            nonce: fixed(&list, 1, "ack nonce")?,
            version: version(&list, 2)?,
        })
    }

    /// The legacy fixed layout.
    pub fn to_legacy(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEGACY_ACK_BODY_LEN);
        out.extend_from_slice(&self.ephemeral_id.0);
        out.extend_from_slice(&self.nonce);
        out.push(0x00); // "token flag"
        out
    }

    /// Decodes a legacy ack plaintext.
    pub fn from_legacy(plaintext: &[u8]) -> Result<Self, HandshakeError> {
        let body: &[u8; LEGACY_ACK_BODY_LEN] = plaintext
            .try_into()
            .map_err(|_| HandshakeError::Malformed("legacy ack has the wrong length"))?;
        let (id, rest) = split::<64>(body);
        let (nonce, _token_flag) = split::<32>(rest);
        Ok(AckBody {
            ephemeral_id: NodeId(id),
            nonce,
            version: HANDSHAKE_VERSION,
        })
    }
}

/// Splits `N` bytes off the front of a slice already known to be long enough
/// (callers pass fixed-size arrays whose lengths add up); never panics.
fn split<const N: usize>(bytes: &[u8]) -> ([u8; N], &[u8]) {
    match bytes.split_first_chunk::<N>() {
        Some((head, rest)) => (*head, rest),
        None => ([0u8; N], &[]),
    }
}

/// The first RLP item of `plaintext`, which must be a list; trailing bytes
/// (EIP-8 padding) are cut off before the list is looked at.
fn first_list(plaintext: &[u8]) -> Result<Rlp<'_>, HandshakeError> {
    let info = Rlp::new(plaintext).payload_info()?;
    let end = info
        .header_len
        .checked_add(info.value_len)
        .ok_or(HandshakeError::Malformed("RLP length overflows"))?;
    let bytes = plaintext
        .get(..end)
        .ok_or(HandshakeError::Malformed("RLP list longer than the packet"))?;
    let list = Rlp::new(bytes);
    if !list.is_list() {
        return Err(HandshakeError::Malformed(
            "handshake body is not an RLP list",
        ));
    }
    Ok(list)
}

/// List element `index` as a byte string of exactly `N` bytes.
fn fixed<const N: usize>(
    list: &Rlp<'_>,
    index: usize,
    what: &'static str,
) -> Result<[u8; N], HandshakeError> {
    let item = list
        .at(index)
        .map_err(|_| HandshakeError::Malformed(what))?;
    if !item.is_data() {
        return Err(HandshakeError::Malformed(what));
    }
    let data = item.data().map_err(|_| HandshakeError::Malformed(what))?;
    data.try_into().map_err(|_| HandshakeError::Malformed(what))
}

/// The version element: it must be present and be a byte string, but its value is
/// only informational (EIP-8: ignore it), so values wider than 64 bits saturate.
fn version(list: &Rlp<'_>, index: usize) -> Result<u64, HandshakeError> {
    let item = list
        .at(index)
        .map_err(|_| HandshakeError::Malformed("handshake version missing"))?;
    if !item.is_data() {
        return Err(HandshakeError::Malformed(
            "handshake version is not a byte string",
        ));
    }
    let data = item
        .data()
        .map_err(|_| HandshakeError::Malformed("handshake version"))?;
    let significant = data
        .iter()
        .position(|&b| b != 0)
        .and_then(|start| data.get(start..))
        .unwrap_or(&[]);
    if significant.len() > 8 {
        return Ok(u64::MAX);
    }
    Ok(significant
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// Seals an EIP-8 body: appends 100..=300 random padding bytes, encrypts to
/// `remote` with the size prefix as authdata, and returns `prefix ‖ ciphertext`.
pub fn seal_eip8(remote: &PublicKey, body: &[u8]) -> Result<Vec<u8>, HandshakeError> {
    let mut rng = rand::thread_rng();
    let mut padding = vec![0u8; rng.gen_range(MIN_PADDING..=MAX_PADDING)];
    rng.fill_bytes(&mut padding);
    let mut plaintext = Vec::with_capacity(body.len() + padding.len());
    plaintext.extend_from_slice(body);
    plaintext.extend_from_slice(&padding);
    let size = eip8_size(plaintext.len())?;
    let mut packet = size.to_vec();
    packet.extend_from_slice(&crypt::encrypt(remote, &plaintext, &size));
    Ok(packet)
}

/// Deterministic [`seal_eip8`]: the caller gives the exact plaintext (body and
/// padding), the ECIES ephemeral key and IV. For tests.
pub fn seal_eip8_with(
    remote: &PublicKey,
    plaintext: &[u8],
    ecies_key: &SecretKey,
    iv: &[u8; 16],
) -> Result<Vec<u8>, HandshakeError> {
    let size = eip8_size(plaintext.len())?;
    let mut packet = size.to_vec();
    packet.extend_from_slice(&crypt::encrypt_with(
        remote, plaintext, &size, ecies_key, iv,
    ));
    Ok(packet)
}

/// The size prefix for a plaintext of `len` bytes, refusing what the peer would refuse.
fn eip8_size(len: usize) -> Result<[u8; 2], HandshakeError> {
    let size = len.saturating_add(ECIES_OVERHEAD);
    if size > MAX_HANDSHAKE_PACKET {
        return Err(HandshakeError::PacketTooLarge {
            size,
            max: MAX_HANDSHAKE_PACKET,
        });
    }
    u16::try_from(size)
        .map(u16::to_be_bytes)
        .map_err(|_| HandshakeError::PacketTooLarge {
            size,
            max: MAX_HANDSHAKE_PACKET,
        })
}

/// Opens a complete EIP-8 packet (`prefix ‖ ciphertext`) addressed to `our_key`.
/// The prefix must match the remaining length and be within [`MAX_HANDSHAKE_PACKET`].
pub fn open_eip8(our_key: &SecretKey, packet: &[u8]) -> Result<Vec<u8>, HandshakeError> {
    let (prefix, ciphertext) = packet
        .split_first_chunk::<SIZE_PREFIX_LEN>()
        .ok_or(HandshakeError::UnexpectedEof)?;
    let size = usize::from(u16::from_be_bytes(*prefix));
    if size > MAX_HANDSHAKE_PACKET {
        return Err(HandshakeError::PacketTooLarge {
            size,
            max: MAX_HANDSHAKE_PACKET,
        });
    }
    if ciphertext.len() != size {
        return Err(HandshakeError::Malformed(
            "size prefix does not match the packet length",
        ));
    }
    crypt::decrypt(our_key, ciphertext, prefix)
}

/// Whether `packet`'s first two bytes, read as an EIP-8 size prefix, match its
/// length. A legacy packet starts with `R`'s 0x04, claiming 1024..=1279 bytes,
/// so this tells the two formats apart for a packet of legacy length.
pub(crate) fn eip8_prefix_matches(packet: &[u8]) -> bool {
    match packet.split_first_chunk::<SIZE_PREFIX_LEN>() {
        Some((prefix, rest)) => usize::from(u16::from_be_bytes(*prefix)) == rest.len(),
        None => false,
    }
}

/// Seals a legacy body (no prefix, empty authdata).
pub fn seal_legacy(remote: &PublicKey, body: &[u8]) -> Vec<u8> {
    crypt::encrypt(remote, body, &[])
}

/// Opens a legacy packet (no prefix, empty authdata).
pub fn open_legacy(our_key: &SecretKey, packet: &[u8]) -> Result<Vec<u8>, HandshakeError> {
    crypt::decrypt(our_key, packet, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> AuthBody {
        AuthBody {
            signature: [1; 65],
            initiator_id: NodeId([2; 64]),
            nonce: [3; 32],
            version: HANDSHAKE_VERSION,
        }
    }

    #[test]
    fn rlp_round_trip_ignores_padding_and_extras() {
        let mut bytes = auth().to_rlp();
        bytes.extend_from_slice(&[0xff; 120]);
        assert_eq!(AuthBody::from_rlp(&bytes).unwrap(), auth());

        let mut s = RlpStream::new_list(5);
        s.append(&&[9u8; 64][..]);
        s.append(&&[8u8; 32][..]);
        s.append(&&[1u8; 9][..]); // version wider than u64: saturates, not an error
        s.begin_list(0);
        s.append(&"extra");
        let ack = AckBody::from_rlp(&s.out()).unwrap();
        assert_eq!(ack.ephemeral_id, NodeId([9; 64]));
        assert_eq!(ack.version, u64::MAX);
    }

    #[test]
    fn rlp_rejects_wrong_shapes() {
        let mut s = RlpStream::new_list(3);
        s.append(&&[1u8; 64][..]); // signature too short
        s.append(&&[2u8; 64][..]);
        s.append(&&[3u8; 32][..]);
        assert!(matches!(
            AuthBody::from_rlp(&s.out()),
            Err(HandshakeError::Malformed(_))
        ));
        // Missing version.
        let mut s = RlpStream::new_list(2);
        s.append(&&[1u8; 64][..]);
        s.append(&&[2u8; 32][..]);
        assert!(matches!(
            AckBody::from_rlp(&s.out()),
            Err(HandshakeError::Malformed(_))
        ));
        // Not a list, empty, and a list header claiming more than there is.
        for bad in [&b"\x83abc"[..], &[][..], &[0xf9, 0xff, 0xff, 0xc0][..]] {
            assert!(matches!(
                AckBody::from_rlp(bad),
                Err(HandshakeError::Malformed(_))
            ));
        }
    }

    #[test]
    fn legacy_round_trip() {
        let plain = auth().to_legacy(&[7; 32]);
        assert_eq!(plain.len() + ECIES_OVERHEAD, LEGACY_AUTH_LEN);
        assert_eq!(AuthBody::from_legacy(&plain).unwrap(), (auth(), [7; 32]));
        assert!(AuthBody::from_legacy(&plain[1..]).is_err());
        let ack = AckBody {
            ephemeral_id: NodeId([5; 64]),
            nonce: [6; 32],
            version: HANDSHAKE_VERSION,
        };
        assert_eq!(ack.to_legacy().len() + ECIES_OVERHEAD, LEGACY_ACK_LEN);
        assert_eq!(AckBody::from_legacy(&ack.to_legacy()).unwrap(), ack);
    }

    #[test]
    fn open_eip8_checks_prefix() {
        let key = SecretKey::from_byte_array(&[4; 32]).unwrap();
        let big = [0xff, 0xff, 0, 0];
        assert!(matches!(
            open_eip8(&key, &big),
            Err(HandshakeError::PacketTooLarge {
                size: 0xffff,
                max: MAX_HANDSHAKE_PACKET
            })
        ));
        assert!(matches!(
            open_eip8(&key, &[0x01]),
            Err(HandshakeError::UnexpectedEof)
        ));
        assert!(matches!(
            open_eip8(&key, &[0x00, 0x05, 1]),
            Err(HandshakeError::Malformed(_))
        ));
    }
}
