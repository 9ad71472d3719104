//! The RLPx running MAC: a Keccak-256 sponge updated with AES-256-ECB-derived seeds.
//!
//! Per the RLPx spec (`rlpx.md`, §Framing), with `digest` = the first 16 bytes of the Keccak-256 of
//! everything absorbed so far:
//!
//! ```text
//! header-mac: seed = AES(mac-secret, digest) ^ header-ct;  absorb seed;  mac = digest
//! frame-mac:  absorb body-ct;  s = digest;  seed = AES(mac-secret, s) ^ s;  absorb seed;  mac = digest
//! ```

use crate::keccak::{Digest, Keccak256};
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes256;

/// Size of a MAC and of a MAC seed.
const MAC_LEN: usize = 16;

/// One direction's MAC state (egress or ingress).
///
/// The AES key schedule is expanded once here, not per frame. The digest of the current sponge
/// state is remembered after each header/frame update: the next header update starts by taking
/// the digest of that very state, so the cache saves one Keccak-f permutation per frame.
#[derive(Clone)]
pub(super) struct RlpxMac {
    cipher: Aes256,
    hash: Keccak256,
    /// Digest of `hash` as it is now, if already computed; cleared by every absorb.
    cached: Option<[u8; MAC_LEN]>,
}

impl RlpxMac {
    /// Starts a MAC from its mac-secret and the Keccak-256 state the handshake seeded
    /// (`keccak((mac-secret ^ nonce) ‖ packet)`).
    pub(super) fn new(mac_secret: &[u8; 32], state: Keccak256) -> Self {
        Self {
            cipher: Aes256::new(mac_secret.into()),
            hash: state,
            cached: None,
        }
    }

    /// Absorbs raw bytes into the sponge.
    pub(super) fn update(&mut self, data: &[u8]) {
        self.hash.update(data);
        self.cached = None;
    }

    /// First 16 bytes of the Keccak-256 of everything absorbed so far; the state is not consumed.
    pub(super) fn digest(&self) -> [u8; MAC_LEN] {
        match self.cached {
            Some(d) => d,
            None => self.compute_digest(),
        }
    }

    /// Absorbs the header seed for `header_ct` and returns the header MAC.
    pub(super) fn update_header(&mut self, header_ct: &[u8; MAC_LEN]) -> [u8; MAC_LEN] {
        let mut seed = self.digest();
        self.cipher.encrypt_block((&mut seed).into());
        xor_into(&mut seed, header_ct);
        self.absorb_seed(&seed)
    }

    /// Absorbs the (padded) body ciphertext and the frame seed; returns the frame MAC.
    pub(super) fn update_body(&mut self, body_ct: &[u8]) -> [u8; MAC_LEN] {
        self.update(body_ct);
        self.finish_body()
    }

    /// Second half of [`Self::update_body`], for callers that absorbed the body in pieces
    /// with [`Self::update`] (the sealer interleaves encryption and absorption for cache locality).
    pub(super) fn finish_body(&mut self) -> [u8; MAC_LEN] {
        let prev = self.digest();
        let mut seed = prev;
        self.cipher.encrypt_block((&mut seed).into());
        xor_into(&mut seed, &prev);
        self.absorb_seed(&seed)
    }

    /// Absorbs a seed and returns (and remembers) the resulting digest.
    fn absorb_seed(&mut self, seed: &[u8; MAC_LEN]) -> [u8; MAC_LEN] {
        self.hash.update(seed);
        let d = self.compute_digest();
        self.cached = Some(d);
        d
    }

    fn compute_digest(&self) -> [u8; MAC_LEN] {
        let full = self.hash.clone().finalize();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }
}

impl std::fmt::Debug for RlpxMac {
    /// Shows nothing of the key or sponge: both are secrets of the session.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RlpxMac").finish_non_exhaustive()
    }
}

fn xor_into(dst: &mut [u8; MAC_LEN], src: &[u8; MAC_LEN]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ethereumjs `rlpx-mac.spec.ts` secret (vectors A.4).
    const SECRET: &str = "4caf4671e713d083128973de159d02688dc86f51535a80178264631e193ed2ea";

    fn fresh() -> RlpxMac {
        let mut secret = [0u8; 32];
        hex::decode_to_slice(SECRET, &mut secret).expect("valid hex");
        RlpxMac::new(&secret, Keccak256::new())
    }

    fn h(d: [u8; MAC_LEN]) -> String {
        hex::encode(d)
    }

    #[test]
    fn digest_of_empty_state() {
        assert_eq!(h(fresh().digest()), "c5d2460186f7233c927e7db2dcc703c0");
    }

    #[test]
    fn update_then_digest() {
        let mut mac = fresh();
        mac.update(b"test");
        assert_eq!(h(mac.digest()), "9c22ff5f21f0b81b113e63f7db6da94f");
    }

    #[test]
    fn update_body_vector() {
        let mut mac = fresh();
        let got = mac.update_body(b"this is a body data struct");
        assert_eq!(h(got), "134a755450b1ed9d3ff90ef5dcecdd7d");
        assert_eq!(mac.digest(), got, "digest equals the MAC just returned");
    }

    #[test]
    fn update_header_vector_zero_bytes() {
        let mut mac = fresh();
        assert_eq!(
            h(mac.update_header(&[0u8; 16])),
            "52235ed491a4c9224d94788762ead6a6"
        );
    }

    #[test]
    fn update_header_vector_real_string() {
        let mut mac = fresh();
        assert_eq!(
            h(mac.update_header(b"this is a header")),
            "9a314c3e48b999994ba7dbccb4256262"
        );
    }

    #[test]
    fn header_then_body_vector() {
        let mut mac = fresh();
        mac.update_header(&[0u8; 16]);
        assert_eq!(
            h(mac.update_body(b"this is a body data struct")),
            "5d98967578ec8edbb45e1d75992f394c"
        );
    }

    #[test]
    fn cached_digest_matches_recomputed() {
        let mut mac = fresh();
        mac.update_header(&[7u8; 16]);
        mac.update_body(&[9u8; 300]);
        assert_eq!(mac.digest(), mac.compute_digest());
        mac.update(b"x");
        assert_eq!(mac.digest(), mac.compute_digest());
    }
}
