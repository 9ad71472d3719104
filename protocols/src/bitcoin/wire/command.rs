//! Message commands, their wire names and their fixed `btc` capability codes.

use std::fmt;

use super::constants::pver;

macro_rules! commands {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal, $name:literal; )*) => {
        /// A bitcoin P2P message type this codec understands.
        ///
        /// The discriminant is the message code of the `btc` braid capability
        /// (see the table in the [module docs](super)); it must never change.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Command {
            $( $(#[$doc])* $variant = $code, )*
        }

        impl Command {
            /// Every command, in code order (`ALL[c.code()] == c`).
            pub const ALL: [Command; Self::COUNT] = [$(Command::$variant),*];

            /// The command name as sent in the 12-byte header field.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Command::$variant => $name, )*
                }
            }

            /// Looks a command up by its name (without NUL padding).
            pub fn from_name(name: &[u8]) -> Option<Command> {
                match name {
                    $( n if n == $name.as_bytes() => Some(Command::$variant), )*
                    _ => None,
                }
            }
        }
    };
}

commands! {
    /// `version`: first message of the handshake.
    Version = 0, "version";
    /// `verack`: acknowledges `version`.
    Verack = 1, "verack";
    /// `ping`: keep-alive (BIP31 nonce above 60000).
    Ping = 2, "ping";
    /// `pong`: answer to `ping` (BIP31).
    Pong = 3, "pong";
    /// `addr`: known peer addresses.
    Addr = 4, "addr";
    /// `addrv2`: BIP155 addresses.
    AddrV2 = 5, "addrv2";
    /// `getaddr`: request `addr`.
    GetAddr = 6, "getaddr";
    /// `inv`: inventory announcement.
    Inv = 7, "inv";
    /// `getdata`: request inventory.
    GetData = 8, "getdata";
    /// `notfound`: requested inventory unavailable.
    NotFound = 9, "notfound";
    /// `getblocks`: request block inventory after a locator.
    GetBlocks = 10, "getblocks";
    /// `getheaders`: request headers after a locator.
    GetHeaders = 11, "getheaders";
    /// `headers`: block headers.
    Headers = 12, "headers";
    /// `block`: a full block.
    Block = 13, "block";
    /// `tx`: a transaction.
    Tx = 14, "tx";
    /// `reject`: BIP61 rejection notice.
    Reject = 15, "reject";
    /// `sendheaders`: BIP130 announce blocks by headers.
    SendHeaders = 16, "sendheaders";
    /// `feefilter`: BIP133 minimum fee rate.
    FeeFilter = 17, "feefilter";
    /// `mempool`: BIP35 request mempool inventory.
    MemPool = 18, "mempool";
    /// `filterload`: BIP37 load a bloom filter.
    FilterLoad = 19, "filterload";
    /// `filteradd`: BIP37 add to the bloom filter.
    FilterAdd = 20, "filteradd";
    /// `filterclear`: BIP37 remove the bloom filter.
    FilterClear = 21, "filterclear";
    /// `merkleblock`: BIP37 filtered block.
    MerkleBlock = 22, "merkleblock";
    /// `sendcmpct`: BIP152 compact block negotiation.
    SendCmpct = 23, "sendcmpct";
    /// `wtxidrelay`: BIP339 relay by wtxid.
    WtxidRelay = 24, "wtxidrelay";
    /// `sendaddrv2`: BIP155 ask for `addrv2`.
    SendAddrV2 = 25, "sendaddrv2";
}

impl Command {
    /// Number of commands (and of `btc` capability message codes).
    pub const COUNT: usize = 26;

    /// The fixed `btc` capability message code.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The command with the given `btc` capability message code.
    pub fn from_code(code: u8) -> Option<Command> {
        Self::ALL.get(usize::from(code)).copied()
    }
}

impl Command {
    /// The lowest protocol version at which this message exists; encoding or
    /// decoding it below that is an error (btcd's gates).
    pub const fn min_protocol_version(self) -> u32 {
        match self {
            // BIP31: pong exists only *above* 60000.
            Command::Pong => pver::BIP0031 + 1,
            Command::MemPool => pver::BIP0035,
            Command::FilterLoad
            | Command::FilterAdd
            | Command::FilterClear
            | Command::MerkleBlock => pver::BIP0037,
            Command::Reject => pver::REJECT,
            Command::SendHeaders => pver::SEND_HEADERS,
            Command::FeeFilter => pver::FEE_FILTER,
            Command::SendAddrV2 => pver::ADDR_V2,
            _ => 0,
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_dense_and_round_trip() {
        for (i, c) in Command::ALL.iter().enumerate() {
            assert_eq!(usize::from(c.code()), i);
            assert_eq!(Command::from_code(c.code()), Some(*c));
            assert_eq!(Command::from_name(c.as_str().as_bytes()), Some(*c));
            assert!(c.as_str().len() <= 12);
        }
        assert_eq!(Command::from_code(26), None);
        assert_eq!(Command::from_name(b"cmpctblock"), None);
        assert_eq!(Command::from_name(b"version\0"), None);
    }

    #[test]
    fn published_code_table_is_fixed() {
        assert_eq!(Command::Version.code(), 0);
        assert_eq!(Command::Verack.code(), 1);
        assert_eq!(Command::Reject.code(), 15);
        assert_eq!(Command::SendAddrV2.code(), 25);
    }
}
