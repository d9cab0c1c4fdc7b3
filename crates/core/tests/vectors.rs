//! Protocol test vectors: `testdata/vectors.json`, so a second implementation
//! can check itself. This file is also the generator: run
//! `TROTH_WRITE_VECTORS=1 cargo test -p troth-core --test vectors` to rewrite
//! the file after a deliberate format change (and bump the format version).
//!
//! The test (1) regenerates every vector from its inputs and requires the
//! committed bytes, and (2) decodes and verifies the committed outputs on
//! their own.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use troth_core::SpaceId;
use troth_core::agreement::{Agreement, Certificate, Day, InForce, Position, template};
use troth_core::content::Content;
use troth_core::crypto::{self, EpochKey};
use troth_core::event::{Body, Control, Envelope, Event, EventHash, Header};
use troth_core::ids::AgreementId;
use troth_core::keys::{DeviceCert, DeviceSecret, IdentitySecret, SafetyNumber};
use troth_core::request::RequestAuth;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/vectors.json");

fn h(b: &[u8]) -> String {
    hex::encode(b)
}

fn generate() -> Value {
    let id_a = IdentitySecret::from_seed(&[0xa1; 32]);
    let id_b = IdentitySecret::from_seed(&[0xb1; 32]);
    let dev_a = DeviceSecret::from_secrets(&[0xa2; 32], &[0xa3; 32]);
    let dev_b = DeviceSecret::from_secrets(&[0xb2; 32], &[0xb3; 32]);
    let cert_a = id_a.certify(&dev_a, 1_790_000_000_000);
    let cert_b = id_b.certify(&dev_b, 1_790_000_000_001);
    let space = SpaceId([0x5a; 16]);

    let keys = json!([
        {"identity_seed": h(&[0xa1; 32]), "identity_public": h(&id_a.public().to_bytes()),
         "fingerprint": id_a.public().fingerprint(),
         "device_signing_seed": h(&[0xa2; 32]), "device_x25519_secret": h(&[0xa3; 32]),
         "device_signing_public": h(&dev_a.public().id().0),
         "device_x25519_public": h(&dev_a.public().x25519_bytes()),
         "age_recipient": dev_a.public().age_recipient_string(),
         "device_cert": h(&cert_a.to_bytes())},
        {"identity_seed": h(&[0xb1; 32]), "identity_public": h(&id_b.public().to_bytes()),
         "fingerprint": id_b.public().fingerprint(),
         "device_signing_seed": h(&[0xb2; 32]), "device_x25519_secret": h(&[0xb3; 32]),
         "device_signing_public": h(&dev_b.public().id().0),
         "device_x25519_public": h(&dev_b.public().x25519_bytes()),
         "age_recipient": dev_b.public().age_recipient_string(),
         "device_cert": h(&cert_b.to_bytes())}
    ]);
    let safety = SafetyNumber::new(&id_a.public(), &id_b.public());

    // Events: a genesis with a placeholder envelope (age output is randomised,
    // so it is not a vector) and the commitment to epoch 0's key, then a
    // sealed check-in with a seeded nonce.
    let epoch_key = [0xee; 32];
    let commitment = EpochKey::from_bytes(epoch_key).commitment(space, 0);
    let genesis = Event::sign(
        Header {
            space,
            seq: 0,
            prev: EventHash::ZERO,
            author: dev_a.public().id(),
            epoch: 0,
            timestamp_ms: 1_790_000_000_000,
        },
        Body::Control(Control::Genesis {
            cert: cert_a.clone(),
            commitment,
            envelopes: vec![Envelope {
                epoch: 0,
                device: dev_a.public().id(),
                age: b"age envelope placeholder".to_vec(),
            }],
        }),
        &dev_a,
    );
    let content = Content::CheckIn {
        text: "at the gym until 7".into(),
        place: Some("Riverside gym".into()),
        answers: None,
    };
    let header1 = Header {
        space,
        seq: 1,
        prev: genesis.hash(),
        author: dev_a.public().id(),
        epoch: 0,
        timestamp_ms: 1_790_000_060_000,
    };
    let mut rng = StdRng::seed_from_u64(1);
    let sealed = crypto::seal(
        &EpochKey::from_bytes(epoch_key),
        &header1.to_bytes(),
        &content.encode(),
        &mut rng,
    )
    .expect("seal");
    let ev1 = Event::sign(header1.clone(), Body::Sealed(sealed.clone()), &dev_a);

    // Agreement, co-signatures, certificate.
    let t = template("whereabouts").expect("template");
    let ag = Agreement {
        id: AgreementId([0x1d; 16]),
        version: 1,
        supersedes: None,
        title: t.title.into(),
        rules: t.rules,
        review_on: Day::parse("2027-03-01").expect("day"),
    };
    // The proposal is event 2; the co-signatures cover where it was proposed.
    let header2 = Header {
        space,
        seq: 2,
        prev: ev1.hash(),
        author: dev_a.public().id(),
        epoch: 0,
        timestamp_ms: 1_790_000_120_000,
    };
    let proposal = Content::Propose(ag.clone());
    let sealed2 = crypto::seal(
        &EpochKey::from_bytes(epoch_key),
        &header2.to_bytes(),
        &proposal.encode(),
        &mut rng,
    )
    .expect("seal");
    let ev2 = Event::sign(header2, Body::Sealed(sealed2), &dev_a);
    let at = Position {
        seq: 2,
        event: ev2.hash(),
    };
    let sig_a = ag.cosign(space, &at, &id_a);
    let sig_b = ag.cosign(space, &at, &id_b);
    let cert = InForce::verify(
        space,
        ag.clone(),
        at,
        (id_a.public(), sig_a),
        (id_b.public(), sig_b),
    )
    .expect("in force")
    .certificate(&ev2, &cert_a)
    .expect("certificate");

    let req = RequestAuth::sign(
        &dev_a,
        Some(space),
        "POST",
        &format!("/v1/spaces/{}/events", space.to_hex()),
        b"{\"event\":\"\"}",
        1_790_000_000_000,
        [0x0f; 16],
    );

    json!({
        "format": "troth protocol test vectors, version 2; all binary values hex unless noted",
        "space": space.to_hex(),
        "keys": keys,
        "safety_number": safety.as_str(),
        "events": [
            {"name": "genesis", "bytes": h(genesis.as_bytes()), "hash": genesis.hash().to_hex(),
             "epoch_key_commitment": h(&commitment.0)},
            {"name": "sealed check-in", "bytes": h(ev1.as_bytes()), "hash": ev1.hash().to_hex(),
             "header": h(&header1.to_bytes()), "epoch_key": h(&epoch_key),
             "plaintext_content": h(&content.encode()), "sealed_body": h(&sealed)},
            {"name": "proposal", "bytes": h(ev2.as_bytes()), "hash": ev2.hash().to_hex()}
        ],
        "agreement": {
            "canonical": h(&ag.to_bytes()),
            "content_hash": ag.content_hash().to_hex(),
            "cosign_a": h(&sig_a.to_bytes()),
            "cosign_b": h(&sig_b.to_bytes()),
            "certificate": h(&cert.to_bytes())
        },
        "request": {
            "method": "POST",
            "path": format!("/v1/spaces/{}/events", space.to_hex()),
            "body_base64": B64.encode(b"{\"event\":\"\"}"),
            "time_ms": 1_790_000_000_000u64,
            "nonce": h(&[0x0f; 16]),
            "signature": h(&req.signature.to_bytes())
        }
    })
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("string")).expect("hex")
}

