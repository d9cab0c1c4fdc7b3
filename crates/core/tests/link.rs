//! Linking a device by code (issue 18): the new device's own keys, its own
//! possession signature in the certificate, the log verified from genesis
//! against the identities learned through the code, and exactly the
//! history the adder chose.

mod common;

use common::{Couple, whereabouts};
use ed25519_dalek::{Signer, SigningKey};
use troth_core::content::Content;
use troth_core::event::{Body, Control, Event, Header, Role};
use troth_core::ids::AgreementId;
use troth_core::keyfile::KeyBundle;
use troth_core::keys::{DeviceCert, DeviceSecret};
use troth_core::link::{LinkError, LinkStep, Linked, Linking, Offer};
use troth_core::log::{ChainError, TrustAnchors};
use troth_core::members::MembershipError;
use troth_core::pairing::{Message, PairingCode};
use troth_core::replica::Replica;
use troth_core::sign::{self, Label};

fn checkin(text: &str) -> Content {
    Content::CheckIn {
        text: text.into(),
        place: None,
        answers: None,
    }
}

fn offer_of(r: &Replica) -> Offer {
    Offer {
        space: r.space(),
        role: r.role(),
        identity: r.keys().identity.public(),
        partner: r.partner().copied(),
    }
}

/// Runs the messages between the two sides until the adder must append.
/// Returns the admission (adder) and the new device's run waiting for the
/// last message.
fn run_to_admission(
    adder: (Linking, Message),
    new: (Linking, Message),
) -> (troth_core::link::Admission, Linking) {
    let (mut a, a1) = adder;
    let (mut n, n1) = new;
    let mut to_a = vec![n1];
    let mut to_n = vec![a1];
    loop {
        if !to_n.is_empty() {
            let m = to_n.remove(0);
            let (step, out) = n.receive(m.as_bytes()).expect("new device step");
            n = match step {
                LinkStep::Continue(l) => l,
                other => panic!("new device ended early: {other:?}"),
            };
            to_a.extend(out);
        }
        if !to_a.is_empty() {
            let m = to_a.remove(0);
            let (step, out) = a.receive(m.as_bytes()).expect("adder step");
            to_n.extend(out);
            match step {
                LinkStep::Continue(l) => a = l,
                LinkStep::Admit(adm) => {
                    assert!(to_n.is_empty() && to_a.is_empty());
                    return (adm, n);
                }
                LinkStep::Linked(_) => panic!("the adder is never linked"),
            }
        }
    }
}

/// Links a fresh device to `who`'s side of the couple, sealing it the epoch
/// keys from `from` on. Returns its replica, synced with the whole log.
fn link(c: &mut Couple, who: Role, from: Option<u32>) -> (Replica, DeviceSecret) {
    let code = PairingCode::generate(42, &mut c.rng).expect("code");
    let code2 = PairingCode::parse(&code.reveal()).expect("parses");
    let device = DeviceSecret::generate(&mut c.rng);
    let adder = match who {
        Role::Leading => &c.a,
        Role::Rebuilding => &c.b,
    };
    let started = Linking::add(
        &code,
        &adder.keys().identity,
        offer_of(adder),
        c.now,
        &mut c.rng,
    )
    .expect("own identity");
    let new = Linking::join(&code2, &device, c.now, &mut c.rng);
    let (adm, n) = run_to_admission(started, new);
    assert_eq!(
        adm.cert().device(),
        &device.public(),
        "the new device's own key"
    );
    let from = from.unwrap_or_else(|| adder.history_from());
    let ev = adder
        .compose_add_device_from(adm.cert(), from, c.now)
        .expect("add device");
    c.log.push(ev.clone());
    c.sync_a();
    c.sync_b();
    let last = adm.added(ev.header().seq, ev.hash()).expect("seal");
    let (step, out) = n.receive(last.as_bytes()).expect("last step");
    assert!(out.is_none());
    let LinkStep::Linked(Linked {
        offer,
        identity,
        added_at,
        event,
        ..
    }) = step
    else {
        panic!("expected the new device linked")
    };
    assert_eq!(added_at, ev.header().seq);
    assert_eq!(event, ev.hash());
    // The certificate comes from the verified log, not from the adder.
    let mut anchors = TrustAnchors::default();
    anchors.set(offer.role, offer.identity);
    if let Some(p) = offer.partner {
        anchors.set(offer.role.other(), p);
    }
    let cert = match c.log[added_at as usize].body() {
        Body::Control(Control::AddDevice { cert, .. }) => cert.clone(),
        other => panic!("not an AddDevice: {other:?}"),
    };
    let keys = KeyBundle {
        identity,
        device: device.duplicate(),
        cert,
    };
    let mut replica = Replica::open(keys, offer.role, offer.space, anchors);
    let r = replica.ingest(&c.log);
    assert!(r.error.is_none(), "{:?}", r.error);
    (replica, device)
}

