//! Writes or reads a Troth key file natively, with the same core code the CLI
//! uses, so the browser tests can check that a key moves both ways:
//!
//! ```text
//! cargo run -p troth-wasm --example keyfile -- write <file> <passphrase> [work factor]
//! cargo run -p troth-wasm --example keyfile -- read  <file> <passphrase>
//! cargo run -p troth-wasm --example keyfile -- time  <file> <passphrase> [runs]
//! ```
//!
//! `write` and `read` print the identity's fingerprint; `time` prints the
//! median milliseconds one unlock (scrypt + decrypt) takes.

use std::process::ExitCode;
use std::time::Instant;

use troth_core::keyfile::{KeyBundle, MAX_WORK_FACTOR};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<String, String> {
    let (Some(cmd), Some(path), Some(pass)) = (args.first(), args.get(1), args.get(2)) else {
        return Err("usage: keyfile write|read|time <file> <passphrase> [n]".into());
    };
    match cmd.as_str() {
        "write" => {
            let wf = args
                .get(3)
                .map(|s| s.parse::<u8>().map_err(|e| e.to_string()))
                .transpose()?
                .unwrap_or(troth_core::keyfile::DEFAULT_WORK_FACTOR);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|e| e.to_string())?
                .as_millis() as u64;
            let keys = KeyBundle::generate(&mut rand_core::OsRng, now);
            let file = keys.encrypt(pass, wf).map_err(|e| e.to_string())?;
            std::fs::write(path, file).map_err(|e| e.to_string())?;
            Ok(keys.identity.public().fingerprint())
        }
        "read" => {
            let file = std::fs::read(path).map_err(|e| e.to_string())?;
            let keys =
                KeyBundle::decrypt(&file, pass, MAX_WORK_FACTOR).map_err(|e| e.to_string())?;
            Ok(keys.identity.public().fingerprint())
        }
        "time" => {
            let file = std::fs::read(path).map_err(|e| e.to_string())?;
            let runs: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
            let mut times = Vec::with_capacity(runs);
            for _ in 0..runs.max(1) {
                let t = Instant::now();
                KeyBundle::decrypt(&file, pass, MAX_WORK_FACTOR).map_err(|e| e.to_string())?;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            times.sort_by(f64::total_cmp);
            Ok(format!("{:.1}", times[times.len() / 2]))
        }
        _ => Err("usage: keyfile write|read|time <file> <passphrase> [n]".into()),
    }
}
