//! ECIES as used by RLPx for auth/ack packets.
//!
//! `R(65) ‖ iv(16) ‖ AES-128-CTR(kE, iv, m) ‖ HMAC-SHA256(kM, iv ‖ c ‖ authdata)(32)`, where
//! `S = x(r·K)`, `K = SHA256(00000001 ‖ S)` (NIST SP 800-56 concat KDF, empty other-info),
//! `kE = K[..16]`, `kM = SHA256(K[16..])`.

use aes::cipher::{KeyIvInit, StreamCipher};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secp256k1::{ecdh, PublicKey, SecretKey, SECP256K1};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use super::HandshakeError;

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;
type HmacSha256 = Hmac<Sha256>;

/// Length of the uncompressed ephemeral public key `R` at the start of a message.
const R_LEN: usize = 65;
/// Length of the AES-CTR IV.
const IV_LEN: usize = 16;
/// Length of the HMAC-SHA256 tag at the end of a message.
const TAG_LEN: usize = 32;

/// Bytes ECIES adds to a plaintext: `R` (65) + IV (16) + tag (32).
pub const ECIES_OVERHEAD: usize = R_LEN + IV_LEN + TAG_LEN;

/// x-only secp256k1 ECDH: the x coordinate of `secret · public`, unhashed
/// (RLPx uses the raw coordinate, unlike libsecp256k1's default hashed ECDH).
///
/// The result is a shared secret: callers that keep it past one expression hold it in
/// [`Zeroizing`] so it is wiped when dropped.
pub fn ecdh_x(public: &PublicKey, secret: &SecretKey) -> [u8; 32] {
    let xy = Zeroizing::new(ecdh::shared_secret_point(public, secret));
    let mut x = [0u8; 32];
    x.copy_from_slice(&xy[..32]);
    x
}

/// The encryption key and MAC key derived from the ECDH x coordinate; wiped on drop.
struct Keys {
    enc: [u8; 16],
    mac: [u8; 32],
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.enc.zeroize();
        self.mac.zeroize();
    }
}

/// Concat KDF (SHA-256, counter starting at 1, empty other-info) for the 32 bytes
/// RLPx needs — exactly one hash block — then split as geth's `deriveKeys` does.
fn derive_keys(shared_x: &[u8; 32]) -> Keys {
    let mut k = Sha256::new()
        .chain_update(1u32.to_be_bytes())
        .chain_update(shared_x)
        .finalize();
    let (enc_part, mac_part) = k.split_at(16);
    let mut keys = Keys {
        enc: [0u8; 16],
        mac: Sha256::digest(mac_part).into(),
    };
    keys.enc.copy_from_slice(enc_part);
    k.as_mut_slice().zeroize();
    keys
}

/// HMAC-SHA256 keyed with `key`. RFC 2104 zero-pads keys shorter than the hash
/// block, so passing the 32-byte key zero-padded to 64 bytes is the same HMAC and
/// lets us use the infallible fixed-size constructor.
fn hmac_for(key: &[u8; 32]) -> HmacSha256 {
    let mut block = Zeroizing::new([0u8; 64]);
    block[..32].copy_from_slice(key);
    <HmacSha256 as Mac>::new(&(*block).into())
}

/// The tag over `iv ‖ ciphertext ‖ authdata`.
fn tag_state(
    mac_key: &[u8; 32],
    iv: &[u8; IV_LEN],
    ciphertext: &[u8],
    authdata: &[u8],
) -> HmacSha256 {
    let mut mac = hmac_for(mac_key);
    mac.update(iv);
    mac.update(ciphertext);
    mac.update(authdata);
    mac
}

/// Encrypts `plaintext` to `remote` with a fresh random ephemeral key and IV.
/// `authdata` is authenticated but not included (RLPx: the 2-byte size prefix).
pub fn encrypt(remote: &PublicKey, plaintext: &[u8], authdata: &[u8]) -> Vec<u8> {
    let mut rng = rand::thread_rng();
    let mut ephemeral = SecretKey::new(&mut rng);
    let mut iv = [0u8; IV_LEN];
    rng.fill_bytes(&mut iv);
    let out = encrypt_with(remote, plaintext, authdata, &ephemeral, &iv);
    ephemeral.non_secure_erase();
    out
}

