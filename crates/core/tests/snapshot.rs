//! A replica restored from its sealed snapshot is the replica a full
//! verify of the same events gives: same state, state code, alerts,
//! certificates and notes; it goes on ingesting and composing. A snapshot
//! that was altered, belongs to another space, or describes another head
//! than the one named is refused, and the full path gives the same result.

use troth_core::SpaceId;
use troth_core::agreement::Day;
use troth_core::content::{AnswerKind, Content, PhoneAction, ReportScope};
use troth_core::event::{Event, Role};
use troth_core::ids::AgreementId;
use troth_core::log::TrustAnchors;
use troth_core::replica::{Replica, SnapshotError};

mod common;
use common::{Couple, whereabouts};

/// A couple with something of everything in their log.
fn lived_in() -> (Couple, AgreementId) {
    let mut c = Couple::new(21);
    let id = AgreementId::random(&mut c.rng);
    let p = c.a.propose(whereabouts(id)).expect("propose");
    c.post(Role::Leading, p);
    let s = c.a.cosign(id, 1).expect("cosign a");
    c.post(Role::Leading, s);
    let s = c.b.cosign(id, 1).expect("cosign b");
    c.post(Role::Rebuilding, s);
    let other = AgreementId::random(&mut c.rng);
    let p = c.b.propose(whereabouts(other)).expect("propose");
    c.post(Role::Rebuilding, p);
    c.post(
        Role::Leading,
        Content::RequestChange {
            agreement: other,
            version: 1,
            comment: "Can we talk about the evenings?".into(),
        },
    );
    let req = c.post(
        Role::Leading,
        Content::RequestCheckIn {
            note: "Where are you?".into(),
        },
    );
    let ci = c.post(
        Role::Rebuilding,
        Content::CheckIn {
            text: "At the gym until 7".into(),
            place: Some("Riverside".into()),
            answers: Some(req.hash()),
        },
    );
    c.post(Role::Leading, Content::Ack { event: ci.hash() });
    let ask = c.post(
        Role::Leading,
        Content::Phone {
            action: PhoneAction::Asked,
            note: "tonight?".into(),
            answers: None,
        },
    );
    c.post(
        Role::Rebuilding,
        Content::Answer {
            to: ask.hash(),
            answer: AnswerKind::Therapist,
            note: String::new(),
        },
    );
    let scope = ReportScope {
        recipient: String::new(),
        include_checkins: true,
        until: Day::parse("2030-01-01").expect("day"),
    };
    let consent = c.a.consent(scope);
    c.post(Role::Leading, consent);
    c.post(
        Role::Rebuilding,
        Content::KeyExported {
            label: "a browser".into(),
        },
    );
    // Both swapped the roles, then one asks to swap them back: where the
    // roles stand and the open wish are part of the snapshot.
    for by in [Role::Leading, Role::Rebuilding, Role::Leading] {
        let r = if by == Role::Leading { &c.a } else { &c.b };
        let s = r.swap_roles().expect("swap");
        c.post(by, s);
    }
    assert_eq!(c.b.state().roles.sets, Role::Rebuilding);
    assert_eq!(c.b.state().roles.swap_requests.len(), 1);
    (c, id)
}

fn anchors(c: &Couple) -> TrustAnchors {
    TrustAnchors {
        leading: c.b.partner().copied(),
        rebuilding: None,
    }
}

fn full(c: &Couple, events: &[Event]) -> Replica {
    let mut r = Replica::open(
        c.b.keys().duplicate(),
        Role::Rebuilding,
        c.b.space(),
        anchors(c),
    );
    let ing = r.ingest(events);
    assert!(ing.error.is_none(), "{:?}", ing.error);
    r
}

fn restore(
    c: &Couple,
    head: (u64, troth_core::event::EventHash),
    sealed: &[u8],
) -> Result<Replica, SnapshotError> {
    Replica::restore(
        c.b.keys().duplicate(),
        Role::Rebuilding,
        c.b.space(),
        anchors(c),
        head,
        sealed,
    )
}

/// Everything a person or a client reads from a replica.
fn same(x: &Replica, y: &Replica, today: Day, now: u64) {
    assert_eq!(format!("{:?}", x.state()), format!("{:?}", y.state()));
    assert_eq!(x.state_code(), y.state_code());
    assert_eq!(x.chain().head(), y.chain().head());
    assert_eq!(x.alerts(), y.alerts());
    assert_eq!(x.future_notes(now), y.future_notes(now));
    assert_eq!(x.chain().members().encode(), y.chain().members().encode());
    for (id, rec) in &x.state().agreements {
        for v in &rec.versions {
            let n = v.agreement.version;
            let (a, b) = (x.certificate(*id, n), y.certificate(*id, n));
            assert_eq!(a.is_ok(), b.is_ok());
            if let (Ok(a), Ok(b)) = (a, b) {
                assert_eq!(a.to_bytes(), b.to_bytes());
                assert_eq!(
                    x.certificate_status(&a, today),
                    y.certificate_status(&b, today)
                );
            }
        }
    }
}

