//! Web Push from the relay (issue 16), against an independent
//! implementation: a loopback push service in Python (tests/pushsvc) whose
//! py_vapid checks the VAPID token and whose http_ece decrypts the body.
//! The relay runs in-process on a loopback port with a hand-moved clock.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use serde_json::{Value, json};
use troth_core::event::{Body, Control, Envelope, Event, KeyCommitment};
use troth_core::keys::{DeviceSecret, IdentitySecret};
use troth_relay::push::{PAYLOAD, Push, PushSettings, VapidKey};
use troth_relay::store::MemoryStore;
use troth_relay::{AppState, Limits};

/// The test push service (a child process), killed on drop.
struct PushService {
    child: Child,
    http: Http,
    origin: String,
}

impl PushService {
    fn start() -> PushService {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/pushsvc");
        let python = dir.join(".venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run `cargo xtask setup` (it makes the push service's venv)",
            python.display()
        );
        let mut child = Command::new(python)
            .arg(dir.join("push_service.py"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("push service starts");
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out).read_line(&mut line).expect("a line");
        }
        let port: u16 = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("push service said {line:?}"));
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        PushService {
            child,
            http: Http::new(addr),
            origin: format!("http://127.0.0.1:{port}"),
        }
    }

    /// A new browser subscription: (id, the registration body's keys part).
    async fn subscribe(&self) -> (String, Value) {
        let v = self.http.req("POST", "/new", &[], vec![]).await.json();
        let id = v["id"].as_str().unwrap_or("").to_string();
        (id, v)
    }

    async fn set_status(&self, id: &str, code: u16) {
        self.http
            .req("POST", &format!("/status/{id}/{code}"), &[], vec![])
            .await;
    }

    async fn set_delay(&self, id: &str, ms: u64) {
        self.http
            .req("POST", &format!("/delay/{id}/{ms}"), &[], vec![])
            .await;
    }

    async fn log(&self) -> Vec<Value> {
        let v = self.http.req("GET", "/log", &[], vec![]).await.json();
        v.as_array().cloned().unwrap_or_default()
    }

    async fn pushes_to(&self, id: &str) -> Vec<Value> {
        self.log()
            .await
            .into_iter()
            .filter(|e| e["id"] == id)
            .collect()
    }

    /// Waits up to `secs` for `id` to have received `n` pushes.
    async fn wait_for(&self, id: &str, n: usize, secs: u64) -> Vec<Value> {
        for _ in 0..secs * 10 {
            let got = self.pushes_to(id).await;
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.pushes_to(id).await
    }
}

impl Drop for PushService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A couple's space: A (Leading, device `a`) created it, B (Rebuilding,
/// device `b`) joined; `b_id` certifies more of B's devices.
struct Couple {
    s: Space,
    b: DeviceSecret,
    b_id: IdentitySecret,
    epoch: u32,
}

fn event_by(dev: &DeviceSecret, s: &Space, epoch: u32, body: Body) -> Event {
    Event::sign(
        troth_core::event::Header {
            space: s.id,
            seq: s.events.len() as u64,
            prev: s.head_hash(),
            author: dev.public().id(),
            epoch,
            timestamp_ms: 2_000 + s.events.len() as u64,
        },
        body,
        dev,
    )
}

async fn append_by(http: &Http, c: &mut Couple, dev: &DeviceSecret, body: Body, now: u64) {
    let ev = event_by(dev, &c.s, c.epoch, body);
    let path = format!("/v1/spaces/{}/events", c.s.hex());
    let r = http
        .signed(dev, c.s.id, "POST", &path, event_body(&ev), now)
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    c.s.events.push(ev);
}

async fn couple(http: &Http, seed: u64, now: u64) -> Couple {
    let s = Space::generate(seed);
    assert_eq!(http.create(&s, now).await.status, 201);
    let mut rng = rand::thread_rng();
    let b_id = IdentitySecret::generate(&mut rng);
    let b = DeviceSecret::generate(&mut rng);
    let mut c = Couple {
        s,
        b,
        b_id,
        epoch: 0,
    };
    let add = Body::Control(Control::AddMember {
        cert: c.b_id.certify(&c.b, 1_000),
        envelopes: vec![Envelope {
            epoch: 0,
            device: c.b.public().id(),
            age: vec![7; 40],
        }],
    });
    let a = c.s.dev.duplicate();
    append_by(http, &mut c, &a, add, now).await;
    c
}