fn clone_keys(k: &KeyBundle) -> KeyBundle {
    KeyBundle {
        identity: troth_core::keys::IdentitySecret::from_seed(&k.identity.to_seed()),
        device: k.device.duplicate(),
        cert: k.cert.clone(),
    }
}

fn unreadable(r: &Replica) -> usize {
    r.state()
        .problems
        .iter()
        .filter(|(_, p)| p.contains("could not be read"))
        .count()
}

#[test]
fn a_linked_device_has_keys_of_its_own_and_verifies_the_whole_log() {
    let mut c = Couple::new(180);
    c.post(
        Role::Leading,
        Content::Propose(whereabouts(AgreementId([7; 16]))),
    );
    c.post(Role::Rebuilding, checkin("at the gym until 7"));
    let (b2, device) = link(&mut c, Role::Rebuilding, None);
    // Same identity, same safety number; its own device key.
    assert_eq!(b2.keys().identity.public(), c.b.keys().identity.public());
    assert_eq!(b2.safety_number(), c.b.safety_number());
    assert_ne!(b2.keys().cert.device(), c.b.keys().cert.device());
    assert_eq!(b2.keys().cert.device(), &device.public());
    // Everything verified and read, the same state code as both partners.
    assert_eq!(b2.events().len(), c.log.len());
    assert_eq!(b2.state_code(), c.a.state_code());
    assert_eq!(b2.state_code(), c.b.state_code());
    assert_eq!(unreadable(&b2), 0);
    assert_eq!(b2.state().agreements.len(), 1);
    // It writes, and both partners read it.
    let mut c2 = c;
    c2.b = b2;
    c2.post(Role::Rebuilding, checkin("written on the new device"));
    assert_eq!(c2.a.state_code(), c2.b.state_code());
    // The partner is told: the new device came by AddDevice.
    let id = device.public().id();
    assert!(c2.a.chain().members().was_added(&id));
}

#[test]
fn history_is_what_the_adder_chose_and_nothing_else() {
    // Epoch 0: a check-in. B adds a second device and revokes it: epoch 1.
    let mut c = Couple::new(181);
    c.post(Role::Rebuilding, checkin("said in epoch 0"));
    let spare = c.b.keys().rotate_device(&mut c.rng, c.now);
    let ev = c.b.compose_add_device(&spare.cert, c.now).expect("add");
    c.log.push(ev);
    c.sync_a();
    c.sync_b();
    let rv =
        c.b.compose_revoke(spare.cert.device().id(), c.now, &mut c.rng)
            .expect("revoke");
    c.log.push(rv);
    c.sync_a();
    c.sync_b();
    assert_eq!(c.b.chain().members().epoch(), 1);
    c.post(Role::Leading, checkin("said in epoch 1"));
    let sealed_epoch0 = c
        .log
        .iter()
        .filter(|e| e.header().epoch == 0 && matches!(e.body(), Body::Sealed(_)))
        .count();
    assert!(sealed_epoch0 >= 3, "confirmations and a check-in");

    // Without history: the current epoch's key only.
    let (recent, _) = link(&mut c, Role::Leading, Some(1));
    assert_eq!(unreadable(&recent), sealed_epoch0);
    let texts: Vec<String> = recent
        .state()
        .timeline
        .iter()
        .map(|t| t.what.clone())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("said in epoch 1")),
        "{texts:?}"
    );
    assert!(
        !texts.iter().any(|t| t.contains("said in epoch 0")),
        "{texts:?}"
    );
    assert_eq!(recent.history_from(), 1);
    assert_eq!(recent.events_before_epoch(1), c.a.events_before_epoch(1));

    // With history: every epoch.
    let (all, _) = link(&mut c, Role::Leading, None);
    assert_eq!(unreadable(&all), 0);
    assert_eq!(all.history_from(), 0);

    // A device without the history cannot give it to another.
    let other = DeviceSecret::generate(&mut c.rng);
    let cert = recent.keys().identity.certify(&other, c.now);
    assert!(recent.compose_add_device_from(&cert, 0, c.now).is_err());
}

