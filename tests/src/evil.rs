//! A malicious relay the tests control: the real relay (`troth_relay::app`,
//! in-process, in-memory store) behind a middleware that lies on command.
//!
//! It can drop, withhold, reorder, replay, inject and substitute events,
//! serve an old snapshot, show one device a different history (equivocation),
//! downgrade the format version, and answer garbage or oversized bodies.
//! Everything it learns it learns like a real relay would: from the requests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use troth_core::event::Event;
use troth_relay::store::MemoryStore;
use troth_relay::{AppState, Limits, SystemClock};

use crate::inproc::InProcessRelay;

/// What the relay does to the next reads.
#[derive(Clone, Debug, Default)]
pub enum Attack {
    /// Honest.
    #[default]
    None,
    /// Leave this event out of every page.
    Drop(u64),
    /// Pretend the log ends at this event (withholding what came after).
    WithholdAfter(u64),
    /// Swap the first two events of every page that has at least two.
    SwapFirstTwo,
    /// Add these event bytes at the end of every page (replays, injections).
    Append(Vec<Vec<u8>>),
    /// Replace the event at `seq` with these bytes.
    Substitute(u64, Vec<u8>),
    /// Serve only the first `n` events (an old snapshot), whatever was asked.
    Rollback(u64),
    /// Flip the version byte of every event served to 0.
    Downgrade,
    /// Answer reads with this body (status 200).
    Garbage(Vec<u8>),
    /// Keep a separate branch for one device: its appends from `from` on are
    /// acknowledged but kept apart, and it is shown that branch; everyone
    /// else sees the real log.
    Equivocate {
        /// The victim's device id (base64url, as in the troth-device header).
        victim: String,
        /// The first sequence number of the split.
        from: u64,
    },
}

#[derive(Default)]
struct Control {
    attack: Attack,
    /// Every event seen in appends and reads, by (space hex, seq).
    seen: BTreeMap<(String, u64), Vec<u8>>,
    /// The victim's branch under `Equivocate`.
    branch: Vec<Vec<u8>>,
}

type Shared = Arc<Mutex<Control>>;

/// The malicious relay, serving on a loopback port until dropped.
pub struct EvilRelay {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    control: Shared,
    _relay: InProcessRelay,
}

impl EvilRelay {
    /// Starts an honest relay (in-memory store, generous limits) behind the
    /// lying middleware.
    pub fn start() -> EvilRelay {
        let control: Shared = Arc::default();
        let state = AppState::new(
            Arc::new(MemoryStore::new()),
            Arc::new(SystemClock),
            Limits::generous(),
        )
        .expect("state");
        let c = control.clone();
        let relay = InProcessRelay::start(state, move |app| {
            app.layer(middleware::from_fn_with_state(c, lie))
        });
        EvilRelay {
            url: relay.url.clone(),
            control,
            _relay: relay,
        }
    }

    /// Sets what the relay does from now on.
    pub fn set(&self, attack: Attack) {
        let mut c = self.control.lock().expect("lock");
        c.attack = attack;
        c.branch.clear();
    }

    /// The bytes of an event the relay has seen.
    pub fn seen(&self, space: &str, seq: u64) -> Option<Vec<u8>> {
        let c = self.control.lock().expect("lock");
        c.seen.get(&(space.to_owned(), seq)).cloned()
    }

    /// The victim's branch under [`Attack::Equivocate`].
    pub fn branch(&self) -> Vec<Vec<u8>> {
        self.control.lock().expect("lock").branch.clone()
    }
}

fn space_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v1/spaces/")?;
    let (space, tail) = rest.split_once('/')?;
    (tail == "events").then(|| space.to_owned())
}

fn query_from(req: &Request) -> u64 {
    req.uri()
        .query()
        .and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("from=").and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn seq_hash(bytes: &[u8]) -> Option<(u64, String)> {
    Event::decode(bytes)
        .ok()
        .map(|e| (e.header().seq, e.hash().to_hex()))
}

fn page(events: &[Vec<u8>], head: Option<(u64, String)>) -> Response {
    let list: Vec<String> = events.iter().map(|e| B64.encode(e)).collect();
    let head = head.map(|(seq, hash)| json!({"seq": seq, "hash": hash}));
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        json!({"events": list, "head": head, "more": false}).to_string(),
    )
        .into_response()
}

