//! Two partners' replicas over an in-memory log (the relay's append-if-head),
//! through the whole agreement lifecycle, and the chain verifier's precise
//! errors for each way a relay can lie.

use rand::SeedableRng;
use rand::rngs::StdRng;
use troth_core::agreement::Day;
use troth_core::content::{Content, ReportScope};
use troth_core::event::{Body, Event, Role};
use troth_core::ids::AgreementId;
use troth_core::keyfile::KeyBundle;
use troth_core::log::{ChainError, TrustAnchors};
use troth_core::replica::Replica;
use troth_core::state::VersionStatus;

mod common;
use common::{Couple, whereabouts};

#[test]
fn agree_keep_withdraw_renew() {
    let mut c = Couple::new(1);
    assert_eq!(c.a.safety_number(), c.b.safety_number());
    assert!(c.a.safety_number().is_some());

    let id = AgreementId::random(&mut c.rng);
    let ag = whereabouts(id);
    let p = c.a.propose(ag.clone()).expect("propose");
    c.post(Role::Leading, p);
    let s = c.a.cosign(id, 1).expect("cosign a");
    c.post(Role::Leading, s);
    // One signature is not enough.
    assert_eq!(
        c.b.state().agreements[&id].versions[0].status,
        VersionStatus::Pending
    );
    let s = c.b.cosign(id, 1).expect("cosign b");
    c.post(Role::Rebuilding, s);
    for r in [&c.a, &c.b] {
        let rec = &r.state().agreements[&id];
        assert_eq!(rec.versions[0].status, VersionStatus::InForce);
        assert!(rec.in_force().and_then(|v| v.in_force.as_ref()).is_some());
    }
    assert_eq!(c.a.state_code(), c.b.state_code());

    // Check-ins, requests and acknowledgements.
    let req = c.post(
        Role::Leading,
        Content::RequestCheckIn {
            note: "Could you check in?".into(),
        },
    );
    let ci = c.post(
        Role::Rebuilding,
        Content::CheckIn {
            text: "at the gym until 7".into(),
            place: Some("Riverside gym".into()),
            answers: Some(req.hash()),
        },
    );
    c.post(Role::Leading, Content::Ack { event: ci.hash() });
    for r in [&c.a, &c.b] {
        let st = r.state();
        assert_eq!(st.requests[0].answered_by, Some(ci.header().seq));
        assert_eq!(st.checkins[0].place.as_deref(), Some("Riverside gym"));
        assert!(st.checkins[0].acked_at.is_some());
    }

    // Review: due on the review day, renewed as a new co-signed version.
    let today = Day::parse("2026-11-15").expect("day");
    assert_eq!(c.a.state().due_for_review(today).len(), 1);
    assert_eq!(c.a.state().due_for_review(Day(today.0 - 1)).len(), 0);
    let v1 = c.a.state().agreements[&id].versions[0].agreement.clone();
    let v2 = v1.amended(v1.title.clone(), v1.rules.clone(), today.plus(30));
    let p = c.b.propose(v2).expect("renew");
    c.post(Role::Rebuilding, p);
    // Until both sign the renewal, version 1 stays in force.
    assert_eq!(
        c.a.state().agreements[&id]
            .in_force()
            .map(|v| v.agreement.version),
        Some(1)
    );
    let s = c.b.cosign(id, 2).expect("b");
    c.post(Role::Rebuilding, s);
    let s = c.a.cosign(id, 2).expect("a");
    c.post(Role::Leading, s);
    let rec = &c.b.state().agreements[&id];
    assert_eq!(rec.versions[0].status, VersionStatus::Superseded);
    assert_eq!(rec.versions[1].status, VersionStatus::InForce);
    assert!(c.b.state().due_for_review(today).is_empty());

    // Either partner can withdraw alone; it wins, and both see it.
    c.post(
        Role::Rebuilding,
        Content::Withdraw {
            agreement: id,
            comment: "I need to talk about this one".into(),
        },
    );
    for r in [&c.a, &c.b] {
        let rec = &r.state().agreements[&id];
        assert!(rec.in_force().is_none());
        assert_eq!(rec.withdrawn.as_ref().map(|w| w.0), Some(Role::Rebuilding));
    }
    // A late signature on a withdrawn version changes nothing.
    assert!(c.a.cosign(id, 2).is_err());

    // Report consent needs both.
    let scope = ReportScope {
        recipient: "age1therapist".into(),
        include_checkins: true,
        until: today.plus(10),
    };
    let ca = c.a.consent(scope.clone());
    c.post(Role::Leading, ca);
    assert!(!c.a.state().report_consented("age1therapist", today));
    let cb = c.b.consent(scope);
    c.post(Role::Rebuilding, cb);
    assert!(c.a.state().report_consented("age1therapist", today));
    assert!(!c.a.state().report_consented("age1someoneelse", today));

    assert_eq!(c.a.state().timeline.len(), c.log.len());
    assert!(
        c.a.state().problems.is_empty(),
        "{:?}",
        c.a.state().problems
    );
    assert!(c.a.alerts().is_empty() && c.b.alerts().is_empty());
}

