//! The relay's API over a real socket, in-process, on a real sled database
//! in a temporary folder, with an injected clock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use troth_core::event::{Body, Event, EventHash, Header, MAX_BODY};
use troth_core::keys::DeviceSecret;
use troth_relay::store::{SledStore, Store};
use troth_relay::{Limits, ManualClock};

/// The store a test runs on: each test written for both runs twice
/// (`both!`), as `<test>::sled` and `<test>::postgres`.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Sled,
    Postgres,
}

/// Runs an `async fn(Backend)` test on sled and on PostgreSQL.
macro_rules! both {
    ($(#[$attr:meta])* $name:ident) => {
        mod $name {
            $(#[$attr])*
            async fn sled() {
                super::$name(super::Backend::Sled).await
            }
            $(#[$attr])*
            async fn postgres() {
                super::$name(super::Backend::Postgres).await
            }
        }
    };
}

struct Fixture {
    relay: InProcess,
    http: Http,
    clock: ManualClock,
    _dir: Option<tempfile::TempDir>,
}

async fn fixture(backend: Backend, limits: Limits) -> Fixture {
    let clock = ManualClock::new(now_ms());
    let (store, dir): (Arc<dyn Store>, _) = match backend {
        Backend::Sled => {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = SledStore::open(dir.path(), 8 << 20).expect("open sled");
            (Arc::new(store), Some(dir))
        }
        Backend::Postgres => {
            let (store, _) = pg::fresh_store().await;
            (Arc::new(store), None)
        }
    };
    let relay = InProcess::start(store, Arc::new(clock.clone()), limits).await;
    let http = relay.http();
    Fixture {
        relay,
        http,
        clock,
        _dir: dir,
    }
}

impl Fixture {
    fn t(&self) -> u64 {
        use troth_relay::Clock;
        self.clock.now_ms()
    }
}

async fn created(f: &Fixture, seed: u64) -> Space {
    let s = Space::generate(seed);
    let r = f.http.create(&s, f.t()).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    s
}

async fn create_append_and_page(b: Backend) {
    let f = fixture(b, Limits::default()).await;
    let mut s = Space::generate(1);
    let r = f.http.create(&s, f.t()).await;
    assert_eq!(r.status, 201);
    let v = r.json();
    assert_eq!(v["space"], s.hex());
    assert_eq!(v["head"]["seq"], 0);
    assert_eq!(v["head"]["hash"], s.head_hash().to_hex());
    // Creating it again is a conflict.
    let r = f.http.create(&s, f.t()).await;
    assert_eq!((r.status, r.error_code().as_str()), (409, "space_exists"));

    for i in 0..9u8 {
        let ev = s.next_event(&[i; 100]);
        let r = f.http.append(&mut s, ev, f.t()).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["seq"], u64::from(i) + 1);
        assert_eq!(r.json()["hash"], s.head_hash().to_hex());
    }
    // Pages of 4: 0..4, 4..8, 8..10.
    let mut got = Vec::new();
    for (from, n, more) in [(0, 4, true), (4, 4, true), (8, 2, false)] {
        let r = f.http.read(&s, from, 4, f.t()).await;
        assert_eq!(r.status, 200);
        let v = r.json();
        let evs = v["events"].as_array().cloned().unwrap_or_default();
        assert_eq!(evs.len(), n, "page from {from}");
        assert_eq!(v["more"], more);
        assert_eq!(v["head"]["seq"], 9);
        for e in evs {
            got.push(
                STANDARD
                    .decode(e.as_str().unwrap_or(""))
                    .unwrap_or_default(),
            );
        }
    }
    let want: Vec<Vec<u8>> = s.events.iter().map(|e| e.as_bytes().to_vec()).collect();
    assert_eq!(got, want);
    assert_chain(&got);
    // Past the head: nothing, no more.
    let r = f.http.read(&s, 50, 10, f.t()).await;
    assert_eq!(r.json()["events"], json!([]));
    assert_eq!(r.json()["more"], false);
    // Default page.
    let path = format!("/v1/spaces/{}/events", s.hex());
    let r = f
        .http
        .signed(&s.dev, s.id, "GET", &path, vec![], f.t())
        .await;
    assert_eq!(r.json()["events"].as_array().map(Vec::len), Some(10));
    f.relay.stop().await;
}

async fn compare_and_swap_conflict_returns_the_head(b: Backend) {
    let f = fixture(b, Limits::default()).await;
    let mut s = created(&f, 2).await;
    let a = s.next_event(b"from phone");
    let b = s.next_event(b"from laptop");
    assert_eq!(f.http.append(&mut s, a, f.t()).await.status, 201);
    let r = f.http.append(&mut s, b, f.t()).await;
    assert_eq!((r.status, r.error_code().as_str()), (409, "stale_head"));
    assert_eq!(r.json()["head"]["seq"], 1);
    assert_eq!(r.json()["head"]["hash"], s.head_hash().to_hex());
    // An event that skips ahead, or forks with a wrong prev, is stale too.
    let gap = s.event_at(5, s.head_hash(), b"gap");
    assert_eq!(f.http.append(&mut s, gap, f.t()).await.status, 409);
    let fork = s.event_at(2, EventHash([9; 32]), b"fork");
    assert_eq!(f.http.append(&mut s, fork, f.t()).await.status, 409);
    // Re-based, it goes in.
    let rebased = s.next_event(b"from laptop");
    assert_eq!(f.http.append(&mut s, rebased, f.t()).await.status, 201);
    assert_eq!(f.http.read_all(&s, f.t()).await.len(), 3);
    f.relay.stop().await;
}

async fn concurrent_appends_keep_one_chain(b: Backend) {
    let f = fixture(b, Limits::default()).await;
    let s = created(&f, 3).await;
    let s = Arc::new(tokio::sync::Mutex::new(s));
    let mut tasks = Vec::new();
    for w in 0..4u8 {
        let http = f.http.clone();
        let s = s.clone();
        let t = f.t();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0;
            for i in 0..10u8 {
                loop {
                    // Sign against the head we know; lose races sometimes.
                    let (ev, body, h) = {
                        let g = s.lock().await;
                        let ev = g.next_event(&[w, i]);
                        let body = event_body(&ev);
                        let path = format!("/v1/spaces/{}/events", g.hex());
                        let h = auth_headers(&g.dev, g.id, "POST", &path, &body, t);
                        (ev, body, (path, h))
                    };
                    let r = http.req("POST", &h.0, &h.1, body).await;
                    if r.status == 201 {
                        let mut g = s.lock().await;
                        // Winners record in seq order (a later winner may arrive first).
                        while g.events.len() as u64 != ev.header().seq {
                            drop(g);
                            tokio::task::yield_now().await;
                            g = s.lock().await;
                        }
                        g.events.push(ev);
                        ok += 1;
                        break;
                    }
                    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
                }
            }
            ok
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap_or(0);
    }
    assert_eq!(total, 40);
    let g = s.lock().await;
    let all = f.http.read_all(&g, f.t()).await;
    assert_eq!(all.len(), 41);
    assert_chain(&all);
    drop(g);
    f.relay.stop().await;
}

/// Appends to many spaces at once, their signatures checked in shared
/// batches (`troth_relay::verify`): each tampered event is refused with
/// `bad_event_signature` without costing the good ones in its batch
/// anything, and every chain ends complete and verifying.
async fn a_bad_signature_among_concurrent_appends_fails_alone(b: Backend) {
    let f = fixture(b, Limits::generous()).await;
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let s = created(&f, 100 + i).await;
        let http = f.http.clone();
        let t = f.t();
        tasks.push(tokio::spawn(async move {
            let mut s = s;
            let mut refused = 0;
            for j in 0..6u8 {
                if i % 4 == 1 && j == 2 {
                    let mut bytes = s.next_event(&[j; 40]).as_bytes().to_vec();
                    let n = bytes.len();
                    bytes[n - 70] ^= 1; // in the payload: decodes, signature fails
                    let body = json!({ "event": STANDARD.encode(&bytes) })
                        .to_string()
                        .into_bytes();
                    let path = format!("/v1/spaces/{}/events", s.hex());
                    let r = http.signed(&s.dev, s.id, "POST", &path, body, t).await;
                    assert_eq!(
                        (r.status, r.error_code().as_str()),
                        (400, "bad_event_signature")
                    );
                    refused += 1;
                }
                let ev = s.next_event(&[j; 40]);
                let r = http.append(&mut s, ev, t).await;
                assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
            }
            (s, refused)
        }));
    }
    let mut refused = 0;
    for t in tasks {
        let (s, r) = t.await.expect("appender");
        refused += r;
        let all = f.http.read_all(&s, f.t()).await;
        assert_eq!(all.len(), 7);
        let ours: Vec<Vec<u8>> = s.events.iter().map(|e| e.as_bytes().to_vec()).collect();
        assert_eq!(all, ours);
        assert_chain(&all);
    }
    assert_eq!(refused, 4);
    let r = f.http.req("GET", "/metrics", &[], vec![]).await;
    let text = String::from_utf8_lossy(&r.body).to_string();
    // 16 × 6 good appends and 4 bad ones, each with a request signature too.
    assert!(
        text.contains("troth_relay_verify_signatures_total 200"),
        "{text}"
    );
    f.relay.stop().await;
}

/// Appends whose event signature has a torsion component in `R`
/// (`R = rB + T`, `T` each of the seven small-order points in turn) and
/// appends whose signature is simply wrong, sent among concurrent valid
/// appends to 16 spaces so that their signatures share batches: the relay
/// gives each the answer a single check gives (ZIP-215: the torsioned ones
/// are stored, the wrong ones refused with `bad_event_signature`), and what
/// it stored verifies the same in one batch as event by event. Under
/// protocol version 1 the relay's cofactorless batch stored some torsioned
/// events that every single check refused: a split log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_the_answer_a_single_check_gives() {
    use curve25519_dalek::constants::EIGHT_TORSION;
    use troth_core::sign::{BatchItem, PreparedKey, verify_batch};
    let f = fixture(Backend::Sled, Limits::generous()).await;
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let s = created(&f, 200 + i).await;
        let http = f.http.clone();
        let t = f.t();
        tasks.push(tokio::spawn(async move {
            let mut s = s;
            let mut refused = 0;
            for j in 0..6u8 {
                if j % 2 == 1 {
                    let torsion = &EIGHT_TORSION[1 + (i as usize * 3 + usize::from(j)) % 7];
                    let ev = s.next_event_with_torsion(torsion, &[j; 40]);
                    let r = http.append(&mut s, ev, t).await;
                    assert_eq!(
                        r.status,
                        201,
                        "space {i}, append {j}: {}",
                        String::from_utf8_lossy(&r.body)
                    );
                } else {
                    // The same event with one bit of its signature's R flipped.
                    let ev = s.next_event(&[j; 40]);
                    let mut bytes = ev.as_bytes().to_vec();
                    let at = bytes.len() - 50;
                    bytes[at] ^= 1;
                    let body = json!({ "event": STANDARD.encode(&bytes) })
                        .to_string()
                        .into_bytes();
                    let path = format!("/v1/spaces/{}/events", s.hex());
                    let r = http.signed(&s.dev, s.id, "POST", &path, body, t).await;
                    assert_eq!(
                        r.status,
                        400,
                        "space {i}, append {j} was not refused: {}",
                        String::from_utf8_lossy(&r.body)
                    );
                    assert_eq!(r.error_code(), "bad_event_signature");
                    refused += 1;
                }
                let ev = s.next_event(&[j; 40]);
                let r = http.append(&mut s, ev, t).await;
                assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
            }
            (s, refused)
        }));
    }
    let mut refused = 0;
    for t in tasks {
        let (s, r) = t.await.expect("appender");
        refused += r;
        let all = f.http.read_all(&s, f.t()).await;
        let ours: Vec<Vec<u8>> = s.events.iter().map(|e| e.as_bytes().to_vec()).collect();
        assert_eq!(all, ours, "exactly the accepted appends are stored");
        assert_chain(&all);
        // A page (one batch) and event by event agree: every one verifies.
        let key = PreparedKey::new(*s.dev.public().verifying_key());
        let msgs: Vec<Vec<u8>> = s.events.iter().map(|e| e.signed_message()).collect();
        let items: Vec<BatchItem<'_>> = s
            .events
            .iter()
            .zip(&msgs)
            .map(|(e, m)| BatchItem {
                key: &key,
                message: m,
                signature: e.signature(),
            })
            .collect();
        assert_eq!(verify_batch(&items), Ok(()));
        for it in &items {
            assert_eq!(key.verify(it.message, it.signature), Ok(()));
        }
    }
    assert_eq!(refused, 16 * 3);
    // The signatures were checked in shared batches, not one by one.
    let r = f.http.req("GET", "/metrics", &[], vec![]).await;
    let text = String::from_utf8_lossy(&r.body).to_string();
    let counter = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    let (batches, signatures) = (
        counter("troth_relay_verify_batches_total "),
        counter("troth_relay_verify_signatures_total "),
    );
    assert_eq!(signatures, 2 * 16 * 12, "{text}");
    assert!(batches < signatures, "{batches} batches of {signatures}");
    f.relay.stop().await;
}

