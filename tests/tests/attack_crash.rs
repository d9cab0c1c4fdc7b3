//! Crash safety at random kill points, including during start-up: the real
//! relay binary is killed with SIGKILL (`Child::kill`) while several clients
//! append, or while it is still opening its database, then restarted on the
//! same data. Every acknowledged event must be there, byte-identical, and each
//! space's chain must verify.
//!
//! `TROTH_CRASH_CYCLES` sets the cycles (default 12; the documented long run
//! is 1000), `TROTH_CRASH_SEED` replays a run.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use troth_client::relay::{Appended, RelayClient};
use troth_core::SpaceId;
use troth_core::event::{Body, Control, Envelope, Event, EventHash, Header};
use troth_core::keyfile::KeyBundle;
use troth_core::log::{ChainVerifier, TrustAnchors};
use troth_tests::cli::relay_bin;

fn spawn(data: &std::path::Path, config: &std::path::Path) -> Child {
    Command::new(relay_bin())
        .args(["--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data")
        .arg(data)
        .env("TROTH_RELAY_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the relay")
}

/// Starts the relay and waits until it listens; returns it and its URL.
fn start(data: &std::path::Path, config: &std::path::Path) -> (Child, String) {
    let mut child = spawn(data, config);
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("relay line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("the relay did not start: {line:?}"))
        .to_owned();
    (child, format!("http://{addr}"))
}

fn kill(mut child: Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Writer {
    keys: KeyBundle,
    space: SpaceId,
    head: (u64, EventHash),
    acked: BTreeMap<u64, Vec<u8>>,
}

impl Writer {
    fn new(seed: u64) -> Writer {
        let mut rng = StdRng::seed_from_u64(seed);
        Writer {
            keys: KeyBundle::generate(&mut rng, now_ms()),
            space: SpaceId::random(&mut rng),
            head: (0, EventHash::ZERO),
            acked: BTreeMap::new(),
        }
    }

    fn genesis(&self) -> Event {
        let dev = self.keys.cert.device().id();
        Event::sign(
            Header {
                space: self.space,
                seq: 0,
                prev: EventHash::ZERO,
                author: dev,
                epoch: 0,
                timestamp_ms: now_ms(),
            },
            Body::Control(Control::Genesis {
                commitment: troth_core::event::KeyCommitment([0; 32]),
                cert: self.keys.cert.clone(),
                envelopes: vec![Envelope {
                    epoch: 0,
                    device: dev,
                    age: vec![0; 200],
                }],
            }),
            &self.keys.device,
        )
    }

    fn next(&self, payload: usize) -> Event {
        Event::sign(
            Header {
                space: self.space,
                seq: self.head.0 + 1,
                prev: self.head.1,
                author: self.keys.cert.device().id(),
                epoch: 0,
                timestamp_ms: now_ms(),
            },
            Body::Sealed(vec![(self.head.0 % 251) as u8; payload]),
            &self.keys.device,
        )
    }

    /// Everything the relay has; checks acknowledged events and the chain.
    fn check(&mut self, url: &str, what: &str) {
        let client = RelayClient::new(url).expect("client");
        let mut events: Vec<Event> = Vec::new();
        loop {
            let page = client
                .read(&self.keys.device, self.space, events.len() as u64)
                .unwrap_or_else(|e| panic!("{what}: read failed: {e}"));
            let done = !page.more || page.events.is_empty();
            events.extend(page.events);
            if done {
                break;
            }
        }
        for (seq, bytes) in &self.acked {
            assert_eq!(
                events.get(*seq as usize).map(|e| e.as_bytes()),
                Some(bytes.as_slice()),
                "{what}: acknowledged event {seq} lost or changed"
            );
        }
        let mut v = ChainVerifier::new(
            self.space,
            TrustAnchors {
                leading: Some(self.keys.identity.public()),
                rebuilding: None,
            },
        );
        let ext = v.extend(&events);
        assert_eq!(ext.error, None, "{what}: the chain does not verify");
        // Events written but not acknowledged before a kill may be there too.
        self.head = v.head().expect("genesis is acknowledged");
    }
}

#[test]
fn kill9_at_random_points_loses_nothing_acknowledged() {
    let cycles: usize = std::env::var("TROTH_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let seed: u64 = std::env::var("TROTH_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash test: {cycles} cycles, TROTH_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("db");
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        "[limits]\nper_ip_per_second = 1000000\nper_ip_burst = 1000000\n\
         per_device_per_second = 1000000\nper_device_burst = 1000000\n",
    )
    .expect("config");

    let mut writers: Vec<Writer> = (0..4).map(|i| Writer::new(seed ^ (i + 1))).collect();
    let (child, url) = start(&data, &config);
    let client = RelayClient::new(&url).expect("client");
    for w in &mut writers {
        let g = w.genesis();
        w.head = client.create_space(&w.keys.device, &g).expect("create");
        w.acked.insert(0, g.as_bytes().to_vec());
    }
    kill(child);

    let (mut startup_kills, mut acked_total) = (0, 0usize);
    for cycle in 0..cycles {
        // A third of the cycles first kill the relay while it starts up
        // (opening and recovering the database).
        if rng.gen_bool(1.0 / 3.0) {
            let child = spawn(&data, &config);
            std::thread::sleep(Duration::from_millis(rng.gen_range(0..40)));
            kill(child);
            startup_kills += 1;
        }
        let (child, url) = start(&data, &config);
        for (i, w) in writers.iter_mut().enumerate() {
            w.check(&url, &format!("cycle {cycle}, space {i} (seed {seed})"));
        }
        // Concurrent writers, killed at a random moment.
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = std::mem::take(&mut writers)
            .into_iter()
            .map(|mut w| {
                let url = url.clone();
                let stop = stop.clone();
                let payload = rng.gen_range(100..2000);
                std::thread::spawn(move || {
                    let client = RelayClient::new(&url).expect("client");
                    let mut n = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let ev = w.next(payload);
                        match client.append(&w.keys.device, &ev) {
                            Ok(Appended::Done(h)) => {
                                w.acked.insert(ev.header().seq, ev.as_bytes().to_vec());
                                w.head = h;
                                n += 1;
                            }
                            Ok(Appended::Stale(h)) => panic!("a lone writer lost a race: {h:?}"),
                            Err(_) => break, // the relay died: not acknowledged
                        }
                    }
                    (w, n)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(10..300)));
        kill(child);
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            let (w, n) = t.join().expect("writer");
            acked_total += n;
            writers.push(w);
        }
    }
    let (child, url) = start(&data, &config);
    for (i, w) in writers.iter_mut().enumerate() {
        w.check(&url, &format!("final, space {i} (seed {seed})"));
    }
    kill(child);
    eprintln!(
        "crash test: {cycles} cycles ({startup_kills} killed during start-up), {acked_total} acknowledged appends"
    );
    assert!(acked_total > 0);
}
