//! Two relays (in-process, each its own `AppState`, pool, listener and
//! port) on one PostgreSQL database, as two relay processes would be: live
//! watchers of one see the other's appends once and in order (also after
//! lost notices and a cut listener), racing writers through both keep one
//! chain, a nonce used at one is refused at the other, a session opened at
//! one is unknown (cleanly) at the other, a delete at one is seen at once by
//! the other, and a pairing whose sides use different relays completes (its
//! long poll woken by the other relay's notice).

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use common::*;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use troth_relay::store::{PgStore, Store};
use troth_relay::{Limits, SystemClock};

async fn two_relays() -> (InProcess, InProcess, String) {
    let (ra, rb, db, _) = two_relays_with_stores().await;
    (ra, rb, db)
}

/// Two relays and relay A's store (to mute its notices).
async fn two_relays_with_stores() -> (InProcess, InProcess, String, Arc<PgStore>) {
    let (a, db) = pg::fresh_store().await;
    let b = pg::store_on(&db).await;
    let a = Arc::new(a);
    let (da, db_): (Arc<dyn Store>, Arc<dyn Store>) = (a.clone(), Arc::new(b));
    let ra = InProcess::start(da, Arc::new(SystemClock), Limits::generous()).await;
    let rb = InProcess::start(db_, Arc::new(SystemClock), Limits::generous()).await;
    (ra, rb, db, a)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A live connection to `relay` for space `s`, past its `ready` frame
/// (whose head it returns).
async fn watch(relay: &InProcess, s: &Space) -> (Ws, u64) {
    let url = format!("ws://{}/v1/spaces/{}/live", relay.addr, s.hex());
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("ws connect");
    ws.send(Message::text(auth_frame(&s.dev, s.id, now_ms())))
        .await
        .expect("send auth");
    let ready = next_frame(&mut ws, Duration::from_secs(10))
        .await
        .expect("ready frame");
    assert_eq!(ready["ready"], true, "{ready}");
    let head = ready["head"]["seq"].as_u64().expect("ready head");
    (ws, head)
}

/// The next JSON text frame (a close becomes `{"closed": code}`), or `None`
/// if none came within `wait`.
async fn next_frame(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(t)))) => {
                return Some(serde_json::from_str(t.as_str()).unwrap_or(Value::Null));
            }
            Ok(Some(Ok(Message::Close(c)))) => {
                return Some(json!({ "closed": c.map(|c| u16::from(c.code)) }));
            }
            Ok(Some(Ok(_))) => continue,
            Ok(other) => return Some(json!({ "gone": format!("{other:?}") })),
        }
    }
}

/// Frames until one with sequence number `last` arrived; fails on anything
/// but an event frame, or on a wait of more than `wait` for one.
async fn frames_until(ws: &mut Ws, last: u64, wait: Duration) -> Vec<(u64, String, String)> {
    let mut got = Vec::new();
    loop {
        let v = next_frame(ws, wait)
            .await
            .unwrap_or_else(|| panic!("no frame within {wait:?}; got up to {:?}", got.last()));
        let seq = v["seq"]
            .as_u64()
            .unwrap_or_else(|| panic!("not an event frame: {v}"));
        let hash = v["hash"].as_str().unwrap_or("").to_string();
        let event = v["event"].as_str().unwrap_or("").to_string();
        got.push((seq, hash, event));
        if seq >= last {
            return got;
        }
    }
}