async fn auth_failures_are_refused(b: Backend) {
    let f = fixture(b, Limits::default()).await;
    let mut s = created(&f, 4).await;
    let other = created(&f, 5).await;
    let path = format!("/v1/spaces/{}/events", s.hex());
    let body = event_body(&s.next_event(b"x"));

    // No headers.
    let r = f.http.req("POST", &path, &[], body.clone()).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "auth_missing"));
    // Wrong key: signed by another key but claiming the member device.
    let mut h = auth_headers(&other.dev, s.id, "POST", &path, &body, f.t());
    h[0].1 = s.dev.public().id().to_b64();
    let r = f.http.req("POST", &path, &h, body.clone()).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "auth_invalid"));
    // Another space's key (a member elsewhere, not here).
    let r = f
        .http
        .signed(&other.dev, s.id, "POST", &path, body.clone(), f.t())
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (403, "not_member"));
    // A member's signature made for another space.
    let h = auth_headers(&s.dev, other.id, "POST", &path, &body, f.t());
    let r = f.http.req("POST", &path, &h, body.clone()).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "auth_invalid"));
    // Signed for another body.
    let h = auth_headers(&s.dev, s.id, "POST", &path, b"{}", f.t());
    let r = f.http.req("POST", &path, &h, body.clone()).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "auth_invalid"));
    // Stale time, and time from the future.
    for t in [f.t() - 6 * 60 * 1000, f.t() + 6 * 60 * 1000] {
        let r = f
            .http
            .signed(&s.dev, s.id, "POST", &path, body.clone(), t)
            .await;
        assert_eq!((r.status, r.error_code().as_str()), (401, "auth_expired"));
    }
    // Garbage headers.
    let mut h = auth_headers(&s.dev, s.id, "POST", &path, &body, f.t());
    h[3].1 = "!!!".into();
    let r = f.http.req("POST", &path, &h, body.clone()).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "auth_invalid"));
    // A valid request, then the same request again: replay.
    let h = auth_headers(&s.dev, s.id, "POST", &path, &body, f.t());
    let r = f.http.req("POST", &path, &h, body.clone()).await;
    assert_eq!(r.status, 201);
    let r = f.http.req("POST", &path, &h, body.clone()).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "auth_replayed"));
    // ... also on a read.
    let rpath = format!("/v1/spaces/{}/events?from=0&limit=5", s.hex());
    let h = auth_headers(&s.dev, s.id, "GET", &rpath, b"", f.t());
    assert_eq!(f.http.req("GET", &rpath, &h, vec![]).await.status, 200);
    let r = f.http.req("GET", &rpath, &h, vec![]).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "auth_replayed"));
    // A read signed for another path (query included).
    let h = auth_headers(
        &s.dev,
        s.id,
        "GET",
        &format!("/v1/spaces/{}/events?from=1", s.hex()),
        b"",
        f.t(),
    );
    assert_eq!(f.http.req("GET", &rpath, &h, vec![]).await.status, 401);
    // Create signed by someone other than the genesis author.
    let newcomer = Space::generate(6);
    let r = f
        .http
        .signed(
            &s.dev,
            newcomer.id,
            "POST",
            "/v1/spaces",
            newcomer.create_body(),
            f.t(),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (403, "not_genesis_author")
    );

    // Events: a non-member author, a bad signature, another space's event.
    s.events.truncate(1);
    let all = f.http.read_all(&s, f.t()).await;
    let head = Event::decode(&all[all.len() - 1])
        .map(|e| e.hash())
        .unwrap_or(EventHash::ZERO);
    let stranger = DeviceSecret::generate(&mut rand::thread_rng());
    let ev = Event::sign(
        Header {
            space: s.id,
            seq: all.len() as u64,
            prev: head,
            author: stranger.public().id(),
            epoch: 0,
            timestamp_ms: 1,
        },
        Body::Sealed(vec![1; 10]),
        &stranger,
    );
    let r = f
        .http
        .signed(&s.dev, s.id, "POST", &path, event_body(&ev), f.t())
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (403, "forbidden_event")
    );
    let good = s.event_at(all.len() as u64, head, b"payload");
    let mut bytes = good.as_bytes().to_vec();
    let n = bytes.len();
    bytes[n - 70] ^= 1; // inside the payload: still decodes, signature fails
    let b = json!({ "event": STANDARD.encode(&bytes) })
        .to_string()
        .into_bytes();
    let r = f.http.signed(&s.dev, s.id, "POST", &path, b, f.t()).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (400, "bad_event_signature")
    );
    let foreign = other.next_event(b"elsewhere");
    let r = f
        .http
        .signed(&s.dev, s.id, "POST", &path, event_body(&foreign), f.t())
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "wrong_space"));
    // Nothing of that was stored.
    assert_eq!(f.http.read_all(&s, f.t()).await, all);
    f.relay.stop().await;
}

