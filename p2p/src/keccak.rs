//! The Keccak-256 implementation behind the RLPx MACs and the handshake's hashing.
//!
//! Every frame's MAC absorbs every body byte and takes four digests, so Keccak is the largest
//! CPU cost of a link. On x86_64 and aarch64 the `asm-keccak` feature (on by default) selects
//! `keccak-asm`, hand-tuned assembly from the OpenSSL/CRYPTOGAMS lineage; elsewhere, or with
//! the feature off, the pure-Rust `sha3` crate is used. Both implement the `digest` 0.10
//! traits, so callers see one type, and the test below checks the two agree byte for byte.

#[cfg(all(
    feature = "asm-keccak",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
pub use keccak_asm::Keccak256;

#[cfg(not(all(
    feature = "asm-keccak",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
pub use sha3::Keccak256;

pub use sha3::Digest;

/// Which implementation [`Keccak256`] is in this build: `"keccak-asm"` or `"sha3"`.
pub const BACKEND: &str = if cfg!(all(
    feature = "asm-keccak",
    any(target_arch = "x86_64", target_arch = "aarch64")
)) {
    "keccak-asm"
} else {
    "sha3"
};

/// Keccak-256 of `data` in one call.
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: the pure-Rust implementation, whatever the build selected.
    fn reference(chunks: &[Vec<u8>]) -> [u8; 32] {
        let mut h = sha3::Keccak256::new();
        for c in chunks {
            sha3::Digest::update(&mut h, c);
        }
        h.finalize().into()
    }

    #[test]
    fn empty_input_has_the_known_digest() {
        assert_eq!(
            hex::encode(keccak256(b"")),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
    }

    proptest! {
        /// Same digests as the reference for any data in any chunking, and the running MAC's
        /// way of reading a digest (clone, finalize, keep absorbing) agrees at every step.
        #[test]
        fn agrees_with_the_reference(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..600), 0..12)
        ) {
            let mut ours = Keccak256::new();
            let mut theirs = sha3::Keccak256::new();
            for c in &chunks {
                ours.update(c);
                sha3::Digest::update(&mut theirs, c);
                let a: [u8; 32] = ours.clone().finalize().into();
                let b: [u8; 32] = sha3::Digest::finalize(theirs.clone()).into();
                prop_assert_eq!(a, b);
            }
            let joined: Vec<u8> = chunks.concat();
            prop_assert_eq!(keccak256(&joined), reference(&chunks));
        }
    }
}
