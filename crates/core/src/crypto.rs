//! Payload encryption: epoch keys, padded AEAD, and age envelopes.
//!
//! Each event payload is padded to a size bucket and sealed with
//! XChaCha20-Poly1305 under the space's current *epoch key*, with the event
//! header as associated data, so a ciphertext cannot be moved to another
//! position, space or epoch, and a key-committing tag (HMAC-SHA256 under a
//! key derived from the epoch key) after it, so a ciphertext opens under one
//! key only. Epoch keys reach each device in an age envelope (X25519
//! recipient); a device opens each envelope once per epoch, not once per
//! event, and checks the key against the commitment
//! ([`EpochKey::commitment`]) signed in the event that started the epoch.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::CryptoRngCore;
use thiserror::Error;
use zeroize::Zeroizing;

use hkdf::hmac::{Hmac, Mac};
use zeroize::Zeroize;

use crate::encoding::{Reader, Writer};
use crate::event::{Envelope, KeyCommitment};
use crate::ids::SpaceId;
use crate::keys::{DeviceKey, DeviceSecret, KeyError};

/// Nonce length of XChaCha20-Poly1305.
pub const NONCE_LEN: usize = 24;
/// Authentication tag length.
pub const TAG_LEN: usize = 16;
/// Length of the key-committing tag after the ciphertext.
pub const COMMIT_LEN: usize = 32;
/// Largest padded plaintext: a sealed body must fit in [`crate::event::MAX_BODY`].
pub const MAX_PADDED: usize = crate::event::MAX_BODY - NONCE_LEN - TAG_LEN - COMMIT_LEN;

type HmacSha256 = Hmac<sha2::Sha256>;
/// Smallest bucket.
pub const MIN_BUCKET: usize = 256;

const ENVELOPE_MAGIC: &[u8] = b"troth.app/v1/epoch-key";

/// Encryption and decryption failures. Deliberately coarse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The payload is larger than the largest bucket.
    #[error("the message is too long")]
    TooLong,
    /// Authentication failed, or the padding or envelope contents are wrong.
    #[error("the message could not be decrypted")]
    Decrypt,
    /// The recipient key cannot be used.
    #[error("the recipient key cannot be used")]
    BadRecipient,
}

impl From<KeyError> for CryptoError {
    fn from(_: KeyError) -> Self {
        CryptoError::BadRecipient
    }
}

/// A space's symmetric key for one epoch, with the key of its payloads'
/// commitment tags derived from it. Zeroizes on drop; never printed.
#[derive(Clone)]
pub struct EpochKey(Zeroizing<[u8; 32]>, Zeroizing<[u8; 32]>);

impl EpochKey {
    /// A fresh key.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(k.as_mut());
        Self::from_zeroizing(k)
    }

    /// From raw bytes (test vectors).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self::from_zeroizing(Zeroizing::new(bytes))
    }

    fn from_zeroizing(k: Zeroizing<[u8; 32]>) -> Self {
        let mut c = Zeroizing::new([0u8; 32]);
        // 32 bytes is far below HKDF-SHA256's limit, so expand cannot fail.
        let _ = hkdf::Hkdf::<sha2::Sha256>::new(
            Some(crate::sign::Label::PayloadCommitment.as_str().as_bytes()),
            k.as_ref(),
        )
        .expand(&[], c.as_mut());
        Self(k, c)
    }

    /// The commitment to this key for `epoch` of `space`, carried in the
    /// signed control event that starts the epoch.
    pub fn commitment(&self, space: SpaceId, epoch: u32) -> KeyCommitment {
        let mut body = Vec::with_capacity(16 + 4 + 32);
        body.extend_from_slice(&space.0);
        body.extend_from_slice(&epoch.to_be_bytes());
        body.extend_from_slice(self.0.as_ref());
        let h = crate::sign::hash(crate::sign::Label::EpochKeyCommitment, &body);
        body.zeroize();
        KeyCommitment(h)
    }

    /// The payload commitment tag: HMAC-SHA256 under the derived key over
    /// `u32 len(aad) || aad || nonce || ciphertext`.
    fn tag(&self, aad: &[u8], nonce_and_ct: &[u8]) -> HmacSha256 {
        let mut m = <HmacSha256 as Mac>::new_from_slice(self.1.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        m.update(&(aad.len() as u32).to_be_bytes());
        m.update(aad);
        m.update(nonce_and_ct);
        m
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&self.0[..]))
    }
}

impl fmt::Debug for EpochKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EpochKey(..)")
    }
}

/// The bucket a plaintext of `len` bytes is padded to (with its 4-byte length).
pub fn bucket_for(len: usize) -> Option<usize> {
    let need = len.checked_add(4)?;
    if need > MAX_PADDED {
        return None;
    }
    let b = need.next_power_of_two().max(MIN_BUCKET);
    Some(b.min(MAX_PADDED))
}

