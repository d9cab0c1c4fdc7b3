//! The holes an independent review found in the protocol (issue 14), each
//! shown closed: certificates tied to the log, epoch keys checked against
//! their signed commitment, one sync step that catches a lying relay, hidden
//! characters refused, author times noted, and a co-signature that does not
//! verify never shown as signed.

use troth_core::agreement::{Certificate, InForce, Position};
use troth_core::content::Content;
use troth_core::crypto::{self, EpochKey};
use troth_core::event::{Body, Control, Event, EventHash, Header, Role};
use troth_core::ids::AgreementId;
use troth_core::keys::{DeviceSecret, IdentitySecret};
use troth_core::log::{ChainError, TrustAnchors};
use troth_core::replica::{CertificateStatus, FUTURE_SLACK_MS, Replica};
use troth_core::state::{NOTE_DATED_EARLIER, VersionStatus};

mod common;
use common::{Couple, whereabouts};

/// A proposes the whereabouts agreement and both sign it.
/// Where `in_force` proposes: after genesis, AddMember and both partners'
/// confirmations of who sets the conditions.
const P: usize = 4;

fn in_force(c: &mut Couple) -> AgreementId {
    let id = AgreementId::random(&mut c.rng);
    let p = c.a.propose(whereabouts(id)).expect("propose");
    c.post(Role::Leading, p);
    let s = c.a.cosign(id, 1).expect("cosign a");
    c.post(Role::Leading, s);
    let s = c.b.cosign(id, 1).expect("cosign b");
    c.post(Role::Rebuilding, s);
    assert_eq!(
        c.b.state().agreements[&id].versions[0].status,
        VersionStatus::InForce
    );
    id
}

