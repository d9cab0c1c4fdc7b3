//! Attacks on linking a device (issue 18), by the relay that carries the
//! rendezvous mailbox and serves the log: it cannot get a device of its own
//! admitted, neither by injecting an `AddDevice` (whose certificate the
//! device did not sign, or that certifies a device of the other identity),
//! nor by sitting in the middle of the code exchange without the code.

use rand::SeedableRng;
use rand::rngs::StdRng;
use troth_client::link::LinkInvitation;
use troth_client::relay::RelayClient;
use troth_client::session::Session;
use troth_core::SpaceId;
use troth_core::event::{Body, Control, Event, Header, Role};
use troth_core::keyfile::KeyBundle;
use troth_core::keys::DeviceSecret;
use troth_core::link::{LinkError, LinkStep, Linking, Offer};
use troth_core::log::ChainError;
use troth_core::members::MembershipError;
use troth_core::pairing::{Message, PairingCode};
use troth_core::replica::Replica;
use troth_tests::evil::{Attack, EvilRelay, couple, now_ms};

fn next_header(s: &Session, author: &DeviceSecret) -> Header {
    let (seq, prev) = s.replica().chain().head().expect("head");
    Header {
        space: s.replica().space(),
        seq: seq + 1,
        prev,
        author: author.public().id(),
        epoch: s.replica().chain().members().epoch(),
        timestamp_ms: now_ms(),
    }
}

fn refused(s: &mut Session) -> ChainError {
    let before = (s.replica().events().len(), s.replica().state_code());
    let report = s.sync().expect("sync answers");
    let e = report
        .alert
        .map(|a| a.error)
        .expect("the injection is detected");
    assert_eq!(
        (s.replica().events().len(), s.replica().state_code()),
        before,
        "nothing was admitted, nothing verified was lost"
    );
    e
}

#[test]
fn an_injected_add_device_is_refused() {
    let relay = EvilRelay::start();
    let (mut a, mut b, mut rng) = couple(&relay, 1801);
    let relay_device = DeviceSecret::generate(&mut rng);

    // 1. A certificate the device did not sign: B's identity never
    //    certified the relay's device, and the relay cannot sign as B's
    //    device either. Made with the relay's own keys.
    let relay_identity = troth_core::keys::IdentitySecret::generate(&mut rng);
    let cert = relay_identity.certify(&relay_device, 1);
    let add = Event::sign(
        next_header(&a, &relay_device),
        Body::Control(Control::AddDevice {
            cert,
            envelopes: vec![],
        }),
        &relay_device,
    );
    relay.set(Attack::Append(vec![add.as_bytes().to_vec()]));
    assert!(matches!(
        refused(&mut a),
        ChainError::Membership {
            error: MembershipError::UnknownAuthor,
            ..
        }
    ));

    // 2. A genuine AddDevice of B's whose certificate's possession
    //    signature is swapped for another key's: the event no longer
    //    decodes (and B's signature over it no longer holds).
    relay.set(Attack::None);
    let spare = DeviceSecret::generate(&mut rng);
    let good_cert = b.replica().keys().identity.certify(&spare, now_ms());
    let genuine = b
        .post_with(|r| Ok(r.compose_add_device(&good_cert, now_ms())?))
        .expect("B adds a device");
    a.sync_strict().expect("a verifies it");
    let seq = genuine.header().seq;
    let mut bytes = genuine.as_bytes().to_vec();
    let cert_bytes = good_cert.to_bytes();
    let at = bytes
        .windows(cert_bytes.len())
        .position(|w| w == cert_bytes.as_slice())
        .expect("certificate inside");
    // The possession signature sits after the 105-byte body.
    bytes[at + 105] ^= 1;
    let mut fresh = {
        let keys = troth_client::store::clone_keys(a.replica().keys()).expect("keys");
        let anchors = a.replica().chain().anchors().clone();
        let r = Replica::open(keys, Role::Leading, a.replica().space(), anchors);
        Session::new(r, RelayClient::new(&relay.url).expect("client"))
    };
    relay.set(Attack::Substitute(seq, bytes));
    let r = fresh.sync();
    let refused_it = match r {
        Ok(rep) => rep.alert.is_some(),
        Err(_) => true,
    };
    assert!(refused_it, "a damaged certificate is never admitted");
    assert!(fresh.replica().events().len() as u64 <= seq);
    assert!(
        fresh
            .replica()
            .chain()
            .members()
            .device(&spare.public().id())
            .is_none()
    );

    // 3. An AddDevice for a device of the other identity, signed by a
    //    member device (a modified client of A's): the honest relay refuses
    //    to store it, and clients refuse it when a relay serves it.
    relay.set(Attack::None);
    let stranger = DeviceSecret::generate(&mut rng);
    let b_cert = b.replica().keys().identity.certify(&stranger, now_ms());
    let forged = Event::sign(
        next_header(&a, &a.replica().keys().device),
        Body::Control(Control::AddDevice {
            cert: b_cert.clone(),
            envelopes: match b
                .replica()
                .compose_add_device(&b_cert, now_ms())
                .expect("envelopes")
                .body()
            {
                Body::Control(c) => c.envelopes().to_vec(),
                Body::Sealed(_) => Vec::new(),
            },
        }),
        &a.replica().keys().device,
    );
    let client = RelayClient::new(&relay.url).expect("client");
    assert!(
        client.append(&a.replica().keys().device, &forged).is_err(),
        "the relay's membership rules refuse it"
    );
    relay.set(Attack::Append(vec![forged.as_bytes().to_vec()]));
    assert!(matches!(
        refused(&mut b),
        ChainError::Membership {
            error: MembershipError::NotAllowed(_),
            ..
        }
    ));
}

