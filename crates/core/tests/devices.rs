//! The device limits (issue 18): at most `MAX_ACTIVE_DEVICES` active devices
//! per person, and nobody can leave a person without a device — neither
//! their partner (who can't revoke their devices at all) nor they themselves.
//! Each limit is checked twice: the composer refuses before signing, and the
//! membership rules (run by the relay and every client) refuse the event a
//! modified client signs anyway.

mod common;

use common::Couple;
use troth_core::crypto::{self, EpochKey};
use troth_core::event::{Body, Control, Event, Header};
use troth_core::keyfile::KeyBundle;
use troth_core::log::ChainError;
use troth_core::members::{MAX_ACTIVE_DEVICES, MembershipError};
use troth_core::replica::{Replica, ReplicaError};

#[test]
fn the_cap_is_five_active_devices() {
    assert_eq!(MAX_ACTIVE_DEVICES, 5);
}

/// `ev`'s body, signed again by `by` at the head of `log`: what a modified
/// client would append.
fn resign(log: &[Event], ev: &Event, by: &KeyBundle, epoch: u32) -> Event {
    let last = log.last().expect("log");
    let header = Header {
        space: last.header().space,
        seq: last.header().seq + 1,
        prev: last.hash(),
        author: by.cert.device().id(),
        epoch,
        timestamp_ms: last.header().timestamp_ms + 1,
    };
    Event::sign(header, ev.body().clone(), &by.device)
}

fn add_device(c: &mut Couple) -> KeyBundle {
    let new = c.b.keys().rotate_device(&mut c.rng, c.now);
    let ev = c.b.compose_add_device(&new.cert, c.now).expect("add");
    c.log.push(ev);
    c.sync_a();
    c.sync_b();
    new
}

fn assert_refused(rep: &mut Replica, ev: Event, words: &str) {
    let before = rep.events().len();
    let r = rep.ingest(&[ev]);
    match r.error {
        Some(ChainError::Membership {
            error: MembershipError::NotAllowed(why),
            ..
        }) => assert!(why.contains(words), "{why}"),
        other => panic!("expected a membership refusal ({words}), got {other:?}"),
    }
    assert_eq!(rep.events().len(), before, "nothing was accepted");
}

#[test]
fn a_sixth_active_device_is_refused_by_the_composer_and_the_rules() {
    let mut c = Couple::new_unconfirmed(18);
    let b_id = c.b.keys().identity.public();
    let mut added = Vec::new();
    while c.b.chain().members().active_count(&b_id) < MAX_ACTIVE_DEVICES - 1 {
        added.push(add_device(&mut c));
    }
    // At four, a fifth and a sixth are composed on the same head; the fifth
    // is posted.
    let fifth = c.b.keys().rotate_device(&mut c.rng, c.now);
    let sixth = c.b.keys().rotate_device(&mut c.rng, c.now);
    let ev5 = c.b.compose_add_device(&fifth.cert, c.now).expect("fifth");
    let ev6 = c.b.compose_add_device(&sixth.cert, c.now).expect("sixth");
    c.log.push(ev5);
    c.sync_a();
    c.sync_b();
    assert_eq!(
        c.b.chain().members().active_count(&b_id),
        MAX_ACTIVE_DEVICES
    );

    // The composer refuses a sixth, with words that say what to do.
    let sixth_again = c.b.keys().rotate_device(&mut c.rng, c.now);
    let err =
        c.b.compose_add_device(&sixth_again.cert, c.now)
            .expect_err("refused");
    assert!(matches!(err, ReplicaError::NotNow(w) if w.contains("revoke one")));

    // A modified client appends it anyway: both partners' rules refuse it.
    let forged = resign(&c.log, &ev6, c.b.keys(), 0);
    assert_refused(&mut c.a, forged.clone(), "at most 5 active devices");
    assert_refused(&mut c.b, forged.clone(), "at most 5 active devices");
    let mut members = c.a.chain().members().clone();
    assert!(members.apply_event(&forged).is_err());

    // Revoked devices don't count: after one is revoked, one more fits.
    let gone = added[0].cert.device().id();
    let rev = c.b.compose_revoke(gone, c.now, &mut c.rng).expect("revoke");
    c.log.push(rev);
    c.sync_a();
    c.sync_b();
    let again = c.b.keys().rotate_device(&mut c.rng, c.now);
    let ev =
        c.b.compose_add_device(&again.cert, c.now)
            .expect("room again");
    c.log.push(ev);
    c.sync_a();
    c.sync_b();
    assert_eq!(
        c.a.chain().members().active_count(&b_id),
        MAX_ACTIVE_DEVICES
    );
}

