//! Events: the signed, hash-chained entries of a space's log.
//!
//! Wire format (version 2), all integers big-endian:
//!
//! ```text
//! u8   format version (2)
//! [16] space id
//! u64  sequence number (0 for the genesis event)
//! [32] hash of the previous event (all zero for seq 0)
//! [32] author device (Ed25519 public key)
//! u32  key epoch
//! u64  author's timestamp, ms since the Unix epoch
//! u8   body kind (1 sealed, 2 control)
//! u32  body length, then the body (at most MAX_BODY bytes)
//! [64] Ed25519 signature by the author device over
//!      "troth.app/v1/event" || 0x00 || every byte above
//! ```
//!
//! The event hash is SHA-256("troth.app/v1/event-hash" || 0x00 || all bytes,
//! signature included). A sealed body is opaque ciphertext; a control body is
//! public (the relay reads it to learn which devices may use the space).

use std::fmt;

use ed25519_dalek::Signature;

use crate::encoding::{DecodeError, Reader, Writer};
use crate::ids::SpaceId;
use crate::keys::{DeviceCert, DeviceId, DeviceSecret};
use crate::sign::{self, Label, SignatureError};

/// The event format version this implementation writes and accepts.
pub const FORMAT_VERSION: u8 = 3;
/// Largest body (sealed ciphertext or control) in bytes.
pub const MAX_BODY: usize = 64 * 1024;
/// Largest encoded event in bytes.
pub const MAX_EVENT: usize = HEADER_LEN + 1 + 4 + MAX_BODY + 64;
const HEADER_LEN: usize = 1 + 16 + 8 + 32 + 32 + 4 + 8;
/// Most envelopes one control event may carry.
pub const MAX_ENVELOPES: usize = 64;
/// Largest single envelope (an age file holding one 32-byte key is ~250 bytes).
pub const MAX_ENVELOPE: usize = 1024;

/// The SHA-256 hash that names an event and chains the log.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EventHash(pub [u8; 32]);

impl EventHash {
    /// The previous-hash of the genesis event.
    pub const ZERO: EventHash = EventHash([0u8; 32]);

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for EventHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventHash({})", &self.to_hex()[..16])
    }
}

/// A partner's role in a space. Roles never appear in the public (control)
/// parts of events, so the relay cannot tell who was hurt: each client learns
/// them with the identities it authenticates at pairing (its trust anchors).
///
/// A role names a *person* for the life of the space: pairing gives each
/// partner one (the browser makes whoever creates the space `Leading`; the
/// CLI's `troth pair start --role` lets its user choose). Who sets the
/// conditions starts as `Leading` and is what both partners confirm
/// ([`crate::state::Roles::sets`]); they can later swap it together, and
/// every signed field that names a role (a rule's `asks_of`) keeps naming
/// the same person.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Sets the conditions unless both partners chose otherwise.
    #[default]
    Leading,
    /// Rebuilding trust unless both partners chose otherwise.
    Rebuilding,
}

impl Role {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Role::Leading => 1,
            Role::Rebuilding => 2,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Result<Self, DecodeError> {
        match v {
            1 => Ok(Role::Leading),
            2 => Ok(Role::Rebuilding),
            _ => Err(DecodeError::UnknownTag {
                what: "role",
                value: u64::from(v),
            }),
        }
    }

    /// The other partner's role.
    pub fn other(self) -> Role {
        match self {
            Role::Leading => Role::Rebuilding,
            Role::Rebuilding => Role::Leading,
        }
    }
}

/// An epoch key sealed to one device with age.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The epoch whose key is inside.
    pub epoch: u32,
    /// The device that can open it.
    pub device: DeviceId,
    /// The age file (binary).
    pub age: Vec<u8>,
}

/// A commitment to an epoch key: `H("troth.app/v2/epoch-key-commitment",
/// space || u32 epoch || key)`, signed inside the control event that starts
/// the epoch. Every device checks the key it opens against it, so a partner
/// cannot seal garbage, or different keys to different devices.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyCommitment(pub [u8; 32]);

