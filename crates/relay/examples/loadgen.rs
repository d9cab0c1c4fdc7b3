//! Load generator for the relay (a benchmark, not a test).
//!
//! ```text
//! ulimit -n 65536; cargo run --release -p troth-relay --example loadgen
//! ```
//!
//! Starts, in this one run and all on 127.0.0.1: an empty axum handler (the
//! baseline) and the relay in-process on a sled database in a temporary
//! folder; drives each with 64 keep-alive connections for a few seconds and
//! reports requests/s and p50/p99 latency for the empty handler, authenticated
//! durable appends (one space per connection) and paged reads, and for the
//! store alone (an append to the same sled store and its group commit behind
//! a bare handler: the issue's reference point) and the floor under appends
//! (the same, with the event's signature checked as the relay checks it: the
//! work any append API must do), and the floor under reads (pages from that
//! store written as the relay writes them, without authentication); then
//! starts the
//! relay in a child process, opens idle live connections to it (10,000, or as
//! many as the open-files limit allows) and reports the relay's resident
//! memory per connection. Each connection's device opens a request session
//! (one signed request) and its requests carry the session's MAC;
//! `--signed` signs every request instead. Events and request
//! authentication are prepared before the timed phase (each request's
//! address and headers parsed too), so the client spends its CPU on HTTP
//! only. Each workload runs in `--rounds N` (5) rounds of `--secs N` (2)
//! seconds, each right after a round of the empty handler. Options:
//! `--conns N` (64), `--idle N` (10000), `--page N` (10 events per read),
//! `--signed`, `--memory` (the in-memory store), `--appends-only`,
//! `--idle-only`, `--oneshot` (the relay's own CPU per request, no network),
//! `--push` (notifications on: each append also goes to the push task),
//! `--target ADDR` (drive appends against a relay already running) and
//! `--serve-relay DIR` (run only the relay, for a profiler to attach to).
//!
//! `--postgres` compares instead: the relay on sled and on PostgreSQL with
//! one and two relay processes (each a child process; spaces routed to
//! one relay each), appends and paged reads, beside the empty handler, with
//! each figure's ratio to sled's (`postgres_comparison`; options `--secs`,
//! `--rounds` (3), `--conns`, `--page`, `--pool N` (16 per relay),
//! `--database-url URL` to use a running server instead of starting one).
#![forbid(unsafe_code)]

/// mimalloc: the relay allocates on every request, and glibc's malloc was a
/// fifth of a read's CPU (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use rand::{RngCore, SeedableRng};
use serde_json::json;
use troth_core::SpaceId;
use troth_core::event::{Body, Control, Envelope, Event, EventHash, Header};
use troth_core::keys::{DeviceSecret, IdentitySecret};
use troth_core::request::RequestAuth;
use troth_core::session::{SessionId, SessionKey, SessionOpening};
use troth_relay::store::SledStore;
use troth_relay::{AppState, Limits, SystemClock};

/// A request prepared before the timed phase: method, address, headers
/// (parsed once, so sending one clones reference-counted parts) and body.
type Req = (hyper::Method, hyper::Uri, Headers, Bytes);
type Headers = Vec<(HeaderName, HeaderValue)>;

/// Parses a prepared request's address and headers (not timed).
fn req(
    method: hyper::Method,
    path: &str,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
) -> Req {
    let uri = hyper::Uri::try_from(path).expect("the load generator's own paths are valid");
    let headers = headers
        .into_iter()
        .map(|(k, v)| {
            (
                HeaderName::from_static(k),
                HeaderValue::try_from(v).expect("authentication headers are ASCII"),
            )
        })
        .collect();
    (method, uri, headers, body)
}

/// The request to send: the prepared parts, cloned.
fn request(
    m: &hyper::Method,
    u: &hyper::Uri,
    h: &Headers,
    b: &Bytes,
) -> hyper::Request<Full<Bytes>> {
    let mut r = hyper::Request::new(Full::new(b.clone()));
    *r.method_mut() = m.clone();
    *r.uri_mut() = u.clone();
    let map = r.headers_mut();
    map.reserve(h.len() + 2);
    map.insert(header::HOST, HeaderValue::from_static("bench"));
    map.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (k, v) in h {
        map.insert(k.clone(), v.clone());
    }
    r
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct SpaceGen {
    id: SpaceId,
    dev: DeviceSecret,
    head: EventHash,
    seq: u64,
    /// A request session and its last counter, once opened.
    session: Option<(SessionKey, u64)>,
}

impl SpaceGen {
    fn new(seed: u64) -> (Self, Event) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let identity = IdentitySecret::generate(&mut rng);
        let dev = DeviceSecret::generate(&mut rng);
        let cert = identity.certify(&dev, now_ms());
        let space = SpaceId(id);
        let g = Event::sign(
            Header {
                space,
                seq: 0,
                prev: EventHash::ZERO,
                author: dev.public().id(),
                epoch: 0,
                timestamp_ms: now_ms(),
            },
            Body::Control(Control::Genesis {
                commitment: troth_core::event::KeyCommitment([0; 32]),
                cert,
                envelopes: vec![Envelope {
                    epoch: 0,
                    device: dev.public().id(),
                    age: vec![7; 200],
                }],
            }),
            &dev,
        );
        (
            SpaceGen {
                id: space,
                head: g.hash(),
                dev,
                seq: 0,
                session: None,
            },
            g,
        )
    }

    /// Session headers when a session is open, signed headers otherwise.
    fn auth(&mut self, method: &str, path: &str, body: &[u8]) -> Vec<(&'static str, String)> {
        match &mut self.session {
            Some((key, counter)) => {
                *counter += 1;
                key.authenticate(method, path, body, now_ms(), *counter)
                    .to_headers()
                    .into_iter()
                    .collect()
            }
            None => self.signed(method, path, body),
        }
    }

    /// A signed request that opens a session, and its opening half.
    fn session_request(&self) -> (Req, SessionOpening) {
        let opening = SessionOpening::new(&mut rand::thread_rng());
        let body = json!({ "ephemeral": STANDARD.encode(opening.public()) })
            .to_string()
            .into_bytes();
        let path = format!("/v1/spaces/{}/sessions", self.id.to_hex());
        let h = self.signed("POST", &path, &body);
        (
            req(hyper::Method::POST, &path, h, Bytes::from(body)),
            opening,
        )
    }

    /// Completes the session from the relay's answer.
    fn session_opened(&mut self, opening: SessionOpening, answer: &[u8]) -> anyhow::Result<()> {
        let v: serde_json::Value = serde_json::from_slice(answer)?;
        let id = SessionId::from_b64(v["session"].as_str().unwrap_or(""))?;
        let theirs: [u8; 32] = STANDARD
            .decode(v["ephemeral"].as_str().unwrap_or(""))?
            .try_into()
            .map_err(|_| anyhow::anyhow!("ephemeral key length"))?;
        let key = opening.finish(self.id, self.dev.public().id(), id, theirs)?;
        self.session = Some((key, 0));
        Ok(())
    }

    fn signed(&self, method: &str, path: &str, body: &[u8]) -> Vec<(&'static str, String)> {
        let mut nonce = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut nonce);
        let a = RequestAuth::sign(
            &self.dev,
            Some(self.id),
            method,
            path,
            body,
            now_ms(),
            nonce,
        );
        a.to_headers().into_iter().collect()
    }

    fn create(&self, genesis: &Event) -> Req {
        let body = json!({ "genesis": STANDARD.encode(genesis.as_bytes()) })
            .to_string()
            .into_bytes();
        let h = self.signed("POST", "/v1/spaces", &body);
        req(hyper::Method::POST, "/v1/spaces", h, Bytes::from(body))
    }

    fn append(&mut self, payload: &[u8]) -> Req {
        self.seq += 1;
        let ev = Event::sign(
            Header {
                space: self.id,
                seq: self.seq,
                prev: self.head,
                author: self.dev.public().id(),
                epoch: 0,
                timestamp_ms: now_ms(),
            },
            Body::Sealed(payload.to_vec()),
            &self.dev,
        );
        self.head = ev.hash();
        let body = json!({ "event": STANDARD.encode(ev.as_bytes()) })
            .to_string()
            .into_bytes();
        let path = format!("/v1/spaces/{}/events", self.id.to_hex());
        let h = self.auth("POST", &path, &body);
        req(hyper::Method::POST, &path, h, Bytes::from(body))
    }

    fn read(&mut self, from: u64, limit: usize) -> Req {
        let path = format!(
            "/v1/spaces/{}/events?from={from}&limit={limit}",
            self.id.to_hex()
        );
        let h = self.auth("GET", &path, b"");
        req(hyper::Method::GET, &path, h, Bytes::new())
    }
}

