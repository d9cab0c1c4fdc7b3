//! Linking: one person adds a new device of their own over a one-time code.
//!
//! A device already in the space (the *adder*) opens a rendezvous mailbox
//! and shows a code exactly like a pairing code ([`PairingCode`]); the new
//! device types it. Both run this state machine over the mailbox, which the
//! relay (an adversary) carries: SPAKE2 on the code and explicit key
//! confirmation, as pairing does ([`crate::pairing`]), under labels of its
//! own (`troth.app/v2/link-…`), so a pairing message is never taken for a
//! linking message or the other way round.
//!
//! # What moves, and why
//!
//! The new device keeps **device keys of its own**, made on it and never
//! copied from another device. It receives the person's **identity secret**:
//! the identity key co-signs agreements, signs report consents and certifies
//! devices (docs/PROTOCOL.md §3), so a device without it could read and write
//! check-ins but could never sign an agreement, which is what the couple uses
//! Troth for. Signal provisions a linked device's identity key the same way.
//! The identity secret travels last, sealed under the SPAKE2-derived key of
//! this run, and only after the adder has appended `AddDevice` for the new
//! device's certificate: a run that fails before that point has revealed
//! nothing but public keys.
//!
//! # Message flow
//!
//! Every message is `version (2) || kind (1) || body`, fixed length per kind.
//!
//! ```text
//!  A: adder (in space S, role R, identity I)          N: new device (fresh device key D)
//!  1 AdderPake      SPAKE2 msg (A side)        ──▶
//!                                              ◀──  2 NewPake      SPAKE2 msg (B side)
//!  3 AdderConfirm   tag_A                      ──▶
//!                                              ◀──  4 NewConfirm   tag_N
//!  A checks tag_N                                   N checks tag_A
//!  5 AdderOffer  seal_AN#0(I || S || R || opt partner identity)  ──▶
//!                                              ◀──  6 NewDevice  seal_NA#0(D_ed || D_x25519
//!                                                       || created_ms || possession by D over I)
//!  A certifies D with I (refusing a possession proof that does not verify)
//!  and appends AddDevice(cert, envelopes for epochs k..=current) at seq n
//!  7 AdderDone   seal_AN#1(identity seed || n || hash of event n)  ──▶
//!                                                   N checks seed → I, then reads the
//!                                                   log from genesis, verified against
//!                                                   I and the partner identity of 5.
//! ```
//!
//! * **SPAKE2** identities `troth.app/v2/link-adder/<mailbox>` and
//!   `troth.app/v2/link-new-device/<mailbox>`; password the normalised code.
//! * **Transcript** `T = SHA-256("troth.app/v2/link-transcript" || 0x00 ||
//!   2 || mailbox (u32 BE) || message 1 body || message 2 body)`.
//! * **Keys**: HKDF-SHA256(salt `T`, input the SPAKE2 key), infos
//!   `troth.app/v2/link-confirm/adder`, `…/link-confirm/new-device`,
//!   `troth.app/v2/link-key/adder-to-new`, `…/link-key/new-to-adder`.
//! * **Key confirmation**: `HMAC-SHA256(confirm key,
//!   "troth.app/v2/link-confirm-tag" || 0x00 || T)`. A wrong code fails here
//!   on both sides ([`LinkError::WrongCode`]), and the code is burnt.
//! * **Sealed messages** as in pairing: ChaCha20-Poly1305, per-direction
//!   counter nonces never sent, associated data `2 || kind || T`.
//!
//! The adder never sends the identity secret before it has checked the new
//! device's key confirmation *and* certified a key whose possession the new
//! device proved; the new device refuses a seed whose public key is not the
//! identity offered in message 5.

use std::fmt;

use ed25519_dalek::Signature;
use rand_core::CryptoRngCore;
use spake2::{Ed25519Group, Password, Spake2};
use thiserror::Error;
use zeroize::Zeroizing;

use crate::encoding::{Reader, Writer};
use crate::event::{EventHash, Role};
use crate::ids::SpaceId;
use crate::keys::{DeviceCert, DeviceKey, DeviceSecret, IdentityKey, IdentitySecret};
use crate::pairing::{Message, PairingCode, PairingError, Session, Side, Suite};

/// The linking protocol version, the first byte of every linking message.
pub const VERSION: u8 = 2;