impl fmt::Debug for KeyCommitment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyCommitment({})", &hex::encode(self.0)[..16])
    }
}

/// The public part of a membership change, readable by the relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// Seq 0: the space is created by its first member.
    Genesis {
        /// The creator's device, certified by the creator's identity.
        cert: DeviceCert,
        /// The commitment to epoch 0's key.
        commitment: KeyCommitment,
        /// The epoch-0 key for the creator's device.
        envelopes: Vec<Envelope>,
    },
    /// The second partner joins (after pairing).
    AddMember {
        /// The new member's device certificate.
        cert: DeviceCert,
        /// The epoch keys `k..=current` the adder still holds, for the new device.
        envelopes: Vec<Envelope>,
    },
    /// A member adds another device of their own (e.g. after a key rotation).
    AddDevice {
        /// The new device's certificate (same identity as the author's).
        cert: DeviceCert,
        /// Every epoch key so far, for the new device.
        envelopes: Vec<Envelope>,
    },
    /// A member revokes one of their own devices; a new epoch starts.
    RevokeDevice {
        /// The device that may no longer read or write.
        device: DeviceId,
        /// The commitment to the new epoch's key.
        commitment: KeyCommitment,
        /// The new epoch's key for every remaining device.
        envelopes: Vec<Envelope>,
    },
    /// A scheduled change of key (issue 17, forgetting on schedule): a new
    /// epoch starts, with no device removed, once the current epoch is at
    /// least [`crate::members::ROTATION_PERIOD_MS`] old by author times.
    /// Whichever client acts first after the period composes it.
    Rotate {
        /// The commitment to the new epoch's key.
        commitment: KeyCommitment,
        /// The new epoch's key for every active device.
        envelopes: Vec<Envelope>,
    },
}

impl Control {
    fn kind(&self) -> u8 {
        match self {
            Control::Genesis { .. } => 1,
            Control::AddMember { .. } => 2,
            Control::AddDevice { .. } => 3,
            Control::RevokeDevice { .. } => 4,
            Control::Rotate { .. } => 5,
        }
    }

    /// The envelopes the change carries.
    pub fn envelopes(&self) -> &[Envelope] {
        match self {
            Control::Genesis { envelopes, .. }
            | Control::AddMember { envelopes, .. }
            | Control::AddDevice { envelopes, .. }
            | Control::RevokeDevice { envelopes, .. }
            | Control::Rotate { envelopes, .. } => envelopes,
        }
    }

    /// The commitment to the key of the epoch this change starts, if it
    /// starts one (Genesis: epoch 0; RevokeDevice and Rotate: the next epoch).
    pub fn commitment(&self) -> Option<&KeyCommitment> {
        match self {
            Control::Genesis { commitment, .. }
            | Control::RevokeDevice { commitment, .. }
            | Control::Rotate { commitment, .. } => Some(commitment),
            Control::AddMember { .. } | Control::AddDevice { .. } => None,
        }
    }

    /// The certificate of a device this change admits, if any.
    pub fn admitted(&self) -> Option<&DeviceCert> {
        match self {
            Control::Genesis { cert, .. }
            | Control::AddMember { cert, .. }
            | Control::AddDevice { cert, .. } => Some(cert),
            Control::RevokeDevice { .. } | Control::Rotate { .. } => None,
        }
    }

