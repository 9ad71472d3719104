//! braid's bitcoin wire codec.
//!
//! Payload-only encoding and decoding of the bitcoin P2P messages listed
//! below, with btcd's limits (per-message maximum payload sizes, item counts
//! checked before allocation, canonical CompactSize, no trailing bytes) and
//! version-dependent encodings, plus the native v1 framing in [`framing`].
//! Every decoder treats its input as hostile: errors are [`WireError`]s,
//! never panics.
//!
//! # The `btc` capability message codes
//!
//! Over a braid link the `btc` capability carries one bitcoin message per
//! RLPx message; the message code (before the capability's offset is added)
//! identifies the command and the body is the bitcoin payload. This table is
//! published protocol and **must never change**; new commands may only be
//! appended.
//!
//! | code | command | | code | command |
//! | ---: | --- | --- | ---: | --- |
//! | 0 | `version` | | 13 | `block` |
//! | 1 | `verack` | | 14 | `tx` |
//! | 2 | `ping` | | 15 | `reject` |
//! | 3 | `pong` | | 16 | `sendheaders` |
//! | 4 | `addr` | | 17 | `feefilter` |
//! | 5 | `addrv2` | | 18 | `mempool` |
//! | 6 | `getaddr` | | 19 | `filterload` |
//! | 7 | `inv` | | 20 | `filteradd` |
//! | 8 | `getdata` | | 21 | `filterclear` |
//! | 9 | `notfound` | | 22 | `merkleblock` |
//! | 10 | `getblocks` | | 23 | `sendcmpct` |
//! | 11 | `getheaders` | | 24 | `wtxidrelay` |
//! | 12 | `headers` | | 25 | `sendaddrv2` |
//!
//! [`Command::code`] / [`Command::from_code`] implement it; there are
//! [`Command::COUNT`] = 26 codes.
//!
//! # Version-dependent encodings
//!
//! * `ping` has no nonce at protocol version <= 60000; `pong` does not exist there.
//! * `version` writes the `relay` byte only at >= 70001; on decode every field
//!   after `addr_recv` is optional (a message may end at any field boundary).
//! * `addr` entries have no timestamp below 31402 and at most one entry below 209.
//! * Encoding or decoding a message below [`Command::min_protocol_version`]
//!   fails with [`WireError::UnsupportedAtVersion`] (`mempool` 60002; bloom
//!   messages 70001; `reject` 70002; `sendheaders` 70012; `feefilter` 70013;
//!   `sendaddrv2` 70016).

mod command;
pub mod constants;
mod encoding;
mod error;
pub mod framing;
mod hash;
mod limits;
mod message;
mod payloads;
mod pow;
mod tx;
mod types;

pub use command::Command;
pub use constants::{inv_type, pver, reject_code, services};
pub use error::WireError;
pub use framing::{decode_frame, encode_frame, read_frame, FrameHeader, Network};
pub use hash::{checksum, Hash256};
pub use limits::{
    max_payload_len, MAX_ADDR_PER_MSG, MAX_BLOCK_PAYLOAD, MAX_FILTER_ADD_DATA_SIZE,
    MAX_FILTER_LOAD_FILTER_SIZE, MAX_FILTER_LOAD_HASH_FUNCS, MAX_FLAGS_PER_MERKLE_BLOCK,
    MAX_HEADERS_PER_MSG, MAX_INV_PER_MSG, MAX_LOCATOR_HASHES, MAX_PROTOCOL_MESSAGE_LENGTH,
    MAX_TX_PER_BLOCK, MAX_USER_AGENT_LEN,
};
pub use message::Message;
pub use payloads::{MsgFilterLoad, MsgGetBlocks, MsgMerkleBlock, MsgPing, MsgReject, MsgVersion};
pub use pow::compact_to_target;
pub use tx::{Block, Tx};
pub use types::{AddrV2, AddrV2Entry, BlockHeader, InvVect, NetAddress, TimedNetAddress};