#[test]
fn a_partners_device_and_a_persons_last_device_cannot_be_revoked() {
    let mut c = Couple::new_unconfirmed(19);
    let b_dev = c.b.keys().cert.device().id();
    let a_dev = c.a.keys().cert.device().id();

    // The composer refuses both, before anything is signed.
    let err =
        c.a.compose_revoke(b_dev, c.now, &mut c.rng)
            .expect_err("refused");
    assert!(matches!(err, ReplicaError::NotNow(w) if w.contains("partner's devices")));
    let err =
        c.b.compose_revoke(b_dev, c.now, &mut c.rng)
            .expect_err("refused");
    assert!(matches!(err, ReplicaError::NotNow(w) if w.contains("only active device")));

    // A modified client signs them anyway: the rules refuse them.
    let forge = |c: &mut Couple, author: &KeyBundle, target| {
        let epoch = 1;
        let key = EpochKey::generate(&mut c.rng);
        let space = c.a.space();
        let envelopes = c
            .a
            .chain()
            .members()
            .devices()
            .filter(|(id, d)| d.is_active() && **id != target)
            .map(|(_, d)| crypto::seal_envelope(&key, space, epoch, d.cert.device()).expect("seal"))
            .collect();
        let body = Body::Control(Control::RevokeDevice {
            device: target,
            commitment: key.commitment(space, epoch),
            envelopes,
        });
        let last = c.log.last().expect("log");
        let header = Header {
            space,
            seq: last.header().seq + 1,
            prev: last.hash(),
            author: author.cert.device().id(),
            epoch,
            timestamp_ms: c.now,
        };
        Event::sign(header, body, &author.device)
    };
    let a_keys =
        KeyBundle::decrypt(c.a.keys().encrypt("pw", 4).expect("e").as_bytes(), "pw", 4).expect("d");
    let b_keys =
        KeyBundle::decrypt(c.b.keys().encrypt("pw", 4).expect("e").as_bytes(), "pw", 4).expect("d");
    let partners = forge(&mut c, &a_keys, b_dev);
    assert_refused(&mut c.b, partners, "only their own devices");
    // B's only device revoking itself would leave B without a device, even
    // though A's device remains in the space.
    let own_last = forge(&mut c, &b_keys, b_dev);
    assert_refused(&mut c.a, own_last.clone(), "last device");
    assert_refused(&mut c.b, own_last, "last device");
    // And A's likewise.
    let a_last = forge(&mut c, &a_keys, a_dev);
    assert_refused(&mut c.b, a_last, "last device");

    // With a second device, B may revoke the first.
    let second = add_device(&mut c);
    let rev =
        c.b.compose_revoke(b_dev, c.now, &mut c.rng)
            .expect("revoke");
    c.log.push(rev);
    c.sync_a();
    assert!(!c.a.chain().members().device(&b_dev).expect("b").is_active());
    assert!(
        c.a.chain()
            .members()
            .device(&second.cert.device().id())
            .expect("b2")
            .is_active()
    );
}

/// Device names (issue 18): only a device's owner names it, the latest name
/// wins, a name has words and no hidden characters; a new device changes
/// neither the safety number nor anything else the partners compare.
#[test]
fn only_the_owner_names_a_device_and_the_latest_name_wins() {
    use troth_core::content::{Content, MAX_DEVICE_NAME};
    use troth_core::event::Role;
    let mut c = Couple::new(71);
    let before = c.a.safety_number().expect("paired").to_string();
    let b_old = c.b.keys().cert.device().id();
    let b_new = add_device(&mut c);
    let b_new = b_new.cert.device().id();
    assert_eq!(
        c.a.safety_number().expect("paired").to_string(),
        before,
        "a new device of the same identity keeps the safety number"
    );
    assert_eq!(c.a.safety_number(), c.b.safety_number());

    let name = |device, name: &str| Content::DeviceName {
        device,
        name: name.to_owned(),
    };
    c.post(Role::Rebuilding, name(b_old, "Sam's phone"));
    c.post(Role::Rebuilding, name(b_new, "Sam's laptop"));
    c.post(Role::Rebuilding, name(b_old, "Sam's old phone"));
    for rep in [&c.a, &c.b] {
        let names = &rep.state().device_names;
        assert_eq!(names[&b_old].0, "Sam's old phone", "the latest name wins");
        assert_eq!(names[&b_new].0, "Sam's laptop");
    }
    assert!(
        c.a.state()
            .timeline
            .iter()
            .any(|t| t.what == "named a device “Sam's laptop”")
    );

    // The partner cannot name B's device: the composer refuses, and the
    // fold sets a modified client's name aside as a problem.
    let err =
        c.a.compose(&name(b_new, "Not yours"), c.now, &mut c.rng)
            .expect_err("not A's device");
    assert!(err.to_string().contains("only your own devices"), "{err}");
    let problems = c.a.state().problems.len();
    c.post_unchecked(Role::Leading, name(b_new, "Not yours"));
    for rep in [&c.a, &c.b] {
        assert_eq!(rep.state().device_names[&b_new].0, "Sam's laptop");
        assert_eq!(rep.state().problems.len(), problems + 1);
    }

    // A name needs words, fits, and hides nothing.
    for bad in [
        "   ".to_owned(),
        "x".repeat(MAX_DEVICE_NAME + 1),
        "phone\u{202E}enohp".to_owned(),
    ] {
        assert!(
            c.b.compose(&name(b_old, &bad), c.now, &mut c.rng).is_err(),
            "{bad:?}"
        );
    }
    // It survives encoding.
    let n = name(b_old, "Sam's phone");
    assert_eq!(Content::decode(&n.encode()).expect("decode"), n);
}