    /// Canonical bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(self.kind());
        match self {
            Control::Genesis {
                cert, commitment, ..
            } => {
                cert.encode(&mut w);
                w.raw(&commitment.0);
            }
            Control::AddMember { cert, .. } => cert.encode(&mut w),
            Control::AddDevice { cert, .. } => cert.encode(&mut w),
            Control::RevokeDevice {
                device, commitment, ..
            } => {
                w.raw(&device.0).raw(&commitment.0);
            }
            Control::Rotate { commitment, .. } => {
                w.raw(&commitment.0);
            }
        }
        let env = self.envelopes();
        w.u32(env.len() as u32);
        for e in env {
            w.u32(e.epoch).raw(&e.device.0).bytes(&e.age);
        }
        w.finish()
    }

    /// Decodes a control body (bounded; certificates are verified).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let kind = r.u8()?;
        let head = match kind {
            1 => {
                let cert = DeviceCert::decode(&mut r)?;
                let c = KeyCommitment(r.array()?);
                (Some(cert), None, Some(c))
            }
            2 | 3 => (Some(DeviceCert::decode(&mut r)?), None, None),
            4 => {
                let device = DeviceId(r.array()?);
                let c = KeyCommitment(r.array()?);
                (None, Some(device), Some(c))
            }
            5 => (None, None, Some(KeyCommitment(r.array()?))),
            v => {
                return Err(DecodeError::UnknownTag {
                    what: "control kind",
                    value: u64::from(v),
                });
            }
        };
        let n = r.count(MAX_ENVELOPES)?;
        let mut envelopes = Vec::with_capacity(n);
        for _ in 0..n {
            envelopes.push(Envelope {
                epoch: r.u32()?,
                device: DeviceId(r.array()?),
                age: r.bytes(MAX_ENVELOPE)?.to_vec(),
            });
        }
        r.finish()?;
        Ok(match (kind, head) {
            (1, (Some(cert), _, Some(commitment))) => Control::Genesis {
                cert,
                commitment,
                envelopes,
            },
            (2, (Some(cert), _, _)) => Control::AddMember { cert, envelopes },
            (3, (Some(cert), _, _)) => Control::AddDevice { cert, envelopes },
            (4, (_, Some(device), Some(commitment))) => Control::RevokeDevice {
                device,
                commitment,
                envelopes,
            },
            (5, (_, _, Some(commitment))) => Control::Rotate {
                commitment,
                envelopes,
            },
            _ => return Err(DecodeError::Invalid("control body")),
        })
    }
}

/// An event's body.
// Control events are rare (a handful per space); boxing would only complicate matching.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// `nonce (24) || XChaCha20-Poly1305 ciphertext || commitment tag (32)`
    /// of a padded [`crate::content::Content`] (see [`crate::crypto::seal`]).
    Sealed(Vec<u8>),
    /// A public membership change.
    Control(Control),
}

/// The signed header of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The space this event belongs to.
    pub space: SpaceId,
    /// Position in the log, from 0.
    pub seq: u64,
    /// Hash of the event at `seq - 1` as the author verified it.
    pub prev: EventHash,
    /// The author device.
    pub author: DeviceId,
    /// The key epoch the body is sealed under.
    pub epoch: u32,
    /// The author's clock, ms since the Unix epoch (informational).
    pub timestamp_ms: u64,
}

impl Header {
    /// The header's canonical bytes (also the AEAD associated data).
    pub fn encode(&self, w: &mut Writer) {
        w.u8(FORMAT_VERSION)
            .raw(&self.space.0)
            .u64(self.seq)
            .raw(&self.prev.0)
            .raw(&self.author.0)
            .u32(self.epoch)
            .u64(self.timestamp_ms);
    }

    /// The header's canonical bytes as a vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(HEADER_LEN);
        self.encode(&mut w);
        w.finish()
    }
}

/// A decoded, well-formed event. Its signature has *not* been checked: that
/// needs the author's key, which only a [`crate::log::ChainVerifier`] (or the
/// relay's member list) knows.
#[derive(Clone, PartialEq, Eq)]
pub struct Event {
    header: Header,
    body: Body,
    signature: Signature,
    bytes: Vec<u8>,
}

impl Event {
    /// Builds and signs an event.
    pub fn sign(header: Header, body: Body, device: &DeviceSecret) -> Event {
        let mut w = Writer::new();
        header.encode(&mut w);
        match &body {
            Body::Sealed(ct) => {
                w.u8(1).bytes(ct);
            }
            Body::Control(c) => {
                w.u8(2).bytes(&c.encode());
            }
        }
        let signature = device.sign(Label::Event, w.as_slice());
        w.raw(&signature.to_bytes());
        Event {
            header,
            body,
            signature,
            bytes: w.finish(),
        }
    }