/// Runs each connection's request list (or `GET /` forever when empty) for
/// at most `secs`; returns (completed, elapsed, latencies in µs). The
/// requests not sent are left in `lists`, for the next round.
async fn drive(
    addr: SocketAddr,
    lists: &mut Vec<Vec<Req>>,
    secs: u64,
    expect: u16,
) -> (usize, Duration, Vec<u32>) {
    drive_to(&[addr], lists, secs, expect).await
}

/// [`drive`] against several relays: connection `i` goes to `addrs[i %
/// addrs.len()]` (a load balancer routing each space to one relay).
async fn drive_to(
    addrs: &[SocketAddr],
    lists: &mut Vec<Vec<Req>>,
    secs: u64,
    expect: u16,
) -> (usize, Duration, Vec<u32>) {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for (ci, mut list) in std::mem::take(lists).into_iter().enumerate() {
        let addr = addrs[ci % addrs.len()];
        tasks.push(tokio::spawn(async move {
            let stream = match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => s,
                Err(e) => panic!("connect: {e}"),
            };
            let _ = stream.set_nodelay(true);
            let (mut sender, conn) =
                match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
                    Ok(x) => x,
                    Err(e) => panic!("handshake: {e}"),
                };
            tokio::spawn(conn);
            let mut lat = Vec::new();
            let mut i = 0usize;
            while Instant::now() < deadline {
                let req = if list.is_empty() {
                    let mut r = hyper::Request::new(Full::new(Bytes::new()));
                    *r.uri_mut() = hyper::Uri::from_static("/");
                    r.headers_mut()
                        .insert(header::HOST, HeaderValue::from_static("bench"));
                    r
                } else if let Some((m, u, h, b)) = list.get(i) {
                    request(m, u, h, b)
                } else {
                    break;
                };
                i += 1;
                if sender.ready().await.is_err() {
                    break;
                }
                let t = Instant::now();
                let Ok(resp) = sender.send_request(req).await else {
                    break;
                };
                let status = resp.status().as_u16();
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                assert_eq!(
                    status,
                    expect,
                    "unexpected answer: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            let left = list.split_off(i.min(list.len()));
            (lat, left)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        if let Ok((l, left)) = t.await {
            all.extend(l);
            lists.push(left);
        }
    }
    (all.len(), start.elapsed(), all)
}

/// Sends one request on a fresh connection; the status and the body.
async fn request_once(addr: SocketAddr, (m, u, h, b): Req) -> anyhow::Result<(u16, Bytes)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(request(&m, &u, &h, &b)).await?;
    let status = resp.status().as_u16();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}

/// One workload measured in rounds, each right after a round of the empty
/// handler, so that load from elsewhere on the machine falls on both alike.
struct Workload {
    /// Median requests/s over the rounds.
    rps: f64,
    /// Median of the rounds' ratios to the empty handler.
    ratio: f64,
    /// Median requests/s of the empty handler in those rounds.
    empty_rps: f64,
    /// Each round's ratio.
    rounds: Vec<f64>,
    p50_ms: f64,
    p99_ms: f64,
}

/// Each round's ratio, to three places.
fn per_round(rounds: &[f64]) -> String {
    let r: Vec<String> = rounds.iter().map(|r| format!("{r:.3}")).collect();
    r.join(", ")
}

/// The median; with an even count, the mean of the two middle values (the
/// upper one alone would lean every even-count figure upwards).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// `rounds` rounds of `secs` seconds: the empty handler, then the workload.
#[allow(clippy::too_many_arguments)]
async fn interleaved(
    base: SocketAddr,
    addr: SocketAddr,
    lists: &mut Vec<Vec<Req>>,
    conns: usize,
    secs: u64,
    rounds: usize,
    expect: u16,
    empty_lat: &mut Vec<u32>,
) -> Workload {
    interleaved_to(base, &[addr], lists, conns, secs, rounds, expect, empty_lat).await
}

/// [`interleaved`] against several relays ([`drive_to`]).
#[allow(clippy::too_many_arguments)]
async fn interleaved_to(
    base: SocketAddr,
    addrs: &[SocketAddr],
    lists: &mut Vec<Vec<Req>>,
    conns: usize,
    secs: u64,
    rounds: usize,
    expect: u16,
    empty_lat: &mut Vec<u32>,
) -> Workload {
    let (mut rps, mut empties, mut ratios, mut lat) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let (n0, e0, l0) = drive(base, &mut vec![Vec::new(); conns], secs, 200).await;
        let (n, e, l) = drive_to(addrs, lists, secs, expect).await;
        let b = n0 as f64 / e0.as_secs_f64();
        let w = n as f64 / e.as_secs_f64();
        empties.push(b);
        rps.push(w);
        ratios.push(w / b);
        empty_lat.extend(l0);
        lat.extend(l);
    }
    let f = figures(lat);
    Workload {
        rps: median(rps),
        ratio: median(ratios.clone()),
        empty_rps: median(empties),
        rounds: ratios,
        p50_ms: f.p50_ms,
        p99_ms: f.p99_ms,
    }
}

struct Figures {
    p50_ms: f64,
    p99_ms: f64,
}

fn figures(mut lat: Vec<u32>) -> Figures {
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    Figures {
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

/// Pre-signs requests on every core.
fn presign<F>(n_lists: usize, f: F) -> Vec<Vec<Req>>
where
    F: Fn(usize) -> Vec<Req> + Send + Sync,
{
    let f = &f;
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let mut out: Vec<Option<Vec<Req>>> = (0..n_lists).map(|_| None).collect();
    std::thread::scope(|s| {
        let chunks: Vec<_> = out
            .chunks_mut(n_lists.div_ceil(threads).max(1))
            .enumerate()
            .collect();
        let per = n_lists.div_ceil(threads).max(1);
        for (ci, chunk) in chunks {
            s.spawn(move || {
                for (j, slot) in chunk.iter_mut().enumerate() {
                    *slot = Some(f(ci * per + j));
                }
            });
        }
    });
    out.into_iter().map(Option::unwrap_or_default).collect()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn open_files_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(1024)
}

/// The issue's reference point for durable appends: a handler that appends
/// the request body to the relay's sled store (compare-and-swap on the head,
/// the space's writer held across the flush, as the relay does) and waits for
/// the group commit; no authentication, JSON, base64 or signature check.
/// Appends are also reported against it, to show what the relay adds on top
/// of storing. `POST /ref/{i}` appends to space `i`.
///
/// With `keys` (one per space), the body is a raw signed event and the
/// handler first decodes it and checks its signature against space `i`'s key
/// with the relay's own batched verifier: the work every append must do
/// whatever the API (the floor under appends), without the request's
/// authentication, JSON, base64 or member checks.
async fn store_reference(
    conns: usize,
    keys: Option<Vec<troth_core::sign::PreparedKey>>,
) -> anyhow::Result<(SocketAddr, tempfile::TempDir, troth_relay::verify::Verifier)> {
    use troth_relay::commit::Committer;
    use troth_relay::store::{Append, Head, SpaceRecord, Store};
    use troth_relay::verify::Verifier;
    let keys = keys.map(Arc::new);
    let verifier = Verifier::new();
    let stats = verifier.clone();
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), 256 << 20)?);
    let committer = Committer::start(store.clone())?;
    let mut spaces = Vec::with_capacity(conns);
    for i in 0..conns {
        let mut id = [0xef; 16];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let space = SpaceId(id);
        let head = Head {
            seq: 0,
            hash: EventHash([0; 32]),
        };
        let record = SpaceRecord {
            head,
            members: Vec::new(),
        };
        anyhow::ensure!(store.create_space(space, b"genesis", &record).await?);
        spaces.push((space, tokio::sync::Mutex::new(head)));
    }
    committer.durable().await;
    let spaces = Arc::new(spaces);
    let (page_store, page_spaces) = (store.clone(), spaces.clone());
    let handler = move |axum::extract::Path(i): axum::extract::Path<usize>, body: Bytes| {
        let (store, committer, spaces) = (store.clone(), committer.clone(), spaces.clone());
        let (keys, verifier) = (keys.clone(), verifier.clone());
        async move {
            let Some((space, head)) = spaces.get(i) else {
                return hyper::StatusCode::NOT_FOUND;
            };
            if let Some(key) = keys.as_ref().and_then(|k| k.get(i)) {
                let Ok(ev) = Event::decode(&body) else {
                    return hyper::StatusCode::BAD_REQUEST;
                };
                if verifier
                    .check(key, ev.signed_message(), ev.signature())
                    .await
                    != Some(true)
                {
                    return hyper::StatusCode::FORBIDDEN;
                }
            }
            let mut head = head.lock().await;
            let seq = head.seq + 1;
            let mut hash = [0u8; 32];
            hash[..8].copy_from_slice(&seq.to_be_bytes());
            let next = Head {
                seq,
                hash: EventHash(hash),
            };
            match store
                .append_if_head(*space, *head, next.hash, &body, None)
                .await
            {
                Ok(Append::Done) if committer.durable().await => {
                    *head = next;
                    hyper::StatusCode::CREATED
                }
                _ => hyper::StatusCode::INTERNAL_SERVER_ERROR,
            }
        }
    };
    // `GET /page/{i}?from=N&limit=L`: the floor under reads, a page of events
    // from the store written as the relay writes it (no authentication).
    let pages = {
        let (store, spaces) = (page_store, page_spaces);
        move |axum::extract::Path(i): axum::extract::Path<usize>,
              axum::extract::Query(q): axum::extract::Query<
            std::collections::HashMap<String, u64>,
        >| {
            let (store, spaces) = (store.clone(), spaces.clone());
            async move {
                let Some((space, head)) = spaces.get(i) else {
                    return Err(hyper::StatusCode::NOT_FOUND);
                };
                let head = *head.lock().await;
                let from = q.get("from").copied().unwrap_or(0) % head.seq.max(1) + 1;
                let events = store
                    .read_range(
                        *space,
                        from,
                        head.seq,
                        q.get("limit").map_or(10, |&l| l as usize),
                    )
                    .await
                    .map_err(|_| hyper::StatusCode::INTERNAL_SERVER_ERROR)?;
                let more = from.saturating_add(events.len() as u64) <= head.seq;
                Ok((
                    [(hyper::header::CONTENT_TYPE, "application/json")],
                    troth_relay::page_json(&events, head, more),
                ))
            }
        }
    };
    let app = axum::Router::new()
        .route("/ref/{i}", axum::routing::post(handler))
        .route("/page/{i}", axum::routing::get(pages));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr, dir, stats))
}