async fn lie(State(control): State<Shared>, req: Request, next: Next) -> Response {
    let Some(space) = space_of(req.uri().path()) else {
        return next.run(req).await;
    };
    let device = req
        .headers()
        .get("troth-device")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let attack = control.lock().map(|c| c.attack.clone()).unwrap_or_default();

    if req.method() == Method::POST {
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        let event = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["event"].as_str().and_then(|s| B64.decode(s).ok()));
        if let (Attack::Equivocate { victim, from }, Some(ev)) = (&attack, &event) {
            if *victim == device {
                if let Some((seq, hash)) = seq_hash(ev) {
                    if seq >= *from {
                        if let Ok(mut c) = control.lock() {
                            c.branch.push(ev.clone());
                        }
                        return (
                            StatusCode::CREATED,
                            [("content-type", "application/json")],
                            json!({"seq": seq, "hash": hash}).to_string(),
                        )
                            .into_response();
                    }
                }
            }
        }
        let resp = next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
        if resp.status().is_success() {
            if let Some((ev, (seq, _))) = event.and_then(|e| seq_hash(&e).map(|s| (e, s))) {
                if let Ok(mut c) = control.lock() {
                    c.seen.insert((space, seq), ev);
                }
            }
        }
        return resp;
    }

    if req.method() != Method::GET {
        return next.run(req).await;
    }
    let from = query_from(&req);
    let resp = next.run(req).await;
    if !resp.status().is_success() {
        return resp;
    }
    let Ok(bytes) = axum::body::to_bytes(resp.into_body(), 64 << 20).await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let Ok(json) = serde_json::from_slice::<Value>(&bytes) else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let mut events: Vec<Vec<u8>> = json["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().and_then(|s| B64.decode(s).ok()))
                .collect()
        })
        .unwrap_or_default();
    let mut c = match control.lock() {
        Ok(c) => c,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    for e in &events {
        if let Some((seq, _)) = seq_hash(e) {
            c.seen.insert((space.clone(), seq), e.clone());
        }
    }
    let real_head = json["head"]["seq"]
        .as_u64()
        .zip(json["head"]["hash"].as_str().map(str::to_owned));
    let head_of = |evs: &[Vec<u8>]| evs.last().and_then(|e| seq_hash(e));
    let seen_at = |c: &Control, seq: u64| c.seen.get(&(space.clone(), seq)).cloned();
    match attack {
        Attack::None => page(&events, real_head),
        Attack::Drop(seq) => {
            events.retain(|e| seq_hash(e).is_none_or(|(s, _)| s != seq));
            page(&events, real_head)
        }
        Attack::WithholdAfter(last) => {
            events.retain(|e| seq_hash(e).is_some_and(|(s, _)| s <= last));
            let head = seen_at(&c, last).and_then(|e| seq_hash(&e));
            page(&events, head)
        }
        Attack::SwapFirstTwo => {
            if events.len() >= 2 {
                events.swap(0, 1);
            }
            page(&events, real_head)
        }
        Attack::Append(extra) => {
            events.extend(extra);
            page(&events, real_head)
        }
        Attack::Substitute(seq, bytes) => {
            for e in &mut events {
                if seq_hash(e).is_some_and(|(s, _)| s == seq) {
                    *e = bytes.clone();
                }
            }
            page(&events, real_head)
        }
        Attack::Rollback(n) => {
            let old: Vec<Vec<u8>> = (from..n).filter_map(|s| seen_at(&c, s)).collect();
            let head = n
                .checked_sub(1)
                .and_then(|s| seen_at(&c, s))
                .and_then(|e| seq_hash(&e));
            page(&old, head)
        }
        Attack::Downgrade => {
            for e in &mut events {
                if let Some(b) = e.first_mut() {
                    *b = 0;
                }
            }
            page(&events, real_head)
        }
        Attack::Garbage(body) => {
            (StatusCode::OK, [("content-type", "application/json")], body).into_response()
        }
        Attack::Equivocate {
            victim,
            from: split,
        } => {
            if victim != device {
                return page(&events, real_head);
            }
            let mut view: Vec<Vec<u8>> = events
                .into_iter()
                .filter(|e| seq_hash(e).is_some_and(|(s, _)| s < split))
                .collect();
            view.extend(
                c.branch
                    .iter()
                    .filter(|e| seq_hash(e).is_some_and(|(s, _)| s >= from))
                    .cloned(),
            );
            let head = head_of(&c.branch).or_else(|| {
                split
                    .checked_sub(1)
                    .and_then(|s| seen_at(&c, s))
                    .and_then(|e| seq_hash(&e))
            });
            page(&view, head)
        }
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Two partners paired through `relay` (a malicious relay that is honest
/// until told otherwise), each verified by the other, with the seeded RNG
/// that made their keys; both clients are real sessions over HTTP.
pub fn couple(
    relay: &EvilRelay,
    seed: u64,
) -> (
    troth_client::session::Session,
    troth_client::session::Session,
    rand::rngs::StdRng,
) {
    use rand::SeedableRng;
    use troth_client::relay::RelayClient;
    use troth_client::session::Session;
    use troth_core::SpaceId;
    use troth_core::event::Role;
    use troth_core::keyfile::KeyBundle;
    use troth_core::log::TrustAnchors;
    use troth_core::replica::Replica;

    let client = RelayClient::new(&relay.url).expect("client");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let now = now_ms();
    let ka = KeyBundle::generate(&mut rng, now);
    let kb = KeyBundle::generate(&mut rng, now);
    let space = SpaceId::random(&mut rng);
    let a_id = ka.identity.public();
    let (mut ra, genesis) =
        Replica::create(ka, Role::Leading, space, now, &mut rng).expect("create");
    client
        .create_space(&ra.keys().device, &genesis)
        .expect("create space");
    assert_eq!(ra.ingest(&[genesis]).accepted, 1);
    ra.trust_partner(kb.identity.public());
    let b_cert = kb.cert.clone();
    let mut a = Session::new(ra, client.clone());
    a.post_with(|r| Ok(r.compose_add_member(&b_cert, now)?))
        .expect("add member");
    let rb = Replica::open(
        kb,
        Role::Rebuilding,
        space,
        TrustAnchors {
            leading: Some(a_id),
            rebuilding: None,
        },
    );
    let mut b = Session::new(rb, client);
    b.sync_strict().expect("b syncs");
    (a, b, rng)
}