async fn ws_connect(
    f: &Fixture,
    s: &Space,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!("ws://{}/v1/spaces/{}/live", f.relay.addr, s.hex());
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect");
    ws
}

async fn next_json(
    ws: &mut (impl StreamExt<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin),
) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
        match m {
            Ok(Some(Ok(Message::Text(t)))) => {
                return serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
            }
            Ok(Some(Ok(Message::Close(c)))) => {
                return json!({ "closed": c.map(|c| u16::from(c.code)) });
            }
            Ok(Some(Ok(_))) => continue,
            other => return json!({ "gone": format!("{other:?}") }),
        }
    }
}

async fn live_push_reaches_every_connection(b: Backend) {
    let f = fixture(b, Limits::default()).await;
    let mut s = created(&f, 7).await;
    let mut a = ws_connect(&f, &s).await;
    let mut b = ws_connect(&f, &s).await;
    for ws in [&mut a, &mut b] {
        ws.send(Message::text(auth_frame(&s.dev, s.id, f.t())))
            .await
            .expect("send auth");
        let ready = next_json(ws).await;
        assert_eq!(ready["ready"], true, "{ready}");
        assert_eq!(ready["head"]["seq"], 0);
    }
    for i in 0..3u8 {
        let ev = s.next_event(&[i; 33]);
        assert_eq!(f.http.append(&mut s, ev.clone(), f.t()).await.status, 201);
        for ws in [&mut a, &mut b] {
            let v = next_json(ws).await;
            assert_eq!(v["seq"], u64::from(i) + 1, "{v}");
            assert_eq!(v["hash"], ev.hash().to_hex());
            assert_eq!(v["event"], STANDARD.encode(ev.as_bytes()));
        }
    }
    // The time may also be sent as the header's decimal string.
    let mut e = ws_connect(&f, &s).await;
    let mut frame: Value =
        serde_json::from_str(&auth_frame(&s.dev, s.id, f.t())).unwrap_or(Value::Null);
    frame["time"] = Value::String(frame["time"].to_string());
    e.send(Message::text(frame.to_string()))
        .await
        .expect("send");
    assert_eq!(next_json(&mut e).await["ready"], true);
    // A non-member's connection is refused with an error frame and a close.
    let other = Space::generate(8);
    let mut c = ws_connect(&f, &s).await;
    c.send(Message::text(auth_frame(&other.dev, s.id, f.t())))
        .await
        .expect("send");
    assert_eq!(next_json(&mut c).await["error"], "not_member");
    assert_eq!(next_json(&mut c).await["closed"], 4403);
    // So is a replayed or garbled frame.
    let mut d = ws_connect(&f, &s).await;
    d.send(Message::text("{\"device\": 1")).await.expect("send");
    assert_eq!(next_json(&mut d).await["error"], "auth_missing");
    // Deleting the space closes the live connections.
    let path = format!("/v1/spaces/{}", s.hex());
    assert_eq!(
        f.http
            .signed(&s.dev, s.id, "DELETE", &path, vec![], f.t())
            .await
            .status,
        204
    );
    assert_eq!(next_json(&mut a).await["error"], "no_space");
    f.relay.stop().await;
}

