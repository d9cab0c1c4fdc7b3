//! The malicious relay, one test per attack class, each driving the real
//! client sync path (`troth_client::Session` → `Replica::ingest`). Each test
//! asserts the attack is detected with the right error, or has no effect, and
//! that nothing the client had already verified is lost or overwritten.

use base64::Engine;
use rand::SeedableRng;
use rand::rngs::StdRng;
use troth_client::relay::RelayClient;
use troth_client::session::Session;
use troth_client::store::clone_keys;
use troth_core::content::Content;
use troth_core::event::{Body, Control, Envelope, Event, Header, Role};
use troth_core::keyfile::KeyBundle;
use troth_core::keys::{DeviceSecret, IdentitySecret};
use troth_core::log::ChainError;
use troth_core::members::MembershipError;
use troth_core::replica::Replica;
use troth_tests::evil::{Attack, EvilRelay, couple, now_ms};

struct World {
    relay: EvilRelay,
    a: Session,
    b: Session,
    rng: StdRng,
    now: u64,
}

impl World {
    /// Two partners in a space with `n` check-ins, all verified by both.
    fn new(seed: u64, n: usize) -> World {
        let relay = EvilRelay::start();
        let now = now_ms();
        let (a, b, rng) = couple(&relay, seed);
        let mut w = World {
            relay,
            a,
            b,
            rng,
            now,
        };
        for i in 0..n {
            w.b_posts(&format!("check-in {i}"));
        }
        w.a.sync_strict().expect("a syncs");
        w
    }

    fn b_posts(&mut self, text: &str) -> Event {
        self.now += 1;
        let c = Content::CheckIn {
            text: text.into(),
            place: None,
            answers: None,
        };
        self.b.post(&c, self.now, &mut self.rng).expect("post")
    }

    fn a_posts(&mut self, text: &str) -> Event {
        self.now += 1;
        let c = Content::RequestCheckIn { note: text.into() };
        self.a.post(&c, self.now, &mut self.rng).expect("post")
    }

    fn space(&self) -> String {
        self.a.replica().space().to_hex()
    }

    /// A new device of B's (same keys) that has verified nothing yet.
    fn fresh_b(&self) -> Session {
        let keys = clone_keys(self.b.replica().keys()).expect("keys");
        let anchors = self.b.replica().chain().anchors().clone();
        let r = Replica::open(keys, Role::Rebuilding, self.b.replica().space(), anchors);
        Session::new(r, RelayClient::new(&self.relay.url).expect("client"))
    }

    fn event(&self, seq: u64) -> Vec<u8> {
        self.relay.seen(&self.space(), seq).expect("seen")
    }
}

/// What a session had verified, to show nothing is lost.
fn verified(s: &Session) -> (usize, String, usize) {
    (
        s.replica().events().len(),
        s.replica().state_code(),
        s.replica().state().checkins.len(),
    )
}

fn alert(s: &mut Session) -> ChainError {
    let before = verified(s);
    let report = s.sync().expect("sync answers");
    let error = report
        .alert
        .map(|a| a.error)
        .expect("the attack must be detected");
    let after = verified(s);
    assert!(after.0 >= before.0, "verified events were lost");
    assert!(!s.replica().alerts().is_empty());
    error
}

#[test]
fn dropped_event_is_a_gap() {
    let w = World::new(1, 4);
    let mut fresh = w.fresh_b();
    w.relay.set(Attack::Drop(3));
    assert_eq!(
        alert(&mut fresh),
        ChainError::Gap {
            expected: 3,
            got: 4
        }
    );
    assert_eq!(fresh.replica().events().len(), 3);
    // The honest relay again: the client completes and nothing was lost.
    w.relay.set(Attack::None);
    fresh.sync_strict().expect("sync");
    assert_eq!(verified(&fresh), verified(&w.b));
}

