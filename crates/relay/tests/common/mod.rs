//! Helpers shared by the relay's integration tests: a space fixture that
//! signs events and requests, a small HTTP client, and ways to run the relay
//! (in-process on a loopback port, or the real binary).
#![allow(dead_code, missing_docs)]

pub mod pg;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use curve25519_dalek::edwards::EdwardsPoint;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::{Value, json};
use troth_core::SpaceId;
use troth_core::event::{Body, Control, Envelope, Event, EventHash, Header};
use troth_core::keys::{DeviceSecret, IdentitySecret};
use troth_core::request::RequestAuth;
use troth_relay::store::Store;
use troth_relay::{AppState, Clock, Limits};

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A space and one member device that writes to it.
pub struct Space {
    pub id: SpaceId,
    pub dev: DeviceSecret,
    /// The identity that certified `dev` (to certify more devices).
    pub identity: IdentitySecret,
    pub events: Vec<Event>,
}

impl Space {
    pub fn generate(seed: u64) -> Self {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let identity = IdentitySecret::generate(&mut rng);
        let dev = DeviceSecret::generate(&mut rng);
        let cert = identity.certify(&dev, 1_000);
        let space = SpaceId(id);
        let genesis = Event::sign(
            Header {
                space,
                seq: 0,
                prev: EventHash::ZERO,
                author: dev.public().id(),
                epoch: 0,
                timestamp_ms: 1_000,
            },
            Body::Control(Control::Genesis {
                commitment: troth_core::event::KeyCommitment([0; 32]),
                cert,
                envelopes: vec![Envelope {
                    epoch: 0,
                    device: dev.public().id(),
                    age: vec![7; 40],
                }],
            }),
            &dev,
        );
        Space {
            id: space,
            dev,
            identity,
            events: vec![genesis],
        }
    }

    pub fn hex(&self) -> String {
        self.id.to_hex()
    }

    pub fn head_hash(&self) -> EventHash {
        self.events
            .last()
            .map(|e| e.hash())
            .unwrap_or(EventHash::ZERO)
    }

    /// The next sealed event on our local head (not yet recorded).
    pub fn next_event(&self, payload: &[u8]) -> Event {
        self.event_at(self.events.len() as u64, self.head_hash(), payload)
    }

    pub fn event_at(&self, seq: u64, prev: EventHash, payload: &[u8]) -> Event {
        Event::sign(
            Header {
                space: self.id,
                seq,
                prev,
                author: self.dev.public().id(),
                epoch: 0,
                timestamp_ms: 2_000 + seq,
            },
            Body::Sealed(payload.to_vec()),
            &self.dev,
        )
    }

    /// The next sealed event on our local head, its signature made with
    /// `R = rB + T` (`troth_core::testkit::sign_with_torsion_in_r`).
    pub fn next_event_with_torsion(&self, t: &EdwardsPoint, payload: &[u8]) -> Event {
        let honest = self.next_event(payload);
        let sig = troth_core::testkit::sign_with_torsion_in_r(
            &self.dev.signing_seed(),
            t,
            &honest.signed_message(),
        );
        let mut bytes = honest.signed_bytes().to_vec();
        bytes.extend_from_slice(&sig.to_bytes());
        Event::decode(&bytes).expect("decodes")
    }

    pub fn create_body(&self) -> Vec<u8> {
        json!({ "genesis": STANDARD.encode(self.events[0].as_bytes()) })
            .to_string()
            .into_bytes()
    }
}

pub fn event_body(ev: &Event) -> Vec<u8> {
    json!({ "event": STANDARD.encode(ev.as_bytes()) })
        .to_string()
        .into_bytes()
}

/// The four auth headers for a request.
pub fn auth_headers(
    dev: &DeviceSecret,
    space: SpaceId,
    method: &str,
    path: &str,
    body: &[u8],
    time_ms: u64,
) -> Vec<(String, String)> {
    let mut nonce = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut nonce);
    let a = RequestAuth::sign(dev, Some(space), method, path, body, time_ms, nonce);
    a.to_headers()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// The live connection's first frame.
pub fn auth_frame(dev: &DeviceSecret, space: SpaceId, time_ms: u64) -> String {
    let path = format!("/v1/spaces/{}/live", space.to_hex());
    let h = auth_headers(dev, space, "GET", &path, b"", time_ms);
    json!({
        "device": h[0].1,
        "time": time_ms,
        "nonce": h[2].1,
        "signature": h[3].1,
    })
    .to_string()
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Every error answer has the stable shape.
    pub fn error_code(&self) -> String {
        let v = self.json();
        assert!(v["message"].is_string(), "no message in {v}");
        v["error"].as_str().unwrap_or("").to_string()
    }
}

