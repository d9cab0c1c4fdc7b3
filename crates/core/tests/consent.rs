//! Consent that cannot be turned into control (issue 17): review dates are
//! capped, rules lapse at their review date, requests have signed limits,
//! answers that are not compliance are normal answers, and exports are
//! signed events. Each rule is checked in the composer *and* in the fold
//! (with a modified client's events, `post_unchecked`).

use troth_core::agreement::{
    Agreement, AgreementError, Limits, MAX_REVIEW_DAYS, QuietHours, template,
};
use troth_core::content::{AnswerKind, Content, ExportKind, PhoneAction};
use troth_core::event::Role;
use troth_core::ids::AgreementId;
use troth_core::replica::{CertificateStatus, ReplicaError};
use troth_core::state::{Ask, DAY_MS, VersionStatus};

mod common;
use common::Couple;

/// Proposes `a` as the leading partner and has both sign it.
fn agree(c: &mut Couple, a: Agreement) -> AgreementId {
    let id = a.id;
    let p = c.a.propose(a).expect("propose");
    c.post(Role::Leading, p);
    let s = c.a.cosign(id, 1).expect("a signs");
    c.post(Role::Leading, s);
    let s = c.b.cosign(id, 1).expect("b signs");
    c.post(Role::Rebuilding, s);
    assert!(c.b.state().agreements[&id].in_force().is_some());
    id
}

fn from_template(c: &mut Couple, name: &str, review_in: u32) -> Agreement {
    let t = template(name).expect("template");
    Agreement {
        id: AgreementId::random(&mut c.rng),
        version: 1,
        supersedes: None,
        title: t.title.into(),
        rules: t.rules,
        review_on: c.today().plus(review_in),
    }
}

#[test]
fn review_dates_are_capped_in_the_composer_and_the_fold() {
    let mut c = Couple::new(31);
    assert_eq!(MAX_REVIEW_DAYS, 90);
    let far = from_template(&mut c, "bed", MAX_REVIEW_DAYS + 1);
    let p = c.a.propose(far.clone()).expect("content");
    let refused = c.a.compose(&p, c.now + 1000, &mut c.rng);
    assert!(
        matches!(
            refused,
            Err(ReplicaError::Agreement(AgreementError::ReviewTooFar))
        ),
        "{refused:?}"
    );
    let msg = AgreementError::ReviewTooFar.to_string();
    assert!(msg.contains("90 days"), "{msg}");

    // A modified client's proposal is not applied, and is a problem on both sides.
    let ev = c.post_unchecked(Role::Leading, Content::Propose(far.clone()));
    for r in [&c.a, &c.b] {
        assert!(!r.state().agreements.contains_key(&far.id));
        assert!(
            r.state()
                .problems
                .iter()
                .any(|(seq, w)| *seq == ev.header().seq && w.contains("too far ahead")),
            "{:?}",
            r.state().problems
        );
    }

    // Exactly at the cap is fine.
    let ok = from_template(&mut c, "bed", MAX_REVIEW_DAYS);
    agree(&mut c, ok);
}

