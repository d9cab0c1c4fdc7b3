//! Makes a long-lived space on a relay for the long-space benchmark
//! (`tests/browser/long-space.mjs`, docs/BENCHMARKS.md): two partners' keys,
//! a space paired with the core, and `events` events in all — the rebuilding
//! partner's check-ins, the leading partner's acknowledgements and
//! requests — composed, signed and appended through the real relay API,
//! dated one per ten minutes up to now.
//!
//! ```text
//! cargo run --release -p troth-client --example long_space -- <relay URL> <events> <passphrase>
//! ```
//!
//! Prints one JSON object: the rebuilding partner's key file (work factor 10:
//! the benchmark leaves scrypt out), the space id, the leading identity (hex)
//! and every event, base64, in order — what a browser that had kept up with
//! the space would hold.

use std::process::ExitCode;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use troth_client::relay::{Appended, RelayClient};
use troth_core::SpaceId;
use troth_core::content::Content;
use troth_core::event::{Event, Role};
use troth_core::keyfile::KeyBundle;
use troth_core::log::TrustAnchors;
use troth_core::replica::Replica;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("long_space: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<String, String> {
    let (Some(url), Some(n), Some(pass)) = (args.first(), args.get(1), args.get(2)) else {
        return Err("usage: long_space <relay URL> <events> <passphrase>".into());
    };
    let n: u64 = n.parse().map_err(|_| "events must be a number")?;
    let n = n.max(3);
    let rng = &mut rand_core::OsRng;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_millis() as u64;
    // One event per ten minutes, the last a minute ago.
    let step = 600_000;
    let mut at = now - 60_000 - n * step;
    let ka = KeyBundle::generate(rng, at);
    let kb = KeyBundle::generate(rng, at);
    let file = kb.encrypt(pass, 10).map_err(|e| e.to_string())?;
    let space = SpaceId::random(rng);
    let (a_id, b_id, b_cert) = (ka.identity.public(), kb.identity.public(), kb.cert.clone());
    let (a_dev, b_dev) = (ka.device.duplicate(), kb.device.duplicate());
    let relay = RelayClient::new(url).map_err(|e| e.to_string())?;

    let (mut a, genesis) =
        Replica::create(ka, Role::Leading, space, at, rng).map_err(|e| e.to_string())?;
    relay
        .create_space(&a_dev, &genesis)
        .map_err(|e| e.to_string())?;
    ingest(&mut a, &genesis)?;
    a.trust_partner(b_id);
    let mut b = Replica::open(
        kb,
        Role::Rebuilding,
        space,
        TrustAnchors {
            leading: Some(a_id),
            rebuilding: None,
        },
    );
    let mut log = vec![genesis];
    at += step;
    let add = a
        .compose_add_member(&b_cert, at)
        .map_err(|e| e.to_string())?;
    append(&relay, &a_dev, &add)?;
    log.push(add);
    ingest(&mut a, &log[1])?;
    b.ingest(&log)
        .error
        .map_or(Ok(()), |e| Err(e.to_string()))?;

    let mut last_checkin = None;
    while (log.len() as u64) < n {
        at += step;
        let i = log.len();
        let (by_b, content) = match (i % 4, last_checkin) {
            (3, Some(h)) => (false, Content::Ack { event: h }),
            (1, _) if i % 40 == 1 => (
                false,
                Content::RequestCheckIn {
                    note: "Could you let me know where you are?".into(),
                },
            ),
            _ => (
                true,
                Content::CheckIn {
                    text: format!("At the gym until seven ({i})"),
                    place: None,
                    answers: None,
                },
            ),
        };
        let (author, dev) = if by_b { (&b, &b_dev) } else { (&a, &a_dev) };
        let ev = author
            .compose(&content, at, rng)
            .map_err(|e| e.to_string())?;
        append(&relay, dev, &ev)?;
        if by_b {
            last_checkin = Some(ev.hash());
        }
        ingest(&mut a, &ev)?;
        ingest(&mut b, &ev)?;
        log.push(ev);
    }
    let events: Vec<String> = log
        .iter()
        .map(|e| format!("\"{}\"", STANDARD.encode(e.as_bytes())))
        .collect();
    Ok(format!(
        "{{\"keyfile\":{},\"space\":\"{}\",\"leading\":\"{}\",\"events\":[{}]}}",
        serde_json::to_string(&file).map_err(|e| e.to_string())?,
        space.to_hex(),
        hex::encode(a_id.to_bytes()),
        events.join(",")
    ))
}

fn ingest(r: &mut Replica, ev: &Event) -> Result<(), String> {
    match r.ingest(std::slice::from_ref(ev)).error {
        None => Ok(()),
        Some(e) => Err(e.to_string()),
    }
}

fn append(
    relay: &RelayClient,
    dev: &troth_core::keys::DeviceSecret,
    ev: &Event,
) -> Result<(), String> {
    match relay.append(dev, ev).map_err(|e| e.to_string())? {
        Appended::Done(_) => Ok(()),
        Appended::Stale(_) => Err("the relay's log moved on under the generator".into()),
    }
}