/// `dev` registers `sub` (from the push service) with optional quiet hours.
async fn register(
    http: &Http,
    c: &Couple,
    dev: &DeviceSecret,
    sub: &Value,
    quiet: Option<(u16, u16)>,
    now: u64,
) -> Resp {
    let mut body = json!({
        "endpoint": sub["endpoint"],
        "keys": { "p256dh": sub["p256dh"], "auth": sub["auth"] },
    });
    if let Some((from, to)) = quiet {
        body["quiet"] = json!({ "from": from, "to": to });
    }
    let path = format!("/v1/spaces/{}/push", c.s.hex());
    http.signed(
        dev,
        c.s.id,
        "POST",
        &path,
        body.to_string().into_bytes(),
        now,
    )
    .await
}

/// Wall-clock time plus an offset that tests move forward (the push task
/// wakes on real timers and reads this clock).
#[derive(Clone, Default)]
struct Clock(Arc<AtomicU64>);

impl Clock {
    fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl troth_relay::Clock for Clock {
    fn now_ms(&self) -> u64 {
        now_ms() + self.0.load(Ordering::SeqCst)
    }
}

struct Rig {
    relay: InProcess,
    clock: Clock,
    svc: PushService,
}

impl Rig {
    async fn start() -> Rig {
        Self::start_with(18).await
    }

    async fn start_with(registrations_per_hour: u32) -> Rig {
        let svc = PushService::start();
        let clock = Clock::default();
        let state = AppState::new(
            Arc::new(MemoryStore::new()),
            Arc::new(clock.clone()),
            Limits::default(),
        )
        .expect("state");
        let settings = PushSettings {
            test_origins: vec![svc.origin.clone()],
            coalesce_secs: 60,
            gather_ms: 200,
            contact: Some("mailto:ops@example.org".into()),
            registrations_per_hour,
            ..PushSettings::default()
        };
        let state = state.with_push(Push::new(settings, VapidKey::generate()));
        let relay = InProcess::start_state(state).await;
        Rig { relay, clock, svc }
    }

    fn now(&self) -> u64 {
        use troth_relay::Clock as _;
        self.clock.now_ms()
    }

