//! Identity and device keys, device certificates, fingerprints and safety numbers.
//!
//! A person has one *identity* (an Ed25519 key that co-signs agreements and
//! certifies devices) and one or more *devices*, each with an Ed25519 key that
//! signs events and requests and an X25519 key (an age recipient `age1…`) that
//! receives epoch keys. Secret types zeroize on drop and have no `Debug` that
//! prints secret material.

use std::fmt;

use bech32::{Bech32, Hrp};
use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use rand_core::CryptoRngCore;
use thiserror::Error;
use x25519_dalek::{PublicKey as XPublic, StaticSecret};
use zeroize::Zeroizing;

use crate::encoding::{DecodeError, Reader, Writer};
use crate::sign::{self, Label, SignatureError};

/// A public key that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not a canonical encoding of a curve point.
    #[error("not a valid public key")]
    Invalid,
    /// A small-order ("weak") Ed25519 key.
    #[error("a weak public key was refused")]
    Weak,
    /// A low-order X25519 key, which would give an all-zero shared secret.
    #[error("a low-order X25519 key was refused")]
    LowOrder,
    /// A certificate whose signature does not verify.
    #[error("a device certificate did not verify")]
    BadCertificate,
    /// A device's proof of possession did not verify.
    #[error("the new device's own signature did not verify")]
    Possession,
}

impl From<KeyError> for DecodeError {
    fn from(_: KeyError) -> Self {
        DecodeError::Invalid("public key")
    }
}

/// Parses an Ed25519 public key, refusing non-canonical and small-order points.
pub(crate) fn parse_ed25519(bytes: &[u8; 32]) -> Result<VerifyingKey, KeyError> {
    if !sign::is_canonical_point(bytes) {
        return Err(KeyError::Invalid);
    }
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::Invalid)?;
    if key.is_weak() {
        return Err(KeyError::Weak);
    }
    Ok(key)
}

/// Checks that an X25519 public key is not of low order: a DH with any clamped
/// scalar gives a contributory (non-zero) shared secret.
pub(crate) fn check_x25519(bytes: &[u8; 32]) -> Result<XPublic, KeyError> {
    let pk = XPublic::from(*bytes);
    let probe = StaticSecret::from([0x42u8; 32]);
    if probe.diffie_hellman(&pk).was_contributory() {
        Ok(pk)
    } else {
        Err(KeyError::LowOrder)
    }
}

fn short_hex_groups(bytes: &[u8]) -> String {
    hex::encode(bytes)
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A fresh signing key: a 32-byte seed from `rng` (what ed25519-dalek's own
/// `generate` does; ours takes the rand 0.8 generation's RNG, which age and
/// the rest of the tree use).
fn signing_key(rng: &mut impl CryptoRngCore) -> SigningKey {
    let mut seed = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(seed.as_mut());
    SigningKey::from_bytes(&seed)
}

// ---------------------------------------------------------------- identity

/// A person's identity secret key. Zeroizes on drop; never printed.
pub struct IdentitySecret(SigningKey);

impl IdentitySecret {
    /// A fresh identity.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self(signing_key(rng))
    }

    /// From a 32-byte seed (for key files and test vectors).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// The 32-byte seed, for writing into an encrypted key file.
    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public identity key.
    pub fn public(&self) -> IdentityKey {
        IdentityKey(self.0.verifying_key())
    }

    /// Certifies one of this identity's devices, when both keys are here
    /// (a new key bundle, a rotation): the device proves possession of its
    /// key and the identity certifies it.
    pub fn certify(&self, device: &DeviceSecret, created_ms: u64) -> DeviceCert {
        let proof = device.prove_possession(&self.public(), created_ms);
        DeviceCert {
            identity: self.public(),
            device: device.public(),
            created_ms,
            possession: proof,
            signature: sign::sign(
                &self.0,
                Label::DeviceCert,
                &DeviceCert::signed_body(&self.public(), &device.public(), created_ms),
            ),
        }
    }

    /// Certifies a device whose key lives elsewhere (a device being linked),
    /// given its proof of possession ([`DeviceSecret::prove_possession`]).
    /// Refuses a proof that does not verify: no identity can certify a key
    /// whose holder did not ask for it.
    pub fn certify_with_proof(
        &self,
        device: &DeviceKey,
        created_ms: u64,
        possession: &Signature,
    ) -> Result<DeviceCert, KeyError> {
        let body = DeviceCert::signed_body(&self.public(), device, created_ms);
        sign::verify(
            device.verifying_key(),
            Label::DevicePossession,
            &body,
            possession,
        )
        .map_err(|_| KeyError::Possession)?;
        Ok(DeviceCert {
            identity: self.public(),
            device: device.clone(),
            created_ms,
            possession: *possession,
            signature: sign::sign(&self.0, Label::DeviceCert, &body),
        })
    }

    pub(crate) fn sign(&self, label: Label, body: &[u8]) -> Signature {
        sign::sign(&self.0, label, body)
    }
}

impl fmt::Debug for IdentitySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentitySecret")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

/// A person's public identity key (validated: canonical, not weak).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityKey(VerifyingKey);

impl IdentityKey {
    /// Parses and validates 32 bytes.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        parse_ed25519(bytes).map(Self)
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The dalek key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }

    /// A short fingerprint for people: 32 hex digits in groups of four.
    pub fn fingerprint(&self) -> String {
        let h = sign::hash(Label::Fingerprint, &self.to_bytes());
        short_hex_groups(&h[..16])
    }

    pub(crate) fn verify(
        &self,
        label: Label,
        body: &[u8],
        sig: &Signature,
    ) -> Result<(), SignatureError> {
        sign::verify(&self.0, label, body, sig)
    }
}

