//! Domain-separated Ed25519 signatures.
//!
//! Every signed message is `label || 0x00 || body`, where `label` names the kind
//! of message and the protocol version (`troth.app/v1/event`, …) and the body
//! starts with the space id wherever the message belongs to a space. So nothing
//! signed in one context or one space verifies in another.
//!
//! Verification follows one rule everywhere, ZIP-215 (the cofactored
//! equation, as ed25519-zebra implements it), on keys that were parsed
//! canonical and not of small order: [`verify`] checks one signature,
//! [`verify_batch`] many at once (the log verifier's pages, the relay's
//! appends), and the two accept exactly the same set. Signing stays with
//! ed25519-dalek (RFC 8032; its signatures pass both rules). See
//! `docs/PROTOCOL.md` §3 for why this rule and not `verify_strict`.

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
    /// A snapshot of the verified state, bound to its space and head
    /// (associated data of the sealed record).
    LocalSnapshot,
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
            Label::LocalSnapshot => "troth.app/v2/local-snapshot",
            Label::Request => "troth.app/v1/request",
            Label::PairConfirm => "troth.app/v1/pair-confirm",
            Label::Export => "troth.app/v1/export",
            Label::Fingerprint => "troth.app/v1/fingerprint",
            Label::SafetyNumber => "troth.app/v1/safety-number",
            Label::StateCode => "troth.app/v1/state-code",
        }
    }

    /// Every label, for tests that check they are distinct.
    pub const ALL: [Label; 16] = [
        Label::Event,
        Label::EventHash,
        Label::AgreementCosign,
        Label::AgreementContent,
        Label::DeviceCert,
        Label::DevicePossession,
        Label::EpochKeyCommitment,
        Label::PayloadCommitment,
        Label::LocalState,
        Label::LocalSnapshot,
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

/// Verifies a signature over `label || 0x00 || body` under the protocol's
/// rule (ZIP-215; a small-order key is refused).
pub fn verify(
    key: &VerifyingKey,
    label: Label,
    body: &[u8],
    sig: &Signature,
) -> Result<(), SignatureError> {
    PreparedKey::new(*key).verify(&message(label, body), sig)
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
    /// The same point, decompressed once, for single checks.
    zip215: Option<ed25519_zebra::VerificationKey>,
}

impl PreparedKey {
    /// Prepares a key. A small-order key (anyone can sign for it under the
    /// cofactored rule) verifies nothing: every check under it fails.
    pub fn new(key: VerifyingKey) -> Self {
        let zip215 = if key.is_weak() {
            None
        } else {
            ed25519_zebra::VerificationKey::try_from(key.to_bytes()).ok()
        };
        Self { key, zip215 }
    }

    /// The key.
    pub fn key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Checks one signature over a full signed message (`label || 0x00 ||
    /// body`).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        match &self.zip215 {
            Some(key) => key.verify(signature, message).map_err(|_| SignatureError),
            None => Err(SignatureError),
        }
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

/// Verifies many signatures at once; `Ok` exactly when every one passes
/// [`PreparedKey::verify`], otherwise the index of the first that fails.
///
/// The batch equation is ZIP-215's cofactored one (ed25519-zebra), with
/// 128-bit coefficients drawn from the system's randomness, and terms under
/// the same key coalesced (a space's log has a handful of device keys, so a
/// page costs a fraction of checking each signature alone). Under the
/// cofactored rule a batch accepts exactly what single checks accept, so no
/// event can pass one verifier and fail another. Why not `verify_strict`
/// (as protocol version 1 did): its cofactorless equation cannot be batched
/// exactly without a torsion check on every `R`, which costs about as much
/// as the signature check itself (`docs/PROTOCOL.md` §3).
pub fn verify_batch(items: &[BatchItem<'_>]) -> Result<(), usize> {
    if let Some(weak) = items.iter().position(|it| it.key.zip215.is_none()) {
        // Checked in order below, so the first failure is still the one named.
        return first_failure(&items[..=weak]).map_or(Err(weak), Err);
    }
    let mut batch = ed25519_zebra::batch::Verifier::new();
    for it in items {
        batch.queue((
            ed25519_zebra::VerificationKeyBytes::from(it.key.key.to_bytes()),
            *it.signature,
            it.message,
        ));
    }
    if batch.verify(batch_rng()).is_ok() {
        return Ok(());
    }
    // Some signature fails; single checks (the same rule) name the first.
    // (A batch never refuses a set of signatures that each pass alone; if
    // it ever did, the single checks are the rule.)
    first_failure(items).map_or(Ok(()), Err)
}

/// The index of the first item that fails alone, if any.
fn first_failure(items: &[BatchItem<'_>]) -> Option<usize> {
    items
        .iter()
        .position(|it| it.key.verify(it.message, it.signature).is_err())
}

/// Randomness for the batch coefficients (rand 0.10's thread generator,
/// seeded from the system).
#[cfg(not(target_arch = "wasm32"))]
fn batch_rng() -> impl rand_core_010::CryptoRng {
    rand_010::rng()
}

/// Randomness for the batch coefficients (the browser's crypto, through
/// getrandom).
#[cfg(target_arch = "wasm32")]
fn batch_rng() -> rand_core::OsRng {
    rand_core::OsRng
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

    /// A small-order key verifies nothing: under the cofactored rule anyone
    /// could sign for it. Refused alone and in a batch, where it is blamed.
    #[test]
    fn a_small_order_key_verifies_nothing() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        let (_, mut prepared, msgs, sigs) = five_signed();
        for t in &EIGHT_TORSION {
            let weak = VerifyingKey::from_bytes(&t.compress().to_bytes()).expect("a point");
            // s = 0 and R the identity pass the cofactored equation for
            // any message under a small-order key.
            let mut forged = [0u8; 64];
            forged[0] = 1;
            let forged = Signature::from_bytes(&forged);
            let key = PreparedKey::new(weak);
            assert_eq!(key.verify(&msgs[1], &forged), Err(SignatureError));
            assert_eq!(
                verify(&weak, Label::Event, &[1], &forged),
                Err(SignatureError)
            );
            prepared[1] = key;
            let mut sigs = sigs.clone();
            sigs[1] = forged;
            assert_eq!(batch(&prepared, &msgs, &sigs), Err(1));
        }
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
