//! Two relays (in-process, each its own `AppState` and port) on one
//! PostgreSQL database, as two relay processes would be: racing writers
//! through both keep one chain, a nonce used at one is refused at the
//! other, a delete at one is seen at once by the other, and a pairing whose
//! sides use different relays completes.

mod common;

use std::sync::Arc;

use common::*;
use troth_relay::store::Store;
use troth_relay::{Limits, SystemClock};

async fn two_relays() -> (InProcess, InProcess, String) {
    let (a, db) = pg::fresh_store().await;
    let b = pg::store_on(&db).await;
    let (a, b): (Arc<dyn Store>, Arc<dyn Store>) = (Arc::new(a), Arc::new(b));
    let ra = InProcess::start(a, Arc::new(SystemClock), Limits::generous()).await;
    let rb = InProcess::start(b, Arc::new(SystemClock), Limits::generous()).await;
    (ra, rb, db)
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
    assert!(waited.as_secs() < 5, "woke only after {waited:?}");
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