impl PartialOrd for IdentityKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IdentityKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.to_bytes().cmp(&other.to_bytes())
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityKey({})", self.fingerprint())
    }
}

// ---------------------------------------------------------------- devices

/// A device's secret keys (Ed25519 signing, X25519 decryption). Zeroize on drop.
pub struct DeviceSecret {
    signing: SigningKey,
    x25519: StaticSecret,
}

impl DeviceSecret {
    /// Fresh device keys.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut x = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(x.as_mut());
        Self {
            signing: signing_key(rng),
            x25519: StaticSecret::from(*x),
        }
    }

    /// From two 32-byte secrets (key files and test vectors).
    pub fn from_secrets(signing_seed: &[u8; 32], x25519: &[u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(signing_seed),
            x25519: StaticSecret::from(*x25519),
        }
    }

    /// A second copy of the same device keys (see [`crate::keyfile::KeyBundle::duplicate`]).
    pub fn duplicate(&self) -> Self {
        Self {
            signing: SigningKey::from_bytes(&self.signing.to_bytes()),
            x25519: StaticSecret::from(self.x25519.to_bytes()),
        }
    }

    /// This device's signature asking `identity` to certify it (proof of
    /// possession, label `troth.app/v2/device-possession` over the
    /// certificate's body).
    pub fn prove_possession(&self, identity: &IdentityKey, created_ms: u64) -> Signature {
        let body = DeviceCert::signed_body(identity, &self.public(), created_ms);
        sign::sign(&self.signing, Label::DevicePossession, &body)
    }

    /// The Ed25519 seed, for writing into an encrypted key file.
    pub fn signing_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The X25519 secret as an age identity string (`AGE-SECRET-KEY-1…`).
    pub fn age_secret_string(&self) -> Zeroizing<String> {
        let bytes = Zeroizing::new(self.x25519.to_bytes());
        // The HRP is a constant that always parses.
        let hrp = Hrp::parse_unchecked("age-secret-key-");
        let s = Zeroizing::new(bech32::encode::<Bech32>(hrp, bytes.as_ref()).unwrap_or_default());
        // Bech32 is ASCII: no Unicode case tables in the browser's wasm.
        Zeroizing::new(s.to_ascii_uppercase())
    }

    /// Parses an age identity string into the X25519 secret part.
    pub fn from_age_secret(signing_seed: &[u8; 32], age_secret: &str) -> Result<Self, KeyError> {
        let (hrp, data) = bech32::decode(age_secret).map_err(|_| KeyError::Invalid)?;
        let data = Zeroizing::new(data);
        if !hrp.as_str().eq_ignore_ascii_case("age-secret-key-") {
            return Err(KeyError::Invalid);
        }
        let arr: [u8; 32] = data.as_slice().try_into().map_err(|_| KeyError::Invalid)?;
        let arr = Zeroizing::new(arr);
        Ok(Self::from_secrets(signing_seed, &arr))
    }

    /// The age identity that opens envelopes addressed to this device.
    pub(crate) fn age_identity(&self) -> Result<age::x25519::Identity, KeyError> {
        // Our own encoding of a 32-byte secret always parses.
        self.age_secret_string()
            .parse()
            .map_err(|_| KeyError::Invalid)
    }

    /// The public half.
    pub fn public(&self) -> DeviceKey {
        DeviceKey {
            signing: self.signing.verifying_key(),
            x25519: XPublic::from(&self.x25519).to_bytes(),
        }
    }

    pub(crate) fn sign(&self, label: Label, body: &[u8]) -> Signature {
        sign::sign(&self.signing, label, body)
    }
}

