//! The chain verifier fed arbitrary sequences built from a real log (events
//! taken in any order, repeated, bit-flipped, truncated) never panics and only
//! ever accepts a prefix of the true log.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use rand::rngs::StdRng;
use troth_core::SpaceId;
use troth_core::content::Content;
use troth_core::event::{Event, Role};
use troth_core::keyfile::KeyBundle;
use troth_core::keys::{DeviceCert, DeviceSecret, IdentitySecret};
use troth_core::log::TrustAnchors;
use troth_core::replica::Replica;

struct Fixture {
    events: Vec<Event>,
    b_seeds: ([u8; 32], [u8; 32], String, Vec<u8>),
    anchors: TrustAnchors,
    space: SpaceId,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(1);
        let ka = KeyBundle::generate(&mut rng, 0);
        let kb = KeyBundle::generate(&mut rng, 0);
        let space = SpaceId::random(&mut rng);
        let anchors = TrustAnchors { leading: Some(ka.identity.public()), rebuilding: None };
        let b_seeds = (
            *kb.identity.to_seed(),
            *kb.device.signing_seed(),
            kb.device.age_secret_string().to_string(),
            kb.cert.to_bytes(),
        );
        let (mut a, g) = Replica::create(ka, Role::Leading, space, 0, &mut rng).expect("create");
        a.ingest(&[g]);
        a.trust_partner(kb.identity.public());
        let add = a.compose_add_member(&kb.cert, 1).expect("add");
        a.ingest(&[add]);
        for i in 0..6u64 {
            let c = Content::CheckIn { text: format!("{i}"), place: None, answers: None };
            let ev = a.compose(&c, i, &mut rng).expect("compose");
            a.ingest(&[ev]);
        }
        Fixture { events: a.events().to_vec(), b_seeds, anchors, space }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let (id, sign, x, cert) = &f.b_seeds;
    let kb = KeyBundle {
        identity: IdentitySecret::from_seed(id),
        device: DeviceSecret::from_age_secret(sign, x).expect("device"),
        cert: DeviceCert::from_bytes(cert).expect("cert"),
    };
    let mut r = Replica::open(kb, Role::Rebuilding, f.space, f.anchors.clone());
    let mut feed = Vec::new();
    for chunk in data.chunks(3) {
        let [which, op, arg] = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let ev = &f.events[usize::from(which) % f.events.len()];
        match op % 4 {
            0 | 1 => feed.push(ev.clone()),
            2 => {
                let mut b = ev.as_bytes().to_vec();
                let i = usize::from(arg) * 7 % b.len();
                b[i] ^= 1 << (arg % 8);
                if let Ok(e) = Event::decode(&b) {
                    feed.push(e);
                }
            }
            _ => {
                let b = ev.as_bytes();
                let _ = Event::decode(&b[..usize::from(arg) % b.len()]);
            }
        }
        if op % 5 == 4 {
            r.ingest(&feed);
            feed.clear();
        }
    }
    r.ingest(&feed);
    for (got, want) in r.events().iter().zip(&f.events) {
        assert_eq!(got.hash(), want.hash());
    }
});
