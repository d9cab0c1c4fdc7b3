//! The relay under hostile clients: unauthenticated, replayed, expired,
//! wrong-space and non-member requests never succeed; malformed input gets a
//! 4xx JSON error and changes nothing; eight writers racing for the head get
//! exactly one event per sequence number; a burst far over the rate limit is
//! refused with 429 while other spaces carry on.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::SeedableRng;
use rand::rngs::StdRng;
use troth_client::relay::{Appended, RelayClient};
use troth_core::SpaceId;
use troth_core::event::{Body, Control, Envelope, Event, EventHash, Header};
use troth_core::keyfile::KeyBundle;
use troth_core::keys::DeviceSecret;
use troth_core::log::{ChainVerifier, TrustAnchors};
use troth_core::request::RequestAuth;
use troth_relay::store::SledStore;
use troth_relay::{AppState, Limits, SystemClock};
use troth_tests::inproc::InProcessRelay;

struct Relay {
    url: String,
    _relay: InProcessRelay,
    _dir: tempfile::TempDir,
}

impl Relay {
    fn start(limits: Limits) -> Relay {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SledStore::open(dir.path(), 64 << 20).expect("sled");
        let state = AppState::new(Arc::new(store), Arc::new(SystemClock), limits).expect("state");
        let relay = InProcessRelay::start(state, |app| app);
        Relay {
            url: relay.url.clone(),
            _relay: relay,
            _dir: dir,
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A space with one member device; returns the keys and the genesis event.
fn space(relay: &Relay, seed: u64) -> (KeyBundle, Event) {
    let mut rng = StdRng::seed_from_u64(seed);
    let keys = KeyBundle::generate(&mut rng, now_ms());
    let space = SpaceId::random(&mut rng);
    let dev = keys.cert.device().id();
    let genesis = Event::sign(
        Header {
            space,
            seq: 0,
            prev: EventHash::ZERO,
            author: dev,
            epoch: 0,
            timestamp_ms: now_ms(),
        },
        Body::Control(Control::Genesis {
            commitment: troth_core::event::KeyCommitment([0; 32]),
            cert: keys.cert.clone(),
            envelopes: vec![Envelope {
                epoch: 0,
                device: dev,
                age: vec![0; 200],
            }],
        }),
        &keys.device,
    );
    RelayClient::new(&relay.url)
        .expect("client")
        .create_space(&keys.device, &genesis)
        .expect("create");
    (keys, genesis)
}

fn sealed(device: &DeviceSecret, space: SpaceId, seq: u64, prev: EventHash) -> Event {
    Event::sign(
        Header {
            space,
            seq,
            prev,
            author: device.public().id(),
            epoch: 0,
            timestamp_ms: now_ms(),
        },
        Body::Sealed(vec![seq as u8; 296]),
        device,
    )
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

/// Sends a raw request; returns the status and the body as JSON (or Null).
fn send(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, serde_json::Value) {
    let a = agent();
    let result = match method {
        "GET" => {
            let mut r = a.get(url);
            for (k, v) in headers {
                r = r.header(*k, v.as_str());
            }
            r.call()
        }
        "DELETE" => {
            let mut r = a.delete(url);
            for (k, v) in headers {
                r = r.header(*k, v.as_str());
            }
            r.call()
        }
        _ => {
            let mut r = a.post(url).header("content-type", "application/json");
            for (k, v) in headers {
                r = r.header(*k, v.as_str());
            }
            r.send(body)
        }
    };
    let mut resp = result.expect("an HTTP answer");
    let status = resp.status().as_u16();
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_vec()
        .unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

fn signed(
    device: &DeviceSecret,
    space: SpaceId,
    method: &str,
    path: &str,
    body: &[u8],
    time: u64,
) -> Vec<(&'static str, String)> {
    let mut nonce = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
    RequestAuth::sign(device, Some(space), method, path, body, time, nonce)
        .to_headers()
        .to_vec()
}

fn head(relay: &Relay, keys: &KeyBundle, space: SpaceId) -> (u64, EventHash) {
    RelayClient::new(&relay.url)
        .expect("client")
        .read(&keys.device, space, 0)
        .expect("read")
        .head
}

#[test]
fn unauthorised_requests_never_succeed() {
    const N: usize = 25;
    let relay = Relay::start(Limits::generous());
    let (k1, g1) = space(&relay, 1);
    let (k2, g2) = space(&relay, 2);
    let s1 = g1.header().space;
    let s2 = g2.header().space;
    let p1 = format!("/v1/spaces/{}/events", s1.to_hex());
    let p2 = format!("/v1/spaces/{}/events", s2.to_hex());
    let url1 = format!("{}{p1}", relay.url);
    let url2 = format!("{}{p2}", relay.url);
    let ev = sealed(&k1.device, s1, 1, g1.hash());
    let body = serde_json::json!({"event": STANDARD.encode(ev.as_bytes())}).to_string();
    let before = (head(&relay, &k1, s1), head(&relay, &k2, s2));
    let mut successes = 0;
    let mut count = |(status, json): (u16, serde_json::Value), what: &str| {
        assert!((400..500).contains(&status), "{what}: status {status}");
        assert!(
            json["error"].is_string(),
            "{what}: not the JSON error shape: {json}"
        );
        if status < 300 {
            successes += 1;
        }
    };
    for _ in 0..N {
        // No authentication at all.
        count(send("GET", &url1, &[], b""), "unauthenticated read");
        count(
            send("POST", &url1, &[], body.as_bytes()),
            "unauthenticated append",
        );
        count(
            send(
                "DELETE",
                &format!("{}/v1/spaces/{}", relay.url, s1.to_hex()),
                &[],
                b"",
            ),
            "unauthenticated delete",
        );
        // Expired (ten minutes old) and from the future.
        for t in [now_ms() - 600_000, now_ms() + 600_000] {
            count(
                send(
                    "POST",
                    &url1,
                    &signed(&k1.device, s1, "POST", &p1, body.as_bytes(), t),
                    body.as_bytes(),
                ),
                "stale time",
            );
        }
        // Signed for space 1, sent to space 2 (another space's key).
        count(
            send(
                "GET",
                &url2,
                &signed(&k1.device, s1, "GET", &p1, b"", now_ms()),
                b"",
            ),
            "wrong space",
        );
        count(
            send(
                "GET",
                &url2,
                &signed(&k1.device, s2, "GET", &p2, b"", now_ms()),
                b"",
            ),
            "non-member",
        );
        // The right headers with someone else's signature.
        let mut forged = signed(&k2.device, s1, "GET", &p1, b"", now_ms());
        forged[0].1 = k1.cert.device().id().to_b64();
        count(send("GET", &url1, &forged, b""), "wrong key");
        // A body that is not the one signed.
        let other = serde_json::json!({"event": STANDARD.encode(sealed(&k1.device, s1, 1, g1.hash()).as_bytes())}).to_string();
        count(
            send(
                "POST",
                &url1,
                &signed(&k1.device, s1, "POST", &p1, body.as_bytes(), now_ms()),
                other.as_bytes(),
            ),
            "swapped body",
        );
    }
    // Replays: one legitimate read, then the same signed request N times.
    let h = signed(
        &k1.device,
        s1,
        "GET",
        &format!("{p1}?from=0"),
        b"",
        now_ms(),
    );
    let (ok, _) = send("GET", &format!("{url1}?from=0"), &h, b"");
    assert_eq!(ok, 200);
    for _ in 0..N {
        count(
            send("GET", &format!("{url1}?from=0"), &h, b""),
            "replayed request",
        );
    }
    assert_eq!(successes, 0);
    assert_eq!(
        (head(&relay, &k1, s1), head(&relay, &k2, s2)),
        before,
        "nothing changed"
    );
}

#[test]
fn malformed_input_gets_a_json_4xx_and_changes_nothing() {
    let relay = Relay::start(Limits::generous());
    let (k1, g1) = space(&relay, 3);
    let s1 = g1.header().space;
    let p1 = format!("/v1/spaces/{}/events", s1.to_hex());
    let before = head(&relay, &k1, s1);
    let good = sealed(&k1.device, s1, 1, g1.hash());
    let b64 = STANDARD.encode(good.as_bytes());
    let mut bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{\"event\": 5}".to_vec(),
        b"{\"event\": \"%%%not base64\"}".to_vec(),
        b"{\"event\": \"\"}".to_vec(),
        b"{\"genesis\": 1e400}".to_vec(),
        b"{\"event\": 99999999999999999999999999}".to_vec(),
        format!("{{\"event\": \"{}\"}}", &b64[..b64.len() / 2]).into_bytes(),
        format!("{{\"event\": \"{}\", \"event\": 1}}", b64).into_bytes(),
        format!("{{\"event\": \"{}\"}}", STANDARD.encode(vec![1u8; 70_000])).into_bytes(),
        vec![0xff; 3000],
    ];
    let json = serde_json::json!({"event": b64}).to_string().into_bytes();
    for cut in [1, 10, json.len() / 2, json.len() - 1] {
        bodies.push(json[..cut].to_vec());
    }
    let routes = [
        ("POST", "/v1/spaces".to_owned()),
        ("POST", p1.clone()),
        ("POST", "/v1/rendezvous/1/claim".to_owned()),
        ("POST", "/v1/rendezvous/1/messages".to_owned()),
        ("GET", format!("{p1}?from=abc")),
        ("GET", format!("{p1}?from=99999999999999999999999")),
        ("GET", format!("{p1}?limit=-1")),
        (
            "GET",
            "/v1/rendezvous/1/messages?token=%ZZ&after=x".to_owned(),
        ),
        ("DELETE", "/v1/spaces/not-hex".to_owned()),
        ("GET", "/v1/spaces/00/events".to_owned()),
    ];
    for (method, path) in &routes {
        for body in &bodies {
            for auth in [false, true] {
                let headers = if auth {
                    signed(&k1.device, s1, method, path, body, now_ms())
                } else {
                    Vec::new()
                };
                let (status, json) = send(method, &format!("{}{path}", relay.url), &headers, body);
                assert!(
                    (400..500).contains(&status),
                    "{method} {path} with {:?}: {status}",
                    String::from_utf8_lossy(&body[..body.len().min(40)])
                );
                assert!(json["error"].is_string(), "{method} {path}: {json}");
            }
        }
    }
    // Garbage headers.
    let (status, _) = send(
        "GET",
        &format!("{}{p1}", relay.url),
        &[
            ("troth-device", "!!".into()),
            ("troth-time", "yesterday".into()),
            ("troth-nonce", URL_SAFE_NO_PAD.encode([0u8; 3])),
            ("troth-signature", "x".repeat(5000)),
        ],
        b"",
    );
    assert!((400..500).contains(&status));
    assert_eq!(head(&relay, &k1, s1), before, "stored data unchanged");
}

#[test]
fn eight_writers_racing_for_the_head_leave_one_chain() {
    const TOTAL: u64 = 10_000;
    const WRITERS: usize = 8;
    let relay = Relay::start(Limits::generous());
    let (keys, genesis) = space(&relay, 4);
    let s = genesis.header().space;
    let seed = keys.device.signing_seed();
    let age = keys.device.age_secret_string();
    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let threads: Vec<_> = (0..WRITERS)
        .map(|_| {
            let url = relay.url.clone();
            let device = DeviceSecret::from_age_secret(&seed, &age).expect("device");
            let written = written.clone();
            let mut head = (0u64, genesis.hash());
            std::thread::spawn(move || {
                let client = RelayClient::new(&url).expect("client");
                let mut conflicts = 0u64;
                while written.load(std::sync::atomic::Ordering::SeqCst) < TOTAL {
                    let ev = sealed(&device, s, head.0 + 1, head.1);
                    match client.append(&device, &ev).expect("append answers") {
                        Appended::Done(h) => {
                            written.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            head = h;
                        }
                        Appended::Stale(h) => {
                            conflicts += 1;
                            head = h;
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    let conflicts: u64 = threads.into_iter().map(|t| t.join().expect("writer")).sum();
    assert!(conflicts > 0, "the writers never raced");
    // Read everything back and verify the whole chain.
    let client = RelayClient::new(&relay.url).expect("client");
    let mut events = Vec::new();
    loop {
        let page = client
            .read(&keys.device, s, events.len() as u64)
            .expect("read");
        let done = !page.more || page.events.is_empty();
        events.extend(page.events);
        if done {
            break;
        }
    }
    let n = written.load(std::sync::atomic::Ordering::SeqCst);
    assert!(n >= TOTAL && n < TOTAL + WRITERS as u64);
    assert_eq!(
        events.len() as u64,
        n + 1,
        "exactly one event per sequence number"
    );
    let mut verifier = ChainVerifier::new(
        s,
        TrustAnchors {
            leading: Some(keys.identity.public()),
            rebuilding: None,
        },
    );
    let ext = verifier.extend(&events);
    assert_eq!(ext.error, None);
    assert_eq!(ext.accepted as u64, n + 1);
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[test]
fn a_burst_over_the_rate_limit_is_refused_and_others_carry_on() {
    let limits = Limits {
        per_device_per_second: 20,
        per_device_burst: 20,
        ..Limits::generous()
    };
    let relay = Relay::start(limits);
    let (k1, g1) = space(&relay, 5);
    let (k2, g2) = space(&relay, 6);
    let (s1, s2) = (g1.header().space, g2.header().space);
    let client = RelayClient::new(&relay.url).expect("client");
    let rss_before = rss_kib();
    let (mut ok, mut limited) = (0, 0);
    for round in 0..10 {
        // Ten times the allowance, as fast as possible, from one device.
        for _ in 0..20 {
            match client.read(&k1.device, s1, 0) {
                Ok(_) => ok += 1,
                Err(troth_client::error::Error::Refused { status: 429, .. }) => limited += 1,
                Err(e) => panic!("unexpected: {e}"),
            }
        }
        // Meanwhile another couple's device is served normally.
        if round % 3 == 0 {
            client
                .read(&k2.device, s2, 0)
                .expect("other spaces are unaffected");
        }
    }
    assert!(limited >= 100, "only {limited} of 200 were limited");
    assert!(ok >= 20, "the allowance itself was served");
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(
        grown < 32 * 1024,
        "memory grew by {grown} KiB during the burst"
    );
}