const PAKE_LEN: usize = 33;
const CONFIRM_LEN: usize = 32;
const TAG_LEN: usize = 16;
const OFFER_LEN: usize = 32 + 16 + 1 + 1 + 32;
const DEVICE_LEN: usize = 32 + 32 + 8 + 64;
const DONE_LEN: usize = 32 + 8 + 32;

static LINK_SUITE: Suite = Suite {
    version: VERSION,
    spake_a: "troth.app/v2/link-adder/",
    spake_b: "troth.app/v2/link-new-device/",
    transcript: b"troth.app/v2/link-transcript",
    confirm_tag: b"troth.app/v2/link-confirm-tag",
    info_confirm_a: b"troth.app/v2/link-confirm/adder",
    info_confirm_b: b"troth.app/v2/link-confirm/new-device",
    info_key_ab: b"troth.app/v2/link-key/adder-to-new",
    info_key_ba: b"troth.app/v2/link-key/new-to-adder",
};

/// Why linking stopped. Every variant ends the attempt: start again with a
/// new code. Worded for the person holding the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LinkError {
    /// Key confirmation failed: the two devices did not use the same code.
    #[error(
        "The code didn't match. If you didn't mistype it, someone else may have tried to use it. \
         Nothing was added; start again with a new code."
    )]
    WrongCode,
    /// A message could not be read or did not open.
    #[error(
        "A message between your devices was damaged or changed on the way. Start again with a new code."
    )]
    Malformed,
    /// A message arrived at the wrong moment.
    #[error(
        "A message between your devices arrived out of order or twice. Start again with a new code."
    )]
    UnexpectedMessage,
    /// The other side runs pairing (with a partner), not linking.
    #[error(
        "This code is for pairing with your partner, not for adding a device of your own. \
         Ask for a code from \"Add a device\" on your other device."
    )]
    PairingCode,
    /// The other app speaks another version.
    #[error(
        "The other device uses a different version of Troth ({0}). Update both, then start again with a new code."
    )]
    UnsupportedVersion(u8),
    /// The new device's proof that it holds its key did not verify.
    #[error(
        "The new device's key couldn't be confirmed. Nothing was added; start again with a new code."
    )]
    BadPossession,
    /// What the adder sent does not fit together (its identity secret is
    /// not the identity it offered, or the partner is the same person).
    #[error(
        "Your other device's keys don't fit together. Nothing was saved; start again with a new code."
    )]
    IdentityMismatch,
}

impl From<PairingError> for LinkError {
    fn from(e: PairingError) -> Self {
        match e {
            PairingError::WrongCode => LinkError::WrongCode,
            PairingError::UnsupportedVersion(v) => LinkError::UnsupportedVersion(v),
            PairingError::UnexpectedMessage => LinkError::UnexpectedMessage,
            _ => LinkError::Malformed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    AdderPake = 1,
    NewPake = 2,
    AdderConfirm = 3,
    NewConfirm = 4,
    AdderOffer = 5,
    NewDevice = 6,
    AdderDone = 7,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Kind::AdderPake,
            2 => Kind::NewPake,
            3 => Kind::AdderConfirm,
            4 => Kind::NewConfirm,
            5 => Kind::AdderOffer,
            6 => Kind::NewDevice,
            7 => Kind::AdderDone,
            _ => return None,
        })
    }

    fn body_len(self) -> usize {
        match self {
            Kind::AdderPake | Kind::NewPake => PAKE_LEN,
            Kind::AdderConfirm | Kind::NewConfirm => CONFIRM_LEN,
            Kind::AdderOffer => OFFER_LEN + TAG_LEN,
            Kind::NewDevice => DEVICE_LEN + TAG_LEN,
            Kind::AdderDone => DONE_LEN + TAG_LEN,
        }
    }
}

fn message(kind: Kind, body: &[u8]) -> Message {
    Message::from_parts(VERSION, kind as u8, body)
}

