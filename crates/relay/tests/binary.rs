//! The real `troth-relay` binary on a loopback port: start-up and settings,
//! restart persistence, and the crash test (kill -9 during appends).

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, SeedableRng};
use troth_core::event::{Event, EventHash};

#[tokio::test]
async fn runs_with_no_flags_in_a_fresh_home() {
    let home = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_troth-relay"));
    cmd.env("HOME", home.path())
        .env_remove("XDG_DATA_HOME")
        .env_remove("TROTH_RELAY_DATA")
        .env_remove("TROTH_RELAY_CONFIG")
        // Port 0 through the environment, so the test never collides with a relay on 8080.
        .env("TROTH_RELAY_LISTEN", "127.0.0.1:0")
        .env("TROTH_RELAY_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("spawn");
    let mut line = String::new();
    {
        use std::io::BufRead;
        let out = child.stdout.take().expect("stdout");
        std::io::BufReader::new(out)
            .read_line(&mut line)
            .expect("read");
    }
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .and_then(|a| a.parse().ok())
        .expect("address line");
    let r = Http::new(addr).req("GET", "/healthz", &[], vec![]).await;
    assert_eq!(r.status, 200);
    assert!(home.path().join(".local/share/troth-relay").is_dir());
    let _ = child.kill();
    let _ = child.wait();
}

fn start_err(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_troth-relay"));
    cmd.args(args)
        .env_remove("TROTH_RELAY_LISTEN")
        .env_remove("TROTH_RELAY_DATA")
        .env_remove("TROTH_RELAY_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run");
    assert!(!out.status.success(), "started with {args:?} {env:?}");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn bad_settings_are_named_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data = data.to_str().unwrap_or("/tmp/x");
    let e = start_err(&["--listen", "nope", "--data", data], &[]);
    assert!(e.contains("--listen"), "{e}");
    let e = start_err(
        &["--data", data],
        &[("TROTH_RELAY_LISTEN", "127.0.0.1:99999")],
    );
    assert!(e.contains("TROTH_RELAY_LISTEN"), "{e}");
    let cfg = dir.path().join("relay.toml");
    std::fs::write(&cfg, "[limits]\nper_ip_burst = 0\n").expect("write");
    let e = start_err(
        &["--config", cfg.to_str().unwrap_or(""), "--data", data],
        &[],
    );
    assert!(e.contains("limits.per_ip"), "{e}");
    std::fs::write(&cfg, "listen = \"127.0.0.1:0\"\nlimts = 3\n").expect("write");
    let e = start_err(
        &["--config", cfg.to_str().unwrap_or(""), "--data", data],
        &[],
    );
    assert!(e.contains("limts"), "{e}");
    let e = start_err(
        &["--config", "/nonexistent/relay.toml", "--data", data],
        &[],
    );
    assert!(e.contains("/nonexistent/relay.toml"), "{e}");
}

/// Issue 17, item 2: the operator's help words per language reach every
/// client through `GET /v1/help`; bad help is named at start.
#[tokio::test]
async fn help_words_set_by_the_operator_are_served_and_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // None set: an empty list (the client keeps its neutral default).
    let relay = Binary::start(&data, &[]);
    let r = relay.http().req("GET", "/v1/help", &[], vec![]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["help"], serde_json::json!([]));
    relay.kill9();

    let cfg = dir.path().join("relay.toml");
    std::fs::write(
        &cfg,
        r#"
[[help]]
lang = "fr"
words = "Si vous vous sentez en danger, vous n'êtes pas seul·e."
links = [ { label = "Ligne d'écoute", url = "tel:+33 1 23 45 67 89" },
          { label = "Un service près de chez vous", url = "https://example.org/aide" } ]

[[help]]
lang = "en-GB"
words = "If you feel unsafe, you are not alone."
"#,
    )
    .expect("write");
    let cfg_s = cfg.to_str().unwrap_or("");
    let relay = Binary::start(&data, &[("TROTH_RELAY_CONFIG", cfg_s)]);
    let r = relay.http().req("GET", "/v1/help", &[], vec![]).await;
    assert_eq!(r.status, 200);
    let help = r.json()["help"].clone();
    assert_eq!(help[0]["lang"], "fr");
    assert_eq!(help[0]["links"][0]["url"], "tel:+33 1 23 45 67 89");
    assert_eq!(help[1]["lang"], "en-GB");
    assert_eq!(help[1]["links"], serde_json::json!([]));
    relay.kill9();

    std::fs::write(
        &cfg,
        "[[help]]\nlang = \"en\"\nwords = \"Help\"\nlinks = [ { label = \"x\", url = \"javascript:alert(1)\" } ]\n",
    )
    .expect("write");
    let e = start_err(
        &["--config", cfg_s, "--data", data.to_str().unwrap_or("")],
        &[],
    );
    let first = e.lines().next().unwrap_or("");
    assert!(first.contains("help") && first.contains("https://"), "{e}");
}