#[test]
fn withheld_tail_has_no_effect_but_state_codes_differ() {
    let mut w = World::new(2, 2);
    w.relay.set(Attack::WithholdAfter(3));
    w.b_posts("this one is withheld from A");
    let before = verified(&w.a);
    let r = w.a.sync().expect("sync");
    assert!(r.alert.is_none());
    assert_eq!(verified(&w.a), before);
    // Comparing state codes shows the partners see different histories.
    assert_ne!(w.a.replica().state_code(), w.b.replica().state_code());
    // And a device that verified more than the relay now shows: rollback.
    assert!(matches!(alert(&mut w.b), ChainError::Rollback { .. }));
}

#[test]
fn reordered_events_are_refused() {
    let w = World::new(3, 4);
    let mut fresh = w.fresh_b();
    w.relay.set(Attack::SwapFirstTwo);
    assert_eq!(
        alert(&mut fresh),
        ChainError::Gap {
            expected: 0,
            got: 1
        }
    );
    let ev = |s| w.event(s);
    w.relay.set(Attack::None);
    // The honest relay again: the same device completes.
    fresh.sync_strict().expect("sync");
    assert_eq!(verified(&fresh), verified(&w.b));
    // Inside one batch, a sequence number going backwards: 2, 3, then 2 again.
    let mut r = w.fresh_b();
    r.replica_mut().ingest(&[
        Event::decode(&ev(0)).expect("0"),
        Event::decode(&ev(1)).expect("1"),
    ]);
    let res = r.replica_mut().ingest(&[
        Event::decode(&ev(2)).expect("2"),
        Event::decode(&ev(3)).expect("3"),
        Event::decode(&ev(2)).expect("2"),
    ]);
    assert_eq!(res.error, Some(ChainError::Reorder { seq: 2 }));
    assert_eq!(res.accepted, 2);
}

#[test]
fn replayed_event_has_no_effect() {
    let mut w = World::new(4, 3);
    let old = w.event(2);
    w.relay.set(Attack::Append(vec![old.clone(), old]));
    let before = verified(&w.a);
    let r = w.a.sync().expect("sync");
    assert!(r.alert.is_none(), "a replay is harmless: {:?}", r.alert);
    assert_eq!(verified(&w.a), before);
    // New events still flow, and the replay adds nothing.
    w.relay.set(Attack::None);
    w.b_posts("after the replay");
    w.a.sync_strict().expect("sync");
    assert_eq!(w.a.replica().state().checkins.len(), 4);
}

#[test]
fn injected_events_are_refused() {
    let mut w = World::new(5, 2);
    let space = w.a.replica().space();
    let head = w.a.replica().chain().head().expect("head");
    let header = |author: &DeviceSecret, epoch| Header {
        space,
        seq: head.0 + 1,
        prev: head.1,
        author: author.public().id(),
        epoch,
        timestamp_ms: 1,
    };
    let mut rng = StdRng::seed_from_u64(55);
    let relay_device = DeviceSecret::generate(&mut rng);
    let relay_identity = IdentitySecret::generate(&mut rng);

    // 1. Signed by a device that is not a member.
    let stranger = Event::sign(
        header(&relay_device, 0),
        Body::Sealed(vec![7; 296]),
        &relay_device,
    );
    w.relay
        .set(Attack::Append(vec![stranger.as_bytes().to_vec()]));
    assert!(matches!(
        alert(&mut w.a),
        ChainError::Membership {
            error: MembershipError::UnknownAuthor,
            ..
        }
    ));

    // 2. Claims to be B's device, with a signature that is not B's.
    let mut forged = header(&relay_device, 0);
    forged.author = w.b.replica().keys().device.public().id();
    let unsigned = Event::sign(forged, Body::Sealed(vec![7; 296]), &relay_device);
    w.relay
        .set(Attack::Append(vec![unsigned.as_bytes().to_vec()]));
    assert!(matches!(
        alert(&mut w.a),
        ChainError::BadSignature { .. } | ChainError::Membership { .. }
    ));

    // 3. An epoch key sealed with age to B's public recipient (age does not
    //    authenticate the sender), inside a control event the relay signs.
    let cert = relay_identity.certify(&relay_device, 1);
    let env = Envelope {
        epoch: 0,
        device: w.b.replica().keys().device.public().id(),
        age: vec![1; 200],
    };
    let add = Event::sign(
        header(&relay_device, 0),
        Body::Control(Control::AddDevice {
            cert,
            envelopes: vec![env],
        }),
        &relay_device,
    );
    w.relay.set(Attack::None);
    let mut fresh = w.fresh_b();
    fresh.sync_strict().expect("sync");
    let n = fresh.replica().events().len();
    w.relay.set(Attack::Append(vec![add.as_bytes().to_vec()]));
    assert!(matches!(alert(&mut fresh), ChainError::Membership { .. }));
    assert_eq!(fresh.replica().events().len(), n);
    assert_eq!(fresh.replica().chain().members().epoch(), 0);
}