#[test]
fn an_agreement_lapses_after_its_review_day_unless_both_renew_it() {
    let mut c = Couple::new(32);
    let a = from_template(&mut c, "whereabouts", 30);
    let review = a.review_on;
    let id = agree(&mut c, a);
    let rec = &c.a.state().agreements[&id];
    assert_eq!(rec.versions[0].status_on(review), VersionStatus::InForce);
    assert!(rec.in_force_on(review).is_some());
    let after = review.plus(1);
    for r in [&c.a, &c.b] {
        let rec = &r.state().agreements[&id];
        assert_eq!(rec.versions[0].status_on(after), VersionStatus::Lapsed);
        assert!(rec.in_force_on(after).is_none());
        assert_eq!(r.state().lapsed(after).len(), 1);
        assert_eq!(r.state().lapsed(review).len(), 0);
        // Still offered for review together.
        assert_eq!(r.state().due_for_review(after).len(), 1);
    }
    // A certificate says so too.
    let cert = c.a.certificate(id, 1).expect("certificate");
    assert_eq!(
        c.b.certificate_status(&cert, review),
        CertificateStatus::InForce
    );
    assert_eq!(
        c.b.certificate_status(&cert, after),
        CertificateStatus::Lapsed
    );
    assert_eq!(CertificateStatus::Lapsed.as_str(), "lapsed");

    // Renewed by both (a new version with a later review day), it is in force again.
    c.now = u64::from(review.0) * DAY_MS + 1000;
    let v1 = c.a.state().agreements[&id].versions[0].agreement.clone();
    let v2 = v1.amended(v1.title.clone(), v1.rules.clone(), review.plus(60));
    let p = c.b.propose(v2).expect("renew");
    c.post(Role::Rebuilding, p);
    let s = c.b.cosign(id, 2).expect("b");
    c.post(Role::Rebuilding, s);
    assert!(
        c.a.state().agreements[&id].in_force_on(after).is_none(),
        "one renewal signature is not enough"
    );
    let s = c.a.cosign(id, 2).expect("a");
    c.post(Role::Leading, s);
    let rec = &c.a.state().agreements[&id];
    assert_eq!(rec.in_force_on(after).map(|v| v.agreement.version), Some(2));
    assert!(c.a.state().lapsed(after).is_empty());
}

#[test]
fn check_in_requests_over_the_signed_limit_are_refused_and_never_waiting() {
    let mut c = Couple::new(33);
    // Before any agreement, asking is limited only by what applies without
    // one (next test).
    assert!(c.a.request_allowed(Ask::CheckIn, c.now).is_ok());
    let a = from_template(&mut c, "whereabouts", 30);
    assert_eq!(a.rules[0].limits.checkins_per_day, Some(3));
    agree(&mut c, a);
    let ask = || Content::RequestCheckIn {
        note: "Could you check in?".into(),
    };
    for _ in 0..3 {
        c.post(Role::Leading, ask());
    }
    // The composer refuses the fourth in the same day, in calm words.
    let err =
        c.a.compose(&ask(), c.now + 1000, &mut c.rng)
            .expect_err("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("at most 3 check-in requests a day") && msg.contains("wasn't sent"),
        "{msg}"
    );
    // The rule asks nothing of the leading partner: the rebuilding partner's
    // requests are not limited by it.
    assert!(c.b.request_allowed(Ask::CheckIn, c.now).is_ok());

    // A modified client sends it anyway: outside what they agreed, never waiting.
    let ev = c.post_unchecked(Role::Leading, ask());
    for r in [&c.a, &c.b] {
        let q = r.state().requests.last().expect("request");
        assert_eq!(q.seq, ev.header().seq);
        assert_eq!(
            q.outside.as_deref(),
            Some("at most 3 check-in requests a day")
        );
        assert!(!q.is_open());
        let t = r.state().timeline.last().expect("entry");
        assert!(t.what.contains("outside what you agreed"), "{}", t.what);
    }
    assert_eq!(
        c.b.state().requests.iter().filter(|q| q.is_open()).count(),
        3
    );

    // A day later, asking is within the limit again.
    c.now += DAY_MS;
    assert!(c.a.request_allowed(Ask::CheckIn, c.now + 1000).is_ok());
    c.post(Role::Leading, ask());
    assert!(c.b.state().requests.last().expect("r").outside.is_none());
}