    async fn subscriptions(&self, c: &Couple) -> usize {
        self.relay
            .state
            .store()
            .push_subscriptions(c.s.id)
            .await
            .map(|v| v.len())
            .unwrap_or(usize::MAX)
    }
}

/// Reads `/metrics` until it holds every line in `want` (or panics after
/// `secs` seconds, showing the last text).
async fn metrics_until(http: &Http, want: &[&str], secs: u64) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let m = http.req("GET", "/metrics", &[], vec![]).await;
        let text = String::from_utf8_lossy(&m.body).to_string();
        if want.iter().all(|w| text.contains(w)) {
            return text;
        }
        assert!(std::time::Instant::now() < deadline, "{want:?}: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sealed(text: &[u8]) -> Body {
    Body::Sealed(text.to_vec())
}

#[tokio::test]
async fn the_other_partner_gets_one_content_free_push() {
    let rig = Rig::start().await;
    let http = rig.relay.http();
    let now = rig.now();
    let mut c = couple(&http, 1601, now).await;
    let (a_sub, a_keys) = rig.svc.subscribe().await;
    let (b_sub, b_keys) = rig.svc.subscribe().await;
    let a = c.s.dev.duplicate();
    let b = c.b.duplicate();
    assert_eq!(
        register(&http, &c, &a, &a_keys, None, now).await.status,
        204
    );
    assert_eq!(
        register(&http, &c, &b, &b_keys, None, now).await.status,
        204
    );

    // A writes something: only B's device hears of it, within seconds.
    let secret = b"at the gym until 7, with Sam";
    append_by(&http, &mut c, &a, sealed(secret), rig.now()).await;
    let got = rig.svc.wait_for(&b_sub, 1, 10).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let p = &got[0];
    assert_eq!(p["ok"], true, "the push service refused it: {}", p["why"]);
    assert_eq!(p["aud"], rig.svc.origin.as_str());
    assert_eq!(p["sub"], "mailto:ops@example.org");
    let plain = STANDARD
        .decode(p["plaintext"].as_str().unwrap_or(""))
        .unwrap_or_default();
    assert_eq!(plain, PAYLOAD, "the push says exactly the constant");
    // One record, one size: 86 bytes of header (salt, record size, the
    // relay's one-time key) and 11 + 1 + 16 of record.
    assert_eq!(p["size"], 114);
    let text = String::from_utf8_lossy(&plain).to_string();
    for leak in [
        c.s.hex(),
        hex::encode(a.public().id().0),
        hex::encode(b.public().id().0),
        "gym".to_string(),
    ] {
        assert!(!text.contains(&leak), "the push carries {leak}");
    }
    // Nothing reached A's own device.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(rig.svc.pushes_to(&a_sub).await.is_empty());

    // B answers: A's device hears of it (once), B's does not get another.
    append_by(&http, &mut c, &b, sealed(b"ok"), rig.now()).await;
    assert_eq!(rig.svc.wait_for(&a_sub, 1, 10).await.len(), 1);
    assert_eq!(rig.svc.pushes_to(&b_sub).await.len(), 1);
    rig.relay.stop().await;
}

#[tokio::test]
async fn a_burst_is_one_push_and_pushes_are_coalesced() {
    let rig = Rig::start().await;
    let http = rig.relay.http();
    let now = rig.now();
    let mut c = couple(&http, 1602, now).await;
    let (b_sub, b_keys) = rig.svc.subscribe().await;
    let (a, b) = (c.s.dev.duplicate(), c.b.duplicate());
    assert_eq!(
        register(&http, &c, &b, &b_keys, None, now).await.status,
        204
    );
    for i in 0..5u8 {
        append_by(&http, &mut c, &a, sealed(&[i; 8]), rig.now()).await;
    }
    assert_eq!(rig.svc.wait_for(&b_sub, 1, 10).await.len(), 1);
    // More within the coalescing window (60 s here): held, not sent.
    append_by(&http, &mut c, &a, sealed(b"later"), rig.now()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rig.svc.pushes_to(&b_sub).await.len(), 1, "not coalesced");
    // When the window has passed, one more push says there is something new.
    rig.clock.advance(61_000);
    let got = rig.svc.wait_for(&b_sub, 2, 10).await;
    assert_eq!(got.len(), 2);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rig.svc.pushes_to(&b_sub).await.len(), 2);
    rig.relay.stop().await;
}

#[tokio::test]
async fn quiet_hours_hold_a_push_until_they_end() {
    let rig = Rig::start().await;
    let http = rig.relay.http();
    let now = rig.now();
    let mut c = couple(&http, 1603, now).await;
    let (b_sub, b_keys) = rig.svc.subscribe().await;
    let (a, b) = (c.s.dev.duplicate(), c.b.duplicate());
    // B's quiet hours: from this minute (UTC) for ten minutes.
    let minute = ((now % 86_400_000) / 60_000) as u16;
    let quiet = (minute, (minute + 10) % 1440);
    let r = register(&http, &c, &b, &b_keys, Some(quiet), now).await;
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    append_by(&http, &mut c, &a, sealed(b"check in?"), rig.now()).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(
        rig.svc.pushes_to(&b_sub).await.is_empty(),
        "sent in quiet hours"
    );
    // Nine minutes on: still quiet.
    rig.clock.advance(9 * 60_000 - (now % 60_000));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(rig.svc.pushes_to(&b_sub).await.is_empty());
    // The window ends: the held push goes out.
    rig.clock.advance(2 * 60_000);
    assert_eq!(rig.svc.wait_for(&b_sub, 1, 10).await.len(), 1);
    rig.relay.stop().await;
}