#[test]
fn relay_lies_are_detected_precisely() {
    let mut c = Couple::new_unconfirmed(2);
    for i in 0..4 {
        c.post(
            Role::Rebuilding,
            Content::CheckIn {
                text: format!("check-in {i}"),
                place: None,
                answers: None,
            },
        );
    }
    let log = c.log.clone(); // seq 0..=5
    let fresh = |c: &Couple| -> Replica {
        let kb = KeyBundle::decrypt(
            c.b.keys().encrypt("pw", 4).expect("enc").as_bytes(),
            "pw",
            4,
        )
        .expect("dec");
        Replica::open(
            kb,
            Role::Rebuilding,
            c.b.space(),
            TrustAnchors {
                leading: c.a.keys().identity.public().into(),
                rebuilding: None,
            },
        )
    };

    // Gap: drop event 3.
    let mut r = fresh(&c);
    let mut dropped = log.clone();
    dropped.remove(3);
    let res = r.ingest(&dropped);
    assert_eq!(res.accepted, 3);
    assert_eq!(
        res.error,
        Some(ChainError::Gap {
            expected: 3,
            got: 4
        })
    );
    assert_eq!(r.alerts().len(), 1);

    // Reorder.
    let mut r = fresh(&c);
    let mut swapped = log.clone();
    swapped.swap(3, 4);
    assert_eq!(
        r.ingest(&swapped).error,
        Some(ChainError::Gap {
            expected: 3,
            got: 4
        })
    );
    let mut r = fresh(&c);
    r.ingest(&log[..3]);
    let res = r.ingest(&[log[4].clone(), log[3].clone()]);
    assert_eq!(
        res.error,
        Some(ChainError::Gap {
            expected: 3,
            got: 4
        })
    );
    let res = r.ingest(&[log[3].clone(), log[4].clone(), log[3].clone()]);
    assert_eq!(res.accepted, 2);
    assert_eq!(res.error, Some(ChainError::Reorder { seq: 3 }));

    // Replay: harmless, reported as a duplicate, no alert.
    let mut r = fresh(&c);
    r.ingest(&log);
    let before = r.alerts().len();
    assert_eq!(
        r.ingest(&log[2..3]).error,
        Some(ChainError::Duplicate { seq: 2 })
    );
    assert_eq!(r.alerts().len(), before);

    // Rollback: the relay now claims a shorter history.
    assert!(matches!(
        r.check_remote_head(Some((2, log[2].hash()))),
        Err(ChainError::Rollback {
            verified: 6,
            offered: 3
        })
    ));
    // Fork: a head that disagrees with a verified event.
    assert_eq!(
        r.check_remote_head(Some((5, log[4].hash()))),
        Err(ChainError::Fork { seq: 5 })
    );
    assert!(r.check_remote_head(Some((5, log[5].hash()))).is_ok());

    // Fork: A's device signs a different event 5 (equivocation) -> B, who
    // verified the original, refuses it; nothing verified is lost.
    let mut r = fresh(&c);
    r.ingest(&log);
    let mut c2 = Couple::new_unconfirmed(2);
    let forked =
        c2.a.compose(
            &Content::RequestCheckIn { note: "x".into() },
            5,
            &mut c2.rng,
        )
        .expect("compose");
    // c2 has the same keys and space (same seed) but its own history: its
    // event 2 is a different event for a sequence number B already verified.
    assert_eq!(forked.header().seq, 2);
    let mut r = fresh(&c);
    r.ingest(&log[..3]);
    assert_eq!(r.ingest(&[forked]).error, Some(ChainError::Fork { seq: 2 }));
    assert_eq!(r.events().len(), 3);

    // Injection: a bit flipped in a sealed body breaks the signature.
    let mut r = fresh(&c);
    r.ingest(&log[..4]);
    let mut bytes = log[4].as_bytes().to_vec();
    let n = bytes.len();
    bytes[n - 100] ^= 1;
    let tampered = Event::decode(&bytes).expect("decodes");
    assert_eq!(
        r.ingest(&[tampered]).error,
        Some(ChainError::BadSignature { seq: 4 })
    );
    assert_eq!(r.events().len(), 4);

    // Wrong space: an event of another couple's space.
    let mut other = Couple::new_unconfirmed(3);
    other.post(Role::Leading, Content::RequestCheckIn { note: "x".into() });
    let mut r = fresh(&c);
    r.ingest(&log[..2]);
    assert_eq!(
        r.ingest(&other.log[2..3]).error,
        Some(ChainError::WrongSpace { seq: 2 })
    );
}

