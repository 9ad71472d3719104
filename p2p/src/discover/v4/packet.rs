//! discv4 packets: encoding (signing) and decoding (verification) of the six packet types.
//!
//! A packet is `hash || signature || packet-type || packet-data`:
//! - `hash` (32 bytes) = keccak256(`signature || packet-type || packet-data`), an integrity
//!   check only (anyone can compute it), used by replies to name the packet they answer;
//! - `signature` (65 bytes, `r || s || recovery-id`) signs keccak256(`packet-type ||
//!   packet-data`) with the sender's node key; recovering it yields the sender's
//!   [`NodeId`], which is how discv4 authenticates;
//! - `packet-type` is one byte (1..=6);
//! - `packet-data` is one RLP list.
//!
//! EIP-8 forward compatibility: list elements beyond the known ones are accepted (and kept
//! as raw RLP in `rest`), bytes after the RLP list are ignored, and an unknown packet type
//! is a [`DecodeError::UnknownType`] the caller should drop without further ado.
//!
//! Hostile input: the 1280-byte limit is checked before anything else; every field has a
//! typed error; nothing is allocated from a length the packet claims (all lengths are
//! bounded by the datagram, itself at most 1280 bytes). The cheap checks (size, hash, type,
//! RLP) run before the expensive one (signature recovery).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rlp::{DecoderError, PayloadInfo, Rlp, RlpStream};
use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use secp256k1::{Message as SecpMessage, SecretKey, SECP256K1};
use sha3::{Digest, Keccak256};

use crate::node::NodeId;

/// The largest datagram discv4 sends or accepts (the spec's limit, from IPv6's minimum MTU).
pub const MAX_PACKET_SIZE: usize = 1280;
/// Bytes before the packet type: the hash (32) and the signature (65).
pub const HEADER_SIZE: usize = 32 + 65;
/// The largest node record EIP-778 allows; a larger one in an `ENRResponse` is rejected.
pub const MAX_ENR_SIZE: usize = 300;
/// The `version` a `Ping` carries.
pub const PING_VERSION: u64 = 4;
/// How many nodes always fit one `Neighbors` packet, even when every node is IPv6: larger
/// answers must be split over several packets.
pub const MAX_NEIGHBORS: usize = 12;
/// How far in the future (seconds) to set a packet's expiration, as go-ethereum does.
pub const EXPIRATION_SECS: u64 = 20;

/// The six discv4 packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketKind {
    /// `Ping` (0x01).
    Ping = 1,
    /// `Pong` (0x02).
    Pong = 2,
    /// `FindNode` (0x03).
    FindNode = 3,
    /// `Neighbors` (0x04).
    Neighbors = 4,
    /// `ENRRequest` (0x05, EIP-868).
    EnrRequest = 5,
    /// `ENRResponse` (0x06, EIP-868).
    EnrResponse = 6,
}

impl PacketKind {
    /// The packet type for a type byte, if it is one of the six known ones.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Ping,
            2 => Self::Pong,
            3 => Self::FindNode,
            4 => Self::Neighbors,
            5 => Self::EnrRequest,
            6 => Self::EnrResponse,
            _ => return None,
        })
    }
}

/// An endpoint as packets carry it: `[ip, udp-port, tcp-port]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The IP address (4 or 16 bytes on the wire; IPv4-mapped IPv6 is read as IPv4).
    pub ip: IpAddr,
    /// The UDP (discovery) port.
    pub udp_port: u16,
    /// The TCP (RLPx) port; 0 when the node does not accept connections.
    pub tcp_port: u16,
}

/// `Ping`: `[version, from, to, expiration, enr-seq?, ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    /// Protocol version; [`PING_VERSION`] when we send it, not checked when received.
    pub version: u64,
    /// The sender's endpoint as it believes it to be (informational only).
    pub from: Endpoint,
    /// The recipient's endpoint as the sender sees it.
    pub to: Endpoint,
    /// Unix time (seconds) after which the packet must be ignored.
    pub expiration: u64,
    /// The sender's current ENR sequence number (EIP-868), if it has a record.
    pub enr_seq: Option<u64>,
    /// Elements after the known ones, each one raw RLP item (EIP-8). Only encoded when
    /// `enr_seq` is set, since otherwise the first would be read back as the sequence.
    pub rest: Vec<Vec<u8>>,
}