#[tokio::test]
async fn gone_subscriptions_are_deleted_and_revoked_devices_get_nothing() {
    let rig = Rig::start().await;
    let http = rig.relay.http();
    let now = rig.now();
    let mut c = couple(&http, 1604, now).await;
    let (a, b) = (c.s.dev.duplicate(), c.b.duplicate());
    // B adds a second device; both of B's devices register.
    let b2 = DeviceSecret::generate(&mut rand::thread_rng());
    let add = Body::Control(Control::AddDevice {
        cert: c.b_id.certify(&b2, 1_000),
        envelopes: vec![Envelope {
            epoch: 0,
            device: b2.public().id(),
            age: vec![7; 40],
        }],
    });
    append_by(&http, &mut c, &b, add, now).await;
    let (b_sub, b_keys) = rig.svc.subscribe().await;
    let (b2_sub, b2_keys) = rig.svc.subscribe().await;
    assert_eq!(
        register(&http, &c, &b, &b_keys, None, now).await.status,
        204
    );
    assert_eq!(
        register(&http, &c, &b2, &b2_keys, None, now).await.status,
        204
    );
    assert_eq!(rig.subscriptions(&c).await, 2);
    append_by(&http, &mut c, &a, sealed(b"one"), rig.now()).await;
    assert_eq!(rig.svc.wait_for(&b_sub, 1, 10).await.len(), 1);
    assert_eq!(rig.svc.wait_for(&b2_sub, 1, 10).await.len(), 1);

    // B revokes the second device: its subscription goes with it.
    c.epoch = 1;
    let revoke = Body::Control(Control::RevokeDevice {
        device: b2.public().id(),
        commitment: KeyCommitment([0; 32]),
        envelopes: vec![
            Envelope {
                epoch: 1,
                device: a.public().id(),
                age: vec![7; 40],
            },
            Envelope {
                epoch: 1,
                device: b.public().id(),
                age: vec![7; 40],
            },
        ],
    });
    append_by(&http, &mut c, &b, revoke, rig.now()).await;
    for _ in 0..50 {
        if rig.subscriptions(&c).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        rig.subscriptions(&c).await,
        1,
        "the revoked device's subscription stayed"
    );

    // B's first device's browser unsubscribed: the push service says 410.
    rig.svc.set_status(&b_sub, 410).await;
    rig.clock.advance(61_000);
    append_by(&http, &mut c, &a, sealed(b"two"), rig.now()).await;
    assert_eq!(rig.svc.wait_for(&b_sub, 2, 10).await.len(), 2);
    for _ in 0..50 {
        if rig.subscriptions(&c).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        rig.subscriptions(&c).await,
        0,
        "a 410 left the subscription"
    );
    // Nothing more reaches either.
    rig.clock.advance(61_000);
    append_by(&http, &mut c, &a, sealed(b"three"), rig.now()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(rig.svc.pushes_to(&b_sub).await.len(), 2);
    assert_eq!(rig.svc.pushes_to(&b2_sub).await.len(), 1);
    rig.relay.stop().await;
}

#[tokio::test]
async fn opting_out_and_deleting_the_space_forget_the_subscription() {
    let rig = Rig::start().await;
    let http = rig.relay.http();
    let now = rig.now();
    let mut c = couple(&http, 1605, now).await;
    let (a, b) = (c.s.dev.duplicate(), c.b.duplicate());
    let (b_sub, b_keys) = rig.svc.subscribe().await;
    assert_eq!(
        register(&http, &c, &b, &b_keys, None, now).await.status,
        204
    );
    let path = format!("/v1/spaces/{}/push", c.s.hex());
    let r = http
        .signed(&b, c.s.id, "DELETE", &path, vec![], rig.now())
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(rig.subscriptions(&c).await, 0);
    append_by(&http, &mut c, &a, sealed(b"hello"), rig.now()).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(rig.svc.pushes_to(&b_sub).await.is_empty());
    // Registered again, then the space is deleted: nothing is kept.
    assert_eq!(
        register(&http, &c, &b, &b_keys, None, rig.now())
            .await
            .status,
        204
    );
    assert_eq!(rig.subscriptions(&c).await, 1);
    let r = http
        .signed(
            &a,
            c.s.id,
            "DELETE",
            &format!("/v1/spaces/{}", c.s.hex()),
            vec![],
            rig.now(),
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(rig.subscriptions(&c).await, 0);
    rig.relay.stop().await;
}

#[tokio::test]
async fn endpoints_that_are_not_push_services_are_refused() {
    let rig = Rig::start_with(100).await;
    let http = rig.relay.http();
    let now = rig.now();
    let c = couple(&http, 1606, now).await;
    let b = c.b.duplicate();
    let (_, keys) = rig.svc.subscribe().await;
    let port = rig.svc.origin.rsplit(':').next().unwrap_or("1");
    for endpoint in [
        "https://127.0.0.1/push".to_string(),
        "https://10.0.0.7/push".to_string(),
        "https://169.254.169.254/latest/meta-data/".to_string(),
        "https://[::1]/push".to_string(),
        "https://localhost/push".to_string(),
        "http://fcm.googleapis.com/fcm/send/x".to_string(),
        "https://fcm.googleapis.com.attacker.example/x".to_string(),
        // The test service itself on another port: not listed.
        format!(
            "http://127.0.0.1:{}/push/x",
            port.parse::<u16>().unwrap_or(1) ^ 1
        ),
        format!("http://localhost:{port}/push/x"),
    ] {
        let mut sub = keys.clone();
        sub["endpoint"] = json!(endpoint);
        let r = register(&http, &c, &b, &sub, None, now).await;
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (400, "push_endpoint_refused"),
            "{endpoint}"
        );
    }
    assert_eq!(rig.subscriptions(&c).await, 0);
    // Bad keys and bad quiet hours are refused with what to do.
    let mut sub = keys.clone();
    sub["p256dh"] = json!("AAAA");
    let r = register(&http, &c, &b, &sub, None, now).await;
    assert_eq!(r.error_code(), "bad_push_keys");
    let r = register(&http, &c, &b, &keys, Some((60, 60)), now).await;
    assert_eq!(r.error_code(), "bad_quiet_hours");
    let r = register(&http, &c, &b, &keys, Some((60, 1440)), now).await;
    assert_eq!(r.error_code(), "bad_quiet_hours");
    // Unsigned, or signed by a stranger: refused.
    let path = format!("/v1/spaces/{}/push", c.s.hex());
    let r = http.req("POST", &path, &[], b"{}".to_vec()).await;
    assert_eq!(r.status, 401);
    let stranger = DeviceSecret::generate(&mut rand::thread_rng());
    let r = register(&http, &c, &stranger, &keys, None, now).await;
    assert_eq!((r.status, r.error_code().as_str()), (403, "not_member"));
    rig.relay.stop().await;
}

#[tokio::test]
async fn a_flood_of_registrations_is_rate_limited() {
    let rig = Rig::start().await;
    let http = rig.relay.http();
    let now = rig.now();
    let c = couple(&http, 1607, now).await;
    let b = c.b.duplicate();
    let (_, keys) = rig.svc.subscribe().await;
    let mut codes = Vec::new();
    for _ in 0..10 {
        codes.push(register(&http, &c, &b, &keys, None, now).await.status);
    }
    assert_eq!(&codes[..6], &[204; 6]);
    assert!(codes[6..].iter().all(|c| *c == 429), "{codes:?}");
    // The key is there for browsers to subscribe with.
    let r = http.req("GET", "/v1/push/key", &[], vec![]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["key"].as_str().map(str::len), Some(87));
    rig.relay.stop().await;
}

/// Subscriptions are kept per device, replaced, listed, deleted, and go
/// with their space, in every store: memory, sled and PostgreSQL.
#[tokio::test]
async fn every_store_keeps_subscriptions_per_device() {
    use troth_relay::store::{SledStore, Store};
    let dir = tempfile::tempdir().expect("tempdir");
    let sled: Arc<dyn Store> = Arc::new(SledStore::open(dir.path(), 4 << 20).expect("sled"));
    let (pg, _db) = common::pg::fresh_store().await;
    let stores: Vec<(&str, Arc<dyn Store>)> = vec![
        ("memory", Arc::new(MemoryStore::new())),
        ("sled", sled),
        ("postgres", Arc::new(pg)),
    ];
    for (name, store) in stores {
        let s = Space::generate(1700);
        let other = Space::generate(1701);
        for sp in [&s, &other] {
            let record = troth_relay::store::SpaceRecord {
                head: troth_relay::store::Head {
                    seq: 0,
                    hash: sp.events[0].hash(),
                },
                members: vec![],
            };
            assert!(
                store
                    .create_space(sp.id, sp.events[0].as_bytes(), &record)
                    .await
                    .expect("create")
            );
        }
        let (d1, d2) = ([1u8; 32], [2u8; 32]);
        store.push_put(s.id, &d1, b"one").await.expect("put");
        store.push_put(s.id, &d2, b"two").await.expect("put");
        store.push_put(s.id, &d1, b"one again").await.expect("put");
        store
            .push_put(other.id, &d1, b"elsewhere")
            .await
            .expect("put");
        let mut got = store.push_subscriptions(s.id).await.expect("list");
        got.sort();
        assert_eq!(
            got,
            vec![(d1, b"one again".to_vec()), (d2, b"two".to_vec())],
            "{name}"
        );
        store.push_mark(s.id, &d1, true).await.expect("mark");
        store.push_mark(s.id, &d2, true).await.expect("mark");
        store.push_mark(s.id, &d2, true).await.expect("mark twice");
        store.push_mark(other.id, &d1, true).await.expect("mark");
        store.push_mark(s.id, &d2, false).await.expect("unmark");
        let mut marked = store.push_marked().await.expect("marked");
        marked.sort();
        let mut want = vec![(s.id, d1), (other.id, d1)];
        want.sort();
        assert_eq!(marked, want, "{name}");
        assert!(
            store.push_delete(s.id, &d2).await.expect("delete"),
            "{name}"
        );
        assert!(
            !store.push_delete(s.id, &d2).await.expect("delete"),
            "{name}"
        );
        assert!(store.delete_space(s.id).await.expect("delete space"));
        assert!(
            store
                .push_subscriptions(s.id)
                .await
                .expect("list")
                .is_empty(),
            "{name}: the deleted space's subscriptions stayed"
        );
        assert_eq!(
            store.push_subscriptions(other.id).await.expect("list"),
            vec![(d1, b"elsewhere".to_vec())],
            "{name}"
        );
        assert_eq!(
            store.push_marked().await.expect("marked"),
            vec![(other.id, d1)],
            "{name}: the deleted space's held pushes stayed"
        );
    }
}

/// `troth-relay vapid-public-key` makes the key pair once, in the data
/// folder, and the relay started on that folder offers the same key.
#[tokio::test]
async fn the_vapid_key_is_made_once_and_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = || {
        let out = Command::new(env!("CARGO_BIN_EXE_troth-relay"))
            .arg("--data")
            .arg(dir.path())
            .arg("vapid-public-key")
            .env_remove("TROTH_RELAY_CONFIG")
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let first = key();
    assert_eq!(first.len(), 87, "{first}");
    assert_eq!(key(), first);
    let relay = Binary::start(dir.path(), &[]);
    let r = relay.http().req("GET", "/v1/push/key", &[], vec![]).await;
    assert_eq!(r.json()["key"], first.as_str());
}

/// A push service that fails is tried again after a backoff, and one that
/// never answers holds up nothing: appends go on, sends time out.
#[tokio::test]
async fn failures_are_retried_with_backoff_and_never_hold_up_appends() {
    let rig = Rig::start().await;
    let http = rig.relay.http();
    let now = rig.now();
    let mut c = couple(&http, 1608, now).await;
    let (a, b) = (c.s.dev.duplicate(), c.b.duplicate());
    let (b_sub, b_keys) = rig.svc.subscribe().await;
    assert_eq!(
        register(&http, &c, &b, &b_keys, None, now).await.status,
        204
    );
    // The push service is down for a moment (503), then back.
    rig.svc.set_status(&b_sub, 503).await;
    append_by(&http, &mut c, &a, sealed(b"one"), rig.now()).await;
    assert_eq!(rig.svc.wait_for(&b_sub, 1, 10).await.len(), 1);
    rig.svc.set_status(&b_sub, 201).await;
    // Tried again after 2 s, and taken.
    let got = rig.svc.wait_for(&b_sub, 2, 10).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1]["ok"], true);
    // The service records a request before the relay has read its answer:
    // the counters follow a moment later.
    metrics_until(
        &http,
        &["troth_push_retried_total 1", "troth_push_sent_total 1"],
        10,
    )
    .await;

    // A push service that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_origin = format!("http://{}", silent.local_addr().expect("addr"));
    let accepted = Arc::new(AtomicU64::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            held.push(conn);
        }
    });
    rig.relay.stop().await;
    let state = AppState::new(
        Arc::new(MemoryStore::new()),
        Arc::new(Clock::default()),
        Limits::default(),
    )
    .expect("state");
    let settings = PushSettings {
        test_origins: vec![silent_origin.clone()],
        gather_ms: 0,
        send_timeout_secs: 5,
        ..PushSettings::default()
    };
    let relay =
        InProcess::start_state(state.with_push(Push::new(settings, VapidKey::generate()))).await;
    let http = relay.http();
    let mut c = couple(&http, 1609, now_ms()).await;
    let (a, b) = (c.s.dev.duplicate(), c.b.duplicate());
    let mut stuck = b_keys.clone();
    stuck["endpoint"] = json!(format!("{silent_origin}/push/never"));
    assert_eq!(
        register(&http, &c, &b, &stuck, None, now_ms()).await.status,
        204
    );
    append_by(&http, &mut c, &a, sealed(b"first"), now_ms()).await;
    for _ in 0..100 {
        if accepted.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "the send never started");
    // While that send hangs (its timeout is 5 s), forty appends go through.
    for i in 0..40u8 {
        append_by(&http, &mut c, &a, sealed(&[i; 4]), now_ms()).await;
    }
    let m = http.req("GET", "/metrics", &[], vec![]).await;
    let text = String::from_utf8_lossy(&m.body).to_string();
    for still in [
        "troth_push_sent_total 0",
        "troth_push_retried_total 0",
        "troth_push_failed_total 0",
        "troth_push_dropped_total 0",
    ] {
        assert!(text.contains(still), "{still}: {text}");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one send for the device, not one per event"
    );
    relay.stop().await;
}