/// Appends `n` events to `s` through `http`, one after another.
async fn append_n(http: &Http, s: &mut Space, tag: u8, n: u8) {
    for i in 0..n {
        let ev = s.next_event(&[tag, i]);
        let r = http.append(s, ev, now_ms()).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
}

/// Every event of `s` after `from`, as live frames carry them.
fn expected_frames(s: &Space, from: u64) -> Vec<(u64, String, String)> {
    s.events
        .iter()
        .skip(usize::try_from(from + 1).unwrap_or(usize::MAX))
        .map(|e| {
            (
                e.header().seq,
                e.hash().to_hex(),
                STANDARD.encode(e.as_bytes()),
            )
        })
        .collect()
}

async fn terminate_listeners(db: &str) -> u64 {
    let (c, conn) = pg::config(db)
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    let task = tokio::spawn(conn);
    let n = c
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN %' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .expect("terminate listeners")
        .len() as u64;
    drop(c);
    let _ = task.await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_through_one_relay_reach_live_watchers_of_the_other_once_and_in_order() {
    let (ra, rb, db, store_a) = two_relays_with_stores().await;
    let (ha, hb) = (ra.http(), rb.http());
    let mut s = Space::generate(904);
    assert_eq!(ha.create(&s, now_ms()).await.status, 201);
    let (mut at_b, from_b) = watch(&rb, &s).await;
    let (mut at_a, from_a) = watch(&ra, &s).await;
    assert_eq!((from_a, from_b), (0, 0));
    let quick = Duration::from_secs(5);

    // Notices after each commit: through A, and through both in turn.
    append_n(&ha, &mut s, 1, 20).await;
    append_n(&hb, &mut s, 2, 5).await;
    append_n(&ha, &mut s, 3, 5).await;
    let last = s.events.len() as u64 - 1;
    let want = expected_frames(&s, 0);
    assert_eq!(frames_until(&mut at_b, last, quick).await, want);
    assert_eq!(frames_until(&mut at_a, last, quick).await, want);

    // A relay that dies between its commit and its NOTIFY: the head check
    // makes up for the lost notices.
    store_a.mute_notices(true);
    let before = s.events.len() as u64 - 1;
    append_n(&ha, &mut s, 4, 6).await;
    store_a.mute_notices(false);
    let last = s.events.len() as u64 - 1;
    let t = std::time::Instant::now();
    let got = frames_until(&mut at_b, last, quick).await;
    assert_eq!(got, expected_frames(&s, before));
    eprintln!("caught up after lost notices in {:?}", t.elapsed());

    // The listeners' connections are cut while appends go on: they
    // reconnect and catch up from the store.
    let before = s.events.len() as u64 - 1;
    let cut = terminate_listeners(&db).await;
    assert!(cut >= 2, "terminated {cut} listeners");
    append_n(&ha, &mut s, 5, 6).await;
    let last = s.events.len() as u64 - 1;
    let got = frames_until(&mut at_b, last, quick).await;
    assert_eq!(got, expected_frames(&s, before));
    // A's own watcher got everything once too (its own appends, pushed
    // directly, and B's, through notices).
    let got = frames_until(&mut at_a, last, quick).await;
    assert_eq!(got, expected_frames(&s, 30));

    // No frame twice, even after more head checks went by.
    assert!(
        next_frame(&mut at_b, troth_relay_head_check() * 2)
            .await
            .is_none(),
        "a frame arrived twice"
    );
    let m = hb.req("GET", "/metrics", &[], vec![]).await;
    let metrics = String::from_utf8_lossy(&m.body).to_string();
    for name in [
        "troth_relay_pg_listener_connected 1",
        "troth_relay_pg_pool_max ",
        "troth_relay_live_caught_up_total ",
    ] {
        assert!(metrics.contains(name), "{name} missing from {metrics}");
    }
    assert!(
        !metrics.contains("troth_relay_pg_listener_connects_total 1\n"),
        "the listener did not reconnect: {metrics}"
    );

    // A delete through A closes B's live connection.
    let path = format!("/v1/spaces/{}", s.hex());
    let r = ha
        .signed(&s.dev, s.id, "DELETE", &path, vec![], now_ms())
        .await;
    assert_eq!(r.status, 204);
    let mut closed = None;
    for _ in 0..3 {
        match next_frame(&mut at_b, quick).await {
            Some(v) if v.get("closed").is_some() => {
                closed = Some(v);
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(closed.map(|v| v["closed"].clone()), Some(json!(4404)));
    ra.stop().await;
    rb.stop().await;
}

fn troth_relay_head_check() -> Duration {
    Duration::from_secs(2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_writers_through_two_relays_leave_one_chain() {
    let (ra, rb, _db) = two_relays().await;
    let (ha, hb) = (ra.http(), rb.http());
    let s = Space::generate(901);
    assert_eq!(ha.create(&s, now_ms()).await.status, 201);
    let s = Arc::new(tokio::sync::Mutex::new(s));
    const PER_WRITER: u8 = 8;
    let mut tasks = Vec::new();
    for w in 0..8u8 {
        // Writers alternate between the relays.
        let http = if w % 2 == 0 { ha.clone() } else { hb.clone() };
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut conflicts) = (0u32, 0u32);
            for i in 0..PER_WRITER {
                loop {
                    let (ev, body, path, h) = {
                        let g = s.lock().await;
                        let ev = g.next_event(&[w, i]);
                        let body = event_body(&ev);
                        let path = format!("/v1/spaces/{}/events", g.hex());
                        let h = auth_headers(&g.dev, g.id, "POST", &path, &body, now_ms());
                        (ev, body, path, h)
                    };
                    let r = http.req("POST", &path, &h, body).await;
                    if r.status == 201 {
                        assert_eq!(r.json()["seq"], ev.header().seq);
                        let mut g = s.lock().await;
                        while g.events.len() as u64 != ev.header().seq {
                            drop(g);
                            tokio::task::yield_now().await;
                            g = s.lock().await;
                        }
                        g.events.push(ev);
                        ok += 1;
                        break;
                    }
                    assert_eq!(
                        (r.status, r.error_code().as_str()),
                        (409, "stale_head"),
                        "{}",
                        String::from_utf8_lossy(&r.body)
                    );
                    // The loser learns a head at or past the one it wrote on.
                    let seen = r.json()["head"]["seq"].as_u64().unwrap_or(0);
                    assert!(seen >= ev.header().seq, "409 with an old head {seen}");
                    conflicts += 1;
                    tokio::task::yield_now().await;
                }
            }
            (ok, conflicts)
        }));
    }
    let (mut total, mut conflicts) = (0, 0);
    for t in tasks {
        let (ok, c) = t.await.expect("writer");
        total += ok;
        conflicts += c;
    }
    assert_eq!(total, 8 * u32::from(PER_WRITER));
    eprintln!("{total} appends, {conflicts} lost races");
    let g = s.lock().await;
    let via_a = ha.read_all(&g, now_ms()).await;
    let via_b = hb.read_all(&g, now_ms()).await;
    assert_eq!(via_a.len(), 1 + 8 * usize::from(PER_WRITER));
    assert_eq!(via_a, via_b);
    assert_chain(&via_a);
    let want: Vec<Vec<u8>> = g.events.iter().map(|e| e.as_bytes().to_vec()).collect();
    assert_eq!(via_a, want);
    drop(g);
    ra.stop().await;
    rb.stop().await;
}

#[tokio::test]
async fn a_nonce_used_at_one_relay_is_refused_at_the_other() {
    let (ra, rb, _db) = two_relays().await;
    let (ha, hb) = (ra.http(), rb.http());
    let mut s = Space::generate(902);
    assert_eq!(ha.create(&s, now_ms()).await.status, 201);
    // An append signed once, sent to A, then replayed to B.
    let ev = s.next_event(b"once");
    let body = event_body(&ev);
    let path = format!("/v1/spaces/{}/events", s.hex());
    let h = auth_headers(&s.dev, s.id, "POST", &path, &body, now_ms());
    let r = ha.req("POST", &path, &h, body.clone()).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    s.events.push(ev);
    let r = hb.req("POST", &path, &h, body).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "auth_replayed"));
    // A read, the same way round.
    let path = format!("/v1/spaces/{}/events?from=0&limit=10", s.hex());
    let h = auth_headers(&s.dev, s.id, "GET", &path, &[], now_ms());
    assert_eq!(hb.req("GET", &path, &h, vec![]).await.status, 200);
    let r = ha.req("GET", &path, &h, vec![]).await;
    assert_eq!((r.status, r.error_code().as_str()), (401, "auth_replayed"));
    // A session opened at A is not known at B: refused cleanly (the
    // client opens another there), never taken for something else.
    let key = ha.open_session(&s, now_ms()).await.expect("session at A");
    let path = format!("/v1/spaces/{}/events?from=0&limit=10", s.hex());
    let r = ha
        .with_session(&key, 1, "GET", &path, vec![], now_ms())
        .await;
    assert_eq!(r.status, 200);
    let r = hb
        .with_session(&key, 2, "GET", &path, vec![], now_ms())
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (401, "session_unknown")
    );
    // B sees A's append at once, and a stale append at B gets A's head.
    assert_eq!(hb.read_all(&s, now_ms()).await.len(), 2);
    let fork = s.event_at(1, s.events[0].hash(), b"fork");
    let r = hb.append(&mut s, fork, now_ms()).await;
    assert_eq!((r.status, r.error_code().as_str()), (409, "stale_head"));
    assert_eq!(r.json()["head"]["seq"], 1);
    assert_eq!(r.json()["head"]["hash"], s.head_hash().to_hex());
    ra.stop().await;
    rb.stop().await;
}