#[test]
fn asking_is_limited_while_no_agreement_covers_it() {
    use troth_core::state::{UNAGREED_CHECKINS_PER_DAY, UNAGREED_PHONE_PER_WEEK};
    let mut c = Couple::new(42);
    let ask = || Content::RequestCheckIn {
        note: "Could you check in?".into(),
    };
    let phone = || Content::Phone {
        action: PhoneAction::Asked,
        note: String::new(),
        answers: None,
    };
    // No agreement yet: a few requests, then the composer says why not.
    for _ in 0..UNAGREED_CHECKINS_PER_DAY {
        c.post(Role::Leading, ask());
    }
    let err =
        c.a.compose(&ask(), c.now + 1000, &mut c.rng)
            .expect_err("refused");
    assert!(matches!(err, ReplicaError::UnagreedLimit(_)), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("No agreement about this is in force")
            && msg.contains("at most 3 check-in requests a day")
            && msg.contains("wasn't sent"),
        "{msg}"
    );
    for _ in 0..UNAGREED_PHONE_PER_WEEK {
        c.post(Role::Leading, phone());
    }
    assert!(matches!(
        c.a.compose(&phone(), c.now + 1000, &mut c.rng),
        Err(ReplicaError::UnagreedLimit(_))
    ));
    // A modified client asks anyway: shown, never waiting.
    c.post_unchecked(Role::Leading, ask());
    for r in [&c.a, &c.b] {
        let q = r.state().requests.last().expect("request");
        assert!(!q.is_open());
        assert_eq!(
            q.outside.as_deref(),
            Some("at most 3 check-in requests a day while no agreement about it is in force")
        );
    }
    // An agreement both signed without limits on asking covers it: no cap.
    c.now += DAY_MS;
    let mut a = from_template(&mut c, "whereabouts", 30);
    a.rules[0].limits = Limits::default();
    let id = agree(&mut c, a);
    for _ in 0..5 {
        c.post(Role::Leading, ask());
    }
    assert!(
        c.b.state()
            .requests
            .iter()
            .rev()
            .take(5)
            .all(|q| q.is_open())
    );
    // Once the partner who was asked withdraws, asking is capped again.
    c.post(
        Role::Rebuilding,
        Content::Withdraw {
            agreement: id,
            comment: String::new(),
        },
    );
    assert!(matches!(
        c.a.request_allowed(Ask::CheckIn, c.now + 1000),
        Err(ReplicaError::UnagreedLimit(_))
    ));
    // The partner who was asked is not limited by the other's requests.
    assert!(c.b.request_allowed(Ask::CheckIn, c.now + 1000).is_ok());
}

#[test]
fn phone_requests_and_quiet_hours_are_limited_as_signed() {
    let mut c = Couple::new(34);
    let mut a = from_template(&mut c, "phone", 30);
    assert_eq!(a.rules[0].limits.phone_per_week, Some(1));
    // Quiet hours around the helper's clock (minute of the UTC day it is now).
    let minute = u16::try_from((c.now / 60_000) % 1440).expect("minute");
    a.rules[0].limits.quiet = Some(QuietHours {
        from_min: (minute + 60) % 1440,
        to_min: (minute + 120) % 1440,
        utc_offset_min: 0,
    });
    agree(&mut c, a);
    let ask = || Content::Phone {
        action: PhoneAction::Asked,
        note: String::new(),
        answers: None,
    };
    c.post(Role::Leading, ask());
    let err =
        c.a.compose(&ask(), c.now + 1000, &mut c.rng)
            .expect_err("refused");
    assert!(
        err.to_string()
            .contains("at most 1 request to see the phone a week"),
        "{err}"
    );
    // In the quiet hours, even the first request of a week is refused.
    let quiet = c.now + 8 * DAY_MS + 90 * 60_000;
    let err = c.a.request_allowed(Ask::Phone, quiet).expect_err("refused");
    assert!(
        err.to_string().contains("no requests") && err.to_string().contains("UTC+00:00"),
        "{err}"
    );
    assert!(c.a.request_allowed(Ask::Phone, c.now + 8 * DAY_MS).is_ok());
    // The fold marks a modified client's second request this week.
    c.post_unchecked(Role::Leading, ask());
    let p = c.b.state().phone.last().expect("phone");
    assert!(p.outside.is_some());
    // Showing the phone is never limited.
    c.post(
        Role::Rebuilding,
        Content::Phone {
            action: PhoneAction::Granted,
            note: String::new(),
            answers: None,
        },
    );
    assert!(
        c.a.state().problems.is_empty(),
        "{:?}",
        c.a.state().problems
    );
}