async fn delete_forgets_the_space(b: Backend) {
    let f = fixture(b, Limits::default()).await;
    let mut s = created(&f, 9).await;
    let ev = s.next_event(b"secret-ish");
    assert_eq!(f.http.append(&mut s, ev, f.t()).await.status, 201);
    let path = format!("/v1/spaces/{}", s.hex());
    let other = created(&f, 10).await;
    // A non-member cannot delete it.
    let r = f
        .http
        .signed(&other.dev, s.id, "DELETE", &path, vec![], f.t())
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        f.http
            .signed(&s.dev, s.id, "DELETE", &path, vec![], f.t())
            .await
            .status,
        204
    );
    let r = f.http.read(&s, 0, 10, f.t()).await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "no_space"));
    let ev = s.next_event(b"after");
    assert_eq!(f.http.append(&mut s, ev, f.t()).await.status, 404);
    let r = f
        .http
        .signed(&s.dev, s.id, "DELETE", &path, vec![], f.t())
        .await;
    assert_eq!(r.status, 404);
    // The other space is untouched; the id may be used again from scratch.
    assert_eq!(f.http.read_all(&other, f.t()).await.len(), 1);
    let again = Space::generate(9);
    assert_eq!(f.http.create(&again, f.t()).await.status, 201);
    assert_eq!(f.http.read_all(&again, f.t()).await.len(), 1);
    f.relay.stop().await;
}

/// An `AddDevice` by `s`'s device for a fresh device of the same identity,
/// on `s`'s head, with the envelope the rules expect (epoch 0).
fn add_device_event(s: &Space, seed: u64) -> Event {
    use rand::SeedableRng;
    use troth_core::event::{Control, Envelope};
    let dev = DeviceSecret::generate(&mut rand::rngs::StdRng::seed_from_u64(seed));
    Event::sign(
        Header {
            space: s.id,
            seq: s.events.len() as u64,
            prev: s.head_hash(),
            author: s.dev.public().id(),
            epoch: 0,
            timestamp_ms: 3_000 + seed,
        },
        Body::Control(Control::AddDevice {
            cert: s.identity.certify(&dev, 1_000),
            envelopes: vec![Envelope {
                epoch: 0,
                device: dev.public().id(),
                age: vec![7; 40],
            }],
        }),
        &s.dev,
    )
}

/// A modified client appends a sixth active device for one person: the
/// relay's membership check refuses it with words, and the log is unchanged.
async fn a_sixth_active_device_is_refused(b: Backend) {
    let f = fixture(b, Limits::default()).await;
    let mut s = created(&f, 18).await;
    for i in 0..(troth_core::members::MAX_ACTIVE_DEVICES as u64 - 1) {
        let ev = add_device_event(&s, 100 + i);
        let r = f.http.append(&mut s, ev, f.t()).await;
        assert_eq!(r.status, 201, "device {}", i + 2);
    }
    let ev = add_device_event(&s, 200);
    let r = f.http.append(&mut s, ev, f.t()).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (403, "forbidden_event")
    );
    let why = r.json()["message"].as_str().unwrap_or_default().to_owned();
    assert!(why.contains("at most 5 active devices"), "{why}");
    assert_eq!(f.http.read_all(&s, f.t()).await.len(), s.events.len());
    f.relay.stop().await;
}

async fn size_limits_answer_413(b: Backend) {
    let limits = Limits {
        max_events_per_space: 3,
        ..Limits::default()
    };
    let f = fixture(b, limits.clone()).await;
    let mut s = created(&f, 11).await;
    let path = format!("/v1/spaces/{}/events", s.hex());
    // A body over the limit (declared length), and a chunked one.
    let big = vec![b'a'; limits.max_body_bytes + 1];
    let r = f
        .http
        .signed(&s.dev, s.id, "POST", &path, big.clone(), f.t())
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (413, "too_large"));
    // An event over MAX_EVENT inside a body under the limit.
    let huge = Event::sign(
        Header {
            space: s.id,
            seq: 1,
            prev: s.head_hash(),
            author: s.dev.public().id(),
            epoch: 0,
            timestamp_ms: 1,
        },
        Body::Sealed(vec![0; MAX_BODY + 1]),
        &s.dev,
    );
    let r = f
        .http
        .signed(&s.dev, s.id, "POST", &path, event_body(&huge), f.t())
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (413, "too_large"));
    // The largest event fits.
    let max = s.next_event(&vec![1; MAX_BODY]);
    assert_eq!(f.http.append(&mut s, max, f.t()).await.status, 201);
    // Events per space.
    let ev = s.next_event(b"2");
    assert_eq!(f.http.append(&mut s, ev, f.t()).await.status, 201);
    let ev = s.next_event(b"3");
    let r = f.http.append(&mut s, ev, f.t()).await;
    assert_eq!((r.status, r.error_code().as_str()), (403, "space_full"));
    // Page size.
    let r = f.http.read(&s, 0, 1001, f.t()).await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "bad_query"));
    // A rendezvous message over 8 KiB.
    let r = f.http.req("POST", "/v1/rendezvous", &[], vec![]).await;
    let v = r.json();
    let msg = json!({ "token": v["token"], "body": STANDARD.encode(vec![0u8; 8 * 1024 + 1]) });
    let r = f
        .http
        .req(
            "POST",
            &format!("/v1/rendezvous/{}/messages", v["mailbox"]),
            &[],
            msg.to_string().into_bytes(),
        )
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (413, "too_large"));
    f.relay.stop().await;
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    // Per client address.
    let f = fixture(
        Backend::Sled,
        Limits {
            per_ip_per_second: 1,
            per_ip_burst: 5,
            ..Limits::default()
        },
    )
    .await;
    let mut codes = Vec::new();
    for _ in 0..8 {
        let r = f.http.req("GET", "/metrics", &[], vec![]).await;
        if r.status == 429 {
            assert_eq!(r.error_code(), "rate_limited");
            assert!(r.headers.get("retry-after").is_some());
        }
        codes.push(r.status);
    }
    // Five in the burst (a sixth if a second passed on a slow machine), then 429.
    let ok = codes.iter().filter(|c| **c == 200).count();
    assert!(
        (5..=6).contains(&ok) && codes[..5].iter().all(|c| *c == 200),
        "{codes:?}"
    );
    // A refused request that carried a body closes its connection, and says
    // so: its unread body would spoil the next request on it.
    let r = f
        .http
        .req("POST", "/v1/rendezvous", &[], b"{}".to_vec())
        .await;
    assert_eq!(r.status, 429);
    assert_eq!(
        r.headers.get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    let r = f.http.req("GET", "/metrics", &[], vec![]).await;
    assert_eq!(r.status, 429);
    assert!(r.headers.get("connection").is_none(), "a GET keeps it open");
    // /healthz is exempt.
    assert_eq!(f.http.req("GET", "/healthz", &[], vec![]).await.status, 200);
    f.relay.stop().await;

    // Per device key.
    let f = fixture(
        Backend::Sled,
        Limits {
            per_device_per_second: 1,
            per_device_burst: 3,
            ..Limits::default()
        },
    )
    .await;
    let s = created(&f, 12).await; // 1
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(f.http.read(&s, 0, 1, f.t()).await.status);
    }
    // The create took one of the three; two reads pass, then 429 (one more
    // token may have come back on a slow machine).
    assert!(
        codes[..2].iter().all(|c| *c == 200) && codes.iter().filter(|c| **c == 429).count() >= 2,
        "{codes:?}"
    );
    let r = f.http.read(&s, 0, 1, f.t()).await;
    assert!(r.headers.get("retry-after").is_some());
    // Another device is not held back.
    let s2 = created(&f, 13).await;
    assert_eq!(f.http.read(&s2, 0, 1, f.t()).await.status, 200);
    f.relay.stop().await;

    // Rendezvous opens and claims per address (code guessing).
    let f = fixture(
        Backend::Sled,
        Limits {
            rendezvous_per_ip_per_minute: 1,
            rendezvous_burst: 3,
            ..Limits::default()
        },
    )
    .await;
    let mut codes = Vec::new();
    for n in 1..=5 {
        codes.push(
            f.http
                .req("POST", &format!("/v1/rendezvous/{n}/claim"), &[], vec![])
                .await
                .status,
        );
    }
    assert_eq!(codes, vec![404, 404, 404, 429, 429]);
    f.relay.stop().await;
}