#[derive(Clone)]
pub struct Http {
    pub base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Self {
        let client = Client::builder(TokioExecutor::new()).build_http();
        Http {
            base: format!("http://{addr}"),
            client,
        }
    }

    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<Resp, String> {
        let mut b = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path));
        for (k, v) in headers {
            b = b.header(k, v);
        }
        if !body.is_empty() {
            b = b.header("content-type", "application/json");
        }
        let req = b
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes()
            .to_vec();
        Ok(Resp {
            status,
            headers,
            body,
        })
    }

    pub async fn req(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Resp {
        match self.send(method, path, headers, body).await {
            Ok(r) => r,
            Err(e) => panic!("{method} {path}: {e}"),
        }
    }

    /// A request signed by `dev` for `space`, at `time_ms`.
    pub async fn signed(
        &self,
        dev: &DeviceSecret,
        space: SpaceId,
        method: &str,
        path: &str,
        body: Vec<u8>,
        time_ms: u64,
    ) -> Resp {
        let h = auth_headers(dev, space, method, path, &body, time_ms);
        self.req(method, path, &h, body).await
    }

    /// Opens a request session for `s`'s device; the key, or the answer
    /// that refused it.
    pub async fn open_session(
        &self,
        s: &Space,
        time_ms: u64,
    ) -> Result<troth_core::session::SessionKey, Resp> {
        use troth_core::session::{SessionId, SessionOpening};
        let opening = SessionOpening::new(&mut rand::thread_rng());
        let body = json!({ "ephemeral": STANDARD.encode(opening.public()) })
            .to_string()
            .into_bytes();
        let path = format!("/v1/spaces/{}/sessions", s.hex());
        let r = self
            .signed(&s.dev, s.id, "POST", &path, body, time_ms)
            .await;
        if r.status != 201 {
            return Err(r);
        }
        let v = r.json();
        let id = SessionId::from_b64(v["session"].as_str().unwrap_or("")).map_err(|_| r.clone())?;
        let theirs: [u8; 32] = STANDARD
            .decode(v["ephemeral"].as_str().unwrap_or(""))
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| r.clone())?;
        opening
            .finish(s.id, s.dev.public().id(), id, theirs)
            .map_err(|_| r.clone())
    }

    /// A request authenticated by a session's MAC with `counter`.
    pub async fn with_session(
        &self,
        key: &troth_core::session::SessionKey,
        counter: u64,
        method: &str,
        path: &str,
        body: Vec<u8>,
        time_ms: u64,
    ) -> Resp {
        let h: Vec<(String, String)> = key
            .authenticate(method, path, &body, time_ms, counter)
            .to_headers()
            .iter()
            .map(|(k, v)| ((*k).to_string(), v.clone()))
            .collect();
        self.req(method, path, &h, body).await
    }

    pub async fn create(&self, s: &Space, time_ms: u64) -> Resp {
        self.signed(&s.dev, s.id, "POST", "/v1/spaces", s.create_body(), time_ms)
            .await
    }

    /// Appends `ev` and, on success, records it in `s`.
    pub async fn append(&self, s: &mut Space, ev: Event, time_ms: u64) -> Resp {
        let path = format!("/v1/spaces/{}/events", s.hex());
        let r = self
            .signed(&s.dev, s.id, "POST", &path, event_body(&ev), time_ms)
            .await;
        if r.status == 201 {
            s.events.push(ev);
        }
        r
    }

    pub async fn read(&self, s: &Space, from: u64, limit: u64, time_ms: u64) -> Resp {
        let path = format!("/v1/spaces/{}/events?from={from}&limit={limit}", s.hex());
        self.signed(&s.dev, s.id, "GET", &path, vec![], time_ms)
            .await
    }

    /// Every event of the space, paging through.
    pub async fn read_all(&self, s: &Space, time_ms: u64) -> Vec<Vec<u8>> {
        self.read_from(s, 0, time_ms).await
    }

    /// Every event from `from` on, paging through.
    pub async fn read_from(&self, s: &Space, from: u64, time_ms: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let r = self.read(s, from + out.len() as u64, 1000, time_ms).await;
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            let v = r.json();
            for e in v["events"].as_array().cloned().unwrap_or_default() {
                out.push(
                    STANDARD
                        .decode(e.as_str().unwrap_or(""))
                        .unwrap_or_default(),
                );
            }
            if !v["more"].as_bool().unwrap_or(false) {
                return out;
            }
        }
    }
}

/// Serves the relay in-process on 127.0.0.1:0.
pub struct InProcess {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl InProcess {
    pub async fn start(store: Arc<dyn Store>, clock: Arc<dyn Clock>, limits: Limits) -> Self {
        let state = AppState::new(store, clock, limits).expect("state");
        Self::start_state(state).await
    }

    /// Serves a state the test built (e.g. with push turned on).
    pub async fn start_state(state: AppState) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(troth_relay::serve(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        InProcess {
            addr,
            state,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn http(&self) -> Http {
        Http::new(self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

/// The real `troth-relay` binary on a loopback port.
pub struct Binary {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Binary {
    pub fn start(data: &Path, extra_env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_troth-relay"));
        cmd.args(["--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .env("TROTH_RELAY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn troth-relay");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read stdout");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Binary { child, addr }
    }

    pub fn http(&self) -> Http {
        Http::new(self.addr)
    }

    /// SIGKILL, as a crash.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn random_payload(rng: &mut impl Rng, max: usize) -> Vec<u8> {
    let n = rng.gen_range(1..=max);
    (0..n).map(|_| rng.r#gen()).collect()
}

/// Checks a log: decodes, seq = index, prev = hash of the one before.
pub fn assert_chain(events: &[Vec<u8>]) {
    assert_chain_from(0, EventHash::ZERO, events);
}

/// Checks a part of a log starting at `first`, whose predecessor hashes to `prev`.
/// Returns the hash of the last event (or `prev`).
pub fn assert_chain_from(first: u64, mut prev: EventHash, events: &[Vec<u8>]) -> EventHash {
    for (i, raw) in events.iter().enumerate() {
        let seq = first + i as u64;
        let ev = Event::decode(raw).unwrap_or_else(|e| panic!("event {seq} does not decode: {e}"));
        assert_eq!(ev.header().seq, seq, "seq at {seq}");
        assert_eq!(ev.header().prev, prev, "chain broken at {seq}");
        prev = ev.hash();
    }
    prev
}