#[test]
fn limits_are_signed_with_the_words() {
    let mut c = Couple::new(35);
    let a = from_template(&mut c, "whereabouts", 30);
    let mut b = a.clone();
    b.rules[0].limits = Limits {
        checkins_per_day: Some(10),
        ..Limits::default()
    };
    assert_ne!(a.content_hash(), b.content_hash());
    // Quiet hours that are not a range within a day are refused.
    b.rules[0].limits.quiet = Some(QuietHours {
        from_min: 1440,
        to_min: 60,
        utc_offset_min: 0,
    });
    assert_eq!(b.validate(), Err(AgreementError::BadLimits));
    let words = troth_core::agreement::describe_rules(&a, Role::Leading);
    assert!(
        words.contains("Limit on asking: at most 3 check-in requests a day"),
        "{words}"
    );
}

#[test]
fn answers_that_are_not_compliance_are_normal_answers() {
    let mut c = Couple::new(36);
    let req = c.post(
        Role::Leading,
        Content::RequestCheckIn {
            note: "Where are you?".into(),
        },
    );
    let phone = c.post(
        Role::Leading,
        Content::Phone {
            action: PhoneAction::Asked,
            note: String::new(),
            answers: None,
        },
    );
    c.post(
        Role::Rebuilding,
        Content::Answer {
            to: req.hash(),
            answer: AnswerKind::Therapist,
            note: String::new(),
        },
    );
    c.post(
        Role::Rebuilding,
        Content::Answer {
            to: phone.hash(),
            answer: AnswerKind::TalkFirst,
            note: "tonight, after dinner".into(),
        },
    );
    for r in [&c.a, &c.b] {
        let st = r.state();
        assert_eq!(
            st.requests[0].answer.map(|a| a.0),
            Some(AnswerKind::Therapist)
        );
        assert!(!st.requests[0].is_open(), "answered, so not waiting");
        assert_eq!(st.phone[0].answer.map(|a| a.0), Some(AnswerKind::TalkFirst));
        assert!(st.problems.is_empty(), "{:?}", st.problems);
        let words: Vec<&str> = st.timeline.iter().map(|t| t.what.as_str()).collect();
        assert!(words.contains(&"answered: “Let's bring this to our therapist”"));
        assert!(
            words.contains(&"answered: “Not now — can we talk about it?”: tonight, after dinner")
        );
        // Neutral words: nothing reads as a refusal or a failure.
        assert!(
            words
                .iter()
                .all(|w| !w.contains("refus") && !w.contains("fail")),
            "{words:?}"
        );
    }
    // One's own request cannot be answered by oneself.
    c.post(
        Role::Leading,
        Content::Answer {
            to: req.hash(),
            answer: AnswerKind::NotComfortable,
            note: String::new(),
        },
    );
    assert_eq!(c.a.state().problems.len(), 1);
    assert_eq!(
        c.a.state().requests[0].answer.map(|a| a.0),
        Some(AnswerKind::Therapist)
    );
}

#[test]
fn certificate_and_report_exports_are_events_both_see() {
    let mut c = Couple::new(37);
    c.post(
        Role::Rebuilding,
        Content::Exported {
            what: ExportKind::Certificate,
            detail: "“Knowing where you are”, version 1".into(),
        },
    );
    for r in [&c.a, &c.b] {
        let st = r.state();
        assert_eq!(st.exports.len(), 1);
        assert_eq!(st.exports[0].0, Role::Rebuilding);
        assert_eq!(
            st.timeline.last().map(|t| t.what.as_str()),
            Some("exported a certificate of “Knowing where you are”, version 1")
        );
    }
}