async fn malformed_input_gets_4xx_json_and_changes_nothing(b: Backend) {
    let f = fixture(b, Limits::default()).await;
    let mut s = created(&f, 14).await;
    let ev = s.next_event(b"keep me");
    assert_eq!(f.http.append(&mut s, ev, f.t()).await.status, 201);
    let before = f.http.read_all(&s, f.t()).await;
    let sp = s.hex();
    let good_event = STANDARD.encode(s.next_event(b"n").as_bytes());
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"{\"event\": \"".to_vec(),
        b"[]".to_vec(),
        b"null".to_vec(),
        b"{\"event\": 5}".to_vec(),
        b"{\"genesis\": true}".to_vec(),
        b"{\"event\": \"***\"}".to_vec(),
        b"{\"event\": \"AAAA\"}".to_vec(),
        b"{\"event\": \"AAA\"}".to_vec(),
        format!("{{\"event\": \"{}\"}}", &good_event[..good_event.len() / 2]).into_bytes(),
        vec![0xff, 0xfe, 0x00],
        b"{\"token\": 1, \"body\": []}".to_vec(),
    ];
    let routes = [
        ("POST", "/v1/spaces".to_string()),
        ("POST", format!("/v1/spaces/{sp}/events")),
        ("POST", "/v1/spaces/zz/events".to_string()),
        ("POST", "/v1/rendezvous/1/messages".to_string()),
        ("POST", "/v1/rendezvous/0/messages".to_string()),
        ("POST", "/v1/rendezvous/abc/claim".to_string()),
        ("POST", "/v1/rendezvous/100000/claim".to_string()),
    ];
    for (method, path) in &routes {
        for body in &bodies {
            let r = f
                .http
                .signed(&s.dev, s.id, method, path, body.clone(), f.t())
                .await;
            assert!(
                (400..500).contains(&r.status),
                "{method} {path} {body:?} -> {}",
                r.status
            );
            let _ = r.error_code();
        }
    }
    let gets = [
        format!("/v1/spaces/{sp}/events?from=-1"),
        format!("/v1/spaces/{sp}/events?limit=abc"),
        format!("/v1/spaces/{sp}/events?limit=0"),
        format!("/v1/spaces/{sp}/events?from=99999999999999999999999"),
        format!("/v1/spaces/{}/events", &sp[..30]),
        "/v1/spaces/%ZZ/events".to_string(),
        "/v1/rendezvous/1/messages".to_string(),
        "/v1/rendezvous/1/messages?token=x&after=-3".to_string(),
        "/v1/rendezvous/1/messages?token=x&wait=26".to_string(),
        "/v1/nowhere".to_string(),
        format!("/v1/spaces/{sp}/live"),
    ];
    for path in &gets {
        let r = f
            .http
            .signed(&s.dev, s.id, "GET", path, vec![], f.t())
            .await;
        assert!((400..500).contains(&r.status), "GET {path} -> {}", r.status);
        let _ = r.error_code();
    }
    for (method, path) in [
        ("PUT", format!("/v1/spaces/{sp}/events")),
        ("DELETE", "/v1/spaces/nothex".into()),
        ("DELETE", "/v1/rendezvous/5".into()),
    ] {
        let r = f
            .http
            .signed(&s.dev, s.id, method, &path, vec![], f.t())
            .await;
        assert!(
            (400..500).contains(&r.status),
            "{method} {path} -> {}",
            r.status
        );
        let _ = r.error_code();
    }
    assert_eq!(f.http.read_all(&s, f.t()).await, before);
    f.relay.stop().await;
}