/// Everything a hostile relay can do with the mailbox: it reads and
/// replaces every message. Without the code it runs its own SPAKE2 with a
/// guess on each side.
#[test]
fn a_relay_in_the_middle_without_the_code_links_nothing() {
    let mut rng = StdRng::seed_from_u64(1802);
    let identity = troth_core::keys::IdentitySecret::generate(&mut rng);
    let offer = Offer {
        space: SpaceId::random(&mut rng),
        role: Role::Leading,
        identity: identity.public(),
        partner: None,
    };
    let code = PairingCode::generate(11, &mut rng).expect("code");
    let shown = PairingCode::parse(&code.reveal()).expect("same code");
    let guess = PairingCode::generate(11, &mut rng).expect("a guess");
    let guess2 = PairingCode::parse(&guess.reveal()).expect("same guess");
    let new_device = DeviceSecret::generate(&mut rng);
    let relay_device = DeviceSecret::generate(&mut rng);

    // Adder ↔ relay (posing as the new device).
    let (adder, a1) = Linking::add(&code, &identity, offer, 5, &mut rng).expect("add");
    let (mitm_new, m2) = Linking::join(&guess, &relay_device, 5, &mut rng);
    // Relay (posing as the adder) ↔ new device.
    // The relay offers an identity of its own, with its own secret.
    let relay_identity = troth_core::keys::IdentitySecret::from_seed(&[3; 32]);
    let (mitm_adder, m1) = Linking::add(
        &guess2,
        &relay_identity,
        Offer {
            identity: relay_identity.public(),
            ..offer
        },
        5,
        &mut rng,
    )
    .expect("add");
    let (new, n2) = Linking::join(&shown, &new_device, 5, &mut rng);

    let step = |l: Linking, m: &Message| l.receive(m.as_bytes());
    // SPAKE2 messages cross; each side answers with its confirmation tag.
    let (LinkStep::Continue(adder), Some(a3)) = step(adder, &m2).expect("pake") else {
        panic!("adder continues")
    };
    let (LinkStep::Continue(mitm_new), Some(m4)) = step(mitm_new, &a1).expect("pake") else {
        panic!("relay continues")
    };
    let (LinkStep::Continue(new), Some(n4)) = step(new, &m1).expect("pake") else {
        panic!("new device continues")
    };
    let (LinkStep::Continue(mitm_adder), Some(m3)) = step(mitm_adder, &n2).expect("pake") else {
        panic!("relay continues")
    };
    // Key confirmation fails on every honest side: nothing sealed is sent.
    assert_eq!(step(adder, &m4).err(), Some(LinkError::WrongCode));
    assert_eq!(step(new, &m3).err(), Some(LinkError::WrongCode));
    assert_eq!(step(mitm_new, &a3).err(), Some(LinkError::WrongCode));
    assert_eq!(step(mitm_adder, &n4).err(), Some(LinkError::WrongCode));
}

/// The relay in the middle through the real client driver: the relay (which
/// knows the mailbox number) claims the adder's mailbox first with a
/// guessed code. The adder's `troth device link` fails, nothing is
/// appended, and the real code no longer works.
#[test]
fn a_relay_claiming_the_mailbox_with_a_guess_burns_the_code() {
    let relay = EvilRelay::start();
    let (mut a, _b, mut rng) = couple(&relay, 1803);
    let events_before = a.replica().events().len();
    let inv = LinkInvitation::open(&a, now_ms(), &mut rng).expect("open");
    let code = inv.code().to_string();
    let number: u32 = code
        .split('-')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("number");
    let guess = format!("{number}-acorn-amber");
    assert_ne!(guess, code);
    let waiter = std::thread::spawn(move || {
        let r = inv.wait(&mut a, true, std::time::Duration::from_secs(30), now_ms());
        (r, a)
    });
    let client = RelayClient::new(&relay.url).expect("client");
    let keys = KeyBundle::generate(&mut rng, now_ms());
    let r = troth_client::link::join(
        &client,
        &keys,
        &guess,
        std::time::Duration::from_secs(30),
        now_ms(),
        &mut rng,
    );
    assert!(r.is_err(), "a guess links nothing");
    let (r, mut a) = waiter.join().expect("thread");
    assert!(
        matches!(r, Err(troth_client::Error::Link(LinkError::WrongCode))),
        "{r:?}"
    );
    a.sync_strict().expect("sync");
    assert_eq!(a.replica().events().len(), events_before, "nothing added");
    // The real code is burnt.
    let r = troth_client::link::join(
        &client,
        &KeyBundle::generate(&mut rng, now_ms()),
        &code,
        std::time::Duration::from_secs(5),
        now_ms(),
        &mut rng,
    );
    assert!(r.is_err());
}
