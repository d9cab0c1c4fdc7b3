//! What a signature costs in `verify_batch` (ZIP-215's batch equation), as
//! a ratio to `verify_strict` alone measured in the same run (a benchmark,
//! not a test), by batch size, for signatures under 64 different keys (the
//! relay's batches: appends of many spaces) and under 4 keys (a page of one
//! space's log, where the terms under one key coalesce); and what a single
//! check under the protocol's rule costs (docs/PROTOCOL.md §3,
//! docs/BENCHMARKS.md).
//!
//! ```text
//! cargo run --release -p troth-core --example batch_curve
//! ```

use std::time::Instant;

use ed25519_dalek::{Signer, SigningKey};
use troth_core::sign::{BatchItem, PreparedKey, verify_batch};

const N: usize = 4096;

fn main() {
    let keys: Vec<SigningKey> = (1..=64u8)
        .map(|i| SigningKey::from_bytes(&[i; 32]))
        .collect();
    let prepared: Vec<PreparedKey> = keys
        .iter()
        .map(|k| PreparedKey::new(k.verifying_key()))
        .collect();
    // Messages the size of a small event's signed message.
    let msgs: Vec<Vec<u8>> = (0..N)
        .map(|i| format!("troth-event-v2\0{i:>8}{}", "x".repeat(300)).into_bytes())
        .collect();
    for spread in [64usize, 4] {
        let sigs: Vec<_> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| keys[i % spread].sign(m))
            .collect();
        let item = |i: usize| BatchItem {
            key: &prepared[i % spread],
            message: &msgs[i],
            signature: &sigs[i],
        };
        for round in 1..=2 {
            let t = Instant::now();
            for i in 0..N {
                let key = prepared[i % spread].key();
                assert!(key.verify_strict(&msgs[i], &sigs[i]).is_ok());
            }
            let strict = t.elapsed().as_secs_f64() / N as f64;
            let t = Instant::now();
            for i in 0..N {
                assert!(prepared[i % spread].verify(&msgs[i], &sigs[i]).is_ok());
            }
            let single = t.elapsed().as_secs_f64() / N as f64;
            print!(
                "{spread} keys, round {round}: verify_strict {:.1} µs; single check {:.2}×; verify_batch of",
                strict * 1e6,
                single / strict
            );
            for n in [2usize, 8, 32, 64, 512, 4096] {
                let t = Instant::now();
                for c in 0..N / n {
                    let items: Vec<BatchItem<'_>> = (c * n..c * n + n).map(item).collect();
                    assert_eq!(verify_batch(&items), Ok(()));
                }
                let per = t.elapsed().as_secs_f64() / N as f64;
                print!(" {n}: {:.2}×", per / strict);
            }
            println!();
        }
    }
}