#[test]
fn nothing_is_proposed_until_both_confirmed_who_sets_the_conditions() {
    let mut c = Couple::new_unconfirmed(38);
    let a = from_template(&mut c, "whereabouts", 30);
    let p = c.a.propose(a.clone()).expect("content");
    // The composer refuses, in words that say what to do.
    let err =
        c.a.compose(&p, c.now + 1000, &mut c.rng)
            .expect_err("refused");
    assert!(matches!(err, ReplicaError::RolesNotConfirmed), "{err}");
    assert!(
        err.to_string()
            .contains("confirmed who sets the conditions")
    );
    // A modified client's proposal is a problem, never applied.
    c.post_unchecked(Role::Leading, Content::Propose(a.clone()));
    assert!(c.b.state().agreements.is_empty());

    // B answers "No — we should talk about this first"; A's confirmation alone is not enough.
    let ca = c.a.confirm_roles().expect("a");
    c.post(Role::Leading, ca);
    c.post(
        Role::Rebuilding,
        Content::DeclineRoles {
            comment: "I'd like us to talk about this with our therapist".into(),
        },
    );
    for r in [&c.a, &c.b] {
        let roles = &r.state().roles;
        assert!(!roles.agreed());
        assert_eq!(roles.declined.as_ref().map(|d| d.0), Some(Role::Rebuilding));
        assert!(
            r.state()
                .timeline
                .last()
                .is_some_and(|t| t.what.contains("No — we should talk about this first"))
        );
    }
    assert!(c.a.compose(&p, c.now + 1000, &mut c.rng).is_err());

    // A confirmation naming someone outside the space is a problem, never applied.
    let stranger = troth_core::keys::IdentitySecret::generate(&mut c.rng).public();
    c.post_unchecked(
        Role::Rebuilding,
        Content::ConfirmRoles {
            sets_conditions: Some(stranger),
        },
    );
    assert!(!c.a.state().roles.agreed());
    assert_eq!(c.a.state().roles.sets, Role::Leading);
    assert!(
        c.a.state()
            .problems
            .last()
            .is_some_and(|p| p.1.contains("not in this space"))
    );

    // Once both confirmed, proposals are possible.
    let cb = c.b.confirm_roles().expect("b");
    c.post(Role::Rebuilding, cb);
    for r in [&c.a, &c.b] {
        assert!(r.state().roles.agreed());
        assert_eq!(r.state().roles.sets, Role::Leading);
        assert!(r.state().roles.declined.is_none());
    }
    let mut again = from_template(&mut c, "whereabouts", 30);
    again.id = AgreementId::random(&mut c.rng);
    agree(&mut c, again);
}

#[test]
fn ending_the_roles_takes_both_and_stops_new_proposals() {
    let mut c = Couple::new(39);
    let end = c.a.end_roles().expect("content");
    c.post(Role::Leading, end);
    // One partner's wish is shown; the roles stand until the other agrees.
    assert!(c.b.state().roles.agreed());
    assert!(
        c.b.state()
            .timeline
            .last()
            .is_some_and(|t| t.what.contains("asked to end the roles"))
    );
    let a = from_template(&mut c, "whereabouts", 30);
    let p = c.a.propose(a.clone()).expect("content");
    assert!(c.a.compose(&p, c.now + 1000, &mut c.rng).is_ok());
    let end = c.b.end_roles().expect("content");
    c.post(Role::Rebuilding, end);
    for r in [&c.a, &c.b] {
        assert!(!r.state().roles.agreed());
        assert!(r.state().roles.ended_at.is_some());
    }
    assert!(matches!(
        c.a.compose(&p, c.now + 1000, &mut c.rng),
        Err(ReplicaError::RolesNotConfirmed)
    ));
    c.post_unchecked(Role::Leading, Content::Propose(a.clone()));
    assert!(
        c.b.state().agreements.is_empty(),
        "not applied after the end"
    );
    // Both confirming again makes proposals possible again.
    for by in [Role::Leading, Role::Rebuilding] {
        let r = if by == Role::Leading { &c.a } else { &c.b };
        let cr = r.confirm_roles().expect("confirm");
        c.post(by, cr);
    }
    assert!(c.a.state().roles.agreed());
    let mut again = a;
    again.id = AgreementId::random(&mut c.rng);
    agree(&mut c, again);
}

