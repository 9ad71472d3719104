//! Proof of work of a block header against its own compact target (Core's
//! `CheckProofOfWork`): the cheap check a relay can make without the chain. Whether the
//! target is the right one for the header's height needs the chain and is not checked.

use super::{BlockHeader, Hash256, Network};

/// Decode a compact target (`nBits`) into a 256-bit big-endian number, as Core's
/// `arith_uint256::SetCompact` does. `None` when it is negative, zero or overflows.
pub fn compact_to_target(bits: u32) -> Option<[u8; 32]> {
    let size = (bits >> 24) as usize;
    let mut word = bits & 0x007f_ffff;
    let negative = word != 0 && bits & 0x0080_0000 != 0;
    let overflow =
        word != 0 && (size > 34 || (word > 0xff && size > 33) || (word > 0xffff && size > 32));
    if negative || overflow {
        return None;
    }
    let mut target = [0u8; 32];
    if size <= 3 {
        word >>= 8 * (3 - size);
        target[28..].copy_from_slice(&word.to_be_bytes());
    } else {
        // Byte k of the word (k = 0 least significant) lands at position size - 3 + k
        // from the least significant end; the overflow test above guarantees every
        // non-zero byte fits.
        for k in 0..3 {
            let byte = (word >> (8 * k)) as u8;
            let pos = size - 3 + k;
            if pos < 32 {
                target[31 - pos] = byte;
            }
        }
    }
    if target == [0u8; 32] {
        return None;
    }
    Some(target)
}

impl Network {
    /// The easiest target the network allows (`powLimit`), big-endian.
    pub fn pow_limit(self) -> [u8; 32] {
        let mut limit = [0xffu8; 32];
        match self {
            Network::Mainnet | Network::Testnet3 | Network::Testnet4 => {
                limit[..4].fill(0);
            }
            Network::Signet => {
                limit = [0u8; 32];
                limit[2..5].copy_from_slice(&[0x03, 0x77, 0xae]);
            }
            Network::Regtest => limit[0] = 0x7f,
        }
        limit
    }
}

impl Hash256 {
    /// The hash as a 256-bit big-endian number (the wire order is little-endian).
    fn to_be_number(self) -> [u8; 32] {
        let mut be = self.0;
        be.reverse();
        be
    }
}

impl BlockHeader {
    /// Whether the header's hash meets its own target and that target is valid and no
    /// easier than `network`'s limit.
    pub fn check_proof_of_work(&self, network: Network) -> bool {
        let Some(target) = compact_to_target(self.bits) else {
            return false;
        };
        target <= network.pow_limit() && self.hash().to_be_number() <= target
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(hex_text: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        let raw = hex::decode(hex_text).unwrap();
        out[32 - raw.len()..].copy_from_slice(&raw);
        out
    }

    /// Core's arith_uint256 SetCompact vectors.
    #[test]
    fn compact_vectors() {
        assert_eq!(compact_to_target(0), None);
        assert_eq!(compact_to_target(0x0012_3456), None);
        assert_eq!(compact_to_target(0x0100_3456), None);
        assert_eq!(compact_to_target(0x0112_3456), Some(be("12")));
        assert_eq!(compact_to_target(0x0200_8000), Some(be("80")));
        assert_eq!(compact_to_target(0x0512_3456), Some(be("1234560000")));
        assert_eq!(compact_to_target(0x0492_3456), None); // negative
        assert_eq!(compact_to_target(0x0412_3456), Some(be("12345600")));
        assert_eq!(compact_to_target(0xff12_3456), None); // overflow
        assert_eq!(
            compact_to_target(0x2100_00ff),
            Some(be(&format!("ff{}", "00".repeat(30))))
        );
        assert_eq!(
            compact_to_target(0x2200_00ff),
            Some(be(&format!("ff{}", "00".repeat(31))))
        );
        assert_eq!(compact_to_target(0x2200_01ff), None);
        assert_eq!(
            compact_to_target(0x1d00_ffff),
            Some(be(&format!("ffff{}", "00".repeat(26))))
        );
        assert_eq!(compact_to_target(0x207f_ffff).unwrap()[0], 0x7f);
    }

    fn genesis(time: u32, bits: u32, nonce: u32) -> BlockHeader {
        let mut merkle =
            hex::decode("4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b")
                .unwrap();
        merkle.reverse();
        BlockHeader {
            version: 1,
            prev_block: Hash256([0; 32]),
            merkle_root: Hash256(merkle.try_into().unwrap()),
            time,
            bits,
            nonce,
        }
    }

    #[test]
    fn genesis_blocks_pass_and_a_changed_nonce_fails() {
        let main = genesis(1_231_006_505, 0x1d00_ffff, 2_083_236_893);
        assert_eq!(
            main.hash().to_string(),
            "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
        );
        assert!(main.check_proof_of_work(Network::Mainnet));
        let regtest = genesis(1_296_688_602, 0x207f_ffff, 2);
        assert!(regtest.check_proof_of_work(Network::Regtest));
        // Regtest's easy target is above mainnet's limit.
        assert!(!regtest.check_proof_of_work(Network::Mainnet));
        let mut bad = main;
        bad.nonce += 1;
        assert!(!bad.check_proof_of_work(Network::Mainnet));
        let mut neg = main;
        neg.bits = 0x1d80_ffff;
        assert!(!neg.check_proof_of_work(Network::Mainnet));
    }
}