/// Two relay processes on one PostgreSQL database (issue 19's many
/// machines), with the same VAPID key copied to both: a device registers
/// through one, the partner writes through the other, and the push comes
/// from the one that took the append; the subscription is in the database.
#[tokio::test]
async fn on_postgresql_a_registration_through_one_relay_is_pushed_by_another() {
    let svc = PushService::start();
    let (_, db) = common::pg::fresh_store().await;
    let keys = tempfile::tempdir().expect("tempdir");
    let mut relays = Vec::new();
    for _ in 0..2 {
        let store = Arc::new(common::pg::store_on(&db).await);
        let state =
            AppState::new(store, Arc::new(Clock::default()), Limits::default()).expect("state");
        let settings = PushSettings {
            test_origins: vec![svc.origin.clone()],
            gather_ms: 200,
            ..PushSettings::default()
        };
        let key = VapidKey::load_or_create(keys.path()).expect("key");
        relays.push(InProcess::start_state(state.with_push(Push::new(settings, key))).await);
    }
    let (h1, h2) = (relays[0].http(), relays[1].http());
    let k1 = h1.req("GET", "/v1/push/key", &[], vec![]).await.json();
    let k2 = h2.req("GET", "/v1/push/key", &[], vec![]).await.json();
    assert_eq!(k1, k2, "both relays sign with the copied key");
    let mut c = couple(&h1, 1610, now_ms()).await;
    let (a, b) = (c.s.dev.duplicate(), c.b.duplicate());
    let (b_sub, b_keys) = svc.subscribe().await;
    assert_eq!(
        register(&h1, &c, &b, &b_keys, None, now_ms()).await.status,
        204
    );
    append_by(
        &h2,
        &mut c,
        &a,
        sealed(b"through the other relay"),
        now_ms(),
    )
    .await;
    let got = svc.wait_for(&b_sub, 1, 10).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["ok"], true, "{}", got[0]["why"]);
    // Deleting the space through the second relay deletes the subscription
    // the first one stored.
    let r = h2
        .signed(
            &a,
            c.s.id,
            "DELETE",
            &format!("/v1/spaces/{}", c.s.hex()),
            vec![],
            now_ms(),
        )
        .await;
    assert_eq!(r.status, 204);
    let left = relays[0]
        .state
        .store()
        .push_subscriptions(c.s.id)
        .await
        .expect("list");
    assert!(left.is_empty());
    for r in relays {
        r.stop().await;
    }
}