/// The child process: the relay alone, on a loopback port.
async fn serve_child(dir: &str) -> anyhow::Result<()> {
    let store = SledStore::open(std::path::Path::new(dir), 16 << 20)?;
    serve_child_on(Arc::new(store)).await
}

/// The child process on PostgreSQL (`--serve-relay-pg URL POOL`).
async fn serve_child_pg(url: &str, pool: usize) -> anyhow::Result<()> {
    let config: tokio_postgres::Config = url.parse()?;
    let store = troth_relay::store::PgStore::connect(config, pool, true).await?;
    serve_child_on(Arc::new(store)).await
}

async fn serve_child_on(store: Arc<dyn troth_relay::store::Store>) -> anyhow::Result<()> {
    let state = AppState::new(store, Arc::new(SystemClock), Limits::generous())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    // Stop when the parent closes our stdin (or after 10 minutes at most).
    let stop = async {
        let _ = tokio::time::timeout(
            Duration::from_secs(600),
            tokio::task::spawn_blocking(|| {
                let mut s = String::new();
                let _ = std::io::stdin().read_line(&mut s);
            }),
        )
        .await;
    };
    troth_relay::serve(listener, state, stop).await?;
    Ok(())
}

async fn idle_connections(n: usize) -> anyhow::Result<(usize, f64, u64)> {
    let dir = tempfile::tempdir()?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["--serve-relay", dir.path().to_str().unwrap_or("/tmp")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line)?;
    }
    let addr: SocketAddr = line.trim().trim_start_matches("listening on ").parse()?;
    // Couples: two connections per space.
    let n_spaces = n.div_ceil(2);
    let spaces: Vec<(SpaceGen, Event)> = (0..n_spaces)
        .map(|i| SpaceGen::new(1_000_000 + i as u64))
        .collect();
    let mut creates: Vec<Vec<Req>> = spaces
        .chunks(n_spaces.div_ceil(64))
        .map(|c| c.iter().map(|(s, g)| s.create(g)).collect())
        .collect();
    drive(addr, &mut creates, 600, 201).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);
    println!("relay RSS after creating {n_spaces} spaces: {before} KiB");
    let mut sockets = Vec::with_capacity(n);
    for i in 0..n {
        let s = &spaces[i / 2].0;
        let url = format!("ws://{addr}/v1/spaces/{}/live", s.id.to_hex());
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
        let path = format!("/v1/spaces/{}/live", s.id.to_hex());
        let h = s.signed("GET", &path, b"");
        let frame = json!({ "device": h[0].1, "time": h[1].1.parse::<u64>().unwrap_or(0), "nonce": h[2].1, "signature": h[3].1 });
        ws.send(tokio_tungstenite::tungstenite::Message::text(
            frame.to_string(),
        ))
        .await?;
        match ws.next().await {
            Some(Ok(m)) if m.to_string().contains("\"ready\"") => {}
            other => anyhow::bail!("live connection {i} not ready: {other:?}"),
        }
        sockets.push(ws);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    drop(sockets);
    drop(child.stdin.take());
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await;
    Ok((n, per, after))
}