#[tokio::test]
async fn a_delete_at_one_relay_is_seen_at_once_by_the_other() {
    let (ra, rb, db) = two_relays().await;
    let (ha, hb) = (ra.http(), rb.http());
    let mut s = Space::generate(903);
    assert_eq!(ha.create(&s, now_ms()).await.status, 201);
    for i in 0..5u8 {
        let ev = s.next_event(&[i]);
        assert_eq!(hb.append(&mut s, ev, now_ms()).await.status, 201);
    }
    assert_eq!(ha.read_all(&s, now_ms()).await.len(), 6);
    let path = format!("/v1/spaces/{}", s.hex());
    let r = hb
        .signed(&s.dev, s.id, "DELETE", &path, vec![], now_ms())
        .await;
    assert_eq!(r.status, 204);
    let r = ha.read(&s, 0, 10, now_ms()).await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "no_space"));
    let ev = s.next_event(b"late");
    let r = ha.append(&mut s, ev, now_ms()).await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "no_space"));
    // The id may be used again at once, while the old events still wait
    // for the background purge, which then removes them (and only them).
    let s2 = Space::generate(903);
    assert_eq!(ha.create(&s2, now_ms()).await.status, 201);
    assert_eq!(hb.read_all(&s2, now_ms()).await.len(), 1);
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            let (c, conn) = pg::config(&db)
                .connect(tokio_postgres::NoTls)
                .await
                .expect("connect");
            let task = tokio::spawn(conn);
            let n: i64 = c.query_one(sql, &[]).await.expect(sql).get(0);
            drop(c);
            let _ = task.await;
            n
        }
    };
    assert_eq!(count("SELECT count(*) FROM events").await, 7);
    ra.state.maintain().await.expect("maintain");
    assert_eq!(count("SELECT count(*) FROM events").await, 1);
    assert_eq!(count("SELECT count(*) FROM deleted_spaces").await, 0);
    assert_eq!(hb.read_all(&s2, now_ms()).await.len(), 1);
    ra.stop().await;
    rb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pairing_whose_sides_use_different_relays_completes() {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::json;
    let (ra, rb, _db) = two_relays().await;
    let (ha, hb) = (ra.http(), rb.http());
    // Side A opens at relay A, side B claims at relay B.
    let r = ha.req("POST", "/v1/rendezvous", &[], vec![]).await;
    assert_eq!(r.status, 201);
    let n = r.json()["mailbox"].as_u64().unwrap_or(0);
    let token_a = r.json()["token"].as_str().unwrap_or("").to_string();
    let r = hb
        .req("POST", &format!("/v1/rendezvous/{n}/claim"), &[], vec![])
        .await;
    assert_eq!(r.status, 200);
    let token_b = r.json()["token"].as_str().unwrap_or("").to_string();
    // A waits at relay A while B posts at relay B: the long poll sees it.
    let waiting = {
        let ha = ha.clone();
        let path = format!("/v1/rendezvous/{n}/messages?token={token_a}&after=0&wait=10");
        tokio::spawn(async move {
            let t = std::time::Instant::now();
            (ha.req("GET", &path, &[], vec![]).await, t.elapsed())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let post = |token: &str, body: &[u8]| {
        json!({ "token": token, "body": STANDARD.encode(body) })
            .to_string()
            .into_bytes()
    };
    let path = format!("/v1/rendezvous/{n}/messages");
    let r = hb.req("POST", &path, &[], post(&token_b, b"pake B")).await;
    assert_eq!(r.status, 201);
    let (r, waited) = waiting.await.expect("long poll");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["messages"][0], STANDARD.encode(b"pake B"));
    // Woken by B's notice, well before the 2 s safety-net look.
    assert!(
        waited < std::time::Duration::from_millis(1500),
        "woke only after {waited:?}"
    );
    // And the other way round, then both close at different relays.
    let r = ha.req("POST", &path, &[], post(&token_a, b"pake A")).await;
    assert_eq!(r.status, 201);
    let r = hb
        .req(
            "GET",
            &format!("/v1/rendezvous/{n}/messages?token={token_b}&after=0"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(r.json()["messages"][0], STANDARD.encode(b"pake A"));
    for (h, t) in [(&ha, &token_a), (&hb, &token_b)] {
        let r = h
            .req(
                "DELETE",
                &format!("/v1/rendezvous/{n}?token={t}"),
                &[],
                vec![],
            )
            .await;
        assert_eq!(r.status, 204);
    }
    let r = ha
        .req("POST", &format!("/v1/rendezvous/{n}/claim"), &[], vec![])
        .await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "no_mailbox"));
    ra.stop().await;
    rb.stop().await;
}

/// An event of `space` by `dev` at `seq` on `prev`, in `epoch`.
fn event_by(
    dev: &troth_core::keys::DeviceSecret,
    space: troth_core::SpaceId,
    seq: u64,
    prev: troth_core::event::EventHash,
    epoch: u32,
    body: troth_core::event::Body,
) -> troth_core::event::Event {
    troth_core::event::Event::sign(
        troth_core::event::Header {
            space,
            seq,
            prev,
            author: dev.public().id(),
            epoch,
            timestamp_ms: 2_000 + seq,
        },
        body,
        dev,
    )
}

#[tokio::test]
async fn a_device_revoked_through_one_relay_cannot_append_through_the_other() {
    use rand::{RngCore as _, SeedableRng as _};
    use troth_core::event::{Body, Control, Envelope, KeyCommitment};
    use troth_core::keys::{DeviceSecret, IdentitySecret};
    let (ra, rb, _db) = two_relays().await;
    let (ha, hb) = (ra.http(), rb.http());
    // Space::generate's own steps, to hold the identity that certifies a
    // second device.
    let seed = 905;
    let mut s = Space::generate(seed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    let identity = IdentitySecret::generate(&mut rng);
    let dev1 = DeviceSecret::generate(&mut rng);
    assert_eq!(dev1.public().id(), s.dev.public().id());
    let dev2 = DeviceSecret::generate(&mut rng);
    assert_eq!(ha.create(&s, now_ms()).await.status, 201);
    let add = event_by(
        &dev1,
        s.id,
        1,
        s.head_hash(),
        0,
        Body::Control(Control::AddDevice {
            cert: identity.certify(&dev2, 1_000),
            envelopes: vec![Envelope {
                epoch: 0,
                device: dev2.public().id(),
                age: vec![7; 40],
            }],
        }),
    );
    let r = ha.append(&mut s, add, now_ms()).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // Device 2 appends through A (so A has seen it active) with a session.
    let path = format!("/v1/spaces/{}/events", s.hex());
    let ev = event_by(&dev2, s.id, 2, s.head_hash(), 0, Body::Sealed(vec![1]));
    let body = event_body(&ev);
    let h = auth_headers(&dev2, s.id, "POST", &path, &body, now_ms());
    let r = ha.req("POST", &path, &h, body).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    s.events.push(ev);
    // Device 1 revokes device 2 through B.
    let revoke = event_by(
        &dev1,
        s.id,
        3,
        s.head_hash(),
        1,
        Body::Control(Control::RevokeDevice {
            device: dev2.public().id(),
            commitment: KeyCommitment([0; 32]),
            envelopes: vec![Envelope {
                epoch: 1,
                device: dev1.public().id(),
                age: vec![7; 40],
            }],
        }),
    );
    let r = hb.append(&mut s, revoke, now_ms()).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // Device 2 tries through A, which last saw it as a member: on the old
    // head (where it still was one) the swap fails and it gets the new head
    // (409); on the new head it is refused as no longer a member.
    for (seq, prev, epoch) in [(3, s.events[2].hash(), 0), (4, s.head_hash(), 1)] {
        let ev = event_by(&dev2, s.id, seq, prev, epoch, Body::Sealed(vec![2]));
        let body = event_body(&ev);
        let h = auth_headers(&dev2, s.id, "POST", &path, &body, now_ms());
        let r = ha.req("POST", &path, &h, body).await;
        let want = if seq == 4 {
            (403, "not_member")
        } else {
            (409, "stale_head")
        };
        assert_eq!(
            (r.status, r.error_code().as_str()),
            want,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
    }
    assert_eq!(ha.read_all(&s, now_ms()).await.len(), 4);
    ra.stop().await;
    rb.stop().await;
}