#[test]
fn before_both_confirm_either_can_propose_the_roles_the_other_way_round() {
    let mut c = Couple::new_unconfirmed(40);
    // A made the space, so A is shown as setting the conditions, and confirms.
    let ca = c.a.confirm_roles().expect("a");
    c.post(Role::Leading, ca);
    // B, who joined, was the one hurt: "It should be the other way round".
    let flip = c.b.swap_roles().expect("b");
    c.post(Role::Rebuilding, flip);
    for r in [&c.a, &c.b] {
        let roles = &r.state().roles;
        assert_eq!(roles.sets, Role::Rebuilding);
        assert!(
            !roles.agreed(),
            "A confirmed the other arrangement, not this one"
        );
        assert_eq!(
            roles.confirmed.keys().copied().collect::<Vec<_>>(),
            [Role::Rebuilding]
        );
    }
    let a = from_template(&mut c, "whereabouts", 30);
    let p = c.b.propose(a.clone()).expect("content");
    assert!(matches!(
        c.b.compose(&p, c.now + 1000, &mut c.rng),
        Err(ReplicaError::RolesNotConfirmed)
    ));
    // A confirms what is now proposed: B sets the conditions.
    let ca = c.a.confirm_roles().expect("a");
    c.post(Role::Leading, ca);
    for r in [&c.a, &c.b] {
        assert!(r.state().roles.agreed());
        assert!(r.state().roles.sets_conditions(Role::Rebuilding));
        assert_eq!(
            r.state().roles.words(Role::Rebuilding),
            "the partner who sets the conditions"
        );
    }
    // Templates name the partner who sets the conditions as `Leading`: as the
    // roles stand, their rules ask A, who is rebuilding trust.
    let t = troth_core::agreement::template("whereabouts").expect("template");
    let sets = c.b.state().roles.sets;
    assert!(
        t.rules
            .iter()
            .all(|r| troth_core::agreement::as_roles(sets, r.asks_of) == Role::Leading)
    );
}

#[test]
fn swapping_the_roles_takes_both_and_every_rule_keeps_asking_the_same_person() {
    let mut c = Couple::new(41);
    let a = from_template(&mut c, "whereabouts", 30);
    let id = agree(&mut c, a);
    let asked = c.a.state().agreements[&id]
        .in_force()
        .expect("in force")
        .agreement
        .rules[0]
        .asks_of;
    assert_eq!(asked, Role::Rebuilding);

    // A asks to swap; nothing changes until B agrees too.
    let s = c.a.swap_roles().expect("a");
    c.post(Role::Leading, s);
    assert!(
        matches!(c.a.swap_roles(), Err(ReplicaError::NotNow(_))),
        "asked once"
    );
    for r in [&c.a, &c.b] {
        let roles = &r.state().roles;
        assert!(roles.agreed());
        assert_eq!(roles.sets, Role::Leading);
        assert_eq!(
            roles.swap_requests.keys().copied().collect::<Vec<_>>(),
            [Role::Leading]
        );
        assert!(
            r.state()
                .timeline
                .last()
                .is_some_and(|t| t.what.contains("asked to swap the roles"))
        );
    }
    // "No — we should talk about this first" sets the wish aside.
    c.post(
        Role::Rebuilding,
        Content::DeclineRoles {
            comment: "let's talk on Sunday".into(),
        },
    );
    for r in [&c.a, &c.b] {
        assert!(r.state().roles.swap_requests.is_empty());
        assert!(r.state().roles.agreed(), "the roles stand as they were");
        assert_eq!(r.state().roles.sets, Role::Leading);
    }
    // Asked again, and agreed by both: the roles swap.
    let s = c.a.swap_roles().expect("a again");
    c.post(Role::Leading, s);
    let s = c.b.swap_roles().expect("b agrees");
    c.post(Role::Rebuilding, s);
    for r in [&c.a, &c.b] {
        let roles = &r.state().roles;
        assert!(roles.agreed(), "still confirmed: both chose this");
        assert_eq!(roles.sets, Role::Rebuilding);
        assert!(roles.swapped_at.is_some());
        assert!(roles.swap_requests.is_empty());
        assert!(
            r.state()
                .timeline
                .last()
                .is_some_and(|t| t.what.contains("agreed to swap the roles"))
        );
        // The agreement in force stays in force and still asks B, the
        // person it asked when both signed; only the words for B changed.
        let v = r.state().agreements[&id]
            .in_force()
            .expect("still in force");
        assert_eq!(v.agreement.rules[0].asks_of, Role::Rebuilding);
        assert_eq!(
            roles.words(Role::Rebuilding),
            "the partner who sets the conditions"
        );
        assert_eq!(roles.words(Role::Leading), "the partner rebuilding trust");
    }
    // New proposals work; confirming the roles as they are again is harmless.
    let cr = c.b.confirm_roles().expect("b");
    c.post(Role::Rebuilding, cr);
    assert!(c.a.state().roles.agreed());
    assert_eq!(c.a.state().roles.sets, Role::Rebuilding);
    let mut again = from_template(&mut c, "phone", 30);
    again.id = AgreementId::random(&mut c.rng);
    agree(&mut c, again);

    // One partner alone cannot swap them: a modified client's two swap
    // requests from the same partner are one request.
    let back = c.b.swap_roles().expect("b");
    c.post_unchecked(Role::Rebuilding, back.clone());
    c.post_unchecked(Role::Rebuilding, back);
    assert_eq!(c.a.state().roles.sets, Role::Rebuilding);
    // Asking to end the roles withdraws one's own wish to swap them.
    let end = c.b.end_roles().expect("end");
    c.post(Role::Rebuilding, end);
    assert!(c.a.state().roles.swap_requests.is_empty());

    // Both replicas fold the same history to the same state, and a snapshot
    // keeps where the roles stand.
    assert_eq!(c.a.state_code(), c.b.state_code());
}