#[test]
fn certificates_are_tied_to_the_place_in_the_log() {
    let mut c = Couple::new(21);
    let id = in_force(&mut c);

    // A genuine certificate verifies offline, names where it was proposed,
    // and says what it does not prove.
    let cert = c.a.certificate(id, 1).expect("certificate");
    let text = cert.to_text(Role::Leading);
    let back = Certificate::from_text(&text).expect("verifies offline");
    assert_eq!(back, cert);
    assert_eq!(back.position().seq, P as u64);
    assert_eq!(back.position().event, c.log[P].hash());
    assert!(text.contains("proves nothing about today"), "{text}");
    let day = troth_core::agreement::Day::from_unix_ms(c.log[P].header().timestamp_ms);
    assert!(text.contains(&format!("dated {day}")), "{text}");
    assert!(
        text.contains("asks of: the partner rebuilding trust"),
        "{text}"
    );
    assert!(text.contains("troth agreement status"), "{text}");
    // Every signed field is in the words: category, whom it asks, details.
    let rule = &back.agreement().rules[0];
    assert!(text.contains(rule.category.name()), "{text}");
    for (k, v) in &rule.params {
        assert!(text.contains(&format!("{k}: {v}")), "{text}");
    }
    assert_eq!(
        c.a.certificate_status(&back, c.today()),
        CertificateStatus::InForce
    );
    assert_eq!(
        c.b.certificate_status(&back, c.today()),
        CertificateStatus::InForce
    );

    // Someone holding both identity keys mints a certificate for words that
    // were never proposed: it may even verify offline (they can certify a
    // device and sign an event of their own), but the couple's log refuses it.
    let ia = IdentitySecret::from_seed(&c.a.keys().identity.to_seed());
    let ib = IdentitySecret::from_seed(&c.b.keys().identity.to_seed());
    let mut forged = whereabouts(AgreementId::random(&mut c.rng));
    forged.rules[0].text = "You will share your location at all times.".into();
    let dev = DeviceSecret::generate(&mut c.rng);
    let dev_cert = ia.certify(&dev, c.now);
    let fake = Event::sign(
        Header {
            space: c.a.space(),
            seq: P as u64 + 1,
            prev: c.log[P].hash(),
            author: dev.public().id(),
            epoch: 0,
            timestamp_ms: c.now,
        },
        Body::Sealed(vec![0; 300]),
        &dev,
    );
    let at = Position {
        seq: P as u64 + 1,
        event: fake.hash(),
    };
    let minted = InForce::verify(
        c.a.space(),
        forged.clone(),
        at,
        (ia.public(), forged.cosign(c.a.space(), &at, &ia)),
        (ib.public(), forged.cosign(c.a.space(), &at, &ib)),
    )
    .expect("signatures are genuine")
    .certificate(&fake, &dev_cert)
    .expect("self-consistent");
    let minted = Certificate::from_bytes(&minted.to_bytes()).expect("verifies offline");
    assert_eq!(
        c.a.certificate_status(&minted, c.today()),
        CertificateStatus::NotInLog
    );
    assert_eq!(
        c.b.certificate_status(&minted, c.today()),
        CertificateStatus::NotInLog
    );

    // Stolen keys again, now pointing at the *real* proposing event (or at
    // another real event of A's device): the log knows which words were
    // proposed there, and says these are not them.
    let a_dev_cert = c.a.keys().cert.clone();
    let mut other_words = whereabouts(id);
    other_words.rules[0].text = "You will share your location at all times.".into();
    let real_words = whereabouts(id);
    for (words, ev) in [(&other_words, &c.log[P]), (&real_words, &c.log[P + 1])] {
        let at = Position {
            seq: ev.header().seq,
            event: ev.hash(),
        };
        let cert = InForce::verify(
            c.a.space(),
            words.clone(),
            at,
            (ia.public(), words.cosign(c.a.space(), &at, &ia)),
            (ib.public(), words.cosign(c.a.space(), &at, &ib)),
        )
        .expect("signatures are genuine")
        .certificate(ev, &a_dev_cert)
        .expect("self-consistent");
        let cert = Certificate::from_bytes(&cert.to_bytes()).expect("verifies offline");
        assert_eq!(
            c.b.certificate_status(&cert, c.today()),
            CertificateStatus::NotInLog
        );
    }

    // Signatures not tied to a log position are refused outright: the same
    // words signed over another place do not verify, and so a first-format
    // certificate (no position) cannot be upgraded by hand.
    let elsewhere = Position {
        seq: 2,
        event: EventHash([7; 32]),
    };
    let sa = forged.cosign(c.a.space(), &elsewhere, &ia);
    let sb = forged.cosign(c.a.space(), &elsewhere, &ib);
    assert!(
        InForce::verify(
            c.a.space(),
            forged,
            at,
            (ia.public(), sa),
            (ib.public(), sb)
        )
        .is_err()
    );

    // After a withdrawal the certificate still verifies (it proves the
    // signing), and the log says where it stands now.
    c.post(
        Role::Rebuilding,
        Content::Withdraw {
            agreement: id,
            comment: String::new(),
        },
    );
    assert_eq!(
        c.a.certificate_status(&back, c.today()),
        CertificateStatus::Withdrawn
    );
    assert_eq!(
        c.b.certificate_status(&back, c.today()),
        CertificateStatus::Withdrawn
    );
    assert!(
        c.a.certificate(id, 1).is_ok(),
        "the signing is still provable"
    );
}