/// `Pong`: `[to, ping-hash, expiration, enr-seq?, ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pong {
    /// The endpoint the `Ping` came from, as the sender of the `Pong` saw it.
    pub to: Endpoint,
    /// The hash of the `Ping` this answers.
    pub ping_hash: [u8; 32],
    /// Unix time (seconds) after which the packet must be ignored.
    pub expiration: u64,
    /// The sender's current ENR sequence number (EIP-868), if it has a record.
    pub enr_seq: Option<u64>,
    /// Elements after the known ones, each one raw RLP item; see [`Ping::rest`].
    pub rest: Vec<Vec<u8>>,
}

/// `FindNode`: `[target, expiration, ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindNode {
    /// The 64-byte id (public key) whose neighbours are asked for.
    pub target: NodeId,
    /// Unix time (seconds) after which the packet must be ignored.
    pub expiration: u64,
    /// Elements after the known ones, each one raw RLP item.
    pub rest: Vec<Vec<u8>>,
}

/// One node in a `Neighbors` packet: `[ip, udp-port, tcp-port, node-id, ...]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Neighbor {
    /// Where the node listens.
    pub endpoint: Endpoint,
    /// Its node id. Not checked to be a point on the curve: a caller that keeps the node
    /// checks that when it first uses it.
    pub id: NodeId,
}

/// `Neighbors`: `[[node, ...], expiration, ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbors {
    /// The nodes (at most [`MAX_NEIGHBORS`] fit when sending; a received packet can hold
    /// no more than its 1280 bytes allow).
    pub nodes: Vec<Neighbor>,
    /// Unix time (seconds) after which the packet must be ignored.
    pub expiration: u64,
    /// Elements after the known ones, each one raw RLP item.
    pub rest: Vec<Vec<u8>>,
}

/// `ENRRequest` (EIP-868): `[expiration, ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrRequest {
    /// Unix time (seconds) after which the packet must be ignored.
    pub expiration: u64,
    /// Elements after the known ones, each one raw RLP item.
    pub rest: Vec<Vec<u8>>,
}

/// `ENRResponse` (EIP-868): `[request-hash, ENR, ...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrResponse {
    /// The hash of the `ENRRequest` this answers.
    pub request_hash: [u8; 32],
    /// The node record as raw RLP (one list of at most [`MAX_ENR_SIZE`] bytes), not yet
    /// parsed or verified.
    pub enr: Vec<u8>,
    /// Elements after the known ones, each one raw RLP item.
    pub rest: Vec<Vec<u8>>,
}

/// Any discv4 packet body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// See [`Ping`].
    Ping(Ping),
    /// See [`Pong`].
    Pong(Pong),
    /// See [`FindNode`].
    FindNode(FindNode),
    /// See [`Neighbors`].
    Neighbors(Neighbors),
    /// See [`EnrRequest`].
    EnrRequest(EnrRequest),
    /// See [`EnrResponse`].
    EnrResponse(EnrResponse),
}

impl Message {
    /// This message's packet type.
    pub fn kind(&self) -> PacketKind {
        match self {
            Message::Ping(_) => PacketKind::Ping,
            Message::Pong(_) => PacketKind::Pong,
            Message::FindNode(_) => PacketKind::FindNode,
            Message::Neighbors(_) => PacketKind::Neighbors,
            Message::EnrRequest(_) => PacketKind::EnrRequest,
            Message::EnrResponse(_) => PacketKind::EnrResponse,
        }
    }

    /// The expiration time, for the five packets that carry one (`ENRResponse` does not).
    pub fn expiration(&self) -> Option<u64> {
        match self {
            Message::Ping(p) => Some(p.expiration),
            Message::Pong(p) => Some(p.expiration),
            Message::FindNode(p) => Some(p.expiration),
            Message::Neighbors(p) => Some(p.expiration),
            Message::EnrRequest(p) => Some(p.expiration),
            Message::EnrResponse(_) => None,
        }
    }

    /// Whether the packet has expired at `now_unix_secs` (see [`is_expired`]); a packet
    /// without an expiration never expires.
    pub fn is_expired(&self, now_unix_secs: u64) -> bool {
        self.expiration()
            .is_some_and(|e| is_expired(e, now_unix_secs))
    }
}

/// Whether a packet with this `expiration` must be ignored at `now_unix_secs`: its
/// expiration lies in the past.
pub fn is_expired(expiration: u64, now_unix_secs: u64) -> bool {
    expiration < now_unix_secs
}

