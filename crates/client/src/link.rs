//! The linking driver: adds a new device of one's own to the space over a
//! one-time code, running troth-core's [`Linking`] state machine over the
//! relay's rendezvous mailbox (the same mailbox pairing uses).
//!
//! On the device already in the space: [`LinkInvitation::open`], show
//! [`LinkInvitation::code`], then [`LinkInvitation::wait`], which appends
//! `AddDevice` for the new device's certificate once it has proved its key,
//! and sends it the identity secret last. On the new device: [`join`], which
//! reads the log from genesis, verified against the identities learnt over
//! the code, until the `AddDevice` that admitted it.
//!
//! Each side closes the mailbox when it is done, whether it linked or
//! failed; a wrong code fails on both sides and the code cannot be used again.

use std::time::{Duration, Instant};

use rand_core::CryptoRngCore;
use troth_core::event::Body;
use troth_core::keyfile::KeyBundle;
use troth_core::keys::{DeviceId, IdentitySecret};
use troth_core::link::{Admission, LinkStep, Linked, Linking, Offer};
use troth_core::log::TrustAnchors;
use troth_core::pairing::PairingCode;
use troth_core::replica::Replica;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::pair::{Turn, converse};
use crate::relay::{Mailbox, RelayClient};
use crate::session::Session;

/// A linking run this device started: the code to show and the run to finish.
pub struct LinkInvitation {
    relay: RelayClient,
    mailbox: Mailbox,
    code: PairingCode,
    linking: Linking,
}

impl std::fmt::Debug for LinkInvitation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkInvitation")
            .field("mailbox", &self.mailbox)
            .finish_non_exhaustive()
    }
}

/// What the device already in the space added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// The new device.
    pub device: DeviceId,
    /// The sequence number of its `AddDevice`.
    pub seq: u64,
    /// The first epoch whose key it was given (0: the whole history).
    pub from_epoch: u32,
}

