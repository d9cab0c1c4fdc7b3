//! Domain-separated Ed25519 signatures.
//!
//! Every signed message is `label || 0x00 || body`, where `label` names the kind
//! of message and the protocol version (`troth.app/v1/event`, …) and the body
//! starts with the space id wherever the message belongs to a space. So nothing
//! signed in one context or one space verifies in another.
//!
//! Verification is `verify_strict` only. [`verify_batch`] checks many
//! signatures together (the log verifier's pages, the relay's appends) and
//! accepts exactly `verify_strict`'s set, kept so by pre-checks on every key
//! and every `R`; see its docs and `docs/PROTOCOL.md` §3. The check on `R`
//! costs about a `verify_strict` itself, so a batch no longer saves time
//! (docs/BENCHMARKS.md).

use curve25519_dalek::edwards::CompressedEdwardsY;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use thiserror::Error;

/// The kinds of signed (or hashed) message, each with its own label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Label {
    /// An event in a space's log, signed by the author device.
    Event,
    /// The hash of an encoded event (not a signature; a hash domain).
    EventHash,
    /// A partner's identity signature over an agreement version.
    AgreementCosign,
    /// The content hash of an agreement version (a hash domain).
    AgreementContent,
    /// An identity's certificate for one of its devices.
    DeviceCert,
    /// A device's own signature over its certificate (proof of possession).
    DevicePossession,
    /// A commitment to an epoch key (a hash domain).
    EpochKeyCommitment,
    /// The key-committing tag of a sealed payload (an HKDF salt).
    PayloadCommitment,
    /// This device's key for its own saved state (an HKDF salt).
    LocalState,
    /// A device's signature on an HTTP request to the relay.
    Request,
    /// Key confirmation and key transfer during pairing.
    PairConfirm,
    /// A partner's consent to export a report of the space.
    Export,
    /// Identity fingerprints (a hash domain).
    Fingerprint,
    /// Safety numbers (a hash domain).
    SafetyNumber,
    /// State codes (a hash domain).
    StateCode,
}

impl Label {
    /// The label's bytes, as written before every message of its kind.
    pub const fn as_str(self) -> &'static str {
        match self {
            Label::Event => "troth.app/v1/event",
            Label::EventHash => "troth.app/v1/event-hash",
            Label::AgreementCosign => "troth.app/v2/agreement-cosign",
            Label::AgreementContent => "troth.app/v1/agreement-content",
            Label::DeviceCert => "troth.app/v2/device-cert",
            Label::DevicePossession => "troth.app/v2/device-possession",
            Label::EpochKeyCommitment => "troth.app/v2/epoch-key-commitment",
            Label::PayloadCommitment => "troth.app/v2/payload-commitment",
            Label::LocalState => "troth.app/v2/local-state",
            Label::Request => "troth.app/v1/request",
            Label::PairConfirm => "troth.app/v1/pair-confirm",
            Label::Export => "troth.app/v1/export",
            Label::Fingerprint => "troth.app/v1/fingerprint",
            Label::SafetyNumber => "troth.app/v1/safety-number",
            Label::StateCode => "troth.app/v1/state-code",
        }
    }

    /// Every label, for tests that check they are distinct.
    pub const ALL: [Label; 15] = [
        Label::Event,
        Label::EventHash,
        Label::AgreementCosign,
        Label::AgreementContent,
        Label::DeviceCert,
        Label::DevicePossession,
        Label::EpochKeyCommitment,
        Label::PayloadCommitment,
        Label::LocalState,
        Label::Request,
        Label::PairConfirm,
        Label::Export,
        Label::Fingerprint,
        Label::SafetyNumber,
        Label::StateCode,
    ];
}

/// A signature did not verify. Deliberately coarse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("a signature did not verify")]
pub struct SignatureError;

/// Builds `label || 0x00 || body`.
pub fn message(label: Label, body: &[u8]) -> Vec<u8> {
    let l = label.as_str().as_bytes();
    let mut m = Vec::with_capacity(l.len() + 1 + body.len());
    m.extend_from_slice(l);
    m.push(0);
    m.extend_from_slice(body);
    m
}

/// SHA-256 of `label || 0x00 || body`.
pub fn hash(label: Label, body: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(label.as_str().as_bytes());
    h.update([0u8]);
    h.update(body);
    h.finalize().into()
}