/// The expiration to put in a packet sent at `now_unix_secs` ([`EXPIRATION_SECS`] later).
pub fn expiration_at(now_unix_secs: u64) -> u64 {
    now_unix_secs.saturating_add(EXPIRATION_SECS)
}

/// A verified, decoded packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The body.
    pub message: Message,
    /// The node id recovered from the signature.
    pub sender: NodeId,
    /// The packet hash (what a `Pong` or `ENRResponse` quotes back).
    pub hash: [u8; 32],
}

/// Why a datagram is not a valid discv4 packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Longer than [`MAX_PACKET_SIZE`].
    #[error("packet of {0} bytes exceeds the {MAX_PACKET_SIZE}-byte limit")]
    TooLarge(usize),
    /// Too short to hold the hash, the signature and the type.
    #[error("packet of {0} bytes is too short")]
    TooSmall(usize),
    /// The hash does not match the rest of the packet.
    #[error("packet hash mismatch")]
    BadHash,
    /// A type byte discv4 does not know: drop the packet silently (EIP-8).
    #[error("unknown packet type {0:#04x}")]
    UnknownType(u8),
    /// The signature is malformed or recovers to no key.
    #[error("invalid packet signature")]
    BadSignature,
    /// A field is not well-formed RLP of the expected shape.
    #[error("{field}: malformed RLP ({err})")]
    Rlp {
        /// Which field.
        field: &'static str,
        /// What the RLP decoder found.
        err: DecoderError,
    },
    /// A list ends before a required field.
    #[error("{0} missing")]
    Missing(&'static str),
    /// A fixed-size field has the wrong length (IPs are 4 or 16 bytes, ids 64, hashes 32).
    #[error("{field} has {len} bytes")]
    BadLength {
        /// Which field.
        field: &'static str,
        /// Its length on the wire.
        len: usize,
    },
    /// The node record in an `ENRResponse` is larger than [`MAX_ENR_SIZE`].
    #[error("node record of {0} bytes exceeds {MAX_ENR_SIZE}")]
    EnrTooLarge(usize),
}

