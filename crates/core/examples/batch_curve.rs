//! What a signature costs in `verify_batch` (now `verify_strict` on each,
//! so about 1.0×), as a ratio to `verify_strict` alone measured in the same
//! run (a benchmark, not a test); and the floor of an *exact* batch: what
//! the check on each `R` that exactness needs costs, decompressing it and
//! checking it is torsion-free, on the same scale (docs/PROTOCOL.md §3,
//! docs/BENCHMARKS.md).
//!
//! ```text
//! cargo run --release -p troth-core --example batch_curve
//! ```

use std::time::Instant;

use curve25519_dalek::edwards::CompressedEdwardsY;
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
        .map(|i| format!("troth-event-v1\0{i:>8}{}", "x".repeat(300)).into_bytes())
        .collect();
    let sigs: Vec<_> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| keys[i % 64].sign(m))
        .collect();
    let item = |i: usize| BatchItem {
        key: &prepared[i % 64],
        message: &msgs[i],
        signature: &sigs[i],
    };
    for round in 1..=3 {
        let t = Instant::now();
        for i in 0..N {
            assert!(
                prepared[i % 64]
                    .key()
                    .verify_strict(&msgs[i], &sigs[i])
                    .is_ok()
            );
        }
        let single = t.elapsed().as_secs_f64() / N as f64;
        print!("round {round}: verify_strict {:.1} µs;", single * 1e6);
        let t = Instant::now();
        for s in &sigs {
            let r = CompressedEdwardsY(*s.r_bytes()).decompress();
            assert!(r.is_some());
        }
        let decompress = t.elapsed().as_secs_f64() / N as f64;
        let t = Instant::now();
        for s in &sigs {
            let r = CompressedEdwardsY(*s.r_bytes()).decompress();
            assert!(r.is_some_and(|p| p.is_torsion_free()));
        }
        let torsion = t.elapsed().as_secs_f64() / N as f64;
        print!(
            " R decompressed {:.2}×, and torsion-free {:.2}×; verify_batch of",
            decompress / single,
            torsion / single
        );
        for n in [2usize, 4, 8, 16, 32, 64] {
            let t = Instant::now();
            for c in 0..N / n {
                let items: Vec<BatchItem<'_>> = (c * n..c * n + n).map(item).collect();
                assert_eq!(verify_batch(&items), Ok(()));
            }
            let per = t.elapsed().as_secs_f64() / N as f64;
            print!(" {n}: {:.2}×", per / single);
        }
        println!();
    }
}