/// Seals `plaintext` under `key` with `aad` (the event header).
pub fn seal(
    key: &EpochKey,
    aad: &[u8],
    plaintext: &[u8],
    rng: &mut impl CryptoRngCore,
) -> Result<Vec<u8>, CryptoError> {
    let bucket = bucket_for(plaintext.len()).ok_or(CryptoError::TooLong)?;
    let mut padded = Zeroizing::new(Vec::with_capacity(bucket));
    padded.extend_from_slice(&(plaintext.len() as u32).to_be_bytes());
    padded.extend_from_slice(plaintext);
    padded.resize(bucket, 0);
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    let ct = key
        .cipher()
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: &padded, aad })
        .map_err(|_| CryptoError::TooLong)?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len() + COMMIT_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    let tag = key.tag(aad, &out).finalize().into_bytes();
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Opens a sealed body; returns the unpadded plaintext.
///
/// The commitment tag is checked first (in constant time): XChaCha20-Poly1305
/// alone is not key-committing, so without it one ciphertext could open to
/// different words under two different keys.
pub fn open(key: &EpochKey, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < NONCE_LEN + TAG_LEN + 4 + COMMIT_LEN {
        return Err(CryptoError::Decrypt);
    }
    let (body, tag) = sealed.split_at(sealed.len() - COMMIT_LEN);
    key.tag(aad, body)
        .verify_slice(tag)
        .map_err(|_| CryptoError::Decrypt)?;
    let (nonce, ct) = body.split_at(NONCE_LEN);
    let padded = Zeroizing::new(
        key.cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map_err(|_| CryptoError::Decrypt)?,
    );
    let mut len = [0u8; 4];
    len.copy_from_slice(&padded[..4]);
    let len = u32::from_be_bytes(len) as usize;
    let body = padded.get(4..4 + len).ok_or(CryptoError::Decrypt)?;
    // Canonical padding: the bucket must be the one the length implies, all zeros.
    if bucket_for(len) != Some(padded.len()) || padded[4 + len..].iter().any(|&b| b != 0) {
        return Err(CryptoError::Decrypt);
    }
    Ok(Zeroizing::new(body.to_vec()))
}

fn envelope_plaintext(space: SpaceId, epoch: u32, key: &EpochKey) -> Zeroizing<Vec<u8>> {
    let mut w = Writer::new();
    w.bytes(ENVELOPE_MAGIC)
        .raw(&space.0)
        .u32(epoch)
        .raw(key.0.as_ref());
    Zeroizing::new(w.finish())
}

/// Seals an epoch key to a device with age. The plaintext names the space and
/// epoch, so an envelope cannot be replayed into another space or epoch.
/// (age draws its ephemeral key from the OS or browser RNG.)
pub fn seal_envelope(
    key: &EpochKey,
    space: SpaceId,
    epoch: u32,
    to: &DeviceKey,
) -> Result<Envelope, CryptoError> {
    // Re-check the X25519 key: age panics on a low-order recipient.
    crate::keys::check_x25519(&to.x25519_bytes())?;
    let recipient = to.age_recipient()?;
    let age = age::encrypt(&recipient, &envelope_plaintext(space, epoch, key))
        .map_err(|_| CryptoError::BadRecipient)?;
    Ok(Envelope {
        epoch,
        device: to.id(),
        age,
    })
}