impl LinkInvitation {
    /// Opens a mailbox on the space's relay for a new device of this person.
    /// Refused before any code is shown when this person already has the
    /// most active devices allowed.
    pub fn open(
        session: &Session,
        now_ms: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Self, Error> {
        let r = session.replica();
        let me = r.keys().identity.public();
        if r.chain().members().active_count(&me) >= troth_core::members::MAX_ACTIVE_DEVICES {
            return Err(Error::Replica(troth_core::replica::ReplicaError::NotNow(
                "you already have 5 active devices, the most a person may have; revoke one you no longer use first",
            )));
        }
        let offer = Offer {
            space: r.space(),
            role: r.role(),
            identity: me,
            partner: r.partner().copied(),
        };
        let relay = session.relay().clone();
        let mailbox = relay.open_mailbox()?;
        let code = PairingCode::generate(mailbox.number, rng)?;
        let (linking, first) = Linking::add(&code, &r.keys().identity, offer, now_ms, rng)?;
        if let Err(e) = relay.post_message(&mailbox, first.as_bytes()) {
            let _ = relay.close_mailbox(&mailbox);
            return Err(e);
        }
        Ok(Self {
            relay,
            mailbox,
            code,
            linking,
        })
    }

    /// The code to show on this device, `7-crystal-orbit`.
    pub fn code(&self) -> Zeroizing<String> {
        self.code.reveal()
    }

    /// Waits for the new device (at most `timeout`), admits it with the
    /// epoch keys from the start of the history this device holds
    /// (`history`) or from the current epoch only, and hands it the
    /// identity secret.
    pub fn wait(
        self,
        session: &mut Session,
        history: bool,
        timeout: Duration,
        now_ms: u64,
    ) -> Result<Added, Error> {
        let LinkInvitation {
            relay,
            mailbox,
            linking,
            ..
        } = self;
        let r =
            run(&relay, &mailbox, linking, Instant::now() + timeout).and_then(|step| match step {
                Ended::Admit(adm) => admit(&relay, &mailbox, session, *adm, history, now_ms),
                Ended::Linked(_) => Err(Error::LinkEnded),
            });
        let _ = relay.close_mailbox(&mailbox);
        r
    }
}

fn admit(
    relay: &RelayClient,
    mailbox: &Mailbox,
    session: &mut Session,
    adm: Admission,
    history: bool,
    now_ms: u64,
) -> Result<Added, Error> {
    session.sync_strict()?;
    let from = if history {
        session.replica().history_from()
    } else {
        session.replica().chain().members().epoch()
    };
    let cert = adm.cert().clone();
    let ev = session.post_with(|r| Ok(r.compose_add_device_from(&cert, from, now_ms)?))?;
    let last = adm.added(ev.header().seq, ev.hash())?;
    relay.post_message(mailbox, last.as_bytes())?;
    Ok(Added {
        device: cert.device().id(),
        seq: ev.header().seq,
        from_epoch: from,
    })
}

enum Ended {
    Admit(Box<Admission>),
    Linked(Box<Linked>),
}

fn run(
    relay: &RelayClient,
    mailbox: &Mailbox,
    linking: Linking,
    deadline: Instant,
) -> Result<Ended, Error> {
    converse(
        relay,
        mailbox,
        linking,
        deadline,
        || Error::LinkTimeout,
        || Error::LinkEnded,
        |l, m| {
            let (step, out) = l.receive(m)?;
            Ok((
                match step {
                    LinkStep::Continue(l) => Turn::Continue(l),
                    LinkStep::Admit(a) => Turn::Done(Ended::Admit(Box::new(a))),
                    LinkStep::Linked(l) => Turn::Done(Ended::Linked(Box::new(l))),
                },
                out,
            ))
        },
    )
}

/// On the new device: joins with the code shown on the other device.
/// `keys` are this device's fresh keys (its identity, from `troth init`, is
/// replaced by the one linked to; its device keys stay). Returns the key
/// bundle to save (this device's keys, the person's identity, the
/// certificate from the log) and the replica, verified from genesis.
pub fn join(
    relay: &RelayClient,
    keys: &KeyBundle,
    code: &str,
    timeout: Duration,
    now_ms: u64,
    rng: &mut impl CryptoRngCore,
) -> Result<Replica, Error> {
    let code = PairingCode::parse(code)?;
    let mailbox = relay.claim_mailbox(code.mailbox())?;
    let (linking, first) = Linking::join(&code, &keys.device, now_ms, rng);
    let deadline = Instant::now() + timeout;
    let r = relay
        .post_message(&mailbox, first.as_bytes())
        .and_then(|()| run(relay, &mailbox, linking, deadline));
    let _ = relay.close_mailbox(&mailbox);
    let linked = match r? {
        Ended::Linked(l) => *l,
        Ended::Admit(_) => return Err(Error::LinkEnded),
    };
    await_admission(relay, keys, linked, now_ms, deadline)
}

fn await_admission(
    relay: &RelayClient,
    keys: &KeyBundle,
    linked: Linked,
    created_ms: u64,
    deadline: Instant,
) -> Result<Replica, Error> {
    let offer = linked.offer;
    // The certificate the adder made over this device's proof: Ed25519
    // signatures are deterministic, so it is the one in the log, which is
    // checked below.
    let cert = linked.identity.certify(&keys.device, created_ms);
    let bundle = KeyBundle {
        identity: IdentitySecret::from_seed(&linked.identity.to_seed()),
        device: keys.device.duplicate(),
        cert: cert.clone(),
    };
    let mut anchors = TrustAnchors::default();
    anchors.set(offer.role, offer.identity);
    if let Some(p) = offer.partner {
        anchors.set(offer.role.other(), p);
    }
    let replica = Replica::open(bundle, offer.role, offer.space, anchors);
    let mut session = Session::new(replica, relay.clone());
    loop {
        match session.sync() {
            Ok(r) => {
                if let Some(a) = r.alert {
                    return Err(Error::Integrity(a));
                }
                if session.replica().chain().len() > linked.added_at {
                    break;
                }
            }
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
        std::thread::sleep(Duration::from_millis(300));
    }
    let replica = session.into_replica();
    let ev = replica
        .events()
        .get(usize::try_from(linked.added_at).map_err(|_| Error::LinkEnded)?)
        .ok_or(Error::LinkEnded)?;
    let admitted = match ev.body() {
        Body::Control(c) => c.admitted(),
        Body::Sealed(_) => None,
    };
    if ev.hash() != linked.event || admitted != Some(&cert) {
        return Err(Error::LinkMismatch);
    }
    Ok(replica)
}
