//! Forgetting on schedule (issue 17, item 8): epochs rotate monthly, a
//! space keeps things for its retention period, and both clients then
//! delete old epochs' keys, so those events stay in the log (the chain
//! still verifies) but no longer decrypt; agreements in force survive.
//! Shortening is one partner's choice, lengthening takes both, and a
//! rotation outside the rules is refused by the membership rules that the
//! relay and every client run.

mod common;

use common::Couple;
use troth_core::agreement::{Agreement, AgreementError, template};
use troth_core::content::Content;
use troth_core::crypto::{self, EpochKey};
use troth_core::event::{Body, Control, Event, Header, Role};
use troth_core::ids::AgreementId;
use troth_core::log::{ChainError, ChainVerifier, TrustAnchors};
use troth_core::members::{MembershipError, ROTATION_PERIOD_MS};
use troth_core::replica::{Replica, ReplicaError};
use troth_core::retention::{DEFAULT_DAYS, MAX_DAYS, MIN_DAYS};
use troth_core::state::{DAY_MS, VersionStatus};

/// A's client rotates (the period must have passed at `c.now`); both sync.
fn rotate(c: &mut Couple) -> Event {
    let ev =
        c.a.compose_rotation(c.now, &mut c.rng)
            .expect("compose")
            .expect("a rotation is due");
    assert_eq!(ev.header().seq, c.log.len() as u64);
    c.log.push(ev.clone());
    c.sync_a();
    c.sync_b();
    ev
}

fn check_in(c: &mut Couple, by: Role, text: &str) -> Event {
    c.post(
        by,
        Content::CheckIn {
            text: text.into(),
            place: None,
            answers: None,
        },
    )
}

fn agree(c: &mut Couple, review_in: u32) -> AgreementId {
    let t = template("whereabouts").expect("template");
    let a = Agreement {
        id: AgreementId::random(&mut c.rng),
        version: 1,
        supersedes: None,
        title: t.title.into(),
        rules: t.rules,
        review_on: c.today().plus(review_in),
    };
    let id = a.id;
    let p = c.a.propose(a).expect("propose");
    c.post(Role::Leading, p);
    let s = c.a.cosign(id, 1).expect("a signs");
    c.post(Role::Leading, s);
    let s = c.b.cosign(id, 1).expect("b signs");
    c.post(Role::Rebuilding, s);
    id
}

/// `body` signed by A's device at the head of the log, at `epoch` and `at_ms`.
fn forged(c: &Couple, body: Body, epoch: u32, at_ms: u64) -> Event {
    let last = c.log.last().expect("log");
    let header = Header {
        space: last.header().space,
        seq: last.header().seq + 1,
        prev: last.hash(),
        author: c.a.keys().cert.device().id(),
        epoch,
        timestamp_ms: at_ms,
    };
    Event::sign(header, body, &c.a.keys().device)
}

fn refused_with(rep: &mut Replica, ev: Event) -> MembershipError {
    let before = rep.events().len();
    let r = rep.ingest(&[ev]);
    assert_eq!(rep.events().len(), before, "nothing was accepted");
    match r.error {
        Some(ChainError::Membership { error, .. }) => error,
        other => panic!("expected a membership refusal, got {other:?}"),
    }
}

#[test]
fn the_constants_are_a_month_and_six_months() {
    assert_eq!(ROTATION_PERIOD_MS, 30 * DAY_MS);
    assert_eq!(DEFAULT_DAYS, 183);
    assert_eq!((MIN_DAYS, MAX_DAYS), (30, 3650));
    let c = Couple::new(80);
    assert_eq!(c.a.state().retention.days, DEFAULT_DAYS);
}