impl fmt::Debug for DeviceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceSecret")
            .field("public", &self.public())
            .finish_non_exhaustive()
    }
}

/// A device's public keys. The Ed25519 key is the device's name on the relay.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct DeviceKey {
    signing: VerifyingKey,
    x25519: [u8; 32],
}

impl DeviceKey {
    /// Parses and validates both halves.
    pub fn from_parts(signing: &[u8; 32], x25519: &[u8; 32]) -> Result<Self, KeyError> {
        let signing = parse_ed25519(signing)?;
        check_x25519(x25519)?;
        Ok(Self {
            signing,
            x25519: *x25519,
        })
    }

    /// The Ed25519 key's 32 bytes: the device id.
    pub fn id(&self) -> DeviceId {
        DeviceId(self.signing.to_bytes())
    }

    /// The Ed25519 verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.signing
    }

    /// The X25519 public key bytes.
    pub fn x25519_bytes(&self) -> [u8; 32] {
        self.x25519
    }

    /// The device's age recipient string, `age1…`.
    pub fn age_recipient_string(&self) -> String {
        let hrp = Hrp::parse_unchecked("age");
        bech32::encode::<Bech32>(hrp, &self.x25519).unwrap_or_default()
    }

    /// The device's age recipient.
    pub(crate) fn age_recipient(&self) -> Result<age::x25519::Recipient, KeyError> {
        self.age_recipient_string()
            .parse()
            .map_err(|_| KeyError::Invalid)
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.raw(&self.signing.to_bytes()).raw(&self.x25519);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let s: [u8; 32] = r.array()?;
        let x: [u8; 32] = r.array()?;
        Ok(Self::from_parts(&s, &x)?)
    }
}

impl fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceKey({})", self.id())
    }
}

/// A device's name: its Ed25519 public key bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceId(pub [u8; 32]);

impl DeviceId {
    /// Base64url (no padding), as in request headers.
    pub fn to_b64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parses base64url (no padding).
    pub fn from_b64(s: &str) -> Result<Self, DecodeError> {
        use base64::Engine;
        let v = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| DecodeError::Invalid("device id"))?;
        let arr: [u8; 32] = v
            .as_slice()
            .try_into()
            .map_err(|_| DecodeError::Invalid("device id"))?;
        Ok(Self(arr))
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0[..8]))
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({self})")
    }
}

/// An identity's signed statement that a device belongs to it, with the
/// device's own signature over the same words (proof of possession: no
/// identity can certify someone else's device key).
///
/// A `DeviceCert` value always carries two valid signatures: the only ways to
/// get one are [`IdentitySecret::certify`], [`IdentitySecret::certify_with_proof`]
/// and [`DeviceCert::decode`], which verify.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceCert {
    identity: IdentityKey,
    device: DeviceKey,
    created_ms: u64,
    possession: Signature,
    signature: Signature,
}

