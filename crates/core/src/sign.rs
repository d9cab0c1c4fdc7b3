//! Domain-separated Ed25519 signatures.
//!
//! Every signed message is `label || 0x00 || body`, where `label` names the kind
//! of message and the protocol version (`troth.app/v1/event`, …) and the body
//! starts with the space id wherever the message belongs to a space. So nothing
//! signed in one context or one space verifies in another.
//!
//! Verification is `verify_strict` only, everywhere: [`verify_batch`]
//! (the log verifier's pages, the relay's appends) checks each signature
//! with it, so every verifier accepts exactly the same set; see its docs and
//! `docs/PROTOCOL.md` §3 for why the batch equation was given up.

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

/// A verifying key parsed once, for checking many signatures.
#[derive(Clone, Debug)]
pub struct PreparedKey {
    key: VerifyingKey,
}

impl PreparedKey {
    /// Prepares a key.
    pub fn new(key: VerifyingKey) -> Self {
        Self { key }
    }

    /// The key.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }
}

/// One signature to check among many.
pub struct BatchItem<'a> {
    /// The signer.
    pub key: &'a PreparedKey,
    /// The full signed message (`label || 0x00 || body`).
    pub message: &'a [u8],
    /// The signature.
    pub signature: &'a Signature,
}

/// Verifies many signatures, each with `verify_strict`; `Ok` exactly when
/// every one passes, otherwise the index of the first that fails.
///
/// Why not ed25519-dalek's batch equation (as protocol version 1 did): it
/// is cofactorless, and cancels a small-order (torsion) component of `R`
/// whenever the coefficient derived for that signature is a multiple of the
/// component's order (half the time for order 2), so it accepted signatures
/// `verify_strict` refuses, and a member device could grind an event that
/// batches pass and single checks refuse — a split log. Keeping every `R`
/// with torsion out of the batch makes it exact, but that check
/// (`is_torsion_free`, a scalar multiplication by the group order) costs
/// about as much as `verify_strict` itself, so an exact batch cost 1.2–1.4×
/// a single check per signature; checking each alone is both exact and
/// cheaper (docs/PROTOCOL.md §3, docs/BENCHMARKS.md).
pub fn verify_batch(items: &[BatchItem<'_>]) -> Result<(), usize> {
    for (i, it) in items.iter().enumerate() {
        if it.key.key.verify_strict(it.message, it.signature).is_err() {
            return Err(i);
        }
    }
    Ok(())
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