/// Checks version, kind and length; returns the body.
fn open_envelope(msg: &[u8], expected: Kind) -> Result<&[u8], LinkError> {
    let mut r = Reader::new(msg);
    let version = r.u8().map_err(|_| LinkError::Malformed)?;
    if version == crate::pairing::VERSION {
        return Err(LinkError::PairingCode);
    }
    if version != VERSION {
        return Err(LinkError::UnsupportedVersion(version));
    }
    let kind = r
        .u8()
        .ok()
        .and_then(Kind::from_u8)
        .ok_or(LinkError::Malformed)?;
    if kind != expected {
        return Err(LinkError::UnexpectedMessage);
    }
    let body = r.take(kind.body_len()).map_err(|_| LinkError::Malformed)?;
    r.finish().map_err(|_| LinkError::Malformed)?;
    Ok(body)
}

fn seal(session: &mut Session, kind: Kind, plain: &[u8]) -> Result<Message, LinkError> {
    let t = session.transcript;
    Ok(session.send.seal_raw(VERSION, kind as u8, &t, plain)?)
}

fn open(session: &mut Session, kind: Kind, body: &[u8]) -> Result<Zeroizing<Vec<u8>>, LinkError> {
    let t = session.transcript;
    Ok(session.recv.open_raw(VERSION, kind as u8, &t, body)?)
}

fn read_identity(r: &mut Reader<'_>) -> Result<IdentityKey, LinkError> {
    let bytes: [u8; 32] = r.array().map_err(|_| LinkError::Malformed)?;
    IdentityKey::from_bytes(&bytes).map_err(|_| LinkError::Malformed)
}

/// What the adder brings: the space and who is in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The space.
    pub space: SpaceId,
    /// This person's role in it.
    pub role: Role,
    /// The identity of this person (whose device is being linked).
    pub identity: IdentityKey,
    /// The partner's identity, once paired.
    pub partner: Option<IdentityKey>,
}

impl Offer {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(OFFER_LEN);
        w.raw(&self.identity.to_bytes())
            .raw(&self.space.0)
            .u8(self.role.to_u8());
        match &self.partner {
            Some(p) => w.u8(1).raw(&p.to_bytes()),
            None => w.u8(0).raw(&[0u8; 32]),
        };
        w.finish()
    }

    fn decode(bytes: &[u8]) -> Result<Self, LinkError> {
        let mut r = Reader::new(bytes);
        let identity = read_identity(&mut r)?;
        let space = SpaceId(r.array().map_err(|_| LinkError::Malformed)?);
        let role = Role::from_u8(r.u8().map_err(|_| LinkError::Malformed)?)
            .map_err(|_| LinkError::Malformed)?;
        let partner = match r.u8().map_err(|_| LinkError::Malformed)? {
            0 => {
                let zero: [u8; 32] = r.array().map_err(|_| LinkError::Malformed)?;
                if zero != [0u8; 32] {
                    return Err(LinkError::Malformed);
                }
                None
            }
            1 => Some(read_identity(&mut r)?),
            _ => return Err(LinkError::Malformed),
        };
        r.finish().map_err(|_| LinkError::Malformed)?;
        if partner == Some(identity) {
            return Err(LinkError::IdentityMismatch);
        }
        Ok(Self {
            space,
            role,
            identity,
            partner,
        })
    }
}

enum State {
    AdderAwaitPake {
        spake: Spake2<Ed25519Group>,
        my_pake: Vec<u8>,
    },
    AdderAwaitConfirm {
        session: Session,
    },
    AdderAwaitDevice {
        session: Session,
    },
    NewAwaitPake {
        spake: Spake2<Ed25519Group>,
        my_pake: Vec<u8>,
        device: DeviceSecret,
    },
    NewAwaitConfirm {
        session: Session,
        device: DeviceSecret,
    },
    NewAwaitOffer {
        session: Session,
        device: DeviceSecret,
    },
    NewAwaitDone {
        session: Session,
        offer: Offer,
    },
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::AdderAwaitPake { .. } => "adder, awaiting the new device's SPAKE2 message",
            State::AdderAwaitConfirm { .. } => "adder, awaiting the new device's confirmation",
            State::AdderAwaitDevice { .. } => "adder, awaiting the new device's key",
            State::NewAwaitPake { .. } => "new device, awaiting the adder's SPAKE2 message",
            State::NewAwaitConfirm { .. } => "new device, awaiting the adder's confirmation",
            State::NewAwaitOffer { .. } => "new device, awaiting the space",
            State::NewAwaitDone { .. } => "new device, awaiting admission",
        }
    }
}

struct Inner {
    mailbox: u32,
    /// This device's clock when the run started (the new certificate's time).
    now_ms: u64,
    /// The adder's identity secret and what it offers; none on the new device.
    adder: Option<(IdentitySecret, Offer)>,
    state: State,
}