    /// Decodes an event: bounded, never panics; control bodies and the
    /// certificates inside them are fully checked.
    pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
        if bytes.len() > MAX_EVENT {
            return Err(DecodeError::TooLong { max: MAX_EVENT });
        }
        let mut r = Reader::new(bytes);
        let v = r.u8()?;
        if v != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion(v));
        }
        let header = Header {
            space: SpaceId(r.array()?),
            seq: r.u64()?,
            prev: EventHash(r.array()?),
            author: DeviceId(r.array()?),
            epoch: r.u32()?,
            timestamp_ms: r.u64()?,
        };
        let kind = r.u8()?;
        let raw = r.bytes(MAX_BODY)?;
        let body = match kind {
            1 => Body::Sealed(raw.to_vec()),
            2 => Body::Control(Control::decode(raw)?),
            v => {
                return Err(DecodeError::UnknownTag {
                    what: "body kind",
                    value: u64::from(v),
                });
            }
        };
        let signature = Signature::from_bytes(&r.array()?);
        r.finish()?;
        if header.seq == 0 && header.prev != EventHash::ZERO {
            return Err(DecodeError::Invalid("genesis previous hash"));
        }
        Ok(Event {
            header,
            body,
            signature,
            bytes: bytes.to_vec(),
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The body.
    pub fn body(&self) -> &Body {
        &self.body
    }

    /// The signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The canonical encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes the signature covers (everything but the signature).
    pub fn signed_bytes(&self) -> &[u8] {
        &self.bytes[..self.bytes.len() - 64]
    }

    /// The full signed message, `label || 0x00 || signed bytes`.
    pub fn signed_message(&self) -> Vec<u8> {
        sign::message(Label::Event, self.signed_bytes())
    }

    /// The event's hash.
    pub fn hash(&self) -> EventHash {
        EventHash(sign::hash(Label::EventHash, &self.bytes))
    }

    /// Whether a head the relay names (`seq`, hash) is this very event. A
    /// `409 stale_head` that names the event just posted means an earlier
    /// try of the same append was written (its answer was lost): the append
    /// is done, and composing again would post the same thing twice.
    #[must_use]
    pub fn is_head(&self, head: (u64, EventHash)) -> bool {
        head == (self.header().seq, self.hash())
    }

    /// Checks the author's signature (the protocol's rule, [`crate::sign`]). The caller supplies
    /// the key it believes belongs to `header().author` and must check that.
    pub fn verify_signature(
        &self,
        key: &ed25519_dalek::VerifyingKey,
    ) -> Result<(), SignatureError> {
        if key.to_bytes() != self.header.author.0 {
            return Err(SignatureError);
        }
        sign::verify(key, Label::Event, self.signed_bytes(), &self.signature)
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("header", &self.header)
            .field("body", &self.body)
            .field("hash", &self.hash())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::IdentitySecret;
    use rand::SeedableRng;

    #[test]
    fn round_trip_and_every_bit_flip_is_caught() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let id = IdentitySecret::generate(&mut rng);
        let dev = DeviceSecret::generate(&mut rng);
        let cert = id.certify(&dev, 5);
        let header = Header {
            space: SpaceId([3; 16]),
            seq: 0,
            prev: EventHash::ZERO,
            author: dev.public().id(),
            epoch: 0,
            timestamp_ms: 77,
        };
        let ev = Event::sign(
            header,
            Body::Control(Control::Genesis {
                cert,
                commitment: KeyCommitment([5; 32]),
                envelopes: vec![Envelope {
                    epoch: 0,
                    device: dev.public().id(),
                    age: vec![1, 2, 3],
                }],
            }),
            &dev,
        );
        let back = Event::decode(ev.as_bytes()).expect("decode");
        assert_eq!(back, ev);
        let key = *dev.public().verifying_key();
        assert!(back.verify_signature(&key).is_ok());
        let bytes = ev.as_bytes().to_vec();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            if let Ok(e) = Event::decode(&b) {
                assert!(e.verify_signature(&key).is_err(), "flip at {i} verified");
            }
        }
        for n in 0..bytes.len() {
            assert!(Event::decode(&bytes[..n]).is_err());
        }
    }
}