/// Issue 17, item 10: the log's public parts carry no roles. Who sets the
/// conditions is known to each client from the identities it authenticated
/// at pairing, so the same log verifies under either assignment and the
/// relay (which sees only the public parts) cannot tell who was hurt.
#[test]
fn the_public_log_does_not_say_who_sets_the_conditions() {
    use rand::SeedableRng;
    use troth_core::event::Body;
    use troth_core::log::{ChainVerifier, TrustAnchors};
    use troth_core::members::Members;

    let c = Couple::new_unconfirmed(41);
    let a_id = c.a.keys().identity.public();
    let b_id = c.b.keys().identity.public();
    // Each replica folds the roles its anchors gave.
    for r in [&c.a, &c.b] {
        assert_eq!(r.state().partners.get(&Role::Leading), Some(&a_id));
        assert_eq!(r.state().partners.get(&Role::Rebuilding), Some(&b_id));
        assert_eq!(r.role_of(&a_id), Some(Role::Leading));
        assert_eq!(r.role_of(&b_id), Some(Role::Rebuilding));
    }
    // The same events verify with the roles the other way round: nothing
    // in them decides it.
    for anchors in [
        TrustAnchors {
            leading: Some(a_id),
            rebuilding: Some(b_id),
        },
        TrustAnchors {
            leading: Some(b_id),
            rebuilding: Some(a_id),
        },
    ] {
        let mut v = ChainVerifier::new(c.a.space(), anchors.clone());
        let ext = v.extend(&c.log);
        assert_eq!(ext.accepted, c.log.len(), "{:?}", ext.error);
        assert_eq!(
            v.role_of(&a_id),
            if anchors.leading == Some(a_id) {
                Some(Role::Leading)
            } else {
                Some(Role::Rebuilding)
            }
        );
    }
    // What the relay keeps: identities and devices, no roles.
    let mut m = Members::new();
    for ev in &c.log {
        m.apply_event(ev).expect("member rules");
    }
    assert_eq!(m.identities(), &[a_id, b_id]);
    let back = Members::decode(&m.encode()).expect("round trip");
    assert_eq!(back.identities(), &[a_id, b_id]);
    // A control body is the certificate and keys only: re-encoding the
    // genesis body gives exactly the bytes after its kind, with no role byte.
    let Body::Control(g) = c.log[0].body() else {
        panic!("genesis is a control event")
    };
    let bytes = g.encode();
    let cert = g.admitted().expect("cert").to_bytes();
    assert_eq!(&bytes[1..1 + cert.len()], &cert[..]);

    // A third identity named by AddMember is refused once both are anchored.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let stranger = troth_core::keyfile::KeyBundle::generate(&mut rng, 1);
    let mut v = ChainVerifier::new(
        c.a.space(),
        TrustAnchors {
            leading: Some(a_id),
            rebuilding: Some(stranger.identity.public()),
        },
    );
    let ext = v.extend(&c.log);
    assert_eq!(ext.accepted, 1);
    assert!(matches!(
        ext.error,
        Some(troth_core::log::ChainError::UnexpectedIdentity { seq: 1 })
    ));
}