/// A certificate is made only from the event that proposed the version,
/// signed by a device of one of the two signers.
#[test]
fn certificates_refuse_a_proposal_that_is_not_the_one_signed() {
    let mut c = Couple::new(29);
    let id = in_force(&mut c);
    let proof = c.a.state().agreements[&id].versions[0]
        .in_force
        .clone()
        .expect("in force");
    let proposal = c.log[P].clone();
    let a_cert = c.a.keys().cert.clone();
    let b_cert = c.b.keys().cert.clone();
    assert!(proof.certificate(&proposal, &a_cert).is_ok());
    let untied = troth_core::agreement::AgreementError::NotInLog;
    // Another event of the same log (another position, another hash), a
    // control event, the right event with the wrong author's certificate.
    for (ev, cert) in [
        (&c.log[P + 1], &a_cert),
        (&c.log[1], &a_cert),
        (&c.log[0], &a_cert),
        (&proposal, &b_cert),
    ] {
        assert_eq!(proof.certificate(ev, cert).err(), Some(untied.clone()));
    }
    // The same bytes from another space, and a device of someone else.
    let other = Couple::new(30);
    assert_eq!(
        proof
            .certificate(&other.log[2.min(other.log.len() - 1)], &a_cert)
            .err(),
        Some(untied.clone())
    );
    let stranger = troth_core::keyfile::KeyBundle::generate(&mut c.rng, c.now);
    let forged = Event::sign(
        proposal.header().clone(),
        proposal.body().clone(),
        &stranger.device,
    );
    assert_eq!(
        proof.certificate(&forged, &stranger.cert).err(),
        Some(untied.clone())
    );
    // A's own device signed another event at the same place (a fork the
    // relay refused): same space, seq and author, another hash.
    let mut h = proposal.header().clone();
    h.timestamp_ms += 1;
    let fork = Event::sign(h, proposal.body().clone(), &c.a.keys().device);
    assert_eq!(fork.header().seq, proposal.header().seq);
    assert_eq!(
        proof.certificate(&fork, &a_cert).err(),
        Some(untied.clone())
    );
    // Stolen keys tying words to a membership change (genesis) instead of
    // a sealed proposal: refused, even though that event is in the log.
    let ia = IdentitySecret::from_seed(&c.a.keys().identity.to_seed());
    let ib = IdentitySecret::from_seed(&c.b.keys().identity.to_seed());
    let at0 = Position {
        seq: 0,
        event: c.log[0].hash(),
    };
    let words = whereabouts(id);
    let on_genesis = InForce::verify(
        c.a.space(),
        words.clone(),
        at0,
        (ia.public(), words.cosign(c.a.space(), &at0, &ia)),
        (ib.public(), words.cosign(c.a.space(), &at0, &ib)),
    )
    .expect("signatures are genuine");
    assert_eq!(
        on_genesis.certificate(&c.log[0], &a_cert).err(),
        Some(untied.clone())
    );
    // An event whose header names A's device but whose signature is not
    // A's device's: the event's own signature is checked.
    let mut h = proposal.header().clone();
    h.author = a_cert.device().id();
    let resigned = Event::sign(h, proposal.body().clone(), &stranger.device);
    assert_eq!(proof.certificate(&resigned, &a_cert).err(), Some(untied));
}

/// B rotates to a second device (so B can revoke one), and A opens a
/// second device (a laptop) beside its phone.
fn couple_with_devices(seed: u64) -> (Couple, Replica, Replica) {
    let mut c = Couple::new(seed);
    let b_new = c.b.keys().rotate_device(&mut c.rng, c.now);
    let add = c.b.compose_add_device(&b_new.cert, c.now).expect("add b2");
    c.log.push(add);
    c.sync_a();
    c.sync_b();
    let a_laptop = c.a.keys().rotate_device(&mut c.rng, c.now);
    let add =
        c.a.compose_add_device(&a_laptop.cert, c.now)
            .expect("add laptop");
    c.log.push(add);
    c.sync_a();
    c.sync_b();
    let anchors = TrustAnchors {
        leading: Some(c.a.keys().identity.public()),
        rebuilding: Some(c.b.keys().identity.public()),
    };
    let space = c.a.space();
    let mut b2 = Replica::open(b_new, Role::Rebuilding, space, anchors.clone());
    assert!(b2.ingest(&c.log).error.is_none());
    let mut laptop = Replica::open(a_laptop, Role::Leading, space, anchors);
    assert!(laptop.ingest(&c.log).error.is_none());
    assert!(b2.alerts().is_empty() && laptop.alerts().is_empty());
    (c, b2, laptop)
}

/// A RevokeDevice by B's second device whose envelopes B chose: `phone_key`
/// to A's phone, `laptop_key` to A's laptop, `key` to B's own device, and
/// the commitment to `key`.
fn hostile_revoke(
    c: &mut Couple,
    b2: &Replica,
    key: &EpochKey,
    phone_key: &EpochKey,
    laptop_key: &EpochKey,
    laptop: &Replica,
) -> Event {
    let space = c.a.space();
    let (seq, prev) = c.a.chain().head().expect("head");
    let epoch = c.a.chain().members().epoch() + 1;
    let envelopes = vec![
        crypto::seal_envelope(phone_key, space, epoch, c.a.keys().cert.device()).expect("env"),
        crypto::seal_envelope(laptop_key, space, epoch, laptop.keys().cert.device()).expect("env"),
        crypto::seal_envelope(key, space, epoch, b2.keys().cert.device()).expect("env"),
    ];
    Event::sign(
        Header {
            space,
            seq: seq + 1,
            prev,
            author: b2.keys().cert.device().id(),
            epoch,
            timestamp_ms: c.now,
        },
        Body::Control(Control::RevokeDevice {
            device: c.b.keys().cert.device().id(),
            commitment: key.commitment(space, epoch),
            envelopes,
        }),
        &b2.keys().device,
    )
}