async fn rendezvous_single_use_messages_and_expiry(b: Backend) {
    let f = fixture(
        b,
        Limits {
            rendezvous_burst: 100,
            ..Limits::default()
        },
    )
    .await;
    let r = f.http.req("POST", "/v1/rendezvous", &[], vec![]).await;
    assert_eq!(r.status, 201);
    let v = r.json();
    let n = v["mailbox"].as_u64().unwrap_or(0);
    assert!((1..=99_999).contains(&n));
    assert_eq!(v["expires_in"], 600);
    let ta = v["token"].as_str().unwrap_or("").to_string();
    // Claimed once; a second claim finds the code burned.
    let r = f
        .http
        .req("POST", &format!("/v1/rendezvous/{n}/claim"), &[], vec![])
        .await;
    assert_eq!(r.status, 200);
    let tb = r.json()["token"].as_str().unwrap_or("").to_string();
    assert_ne!(ta, tb);
    let r = f
        .http
        .req("POST", &format!("/v1/rendezvous/{n}/claim"), &[], vec![])
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (409, "already_claimed")
    );

    let post = |token: &str, body: &[u8]| {
        json!({ "token": token, "body": STANDARD.encode(body) })
            .to_string()
            .into_bytes()
    };
    let mpath = format!("/v1/rendezvous/{n}/messages");
    // B waits; A posts; B wakes with A's message.
    let http = f.http.clone();
    let wait_path = format!("{mpath}?token={tb}&after=0&wait=10");
    let waiter = tokio::spawn(async move { http.req("GET", &wait_path, &[], vec![]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = f
        .http
        .req("POST", &mpath, &[], post(&ta, b"spake2 from A"))
        .await;
    assert_eq!((r.status, r.json()["index"].as_u64()), (201, Some(0)));
    let r = waiter.await.expect("waiter");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["messages"],
        json!([STANDARD.encode(b"spake2 from A")])
    );
    assert_eq!(r.json()["next"], 1);
    // A does not see its own message; sees B's reply.
    let r = f
        .http
        .req("POST", &mpath, &[], post(&tb, b"spake2 from B"))
        .await;
    assert_eq!(r.status, 201);
    let r = f
        .http
        .req("GET", &format!("{mpath}?token={ta}"), &[], vec![])
        .await;
    assert_eq!(
        r.json()["messages"],
        json!([STANDARD.encode(b"spake2 from B")])
    );
    let r = f
        .http
        .req("GET", &format!("{mpath}?token={ta}&after=1"), &[], vec![])
        .await;
    assert_eq!(r.json()["messages"], json!([]));
    // A stranger's token is refused.
    let r = f.http.req("POST", &mpath, &[], post("nope", b"x")).await;
    assert_eq!((r.status, r.error_code().as_str()), (403, "bad_token"));
    // At most 16 messages.
    for _ in 0..14 {
        assert_eq!(
            f.http
                .req("POST", &mpath, &[], post(&ta, b"m"))
                .await
                .status,
            201
        );
    }
    let r = f.http.req("POST", &mpath, &[], post(&ta, b"m")).await;
    assert_eq!((r.status, r.error_code().as_str()), (409, "mailbox_full"));
    // B ends its side. A long poll of A's returns at once with what B left
    // and `closed`, so A learns the outcome; nobody can post any more; B
    // reads nothing more; when A closes too, the mailbox is gone.
    let http = f.http.clone();
    let wait_path = format!("{mpath}?token={ta}&after=1&wait=20");
    let waiter = tokio::spawn(async move { http.req("GET", &wait_path, &[], vec![]).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let close = |t: &str| format!("/v1/rendezvous/{n}?token={t}");
    let r = f.http.req("DELETE", &close(&tb), &[], vec![]).await;
    assert_eq!(r.status, 204);
    let r = waiter.await.expect("waiter");
    assert_eq!(r.status, 200);
    assert_eq!(
        (r.json()["messages"].clone(), r.json()["closed"].clone()),
        (json!([]), json!(true))
    );
    let r = f
        .http
        .req("GET", &format!("{mpath}?token={ta}"), &[], vec![])
        .await;
    assert_eq!(
        (r.json()["messages"].clone(), r.json()["closed"].clone()),
        (json!([STANDARD.encode(b"spake2 from B")]), json!(true))
    );
    let r = f.http.req("DELETE", &close(&tb), &[], vec![]).await;
    assert_eq!(r.status, 204, "closing twice is harmless");
    for t in [&ta, &tb] {
        let r = f.http.req("POST", &mpath, &[], post(t, b"late")).await;
        assert_eq!((r.status, r.error_code().as_str()), (410, "pairing_ended"));
    }
    let r = f
        .http
        .req("GET", &format!("{mpath}?token={tb}"), &[], vec![])
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (410, "pairing_ended"));
    let r = f
        .http
        .req("POST", &format!("/v1/rendezvous/{n}/claim"), &[], vec![])
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (409, "already_claimed")
    );
    let r = f.http.req("DELETE", &close(&ta), &[], vec![]).await;
    assert_eq!(r.status, 204);
    let r = f
        .http
        .req("GET", &format!("{mpath}?token={ta}"), &[], vec![])
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "no_mailbox"));

    // A side that closed and left: the other side may read for a minute.
    let r = f.http.req("POST", "/v1/rendezvous", &[], vec![]).await;
    let n4 = r.json()["mailbox"].as_u64().unwrap_or(0);
    let ta4 = r.json()["token"].as_str().unwrap_or("").to_string();
    let r = f
        .http
        .req("POST", &format!("/v1/rendezvous/{n4}/claim"), &[], vec![])
        .await;
    let tb4 = r.json()["token"].as_str().unwrap_or("").to_string();
    let m4 = format!("/v1/rendezvous/{n4}/messages");
    assert_eq!(
        f.http
            .req("POST", &m4, &[], post(&ta4, b"tag"))
            .await
            .status,
        201
    );
    let r = f
        .http
        .req(
            "DELETE",
            &format!("/v1/rendezvous/{n4}?token={ta4}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status, 204);
    f.clock.advance(59 * 1000);
    let r = f
        .http
        .req("GET", &format!("{m4}?token={tb4}"), &[], vec![])
        .await;
    assert_eq!(r.json()["messages"], json!([STANDARD.encode(b"tag")]));
    f.clock.advance(1000);
    let r = f
        .http
        .req("GET", &format!("{m4}?token={tb4}"), &[], vec![])
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (410, "expired"));
    // Closing a mailbox nobody claimed deletes it at once.
    let r = f.http.req("POST", "/v1/rendezvous", &[], vec![]).await;
    let n5 = r.json()["mailbox"].as_u64().unwrap_or(0);
    let ta5 = r.json()["token"].as_str().unwrap_or("").to_string();
    let r = f
        .http
        .req(
            "DELETE",
            &format!("/v1/rendezvous/{n5}?token={ta5}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status, 204);
    let r = f
        .http
        .req("POST", &format!("/v1/rendezvous/{n5}/claim"), &[], vec![])
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "no_mailbox"));

    // Expiry after 10 minutes, by the injected clock.
    let r = f.http.req("POST", "/v1/rendezvous", &[], vec![]).await;
    let n2 = r.json()["mailbox"].as_u64().unwrap_or(0);
    let ta2 = r.json()["token"].as_str().unwrap_or("").to_string();
    f.clock.advance(9 * 60 * 1000);
    let r = f
        .http
        .req(
            "GET",
            &format!("/v1/rendezvous/{n2}/messages?token={ta2}"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.status, 200);
    f.clock.advance(60 * 1000);
    let r = f
        .http
        .req("POST", &format!("/v1/rendezvous/{n2}/claim"), &[], vec![])
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (410, "expired"));
    let r = f
        .http
        .req("POST", &format!("/v1/rendezvous/{n2}/claim"), &[], vec![])
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "no_mailbox"));
    // The sweep removes expired mailboxes nobody touched.
    let r = f.http.req("POST", "/v1/rendezvous", &[], vec![]).await;
    let n3 = r.json()["mailbox"].as_u64().unwrap_or(0) as u32;
    f.clock.advance(10 * 60 * 1000);
    f.relay.state.maintain().await.expect("maintain");
    assert_eq!(f.relay.state.store().mailbox(n3).await.ok().flatten(), None);
    f.relay.stop().await;
}

