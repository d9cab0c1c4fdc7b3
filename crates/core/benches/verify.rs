//! Full verification of a 10,000-event space (signatures, chain, decryption,
//! fold) against 10,000 raw `verify_strict` calls in the same run. The space
//! has roles confirmed and the whereabouts template in force, so the fold
//! checks every check-in request against its signed limit (most of them,
//! sealed as a modified client would, are beyond it).
//!
//! Run: `cargo bench -p troth-core --bench verify`. Prints the ratio at the end.

use criterion::{BatchSize, Criterion, black_box};
use rand::SeedableRng;
use rand::rngs::StdRng;
use troth_core::SpaceId;
use troth_core::content::Content;
use troth_core::event::{Event, Role};
use troth_core::keyfile::KeyBundle;
use troth_core::log::TrustAnchors;
use troth_core::replica::Replica;

const N: usize = 10_000;

struct Space {
    events: Vec<Event>,
    b_bundle_file: String,
    a_identity: troth_core::keys::IdentityKey,
    space: SpaceId,
}

fn build() -> Space {
    let mut rng = StdRng::seed_from_u64(7);
    let now = 1_790_000_000_000u64;
    let ka = KeyBundle::generate(&mut rng, now);
    let kb = KeyBundle::generate(&mut rng, now);
    let b_bundle_file = kb.encrypt("bench", 4).expect("encrypt");
    let space = SpaceId::random(&mut rng);
    let a_identity = ka.identity.public();
    let b_identity = kb.identity.public();
    let b_cert = kb.cert.clone();
    let (mut a, g) = Replica::create(ka, Role::Leading, space, now, &mut rng).expect("create");
    a.ingest(&[g]);
    a.trust_partner(b_identity);
    let add = a.compose_add_member(&b_cert, now).expect("add");
    a.ingest(&[add]);
    let mut b = Replica::open(
        kb,
        Role::Rebuilding,
        space,
        TrustAnchors {
            leading: Some(a_identity),
            rebuilding: None,
        },
    );
    b.ingest(a.events());
    // Roles confirmed by both, and the whereabouts template (at most 3
    // check-in requests a day) in force.
    let post = |a: &mut Replica, b: &mut Replica, ev: Event| {
        a.ingest(std::slice::from_ref(&ev));
        b.ingest(std::slice::from_ref(&ev));
    };
    let c = a.confirm_roles().expect("roles");
    let ev = a.compose(&c, now, &mut rng).expect("compose");
    post(&mut a, &mut b, ev);
    let c = b.confirm_roles().expect("roles");
    let ev = b.compose(&c, now, &mut rng).expect("compose");
    post(&mut a, &mut b, ev);
    let t = troth_core::agreement::template("whereabouts").expect("template");
    let id = troth_core::AgreementId::random(&mut rng);
    let p = a
        .propose(troth_core::agreement::Agreement {
            id,
            version: 1,
            supersedes: None,
            title: t.title.into(),
            rules: t.rules,
            review_on: troth_core::agreement::Day::from_unix_ms(now).plus(30),
        })
        .expect("propose");
    let ev = a.compose(&p, now, &mut rng).expect("compose");
    post(&mut a, &mut b, ev);
    for who in [0, 1] {
        let r = if who == 0 { &a } else { &b };
        let c = r.cosign(id, 1).expect("cosign");
        let ev = r.compose(&c, now, &mut rng).expect("compose");
        post(&mut a, &mut b, ev);
    }
    assert!(a.state().agreements[&id].in_force().is_some());
    while a.events().len() < N {
        let i = a.events().len();
        let (author, content) = if i % 3 == 0 {
            (
                &a,
                Content::RequestCheckIn {
                    note: "Could you check in when you can?".into(),
                },
            )
        } else {
            (
                &b,
                Content::CheckIn {
                    text: format!("at the gym until {}", i % 12 + 1),
                    place: (i % 2 == 0).then(|| "Riverside".to_owned()),
                    answers: None,
                },
            )
        };
        let ev = author
            .compose_unchecked(&content, now + i as u64, &mut rng)
            .expect("compose");
        a.ingest(std::slice::from_ref(&ev));
        b.ingest(std::slice::from_ref(&ev));
    }
    Space {
        events: a.events().to_vec(),
        b_bundle_file,
        a_identity,
        space,
    }
}

fn main() {
    let space = build();
    let mut c = Criterion::default().sample_size(10).configure_from_args();

    // Baseline: raw verify_strict over the same messages, keys pre-parsed.
    let keys: Vec<ed25519_dalek::VerifyingKey> = space
        .events
        .iter()
        .map(|e| ed25519_dalek::VerifyingKey::from_bytes(&e.header().author.0).expect("key"))
        .collect();
    let msgs: Vec<Vec<u8>> = space.events.iter().map(|e| e.signed_message()).collect();
    c.bench_function("baseline_verify_strict_10k", |bch| {
        bch.iter(|| {
            for ((k, m), e) in keys.iter().zip(&msgs).zip(&space.events) {
                black_box(k.verify_strict(m, e.signature())).expect("valid");
            }
        })
    });

    c.bench_function("full_verify_10k", |bch| {
        bch.iter_batched(
            || {
                let kb = KeyBundle::decrypt(space.b_bundle_file.as_bytes(), "bench", 4)
                    .expect("decrypt");
                Replica::open(
                    kb,
                    Role::Rebuilding,
                    space.space,
                    TrustAnchors {
                        leading: Some(space.a_identity),
                        rebuilding: None,
                    },
                )
            },
            |mut r| {
                let res = r.ingest(&space.events);
                assert_eq!(res.accepted, N);
                assert!(r.state().problems.is_empty());
                r
            },
            BatchSize::PerIteration,
        )
    });
    c.final_summary();

    let mean = |id: &str| -> Option<f64> {
        let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "../../target".into());
        let p = format!("{dir}/criterion/{id}/new/estimates.json");
        let text = std::fs::read_to_string(p).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).ok()?;
        v["mean"]["point_estimate"].as_f64()
    };
    if let (Some(base), Some(full)) = (mean("baseline_verify_strict_10k"), mean("full_verify_10k"))
    {
        println!(
            "full verification of {N} events: {:.1} ms; {N} raw verify_strict: {:.1} ms; ratio {:.2} (target <= 0.65, P1)",
            full / 1e6,
            base / 1e6,
            full / base
        );
    }
}
