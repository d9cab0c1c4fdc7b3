//! Crash and failover on a real three-node PostgreSQL cluster (a primary
//! and two synchronous standbys, as ../shared/TOOLCHAIN.md builds it): two
//! real relay processes (the binary) reach it through a multi-host URL with
//! `target_session_attrs=read-write`, and several clients append through
//! them while, each cycle, (a) a relay is `kill -9`ed and restarted and
//! (b) the primary is `kill -9`ed and the standby that received the most WAL
//! is promoted. After each cycle every acknowledged event is present,
//! byte-identical, at its position; every chain verifies; no position is
//! written twice. A client whose append's answer was lost looks before it
//! composes again (a stale head that is its own event counts as done),
//! exactly as troth-client's `Session::post_with` does.
//!
//! CI runs one cycle; `cargo xtask failover` runs `TROTH_FAILOVER_CYCLES`
//! (default 20) and prints the figures.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use troth_core::event::EventHash;

/// Writers per space, spaces.
const WRITERS: usize = 2;
const SPACES: usize = 2;

/// The relays' current addresses (a load balancer's view).
type Relays = Arc<Mutex<Vec<SocketAddr>>>;

#[derive(Default)]
struct Tally {
    /// (space index, seq, bytes) of every append answered 201.
    acked: Mutex<Vec<(usize, u64, Vec<u8>)>>,
    /// When each of those was answered.
    acked_at: Mutex<Vec<Instant>>,
    /// Appends whose answer was lost (or a 409 named their own event) and
    /// that the writer found in the log.
    resolved: AtomicU64,
    /// Appends whose answer was lost and that were not in the log.
    not_in: AtomicU64,
    /// (space index, seq, bytes) of appends whose answer was lost: found
    /// in the log at once, or not (yet).
    found: Mutex<Vec<(usize, u64, Vec<u8>)>>,
    unsure: Mutex<Vec<(usize, u64, Vec<u8>)>>,
    lost_races: AtomicU64,
    errors: AtomicU64,
}

fn relay_at(relays: &Relays, i: usize) -> Http {
    let g = relays.lock().unwrap_or_else(|p| p.into_inner());
    Http::new(g[i % g.len()])
}

/// One request with a deadline; `None` if it failed or took too long.
async fn try_req(
    http: &Http,
    method: &str,
    path: &str,
    h: &[(String, String)],
    body: Vec<u8>,
) -> Option<Resp> {
    match tokio::time::timeout(Duration::from_secs(15), http.send(method, path, h, body)).await {
        Ok(Ok(r)) => Some(r),
        _ => None,
    }
}