#[test]
fn garbage_epoch_key_from_the_partner_raises_an_alert_naming_them() {
    let (mut c, b2, laptop) = couple_with_devices(22);
    let key = EpochKey::generate(&mut c.rng);
    let garbage = EpochKey::generate(&mut c.rng);
    let ev = hostile_revoke(&mut c, &b2, &key, &garbage, &key, &laptop);
    c.log.push(ev);
    let r = c.a.ingest(&c.log[c.a.events().len()..]);
    assert_eq!(r.accepted, 1, "the event itself is a valid part of the log");
    let alert = c.a.alerts().last().expect("an alert");
    assert!(
        matches!(
            alert.error,
            ChainError::EpochKey {
                from_partner: true,
                epoch: 1,
                ..
            }
        ),
        "{alert:?}"
    );
    assert!(alert.advice().contains("Your partner's device"));
    assert_eq!(alert.error.seq(), Some(c.log.len() as u64 - 1));
    // Messages under the unchecked key are set aside, never read.
    let mut b2 = b2;
    assert!(b2.ingest(&c.log[b2.events().len()..]).error.is_none());
    let msg = b2
        .compose(
            &Content::CheckIn {
                text: "new epoch".into(),
                place: None,
                answers: None,
            },
            c.now + 1,
            &mut c.rng,
        )
        .expect("b2 holds the committed key");
    c.log.push(msg);
    assert!(c.a.ingest(&c.log[c.a.events().len()..]).error.is_none());
    assert!(c.a.state().checkins.iter().all(|x| x.text != "new epoch"));
}

#[test]
fn different_keys_to_two_devices_of_one_partner_are_detected() {
    let (mut c, b2, mut laptop) = couple_with_devices(23);
    let key = EpochKey::generate(&mut c.rng);
    let other = EpochKey::generate(&mut c.rng);
    // The phone gets the committed key, the laptop another one: without the
    // commitment (and a key-committing payload) one ciphertext could read
    // differently on each while their state codes match.
    let ev = hostile_revoke(&mut c, &b2, &key, &key, &other, &laptop);
    c.log.push(ev);
    assert!(c.a.ingest(&c.log[c.a.events().len()..]).error.is_none());
    assert!(c.a.alerts().is_empty(), "the phone's key matches");
    assert!(
        laptop
            .ingest(&c.log[laptop.events().len()..])
            .error
            .is_none()
    );
    assert!(
        matches!(
            laptop.alerts().last().map(|a| &a.error),
            Some(ChainError::EpochKey {
                from_partner: true,
                ..
            })
        ),
        "{:?}",
        laptop.alerts()
    );
    assert_eq!(c.a.state_code(), laptop.state_code());
}

#[test]
fn one_sync_step_catches_a_lying_relay() {
    let mut c = Couple::new(24);
    c.post(
        Role::Rebuilding,
        Content::RequestCheckIn {
            note: "hello".into(),
        },
    );
    let head = c.b.chain().head();
    // The relay claims the space is empty (`head: null`).
    let out = c.b.ingest_page(None, &[], false);
    assert!(matches!(
        out.alert.map(|a| a.error),
        Some(ChainError::Rollback { .. })
    ));
    // The relay claims a longer history but delivers nothing.
    let (seq, _) = head.expect("head");
    let out =
        c.b.ingest_page(Some((seq + 3, EventHash([1; 32]))), &[], false);
    assert!(matches!(
        out.alert.map(|a| a.error),
        Some(ChainError::Gap { .. })
    ));
    // Or delivers a part of it and says there is no more.
    let mut b2 = Replica::open(
        c.b.keys().duplicate(),
        Role::Rebuilding,
        c.b.space(),
        TrustAnchors {
            leading: Some(c.a.keys().identity.public()),
            rebuilding: None,
        },
    );
    // A first page of an honest relay that says there is more: no alert,
    // ask for the next. The same page again (all duplicates, while it
    // claims more): an honest relay answers from this device's head, so
    // this is withholding.
    let out = b2.ingest_page(head, &c.log[..1], true);
    assert!(out.alert.is_none() && out.accepted == 1 && out.fetch_more);
    let out = b2.ingest_page(head, &c.log[..1], true);
    assert!(out.accepted == 0 && !out.fetch_more);
    assert!(matches!(
        out.alert.map(|a| a.error),
        Some(ChainError::Gap { .. })
    ));
    let out = b2.ingest_page(head, &c.log[1..2], false);
    assert_eq!(out.accepted, 1);
    assert!(matches!(
        out.alert.map(|a| a.error),
        Some(ChainError::Gap { .. })
    ));
    // An honest page: no alert, and the next page is asked for only when
    // the relay says there is more.
    let out = b2.ingest_page(head, &c.log[2..], false);
    assert!(out.alert.is_none() && !out.fetch_more);
    assert_eq!(b2.state_code(), c.b.state_code());
    let out = c.b.ingest_page(head, &[], false);
    assert!(out.alert.is_none() && out.accepted == 0 && !out.fetch_more);
}