/// Server-side CPU per request without the network: `app(state).oneshot()`
/// in a loop on one task (sled in a temporary folder).
async fn oneshot_cost() -> anyhow::Result<()> {
    use tower::ServiceExt;
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SledStore::open(dir.path(), 64 << 20)?);
    let state = AppState::new(store, Arc::new(SystemClock), Limits::generous())?;
    let app = troth_relay::app(state);
    let send = |(m, u, h, b): Req| {
        let app = app.clone();
        async move {
            let resp = app
                .oneshot(request(&m, &u, &h, &b).map(axum::body::Body::new))
                .await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::ensure!(
                status.is_success(),
                "{status}: {}",
                String::from_utf8_lossy(&body)
            );
            Ok::<Bytes, anyhow::Error>(body)
        }
    };
    let time = |name: &'static str, list: Vec<Req>| {
        let send = &send;
        async move {
            let t = Instant::now();
            let count = list.len();
            for r in list {
                send(r).await?;
            }
            println!(
                "{name}: {:.1} µs per request (one task, no network)",
                t.elapsed().as_secs_f64() * 1e6 / count as f64
            );
            Ok::<(), anyhow::Error>(())
        }
    };
    let (mut g, genesis) = SpaceGen::new(7);
    let n = 5000;
    send(g.create(&genesis)).await?;
    let health: Vec<Req> = (0..n)
        .map(|_| req(hyper::Method::GET, "/healthz", Vec::new(), Bytes::new()))
        .collect();
    time("GET /healthz (the middleware alone)", health).await?;
    let appends: Vec<Req> = (0..n).map(|_| g.append(&[0x5a; 256])).collect();
    time("append, signed", appends).await?;
    let reads: Vec<Req> = (0..n).map(|i| g.read(i as u64 % 100, 10)).collect();
    time("read, signed", reads).await?;
    let (req, opening) = g.session_request();
    let answer = send(req).await?;
    g.session_opened(opening, &answer)?;
    let appends: Vec<Req> = (0..n).map(|_| g.append(&[0x5a; 256])).collect();
    time("append, session", appends).await?;
    let reads: Vec<Req> = (0..n).map(|i| g.read(i as u64 % 100, 10)).collect();
    time("read, session", reads).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve-relay-pg") {
        let url = args.get(i + 1).map(String::as_str).unwrap_or("");
        let pool = args.get(i + 2).and_then(|p| p.parse().ok()).unwrap_or(16);
        return serve_child_pg(url, pool).await;
    }
    if args.iter().any(|a| a == "--postgres") {
        return postgres_comparison().await;
    }
    if let Some(i) = args.iter().position(|a| a == "--serve-relay") {
        return serve_child(
            args.get(i + 1)
                .map(String::as_str)
                .unwrap_or("/tmp/troth-loadgen"),
        )
        .await;
    }
    let secs = arg("--secs", 2) as u64;
    let rounds = arg("--rounds", 5);
    let conns = arg("--conns", 64);
    let idle = arg("--idle", 10_000);
    let only = std::env::args().any(|a| a == "--appends-only");
    let page = arg("--page", 10);
    let args: Vec<String> = std::env::args().collect();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "troth-relay load generator: {conns} connections, {secs} s per phase, {cores} cores, client and servers on this machine"
    );
    if std::env::args().any(|a| a == "--oneshot") {
        return oneshot_cost().await;
    }
    if std::env::args().any(|a| a == "--idle-only") {
        let fd = open_files_limit();
        let (n, per, rss) = idle_connections(idle.min(fd.saturating_sub(200))).await?;
        println!(
            "idle live connections: {n} open (open-files limit {fd}), relay RSS {rss} KiB, {per:.1} KiB per connection"
        );
        return Ok(());
    }

    // Baseline: an empty axum handler.
    let base = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_addr = base.local_addr()?;
    let base_app = axum::Router::new().route("/", axum::routing::get(|| async {}));
    tokio::spawn(async move { axum::serve(base, base_app).await });
    drive(base_addr, &mut vec![Vec::new(); conns], 1, 200).await; // warm-up

    // The relay, in-process, on sled in a temporary folder.
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn troth_relay::store::Store> = if std::env::args().any(|a| a == "--memory") {
        Arc::new(troth_relay::store::MemoryStore::new())
    } else {
        Arc::new(SledStore::open(dir.path(), 256 << 20)?)
    };
    let mut state = AppState::new(store, Arc::new(SystemClock), Limits::generous())?;
    if std::env::args().any(|a| a == "--push") {
        // Notifications on (issue 16): every append is handed to the push
        // task, which looks up the space's subscriptions (none here).
        state = state.with_push(troth_relay::push::Push::new(
            troth_relay::push::PushSettings::default(),
            troth_relay::push::VapidKey::generate(),
        ));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(troth_relay::serve(
        listener,
        state.clone(),
        std::future::pending(),
    ));

    // `--target ADDR`: drive appends against a relay running elsewhere on
    // this machine (its limits must allow it) instead of the in-process one.
    let target: Option<SocketAddr> = args
        .iter()
        .position(|a| a == "--target")
        .and_then(|i| args.get(i + 1))
        .and_then(|a| a.parse().ok());
    let addr = target.unwrap_or(addr);
    let seed_base: u64 = if target.is_some() {
        rand::random::<u32>() as u64 * 1000
    } else {
        0
    };
    // Enough prepared appends for 40,000 a second through every round.
    let per_conn = (40_000 * secs as usize * rounds).div_ceil(conns).max(100);
    let mut gens: Vec<(SpaceGen, Event)> = (0..conns)
        .map(|i| SpaceGen::new(seed_base + i as u64))
        .collect();
    let mut creates: Vec<Vec<Req>> = gens.iter().map(|(s, g)| vec![s.create(g)]).collect();
    drive(addr, &mut creates, 60, 201).await;
    // Each connection's device opens a request session (one signed request);
    // `--signed` measures a signature on every request instead.
    let signed_mode = args.iter().any(|a| a == "--signed");
    if !signed_mode {
        for (g, _) in gens.iter_mut() {
            let (req, opening) = g.session_request();
            let (status, body) = request_once(addr, req).await?;
            anyhow::ensure!(status == 201, "session: {}", String::from_utf8_lossy(&body));
            g.session_opened(opening, &body)?;
        }
    }
    let auth_name = if signed_mode {
        "each request signed"
    } else {
        "request sessions"
    };
    println!("signing {} appends …", conns * per_conn);
    let payload = vec![0x5a; 256];
    let gens_ref: Vec<std::sync::Mutex<&mut SpaceGen>> = gens
        .iter_mut()
        .map(|(s, _)| std::sync::Mutex::new(s))
        .collect();
    let mut appends = presign(conns, |i| {
        let mut g = gens_ref[i].lock().unwrap_or_else(|p| p.into_inner());
        (0..per_conn).map(|_| g.append(&payload)).collect()
    });
    drop(gens_ref);
    // Signed events for the floor under appends, taken before the relay's
    // run can use them all up (the floor checks signatures, not sequence
    // numbers, so it may send each more than once).
    let floor_events: Vec<Vec<Bytes>> = appends
        .iter()
        .map(|list| {
            list.iter()
                .take(1000)
                .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.3).ok())
                .filter_map(|v| v["event"].as_str().and_then(|e| STANDARD.decode(e).ok()))
                .map(Bytes::from)
                .collect()
        })
        .collect();
    let mut empty_lat = Vec::new();
    let append = interleaved(
        base_addr,
        addr,
        &mut appends,
        conns,
        secs,
        rounds,
        201,
        &mut empty_lat,
    )
    .await;
    // The store alone (the issue's "sled insert + group-committed flush"),
    // with bodies the size of the appends' events.
    let event_len = floor_events
        .iter()
        .flatten()
        .next()
        .map_or(420, |e| e.len());
    let reference = if target.is_none() {
        let (ref_addr, _ref_dir, _) = store_reference(conns, None).await?;
        let body = Bytes::from(vec![0x5a; event_len]);
        let per = (60_000 * secs as usize * rounds).div_ceil(conns);
        let mut lists: Vec<Vec<Req>> = (0..conns)
            .map(|i| {
                let r = req(
                    hyper::Method::POST,
                    &format!("/ref/{i}"),
                    Vec::new(),
                    body.clone(),
                );
                vec![r; per]
            })
            .collect();
        let mut lat = Vec::new();
        let plain = interleaved(
            base_addr, ref_addr, &mut lists, conns, secs, rounds, 201, &mut lat,
        )
        .await;
        // The floor: the same, with each space's signed events as bodies
        // (repeated as needed) and their signatures checked.
        let keys = gens
            .iter()
            .map(|(g, _)| troth_core::sign::PreparedKey::new(*g.dev.public().verifying_key()))
            .collect();
        let (floor_addr, _floor_dir, floor_verifier) = store_reference(conns, Some(keys)).await?;
        let mut lists: Vec<Vec<Req>> = floor_events
            .iter()
            .enumerate()
            .map(|(i, events)| {
                let path = format!("/ref/{i}");
                events
                    .iter()
                    .cycle()
                    .take(per)
                    .map(|e| req(hyper::Method::POST, &path, Vec::new(), e.clone()))
                    .collect()
            })
            .collect();
        let floor = interleaved(
            base_addr, floor_addr, &mut lists, conns, secs, rounds, 201, &mut lat,
        )
        .await;
        let v = floor_verifier.stats();
        let per_batch = v.signatures.load(std::sync::atomic::Ordering::Relaxed) as f64
            / v.batches.load(std::sync::atomic::Ordering::Relaxed).max(1) as f64;
        Some((plain, floor, per_batch, floor_addr, _floor_dir))
    } else {
        None
    };
    let reference_line = reference.as_ref().map(|(r, f, per_batch, ..)| {
        format!(
            "store reference (sled append of {event_len} B + group commit, no checks): {:.0}/s ({:.3}× empty), p50 {:.2} ms, p99 {:.2} ms; appends reach {:.2} of it\n\
             floor (the same + the event's signature checked in batches of {:.1}; no request authentication, JSON or base64): {:.0}/s ({:.3}× empty), p50 {:.2} ms, p99 {:.2} ms; appends reach {:.2} of it",
            r.rps,
            r.ratio,
            r.p50_ms,
            r.p99_ms,
            append.ratio / r.ratio,
            per_batch,
            f.rps,
            f.ratio,
            f.p50_ms,
            f.p99_ms,
            append.ratio / f.ratio
        )
    });
    {
        use std::sync::atomic::Ordering;
        let f = state.flush_stats();
        let (fl, w, us) = (
            f.flushes.load(Ordering::Relaxed),
            f.waiters.load(Ordering::Relaxed),
            f.micros.load(Ordering::Relaxed),
        );
        println!(
            "group commit: {fl} flushes, {:.1} writes per flush, {:.2} ms per flush",
            w as f64 / fl.max(1) as f64,
            us as f64 / 1000.0 / fl.max(1) as f64
        );
        let v = state.verifier().stats();
        let (b, n) = (
            v.batches.load(Ordering::Relaxed),
            v.signatures.load(Ordering::Relaxed),
        );
        println!(
            "signature checks: {b} batches, {:.1} signatures per batch",
            n as f64 / b.max(1) as f64
        );
    }

    if only || target.is_some() {
        println!(
            "appends: {:.0}/s ({:.3}× empty {:.0}/s), p50 {:.2} ms, p99 {:.2} ms",
            append.rps, append.ratio, append.empty_rps, append.p50_ms, append.p99_ms
        );
        println!("appends: × empty per round {}", per_round(&append.rounds));
        if let Some(l) = &reference_line {
            println!("{l}");
        }
        return Ok(());
    }
    let appended = per_conn - appends.iter().map(Vec::len).min().unwrap_or(0);
    println!("signing {} reads …", conns * per_conn * 2);
    let gens_ref: Vec<std::sync::Mutex<&mut SpaceGen>> = gens
        .iter_mut()
        .map(|(s, _)| std::sync::Mutex::new(s))
        .collect();
    let mut reads = presign(conns, |i| {
        let mut g = gens_ref[i].lock().unwrap_or_else(|p| p.into_inner());
        let max_from = appended.max(1) as u64;
        (0..per_conn * 2)
            .map(|k| g.read(k as u64 % max_from, page))
            .collect()
    });
    let read = interleaved(
        base_addr,
        addr,
        &mut reads,
        conns,
        secs,
        rounds,
        200,
        &mut empty_lat,
    )
    .await;
    // The floor under reads: the same pages from the floor's store (which
    // the floor run above filled), without authentication.
    let read_floor = match &reference {
        Some((.., floor_addr, _)) => {
            let mut lists: Vec<Vec<Req>> = (0..conns)
                .map(|i| {
                    (0..per_conn * 2)
                        .map(|k| {
                            let path = format!("/page/{i}?from={k}&limit={page}");
                            req(hyper::Method::GET, &path, Vec::new(), Bytes::new())
                        })
                        .collect()
                })
                .collect();
            let mut lat = Vec::new();
            Some(
                interleaved(
                    base_addr,
                    *floor_addr,
                    &mut lists,
                    conns,
                    secs,
                    rounds,
                    200,
                    &mut lat,
                )
                .await,
            )
        }
        None => None,
    };
    let empty = {
        let f = figures(empty_lat);
        let mean = (append.empty_rps + read.empty_rps) / 2.0;
        Workload {
            rps: mean,
            ratio: 1.0,
            empty_rps: mean,
            rounds: Vec::new(),
            p50_ms: f.p50_ms,
            p99_ms: f.p99_ms,
        }
    };

    let fd = open_files_limit();
    let idle_n = idle.min(fd.saturating_sub(200));
    let (idle_n, per_conn_kib, rss) = idle_connections(idle_n).await?;

    println!();
    println!("| workload | req/s | × empty | p50 ms | p99 ms |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, f) in [
        ("empty axum handler (baseline)", &empty),
        (
            &*format!("durable appends, {auth_name}, {conns} spaces"),
            &append,
        ),
        (
            &*format!("paged reads ({page} events of 256 B), {auth_name}"),
            &read,
        ),
    ] {
        println!(
            "| {name} | {:.0} | {:.3} | {:.2} | {:.2} |",
            f.rps, f.ratio, f.p50_ms, f.p99_ms
        );
    }
    println!();
    for (name, w) in [("appends", &append), ("reads", &read)] {
        println!(
            "{name}: × empty per round {} (median shown)",
            per_round(&w.rounds)
        );
    }
    if let Some(l) = &reference_line {
        println!("{l}");
    }
    if let Some(f) = &read_floor {
        println!(
            "floor under reads (pages of the floor's events from sled, written as the relay writes them; no request authentication): {:.0}/s ({:.3}× empty), p50 {:.2} ms, p99 {:.2} ms; reads reach {:.2} of it",
            f.rps,
            f.ratio,
            f.p50_ms,
            f.p99_ms,
            read.ratio / f.ratio
        );
    }
    println!(
        "idle live connections: {idle_n} open (open-files limit {fd}), relay RSS {rss} KiB, {per_conn_kib:.1} KiB per connection"
    );
    let ok =
        append.ratio >= 0.25 && read.ratio >= 0.5 && append.p99_ms <= 10.0 && per_conn_kib <= 8.0;
    println!(
        "targets (appends ≥ 0.25×, reads ≥ 0.5×, append p99 ≤ 10 ms, ≤ 8 KiB per idle connection): {}",
        if ok { "met" } else { "NOT all met" }
    );
    // Where a floor is under its target, the relay's own steps are not what
    // misses it: say so, so a miss is not read as the relay's own.
    if let (Some((_, floor, ..)), Some(read_floor)) = (&reference, &read_floor) {
        for (name, floor, target) in [
            ("appends", floor.ratio, 0.25),
            ("reads", read_floor.ratio, 0.5),
        ] {
            if floor < target {
                println!(
                    "{name}: their floor is {floor:.3}× here, under the {target}× target: no change to the relay's own steps can meet it on this machine (docs/BENCHMARKS.md)"
                );
            }
        }
    }
    Ok(())
}