/// A linking run in progress on one device. Consumed by every step; any
/// error ends it.
#[must_use = "a linking run does nothing until it receives the other device's messages"]
pub struct Linking(Box<Inner>);

/// What a step led to.
#[must_use = "the next state (or the result) must be kept"]
// Each run ends in `Admit` or `Linked` once; boxing them buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum LinkStep {
    /// Waiting for the other device's next message.
    Continue(Linking),
    /// On the adder: the new device proved its key and is certified.
    /// Append `AddDevice` for [`Admission::cert`], then send
    /// [`Admission::added`].
    Admit(Admission),
    /// On the new device: done. Read the log from genesis, verified
    /// against [`Linked`]'s identities, until the `AddDevice` it names.
    Linked(Linked),
}

impl fmt::Debug for LinkStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkStep::Continue(l) => f.debug_tuple("Continue").field(l).finish(),
            LinkStep::Admit(a) => f.debug_tuple("Admit").field(a).finish(),
            LinkStep::Linked(l) => f.debug_tuple("Linked").field(l).finish(),
        }
    }
}

/// On the adder, after the new device proved its key: the certificate to
/// admit, and the last message to send once it is in the log.
pub struct Admission {
    session: Session,
    identity: IdentitySecret,
    cert: DeviceCert,
}

impl Admission {
    /// The new device's certificate: its own key, its own possession
    /// signature, certified by this identity.
    pub fn cert(&self) -> &DeviceCert {
        &self.cert
    }

    /// The last message, once `AddDevice` is in the log at `seq` with
    /// `hash`: it carries the identity secret, sealed for the new device.
    pub fn added(mut self, seq: u64, hash: EventHash) -> Result<Message, LinkError> {
        let mut w = Writer::with_capacity(DONE_LEN);
        w.raw(self.identity.to_seed().as_ref())
            .u64(seq)
            .raw(&hash.0);
        let plain = Zeroizing::new(w.finish());
        seal(&mut self.session, Kind::AdderDone, &plain)
    }
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

/// On the new device, at the end: the space, this person's identity (secret
/// included), the partner's identity, and where this device was added.
#[non_exhaustive]
pub struct Linked {
    /// The space and the identities to trust for it.
    pub offer: Offer,
    /// The identity secret: goes into this device's key bundle with its own
    /// device keys and the certificate from the `AddDevice` event.
    pub identity: IdentitySecret,
    /// The sequence number of the `AddDevice` event that admitted this device.
    pub added_at: u64,
    /// That event's hash.
    pub event: EventHash,
}

impl fmt::Debug for Linked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Linked")
            .field("offer", &self.offer)
            .field("added_at", &self.added_at)
            .finish_non_exhaustive()
    }
}