pub(crate) fn sign(key: &SigningKey, label: Label, body: &[u8]) -> Signature {
    key.sign(&message(label, body))
}

/// Verifies a signature with `verify_strict` over `label || 0x00 || body`.
pub fn verify(
    key: &VerifyingKey,
    label: Label,
    body: &[u8],
    sig: &Signature,
) -> Result<(), SignatureError> {
    key.verify_strict(&message(label, body), sig)
        .map_err(|_| SignatureError)
}

/// True when the 32 bytes are the canonical encoding of a curve point.
pub(crate) fn is_canonical_point(bytes: &[u8; 32]) -> bool {
    CompressedEdwardsY(*bytes)
        .decompress()
        .is_some_and(|p| p.compress().to_bytes() == *bytes)
}

/// True when `R` may join a batch: it is what `verify_strict` demands of it
/// (canonical and not of small order) and, beyond that, on the curve and
/// torsion-free. Canonical and not small-order are checked on the bytes
/// alone: an encoding is non-canonical exactly when its `y` is at least
/// p = 2^255 − 19, or when `x` is 0 and the sign bit is set (`y` = ±1, the
/// identity and the point of order 2); and a canonical encoding is of small
/// order exactly when it is one of the eight torsion points'. Then `R` is
/// decompressed and checked to have no torsion component
/// (`is_torsion_free`, one scalar multiplication by the group order).
///
/// The torsion check is what makes the batch exact. With a torsion-free key
/// `A` (checked once per key in [`PreparedKey`]), `[s]B − [k]A` is
/// torsion-free, so `verify_strict` refuses every `R` with a torsion
/// component; the cofactorless batch equation does not always see one (its
/// coefficient `z` kills an 8-torsion component whenever `z` is a multiple of
/// its order, about half the time, and `z` is derived from the inputs, so a
/// signer can grind until a batch passes). Such an `R` is checked alone, and
/// refused. An `R` off the curve is checked alone too.
fn r_is_batchable(r: &[u8; 32]) -> bool {
    y_below_p(r)
        && !small_order_encodings().contains(r)
        && CompressedEdwardsY(*r)
            .decompress()
            .is_some_and(|p| p.is_torsion_free())
}

/// The canonical encodings of the eight points of small order, and the same
/// with the sign bit flipped (the negated point, or for `x` = 0 a
/// non-canonical encoding).
fn small_order_encodings() -> &'static [[u8; 32]; 16] {
    static SET: std::sync::OnceLock<[[u8; 32]; 16]> = std::sync::OnceLock::new();
    SET.get_or_init(|| {
        let mut set = [[0u8; 32]; 16];
        for (i, t) in curve25519_dalek::constants::EIGHT_TORSION
            .iter()
            .enumerate()
        {
            let b = t.compress().to_bytes();
            set[2 * i] = b;
            set[2 * i + 1] = b;
            set[2 * i + 1][31] ^= 0x80;
        }
        set
    })
}

/// True when the encoded `y` (the low 255 bits, little-endian) is below
/// p = 2^255 − 19: `y` ≥ p exactly when bits 8 to 254 are all ones and the
/// low byte is at least 0xed.
fn y_below_p(b: &[u8; 32]) -> bool {
    !(b[0] >= 0xed && b[1..31].iter().all(|&x| x == 0xff) && b[31] & 0x7f == 0x7f)
}

/// A verifying key prepared for batch verification: parsed once, with the
/// facts the pre-checks need.
#[derive(Clone, Debug)]
pub struct PreparedKey {
    key: VerifyingKey,
    /// Canonical, not small-order and torsion-free: safe to batch.
    batchable: bool,
}

impl PreparedKey {
    /// Prepares a key (one decompression and one torsion check, done once per key).
    pub fn new(key: VerifyingKey) -> Self {
        let bytes = key.to_bytes();
        let batchable = !key.is_weak()
            && is_canonical_point(&bytes)
            && CompressedEdwardsY(bytes)
                .decompress()
                .is_some_and(|p| p.is_torsion_free());
        Self { key, batchable }
    }

    /// The key.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }
}