impl DeviceCert {
    /// Encoded size in bytes.
    pub const LEN: usize = 1 + 32 + 64 + 8 + 64 + 64;
    const VERSION: u8 = 2;

    fn signed_body(identity: &IdentityKey, device: &DeviceKey, created_ms: u64) -> Vec<u8> {
        let mut w = Writer::with_capacity(Self::LEN);
        w.u8(Self::VERSION).raw(&identity.to_bytes());
        device.encode(&mut w);
        w.u64(created_ms);
        w.finish()
    }

    /// The certifying identity.
    pub fn identity(&self) -> &IdentityKey {
        &self.identity
    }

    /// The certified device.
    pub fn device(&self) -> &DeviceKey {
        &self.device
    }

    /// When the identity says it certified the device (ms since the Unix epoch).
    pub fn created_ms(&self) -> u64 {
        self.created_ms
    }

    /// Canonical bytes: the body, the device's proof of possession, the
    /// identity's signature.
    pub fn encode(&self, w: &mut Writer) {
        w.raw(&Self::signed_body(
            &self.identity,
            &self.device,
            self.created_ms,
        ))
        .raw(&self.possession.to_bytes())
        .raw(&self.signature.to_bytes());
    }

    /// Canonical bytes as a vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(Self::LEN);
        self.encode(&mut w);
        w.finish()
    }

    /// Decodes and verifies a certificate.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let v = r.u8()?;
        if v != Self::VERSION {
            return Err(DecodeError::UnsupportedVersion(v));
        }
        let identity = IdentityKey::from_bytes(&r.array()?)?;
        let device = DeviceKey::decode(r)?;
        let created_ms = r.u64()?;
        let possession = Signature::from_bytes(&r.array()?);
        let signature = Signature::from_bytes(&r.array()?);
        let body = Self::signed_body(&identity, &device, created_ms);
        sign::verify(
            device.verifying_key(),
            Label::DevicePossession,
            &body,
            &possession,
        )
        .map_err(|_| DecodeError::Invalid("device certificate proof of possession"))?;
        identity
            .verify(Label::DeviceCert, &body, &signature)
            .map_err(|_| DecodeError::Invalid("device certificate signature"))?;
        Ok(Self {
            identity,
            device,
            created_ms,
            possession,
            signature,
        })
    }

    /// Decodes a certificate from exactly these bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let c = Self::decode(&mut r)?;
        r.finish()?;
        Ok(c)
    }
}

impl fmt::Debug for DeviceCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCert")
            .field("identity", &self.identity)
            .field("device", &self.device)
            .field("created_ms", &self.created_ms)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------- safety numbers

/// A number both partners can read aloud to check they hold each other's real
/// keys: 40 digits in 8 groups of 5, the same on both sides (order-independent).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SafetyNumber(String);

impl SafetyNumber {
    /// Computes the safety number of two identities.
    pub fn new(a: &IdentityKey, b: &IdentityKey) -> Self {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mut body = Vec::with_capacity(64);
        body.extend_from_slice(&lo.to_bytes());
        body.extend_from_slice(&hi.to_bytes());
        let h = sign::hash(Label::SafetyNumber, &body);
        Self(digit_groups(&h, 8))
    }