impl DecodeError {
    /// True for [`DecodeError::UnknownType`], which EIP-8 says to drop without complaint.
    pub fn is_unknown_type(&self) -> bool {
        matches!(self, DecodeError::UnknownType(_))
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The packet would exceed [`MAX_PACKET_SIZE`] (split `Neighbors` into
    /// [`MAX_NEIGHBORS`]-node packets).
    #[error("packet of {0} bytes exceeds the {MAX_PACKET_SIZE}-byte limit")]
    TooLarge(usize),
    /// `rest` elements on a `Ping` or `Pong` without `enr_seq`: they would be read back as
    /// the sequence number.
    #[error("rest elements need enr_seq to be set")]
    RestWithoutEnrSeq,
    /// A raw field (`rest` element or ENR) is not exactly one RLP item (the ENR: one list).
    #[error("{0} is not a single RLP item")]
    BadRawItem(&'static str),
    /// The node record is larger than [`MAX_ENR_SIZE`].
    #[error("node record of {0} bytes exceeds {MAX_ENR_SIZE}")]
    EnrTooLarge(usize),
}

fn keccak256(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// Decodes and verifies one datagram: size, hash, type, body, then the signature.
pub fn decode(datagram: &[u8]) -> Result<Packet, DecodeError> {
    if datagram.len() > MAX_PACKET_SIZE {
        return Err(DecodeError::TooLarge(datagram.len()));
    }
    if datagram.len() <= HEADER_SIZE {
        return Err(DecodeError::TooSmall(datagram.len()));
    }
    let (hash, signed_part) = datagram.split_at(32);
    let hash: [u8; 32] = hash.try_into().expect("split at 32");
    if keccak256(signed_part) != hash {
        return Err(DecodeError::BadHash);
    }
    let (sig, typed_data) = signed_part.split_at(65);
    let kind =
        PacketKind::from_byte(typed_data[0]).ok_or(DecodeError::UnknownType(typed_data[0]))?;
    let message = decode_body(kind, &typed_data[1..])?;
    let sender = recover_sender(sig, &keccak256(typed_data))?;
    Ok(Packet {
        message,
        sender,
        hash,
    })
}

fn recover_sender(sig: &[u8], digest: &[u8; 32]) -> Result<NodeId, DecodeError> {
    let recid = RecoveryId::try_from(i32::from(sig[64])).map_err(|_| DecodeError::BadSignature)?;
    let sig = RecoverableSignature::from_compact(&sig[..64], recid)
        .map_err(|_| DecodeError::BadSignature)?;
    let key = SECP256K1
        .recover_ecdsa(&SecpMessage::from_digest(*digest), &sig)
        .map_err(|_| DecodeError::BadSignature)?;
    Ok(NodeId::from_pubkey(&key))
}

/// The elements of one RLP list, walked one raw item at a time so that every malformed
/// header is an error (the `rlp` crate's iterator stops silently) and nothing is collected
/// up front.
struct Items<'a> {
    rest: &'a [u8],
    list: &'static str,
}

/// The first RLP item in `bytes` (anything after it is ignored) and its total length.
fn first_item<'a>(
    bytes: &'a [u8],
    field: &'static str,
) -> Result<(&'a [u8], PayloadInfo), DecodeError> {
    let err = |err| DecodeError::Rlp { field, err };
    let info = PayloadInfo::from(bytes).map_err(err)?;
    let total = info
        .header_len
        .checked_add(info.value_len)
        .ok_or(err(DecoderError::RlpInvalidLength))?;
    if total > bytes.len() {
        return Err(err(DecoderError::RlpIsTooShort));
    }
    Ok((&bytes[..total], info))
}

impl<'a> Items<'a> {
    /// The elements of the list at the start of `bytes`; trailing bytes are ignored.
    fn of(bytes: &'a [u8], list: &'static str) -> Result<Self, DecodeError> {
        let (item, info) = first_item(bytes, list)?;
        if item[0] < 0xc0 {
            return Err(DecodeError::Rlp {
                field: list,
                err: DecoderError::RlpExpectedToBeList,
            });
        }
        Ok(Items {
            rest: &item[info.header_len..],
            list,
        })
    }

    fn next_item(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let (item, _) = first_item(self.rest, self.list)?;
        self.rest = &self.rest[item.len()..];
        Ok(Some(item))
    }

    fn required(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        self.next_item()?.ok_or(DecodeError::Missing(field))
    }

    /// The remaining elements, copied (bounded by the datagram's size).
    fn rest(mut self) -> Result<Vec<Vec<u8>>, DecodeError> {
        let mut out = Vec::new();
        while let Some(item) = self.next_item()? {
            out.push(item.to_vec());
        }
        Ok(out)
    }
}

fn uint<T: rlp::Decodable>(item: &[u8], field: &'static str) -> Result<T, DecodeError> {
    Rlp::new(item)
        .as_val()
        .map_err(|err| DecodeError::Rlp { field, err })
}

fn byte_string<'a>(item: &'a [u8], field: &'static str) -> Result<&'a [u8], DecodeError> {
    let rlp = Rlp::new(item);
    if !rlp.is_data() {
        return Err(DecodeError::Rlp {
            field,
            err: DecoderError::RlpExpectedToBeData,
        });
    }
    rlp.data().map_err(|err| DecodeError::Rlp { field, err })
}

fn fixed<const N: usize>(item: &[u8], field: &'static str) -> Result<[u8; N], DecodeError> {
    let data = byte_string(item, field)?;
    data.try_into().map_err(|_| DecodeError::BadLength {
        field,
        len: data.len(),
    })
}

fn ip(item: &[u8], field: &'static str) -> Result<IpAddr, DecodeError> {
    let data = byte_string(item, field)?;
    match data.len() {
        4 => Ok(IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(data).expect("4 bytes"),
        ))),
        16 => Ok(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(data).expect("16 bytes"),
        ))
        .to_canonical()),
        len => Err(DecodeError::BadLength { field, len }),
    }
}

fn endpoint(item: &[u8], field: &'static str) -> Result<Endpoint, DecodeError> {
    let mut items = Items::of(item, field)?;
    Ok(Endpoint {
        ip: ip(items.required("endpoint ip")?, "endpoint ip")?,
        udp_port: uint(items.required("endpoint udp port")?, "endpoint udp port")?,
        tcp_port: uint(items.required("endpoint tcp port")?, "endpoint tcp port")?,
    })
}

