//! The Ed25519 edge cases of ed25519-speccheck, plus our own: which ones the
//! project's verifiers accept. The batch verifier used for the log and the
//! relay must accept exactly what a single check accepts (ZIP-215's rule on
//! a key that is not of small order), alone and mixed into a batch of valid
//! signatures: one accepted set, so no event passes one verifier and fails
//! another.

use curve25519_dalek::constants::EIGHT_TORSION;
use curve25519_dalek::edwards::EdwardsPoint;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::SeedableRng;
use rand::rngs::StdRng;
use troth_core::SpaceId;
use troth_core::content::Content;
use troth_core::event::{Event, Header, Role};
use troth_core::keyfile::KeyBundle;
use troth_core::log::TrustAnchors;
use troth_core::replica::Replica;
use troth_core::sign::{BatchItem, PreparedKey, verify_batch};
use troth_core::testkit::sign_with_torsion_in_r;

struct Case {
    name: String,
    key: Option<VerifyingKey>,
    message: Vec<u8>,
    signature: Signature,
}

fn unhex<const N: usize>(s: &str) -> [u8; N] {
    let v = hex::decode(s).expect("hex");
    v.try_into().expect("length")
}

fn speccheck() -> Vec<Case> {
    let text = include_str!("../testdata/ed25519-speccheck.json");
    let json: serde_json::Value = serde_json::from_str(text).expect("json");
    json["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .enumerate()
        .map(|(i, c)| Case {
            name: format!("speccheck {i}"),
            key: VerifyingKey::from_bytes(&unhex::<32>(c["pub_key"].as_str().expect("key"))).ok(),
            message: hex::decode(c["message"].as_str().expect("msg")).expect("hex"),
            signature: Signature::from_bytes(&unhex::<64>(c["signature"].as_str().expect("sig"))),
        })
        .collect()
}

/// A signer who deliberately adds a torsion component to R: `verify_strict`
/// refuses it, a cofactorless batch let it through about half of the time,
/// and the cofactored rule accepts it, alone and batched alike.
fn torsion_r_case(index: usize) -> Case {
    let seed = [42u8; 32];
    let message = b"torsion in R".to_vec();
    Case {
        name: format!("torsion-R EIGHT_TORSION[{index}] component"),
        key: Some(SigningKey::from_bytes(&seed).verifying_key()),
        signature: sign_with_torsion_in_r(&seed, &EIGHT_TORSION[index], &message),
        message,
    }
}

/// The cases the rule accepts (see the test below).
const EXPECTED_ACCEPTED: &[&str] = &[
    "speccheck 2",
    "speccheck 3",
    "speccheck 4",
    "speccheck 5",
    "speccheck 9",
    "torsion-R EIGHT_TORSION[1] component",
    "torsion-R EIGHT_TORSION[2] component",
    "torsion-R EIGHT_TORSION[3] component",
    "torsion-R EIGHT_TORSION[4] component",
    "torsion-R EIGHT_TORSION[5] component",
    "torsion-R EIGHT_TORSION[6] component",
    "torsion-R EIGHT_TORSION[7] component",
];

fn non_canonical_r_case() -> Case {
    // R = the identity point, encoded non-canonically as y = p + 1.
    let mut sig = [0u8; 64];
    sig[0] = 0xee;
    for b in &mut sig[1..31] {
        *b = 0xff;
    }
    sig[31] = 0x7f;
    let sk = SigningKey::from_bytes(&[7u8; 32]);
    Case {
        name: "non-canonical R".into(),
        key: Some(sk.verifying_key()),
        message: b"x".to_vec(),
        signature: Signature::from_bytes(&sig),
    }
}

fn batch_accepts(case: &Case) -> bool {
    let Some(key) = case.key else { return false };
    let prepared = PreparedKey::new(key);
    // Alone…
    let alone = verify_batch(&[BatchItem {
        key: &prepared,
        message: &case.message,
        signature: &case.signature,
    }])
    .is_ok();
    // …and among valid signatures (so the batch equation really runs).
    let signers: Vec<SigningKey> = (1..=4u8)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect();
    let prepared_signers: Vec<PreparedKey> = signers
        .iter()
        .map(|s| PreparedKey::new(s.verifying_key()))
        .collect();
    let msgs: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 10]).collect();
    let sigs: Vec<Signature> = signers.iter().zip(&msgs).map(|(s, m)| s.sign(m)).collect();
    let mut items: Vec<BatchItem<'_>> = (0..4)
        .map(|i| BatchItem {
            key: &prepared_signers[i],
            message: &msgs[i],
            signature: &sigs[i],
        })
        .collect();
    items.insert(
        2,
        BatchItem {
            key: &prepared,
            message: &case.message,
            signature: &case.signature,
        },
    );
    let mixed = match verify_batch(&items) {
        Ok(()) => true,
        Err(i) => {
            assert_eq!(i, 2, "{}: a valid neighbour was blamed", case.name);
            false
        }
    };
    assert_eq!(
        alone, mixed,
        "{}: batch result depends on company",
        case.name
    );
    alone
}