impl Linking {
    /// Starts linking on a device already in the space, which will admit a
    /// new device of `identity` into `offer.space`. `now_ms` becomes the
    /// new certificate's creation time. Returns the first message.
    pub fn add(
        code: &PairingCode,
        identity: &IdentitySecret,
        offer: Offer,
        now_ms: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<(Linking, Message), LinkError> {
        if identity.public() != offer.identity || offer.partner == Some(offer.identity) {
            return Err(LinkError::IdentityMismatch);
        }
        let password = Password::new(code.reveal().as_bytes());
        let (id_a, id_b) = crate::pairing::spake_identities_for(&LINK_SUITE, code.mailbox());
        let (spake, my_pake) =
            Spake2::<Ed25519Group>::start_a_with_rng(&password, &id_a, &id_b, rng);
        let msg = message(Kind::AdderPake, &my_pake);
        let inner = Inner {
            mailbox: code.mailbox(),
            now_ms,
            adder: Some((IdentitySecret::from_seed(&identity.to_seed()), offer)),
            state: State::AdderAwaitPake { spake, my_pake },
        };
        Ok((Linking(Box::new(inner)), msg))
    }

    /// Starts linking on the new device, whose fresh device keys are
    /// `device`, with the code the other device shows. `now_ms` becomes its
    /// certificate's creation time.
    pub fn join(
        code: &PairingCode,
        device: &DeviceSecret,
        now_ms: u64,
        rng: &mut impl CryptoRngCore,
    ) -> (Linking, Message) {
        let password = Password::new(code.reveal().as_bytes());
        let (id_a, id_b) = crate::pairing::spake_identities_for(&LINK_SUITE, code.mailbox());
        let (spake, my_pake) =
            Spake2::<Ed25519Group>::start_b_with_rng(&password, &id_a, &id_b, rng);
        let msg = message(Kind::NewPake, &my_pake);
        let inner = Inner {
            mailbox: code.mailbox(),
            now_ms,
            adder: None,
            state: State::NewAwaitPake {
                spake,
                my_pake,
                device: device.duplicate(),
            },
        };
        (Linking(Box::new(inner)), msg)
    }

    /// The mailbox this run goes through.
    pub fn mailbox(&self) -> u32 {
        self.0.mailbox
    }

    /// Takes the other device's next message. Returns the next step and,
    /// maybe, a message to post. Any error ends the run.
    pub fn receive(self, msg: &[u8]) -> Result<(LinkStep, Option<Message>), LinkError> {
        let Inner {
            mailbox,
            now_ms,
            adder,
            state,
        } = *self.0;
        let cont = |state: State, adder, out: Option<Message>| {
            Ok((
                LinkStep::Continue(Linking(Box::new(Inner {
                    mailbox,
                    now_ms,
                    adder,
                    state,
                }))),
                out,
            ))
        };
        match state {
            State::AdderAwaitPake { spake, my_pake } => {
                let body = open_envelope(msg, Kind::NewPake)?;
                let key = Zeroizing::new(spake.finish(body).map_err(|_| LinkError::Malformed)?);
                let session = Session::derive_with(
                    &LINK_SUITE,
                    Side::Creator,
                    mailbox,
                    &key,
                    &my_pake,
                    body,
                )?;
                let out = message(Kind::AdderConfirm, &session.my_tag()?);
                cont(State::AdderAwaitConfirm { session }, adder, Some(out))
            }
            State::AdderAwaitConfirm { mut session } => {
                let body = open_envelope(msg, Kind::NewConfirm)?;
                session.check_their_tag(body)?;
                let (_, offer) = adder.as_ref().ok_or(LinkError::UnexpectedMessage)?;
                let out = seal(&mut session, Kind::AdderOffer, &offer.encode())?;
                cont(State::AdderAwaitDevice { session }, adder, Some(out))
            }
            State::AdderAwaitDevice { mut session } => {
                let body = open_envelope(msg, Kind::NewDevice)?;
                let plain = open(&mut session, Kind::NewDevice, body)?;
                let (identity, _) = adder.ok_or(LinkError::UnexpectedMessage)?;
                let mut r = Reader::new(&plain);
                let ed: [u8; 32] = r.array().map_err(|_| LinkError::Malformed)?;
                let x: [u8; 32] = r.array().map_err(|_| LinkError::Malformed)?;
                let created_ms = r.u64().map_err(|_| LinkError::Malformed)?;
                let possession: [u8; 64] = r.array().map_err(|_| LinkError::Malformed)?;
                r.finish().map_err(|_| LinkError::Malformed)?;
                let device = DeviceKey::from_parts(&ed, &x).map_err(|_| LinkError::Malformed)?;
                // The certificate's time is the adder's clock, within a day
                // of the new device's: a wrong clock on one is no reason to fail.
                if created_ms.abs_diff(now_ms) > 24 * 60 * 60 * 1000 {
                    return Err(LinkError::Malformed);
                }
                let cert = identity
                    .certify_with_proof(&device, created_ms, &Signature::from_bytes(&possession))
                    .map_err(|_| LinkError::BadPossession)?;
                Ok((
                    LinkStep::Admit(Admission {
                        session,
                        identity,
                        cert,
                    }),
                    None,
                ))
            }
            State::NewAwaitPake {
                spake,
                my_pake,
                device,
            } => {
                let body = open_envelope(msg, Kind::AdderPake)?;
                let key = Zeroizing::new(spake.finish(body).map_err(|_| LinkError::Malformed)?);
                let session =
                    Session::derive_with(&LINK_SUITE, Side::Joiner, mailbox, &key, body, &my_pake)?;
                let out = message(Kind::NewConfirm, &session.my_tag()?);
                cont(State::NewAwaitConfirm { session, device }, adder, Some(out))
            }
            State::NewAwaitConfirm { session, device } => {
                let body = open_envelope(msg, Kind::AdderConfirm)?;
                session.check_their_tag(body)?;
                cont(State::NewAwaitOffer { session, device }, adder, None)
            }
            State::NewAwaitOffer {
                mut session,
                device,
            } => {
                let body = open_envelope(msg, Kind::AdderOffer)?;
                let plain = open(&mut session, Kind::AdderOffer, body)?;
                let offer = Offer::decode(&plain)?;
                let public = device.public();
                let created_ms = now_ms;
                let proof = device.prove_possession(&offer.identity, created_ms);
                let mut w = Writer::with_capacity(DEVICE_LEN);
                w.raw(&public.id().0)
                    .raw(&public.x25519_bytes())
                    .u64(created_ms)
                    .raw(&proof.to_bytes());
                let out = seal(&mut session, Kind::NewDevice, &w.finish())?;
                cont(State::NewAwaitDone { session, offer }, adder, Some(out))
            }
            State::NewAwaitDone { mut session, offer } => {
                let body = open_envelope(msg, Kind::AdderDone)?;
                let plain = open(&mut session, Kind::AdderDone, body)?;
                let mut r = Reader::new(&plain);
                let seed: Zeroizing<[u8; 32]> =
                    Zeroizing::new(r.array().map_err(|_| LinkError::Malformed)?);
                let added_at = r.u64().map_err(|_| LinkError::Malformed)?;
                let event = EventHash(r.array().map_err(|_| LinkError::Malformed)?);
                r.finish().map_err(|_| LinkError::Malformed)?;
                let identity = IdentitySecret::from_seed(&seed);
                if identity.public() != offer.identity {
                    return Err(LinkError::IdentityMismatch);
                }
                Ok((
                    LinkStep::Linked(Linked {
                        offer,
                        identity,
                        added_at,
                        event,
                    }),
                    None,
                ))
            }
        }
    }
}

impl fmt::Debug for Linking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Linking")
            .field("mailbox", &self.0.mailbox)
            .field("state", &self.0.state.name())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    /// A new device that claims a key whose holder did not sign its
    /// possession proof is refused before anything is certified.
    #[test]
    fn a_possession_proof_by_another_key_is_refused() {
        let mut rng = StdRng::seed_from_u64(18);
        let identity = IdentitySecret::generate(&mut rng);
        let offer = Offer {
            space: SpaceId::random(&mut rng),
            role: Role::Leading,
            identity: identity.public(),
            partner: None,
        };
        let code = PairingCode::parse("3-crystal-orbit").expect("code");
        let honest = DeviceSecret::generate(&mut rng);
        let other = DeviceSecret::generate(&mut rng);
        let (a, a1) = Linking::add(&code, &identity, offer, 5, &mut rng).expect("add");
        let (n, n2) = Linking::join(&code, &honest, 5, &mut rng);
        let (LinkStep::Continue(a), Some(a3)) = a.receive(n2.as_bytes()).expect("1") else {
            panic!("adder goes on")
        };
        let (LinkStep::Continue(n), Some(n4)) = n.receive(a1.as_bytes()).expect("2") else {
            panic!("new device goes on")
        };
        let (LinkStep::Continue(a), Some(a5)) = a.receive(n4.as_bytes()).expect("3") else {
            panic!("adder offers")
        };
        let (LinkStep::Continue(n), None) = n.receive(a3.as_bytes()).expect("4") else {
            panic!("new device waits")
        };
        let State::NewAwaitOffer { mut session, .. } = n.0.state else {
            panic!("awaiting the offer")
        };
        let body = open_envelope(a5.as_bytes(), Kind::AdderOffer).expect("offer");
        open(&mut session, Kind::AdderOffer, body).expect("opens");
        // The honest device's keys, with a proof signed by another device.
        let public = honest.public();
        let proof = other.prove_possession(&identity.public(), 5);
        let mut w = Writer::new();
        w.raw(&public.id().0)
            .raw(&public.x25519_bytes())
            .u64(5)
            .raw(&proof.to_bytes());
        let forged = seal(&mut session, Kind::NewDevice, &w.finish()).expect("seal");
        assert_eq!(
            a.receive(forged.as_bytes()).err(),
            Some(LinkError::BadPossession)
        );
    }
}