/// Something new while the device's push is being sent is not lost: it is
/// told by one more push at the next window.
#[tokio::test]
async fn an_event_during_a_send_gets_its_own_push_later() {
    let rig = Rig::start().await;
    let http = rig.relay.http();
    let now = rig.now();
    let mut c = couple(&http, 1611, now).await;
    let (a, b) = (c.s.dev.duplicate(), c.b.duplicate());
    let (b_sub, b_keys) = rig.svc.subscribe().await;
    assert_eq!(
        register(&http, &c, &b, &b_keys, None, now).await.status,
        204
    );
    // The push service takes two seconds to answer.
    rig.svc.set_delay(&b_sub, 2000).await;
    append_by(&http, &mut c, &a, sealed(b"one"), rig.now()).await;
    // The push is in flight (logged on arrival, answered later): write again.
    assert_eq!(rig.svc.wait_for(&b_sub, 1, 10).await.len(), 1);
    append_by(&http, &mut c, &a, sealed(b"two"), rig.now()).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert_eq!(rig.svc.pushes_to(&b_sub).await.len(), 1, "not coalesced");
    rig.clock.advance(61_000);
    assert_eq!(
        rig.svc.wait_for(&b_sub, 2, 10).await.len(),
        2,
        "the second event was lost"
    );
    rig.relay.stop().await;
}