#[test]
fn epochs_rotate_on_schedule_and_a_race_makes_one_rotation() {
    let mut c = Couple::new(81);
    let start = c.a.chain().members().epoch_started_ms();
    assert!(!c.a.rotation_due(c.now));
    assert!(
        c.a.compose_rotation(c.now, &mut c.rng)
            .expect("ok")
            .is_none()
    );
    c.now = start + ROTATION_PERIOD_MS;
    // Both clients act after the period, on the same head.
    let from_a =
        c.a.compose_rotation(c.now, &mut c.rng)
            .expect("a")
            .expect("due");
    let from_b =
        c.b.compose_rotation(c.now, &mut c.rng)
            .expect("b")
            .expect("due");
    // A's reaches the relay first; B's append would be stale (a fork).
    c.log.push(from_a);
    c.sync_a();
    c.sync_b();
    assert_eq!(c.a.chain().members().epoch(), 1);
    assert!(c.b.holds_epoch_key(1) && c.a.holds_epoch_key(1));
    let mut b2 = c.b.chain().clone();
    assert!(matches!(
        b2.extend(std::slice::from_ref(&from_b)).error,
        Some(ChainError::Fork { .. })
    ));
    // B re-bases: nothing is due any more, so B composes no second rotation.
    assert!(!c.b.rotation_due(c.now));
    assert!(
        c.b.compose_rotation(c.now, &mut c.rng)
            .expect("b")
            .is_none()
    );
    // A second rotation within the period, signed by a modified client, is
    // refused by the rules the relay and every client run.
    let key = EpochKey::generate(&mut c.rng);
    let space = c.a.space();
    let envelopes = [c.a.keys().cert.device(), c.b.keys().cert.device()]
        .into_iter()
        .map(|d| crypto::seal_envelope(&key, space, 2, d).expect("seal"))
        .collect();
    let early = forged(
        &c,
        Body::Control(Control::Rotate {
            commitment: key.commitment(space, 2),
            envelopes,
        }),
        2,
        c.now + DAY_MS,
    );
    assert!(matches!(
        refused_with(&mut c.b, early),
        MembershipError::NotAllowed(w) if w.contains("once a period")
    ));
    // Sealed content goes on in the new epoch, readable by both.
    let ev = check_in(&mut c, Role::Rebuilding, "home by six");
    assert_eq!(ev.header().epoch, 1);
    assert_eq!(c.a.state().checkins.len(), 1);
}

#[test]
fn a_rotation_outside_the_rules_is_refused() {
    let mut c = Couple::new(82);
    c.now += ROTATION_PERIOD_MS;
    let space = c.a.space();
    let key = EpochKey::generate(&mut c.rng);
    let env = |d| crypto::seal_envelope(&key, space, 1, d).expect("seal");
    // Leaving the partner's device out (so they couldn't read what follows).
    let only_mine = forged(
        &c,
        Body::Control(Control::Rotate {
            commitment: key.commitment(space, 1),
            envelopes: vec![env(c.a.keys().cert.device())],
        }),
        1,
        c.now,
    );
    assert_eq!(
        refused_with(&mut c.b, only_mine),
        MembershipError::Envelopes
    );
    // Skipping an epoch.
    let skip = forged(
        &c,
        Body::Control(Control::Rotate {
            commitment: key.commitment(space, 2),
            envelopes: vec![env(c.a.keys().cert.device()), env(c.b.keys().cert.device())],
        }),
        2,
        c.now,
    );
    assert!(matches!(
        refused_with(&mut c.b, skip),
        MembershipError::Epoch {
            expected: 1,
            got: 2
        }
    ));
    // The relay cannot make one (no device key): a valid rotation whose
    // time it changes no longer verifies.
    let good =
        c.a.compose_rotation(c.now, &mut c.rng)
            .expect("ok")
            .expect("due");
    let mut bytes = good.as_bytes().to_vec();
    // The timestamp is the 8 bytes after format, space, seq, prev, author, epoch.
    bytes[1 + 16 + 8 + 32 + 32 + 4 + 7] ^= 1;
    let tampered = Event::decode(&bytes).expect("decodes");
    let r = c.b.ingest(&[tampered]);
    assert!(
        matches!(r.error, Some(ChainError::BadSignature { .. })),
        "{:?}",
        r.error
    );
    // The rotation as composed passes.
    c.log.push(good);
    c.sync_b();
    assert_eq!(c.b.chain().members().epoch(), 1);
}

