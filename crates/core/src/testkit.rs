//! Test fixtures shared by core's and the relay's tests (feature
//! `testkit`; never in a release build). Not primitives: they build inputs at
//! the edges of what a verifier accepts.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signature, SigningKey};
use sha2::{Digest, Sha512};

/// The signature the key with this seed makes over `message`, except that
/// its nonce point is `R = rB + T`. With `T` the identity it is an ordinary
/// valid signature; with any other `T`, `verify_strict` refuses it, a
/// cofactorless batch equation cancels `T` whenever its coefficient is a
/// multiple of `T`'s order, and the protocol's cofactored rule accepts it,
/// alone and batched alike (docs/PROTOCOL.md §3).
pub fn sign_with_torsion_in_r(seed: &[u8; 32], t: &EdwardsPoint, message: &[u8]) -> Signature {
    // RFC 8032 §5.1.5: the secret scalar is the clamped first half of
    // SHA-512(seed); the second half keys the nonce.
    let h = Sha512::digest(seed);
    let mut a = [0u8; 32];
    a.copy_from_slice(&h[..32]);
    a[0] &= 248;
    a[31] &= 127;
    a[31] |= 64;
    let a = Scalar::from_bytes_mod_order(a);
    let public = SigningKey::from_bytes(seed).verifying_key();
    let r = Scalar::from_bytes_mod_order_wide(
        &Sha512::new()
            .chain_update(&h[32..])
            .chain_update(message)
            .finalize()
            .into(),
    );
    let big_r = (ED25519_BASEPOINT_POINT * r + t).compress();
    let k = Scalar::from_bytes_mod_order_wide(
        &Sha512::new()
            .chain_update(big_r.as_bytes())
            .chain_update(public.as_bytes())
            .chain_update(message)
            .finalize()
            .into(),
    );
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(big_r.as_bytes());
    sig[32..].copy_from_slice((r + k * a).as_bytes());
    Signature::from_bytes(&sig)
}
