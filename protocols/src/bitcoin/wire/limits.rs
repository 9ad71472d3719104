//! Size and count limits (btcd `wire`, matching Bitcoin Core where it has one).
//!
//! Every limit is checked before the data it bounds is read or allocated.

use super::command::Command;
use super::constants::pver;

/// Largest payload a peer may announce in a frame header (Core's
/// `MAX_PROTOCOL_MESSAGE_LENGTH`, btcd `MaxProtocolMessageLength`).
pub const MAX_PROTOCOL_MESSAGE_LENGTH: usize = 4_000_000;
/// Largest `block`, `tx` or `merkleblock` payload (btcd `MaxBlockPayload`).
pub const MAX_BLOCK_PAYLOAD: usize = 4_000_000;
/// Longest user agent in `version` (Core `MAX_SUBVERSION_LENGTH`).
pub const MAX_USER_AGENT_LEN: usize = 256;
/// Most inventory vectors in `inv`/`getdata`/`notfound` (Core `MAX_INV_SZ`).
pub const MAX_INV_PER_MSG: usize = 50_000;
/// Most addresses in `addr`/`addrv2`.
pub const MAX_ADDR_PER_MSG: usize = 1000;
/// Most locator hashes in `getblocks`/`getheaders` (btcd; Core uses 101).
pub const MAX_LOCATOR_HASHES: usize = 500;
/// Most headers in `headers` (Core `MAX_HEADERS_RESULTS`).
pub const MAX_HEADERS_PER_MSG: usize = 2000;
/// Largest bloom filter in `filterload` (BIP37).
pub const MAX_FILTER_LOAD_FILTER_SIZE: usize = 36_000;
/// Most hash functions in `filterload` (BIP37).
pub const MAX_FILTER_LOAD_HASH_FUNCS: u32 = 50;
/// Largest data element in `filteradd` (BIP37).
pub const MAX_FILTER_ADD_DATA_SIZE: usize = 520;
/// Most transactions (hence merkle hashes) a block payload can hold.
pub const MAX_TX_PER_BLOCK: usize = MAX_BLOCK_PAYLOAD / 10 + 1;
/// Most flag bytes in `merkleblock` (btcd `maxFlagsPerMerkleBlock`).
pub const MAX_FLAGS_PER_MERKLE_BLOCK: usize = MAX_TX_PER_BLOCK / 8;

/// Bytes a CompactSize needs for `n`.
const fn compact_size_len(n: usize) -> usize {
    if n < 0xfd {
        1
    } else if n <= 0xffff {
        3
    } else if n <= 0xffff_ffff {
        5
    } else {
        9
    }
}

/// The largest payload `cmd` may have at protocol version `pver` (btcd's
/// `MaxPayloadLength` table). Checked on encode and on decode before parsing.
pub fn max_payload_len(cmd: Command, pver: u32) -> usize {
    use Command::*;
    match cmd {
        // 4 version + 8 services + 8 time + 2 addresses + 8 nonce
        // + var_str(256) + 4 height + 1 relay, with btcd's 9-byte varint slack.
        Version => 33 + 2 * 30 + 9 + MAX_USER_AGENT_LEN,
        Verack | GetAddr | MemPool | SendHeaders | FilterClear | SendAddrV2 | WtxidRelay => 0,
        Ping | Pong => {
            if pver > pver::BIP0031 {
                8
            } else {
                0
            }
        }
        Addr => 9 + MAX_ADDR_PER_MSG * 30,
        // time + services varint + network id + var_bytes(512) + port
        AddrV2 => 3 + MAX_ADDR_PER_MSG * (4 + 9 + 1 + 515 + 2),
        Inv | GetData | NotFound => 9 + MAX_INV_PER_MSG * 36,
        GetBlocks | GetHeaders => 4 + 9 + MAX_LOCATOR_HASHES * 32 + 32,
        Headers => 9 + MAX_HEADERS_PER_MSG * 81,
        Block | Tx | MerkleBlock => MAX_BLOCK_PAYLOAD,
        FeeFilter => 8,
        FilterLoad => {
            compact_size_len(MAX_FILTER_LOAD_FILTER_SIZE) + MAX_FILTER_LOAD_FILTER_SIZE + 9
        }
        FilterAdd => compact_size_len(MAX_FILTER_ADD_DATA_SIZE) + MAX_FILTER_ADD_DATA_SIZE,
        Reject => {
            if pver >= pver::REJECT {
                MAX_PROTOCOL_MESSAGE_LENGTH
            } else {
                0
            }
        }
        SendCmpct => 9,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn btcd_table_values() {
        let p = pver::PROTOCOL_VERSION;
        assert_eq!(max_payload_len(Command::Version, p), 358);
        assert_eq!(max_payload_len(Command::Addr, p), 30_009);
        assert_eq!(max_payload_len(Command::AddrV2, p), 531_003);
        assert_eq!(max_payload_len(Command::Inv, p), 1_800_009);
        assert_eq!(max_payload_len(Command::GetHeaders, p), 16_045);
        assert_eq!(max_payload_len(Command::Headers, p), 162_009);
        assert_eq!(max_payload_len(Command::FilterLoad, p), 36_012);
        assert_eq!(max_payload_len(Command::FilterAdd, p), 523);
        assert_eq!(max_payload_len(Command::Ping, 60_000), 0);
        assert_eq!(max_payload_len(Command::Ping, 60_001), 8);
        assert_eq!(max_payload_len(Command::Reject, 70_001), 0);
        for c in Command::ALL {
            assert!(max_payload_len(c, p) <= MAX_PROTOCOL_MESSAGE_LENGTH);
        }
    }
}