#[test]
fn retention_forgets_old_epochs_so_their_events_no_longer_decrypt_and_the_chain_verifies() {
    let mut c = Couple::new(83);
    let day0 = c.now;
    let old = check_in(&mut c, Role::Rebuilding, "at the gym until 7");
    c.now = day0 + ROTATION_PERIOD_MS;
    let r1 = rotate(&mut c);
    let recent = check_in(&mut c, Role::Rebuilding, "home by six");
    // Not yet: epoch 0 ended at r1; it is kept for 183 days after that.
    let ended = r1.header().timestamp_ms;
    let keep_ms = u64::from(DEFAULT_DAYS) * DAY_MS;
    assert_eq!(c.a.forget(ended + keep_ms - 1), 0);
    assert!(c.a.holds_epoch_key(0));
    assert_eq!(c.a.state().checkins.len(), 2);
    // Then both forget epoch 0.
    let now = ended + keep_ms;
    assert_eq!(c.a.forget(now), 1);
    assert_eq!(c.b.forget(now), 1);
    for rep in [&c.a, &c.b] {
        assert!(!rep.holds_epoch_key(0) && rep.holds_epoch_key(1));
        assert_eq!(rep.forgotten_epochs(), 1);
        assert!(rep.is_forgotten(old.header().seq));
        assert!(!rep.is_forgotten(recent.header().seq));
        let st = rep.state();
        let texts: Vec<&str> = st.checkins.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["home by six"]);
        assert!(st.timeline.iter().all(|t| t.seq >= r1.header().seq));
        assert!(
            st.problems.is_empty(),
            "forgotten is not a problem: {:?}",
            st.problems
        );
        assert!(st.forgotten.events >= 1 && st.forgotten.epochs == 1);
        // Roles, confirmed in epoch 0, still hold.
        assert!(st.roles.agreed());
    }
    // The chain still verifies, event by event, for anyone holding the
    // trust anchors: forgetting deleted keys, not events.
    let anchors = TrustAnchors {
        leading: Some(c.a.keys().identity.public()),
        rebuilding: Some(c.b.keys().identity.public()),
    };
    let mut v = ChainVerifier::new(c.a.space(), anchors);
    let ext = v.extend(&c.log);
    assert!(ext.error.is_none(), "{:?}", ext.error);
    assert_eq!(ext.accepted, c.log.len());
    // Reopened from its saved forgetting, a device never opens the old
    // envelopes again: the old check-in stays unreadable.
    let record = c.b.forgetting_record();
    let mut again = Replica::open(
        c.b.keys().duplicate(),
        Role::Rebuilding,
        c.b.space(),
        TrustAnchors {
            leading: Some(c.a.keys().identity.public()),
            rebuilding: None,
        },
    );
    again.restore_forgetting(&record).expect("restore");
    let r = again.ingest(&c.log);
    assert!(r.error.is_none(), "{:?}", r.error);
    assert!(!again.holds_epoch_key(0));
    assert_eq!(again.state().checkins.len(), 1);
    assert!(
        again.restore_forgetting(&record).is_err(),
        "only before events"
    );
    // Forgetting again changes nothing; the current epoch is never forgotten.
    assert_eq!(c.a.forget(now + 10 * keep_ms), 0);
    assert!(c.a.holds_epoch_key(1));
}

#[test]
fn agreements_in_force_survive_forgetting_and_the_rest_goes() {
    let mut c = Couple::new(84);
    let day0 = c.now;
    // One partner shortens retention to 30 days.
    let short = c.b.retention_shorten(30).expect("shorten");
    c.post(Role::Rebuilding, short);
    assert_eq!(c.a.state().retention.days, 30);
    let kept = agree(&mut c, 90);
    let gone = agree(&mut c, 90);
    let w = Content::Withdraw {
        agreement: gone,
        comment: "not this one".into(),
    };
    c.post(Role::Rebuilding, w);
    check_in(&mut c, Role::Rebuilding, "at the gym");
    c.now = day0 + ROTATION_PERIOD_MS;
    rotate(&mut c);
    c.now += ROTATION_PERIOD_MS;
    rotate(&mut c);
    // Epoch 0 ended a month ago, and retention is 30 days.
    let now = c.now + DAY_MS;
    assert_eq!(c.a.forget(now), 1);
    let st = c.a.state();
    let rec = &st.agreements[&kept];
    let v = rec.in_force().expect("still in force");
    assert_eq!(v.status, VersionStatus::InForce);
    assert_eq!(v.signatures.len(), 2, "words and both signatures stay");
    assert!(v.in_force.is_some());
    assert!(
        !st.agreements.contains_key(&gone),
        "a withdrawn agreement goes"
    );
    assert!(st.checkins.is_empty());
    assert_eq!(st.retention.days, 30, "the retention choice itself is kept");
    // A certificate can still be made from what is kept.
    c.a.certificate(kept, 1).expect("certificate");
    // Proposals still work after forgetting (roles were kept).
    let t = template("phone").expect("template");
    let a = Agreement {
        id: AgreementId::random(&mut c.rng),
        version: 1,
        supersedes: None,
        title: t.title.into(),
        rules: t.rules,
        review_on: troth_core::agreement::Day::from_unix_ms(now).plus(30),
    };
    let p = c.a.propose(a).expect("propose");
    let ev = c.a.compose(&p, now, &mut c.rng).expect("compose");
    c.log.push(ev);
    c.sync_a();
    assert!(
        c.a.state().problems.is_empty(),
        "{:?}",
        c.a.state().problems
    );
    // Once the agreement is no longer in force, the next forgetting lets it go.
    let much_later = now + 200 * DAY_MS;
    c.now = much_later;
    rotate(&mut c);
    c.a.forget(much_later + 31 * DAY_MS);
    assert!(
        !c.a.state().agreements.contains_key(&kept),
        "lapsed long ago"
    );
}

