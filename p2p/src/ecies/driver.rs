//! The async handshake over a byte stream. No timeouts here: the caller bounds the
//! whole handshake with one deadline. Reads take exactly the packet's bytes, so
//! whatever the peer sends next stays in the stream for the frame layer.

use secp256k1::SecretKey;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::handshake::{Initiator, Recipient};
use super::packets::{self, LEGACY_ACK_LEN, LEGACY_AUTH_LEN, SIZE_PREFIX_LEN};
use super::{HandshakeError, Secrets, MAX_HANDSHAKE_PACKET};
use crate::node::NodeId;

/// Initiator side: send an EIP-8 auth, read the ack (EIP-8, or a legacy 210-byte
/// ack), derive the secrets. `remote` is the node we dialed; a peer that does not
/// hold its key cannot produce an ack we can decrypt.
pub async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    our_key: &SecretKey,
    remote: &NodeId,
) -> Result<Secrets, HandshakeError> {
    let initiator = Initiator::random(our_key, remote)?;
    let auth = initiator.auth_packet()?;
    initiate_with(io, &initiator, &auth).await
}

/// Initiator side with an auth packet the caller built from `initiator`: a legacy
/// (pre-EIP-8) auth from [`Initiator::legacy_auth_packet`], or an EIP-8 body with extra
/// fields for conformance tests. Sends `auth` as it is, reads the ack (either format)
/// and derives the secrets from the bytes exactly as sent.
pub async fn initiate_with<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    initiator: &Initiator,
    auth: &[u8],
) -> Result<Secrets, HandshakeError> {
    io.write_all(auth).await?;
    io.flush().await?;

    let our_key = initiator.our_key();
    let ack = read_packet(io, LEGACY_ACK_LEN, |p| {
        packets::open_legacy(our_key, p).is_ok()
    })
    .await?;
    let ack = initiator.read_ack(&ack)?;
    tracing::debug!(remote = %initiator.remote_id(), format = ?ack.format, "ecies handshake done (initiator)");
    Ok(initiator.secrets(auth, &ack))
}

/// Recipient side: read an auth (EIP-8 or legacy), answer with an ack in the same
/// format, derive the secrets. The remote id comes from the authenticated auth.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    our_key: &SecretKey,
) -> Result<Secrets, HandshakeError> {
    let recipient = Recipient::random(our_key);
    let auth = read_packet(io, LEGACY_AUTH_LEN, |p| {
        packets::open_legacy(our_key, p).is_ok()
    })
    .await?;
    let auth = recipient.read_auth(&auth)?;
    let ack = recipient.ack_packet(&auth)?;
    io.write_all(&ack).await?;
    io.flush().await?;
    tracing::debug!(remote = %auth.remote_id(), format = ?auth.format, "ecies handshake done (recipient)");
    Ok(recipient.secrets(&auth, &ack))
}

/// Reads one handshake packet, EIP-8 or legacy, taking no more bytes than it has.
///
/// EIP-8 says: read the legacy length, try it as legacy, else treat the first two
/// bytes as the size. We refine that so short EIP-8 packets never stall: the size
/// is read first and checked against [`MAX_HANDSHAKE_PACKET`] before anything else
/// is read or allocated. A legacy packet starts with ECIES `R`'s 0x04, so read as a
/// size it claims 1024..=1279 bytes, more than the legacy length; only then do we
/// read up to `legacy_len` and ask `is_legacy` whether it authenticates as legacy.
async fn read_packet<S: AsyncRead + Unpin>(
    io: &mut S,
    legacy_len: usize,
    is_legacy: impl Fn(&[u8]) -> bool,
) -> Result<Vec<u8>, HandshakeError> {
    let mut prefix = [0u8; SIZE_PREFIX_LEN];
    read_exact(io, &mut prefix).await?;
    let size = usize::from(u16::from_be_bytes(prefix));
    if size > MAX_HANDSHAKE_PACKET {
        return Err(HandshakeError::PacketTooLarge {
            size,
            max: MAX_HANDSHAKE_PACKET,
        });
    }
    let total = SIZE_PREFIX_LEN + size;
    let mut packet = Vec::with_capacity(total.max(legacy_len));
    packet.extend_from_slice(&prefix);

    if prefix[0] == 0x04 && total >= legacy_len {
        packet.resize(legacy_len, 0);
        read_exact(io, &mut packet[SIZE_PREFIX_LEN..]).await?;
        if is_legacy(&packet) {
            return Ok(packet);
        }
    }
    let have = packet.len();
    packet.resize(total, 0);
    read_exact(io, &mut packet[have..]).await?;
    Ok(packet)
}

/// `read_exact` with a stream that ends early reported as [`HandshakeError::UnexpectedEof`].
async fn read_exact<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut [u8],
) -> Result<(), HandshakeError> {
    match io.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(HandshakeError::UnexpectedEof)
        }
        Err(e) => Err(e.into()),
    }
}