/// Deterministic [`encrypt`]: the caller supplies the ECIES ephemeral key `r` and IV.
/// Meant for tests; reusing `r`/`iv` across messages breaks confidentiality.
pub fn encrypt_with(
    remote: &PublicKey,
    plaintext: &[u8],
    authdata: &[u8],
    ephemeral: &SecretKey,
    iv: &[u8; IV_LEN],
) -> Vec<u8> {
    let keys = derive_keys(&Zeroizing::new(ecdh_x(remote, ephemeral)));
    let r = PublicKey::from_secret_key(SECP256K1, ephemeral).serialize_uncompressed();

    let mut out = Vec::with_capacity(plaintext.len() + ECIES_OVERHEAD);
    out.extend_from_slice(&r);
    out.extend_from_slice(iv);
    let ct_start = out.len();
    out.extend_from_slice(plaintext);
    let mut cipher = Aes128Ctr::new(&keys.enc.into(), iv.into());
    cipher.apply_keystream(&mut out[ct_start..]);
    let tag = tag_state(&keys.mac, iv, &out[ct_start..], authdata).finalize();
    out.extend_from_slice(&tag.into_bytes());
    out
}

/// Decrypts an ECIES message addressed to `our_key`, checking the tag over
/// `iv ‖ ciphertext ‖ authdata` in constant time before decrypting.
///
/// Errors: too short → `Malformed`; `R` not an uncompressed point on the curve →
/// `InvalidPublicKey`; tag wrong → `TagMismatch`.
pub fn decrypt(
    our_key: &SecretKey,
    message: &[u8],
    authdata: &[u8],
) -> Result<Vec<u8>, HandshakeError> {
    let (r, rest) = message
        .split_first_chunk::<R_LEN>()
        .ok_or(HandshakeError::Malformed(
            "ECIES message shorter than its overhead",
        ))?;
    let (iv, rest) = rest
        .split_first_chunk::<IV_LEN>()
        .ok_or(HandshakeError::Malformed(
            "ECIES message shorter than its overhead",
        ))?;
    let (ciphertext, tag) = rest
        .split_last_chunk::<TAG_LEN>()
        .ok_or(HandshakeError::Malformed(
            "ECIES message shorter than its overhead",
        ))?;

    // Only the uncompressed 0x04 form is valid here (libsecp256k1 would also
    // parse the "hybrid" 0x06/0x07 forms, which no RLPx implementation sends).
    if r[0] != 0x04 {
        return Err(HandshakeError::InvalidPublicKey);
    }
    // Parsing checks the point is on the curve, which is what defeats
    // invalid-curve attacks on our static key.
    let r = PublicKey::from_slice(r).map_err(|_| HandshakeError::InvalidPublicKey)?;
    let keys = derive_keys(&Zeroizing::new(ecdh_x(&r, our_key)));

    tag_state(&keys.mac, iv, ciphertext, authdata)
        .verify_slice(tag)
        .map_err(|_| HandshakeError::TagMismatch)?;

    let mut plaintext = ciphertext.to_vec();
    let mut cipher = Aes128Ctr::new(&keys.enc.into(), iv.into());
    cipher.apply_keystream(&mut plaintext);
    Ok(plaintext)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_byte_array(&[byte; 32]).unwrap()
    }

    #[test]
    fn round_trip_and_authdata_is_bound() {
        let ours = key(7);
        let ours_pub = PublicKey::from_secret_key(SECP256K1, &ours);
        let msg = encrypt(&ours_pub, b"hello ecies", b"ad");
        assert_eq!(msg.len(), 11 + ECIES_OVERHEAD);
        assert_eq!(decrypt(&ours, &msg, b"ad").unwrap(), b"hello ecies");
        assert!(matches!(
            decrypt(&ours, &msg, b"xx"),
            Err(HandshakeError::TagMismatch)
        ));
        assert!(matches!(
            decrypt(&key(8), &msg, b"ad"),
            Err(HandshakeError::TagMismatch)
        ));
    }

    #[test]
    fn short_and_bad_r_are_typed_errors() {
        let ours = key(7);
        for len in 0..ECIES_OVERHEAD {
            assert!(matches!(
                decrypt(&ours, &vec![4u8; len], &[]),
                Err(HandshakeError::Malformed(_))
            ));
        }
        // Empty plaintext is still a well-formed message.
        let ours_pub = PublicKey::from_secret_key(SECP256K1, &ours);
        let msg = encrypt(&ours_pub, b"", &[]);
        assert_eq!(decrypt(&ours, &msg, &[]).unwrap(), b"");
        // Hybrid-form prefix is refused even though the point is valid.
        let mut hybrid = msg.clone();
        hybrid[0] = 0x06 | (msg[64] & 1);
        assert!(matches!(
            decrypt(&ours, &hybrid, &[]),
            Err(HandshakeError::InvalidPublicKey)
        ));
    }
}