fn single_accepts(case: &Case) -> bool {
    case.key.is_some_and(|k| {
        PreparedKey::new(k)
            .verify(&case.message, &case.signature)
            .is_ok()
    })
}

#[test]
fn batch_accepts_exactly_what_a_single_check_accepts() {
    let mut cases = speccheck();
    cases.push(non_canonical_r_case());
    for index in 1..8 {
        cases.push(torsion_r_case(index));
    }
    let mut accepted = Vec::new();
    for case in &cases {
        let single = single_accepts(case);
        let batch = batch_accepts(case);
        assert_eq!(
            single, batch,
            "{}: single {single}, batch {batch}",
            case.name
        );
        if single {
            accepted.push(case.name.clone());
        }
    }
    // The rule: ZIP-215 (cofactored equation, canonical s, any encoding of
    // R that decompresses, hashed as sent) under a key that is not of small
    // order (keys are also parsed canonical and not weak before they get
    // here, keys.rs). Of the speccheck set it accepts a mixed-order key
    // with a small-order R (2), mixed-order keys and R passing either
    // equation (3, 4, 5) and a non-canonical R hashed as sent (9); it
    // refuses small-order keys (0, 1), a non-canonical s (6, 7) and R
    // reduced before hashing (8). verify_strict accepted only 3.
    assert_eq!(accepted, EXPECTED_ACCEPTED, "accepted set changed");
}

/// For each of the eight small-order points `T`, 64 messages signed with
/// `R = rB + T` by a real key, each checked alone and in a batch with valid
/// signatures of 7 other keys at every position: every verifier gives the
/// same answer (accepted: the cofactored rule ignores `T`). Under protocol
/// version 1 (`verify_strict` alone, ed25519-dalek's cofactorless batch for
/// pages) the single check refused all of them while the batch let through
/// 33 of the 64 whose `T` has order 2, 14 and 21 of order 4, 5 to 13 of
/// order 8: a split log.
#[test]
fn every_verifier_agrees_on_every_torsion_component_in_r() {
    let seed = [42u8; 32];
    let prepared = PreparedKey::new(SigningKey::from_bytes(&seed).verifying_key());
    let others: Vec<SigningKey> = (1..=7u8)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect();
    let others_prepared: Vec<PreparedKey> = others
        .iter()
        .map(|k| PreparedKey::new(k.verifying_key()))
        .collect();
    for (index, t) in EIGHT_TORSION.iter().enumerate() {
        let control = index == 0;
        assert_eq!(
            control,
            t == &EdwardsPoint::default(),
            "the identity comes first"
        );
        for m in 0..64u32 {
            let message = format!("message {m} with EIGHT_TORSION[{index}] in R").into_bytes();
            let signature = sign_with_torsion_in_r(&seed, t, &message);
            let strict = prepared.key().verify_strict(&message, &signature);
            assert_eq!(strict.is_ok(), control, "verify_strict, T {index}, m {m}");
            assert_eq!(
                prepared.verify(&message, &signature),
                Ok(()),
                "single, T {index}, m {m}"
            );
            let at = m as usize % 8;
            let msgs: Vec<Vec<u8>> = (0..7u32)
                .map(|j| format!("valid {j} beside {m}/{index}").into_bytes())
                .collect();
            let sigs: Vec<Signature> = others.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect();
            let mut items: Vec<BatchItem<'_>> = (0..7)
                .map(|j| BatchItem {
                    key: &others_prepared[j],
                    message: &msgs[j],
                    signature: &sigs[j],
                })
                .collect();
            items.insert(
                at,
                BatchItem {
                    key: &prepared,
                    message: &message,
                    signature: &signature,
                },
            );
            assert_eq!(verify_batch(&items), Ok(()), "batch of 8, T {index}, m {m}");
            assert_eq!(
                verify_batch(&items[at..=at]),
                Ok(()),
                "alone, T {index}, m {m}"
            );
        }
    }
}