#[tokio::test]
async fn restart_keeps_everything_and_replays_stay_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Binary::start(dir.path(), &[]);
    let http = relay.http();
    let mut s = Space::generate(21);
    assert_eq!(http.create(&s, now_ms()).await.status, 201);
    let mut replay = None;
    let t0 = Instant::now();
    for i in 0..20u8 {
        let ev = s.next_event(&[i; 64]);
        let path = format!("/v1/spaces/{}/events", s.hex());
        let body = event_body(&ev);
        let h = auth_headers(&s.dev, s.id, "POST", &path, &body, now_ms());
        let r = http.req("POST", &path, &h, body.clone()).await;
        assert_eq!(r.status, 201);
        s.events.push(ev);
        replay = Some((path, h, body));
    }
    eprintln!("20 appends took {:?}", t0.elapsed());
    let before = http.read_all(&s, now_ms()).await;
    assert_eq!(before.len(), 21);
    relay.kill9();

    let relay = Binary::start(dir.path(), &[]);
    let http = relay.http();
    assert_eq!(http.read_all(&s, now_ms()).await, before);
    let (path, h, body) = replay.expect("a request");
    let r = http.req("POST", &path, &h, body).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "auth_replayed"));
    // And it still takes appends on the same chain.
    let ev = s.next_event(b"after restart");
    assert_eq!(http.append(&mut s, ev, now_ms()).await.status, 201);
    assert_chain(&http.read_all(&s, now_ms()).await);
}

/// The crash test. `TROTH_CRASH_CYCLES` sets the number of kill -9 cycles
/// (default 20; the long run in docs/RELAY.md uses 1000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_kill9_loses_nothing_acknowledged() {
    let cycles: usize = std::env::var("TROTH_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("TROTH_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash test: {cycles} cycles, TROTH_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    // All clients share 127.0.0.1: lift the per-address and per-device limits.
    let cfg_dir = tempfile::tempdir().expect("tempdir");
    let cfg = cfg_dir.path().join("relay.toml");
    std::fs::write(
        &cfg,
        "[limits]\nper_ip_per_second = 1000000\nper_ip_burst = 1000000\nper_device_per_second = 1000000\nper_device_burst = 1000000\n",
    )
    .expect("write config");
    let cfg = cfg.to_str().expect("utf-8 path").to_string();
    let env = [("TROTH_RELAY_CONFIG", cfg.as_str())];
    const CLIENTS: usize = 6;
    let mut spaces: Vec<Space> = (0..CLIENTS as u64)
        .map(|i| Space::generate(seed ^ ((i + 1) * 7919)))
        .collect();
    let mut acked: Vec<BTreeMap<u64, Vec<u8>>> = vec![BTreeMap::new(); CLIENTS];
    let mut checked: Vec<(u64, EventHash)> = vec![(0, EventHash::ZERO); CLIENTS];
    let started = Instant::now();
    let mut total_acked = 0usize;
    for cycle in 0..cycles {
        let relay = Binary::start(dir.path(), &env);
        let http = relay.http();
        // Check: everything acknowledged is there, byte-identical, and the chain holds.
        for (i, s) in spaces.iter_mut().enumerate() {
            if acked[i].is_empty() && cycle == 0 {
                let r = http.create(s, now_ms()).await;
                assert_eq!(r.status, 201);
                acked[i].insert(0, s.events[0].as_bytes().to_vec());
                continue;
            }
            // Events before `checked[i]` were checked in an earlier cycle; every
            // 100th cycle re-reads the whole log (a full read each cycle would
            // make the long run quadratic).
            let from = if cycle % 100 == 0 { 0 } else { checked[i].0 };
            let prev = if from == 0 {
                EventHash::ZERO
            } else {
                checked[i].1
            };
            let part = http.read_from(s, from, now_ms()).await;
            for (seq, bytes) in acked[i].range(from..) {
                assert_eq!(
                    part.get((*seq - from) as usize),
                    Some(bytes),
                    "cycle {cycle}: space {i} lost acknowledged event {seq} (seed {seed})"
                );
            }
            let last = assert_chain_from(from, prev, &part);
            checked[i] = (from + part.len() as u64, last);
            // Events written but not acknowledged before the kill may be there too: adopt them.
            s.events.truncate(from as usize);
            s.events
                .extend(part.iter().filter_map(|b| Event::decode(b).ok()));
        }
        // Drive appends from concurrent clients, then kill -9 at a random moment.
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for (i, mut s) in std::mem::take(&mut spaces).into_iter().enumerate() {
            let http = http.clone();
            let stop = stop.clone();
            let mut prng = rand::rngs::StdRng::seed_from_u64(rng.r#gen());
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let ev = s.next_event(&random_payload(&mut prng, 600));
                    let bytes = ev.as_bytes().to_vec();
                    let path = format!("/v1/spaces/{}/events", s.hex());
                    let body = event_body(&ev);
                    let h = auth_headers(&s.dev, s.id, "POST", &path, &body, now_ms());
                    match http.send("POST", &path, &h, body).await {
                        Ok(r) if r.status == 201 => {
                            got.push((ev.header().seq, bytes));
                            s.events.push(ev);
                        }
                        Ok(r) => panic!(
                            "space {i}: unexpected {} {}",
                            r.status,
                            String::from_utf8_lossy(&r.body)
                        ),
                        Err(_) => break, // the relay died under us: this one is not acknowledged
                    }
                }
                (s, got)
            }));
        }
        let run_ms = rng.gen_range(20..400);
        if std::env::var("TROTH_CRASH_DEBUG").is_ok() {
            eprintln!("cycle {cycle} at {:?}, run {run_ms} ms", started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(run_ms)).await;
        relay.kill9();
        stop.store(true, Ordering::Relaxed);
        for (i, t) in tasks.into_iter().enumerate() {
            let (s, got) = t.await.expect("client task");
            total_acked += got.len();
            acked[i].extend(got);
            spaces.push(s);
        }
    }
    // A last restart and check.
    let relay = Binary::start(dir.path(), &env);
    let http = relay.http();
    for (i, s) in spaces.iter().enumerate() {
        let all = http.read_all(s, now_ms()).await;
        for (seq, bytes) in &acked[i] {
            assert_eq!(
                all.get(*seq as usize),
                Some(bytes),
                "final: space {i} lost acknowledged event {seq} (seed {seed})"
            );
        }
        assert_chain(&all);
    }
    eprintln!(
        "crash test: {cycles} cycles, {total_acked} acknowledged appends, {:?}",
        started.elapsed()
    );
    assert!(total_acked > 0);
}