/// A push held when the relay stops (here by coalescing) is sent when it
/// starts again: the real binary on sled, stopped with SIGTERM.
#[tokio::test]
async fn a_held_push_is_sent_after_a_restart() {
    let svc = PushService::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("relay.toml");
    std::fs::write(
        &cfg,
        format!(
            "[push]\ntest_origins = [\"{}\"]\ncoalesce_secs = 30\ngather_ms = 100\n",
            svc.origin
        ),
    )
    .expect("config");
    let cfg = cfg.to_string_lossy().to_string();
    let data = dir.path().join("data");
    let mut relay = Binary::start(&data, &[("TROTH_RELAY_CONFIG", &cfg)]);
    let http = relay.http();
    let mut c = couple(&http, 1612, now_ms()).await;
    let (a, b) = (c.s.dev.duplicate(), c.b.duplicate());
    let (b_sub, b_keys) = svc.subscribe().await;
    assert_eq!(
        register(&http, &c, &b, &b_keys, None, now_ms())
            .await
            .status,
        204
    );
    append_by(&http, &mut c, &a, sealed(b"one"), now_ms()).await;
    assert_eq!(svc.wait_for(&b_sub, 1, 10).await.len(), 1);
    // Within the coalescing window: held.
    append_by(&http, &mut c, &a, sealed(b"two"), now_ms()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = relay.child.id().to_string();
    let stopped = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(stopped.is_ok_and(|s| s.success()));
    let _ = relay.child.wait();
    assert_eq!(svc.pushes_to(&b_sub).await.len(), 1);
    let _again = Binary::start(&data, &[("TROTH_RELAY_CONFIG", &cfg)]);
    let got = svc.wait_for(&b_sub, 2, 10).await;
    assert_eq!(got.len(), 2, "the held push was lost with the restart");
    assert_eq!(got[1]["ok"], true);
}