/// A client's copy of a space: the leading partner's replica that writes,
/// the key file to open more devices of the same person from, and events.
struct Log {
    writer: Replica,
    key_file: String,
    space: SpaceId,
    identity: troth_core::keys::IdentityKey,
}

const NOW: u64 = 1_790_000_000_000;

impl Log {
    /// Genesis and six check-ins, all verified by the writer.
    fn new() -> Self {
        let mut rng = StdRng::seed_from_u64(14);
        let keys = KeyBundle::generate(&mut rng, NOW);
        let key_file = keys.encrypt("test", 4).expect("encrypt");
        let identity = keys.identity.public();
        let space = SpaceId::random(&mut rng);
        let (mut writer, genesis) =
            Replica::create(keys, Role::Leading, space, NOW, &mut rng).expect("create");
        writer.ingest(&[genesis]);
        for i in 0..6u64 {
            let ev = writer
                .compose(&check_in(i), NOW + i, &mut rng)
                .expect("compose");
            assert_eq!(writer.ingest(std::slice::from_ref(&ev)).accepted, 1);
        }
        Log {
            writer,
            key_file,
            space,
            identity,
        }
    }

    /// A fresh device of the same person that has verified nothing yet.
    fn reader(&self) -> Replica {
        let keys = KeyBundle::decrypt(self.key_file.as_bytes(), "test", 4).expect("decrypt");
        Replica::open(
            keys,
            Role::Leading,
            self.space,
            TrustAnchors {
                leading: Some(self.identity),
                rebuilding: None,
            },
        )
    }

    /// The next event on the writer's head, its signature made with
    /// `R = rB + T`, and two well-signed events chained after it.
    fn with_torsion(&self, t: &EdwardsPoint, variant: u64) -> Vec<Event> {
        let mut rng = StdRng::seed_from_u64(variant);
        let honest = self
            .writer
            .compose(&check_in(100 + variant), NOW + 100, &mut rng)
            .expect("compose");
        let seed = self.writer.keys().device.signing_seed();
        let signature = sign_with_torsion_in_r(&seed, t, &honest.signed_message());
        let mut bytes = honest.signed_bytes().to_vec();
        bytes.extend_from_slice(&signature.to_bytes());
        let forged = Event::decode(&bytes).expect("decodes");
        let mut out = vec![forged];
        for _ in 0..2 {
            let prev = out.last().expect("one").clone();
            let h = prev.header();
            let header = Header {
                seq: h.seq + 1,
                prev: prev.hash(),
                timestamp_ms: h.timestamp_ms + 1,
                ..h.clone()
            };
            // The chain verifier does not open payloads; the writer's
            // ciphertext (bound to another header) is enough here.
            out.push(Event::sign(
                header,
                prev.body().clone(),
                &self.writer.keys().device,
            ));
        }
        out
    }
}

fn check_in(i: u64) -> Content {
    Content::CheckIn {
        text: format!("at the gym until {}", i % 12 + 1),
        place: None,
        answers: None,
    }
}

/// A log whose event 7 is signed with a torsion component in `R` gets the
/// same answer whether it arrives in one page with the events around it
/// (a batch) or alone (a live frame): accepted, with the events after it.
/// Each of the eight small-order points, four signatures each. Under
/// protocol version 1 the page let some of them through and the live
/// frame refused all of them.
#[test]
fn a_page_and_a_live_frame_agree_on_torsion_in_r() {
    let log = Log::new();
    let before: Vec<Event> = log.writer.events().to_vec();
    assert_eq!(before.len(), 7);
    for (index, t) in EIGHT_TORSION.iter().enumerate() {
        for variant in 0..4u64 {
            let tail = log.with_torsion(t, 8 * index as u64 + variant);
            let what = format!("EIGHT_TORSION[{index}], variant {variant}");
            // In one page with the events before and after it.
            let mut page = before.clone();
            page.extend(tail.iter().cloned());
            let in_page = log.reader().ingest(&page);
            // Alone, after the events before it.
            let mut reader = log.reader();
            assert_eq!(reader.ingest(&before).accepted, 7);
            let alone = reader.ingest(&tail[..1]);
            assert_eq!((in_page.accepted, &in_page.error), (10, &None), "{what}");
            assert_eq!((alone.accepted, &alone.error), (1, &None), "{what}");
        }
    }
}