#[test]
fn shortening_takes_one_partner_and_lengthening_takes_both() {
    let mut c = Couple::new(85);
    let s = c.a.retention_shorten(60).expect("shorten");
    c.post(Role::Leading, s);
    assert_eq!(c.b.state().retention.days, 60);
    assert_eq!(
        c.b.state().retention.changed.map(|(r, _)| r),
        Some(Role::Leading)
    );
    // Out of range, or the wrong direction, is refused before anything is sent.
    assert!(matches!(
        c.a.retention_shorten(MIN_DAYS - 1),
        Err(ReplicaError::Agreement(AgreementError::RetentionOutOfRange))
    ));
    assert!(c.a.retention_shorten(90).is_err());
    assert!(c.a.retention_propose(MAX_DAYS + 1).is_err());
    assert!(c.a.retention_propose(45).is_err());
    // Keeping longer is a proposal until the other partner agrees.
    let p = c.a.retention_propose(365).expect("propose");
    c.post(Role::Leading, p);
    assert_eq!(c.b.state().retention.days, 60);
    assert_eq!(
        c.b.state().retention.proposal.map(|(r, d, _)| (r, d)),
        Some((Role::Leading, 365))
    );
    assert!(
        c.a.retention_agree().is_err(),
        "the proposer can't agree alone"
    );
    // A modified client agreeing to its own proposal changes nothing.
    c.post_unchecked(Role::Leading, Content::AgreeRetention { days: 365 });
    assert_eq!(c.b.state().retention.days, 60);
    assert!(!c.b.state().problems.is_empty());
    // Nor does agreeing to a number nobody proposed.
    c.post_unchecked(Role::Rebuilding, Content::AgreeRetention { days: 500 });
    assert_eq!(c.a.state().retention.days, 60);
    let yes = c.b.retention_agree().expect("agree");
    c.post(Role::Rebuilding, yes);
    assert_eq!(c.a.state().retention.days, 365);
    assert!(c.a.state().retention.proposal.is_none());
    // A shortening clears a pending proposal to lengthen.
    let p = c.b.retention_propose(400).expect("propose");
    c.post(Role::Rebuilding, p);
    let s = c.a.retention_shorten(100).expect("shorten");
    c.post(Role::Leading, s);
    assert_eq!(c.b.state().retention.days, 100);
    assert!(c.b.state().retention.proposal.is_none());
}

#[test]
fn a_device_added_after_forgetting_gets_the_keys_still_kept() {
    let mut c = Couple::new(86);
    let day0 = c.now;
    c.now = day0 + ROTATION_PERIOD_MS;
    rotate(&mut c);
    let now = c.now + u64::from(DEFAULT_DAYS) * DAY_MS + DAY_MS;
    c.b.forget(now);
    assert!(!c.b.holds_epoch_key(0));
    let phone = c.b.keys().rotate_device(&mut c.rng, now);
    let add = c.b.compose_add_device(&phone.cert, now).expect("add");
    let Body::Control(Control::AddDevice { envelopes, .. }) = add.body() else {
        panic!("an AddDevice");
    };
    let epochs: Vec<u32> = envelopes.iter().map(|e| e.epoch).collect();
    assert_eq!(epochs, [1], "k..=current, for the epochs still kept");
    c.log.push(add);
    c.sync_a();
    c.sync_b();
    // Envelopes that are not contiguous up to the current epoch are refused.
    c.now = now + ROTATION_PERIOD_MS;
    rotate(&mut c);
    c.now += ROTATION_PERIOD_MS;
    rotate(&mut c);
    let laptop = c.a.keys().rotate_device(&mut c.rng, c.now);
    let space = c.a.space();
    let k0 = EpochKey::generate(&mut c.rng);
    let holes = [1u32, 3]
        .into_iter()
        .map(|e| crypto::seal_envelope(&k0, space, e, laptop.cert.device()).expect("seal"))
        .collect();
    let bad = forged(
        &c,
        Body::Control(Control::AddDevice {
            cert: laptop.cert.clone(),
            envelopes: holes,
        }),
        3,
        c.now,
    );
    assert_eq!(refused_with(&mut c.b, bad), MembershipError::Envelopes);
}
