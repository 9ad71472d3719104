//! Fixed-layout building blocks shared by several messages: network
//! addresses (v1 and BIP155), inventory vectors and block headers.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::encoding::{put_compact_size, put_var_bytes, Reader};
use super::error::WireError;
use super::hash::Hash256;

/// A v1 network address without timestamp (as in `version`): 26 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NetAddress {
    /// Service flags of the node at this address.
    pub services: u64,
    /// IPv6 address bytes; IPv4 is mapped as `::ffff:a.b.c.d`.
    pub ip: [u8; 16],
    /// TCP port (big-endian on the wire).
    pub port: u16,
}

impl NetAddress {
    /// Encoded size in bytes.
    pub const LEN: usize = 26;

    /// Builds an address from a socket address, mapping IPv4 into IPv6.
    pub fn from_socket_addr(addr: SocketAddr, services: u64) -> Self {
        let ip = match addr.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        };
        NetAddress {
            services,
            ip: ip.octets(),
            port: addr.port(),
        }
    }

    /// The socket address, with IPv4-mapped addresses turned back into IPv4.
    pub fn socket_addr(&self) -> SocketAddr {
        let v6 = Ipv6Addr::from(self.ip);
        let ip = match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        };
        SocketAddr::new(ip, self.port)
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.services.to_le_bytes());
        out.extend_from_slice(&self.ip);
        out.extend_from_slice(&self.port.to_be_bytes());
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(NetAddress {
            services: r.u64_le()?,
            ip: r.array()?,
            port: r.u16_be()?,
        })
    }
}

/// A v1 network address with its last-seen time (as in `addr`): 30 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TimedNetAddress {
    /// Last-seen time, seconds since the Unix epoch. Not on the wire below
    /// protocol version 31402 (decoded as 0 there).
    pub time: u32,
    /// The address.
    pub addr: NetAddress,
}

impl TimedNetAddress {
    /// Encoded size in bytes (with timestamp).
    pub const LEN: usize = 30;
}

/// A BIP155 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrV2 {
    /// Network id 1: IPv4.
    Ipv4([u8; 4]),
    /// Network id 2: IPv6.
    Ipv6([u8; 16]),
    /// Network id 3: Tor v2 (obsolete, still decodable).
    TorV2([u8; 10]),
    /// Network id 4: Tor v3 public key.
    TorV3([u8; 32]),
    /// Network id 5: I2P SHA-256 of the destination.
    I2p([u8; 32]),
    /// Network id 6: CJDNS IPv6.
    Cjdns([u8; 16]),
}

impl AddrV2 {
    /// Longest address BIP155 allows on the wire.
    pub const MAX_ADDR_LEN: usize = 512;

    /// The BIP155 network id.
    pub fn network_id(&self) -> u8 {
        match self {
            AddrV2::Ipv4(_) => 1,
            AddrV2::Ipv6(_) => 2,
            AddrV2::TorV2(_) => 3,
            AddrV2::TorV3(_) => 4,
            AddrV2::I2p(_) => 5,
            AddrV2::Cjdns(_) => 6,
        }
    }

    /// The raw address bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            AddrV2::Ipv4(b) => b,
            AddrV2::Ipv6(b) | AddrV2::Cjdns(b) => b,
            AddrV2::TorV2(b) => b,
            AddrV2::TorV3(b) | AddrV2::I2p(b) => b,
        }
    }

    /// Interprets `bytes` for a network id. `Ok(None)` for ids this codec
    /// does not know (BIP155: such entries are skipped, not errors).
    fn from_parts(network_id: u8, bytes: &[u8]) -> Result<Option<Self>, WireError> {
        fn exact<const N: usize>(id: u8, b: &[u8]) -> Result<[u8; N], WireError> {
            b.try_into().map_err(|_| WireError::AddrV2Length {
                network_id: id,
                len: b.len(),
                expected: N,
            })
        }
        Ok(Some(match network_id {
            1 => AddrV2::Ipv4(exact(1, bytes)?),
            2 => AddrV2::Ipv6(exact(2, bytes)?),
            3 => AddrV2::TorV2(exact(3, bytes)?),
            4 => AddrV2::TorV3(exact(4, bytes)?),
            5 => AddrV2::I2p(exact(5, bytes)?),
            6 => AddrV2::Cjdns(exact(6, bytes)?),
            _ => return Ok(None),
        }))
    }
}