#[test]
fn rollback_to_an_old_snapshot_is_detected() {
    let mut w = World::new(6, 4);
    let before = verified(&w.a);
    w.relay.set(Attack::Rollback(3));
    assert_eq!(
        alert(&mut w.a),
        ChainError::Rollback {
            verified: 6,
            offered: 3
        }
    );
    assert_eq!(verified(&w.a), before, "nothing verified was lost");
    // Posting on a rolled-back relay cannot overwrite history either.
    w.relay.set(Attack::None);
    w.a_posts("still here");
    assert_eq!(w.a.replica().events().len(), 7);
}

#[test]
fn equivocation_is_detected() {
    let mut w = World::new(7, 2);
    let split = w.a.replica().chain().len();
    let victim = w.b.replica().keys().device.public().id().to_b64();
    w.relay.set(Attack::Equivocate {
        victim,
        from: split,
    });
    // Each partner writes event `split`; the relay keeps B's apart.
    let a_ev = w.a_posts("A's version of history");
    let b_ev = w.b_posts("B's version of history");
    assert_eq!(a_ev.header().seq, b_ev.header().seq);
    w.a.sync_strict().expect("a");
    w.b.sync_strict().expect("b");
    // The state codes differ: comparing them in person exposes the split.
    assert_ne!(w.a.replica().state_code(), w.b.replica().state_code());
    // B writes on in its branch.
    w.b_posts("more of B's branch");
    let branch = w.relay.branch();
    assert_eq!(branch.len(), 2);
    // A different event for a sequence number A verified: a fork.
    w.relay.set(Attack::Append(vec![branch[0].clone()]));
    assert_eq!(alert(&mut w.a), ChainError::Fork { seq: split });
    // The next event of B's branch does not build on what A verified: a fork.
    w.relay.set(Attack::Append(vec![branch[1].clone()]));
    assert_eq!(alert(&mut w.a), ChainError::Fork { seq: split + 1 });
    assert_eq!(w.a.replica().events().len() as u64, split + 1);
    assert_eq!(w.a.replica().events()[split as usize].hash(), a_ev.hash());
}

#[test]
fn substituted_partner_key_is_refused() {
    let w = World::new(8, 1);
    // The relay serves a genesis by its own identity in place of A's.
    let mut rng = StdRng::seed_from_u64(88);
    let mallory = KeyBundle::generate(&mut rng, 0);
    let (_, fake) = Replica::create(mallory, Role::Leading, w.a.replica().space(), 0, &mut rng)
        .expect("create");
    w.relay.set(Attack::Substitute(0, fake.as_bytes().to_vec()));
    let mut fresh = w.fresh_b();
    assert_eq!(alert(&mut fresh), ChainError::UnexpectedIdentity { seq: 0 });
    assert!(fresh.replica().events().is_empty());
    // A device certificate substituted inside AddMember: its signature breaks.
    let mut add = w.event(1);
    let n = add.len();
    add[n - 200] ^= 0x01;
    w.relay.set(Attack::Substitute(1, add));
    let mut fresh = w.fresh_b();
    let r = fresh.sync();
    match r {
        Ok(rep) => assert!(rep.alert.is_some()),
        Err(e) => assert!(e.to_string().contains("can't read"), "{e}"),
    }
    assert!(fresh.replica().events().len() <= 1);
}

