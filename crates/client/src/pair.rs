//! The pairing driver: runs troth-core's SPAKE2 state machine over the
//! relay's rendezvous mailbox, then sets up the space on each side.
//!
//! Creator: [`Invitation::open`] (opens a mailbox, makes the code, posts the
//! first message), show [`Invitation::code`], [`Invitation::wait`] for the
//! partner, then [`create_space`] (genesis event, then the partner's
//! `AddMember`). Joiner: [`join`] with the typed code, then
//! [`await_admission`], which reads the log until the creator's `AddMember`
//! for this device arrives, verified against the creator's identity learnt
//! during pairing.
//!
//! Each side closes the mailbox when it is done, whether it paired or failed.
//! The relay keeps what a closed side posted readable for the other side for
//! a minute, so the other side still learns the outcome (for a wrong code,
//! it reads the confirmation tag and fails the same way), and the code cannot
//! be used again.

use std::time::{Duration, Instant};

use rand_core::CryptoRngCore;
use troth_core::SpaceId;
use troth_core::event::Role;
use troth_core::keyfile::KeyBundle;
use troth_core::log::TrustAnchors;
use troth_core::pairing::{Message, Paired, Pairing, PairingCode, Step};
use troth_core::replica::Replica;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::relay::{Mailbox, RelayClient};
use crate::session::Session;

/// Longest single long poll.
const MAX_POLL_SECS: u64 = 20;

/// A pairing this device started: the code to show and the run to finish.
pub struct Invitation {
    relay: RelayClient,
    mailbox: Mailbox,
    code: PairingCode,
    pairing: Pairing,
    role: Role,
}

impl std::fmt::Debug for Invitation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invitation")
            .field("mailbox", &self.mailbox)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Invitation {
    /// Opens a mailbox on `relay` for a new space in which this person takes `role`.
    pub fn open(
        relay: &RelayClient,
        keys: &KeyBundle,
        role: Role,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, Error> {
        let space = SpaceId::random(rng);
        let mailbox = relay.open_mailbox()?;
        let code = PairingCode::generate(mailbox.number, rng)?;
        let (pairing, first) =
            Pairing::create(&code, &keys.identity, &keys.cert, space, role, rng)?;
        if let Err(e) = relay.post_message(&mailbox, first.as_bytes()) {
            let _ = relay.close_mailbox(&mailbox);
            return Err(e);
        }
        Ok(Self {
            relay: relay.clone(),
            mailbox,
            code,
            pairing,
            role,
        })
    }

    /// The code to show the partner, `7-crystal-orbit`.
    pub fn code(&self) -> Zeroizing<String> {
        self.code.reveal()
    }

    /// Waits for the partner (at most `timeout`) and runs the exchange.
    pub fn wait(self, timeout: Duration) -> Result<Paired, Error> {
        let Invitation {
            relay,
            mailbox,
            pairing,
            ..
        } = self;
        let r = run(&relay, &mailbox, pairing, Instant::now() + timeout);
        let _ = relay.close_mailbox(&mailbox);
        r
    }
}

/// Joins with the code the partner shows. Returns the authenticated partner.
pub fn join(
    relay: &RelayClient,
    keys: &KeyBundle,
    code: &str,
    timeout: Duration,
    rng: &mut impl CryptoRngCore,
) -> Result<Paired, Error> {
    let code = PairingCode::parse(code)?;
    let mailbox = relay.claim_mailbox(code.mailbox())?;
    let (pairing, first) = Pairing::join(&code, &keys.identity, &keys.cert, rng)?;
    let r = relay
        .post_message(&mailbox, first.as_bytes())
        .and_then(|()| run(relay, &mailbox, pairing, Instant::now() + timeout));
    let _ = relay.close_mailbox(&mailbox);
    r
}

fn run(
    relay: &RelayClient,
    mailbox: &Mailbox,
    pairing: Pairing,
    deadline: Instant,
) -> Result<Paired, Error> {
    converse(
        relay,
        mailbox,
        pairing,
        deadline,
        || Error::PairingTimeout,
        || Error::PairingEnded,
        |p, m| {
            let (step, out) = p.receive(m)?;
            Ok((
                match step {
                    Step::Continue(p) => Turn::Continue(p),
                    Step::Paired(done) => Turn::Done(done),
                },
                out,
            ))
        },
    )
}

/// What one message did to a run over the mailbox (pairing or linking).
pub(crate) enum Turn<S, T> {
    /// Wait for the next message.
    Continue(S),
    /// The run ended.
    Done(T),
}

/// Drives a PAKE run through the relay's mailbox until it ends: each
/// message received goes to `receive`, and what it answers is posted.
/// `timeout` and `ended` make the errors for a run past `deadline` and for a
/// mailbox the other side closed without a word we could act on.
pub(crate) fn converse<S, T>(
    relay: &RelayClient,
    mailbox: &Mailbox,
    start: S,
    deadline: Instant,
    timeout: fn() -> Error,
    ended: fn() -> Error,
    mut receive: impl FnMut(S, &[u8]) -> Result<(Turn<S, T>, Option<Message>), Error>,
) -> Result<T, Error> {
    let mut state = Some(start);
    let mut after = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timeout());
        }
        let wait = left.as_secs().clamp(1, MAX_POLL_SECS);
        let got = relay.get_messages(mailbox, after, wait)?;
        after = got.next;
        for m in got.messages {
            let s = state.take().ok_or_else(ended)?;
            let (turn, out) = receive(s, &m)?;
            if let Some(out) = out {
                relay.post_message(mailbox, out.as_bytes())?;
            }
            match turn {
                Turn::Continue(s) => state = Some(s),
                Turn::Done(done) => return Ok(done),
            }
        }
        if got.closed {
            return Err(ended());
        }
    }
}

