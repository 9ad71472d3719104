//! Disconnect reasons (message 0x01) and their payload encodings.

use super::items;
use super::{BaseError, RlpProblem};
use crate::message::Snappy;
use rlp::{Rlp, RlpStream};

/// A legitimate Disconnect payload is at most three bytes (`c1 81 xx` would already
/// be non-canonical); anything that claims to decompress to more is not one.
const MAX_DISCONNECT_DECOMPRESSED: usize = 64;

/// Why a peer is being (or was) disconnected, with the spec's wire codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[repr(u8)]
pub enum DisconnectReason {
    /// 0x00: disconnect requested.
    DisconnectRequested = 0x00,
    /// 0x01: TCP sub-system error.
    TcpSubsystemError = 0x01,
    /// 0x02: breach of protocol.
    ProtocolBreach = 0x02,
    /// 0x03: useless peer.
    UselessPeer = 0x03,
    /// 0x04: too many peers.
    TooManyPeers = 0x04,
    /// 0x05: already connected.
    AlreadyConnected = 0x05,
    /// 0x06: incompatible P2P protocol version.
    IncompatibleP2PVersion = 0x06,
    /// 0x07: null node identity received.
    NullNodeIdentity = 0x07,
    /// 0x08: client quitting.
    ClientQuitting = 0x08,
    /// 0x09: unexpected identity in handshake.
    UnexpectedIdentity = 0x09,
    /// 0x0a: identity is the same as this node.
    ConnectedToSelf = 0x0a,
    /// 0x0b: ping timeout.
    PingTimeout = 0x0b,
    /// 0x10: some other reason specific to a subprotocol.
    SubprotocolError = 0x10,
}

impl DisconnectReason {
    /// Every reason, in code order.
    pub const ALL: [DisconnectReason; 13] = [
        DisconnectReason::DisconnectRequested,
        DisconnectReason::TcpSubsystemError,
        DisconnectReason::ProtocolBreach,
        DisconnectReason::UselessPeer,
        DisconnectReason::TooManyPeers,
        DisconnectReason::AlreadyConnected,
        DisconnectReason::IncompatibleP2PVersion,
        DisconnectReason::NullNodeIdentity,
        DisconnectReason::ClientQuitting,
        DisconnectReason::UnexpectedIdentity,
        DisconnectReason::ConnectedToSelf,
        DisconnectReason::PingTimeout,
        DisconnectReason::SubprotocolError,
    ];

    /// The wire code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The reason for a wire code, `None` if the code is not in the spec's table.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The spec's description of this reason.
    pub fn text(self) -> &'static str {
        match self {
            DisconnectReason::DisconnectRequested => "disconnect requested",
            DisconnectReason::TcpSubsystemError => "TCP sub-system error",
            DisconnectReason::ProtocolBreach => "breach of protocol",
            DisconnectReason::UselessPeer => "useless peer",
            DisconnectReason::TooManyPeers => "too many peers",
            DisconnectReason::AlreadyConnected => "already connected",
            DisconnectReason::IncompatibleP2PVersion => "incompatible P2P protocol version",
            DisconnectReason::NullNodeIdentity => "null node identity received",
            DisconnectReason::ClientQuitting => "client quitting",
            DisconnectReason::UnexpectedIdentity => "unexpected identity in handshake",
            DisconnectReason::ConnectedToSelf => "identity is the same as this node",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::SubprotocolError => "subprotocol-specific reason",
        }
    }

    /// The uncompressed payload `rlp([reason])`, as geth and reth send it:
    /// e.g. `c1 04`; reason 0 is the empty integer, `c1 80`.
    pub fn encode(self) -> Vec<u8> {
        let mut s = RlpStream::new_list(1);
        s.append(&self.code());
        s.out().to_vec()
    }

    /// Decodes an uncompressed Disconnect payload.
    ///
    /// Accepted: the list form `[reason]` (`c1 04`), the bare integer (`04`), the byte
    /// `00` for reason 0 in either form (older geth wrote it; reth accepts it), and the
    /// empty list `c0`, read as "disconnect requested". reth rejects `c0`; we accept it
    /// because the peer is leaving anyway and a reason is only informational.
    /// Anything else, including an unknown code, is a typed error.
    pub fn decode(payload: &[u8]) -> Result<Self, BaseError> {
        const CONTEXT: &str = "disconnect";
        if payload.is_empty() {
            return Err(BaseError::rlp(CONTEXT, "empty payload"));
        }
        let top = items::whole(payload, CONTEXT)?;
        let reason = if top.is_list() {
            match items::list(&top, CONTEXT)?.as_slice() {
                [] => return Ok(DisconnectReason::DisconnectRequested),
                [reason] => reason.clone(),
                more => {
                    return Err(BaseError::rlp(
                        CONTEXT,
                        RlpProblem::ItemCount {
                            expected: "one reason",
                            got: more.len(),
                        },
                    ))
                }
            }
        } else {
            top
        };
        Self::decode_code(&reason)
    }

    fn decode_code(item: &Rlp<'_>) -> Result<Self, BaseError> {
        // `00` is a non-canonical zero that the integer decoder refuses; it is what
        // geth used to send for reason 0, so it is accepted here explicitly.
        if item.as_raw() == [0x00] {
            return Ok(DisconnectReason::DisconnectRequested);
        }
        if item.is_list() {
            return Err(BaseError::rlp("disconnect", "reason is a list"));
        }
        let code: u8 = item.as_val().map_err(|e| BaseError::rlp("disconnect", e))?;
        Self::from_code(code).ok_or(BaseError::UnknownReason(code))
    }

    /// Disconnect payload as it may arrive: snappy-compressed or not. If `snappy` is on, try
    /// decompressing first; if that fails or doesn't decode, fall back to the raw bytes.
    ///
    /// Both attempts are needed because a Disconnect may be sent before the Hello
    /// exchange (uncompressed, e.g. geth's "too many peers") or after it (compressed).
    /// The two forms cannot be confused: no uncompressed reason is a valid snappy block
    /// that decompresses to a valid reason.
    pub fn decode_lenient(payload: &[u8], snappy: Option<&mut Snappy>) -> Result<Self, BaseError> {
        let mut decompressed_err = None;
        if let Some(snappy) = snappy {
            if let Ok(raw) = snappy.decompress(payload, MAX_DISCONNECT_DECOMPRESSED) {
                match Self::decode(&raw) {
                    Ok(reason) => return Ok(reason),
                    Err(e) => decompressed_err = Some(e),
                }
            }
        }
        // If the payload was a valid snappy block but held a bad reason (say an
        // unknown code), that is the more telling error than the raw-bytes one.
        Self::decode(payload).map_err(|raw_err| match decompressed_err {
            Some(e @ BaseError::UnknownReason(_)) => e,
            _ => raw_err,
        })
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (0x{:02x})", self.text(), self.code())
    }
}

impl std::error::Error for DisconnectReason {}