#[test]
fn substituted_partner_and_non_member_are_refused() {
    let c = Couple::new_unconfirmed(4);
    // A relay that invents its own genesis for the space, signed by its own key.
    let mut rng = StdRng::seed_from_u64(99);
    let mallory = KeyBundle::generate(&mut rng, 0);
    let (_, fake_genesis) =
        Replica::create(mallory, Role::Leading, c.b.space(), 0, &mut rng).expect("create");
    let kb =
        KeyBundle::decrypt(c.b.keys().encrypt("pw", 4).expect("e").as_bytes(), "pw", 4).expect("d");
    let mut r = Replica::open(
        kb,
        Role::Rebuilding,
        c.b.space(),
        TrustAnchors {
            leading: Some(c.a.keys().identity.public()),
            rebuilding: None,
        },
    );
    assert_eq!(
        r.ingest(&[fake_genesis]).error,
        Some(ChainError::UnexpectedIdentity { seq: 0 })
    );
    assert!(r.events().is_empty());

    // A sealed event by a device that is not a member.
    let mut rng = StdRng::seed_from_u64(98);
    let stranger = troth_core::keys::DeviceSecret::generate(&mut rng);
    let mut h = c.log[1].header().clone();
    h.seq = 2;
    h.prev = c.log[1].hash();
    h.author = stranger.public().id();
    let ev = Event::sign(h, Body::Sealed(vec![0; 300]), &stranger);
    r.ingest(&c.log);
    assert!(matches!(
        r.ingest(&[ev]).error,
        Some(ChainError::Membership { seq: 2, .. })
    ));
}

#[test]
fn rotation_and_revocation_start_a_new_epoch() {
    let mut c = Couple::new_unconfirmed(5);
    c.post(
        Role::Rebuilding,
        Content::CheckIn {
            text: "before the rotation".into(),
            place: None,
            answers: None,
        },
    );
    // B rotates: a new device of the same identity, admitted by the old one.
    let new_b = c.b.keys().rotate_device(&mut c.rng, c.now);
    let add =
        c.b.compose_add_device(&new_b.cert, c.now)
            .expect("add device");
    c.log.push(add);
    c.sync_a();
    c.sync_b();
    let old_b_id = c.b.keys().cert.device().id();
    let a_id = c.a.keys().identity.public();
    let mut b2 = Replica::open(
        new_b,
        Role::Rebuilding,
        c.b.space(),
        TrustAnchors {
            leading: Some(a_id),
            rebuilding: None,
        },
    );
    // Fed in two batches, the first ending before the AddDevice event that
    // carries its keys: the earlier events become readable once it arrives.
    let cut = c.log.len() - 1;
    assert!(b2.ingest(&c.log[..cut]).error.is_none());
    assert_eq!(b2.state().problems.len(), 1, "no key yet for the check-in");
    assert!(b2.ingest(&c.log[cut..]).error.is_none());
    assert!(b2.state().problems.is_empty(), "{:?}", b2.state().problems);
    assert_eq!(b2.state().checkins[0].text, "before the rotation");
    assert_eq!(b2.state().timeline.len(), c.b.state().timeline.len());
    // The new device revokes the old one: epoch 1.
    let revoke = b2
        .compose_revoke(old_b_id, c.now, &mut c.rng)
        .expect("revoke");
    assert_eq!(revoke.header().epoch, 1);
    c.log.push(revoke);
    c.sync_a();
    c.sync_b();
    assert!(b2.ingest(&c.log[b2.events().len()..]).error.is_none());
    assert_eq!(c.a.chain().members().epoch(), 1);

    // A writes under epoch 1: the new device reads it, the revoked one cannot.
    let ev =
        c.a.compose(
            &Content::CheckIn {
                text: "new epoch".into(),
                place: None,
                answers: None,
            },
            c.now + 5,
            &mut c.rng,
        )
        .expect("compose");
    assert_eq!(ev.header().epoch, 1);
    c.log.push(ev);
    c.sync_a();
    c.sync_b(); // the old device still verifies the chain...
    assert!(b2.ingest(&c.log[b2.events().len()..]).error.is_none());
    assert_eq!(
        b2.state().checkins.last().map(|x| x.text.as_str()),
        Some("new epoch")
    );
    // ...but cannot read what was written after its revocation.
    assert!(c.b.state().checkins.iter().all(|x| x.text != "new epoch"));
    assert_eq!(c.b.state().problems.len(), 1);
    // And it can no longer write.
    let stale = c.b.compose(
        &Content::RequestCheckIn { note: "x".into() },
        c.now + 6,
        &mut c.rng,
    );
    assert!(
        stale.is_err(),
        "a revoked device has no key for the new epoch"
    );
}
