//! The Ed25519 edge cases of ed25519-speccheck, plus our own: which ones the
//! project's verifiers accept. The batch verifier used for the log must accept
//! exactly what `verify_strict` accepts, alone and mixed into a batch of valid
//! signatures.

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha512};
use troth_core::sign::{BatchItem, PreparedKey, verify_batch};

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

/// A signer who deliberately adds a torsion component to R: cofactorless
/// verification (verify_strict) must reject it; a careless batch might not.
fn torsion_r_case(order: usize) -> Case {
    let sk = SigningKey::from_bytes(&[42u8; 32]);
    let a = sk.verifying_key();
    let expanded = Sha512::digest([42u8; 32]);
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&expanded[..32]);
    s_bytes[0] &= 248;
    s_bytes[31] &= 127;
    s_bytes[31] |= 64;
    let secret = Scalar::from_bytes_mod_order(s_bytes);
    let r = Scalar::from(12345u64);
    let big_r = ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[order];
    let message = b"torsion in R".to_vec();
    let mut h = Sha512::new();
    h.update(big_r.compress().as_bytes());
    h.update(a.as_bytes());
    h.update(&message);
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    let s = r + k * secret;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(big_r.compress().as_bytes());
    sig[32..].copy_from_slice(s.as_bytes());
    Case {
        name: format!("torsion-R order-{order} component"),
        key: Some(a),
        message,
        signature: Signature::from_bytes(&sig),
    }
}

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

#[test]
fn batch_accepts_exactly_what_verify_strict_accepts() {
    let mut cases = speccheck();
    cases.push(non_canonical_r_case());
    for order in [1, 2, 4] {
        cases.push(torsion_r_case(order));
    }
    let mut accepted = Vec::new();
    for case in &cases {
        let strict = case
            .key
            .is_some_and(|k| k.verify_strict(&case.message, &case.signature).is_ok());
        let batch = batch_accepts(case);
        assert_eq!(
            strict, batch,
            "{}: strict {strict}, batch {batch}",
            case.name
        );
        if strict {
            accepted.push(case.name.clone());
        }
    }
    // verify_strict rejects small-order keys and R, non-canonical R and s,
    // and anything failing the cofactorless equation. Of the speccheck set it
    // accepts only case 3: mixed-order A and R passing the cofactorless equation.
    assert_eq!(accepted, vec!["speccheck 3"], "accepted set changed");
}