#[test]
fn a_restored_replica_is_the_fully_verified_one() {
    let (mut c, id) = lived_in();
    let today = c.today();
    let snap = c.b.snapshot(&mut c.rng).expect("snapshot");
    assert_eq!((snap.seq, snap.head), c.b.chain().head().expect("head"));
    let mut r = restore(&c, (snap.seq, snap.head), &snap.sealed).expect("restores");
    same(&r, &c.b, today, c.now);
    // A certificate needs the proposing event: it was kept.
    assert!(r.certificate(id, 1).is_ok());
    // What was sent before the snapshot is found (no double post).
    assert!(r.already_in(&c.log[5..6]).is_some());
    assert!(r.events().is_empty());
    assert_eq!(r.first_held(), c.log.len() as u64);

    // It goes on: new events from the partner are verified and folded, and
    // it composes with the epoch key it opened again from the log.
    let more = c.post(
        Role::Leading,
        Content::RequestCheckIn {
            note: "And now?".into(),
        },
    );
    assert_eq!(r.ingest(std::slice::from_ref(&more)).accepted, 1);
    let mine = r
        .compose(
            &Content::CheckIn {
                text: "Home soon".into(),
                place: None,
                answers: Some(more.hash()),
            },
            c.now + 1000,
            &mut c.rng,
        )
        .expect("composes on the restored head");
    c.now += 1000;
    c.log.push(mine.clone());
    c.sync_a();
    c.sync_b();
    assert_eq!(r.ingest(std::slice::from_ref(&mine)).accepted, 1);
    same(&r, &c.b, today, c.now);
    assert_eq!(r.events().len(), 2);

    // A snapshot of the restored replica restores to the same again.
    let snap2 = r.snapshot(&mut c.rng).expect("snapshot again");
    let r2 = restore(&c, (snap2.seq, snap2.head), &snap2.sealed).expect("restores");
    same(&r2, &c.b, today, c.now);
    assert!(r2.certificate(id, 1).is_ok());
}

#[test]
fn a_snapshot_that_does_not_match_is_refused_and_the_full_path_agrees() {
    let (mut c, _) = lived_in();
    let today = c.today();
    let snap = c.b.snapshot(&mut c.rng).expect("snapshot");
    let head = (snap.seq, snap.head);

    // One flipped bit anywhere.
    for i in [0, 1, 30, snap.sealed.len() / 2, snap.sealed.len() - 1] {
        let mut t = snap.sealed.clone();
        t[i] ^= 1;
        assert_eq!(
            restore(&c, head, &t).err(),
            Some(SnapshotError),
            "flip at {i}"
        );
    }
    // Another space (same device key, another space id).
    let other = Replica::restore(
        c.b.keys().duplicate(),
        Role::Rebuilding,
        SpaceId([7; 16]),
        anchors(&c),
        head,
        &snap.sealed,
    );
    assert_eq!(other.err(), Some(SnapshotError));
    // Another role or other anchors than the ones stored with it.
    let wrong_role = Replica::restore(
        c.b.keys().duplicate(),
        Role::Leading,
        c.b.space(),
        anchors(&c),
        head,
        &snap.sealed,
    );
    assert_eq!(wrong_role.err(), Some(SnapshotError));
    let stranger = troth_core::keyfile::KeyBundle::generate(&mut c.rng, 1);
    let wrong_anchor = Replica::restore(
        c.b.keys().duplicate(),
        Role::Rebuilding,
        c.b.space(),
        TrustAnchors {
            leading: Some(stranger.identity.public()),
            rebuilding: None,
        },
        head,
        &snap.sealed,
    );
    assert_eq!(wrong_anchor.err(), Some(SnapshotError));
    // Another device's key cannot open it.
    let foreign = Replica::restore(
        stranger,
        Role::Rebuilding,
        c.b.space(),
        anchors(&c),
        head,
        &snap.sealed,
    );
    assert_eq!(foreign.err(), Some(SnapshotError));

    // Older than what is stored: named as the newest head it is refused.
    c.post(
        Role::Rebuilding,
        Content::CheckIn {
            text: "Later".into(),
            place: None,
            answers: None,
        },
    );
    let newest = c.b.chain().head().expect("head");
    assert_eq!(restore(&c, newest, &snap.sealed).err(), Some(SnapshotError));
    // A head it does not describe at its own seq (a swapped hash).
    let swapped = (snap.seq, c.log[3].hash());
    assert_eq!(
        restore(&c, swapped, &snap.sealed).err(),
        Some(SnapshotError)
    );

    // The full path over the stored events gives the same replica as the
    // one that kept up; and the older snapshot, at its own head, with the
    // stored events after it verified on top, gives it too.
    let f = full(&c, &c.log);
    same(&f, &c.b, today, c.now);
    let mut older = restore(&c, head, &snap.sealed).expect("at its own head");
    let from = (head.0 + 1) as usize;
    assert!(older.ingest(&c.log[from..]).error.is_none());
    same(&older, &c.b, today, c.now);
}

#[test]
fn no_snapshot_while_an_event_is_unreadable() {
    let (mut c, _) = lived_in();
    // Sealed events this device cannot open: a new device of B's that was
    // never added holds no epoch key. A late key would fold everything
    // again, so no snapshot is made then.
    let rotated = c.b.keys().rotate_device(&mut c.rng, 5);
    let mut blind = Replica::open(rotated, Role::Rebuilding, c.b.space(), anchors(&c));
    assert!(blind.ingest(&c.log).error.is_none());
    assert!(!blind.state().problems.is_empty());
    assert!(blind.snapshot(&mut c.rng).is_none());
}