#[test]
fn vectors_match_and_verify() {
    let generated = generate();
    if std::env::var_os("TROTH_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&generated).expect("json");
        std::fs::write(PATH, text + "\n").expect("write vectors");
    }
    let text = std::fs::read_to_string(PATH).expect("testdata/vectors.json exists");
    let committed: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        generated, committed,
        "the encoding changed: if on purpose, bump the format version and regenerate"
    );

    // Independent checks on the committed bytes.
    let space = SpaceId::from_hex(committed["space"].as_str().expect("space")).expect("hex");
    let mut ids = Vec::new();
    for k in committed["keys"].as_array().expect("keys") {
        let cert = DeviceCert::from_bytes(&unhex(&k["device_cert"])).expect("cert verifies");
        assert_eq!(h(&cert.identity().to_bytes()), k["identity_public"]);
        assert_eq!(cert.device().age_recipient_string(), k["age_recipient"]);
        ids.push(*cert.identity());
    }
    assert_eq!(
        SafetyNumber::new(&ids[1], &ids[0]).as_str(),
        committed["safety_number"]
    );
    let events = committed["events"].as_array().expect("events");
    let genesis = Event::decode(&unhex(&events[0]["bytes"])).expect("decode genesis");
    let dev_key = match genesis.body() {
        Body::Control(Control::Genesis { cert, .. }) => *cert.device().verifying_key(),
        _ => panic!("not a genesis"),
    };
    genesis
        .verify_signature(&dev_key)
        .expect("genesis signature");
    assert_eq!(genesis.hash().to_hex(), events[0]["hash"]);
    let ev1 = Event::decode(&unhex(&events[1]["bytes"])).expect("decode");
    ev1.verify_signature(&dev_key).expect("signature");
    assert_eq!(ev1.header().prev, genesis.hash());
    let key: [u8; 32] = unhex(&events[1]["epoch_key"]).try_into().expect("32");
    let Body::Sealed(ct) = ev1.body() else {
        panic!("sealed")
    };
    let pt = crypto::open(&EpochKey::from_bytes(key), &ev1.header().to_bytes(), ct).expect("open");
    assert_eq!(h(&pt), events[1]["plaintext_content"]);
    assert!(matches!(Content::decode(&pt), Ok(Content::CheckIn { .. })));
    let Body::Control(Control::Genesis { commitment, .. }) = genesis.body() else {
        panic!("not a genesis")
    };
    assert_eq!(*commitment, EpochKey::from_bytes(key).commitment(space, 0));
    assert_eq!(h(&commitment.0), events[0]["epoch_key_commitment"]);

    let cert = Certificate::from_bytes(&unhex(&committed["agreement"]["certificate"]))
        .expect("certificate verifies");
    assert_eq!(cert.space(), space);
    assert_eq!(cert.position().seq, 2);
    assert_eq!(cert.position().event.to_hex(), events[2]["hash"]);
    assert_eq!(
        cert.agreement().content_hash().to_hex(),
        committed["agreement"]["content_hash"]
    );

    let r = &committed["request"];
    let auth = RequestAuth {
        device: genesis.header().author,
        time_ms: r["time_ms"].as_u64().expect("time"),
        nonce: unhex(&r["nonce"]).try_into().expect("16"),
        signature: ed25519_dalek::Signature::from_bytes(
            &unhex(&r["signature"]).try_into().expect("64"),
        ),
    };
    let body = B64
        .decode(r["body_base64"].as_str().expect("b64"))
        .expect("b64");
    auth.verify(
        &dev_key,
        Some(space),
        "POST",
        r["path"].as_str().expect("path"),
        &body,
    )
    .expect("request signature");
}