/// The head, and the event at `seq` if the log reaches it, as a relay
/// answers; retried through any relay until one answers.
async fn look(
    relays: &Relays,
    s: &Space,
    seq: u64,
    mut pick: usize,
) -> (u64, EventHash, Option<Vec<u8>>) {
    let path = format!("/v1/spaces/{}/events?from={seq}&limit=1", s.hex());
    let t = Instant::now();
    loop {
        let http = relay_at(relays, pick);
        let h = auth_headers(&s.dev, s.id, "GET", &path, &[], now_ms());
        if let Some(r) = try_req(&http, "GET", &path, &h, vec![]).await {
            if r.status == 200 {
                let v = r.json();
                let seq_h = v["head"]["seq"].as_u64().unwrap_or(0);
                let mut hash = [0u8; 32];
                let _ = hex::decode_to_slice(v["head"]["hash"].as_str().unwrap_or(""), &mut hash);
                use base64::Engine as _;
                let ev = v["events"][0]
                    .as_str()
                    .and_then(|e| base64::engine::general_purpose::STANDARD.decode(e).ok());
                return (seq_h, EventHash(hash), ev);
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "no relay answered a read for 120 s"
        );
        pick += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn writer(
    w: usize,
    si: usize,
    s: Arc<Space>,
    relays: Relays,
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
) {
    let (mut seq, mut prev, _) = look(&relays, &s, 0, w).await;
    let mut pick = w;
    let mut n: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let mut payload = vec![w as u8, si as u8];
        payload.extend_from_slice(&n.to_be_bytes());
        let ev = s.event_at(seq + 1, prev, &payload);
        let path = format!("/v1/spaces/{}/events", s.hex());
        let body = event_body(&ev);
        let h = auth_headers(&s.dev, s.id, "POST", &path, &body, now_ms());
        let r = try_req(&relay_at(&relays, pick), "POST", &path, &h, body).await;
        let (own_seq, own_hash) = (ev.header().seq, ev.hash());
        match r {
            Some(r) if r.status == 201 => {
                tally.acked.lock().unwrap_or_else(|p| p.into_inner()).push((
                    si,
                    own_seq,
                    ev.as_bytes().to_vec(),
                ));
                tally
                    .acked_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Instant::now());
                (seq, prev) = (own_seq, own_hash);
                continue;
            }
            Some(r) if r.status == 409 && r.error_code() == "stale_head" => {
                let v = r.json();
                let hs = v["head"]["seq"].as_u64().unwrap_or(0);
                let mut hh = [0u8; 32];
                let _ = hex::decode_to_slice(v["head"]["hash"].as_str().unwrap_or(""), &mut hh);
                if (hs, EventHash(hh)) == (own_seq, own_hash) {
                    // An earlier try of this very event went through.
                    tally.resolved.fetch_add(1, Ordering::Relaxed);
                } else {
                    tally.lost_races.fetch_add(1, Ordering::Relaxed);
                }
                (seq, prev) = (hs, EventHash(hh));
                continue;
            }
            _ => {}
        }
        // The answer was lost, or the relay failed: the append may or may
        // not be in. Look (through whichever relay answers) before composing again.
        tally.errors.fetch_add(1, Ordering::Relaxed);
        pick += 1;
        let (hs, hh, at) = look(&relays, &s, own_seq, pick).await;
        let entry = (si, own_seq, ev.as_bytes().to_vec());
        if at.as_deref() == Some(ev.as_bytes()) {
            tally.resolved.fetch_add(1, Ordering::Relaxed);
            tally
                .found
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(entry);
        } else {
            tally.not_in.fetch_add(1, Ordering::Relaxed);
            tally
                .unsure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(entry);
        }
        (seq, prev) = (hs, hh);
    }
}

/// Every acknowledged event is in its space's log, byte-identical; every
/// log verifies and has each position once. Returns the logs' lengths.
async fn verify(relays: &Relays, spaces: &[Arc<Space>], tally: &Tally) -> Vec<usize> {
    verify_logs(relays, spaces, tally)
        .await
        .iter()
        .map(Vec::len)
        .collect()
}

/// [`verify`], returning the logs.
async fn verify_logs(relays: &Relays, spaces: &[Arc<Space>], tally: &Tally) -> Vec<Vec<Vec<u8>>> {
    let acked = tally
        .acked
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut lens = Vec::new();
    for (si, s) in spaces.iter().enumerate() {
        let log = {
            let t = Instant::now();
            loop {
                let http = relay_at(relays, si);
                let got = tokio::time::timeout(Duration::from_secs(30), async {
                    let mut out: Vec<Vec<u8>> = Vec::new();
                    loop {
                        let path = format!(
                            "/v1/spaces/{}/events?from={}&limit=1000",
                            s.hex(),
                            out.len()
                        );
                        let h = auth_headers(&s.dev, s.id, "GET", &path, &[], now_ms());
                        let r = http.send("GET", &path, &h, vec![]).await.ok()?;
                        if r.status != 200 {
                            return None;
                        }
                        let v = r.json();
                        use base64::Engine as _;
                        for e in v["events"].as_array().cloned().unwrap_or_default() {
                            out.push(
                                base64::engine::general_purpose::STANDARD
                                    .decode(e.as_str().unwrap_or(""))
                                    .ok()?,
                            );
                        }
                        if !v["more"].as_bool().unwrap_or(false) {
                            return Some(out);
                        }
                    }
                })
                .await;
                if let Ok(Some(log)) = got {
                    break log;
                }
                assert!(
                    t.elapsed() < Duration::from_secs(120),
                    "could not read space {si}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        assert_chain(&log);
        for (asi, seq, bytes) in acked.iter().filter(|a| a.0 == si) {
            let at = usize::try_from(*seq).unwrap_or(usize::MAX);
            assert!(
                log.get(at) == Some(bytes),
                "acknowledged event {seq} of space {asi} is missing or changed (log has {})",
                log.len()
            );
        }
        lens.push(log);
    }
    lens
}

/// How many events the primary's tables hold, and how many distinct positions.
fn count_rows(cluster: &pg::Cluster, db: &str) -> (u64, u64) {
    let t = Instant::now();
    loop {
        let r = cluster.psql_in(
            cluster.primary,
            db,
            "SELECT count(*) || ' ' || count(DISTINCT (sid, seq)) FROM events",
        );
        if let Some((a, b)) = r.as_deref().ok().and_then(|s| s.split_once(' ')) {
            if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                return (a, b);
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "could not count rows: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start_relay(url: &str, data: &std::path::Path) -> Binary {
    Binary::start(
        data,
        &[
            ("TROTH_RELAY_STORE", "postgres"),
            ("TROTH_RELAY_DATABASE_URL", url),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_appends_survive_relay_crashes_and_primary_failover() {
    let cycles: usize = std::env::var("TROTH_FAILOVER_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut cluster = tokio::task::spawn_blocking(pg::Cluster::start)
        .await
        .expect("cluster");
    let db = "troth_failover";
    cluster.create_database(db);
    let url = cluster.url(db);
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let mut procs = vec![
        start_relay(&url, dirs[0].path()),
        start_relay(&url, dirs[1].path()),
    ];
    let relays: Relays = Arc::new(Mutex::new(procs.iter().map(|p| p.addr).collect()));

    let mut spaces = Vec::new();
    for i in 0..SPACES {
        let s = Space::generate(7000 + i as u64);
        let r = relay_at(&relays, i).create(&s, now_ms()).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        spaces.push(Arc::new(s));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for (si, s) in spaces.iter().enumerate() {
        for k in 0..WRITERS {
            tasks.push(tokio::spawn(writer(
                si * WRITERS + k,
                si,
                s.clone(),
                relays.clone(),
                stop.clone(),
                tally.clone(),
            )));
        }
    }

    let acked_now = || tally.acked.lock().map(|g| g.len()).unwrap_or(0);
    // Waits until appends are acknowledged again (after a crash); returns how long it took.
    let resumed = |from: usize| {
        let tally = tally.clone();
        async move {
            let t = Instant::now();
            while tally.acked.lock().map(|g| g.len()).unwrap_or(0) < from + 5 {
                assert!(
                    t.elapsed() < Duration::from_secs(120),
                    "appends did not resume"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            t.elapsed()
        }
    };
    let started = Instant::now();
    let mut downs = Vec::new();
    let mut resumes = Vec::new();
    for cycle in 0..cycles {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        // (a) A relay crashes and comes back (a new port, as a replaced instance would).
        let victim = cycle % 2;
        let old = procs.remove(victim);
        old.kill9();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let fresh = start_relay(&url, dirs[victim].path());
        relays.lock().unwrap_or_else(|p| p.into_inner())[victim] = fresh.addr;
        procs.insert(victim, fresh);
        resumed(acked_now()).await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        // (b) The primary crashes; the most advanced standby takes over.
        let before = acked_now();
        let down = tokio::task::spawn_blocking({
            let mut c = std::mem::replace(
                &mut cluster,
                pg::Cluster {
                    dir: Default::default(),
                    nodes: Vec::new(),
                    primary: 0,
                },
            );
            move || {
                let d = c.fail_over();
                (c, d)
            }
        })
        .await
        .expect("failover");
        cluster = down.0;
        let (killed, promoted_after) = down.1;
        downs.push(promoted_after);
        resumed(before).await;
        // From the primary's death to the first append acknowledged by the new one.
        let first = tally
            .acked_at
            .lock()
            .map(|g| g.iter().copied().find(|t| *t > killed + promoted_after))
            .ok()
            .flatten()
            .expect("an append after the failover");
        resumes.push(first - killed);
        let lens = verify(&relays, &spaces, &tally).await;
        let (rows, distinct) = count_rows(&cluster, db);
        assert_eq!(rows, distinct, "a position was written twice");
        // (Writers go on meanwhile: the tables may already hold more.)
        assert!(rows >= lens.iter().map(|n| *n as u64).sum::<u64>());
        eprintln!(
            "cycle {}: primary now {}, promoted {:?} after the kill, first append acknowledged {:?} after the kill, logs {:?}, acknowledged {}",
            cycle + 1,
            cluster.nodes[cluster.primary].0,
            promoted_after,
            resumes.last().copied().unwrap_or_default(),
            lens,
            acked_now()
        );
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("writer");
    }
    let logs = verify_logs(&relays, &spaces, &tally).await;
    let lens: Vec<usize> = logs.iter().map(Vec::len).collect();
    let (rows, distinct) = count_rows(&cluster, db);
    assert_eq!(rows, distinct, "a position was written twice");
    assert_eq!(
        rows,
        lens.iter().map(|n| *n as u64).sum::<u64>(),
        "the tables hold other events than the logs show"
    );
    let acked = acked_now();
    // Every event in the logs is accounted for: a genesis, an acknowledged
    // append, one whose lost answer its writer found in the log, or one
    // whose lost answer looked absent and that committed afterwards (the
    // statement was still running when the writer looked).
    let in_log = |(si, seq, bytes): &(usize, u64, Vec<u8>)| {
        logs[*si].get(usize::try_from(*seq).unwrap_or(usize::MAX)) == Some(bytes)
    };
    let found = tally.found.lock().map(|g| g.clone()).unwrap_or_default();
    assert!(
        found.iter().all(in_log),
        "an event found after a lost answer is gone"
    );
    let late = tally
        .unsure
        .lock()
        .map(|g| g.iter().filter(|e| in_log(e)).count())
        .unwrap_or(0);
    assert_eq!(
        lens.iter().sum::<usize>(),
        SPACES + acked + found.len() + late,
        "the logs hold events no writer accounts for"
    );
    eprintln!(
        "FAILOVER SUMMARY: {cycles} cycles in {:?}; {acked} appends acknowledged, {} answers lost and found in the log, {} lost and not in ({late} of them committed after the writer looked), {} lost races, {} failed requests; logs {:?}; promotion at most {:?} after the kill; first acknowledged append at most {:?} after the kill",
        started.elapsed(),
        tally.resolved.load(Ordering::Relaxed),
        tally.not_in.load(Ordering::Relaxed),
        tally.lost_races.load(Ordering::Relaxed),
        tally.errors.load(Ordering::Relaxed),
        lens,
        downs.iter().max().copied().unwrap_or_default(),
        resumes.iter().max().copied().unwrap_or_default(),
    );
    assert!(acked > 0);
    for p in procs {
        p.kill9();
    }
}