fn neighbor(item: &[u8]) -> Result<Neighbor, DecodeError> {
    let mut items = Items::of(item, "neighbor")?;
    let ip = ip(items.required("neighbor ip")?, "neighbor ip")?;
    let udp_port = uint(items.required("neighbor udp port")?, "neighbor udp port")?;
    let tcp_port = uint(items.required("neighbor tcp port")?, "neighbor tcp port")?;
    let id = NodeId(fixed(items.required("neighbor id")?, "neighbor id")?);
    Ok(Neighbor {
        endpoint: Endpoint {
            ip,
            udp_port,
            tcp_port,
        },
        id,
    })
}

/// The optional `enr-seq` of a `Ping`/`Pong` followed by the rest.
fn enr_seq_and_rest(mut items: Items<'_>) -> Result<(Option<u64>, Vec<Vec<u8>>), DecodeError> {
    match items.next_item()? {
        None => Ok((None, Vec::new())),
        Some(seq) => Ok((Some(uint(seq, "enr-seq")?), items.rest()?)),
    }
}

fn decode_body(kind: PacketKind, data: &[u8]) -> Result<Message, DecodeError> {
    let mut items = Items::of(data, "packet data")?;
    Ok(match kind {
        PacketKind::Ping => {
            let version = uint(items.required("version")?, "version")?;
            let from = endpoint(items.required("from")?, "from")?;
            let to = endpoint(items.required("to")?, "to")?;
            let expiration = uint(items.required("expiration")?, "expiration")?;
            let (enr_seq, rest) = enr_seq_and_rest(items)?;
            Message::Ping(Ping {
                version,
                from,
                to,
                expiration,
                enr_seq,
                rest,
            })
        }
        PacketKind::Pong => {
            let to = endpoint(items.required("to")?, "to")?;
            let ping_hash = fixed(items.required("ping-hash")?, "ping-hash")?;
            let expiration = uint(items.required("expiration")?, "expiration")?;
            let (enr_seq, rest) = enr_seq_and_rest(items)?;
            Message::Pong(Pong {
                to,
                ping_hash,
                expiration,
                enr_seq,
                rest,
            })
        }
        PacketKind::FindNode => {
            let target = NodeId(fixed(items.required("target")?, "target")?);
            let expiration = uint(items.required("expiration")?, "expiration")?;
            Message::FindNode(FindNode {
                target,
                expiration,
                rest: items.rest()?,
            })
        }
        PacketKind::Neighbors => {
            let mut list = Items::of(items.required("nodes")?, "nodes")?;
            // Grows only with nodes actually present: at most ~18 fit in 1280 bytes.
            let mut nodes = Vec::new();
            while let Some(node) = list.next_item()? {
                nodes.push(neighbor(node)?);
            }
            let expiration = uint(items.required("expiration")?, "expiration")?;
            Message::Neighbors(Neighbors {
                nodes,
                expiration,
                rest: items.rest()?,
            })
        }
        PacketKind::EnrRequest => Message::EnrRequest(EnrRequest {
            expiration: uint(items.required("expiration")?, "expiration")?,
            rest: items.rest()?,
        }),
        PacketKind::EnrResponse => {
            let request_hash = fixed(items.required("request-hash")?, "request-hash")?;
            let enr = items.required("enr")?;
            if enr.len() > MAX_ENR_SIZE {
                return Err(DecodeError::EnrTooLarge(enr.len()));
            }
            if enr[0] < 0xc0 {
                return Err(DecodeError::Rlp {
                    field: "enr",
                    err: DecoderError::RlpExpectedToBeList,
                });
            }
            Message::EnrResponse(EnrResponse {
                request_hash,
                enr: enr.to_vec(),
                rest: items.rest()?,
            })
        }
    })
}

/// Encodes and signs `message` with `key`. Returns the datagram and its hash (which the
/// recipient's reply quotes back).
pub fn encode(message: &Message, key: &SecretKey) -> Result<(Vec<u8>, [u8; 32]), EncodeError> {
    seal(message.kind() as u8, &encode_body(message)?, key)
}