/// The binary on PostgreSQL: `migrate` (twice: idempotent), settings by
/// environment and from a `_FILE` secret, kill -9 and restart with every
/// acknowledged event and the nonces kept, and bad store settings named.
#[tokio::test]
async fn postgres_store_by_settings_survives_kill9_and_names_bad_settings() {
    let db = pg::fresh_database().await;
    let url = pg::url(&db);
    for _ in 0..2 {
        let out = Command::new(env!("CARGO_BIN_EXE_troth-relay"))
            .args(["--store", "postgres", "--database-url", &url, "migrate"])
            .env("TROTH_RELAY_DATA", "/nonexistent")
            .env_remove("TROTH_RELAY_CONFIG")
            .output()
            .expect("run migrate");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("version 3"));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Binary::start(
        dir.path(),
        &[
            ("TROTH_RELAY_STORE", "postgres"),
            ("TROTH_RELAY_DATABASE_URL", &url),
        ],
    );
    let http = relay.http();
    let r = http.req("GET", "/healthz", &[], vec![]).await;
    assert_eq!(r.json()["store"], "postgres");
    let mut s = Space::generate(31);
    assert_eq!(http.create(&s, now_ms()).await.status, 201);
    let mut replay = None;
    for i in 0..10u8 {
        let ev = s.next_event(&[i; 64]);
        let path = format!("/v1/spaces/{}/events", s.hex());
        let body = event_body(&ev);
        let h = auth_headers(&s.dev, s.id, "POST", &path, &body, now_ms());
        let r = http.req("POST", &path, &h, body.clone()).await;
        assert_eq!(r.status, 201);
        s.events.push(ev);
        replay = Some((path, h, body));
    }
    let before = http.read_all(&s, now_ms()).await;
    assert_eq!(before.len(), 11);
    relay.kill9();
    // Nothing in the sled folder: everything is in the database.
    assert!(!dir.path().join("db").exists());

    let secret = dir.path().join("db-url");
    std::fs::write(&secret, format!("{url}\n")).expect("write");
    let relay = Binary::start(
        dir.path(),
        &[
            ("TROTH_RELAY_STORE", "postgres"),
            (
                "TROTH_RELAY_DATABASE_URL_FILE",
                secret.to_str().unwrap_or(""),
            ),
        ],
    );
    let http = relay.http();
    assert_eq!(http.read_all(&s, now_ms()).await, before);
    let (path, h, body) = replay.expect("a request");
    let r = http.req("POST", &path, &h, body).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "auth_replayed"));
    let ev = s.next_event(b"after restart");
    assert_eq!(http.append(&mut s, ev, now_ms()).await.status, 201);
    assert_chain(&http.read_all(&s, now_ms()).await);
    drop(relay);

    let data = dir.path().join("data");
    let data = data.to_str().unwrap_or("/tmp/x");
    let e = start_err(&["--data", data, "--store", "mysql"], &[]);
    assert!(e.contains("`--store`") && e.contains("mysql"), "{e}");
    let e = start_err(&["--data", data], &[("TROTH_RELAY_STORE", "postgres")]);
    assert!(e.contains("--database-url") && e.contains("missing"), "{e}");
    let e = start_err(
        &["--data", data, "--store", "postgres"],
        &[("TROTH_RELAY_DATABASE_URL", "postgres://u:sekrit@h:port/db")],
    );
    assert!(e.contains("`TROTH_RELAY_DATABASE_URL`"), "{e}");
    assert!(!e.contains("sekrit"), "the password is repeated: {e}");
    // A database nobody listens on: named, and the relay does not start.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let e = start_err(
        &[
            "--data",
            data,
            "--store",
            "postgres",
            "--database-url",
            &format!("postgres://postgres@127.0.0.1:{closed}/troth"),
        ],
        &[],
    );
    assert!(e.contains("--database-url"), "{e}");
}