#[test]
fn hidden_characters_are_refused_by_the_composer_and_the_fold() {
    let mut c = Couple::new(25);
    let mut ag = whereabouts(AgreementId::random(&mut c.rng));
    ag.rules[0].text = "I will tell you where I am \u{202E}yadot".into();
    assert!(c.a.propose(ag.clone()).is_err());
    let sneaky = Content::Propose(ag);
    let e =
        c.a.compose(&sneaky, c.now, &mut c.rng)
            .expect_err("refused");
    assert!(e.to_string().contains("U+202E"), "{e}");
    let e =
        c.b.compose(
            &Content::CheckIn {
                text: "home\u{200B}".into(),
                place: None,
                answers: None,
            },
            c.now,
            &mut c.rng,
        )
        .expect_err("refused");
    assert!(e.to_string().contains("U+200B"), "{e}");

    // A modified client's proposal with the character never enters the fold.
    let mut state = c.b.state().clone();
    let id = c.a.keys().identity.public();
    let applied = troth_core::state::Applied {
        space: c.a.space(),
        seq: 9,
        hash: EventHash([3; 32]),
        by: Role::Leading,
        identity: &id,
        at_ms: c.now,
    };
    state.apply(&applied, &sneaky);
    assert!(state.agreements.is_empty());
    assert!(state.problems.iter().any(|(_, p)| p.contains("U+202E")));
}

#[test]
fn author_times_out_of_order_or_ahead_are_noted() {
    let mut c = Couple::new(26);
    c.now += 10 * 60 * 1000;
    c.post(
        Role::Leading,
        Content::RequestCheckIn {
            note: "first".into(),
        },
    );
    // The same millisecond twice is not out of order.
    let same = c.now;
    let ev =
        c.a.compose(
            &Content::RequestCheckIn {
                note: "again".into(),
            },
            same,
            &mut c.rng,
        )
        .expect("compose");
    c.log.push(ev);
    c.sync_a();
    c.sync_b();
    assert!(c.a.state().notes.is_empty(), "{:?}", c.a.state().notes);
    // B's clock is an hour behind A's.
    let back = c.now - 60 * 60 * 1000;
    let ev =
        c.b.compose(
            &Content::RequestCheckIn {
                note: "second".into(),
            },
            back,
            &mut c.rng,
        )
        .expect("compose");
    c.log.push(ev);
    c.sync_a();
    c.sync_b();
    let seq = c.log.len() as u64 - 1;
    for r in [&c.a, &c.b] {
        assert_eq!(
            r.state().notes,
            vec![(seq, NOTE_DATED_EARLIER.to_owned())],
            "both sides note it"
        );
    }
    // Five minutes of slack for clocks that are merely a little off.
    assert_eq!(FUTURE_SLACK_MS, 5 * 60 * 1000);
    // Seen from a device whose clock is behind A's, A's event is ahead.
    let behind = c.now - FUTURE_SLACK_MS - 60_000;
    let ahead: Vec<u64> = c.b.future_notes(behind).iter().map(|(s, _)| *s).collect();
    assert!(ahead.contains(&(seq - 1)), "{ahead:?}");
    assert!(c.b.future_notes(c.now).is_empty());
    // Exactly at the slack is not yet a note; one millisecond past it is.
    let at = c.log[seq as usize - 1].header().timestamp_ms;
    assert!(
        !c.b.future_notes(at - FUTURE_SLACK_MS)
            .iter()
            .any(|(s, _)| *s == seq - 1)
    );
    assert!(
        c.b.future_notes(at - FUTURE_SLACK_MS - 1)
            .iter()
            .any(|(s, _)| *s == seq - 1)
    );
}