/// One signature to check in a batch.
pub struct BatchItem<'a> {
    /// The signer.
    pub key: &'a PreparedKey,
    /// The full signed message (`label || 0x00 || body`).
    pub message: &'a [u8],
    /// The signature.
    pub signature: &'a Signature,
}

/// Verifies many signatures; the result is `Ok` exactly when every signature
/// passes `verify_strict`, and otherwise names the first index that fails.
///
/// Fast path: signatures whose key is canonical, torsion-free and not
/// small-order (checked once per key, [`PreparedKey`]), and whose `R` is
/// canonical, not small-order and torsion-free (checked per signature), are
/// checked together with ed25519-dalek's batch equation. Everything else,
/// and every member of a batch that fails, is checked alone with
/// `verify_strict`.
///
/// Why that is exact: with every `R` and key in the prime-order subgroup,
/// each signature's term `R + [k]A − [s]B` of the batch equation is in it
/// too. A signature passing `verify_strict` has the term zero; a batch with
/// a nonzero term passes only if the 128-bit coefficients (derived from all
/// the inputs) hit a relation of probability 2^−128 per try. A torsion
/// component, which `verify_strict` always refuses under a torsion-free key,
/// would instead be cancelled by any coefficient that is a multiple of its
/// order (half the time for the point of order 2), so it is kept out of the
/// batch.
pub fn verify_batch(items: &[BatchItem<'_>]) -> Result<(), usize> {
    // One signature: `verify_strict` itself is cheaper than the pre-checks
    // plus a batch equation of one (~1.3x here; docs/BENCHMARKS.md).
    if let [it] = items {
        return it
            .key
            .key
            .verify_strict(it.message, it.signature)
            .map_err(|_| 0);
    }
    let mut batch_idx = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        if it.key.batchable && r_is_batchable(it.signature.r_bytes()) {
            batch_idx.push(i);
        } else if it.key.key.verify_strict(it.message, it.signature).is_err() {
            return Err(i);
        }
    }
    match batch_idx.as_slice() {
        [] => return Ok(()),
        [i] => {
            let it = &items[*i];
            return it
                .key
                .key
                .verify_strict(it.message, it.signature)
                .map_err(|_| *i);
        }
        _ => {}
    }
    let msgs: Vec<&[u8]> = batch_idx.iter().map(|&i| items[i].message).collect();
    let sigs: Vec<Signature> = batch_idx.iter().map(|&i| *items[i].signature).collect();
    let keys: Vec<VerifyingKey> = batch_idx.iter().map(|&i| items[i].key.key).collect();
    if ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
        return Ok(());
    }
    for &i in &batch_idx {
        let it = &items[i];
        if it.key.key.verify_strict(it.message, it.signature).is_err() {
            return Err(i);
        }
    }
    // The batch failed but every single check passed: cannot happen for a
    // correct batch equation; refuse rather than accept.
    Err(batch_idx[0])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn labels_are_distinct_and_prefix_free() {
        let all: HashSet<_> = Label::ALL.iter().map(|l| l.as_str()).collect();
        assert_eq!(all.len(), Label::ALL.len());
        // With the 0x00 separator, no label can be a prefix of another's message.
        for l in Label::ALL {
            assert!(!l.as_str().as_bytes().contains(&0));
        }
    }

    #[test]
    fn cross_label_signature_fails() {
        let sk = SigningKey::from_bytes(&[7u8; 32]);
        let sig = sign(&sk, Label::Event, b"body");
        assert!(verify(&sk.verifying_key(), Label::Event, b"body", &sig).is_ok());
        for l in Label::ALL {
            if l != Label::Event {
                assert!(verify(&sk.verifying_key(), l, b"body", &sig).is_err());
            }
        }
    }

    /// The check on `R` agrees with decompressing, re-encoding and checking
    /// the point's order: each encoding of `y` ≥ p (and its neighbours), both
    /// sign bits, the small-order points, encodings off the curve and many
    /// ordinary points, with and without torsion.
    #[test]
    fn r_check_agrees_with_reference() {
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
        use curve25519_dalek::scalar::Scalar;
        let reference = |b: &[u8; 32]| {
            CompressedEdwardsY(*b).decompress().is_some_and(|p| {
                !p.is_small_order() && p.is_torsion_free() && p.compress().to_bytes() == *b
            })
        };
        let mut encodings = Vec::new();
        // p - 3 ..= 2^255 - 1, i.e. y = p + d for d in -3..=18.
        for low in 0xeau8..=0xff {
            for sign in [0u8, 0x80] {
                let mut b = [0xffu8; 32];
                b[0] = low;
                b[31] = 0x7f | sign;
                encodings.push(b);
                // Neighbours that differ in a middle byte or the top byte.
                let mut c = b;
                c[17] = 0xfe;
                encodings.push(c);
                let mut c = b;
                c[31] = 0x7e | sign;
                encodings.push(c);
            }
        }
        // y = 0..=40, both signs: the small-order points and their neighbours.
        for y in 0u8..=40 {
            for sign in [0u8, 0x80] {
                let mut b = [0u8; 32];
                b[0] = y;
                b[31] = sign;
                encodings.push(b);
            }
        }
        for t in EIGHT_TORSION {
            let mut b = t.compress().to_bytes();
            encodings.push(b);
            b[31] ^= 0x80;
            encodings.push(b);
        }
        for i in 1..300u64 {
            let p = ED25519_BASEPOINT_POINT * Scalar::from(i * 7919);
            for t in [0, 1, 4] {
                let mut b = (p + EIGHT_TORSION[t]).compress().to_bytes();
                encodings.push(b);
                b[31] ^= 0x80;
                encodings.push(b);
            }
        }
        let (mut accepted, mut refused) = (0, 0);
        for b in &encodings {
            let want = reference(b);
            assert_eq!(r_is_batchable(b), want, "{b:02x?}");
            if want {
                accepted += 1;
            } else {
                refused += 1;
            }
        }
        // The set holds both answers in numbers, among them every small-order
        // point, non-canonical encodings and points with torsion.
        assert!(accepted > 500 && refused > 600, "{accepted} {refused}");
    }

    /// Five keys, each with a valid signature over its own event message.
    fn five_signed() -> (
        Vec<SigningKey>,
        Vec<PreparedKey>,
        Vec<Vec<u8>>,
        Vec<Signature>,
    ) {
        let keys: Vec<_> = (0..5u8)
            .map(|i| SigningKey::from_bytes(&[i + 1; 32]))
            .collect();
        let prepared = keys
            .iter()
            .map(|k| PreparedKey::new(k.verifying_key()))
            .collect();
        let msgs: Vec<Vec<u8>> = (0..5u8).map(|i| message(Label::Event, &[i])).collect();
        let sigs = keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
        (keys, prepared, msgs, sigs)
    }

    /// `verify_batch` over the i-th key, message and signature of each list.
    fn batch(prepared: &[PreparedKey], msgs: &[Vec<u8>], sigs: &[Signature]) -> Result<(), usize> {
        let items: Vec<_> = (0..sigs.len())
            .map(|i| BatchItem {
                key: &prepared[i],
                message: &msgs[i],
                signature: &sigs[i],
            })
            .collect();
        verify_batch(&items)
    }

    /// An `R` that is not a curve point stays out of the batch; checked
    /// alone, it is refused and blamed.
    #[test]
    fn batch_refuses_r_off_the_curve() {
        let (_, prepared, msgs, mut sigs) = five_signed();
        // The first y (from 2 up) that is not on the curve.
        let off = (2u8..)
            .map(|y| {
                let mut b = [0u8; 32];
                b[0] = y;
                b
            })
            .find(|b| CompressedEdwardsY(*b).decompress().is_none())
            .expect("some small y is off the curve");
        assert!(!r_is_batchable(&off));
        let mut bytes = sigs[2].to_bytes();
        bytes[..32].copy_from_slice(&off);
        sigs[2] = Signature::from_bytes(&bytes);
        assert_eq!(batch(&prepared, &msgs, &sigs), Err(2));
    }

    #[test]
    fn batch_reports_bad_index() {
        let (keys, prepared, msgs, mut sigs) = five_signed();
        let items = |sigs: &[Signature]| batch(&prepared, &msgs, sigs);
        assert_eq!(items(&sigs), Ok(()));
        sigs[3] = keys[3].sign(b"other");
        assert_eq!(items(&sigs), Err(3));
    }
}