/// A relay in a child process of this program (`--serve-relay DIR` or
/// `--serve-relay-pg URL POOL`); stopped when dropped.
struct ChildRelay {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: Option<tempfile::TempDir>,
}

impl ChildRelay {
    fn start(args: &[&str], dir: Option<tempfile::TempDir>) -> anyhow::Result<ChildRelay> {
        let mut child = std::process::Command::new(std::env::current_exe()?)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        let addr: SocketAddr = line
            .trim()
            .trim_start_matches("listening on ")
            .parse()
            .map_err(|_| anyhow::anyhow!("the child relay did not start: {line:?}"))?;
        Ok(ChildRelay {
            child,
            addr,
            _dir: dir,
        })
    }
}

impl Drop for ChildRelay {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// A PostgreSQL 15 server for the comparison, started as the tests start
/// theirs (Debian's package, a temporary folder, the `postgres` user when
/// run as root) but durable: `fsync` and `synchronous_commit` on. Stopped
/// when dropped.
struct BenchPg {
    dir: std::path::PathBuf,
    port: u16,
}

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn pg_command(program: &str) -> std::process::Command {
    if as_root() {
        let mut c = std::process::Command::new("runuser");
        c.args(["-u", "postgres", "--", program]);
        c
    } else {
        std::process::Command::new(program)
    }
}

impl BenchPg {
    fn start() -> anyhow::Result<BenchPg> {
        anyhow::ensure!(
            std::path::Path::new(&format!("{PG_BIN}/initdb")).exists(),
            "PostgreSQL 15 is not installed: run `cargo xtask setup`, or give --database-url"
        );
        let dir = tempfile::Builder::new()
            .prefix("troth-bench-pg-")
            .tempdir()?
            .keep();
        if as_root() {
            std::process::Command::new("chown")
                .args(["postgres:", &dir.display().to_string()])
                .status()?;
        }
        let db = dir.join("db").display().to_string();
        let ok = pg_command(&format!("{PG_BIN}/initdb"))
            .args(["-D", &db, "-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .arg("--locale=C.UTF-8")
            .stdout(std::process::Stdio::null())
            .status()?
            .success();
        anyhow::ensure!(ok, "initdb failed");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let opts = format!(
            "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=300 -c shared_buffers=256MB",
            dir.display()
        );
        let ok = pg_command(&format!("{PG_BIN}/pg_ctl"))
            .args(["-D", &db, "-l", &dir.join("log").display().to_string()])
            .args(["-w", "start", "-o", &opts])
            .stdout(std::process::Stdio::null())
            .status()?
            .success();
        anyhow::ensure!(ok, "PostgreSQL did not start (log in {})", dir.display());
        Ok(BenchPg { dir, port })
    }

    fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

impl Drop for BenchPg {
    fn drop(&mut self) {
        let db = self.dir.join("db").display().to_string();
        let _ = pg_command(&format!("{PG_BIN}/pg_ctl"))
            .args(["-D", &db, "-m", "fast", "stop"])
            .stdout(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Creates database `name` at `url` (a server's `postgres` database URL).
async fn create_database(url: &str, name: &str) -> anyhow::Result<()> {
    let config: tokio_postgres::Config = url.parse()?;
    let (c, conn) = config.connect(tokio_postgres::NoTls).await?;
    let task = tokio::spawn(conn);
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .await?;
    c.batch_execute(&format!("CREATE DATABASE {name}")).await?;
    drop(c);
    let _ = task.await;
    Ok(())
}

/// One setup's figures.
struct Compared {
    name: String,
    append: Workload,
    read: Workload,
}

/// Appends, then paged reads, against relays at `addrs` (space `i` on
/// relay `i % addrs.len()`), each connection its own space with a request
/// session.
#[allow(clippy::too_many_arguments)]
async fn measure_setup(
    name: String,
    base: SocketAddr,
    addrs: &[SocketAddr],
    seed: u64,
    conns: usize,
    secs: u64,
    rounds: usize,
    page: usize,
    empty_lat: &mut Vec<u32>,
) -> anyhow::Result<Compared> {
    let mut gens: Vec<(SpaceGen, Event)> =
        (0..conns).map(|i| SpaceGen::new(seed + i as u64)).collect();
    let mut creates: Vec<Vec<Req>> = gens.iter().map(|(s, g)| vec![s.create(g)]).collect();
    drive_to(addrs, &mut creates, 60, 201).await;
    for (i, (g, _)) in gens.iter_mut().enumerate() {
        let (req, opening) = g.session_request();
        let (status, body) = request_once(addrs[i % addrs.len()], req).await?;
        anyhow::ensure!(status == 201, "session: {}", String::from_utf8_lossy(&body));
        g.session_opened(opening, &body)?;
    }
    let per_conn = (25_000 * secs as usize * rounds).div_ceil(conns).max(100);
    let payload = vec![0x5a; 256];
    let gens_ref: Vec<std::sync::Mutex<&mut SpaceGen>> = gens
        .iter_mut()
        .map(|(s, _)| std::sync::Mutex::new(s))
        .collect();
    let mut appends = presign(conns, |i| {
        let mut g = gens_ref[i].lock().unwrap_or_else(|p| p.into_inner());
        (0..per_conn).map(|_| g.append(&payload)).collect()
    });
    drop(gens_ref);
    let append = interleaved_to(
        base,
        addrs,
        &mut appends,
        conns,
        secs,
        rounds,
        201,
        empty_lat,
    )
    .await;
    let appended = per_conn - appends.iter().map(Vec::len).min().unwrap_or(0);
    let gens_ref: Vec<std::sync::Mutex<&mut SpaceGen>> = gens
        .iter_mut()
        .map(|(s, _)| std::sync::Mutex::new(s))
        .collect();
    let mut reads = presign(conns, |i| {
        let mut g = gens_ref[i].lock().unwrap_or_else(|p| p.into_inner());
        let max_from = appended.max(1) as u64;
        (0..per_conn * 2)
            .map(|k| g.read(k as u64 % max_from, page))
            .collect()
    });
    let read = interleaved_to(base, addrs, &mut reads, conns, secs, rounds, 200, empty_lat).await;
    println!(
        "{name}: appends {:.0}/s (p50 {:.2} ms, p99 {:.2} ms), reads {:.0}/s (p50 {:.2} ms, p99 {:.2} ms)",
        append.rps, append.p50_ms, append.p99_ms, read.rps, read.p50_ms, read.p99_ms
    );
    Ok(Compared { name, append, read })
}

/// `--postgres`: the relay on sled (one process) beside the relay on
/// PostgreSQL with one and with two relay processes, and the empty handler,
/// in one run. Every relay runs in a child process of this program; with
/// two, each space's connection goes to one of them (as a load balancer
/// routing by space id would). PostgreSQL is started here (durable: fsync
/// and synchronous_commit on, no standby) unless `--database-url URL` names
/// a server (its `postgres` database; the run creates `troth_bench_1` and
/// `troth_bench_2`). `--pool N` sets each relay's pool (16).
async fn postgres_comparison() -> anyhow::Result<()> {
    let secs = arg("--secs", 2) as u64;
    let rounds = arg("--rounds", 3);
    let conns = arg("--conns", 64);
    let page = arg("--page", 10);
    let pool = arg("--pool", 16);
    let args: Vec<String> = std::env::args().collect();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "troth-relay load generator, sled vs PostgreSQL: {conns} connections, {rounds} rounds of {secs} s, {cores} cores, client, relays and database on this machine"
    );
    let base = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_addr = base.local_addr()?;
    let base_app = axum::Router::new().route("/", axum::routing::get(|| async {}));
    tokio::spawn(async move { axum::serve(base, base_app).await });
    drive(base_addr, &mut vec![Vec::new(); conns], 1, 200).await; // warm-up

    let given = args
        .iter()
        .position(|a| a == "--database-url")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let server = match &given {
        Some(_) => None,
        None => Some(BenchPg::start()?),
    };
    let db_url = |db: &str| match (&given, &server) {
        (Some(u), _) => {
            let (head, _) = u.rsplit_once('/').unwrap_or((u.as_str(), ""));
            format!("{head}/{db}")
        }
        (None, Some(s)) => s.url(db),
        (None, None) => String::new(),
    };
    let admin = db_url("postgres");
    let mut results = Vec::new();
    let mut empty_lat = Vec::new();
    // sled, one process.
    {
        let dir = tempfile::tempdir()?;
        let path = dir.path().display().to_string();
        let relay = ChildRelay::start(&["--serve-relay", &path], Some(dir))?;
        results.push(
            measure_setup(
                "relay on sled, 1 process".into(),
                base_addr,
                &[relay.addr],
                10_000,
                conns,
                secs,
                rounds,
                page,
                &mut empty_lat,
            )
            .await?,
        );
    }
    for n in [1usize, 2] {
        let db = format!("troth_bench_{n}");
        create_database(&admin, &db).await?;
        let url = db_url(&db);
        let pool_s = pool.to_string();
        let relays: Vec<ChildRelay> = (0..n)
            .map(|_| ChildRelay::start(&["--serve-relay-pg", &url, &pool_s], None))
            .collect::<anyhow::Result<_>>()?;
        let addrs: Vec<SocketAddr> = relays.iter().map(|r| r.addr).collect();
        results.push(
            measure_setup(
                format!(
                    "relay on PostgreSQL, {n} process{}",
                    if n == 1 { "" } else { "es" }
                ),
                base_addr,
                &addrs,
                20_000 + 1000 * n as u64,
                conns,
                secs,
                rounds,
                page,
                &mut empty_lat,
            )
            .await?,
        );
    }
    let f = figures(empty_lat);
    let empty_rps = median(
        results
            .iter()
            .flat_map(|r| [r.append.empty_rps, r.read.empty_rps])
            .collect(),
    );
    let sled_a = results.first().map_or(1.0, |r| r.append.ratio);
    let sled_r = results.first().map_or(1.0, |r| r.read.ratio);
    println!();
    println!("| workload | req/s | × empty | × sled | p50 ms | p99 ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| empty axum handler (baseline) | {empty_rps:.0} | 1.000 | – | {:.2} | {:.2} |",
        f.p50_ms, f.p99_ms
    );
    for r in &results {
        for (what, w, sled) in [
            ("durable appends", &r.append, sled_a),
            ("paged reads", &r.read, sled_r),
        ] {
            println!(
                "| {what}, {} | {:.0} | {:.3} | {:.2} | {:.2} | {:.2} |",
                r.name,
                w.rps,
                w.ratio,
                w.ratio / sled,
                w.p50_ms,
                w.p99_ms
            );
        }
    }
    if let Some(two) = results.get(2) {
        let ratio = two.append.ratio / sled_a;
        let ok = ratio >= 0.5 && two.append.p99_ms <= 20.0;
        println!(
            "target (2 processes on PostgreSQL: appends ≥ 0.5× sled, p99 ≤ 20 ms): {ratio:.2}× sled, p99 {:.2} ms: {}",
            two.append.p99_ms,
            if ok { "met" } else { "NOT met" }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![]), 0.0);
        assert_eq!(median(vec![0.3]), 0.3);
        assert_eq!(median(vec![0.26, 0.20, 0.24]), 0.24);
        // Even: the mean of the middle two, not the upper one.
        assert!((median(vec![0.238, 0.259]) - 0.2485).abs() < 1e-12);
        assert!((median(vec![0.25, 0.21, 0.30, 0.23]) - 0.24).abs() < 1e-12);
    }
}