#[test]
fn downgraded_version_is_refused_and_nothing_lost() {
    let mut w = World::new(9, 2);
    w.b_posts("new");
    let before = verified(&w.a);
    w.relay.set(Attack::Downgrade);
    let err = w.a.sync().expect_err("an old or unknown format is refused");
    assert!(err.to_string().contains("can't read"), "{err}");
    assert_eq!(verified(&w.a), before);
}

#[test]
fn events_from_another_space_are_refused() {
    let w = World::new(10, 2);
    let other = World::new(11, 2);
    let foreign = other.event(2);
    w.relay.set(Attack::Substitute(2, foreign));
    let mut fresh = w.fresh_b();
    assert_eq!(alert(&mut fresh), ChainError::WrongSpace { seq: 2 });
}

#[test]
fn malformed_and_oversized_responses_fail_cleanly() {
    let mut w = World::new(12, 1);
    let before = verified(&w.a);
    for body in [
        b"not json".to_vec(),
        b"{\"events\": 5}".to_vec(),
        b"{\"events\": [\"!!!\"], \"head\": {\"seq\": 0, \"hash\": \"zz\"}, \"more\": false}"
            .to_vec(),
        br#"{"events": [], "head": {"seq": 18446744073709551615, "hash": "00"}, "more": true}"#
            .to_vec(),
        vec![b'['; 100_000],
        format!(
            "{{\"events\": [\"{}\"], \"head\": null, \"more\": false}}",
            base64::engine::general_purpose::STANDARD.encode(vec![1u8; 200_000])
        )
        .into_bytes(),
        vec![b' '; 40 << 20],
    ] {
        w.relay.set(Attack::Garbage(body));
        match w.a.sync() {
            Err(e) => assert!(!e.to_string().is_empty()),
            Ok(r) => assert!(r.alert.is_some(), "garbage accepted silently"),
        }
        assert_eq!(verified(&w.a), before, "garbage changed what was verified");
    }
}

#[test]
fn low_order_and_weak_keys_are_refused() {
    let mut w = World::new(13, 1);
    let before = verified(&w.a);
    let space = w.a.replica().space();
    let head = w.a.replica().chain().head().expect("head");
    let mut rng = StdRng::seed_from_u64(131);
    let relay_device = DeviceSecret::generate(&mut rng);
    let relay_identity = IdentitySecret::generate(&mut rng);
    let cert = relay_identity.certify(&relay_device, 1);
    let add = Event::sign(
        Header {
            space,
            seq: head.0 + 1,
            prev: head.1,
            author: w.a.replica().keys().device.public().id(),
            epoch: 0,
            timestamp_ms: 1,
        },
        Body::Control(Control::AddDevice {
            cert,
            envelopes: vec![],
        }),
        &relay_device,
    );
    // A device certificate whose X25519 key is a low-order point (zero).
    let x = relay_device.public().x25519_bytes();
    let mut bytes = add.as_bytes().to_vec();
    let at = bytes
        .windows(32)
        .position(|win| win == x)
        .expect("the X25519 key is in the event");
    bytes[at..at + 32].fill(0);
    w.relay.set(Attack::Append(vec![bytes]));
    let err = w.a.sync().expect_err("a low-order key is refused");
    assert!(err.to_string().contains("can't read"), "{err}");
    assert_eq!(verified(&w.a), before);

    // An event whose author is a small-order ("weak") Ed25519 point.
    let mut weak = [0u8; 32];
    weak[0] = 1; // the identity point
    let mut h = add.header().clone();
    h.author = troth_core::keys::DeviceId(weak);
    let forged = Event::sign(h, Body::Sealed(vec![0; 296]), &relay_device);
    w.relay
        .set(Attack::Append(vec![forged.as_bytes().to_vec()]));
    assert!(matches!(
        alert(&mut w.a),
        ChainError::Membership {
            error: MembershipError::UnknownAuthor,
            ..
        }
    ));
    assert_eq!(verified(&w.a), before);
}