    /// The digits, grouped with spaces.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Turns hash bytes into `groups` groups of five decimal digits, each from
/// four bytes reduced modulo 100 000 (bias below 2^-15 per group).
pub(crate) fn digit_groups(h: &[u8; 32], groups: usize) -> String {
    h.chunks(4)
        .take(groups)
        .map(|c| {
            let mut b = [0u8; 4];
            b.copy_from_slice(c);
            format!("{:05}", u32::from_be_bytes(b) % 100_000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(1)
    }

    #[test]
    fn certificate_round_trip_and_tamper() {
        let mut rng = rng();
        let id = IdentitySecret::generate(&mut rng);
        let dev = DeviceSecret::generate(&mut rng);
        let cert = id.certify(&dev, 1234);
        let bytes = cert.to_bytes();
        assert_eq!(bytes.len(), DeviceCert::LEN);
        assert_eq!(DeviceCert::from_bytes(&bytes).ok(), Some(cert));
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(DeviceCert::from_bytes(&b).is_err(), "flip at {i} accepted");
        }
    }

    /// No identity can certify a device key whose holder did not sign for
    /// it: the device's own signature covers the identity it asks.
    #[test]
    fn certificates_need_the_device_s_own_signature() {
        let mut rng = rng();
        let alex = IdentitySecret::generate(&mut rng);
        let sam = IdentitySecret::generate(&mut rng);
        let sams_phone = DeviceSecret::generate(&mut rng);
        let proof = sams_phone.prove_possession(&sam.public(), 7);
        assert!(
            sam.certify_with_proof(&sams_phone.public(), 7, &proof)
                .is_ok()
        );
        // Alex takes Sam's device key (public) and Sam's proof: refused.
        assert_eq!(
            alex.certify_with_proof(&sams_phone.public(), 7, &proof)
                .err(),
            Some(KeyError::Possession)
        );
        // Another time, another proof.
        assert!(
            sam.certify_with_proof(&sams_phone.public(), 8, &proof)
                .is_err()
        );
        // A certificate whose possession signature was made by the identity
        // (as a forger without the device key would have to) is refused on decode.
        let cert = sam.certify(&sams_phone, 7);
        let mut bytes = cert.to_bytes();
        let body = DeviceCert::signed_body(&sam.public(), &sams_phone.public(), 7);
        let forged = sam.sign(Label::DevicePossession, &body);
        bytes[105..169].copy_from_slice(&forged.to_bytes());
        assert!(DeviceCert::from_bytes(&bytes).is_err());
    }

    #[test]
    fn safety_number_is_symmetric() {
        let mut rng = rng();
        let a = IdentitySecret::generate(&mut rng).public();
        let b = IdentitySecret::generate(&mut rng).public();
        let n = SafetyNumber::new(&a, &b);
        assert_eq!(n, SafetyNumber::new(&b, &a));
        assert_eq!(n.as_str().len(), 8 * 5 + 7);
        assert_ne!(n, SafetyNumber::new(&a, &a));
    }

    #[test]
    fn weak_and_low_order_keys_are_refused() {
        // The identity point (small order) encodes as 1 followed by zeros.
        let mut ident = [0u8; 32];
        ident[0] = 1;
        assert_eq!(IdentityKey::from_bytes(&ident), Err(KeyError::Weak));
        // X25519 low-order points: 0 and 1.
        assert_eq!(check_x25519(&[0u8; 32]).err(), Some(KeyError::LowOrder));
        assert_eq!(check_x25519(&ident).err(), Some(KeyError::LowOrder));
        // Non-canonical encoding of a point (y = p + 1 for the identity).
        let mut noncanon = [0xffu8; 32];
        noncanon[0] = 0xee;
        noncanon[31] = 0x7f;
        assert!(IdentityKey::from_bytes(&noncanon).is_err());
    }

    #[test]
    fn age_strings_round_trip() {
        let mut rng = rng();
        let dev = DeviceSecret::generate(&mut rng);
        let s = dev.age_secret_string();
        assert!(s.starts_with("AGE-SECRET-KEY-1"));
        let back = DeviceSecret::from_age_secret(&dev.signing_seed(), &s).expect("parse");
        assert_eq!(back.public(), dev.public());
        let r = dev.public().age_recipient_string();
        assert!(r.starts_with("age1"));
        assert_eq!(
            dev.age_identity()
                .expect("identity")
                .to_public()
                .to_string(),
            r,
            "our bech32 matches age's"
        );
    }

    #[test]
    fn debug_never_prints_secrets() {
        let mut rng = rng();
        let id = IdentitySecret::generate(&mut rng);
        let dev = DeviceSecret::generate(&mut rng);
        let seed_hex = hex::encode(*id.to_seed());
        let dbg = format!("{id:?} {dev:?}");
        assert!(!dbg.contains(&seed_hex));
        assert!(!dbg.contains(&hex::encode(*dev.signing_seed())));
        assert!(!dbg.to_uppercase().contains("AGE-SECRET-KEY"));
    }
}
