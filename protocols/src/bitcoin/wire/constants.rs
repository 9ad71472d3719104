//! Protocol constants: versions, service flags, inventory types, reject codes.

/// Protocol version constants (btcd `wire/protocol.go`, Core `protocol_version.h`).
pub mod pver {
    /// Multiple addresses per `addr` (btcd's minimum acceptable version).
    pub const MULTIPLE_ADDRESS: u32 = 209;
    /// `addr` entries carry a timestamp.
    pub const NET_ADDRESS_TIME: u32 = 31402;
    /// `getheaders`/`headers`; Bitcoin Core's minimum peer version.
    pub const MIN_PEER_PROTO: u32 = 31800;
    /// BIP31: `ping` carries a nonce and `pong` exists only *above* this version.
    pub const BIP0031: u32 = 60000;
    /// BIP35 `mempool`.
    pub const BIP0035: u32 = 60002;
    /// BIP37 bloom filters and the `relay` byte in `version`.
    pub const BIP0037: u32 = 70001;
    /// BIP61 `reject`.
    pub const REJECT: u32 = 70002;
    /// BIP111 `NODE_BLOOM` must be advertised to use bloom messages.
    pub const BIP0111: u32 = 70011;
    /// BIP130 `sendheaders`.
    pub const SEND_HEADERS: u32 = 70012;
    /// BIP133 `feefilter`.
    pub const FEE_FILTER: u32 = 70013;
    /// BIP152 compact blocks (`sendcmpct`).
    pub const SHORT_IDS_BLOCKS: u32 = 70014;
    /// No ban for invalid compact blocks.
    pub const INVALID_CB_NO_BAN: u32 = 70015;
    /// BIP339 `wtxidrelay` and BIP155 `sendaddrv2`.
    pub const WTXID_RELAY: u32 = 70016;
    /// Alias used by btcd for 70016.
    pub const ADDR_V2: u32 = WTXID_RELAY;
    /// The version we speak (same as Bitcoin Core and btcd).
    pub const PROTOCOL_VERSION: u32 = 70016;
}

/// Service flag bits advertised in `version` and address messages.
pub mod services {
    /// No services.
    pub const NONE: u64 = 0;
    /// Full node serving the whole chain.
    pub const NETWORK: u64 = 1 << 0;
    /// BIP64 getutxo.
    pub const GETUTXO: u64 = 1 << 1;
    /// BIP111 bloom filters.
    pub const BLOOM: u64 = 1 << 2;
    /// BIP144 segregated witness.
    pub const WITNESS: u64 = 1 << 3;
    /// BIP157 compact filters.
    pub const COMPACT_FILTERS: u64 = 1 << 6;
    /// BIP159 pruned node serving recent blocks.
    pub const NETWORK_LIMITED: u64 = 1 << 10;
    /// BIP324 v2 transport.
    pub const P2P_V2: u64 = 1 << 11;
}

/// Inventory vector types.
pub mod inv_type {
    /// Ignored.
    pub const ERROR: u32 = 0;
    /// A transaction by txid.
    pub const TX: u32 = 1;
    /// A block.
    pub const BLOCK: u32 = 2;
    /// A block to be answered with `merkleblock` (BIP37).
    pub const FILTERED_BLOCK: u32 = 3;
    /// A compact block (BIP152).
    pub const CMPCT_BLOCK: u32 = 4;
    /// A transaction by wtxid (BIP339).
    pub const WTX: u32 = 5;
    /// Flag asking for witness serialization (BIP144).
    pub const WITNESS_FLAG: u32 = 1 << 30;
    /// A transaction with witness data.
    pub const WITNESS_TX: u32 = TX | WITNESS_FLAG;
    /// A block with witness data.
    pub const WITNESS_BLOCK: u32 = BLOCK | WITNESS_FLAG;
    /// A filtered block with witness data.
    pub const FILTERED_WITNESS_BLOCK: u32 = FILTERED_BLOCK | WITNESS_FLAG;
}

/// BIP61 reject codes.
pub mod reject_code {
    /// Could not decode the message.
    pub const MALFORMED: u8 = 0x01;
    /// Invalid block or transaction.
    pub const INVALID: u8 = 0x10;
    /// Obsolete protocol version or block version.
    pub const OBSOLETE: u8 = 0x11;
    /// Duplicate message or transaction.
    pub const DUPLICATE: u8 = 0x12;
    /// Non-standard transaction.
    pub const NONSTANDARD: u8 = 0x40;
    /// Output below the dust threshold.
    pub const DUST: u8 = 0x41;
    /// Fee too low.
    pub const INSUFFICIENT_FEE: u8 = 0x42;
    /// Block conflicts with a checkpoint.
    pub const CHECKPOINT: u8 = 0x43;
}
