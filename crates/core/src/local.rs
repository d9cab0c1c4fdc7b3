//! This device's own saved state, sealed under a key only its unlocked key
//! bundle can derive.
//!
//! What a client keeps between runs — the trust anchors it authenticated at
//! pairing, its role, the relay it uses, the verified head and events, marks
//! such as "safety number compared" — decides what it will trust next time.
//! Encrypting it to the device's *public* age recipient (as the first format
//! did) hides it but does not authenticate it: anyone can write a file that
//! opens. So every record is sealed with XChaCha20-Poly1305 under
//! [`LocalKey`], derived with HKDF-SHA256 from the device's secret signing
//! seed (salt `troth.app/v2/local-state`), which needs the passphrase. The
//! record's *context* (e.g. `space-file`, `idb:meta`, `idb:event:42`) is
//! authenticated too, so records cannot be swapped for one another.
//!
//! What this does not stop: someone with the device's storage can put back
//! an *older genuine* record of the same context (a rollback of local state).
//! The relay's head and the partner's state code still show a shorter
//! history; see SECURITY.md.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand_core::CryptoRngCore;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::keyfile::KeyBundle;
use crate::sign::Label;

/// The sealed record's format version.
const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;

/// A sealed record did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error(
    "This device's saved copy was changed outside Troth (or belongs to another key), so it was not used."
)]
pub struct LocalError;

/// The key that seals this device's saved state. Zeroizes on drop; never printed.
pub struct LocalKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalKey(..)")
    }
}

impl KeyBundle {
    /// The key that seals this device's saved state.
    pub fn local_key(&self) -> LocalKey {
        let mut k = Zeroizing::new([0u8; 32]);
        let seed = self.device.signing_seed();
        // 32 bytes is far below HKDF-SHA256's limit, so expand cannot fail.
        let _ = hkdf::Hkdf::<sha2::Sha256>::new(
            Some(Label::LocalState.as_str().as_bytes()),
            seed.as_ref(),
        )
        .expand(b"saved state", k.as_mut());
        LocalKey(k)
    }
}

impl LocalKey {
    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(&self.0[..]))
    }

    fn aad(context: &str) -> Vec<u8> {
        crate::sign::message(Label::LocalState, context.as_bytes())
    }

    /// Seals `plaintext` as the record named `context`:
    /// `u8 1 || nonce (24) || ciphertext || tag`.
    pub fn seal(&self, context: &str, plaintext: &[u8], rng: &mut impl CryptoRngCore) -> Vec<u8> {
        self.seal_with(&Self::aad(context), plaintext, rng)
    }

    /// Opens the record named `context`; anything altered, sealed under
    /// another key or for another context is refused.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, LocalError> {
        self.open_with(&Self::aad(context), sealed)
    }

    /// Seals under associated data the caller built (a label of its own
    /// first, e.g. the snapshot's `troth.app/v2/local-snapshot`).
    pub(crate) fn seal_with(
        &self,
        aad: &[u8],
        plaintext: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        // Encryption fails only for plaintexts beyond 256 GiB.
        let ct = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// Opens what [`LocalKey::seal_with`] sealed under the same associated data.
    pub(crate) fn open_with(
        &self,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, LocalError> {
        let (&v, rest) = sealed.split_first().ok_or(LocalError)?;
        if v != VERSION || rest.len() < NONCE_LEN + 16 {
            return Err(LocalError);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| LocalError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn records_open_only_with_their_key_and_context() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let keys = KeyBundle::generate(&mut rng, 1);
        let other = KeyBundle::generate(&mut rng, 1);
        let k = keys.local_key();
        let sealed = k.seal("idb:meta", b"{\"role\":\"leading\"}", &mut rng);
        assert_eq!(
            k.open("idb:meta", &sealed).expect("opens").as_slice(),
            b"{\"role\":\"leading\"}"
        );
        // Same key derived again (a later run) opens it.
        assert!(
            keys.duplicate()
                .local_key()
                .open("idb:meta", &sealed)
                .is_ok()
        );
        assert_eq!(k.open("idb:event:1", &sealed), Err(LocalError));
        assert_eq!(other.local_key().open("idb:meta", &sealed), Err(LocalError));
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert_eq!(k.open("idb:meta", &t), Err(LocalError), "flip at {i}");
        }
        assert_eq!(k.open("idb:meta", &sealed[..20]), Err(LocalError));
        // The shortest record, an empty one, opens; every truncation of it is refused.
        let empty = k.seal("idb:drafts", b"", &mut rng);
        assert_eq!(empty.len(), 1 + 24 + 16);
        assert!(k.open("idb:drafts", &empty).expect("opens").is_empty());
        for n in 0..empty.len() {
            assert_eq!(k.open("idb:drafts", &empty[..n]), Err(LocalError), "{n}");
        }
        assert_eq!(k.open("idb:meta", &[]), Err(LocalError));
        // A rotated device has another key.
        let rotated = keys.rotate_device(&mut rng, 2);
        assert_eq!(
            rotated.local_key().open("idb:meta", &sealed),
            Err(LocalError)
        );
        assert_eq!(format!("{k:?}"), "LocalKey(..)");
    }
}