/// Opens an envelope addressed to `device` for `space` and the envelope's epoch.
/// age checks that the X25519 shared secret is contributory.
pub fn open_envelope(
    env: &Envelope,
    space: SpaceId,
    device: &DeviceSecret,
) -> Result<EpochKey, CryptoError> {
    if env.device != device.public().id() {
        return Err(CryptoError::Decrypt);
    }
    let pt = Zeroizing::new(
        age::decrypt(&device.age_identity()?, &env.age).map_err(|_| CryptoError::Decrypt)?,
    );
    let mut r = Reader::new(&pt);
    let magic = r.bytes(64).map_err(|_| CryptoError::Decrypt)?;
    let sp: [u8; 16] = r.array().map_err(|_| CryptoError::Decrypt)?;
    let epoch = r.u32().map_err(|_| CryptoError::Decrypt)?;
    let k: [u8; 32] = r.array().map_err(|_| CryptoError::Decrypt)?;
    let k = Zeroizing::new(k);
    if magic != ENVELOPE_MAGIC || sp != space.0 || epoch != env.epoch || r.finish().is_err() {
        return Err(CryptoError::Decrypt);
    }
    Ok(EpochKey::from_zeroizing(k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// The largest padded payload with its nonce, tag and commitment fills
    /// an event body exactly (PROTOCOL.md §4).
    #[test]
    fn the_largest_payload_fits_an_event_body() {
        assert_eq!(MAX_PADDED, 65_464);
        let mut rng = rand::rngs::StdRng::seed_from_u64(10);
        let k = EpochKey::generate(&mut rng);
        let pt = vec![7u8; MAX_PADDED - 4];
        let s = seal(&k, b"hdr", &pt, &mut rng).expect("seal");
        assert_eq!(s.len(), crate::event::MAX_BODY);
        assert_eq!(open(&k, b"hdr", &s).expect("open").as_slice(), &pt[..]);
        assert_eq!(
            seal(&k, b"hdr", &vec![0u8; MAX_PADDED - 3], &mut rng),
            Err(CryptoError::TooLong)
        );
    }

    /// Every truncation of a sealed body is refused, none panics.
    #[test]
    fn truncated_bodies_are_refused() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let k = EpochKey::generate(&mut rng);
        let s = seal(&k, b"hdr", b"x", &mut rng).expect("seal");
        for n in 0..s.len() {
            assert_eq!(open(&k, b"hdr", &s[..n]), Err(CryptoError::Decrypt), "{n}");
        }
    }

    #[test]
    fn buckets() {
        assert_eq!(bucket_for(0), Some(256));
        assert_eq!(bucket_for(252), Some(256));
        assert_eq!(bucket_for(253), Some(512));
        assert_eq!(bucket_for(MAX_PADDED - 4), Some(MAX_PADDED));
        assert_eq!(bucket_for(MAX_PADDED - 3), None);
    }

    #[test]
    fn seal_open_and_tamper() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let k = EpochKey::generate(&mut rng);
        let s = seal(&k, b"hdr", b"at the gym until 7", &mut rng).expect("seal");
        assert_eq!(s.len(), NONCE_LEN + 256 + TAG_LEN + COMMIT_LEN);
        assert_eq!(
            open(&k, b"hdr", &s).expect("open").as_slice(),
            b"at the gym until 7"
        );
        assert_eq!(open(&k, b"hdx", &s), Err(CryptoError::Decrypt));
        let mut t = s.clone();
        t[30] ^= 1;
        assert_eq!(open(&k, b"hdr", &t), Err(CryptoError::Decrypt));
        let other = EpochKey::generate(&mut rng);
        assert_eq!(open(&other, b"hdr", &s), Err(CryptoError::Decrypt));
        assert_eq!(open(&k, b"hdr", &s[..10]), Err(CryptoError::Decrypt));
        let mut t = s.clone();
        let n = t.len();
        t[n - 1] ^= 1;
        assert_eq!(open(&k, b"hdr", &t), Err(CryptoError::Decrypt));
    }

    /// The commitment tag is what makes a ciphertext open under one key
    /// only: a body whose AEAD part verifies under a second key (as a
    /// crafted Poly1305 collision would) is still refused, because the tag
    /// was made under the first key's derived key.
    #[test]
    fn the_commitment_tag_binds_one_key() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let k1 = EpochKey::generate(&mut rng);
        let k2 = EpochKey::generate(&mut rng);
        let s1 = seal(&k1, b"hdr", b"words", &mut rng).expect("seal");
        let s2 = seal(&k2, b"hdr", b"other words", &mut rng).expect("seal");
        // Graft k1's tag onto k2's ciphertext: k2's AEAD part verifies under
        // k2, the tag does not.
        let mut grafted = s2[..s2.len() - COMMIT_LEN].to_vec();
        grafted.extend_from_slice(&s1[s1.len() - COMMIT_LEN..]);
        assert_eq!(open(&k2, b"hdr", &grafted), Err(CryptoError::Decrypt));
        assert_eq!(open(&k1, b"hdr", &grafted), Err(CryptoError::Decrypt));
        // Commitments differ per key, space and epoch.
        let space = SpaceId([1; 16]);
        assert_ne!(k1.commitment(space, 0), k2.commitment(space, 0));
        assert_ne!(k1.commitment(space, 0), k1.commitment(space, 1));
        assert_ne!(k1.commitment(space, 0), k1.commitment(SpaceId([2; 16]), 0));
        assert_eq!(k1.commitment(space, 0), k1.clone().commitment(space, 0));
    }

    #[test]
    fn envelopes_bind_space_epoch_and_device() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let dev = DeviceSecret::generate(&mut rng);
        let other = DeviceSecret::generate(&mut rng);
        let k = EpochKey::generate(&mut rng);
        let space = SpaceId([1; 16]);
        let env = seal_envelope(&k, space, 3, &dev.public()).expect("seal");
        let back = open_envelope(&env, space, &dev).expect("open");
        assert_eq!(*back.0, *k.0);
        assert_eq!(*back.1, *k.1);
        assert!(open_envelope(&env, SpaceId([2; 16]), &dev).is_err());
        let mut wrong_epoch = env.clone();
        wrong_epoch.epoch = 4;
        assert!(open_envelope(&wrong_epoch, space, &dev).is_err());
        let mut redirected = env.clone();
        redirected.device = other.public().id();
        assert!(open_envelope(&redirected, space, &other).is_err());
    }
}