/// One entry of an `addrv2` message (BIP155).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrV2Entry {
    /// Last-seen time, seconds since the Unix epoch.
    pub time: u32,
    /// Service flags (CompactSize on the wire).
    pub services: u64,
    /// The address.
    pub addr: AddrV2,
    /// TCP port (big-endian on the wire).
    pub port: u16,
}

impl AddrV2Entry {
    /// Smallest possible encoding: time, 1-byte services, id, 1-byte length, port.
    pub(crate) const MIN_LEN: usize = 4 + 1 + 1 + 1 + 2;

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.time.to_le_bytes());
        put_compact_size(out, self.services);
        out.push(self.addr.network_id());
        put_var_bytes(out, self.addr.as_bytes());
        out.extend_from_slice(&self.port.to_be_bytes());
    }

    /// Decodes one entry; `Ok(None)` when its network id is unknown.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Option<Self>, WireError> {
        let time = r.u32_le()?;
        // Services are a plain 64-bit bit field here (Core reads it without
        // the 32 MiB size range check), but must still be canonical.
        let services = r.compact_size()?;
        let network_id = r.u8()?;
        let bytes = r.var_bytes("addrv2 address", AddrV2::MAX_ADDR_LEN)?;
        let port = r.u16_be()?;
        Ok(
            AddrV2::from_parts(network_id, bytes)?.map(|addr| AddrV2Entry {
                time,
                services,
                addr,
                port,
            }),
        )
    }
}

/// An inventory vector: a type (see [`inv_type`](super::constants::inv_type)) and a hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InvVect {
    /// The inventory type; unknown types are kept as-is.
    pub inv_type: u32,
    /// The object's hash.
    pub hash: Hash256,
}

impl InvVect {
    /// Encoded size in bytes.
    pub const LEN: usize = 36;

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.inv_type.to_le_bytes());
        out.extend_from_slice(&self.hash.0);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(InvVect {
            inv_type: r.u32_le()?,
            hash: Hash256(r.array()?),
        })
    }
}

/// An 80-byte block header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockHeader {
    /// Block version.
    pub version: i32,
    /// Hash of the previous block.
    pub prev_block: Hash256,
    /// Merkle root of the block's transactions.
    pub merkle_root: Hash256,
    /// Block time, seconds since the Unix epoch.
    pub time: u32,
    /// Compact difficulty target.
    pub bits: u32,
    /// Proof-of-work nonce.
    pub nonce: u32,
}

impl BlockHeader {
    /// Encoded size in bytes.
    pub const LEN: usize = 80;

    /// The 80-byte serialization.
    pub fn to_bytes(&self) -> [u8; 80] {
        let mut out = Vec::with_capacity(Self::LEN);
        self.encode(&mut out);
        let mut arr = [0u8; 80];
        arr.copy_from_slice(&out);
        arr
    }

    /// The block hash: double SHA-256 of the header.
    pub fn hash(&self) -> Hash256 {
        Hash256::hash(&self.to_bytes())
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.prev_block.0);
        out.extend_from_slice(&self.merkle_root.0);
        out.extend_from_slice(&self.time.to_le_bytes());
        out.extend_from_slice(&self.bits.to_le_bytes());
        out.extend_from_slice(&self.nonce.to_le_bytes());
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(BlockHeader {
            version: r.i32_le()?,
            prev_block: Hash256(r.array()?),
            merkle_root: Hash256(r.array()?),
            time: r.u32_le()?,
            bits: r.u32_le()?,
            nonce: r.u32_le()?,
        })
    }
}