/// Removing the fold's co-signature check must make a test fail: an invalid
/// co-signature is a problem, never "signed by", and never in force.
#[test]
fn a_cosignature_that_does_not_verify_is_not_recorded_as_signed() {
    let mut c = Couple::new(27);
    let id = AgreementId::random(&mut c.rng);
    let p = c.a.propose(whereabouts(id)).expect("propose");
    c.post(Role::Leading, p);
    let hash = c.b.state().agreements[&id].versions[0].hash;
    // B's identity signs the right words but another position: a valid
    // signature over the wrong body.
    let wrong = whereabouts(id).cosign(
        c.b.space(),
        &Position {
            seq: 1,
            event: c.log[1].hash(),
        },
        &c.b.keys().identity,
    );
    c.post(
        Role::Rebuilding,
        Content::Cosign {
            agreement: id,
            version: 1,
            hash,
            signature: wrong,
        },
    );
    for r in [&c.a, &c.b] {
        let v = &r.state().agreements[&id].versions[0];
        assert!(v.signatures.is_empty(), "recorded as signed");
        assert_eq!(v.status, VersionStatus::Pending);
        assert!(
            r.state()
                .problems
                .iter()
                .any(|(_, p)| p.contains("does not verify"))
        );
        assert!(
            r.state()
                .timeline
                .iter()
                .all(|t| !t.what.starts_with("signed")),
            "the timeline says signed"
        );
    }
    // A's genuine signature and B's wrong one never make it in force.
    let s = c.a.cosign(id, 1).expect("cosign a");
    c.post(Role::Leading, s);
    assert_eq!(
        c.b.state().agreements[&id].versions[0].status,
        VersionStatus::Pending
    );
}

#[test]
fn key_exports_and_closing_are_signed_events_both_see() {
    let mut c = Couple::new(28);
    c.post(
        Role::Rebuilding,
        Content::KeyExported {
            label: "this browser".into(),
        },
    );
    c.post(
        Role::Leading,
        Content::CloseSpace {
            comment: String::new(),
        },
    );
    for r in [&c.a, &c.b] {
        let st = r.state();
        assert_eq!(st.key_exports.len(), 1);
        assert_eq!(st.key_exports[0].0, Role::Rebuilding);
        assert!(
            st.timeline
                .iter()
                .any(|t| t.what == "exported a copy of their key on this browser")
        );
        assert_eq!(st.closed.map(|(r, _)| r), Some(Role::Leading));
    }
}

/// An append whose answer was lost: the 409 that a retry meets names the
/// event itself, and after a sync the verified log holds it at its place,
/// so neither client posts it again; a competing event at the same place
/// is not taken for it.
#[test]
fn an_append_whose_answer_was_lost_is_recognised() {
    let mut c = Couple::new(31);
    let note = |s: &str| Content::RequestCheckIn { note: s.into() };
    // B composes on its head; the relay writes it, but B never hears back.
    let lost =
        c.b.compose(&note("lost answer"), c.now + 1, &mut c.rng)
            .expect("compose");
    // A's competing event for the same place, never written.
    let rival =
        c.a.compose(&note("rival"), c.now + 2, &mut c.rng)
            .expect("compose");
    assert_eq!(lost.header().seq, rival.header().seq);
    let seq = lost.header().seq;
    assert!(c.b.already_in(std::slice::from_ref(&lost)).is_none());
    c.log.push(lost.clone());
    // The relay's 409 names the lost event: that is this append, done.
    assert!(lost.is_head((seq, lost.hash())));
    assert!(!rival.is_head((seq, lost.hash())));
    assert!(!lost.is_head((seq + 1, lost.hash())));
    // After a sync the log holds it at its own position, and only it.
    c.sync_b();
    c.sync_a();
    let sent = [rival.clone(), lost.clone()];
    assert_eq!(c.b.already_in(&sent).map(Event::hash), Some(lost.hash()));
    assert!(c.a.already_in(std::slice::from_ref(&rival)).is_none());
}