async fn healthz_and_metrics(b: Backend) {
    let f = fixture(b, Limits::default()).await;
    let mut s = created(&f, 15).await;
    let ev = s.next_event(b"m");
    assert_eq!(f.http.append(&mut s, ev, f.t()).await.status, 201);
    let r = f.http.req("GET", "/healthz", &[], vec![]).await;
    assert_eq!((r.status, r.json()["status"].as_str()), (200, Some("ok")));
    let kind = match b {
        Backend::Sled => "sled",
        Backend::Postgres => "postgres",
    };
    assert_eq!(r.json()["store"], kind);
    let r = f.http.req("GET", "/metrics", &[], vec![]).await;
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert!(text.contains("troth_relay_appends_total 1"), "{text}");
    assert!(
        text.contains(
            "troth_relay_requests_total{route=\"/v1/spaces/{space}/events\",status=\"201\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("troth_relay_live_connections 0"));
    assert!(text.contains("troth_relay_storage_bytes "));
    f.relay.stop().await;
}

async fn idle_spaces_leave_the_cache_and_come_back(b: Backend) {
    let f = fixture(b, Limits::default()).await;
    let mut s = created(&f, 16).await;
    let ev = s.next_event(b"before");
    assert_eq!(f.http.append(&mut s, ev, f.t()).await.status, 201);
    assert_eq!(f.relay.state.cached_spaces(), 1);
    f.clock.advance(troth_relay::state::IDLE_EVICT_MS + 1);
    f.relay.state.maintain().await.expect("maintain");
    assert_eq!(f.relay.state.cached_spaces(), 0);
    // Reloaded from the store on the next request, head and members intact.
    let ev = s.next_event(b"after");
    assert_eq!(f.http.append(&mut s, ev, f.t()).await.status, 201);
    let all = f.http.read_all(&s, f.t()).await;
    assert_eq!(all.len(), 3);
    assert_chain(&all);
    f.relay.stop().await;
}

async fn sessions_authenticate_with_a_mac_and_refuse_replays_and_strangers(b: Backend) {
    let f = fixture(b, Limits::default()).await;
    let mut s = created(&f, 30).await;
    let other = created(&f, 31).await;
    let key = f.http.open_session(&s, f.t()).await.expect("session opens");
    let events = format!("/v1/spaces/{}/events", s.hex());

    // Appends and reads go through with a MAC and rising counters, also out
    // of order within the window.
    for (counter, i) in (10..).zip(0..3u8) {
        let ev = s.next_event(&[i; 40]);
        let r = f
            .http
            .with_session(&key, counter, "POST", &events, event_body(&ev), f.t())
            .await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        s.events.push(ev);
    }
    let page = format!("{events}?from=0&limit=10");
    let r = f
        .http
        .with_session(&key, 2, "GET", &page, vec![], f.t())
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["events"].as_array().map(Vec::len), Some(4));

    // The same counter again, a counter below the window, a wrong MAC, the
    // wrong path, a stale time: refused, and nothing is stored.
    let r = f
        .http
        .with_session(&key, 2, "GET", &page, vec![], f.t())
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "auth_replayed"));
    let r = f
        .http
        .with_session(&key, 0, "GET", &page, vec![], f.t())
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "auth_replayed"));
    let ev = s.next_event(b"must not land");
    let mut h: Vec<(String, String)> = key
        .authenticate("POST", &events, &event_body(&ev), f.t(), 50)
        .to_headers()
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    h[3].1 = h[3].1.replace(&h[3].1[..2], "AA");
    let r = f.http.req("POST", &events, &h, event_body(&ev)).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "auth_invalid"));
    let moved: Vec<(String, String)> = key
        .authenticate("POST", &page, &event_body(&ev), f.t(), 51)
        .to_headers()
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect();
    let r = f.http.req("POST", &events, &moved, event_body(&ev)).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "auth_invalid"));
    let r = f
        .http
        .with_session(&key, 52, "POST", &events, event_body(&ev), f.t() - 301_000)
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "auth_expired"));
    // A MAC'd request can't be replayed into another space: the session
    // belongs to one.
    let elsewhere = format!("/v1/spaces/{}/events?from=0&limit=10", other.hex());
    let r = f
        .http
        .with_session(&key, 53, "GET", &elsewhere, vec![], f.t())
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (401, "session_unknown")
    );
    // A made-up session.
    let mut h = h.clone();
    h[0].1 = troth_core::session::SessionId([7; 16]).to_b64();
    let r = f.http.req("POST", &events, &h, event_body(&ev)).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (401, "session_unknown")
    );
    // Sessions are opened only by a signed request, never by a session.
    let sessions = format!("/v1/spaces/{}/sessions", s.hex());
    let r = f
        .http
        .with_session(&key, 60, "POST", &sessions, b"{}".to_vec(), f.t())
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "auth_missing"));
    // A low-order X25519 key is refused.
    let body = json!({ "ephemeral": STANDARD.encode([0u8; 32]) })
        .to_string()
        .into_bytes();
    let r = f
        .http
        .signed(&s.dev, s.id, "POST", &sessions, body, f.t())
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (400, "bad_ephemeral"));
    // A non-member cannot open one.
    let stranger = Space::generate(32);
    let body = json!({ "ephemeral": STANDARD.encode([9u8; 32]) })
        .to_string()
        .into_bytes();
    let r = f
        .http
        .signed(&stranger.dev, s.id, "POST", &sessions, body, f.t())
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (403, "not_member"));
    assert_eq!(
        f.http.read_all(&s, f.t()).await.len(),
        4,
        "nothing more was stored"
    );

    // An hour on, the session is gone; a restart forgets every session.
    f.clock.advance(60 * 60 * 1000);
    let r = f
        .http
        .with_session(&key, 70, "GET", &page, vec![], f.t())
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (401, "session_unknown")
    );
    let key = f.http.open_session(&s, f.t()).await.expect("a new one");
    let r = f
        .http
        .with_session(&key, 1, "GET", &page, vec![], f.t())
        .await;
    assert_eq!(r.status, 200);
    // Deleting the space closes its sessions, and no new one opens.
    let open_sessions = || async {
        let r = f.http.req("GET", "/metrics", &[], vec![]).await;
        String::from_utf8_lossy(&r.body)
            .lines()
            .find_map(|l| l.strip_prefix("troth_relay_sessions ").map(str::to_owned))
    };
    assert_eq!(open_sessions().await.as_deref(), Some("1"));
    let r = f
        .http
        .with_session(
            &key,
            2,
            "DELETE",
            &format!("/v1/spaces/{}", s.hex()),
            vec![],
            f.t(),
        )
        .await;
    assert_eq!(r.status, 204);
    let r = f
        .http
        .with_session(&key, 3, "GET", &page, vec![], f.t())
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(open_sessions().await.as_deref(), Some("0"));
    let r = f.http.open_session(&s, f.t()).await.err().map(|r| r.status);
    assert_eq!(r, Some(404));
    f.relay.stop().await;
}