#[test]
fn a_wrong_code_fails_on_both_sides_before_anything_is_revealed() {
    let mut c = Couple::new(182);
    let code = PairingCode::parse("42-crystal-orbit").expect("code");
    let typo = PairingCode::parse("42-crystal-acorn").expect("code");
    let device = DeviceSecret::generate(&mut c.rng);
    let (a, a1) = Linking::add(
        &code,
        &c.a.keys().identity,
        offer_of(&c.a),
        c.now,
        &mut c.rng,
    )
    .expect("own identity");
    let (n, n1) = Linking::join(&typo, &device, c.now, &mut c.rng);
    let (LinkStep::Continue(a), Some(a3)) = a.receive(n1.as_bytes()).expect("pake") else {
        panic!("adder continues with its tag")
    };
    let (LinkStep::Continue(n), Some(n4)) = n.receive(a1.as_bytes()).expect("pake") else {
        panic!("new device continues with its tag")
    };
    assert_eq!(a.receive(n4.as_bytes()).err(), Some(LinkError::WrongCode));
    assert_eq!(n.receive(a3.as_bytes()).err(), Some(LinkError::WrongCode));
}

#[test]
fn a_pairing_code_is_named_as_such() {
    let mut c = Couple::new(183);
    let code = PairingCode::parse("42-crystal-orbit").expect("code");
    let device = DeviceSecret::generate(&mut c.rng);
    let (n, _) = Linking::join(&code, &device, c.now, &mut c.rng);
    let (_, pairing_first) = troth_core::pairing::Pairing::create(
        &code,
        &c.a.keys().identity,
        &c.a.keys().cert,
        c.a.space(),
        Role::Leading,
        &mut c.rng,
    )
    .expect("pairing");
    assert_eq!(
        n.receive(pairing_first.as_bytes()).err(),
        Some(LinkError::PairingCode)
    );
}

/// `body` signed by `by` at the head of `log`: what a modified client or a
/// relay holding a device key would append.
fn signed(log: &[Event], body: Body, by: &KeyBundle, epoch: u32) -> Event {
    let last = log.last().expect("log");
    let header = Header {
        space: last.header().space,
        seq: last.header().seq + 1,
        prev: last.hash(),
        author: by.cert.device().id(),
        epoch,
        timestamp_ms: last.header().timestamp_ms + 1,
    };
    Event::sign(header, body, &by.device)
}

#[test]
fn a_certificate_the_device_did_not_sign_never_decodes() {
    let mut c = Couple::new(184);
    let stranger = DeviceSecret::generate(&mut c.rng);
    let mut cert = c.b.keys().identity.certify(&stranger, c.now).to_bytes();
    // Replace the device's possession signature by one from another key:
    // the identity signature still verifies, the possession one does not.
    let other = SigningKey::from_bytes(&[9u8; 32]);
    let body = cert[..105].to_vec();
    let forged = other.sign(&sign::message(Label::DevicePossession, &body));
    cert[105..169].copy_from_slice(&forged.to_bytes());
    assert!(DeviceCert::from_bytes(&cert).is_err());

    // Inside an AddDevice event signed by B's own device, the event as a
    // whole does not decode, so neither the relay nor a client admits it.
    let good =
        c.b.compose_add_device(&c.b.keys().identity.certify(&stranger, c.now), c.now)
            .expect("compose");
    let mut bytes = good.as_bytes().to_vec();
    let good_cert = c.b.keys().identity.certify(&stranger, c.now).to_bytes();
    let at = bytes
        .windows(good_cert.len())
        .position(|w| w == good_cert.as_slice())
        .expect("the certificate is in the event");
    bytes[at..at + good_cert.len()].copy_from_slice(&cert);
    let n = bytes.len() - 64;
    let key = SigningKey::from_bytes(&c.b.keys().device.signing_seed());
    let sig = key.sign(&sign::message(Label::Event, &bytes[..n]));
    bytes[n..].copy_from_slice(&sig.to_bytes());
    assert!(Event::decode(&bytes).is_err());
}