/// The creator's side after pairing: creates the space on the relay and
/// admits the partner. Returns the replica holding both events.
pub fn create_space(
    relay: &RelayClient,
    keys: KeyBundle,
    role: Role,
    paired: &Paired,
    now_ms: u64,
    rng: &mut impl CryptoRngCore,
) -> Result<Replica, Error> {
    let (mut replica, genesis) = Replica::create(keys, role, paired.space, now_ms, rng)?;
    relay.create_space(&replica.keys().device, &genesis)?;
    let r = replica.ingest(std::slice::from_ref(&genesis));
    if let Some(e) = r.error {
        return Err(Error::Integrity(troth_core::replica::Alert { error: e }));
    }
    replica.trust_partner(paired.partner_identity);
    let mut session = Session::new(replica, relay.clone());
    session.post_with(|r| Ok(r.compose_add_member(&paired.partner_cert, now_ms)?))?;
    Ok(session.into_replica())
}

/// The joiner's side after pairing: reads the space until the creator has
/// admitted this device (at most `timeout`), verifying every event against
/// the creator's identity authenticated at pairing.
pub fn await_admission(
    relay: &RelayClient,
    keys: KeyBundle,
    paired: &Paired,
    timeout: Duration,
) -> Result<Replica, Error> {
    let me = keys.cert.device().id();
    let mut anchors = TrustAnchors::default();
    anchors.set(paired.partner_role, paired.partner_identity);
    let replica = Replica::open(keys, paired.partner_role.other(), paired.space, anchors);
    let mut session = Session::new(replica, relay.clone());
    let deadline = Instant::now() + timeout;
    loop {
        match session.sync() {
            Ok(r) => {
                if let Some(a) = r.alert {
                    return Err(Error::Integrity(a));
                }
                if session.replica().chain().members().device(&me).is_some() {
                    return Ok(session.into_replica());
                }
            }
            // Not created yet, or this device not admitted yet.
            Err(
                Error::NoSpace
                | Error::Refused {
                    status: 403 | 404, ..
                },
            ) => {}
            Err(e) => return Err(e),
        }
        if Instant::now() >= deadline {
            return Err(Error::NotAdmitted);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