/// A request's body is read even by routes that have no use for it, so the
/// connection stays usable for the next request. Otherwise the relay answers
/// before the body arrives (the client sends it a moment after the head) and
/// hyper then closes the connection under a client that has already pooled
/// it: its next request fails with "peer disconnected". Seen as a rare
/// "can't reach the relay" while pairing (open and claim carry `{}`).
#[tokio::test]
async fn a_body_no_route_needs_still_leaves_the_connection_usable() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = fixture(Backend::Sled, Limits::default()).await;
    let space = Space::generate(90).hex();
    let routes = [
        ("POST", "/v1/rendezvous".to_owned()),
        ("POST", "/v1/rendezvous/1/claim".to_owned()),
        ("DELETE", "/v1/rendezvous/1?token=ab".to_owned()),
        ("DELETE", format!("/v1/spaces/{space}")),
        ("POST", "/v1/nothing-here".to_owned()),
    ];
    for (method, path) in routes {
        let mut conn = tokio::net::TcpStream::connect(f.relay.addr)
            .await
            .expect("connect");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: relay\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.expect("head");
        // The body comes late, as it can from a busy client.
        tokio::time::sleep(Duration::from_millis(100)).await;
        conn.write_all(b"{}GET /healthz HTTP/1.1\r\nhost: relay\r\n\r\n")
            .await
            .expect("body and the next request");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let answers = |b: &[u8]| b.windows(9).filter(|w| w == b"HTTP/1.1 ").count();
        while answers(&got) < 2 || !got.ends_with(br#""status":"ok","store":"sled"}"#) {
            match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                other => panic!(
                    "{method} {path}: the connection ended ({other:?}) after {:?}",
                    String::from_utf8_lossy(&got)
                ),
            }
        }
    }
    f.relay.stop().await;
}

/// A chunked body (no declared length) over the body limit is refused with
/// 413 `too_large` also on a route that reads no body: the body is read,
/// within the limit, before routing.
#[tokio::test]
async fn a_chunked_body_over_the_limit_is_413_on_any_route() {
    use tokio::io::AsyncWriteExt;
    let limits = Limits {
        max_body_bytes: 1024,
        ..Limits::default()
    };
    let f = fixture(Backend::Sled, limits).await;
    for path in ["/v1/rendezvous", "/v1/nothing-here"] {
        let mut conn = tokio::net::TcpStream::connect(f.relay.addr)
            .await
            .expect("connect");
        let chunk = vec![b'a'; 800];
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nhost: relay\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        )
        .into_bytes();
        for _ in 0..2 {
            req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            req.extend_from_slice(&chunk);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        // The relay may answer and close before taking all of it.
        let _ = conn.write_all(&req).await;
        assert_raw_error(&mut conn, 413, "too_large", path).await;
    }
    f.relay.stop().await;
}

/// A request that stalls (its body never finishes) is answered 408
/// `timeout` after the request timeout, and until then it holds its
/// concurrency permit: with one permit, a second request waits for it.
#[tokio::test]
async fn a_stalled_request_times_out_and_holds_its_permit_until_then() {
    use tokio::io::AsyncWriteExt;
    let limits = Limits {
        request_timeout_secs: 1,
        max_concurrent_requests: 1,
        ..Limits::default()
    };
    let f = fixture(Backend::Sled, limits).await;
    let mut stalled = tokio::net::TcpStream::connect(f.relay.addr)
        .await
        .expect("connect");
    stalled
        .write_all(
            b"POST /v1/rendezvous HTTP/1.1\r\nhost: relay\r\ncontent-type: application/json\r\ncontent-length: 10\r\n\r\n{}",
        )
        .await
        .expect("head");
    // Let the relay take the stalled request's permit first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = f.http.req("GET", "/healthz", &[], vec![]);
    tokio::pin!(second);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut second)
            .await
            .is_err(),
        "the second request was answered while the only permit was held"
    );
    let r = tokio::time::timeout(Duration::from_secs(5), second)
        .await
        .expect("the second request is answered once the first times out");
    assert_eq!(r.status, 200);
    assert_raw_error(&mut stalled, 408, "timeout", "the stalled request").await;
    f.relay.stop().await;
}

/// Reads what the relay sends on a raw connection until it closes it (at
/// most 5 s) and checks it is one JSON error with `status` and `code`.
async fn assert_raw_error(conn: &mut tokio::net::TcpStream, status: u16, code: &str, what: &str) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut got)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with(&format!("HTTP/1.1 {status}")),
        "{what}: {text}"
    );
    assert!(
        text.contains(&format!(r#""error":"{code}""#)),
        "{what}: {text}"
    );
}

both!(
    #[tokio::test]
    create_append_and_page
);
both!(
    #[tokio::test]
    compare_and_swap_conflict_returns_the_head
);
both!(
    #[tokio::test]
    concurrent_appends_keep_one_chain
);
both!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    a_bad_signature_among_concurrent_appends_fails_alone
);
both!(
    #[tokio::test]
    auth_failures_are_refused
);
both!(
    #[tokio::test]
    live_push_reaches_every_connection
);
both!(
    #[tokio::test]
    delete_forgets_the_space
);
both!(
    #[tokio::test]
    size_limits_answer_413
);
both!(
    #[tokio::test]
    malformed_input_gets_4xx_json_and_changes_nothing
);
both!(
    #[tokio::test]
    rendezvous_single_use_messages_and_expiry
);
both!(
    #[tokio::test]
    healthz_and_metrics
);
both!(
    #[tokio::test]
    idle_spaces_leave_the_cache_and_come_back
);
both!(
    #[tokio::test]
    sessions_authenticate_with_a_mac_and_refuse_replays_and_strangers
);
both!(
    #[tokio::test]
    a_sixth_active_device_is_refused
);