#[test]
fn an_add_device_for_the_other_identity_is_refused() {
    let mut c = Couple::new(185);
    // A relay (or a modified client of A) adds a device certified by B's
    // identity, in an event signed by A's device.
    let stranger = DeviceSecret::generate(&mut c.rng);
    let cert = c.b.keys().identity.certify(&stranger, c.now);
    let envelopes =
        c.b.compose_add_device(&cert, c.now)
            .expect("compose")
            .body()
            .clone();
    let ev = signed(&c.log, envelopes, c.a.keys(), 0);
    let before = c.b.events().len();
    let r = c.b.ingest(&[ev]);
    assert!(
        matches!(
            r.error,
            Some(ChainError::Membership {
                error: MembershipError::NotAllowed(_),
                ..
            })
        ),
        "{:?}",
        r.error
    );
    assert_eq!(c.b.events().len(), before);
}

#[test]
fn add_device_envelopes_must_run_contiguously_to_the_current_epoch() {
    let mut c = Couple::new(186);
    // Reach epoch 2.
    for _ in 0..2 {
        let spare = c.b.keys().rotate_device(&mut c.rng, c.now);
        let ev = c.b.compose_add_device(&spare.cert, c.now).expect("add");
        c.log.push(ev);
        c.sync_a();
        c.sync_b();
        let rv =
            c.b.compose_revoke(spare.cert.device().id(), c.now, &mut c.rng)
                .expect("revoke");
        c.log.push(rv);
        c.sync_a();
        c.sync_b();
    }
    assert_eq!(c.a.chain().members().epoch(), 2);
    let new = c.a.keys().rotate_device(&mut c.rng, c.now);
    let full =
        c.a.compose_add_device_from(&new.cert, 0, c.now)
            .expect("all");
    let Body::Control(Control::AddDevice { cert, envelopes }) = full.body().clone() else {
        panic!("AddDevice")
    };
    let pick = |epochs: &[u32]| -> Vec<_> {
        epochs
            .iter()
            .map(|e| {
                envelopes
                    .iter()
                    .find(|x| x.epoch == *e)
                    .expect("envelope")
                    .clone()
            })
            .collect()
    };
    for (epochs, ok) in [
        (&[0u32, 1, 2][..], true),
        (&[1, 2][..], true),
        (&[2][..], true),
        (&[0, 2][..], false),
        (&[0, 1][..], false),
        (&[][..], false),
        (&[1, 1, 2][..], false),
    ] {
        let body = Body::Control(Control::AddDevice {
            cert: cert.clone(),
            envelopes: pick(epochs),
        });
        let ev = signed(&c.log, body, c.a.keys(), 2);
        let mut probe = Replica::open(
            clone_keys(c.a.keys()),
            Role::Leading,
            c.a.space(),
            c.a.chain().anchors().clone(),
        );
        let r = probe.ingest(&c.log);
        assert!(r.error.is_none());
        let r = probe.ingest(&[ev]);
        if ok {
            assert!(r.error.is_none(), "{epochs:?}: {:?}", r.error);
        } else {
            assert!(
                matches!(
                    r.error,
                    Some(ChainError::Membership {
                        error: MembershipError::Envelopes,
                        ..
                    })
                ),
                "{epochs:?}: {:?}",
                r.error
            );
        }
    }
}