/// Hashes and signs a packet of any type byte and body, as [`encode`] does for the known
/// types. For conformance tools that must send what a node never would (an unknown
/// type, a hand-made body); a node has no other use for it.
pub fn seal(
    packet_type: u8,
    body: &[u8],
    key: &SecretKey,
) -> Result<(Vec<u8>, [u8; 32]), EncodeError> {
    let len = HEADER_SIZE + 1 + body.len();
    if len > MAX_PACKET_SIZE {
        return Err(EncodeError::TooLarge(len));
    }
    let mut out = vec![0u8; HEADER_SIZE];
    out.reserve_exact(1 + body.len());
    out.push(packet_type);
    out.extend_from_slice(body);

    let digest = keccak256(&out[HEADER_SIZE..]);
    let sig = SECP256K1.sign_ecdsa_recoverable(&SecpMessage::from_digest(digest), key);
    let (recid, compact) = sig.serialize_compact();
    out[32..96].copy_from_slice(&compact);
    out[96] = match recid {
        RecoveryId::Zero => 0,
        RecoveryId::One => 1,
        RecoveryId::Two => 2,
        RecoveryId::Three => 3,
    };
    let hash = keccak256(&out[32..]);
    out[..32].copy_from_slice(&hash);
    Ok((out, hash))
}

fn append_ip(s: &mut RlpStream, ip: IpAddr) {
    match ip.to_canonical() {
        IpAddr::V4(v4) => s.append(&v4.octets().as_slice()),
        IpAddr::V6(v6) => s.append(&v6.octets().as_slice()),
    };
}

fn append_endpoint(s: &mut RlpStream, e: &Endpoint) {
    s.begin_list(3);
    append_ip(s, e.ip);
    s.append(&e.udp_port).append(&e.tcp_port);
}

fn check_raw(item: &[u8], what: &'static str) -> Result<(), EncodeError> {
    match first_item(item, what) {
        Ok((whole, _)) if whole.len() == item.len() => Ok(()),
        _ => Err(EncodeError::BadRawItem(what)),
    }
}

fn append_rest(s: &mut RlpStream, rest: &[Vec<u8>]) -> Result<(), EncodeError> {
    for item in rest {
        check_raw(item, "rest element")?;
        s.append_raw(item, 1);
    }
    Ok(())
}

fn encode_body(message: &Message) -> Result<Vec<u8>, EncodeError> {
    let mut s = RlpStream::new();
    match message {
        Message::Ping(p) => {
            if p.enr_seq.is_none() && !p.rest.is_empty() {
                return Err(EncodeError::RestWithoutEnrSeq);
            }
            s.begin_list(4 + usize::from(p.enr_seq.is_some()) + p.rest.len());
            s.append(&p.version);
            append_endpoint(&mut s, &p.from);
            append_endpoint(&mut s, &p.to);
            s.append(&p.expiration);
            if let Some(seq) = p.enr_seq {
                s.append(&seq);
            }
            append_rest(&mut s, &p.rest)?;
        }
        Message::Pong(p) => {
            if p.enr_seq.is_none() && !p.rest.is_empty() {
                return Err(EncodeError::RestWithoutEnrSeq);
            }
            s.begin_list(3 + usize::from(p.enr_seq.is_some()) + p.rest.len());
            append_endpoint(&mut s, &p.to);
            s.append(&p.ping_hash.as_slice());
            s.append(&p.expiration);
            if let Some(seq) = p.enr_seq {
                s.append(&seq);
            }
            append_rest(&mut s, &p.rest)?;
        }
        Message::FindNode(p) => {
            s.begin_list(2 + p.rest.len());
            s.append(&p.target.0.as_slice());
            s.append(&p.expiration);
            append_rest(&mut s, &p.rest)?;
        }
        Message::Neighbors(p) => {
            s.begin_list(2 + p.rest.len());
            s.begin_list(p.nodes.len());
            for n in &p.nodes {
                s.begin_list(4);
                append_ip(&mut s, n.endpoint.ip);
                s.append(&n.endpoint.udp_port).append(&n.endpoint.tcp_port);
                s.append(&n.id.0.as_slice());
            }
            s.append(&p.expiration);
            append_rest(&mut s, &p.rest)?;
        }
        Message::EnrRequest(p) => {
            s.begin_list(1 + p.rest.len());
            s.append(&p.expiration);
            append_rest(&mut s, &p.rest)?;
        }
        Message::EnrResponse(p) => {
            check_raw(&p.enr, "enr")?;
            if p.enr.len() > MAX_ENR_SIZE {
                return Err(EncodeError::EnrTooLarge(p.enr.len()));
            }
            if p.enr[0] < 0xc0 {
                return Err(EncodeError::BadRawItem("enr"));
            }
            s.begin_list(2 + p.rest.len());
            s.append(&p.request_hash.as_slice());
            s.append_raw(&p.enr, 1);
            append_rest(&mut s, &p.rest)?;
        }
    }
    Ok(s.out().to_vec())
}
