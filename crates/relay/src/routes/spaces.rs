//! Spaces: create, append (compare-and-swap on the head), read, delete.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use troth_core::SpaceId;
use troth_core::event::{Body, Control, Event};
use troth_core::keys::DeviceId;
use troth_core::members::{DeviceEntry, Members, MembershipError};
use troth_core::session::SessionKey;

use super::{event_from_b64, json_body, signed_path, space_id, to_b64};
use crate::auth;
use crate::error::{ApiError, head_json};
use crate::sessions::SESSION_TTL_MS;
use crate::state::{AppState, Slot};
use crate::store::{Append, Head, Notice, SpaceRecord};

/// Largest page of events.
pub const MAX_PAGE: u64 = 1000;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: u64 = 256;

#[derive(Deserialize)]
pub(crate) struct CreateBody {
    genesis: String,
}

#[derive(Deserialize)]
pub(crate) struct AppendBody {
    event: String,
}

/// `?from=N&limit=M`.
#[derive(Deserialize)]
pub(crate) struct Page {
    from: Option<u64>,
    limit: Option<u64>,
}

fn path_err(_: PathRejection) -> ApiError {
    ApiError::bad_request("bad_path", "This address is not well-formed.")
}

fn membership(e: MembershipError) -> ApiError {
    ApiError::forbidden(
        "forbidden_event",
        format!("The space's membership rules refuse this event: {e}."),
    )
}

fn bad_event_signature() -> ApiError {
    ApiError::bad_request(
        "bad_event_signature",
        "The event's signature does not match its author. It may have been altered.",
    )
}

/// Authenticates a request as coming from an active member device of `slot`.
async fn member(
    state: &AppState,
    headers: &HeaderMap,
    space: SpaceId,
    method: &str,
    uri: &Uri,
    body: &[u8],
) -> Result<(Arc<Slot>, Arc<Members>), ApiError> {
    let cred = auth::credential(headers)?;
    let (slot, members) = state
        .space(space, true)
        .await?
        .ok_or_else(ApiError::no_space)?;
    if slot.view().deleted {
        return Err(ApiError::no_space());
    }
    authorize(state, cred, &members, space, method, uri, body).await?;
    Ok((slot, members))
}

/// Authenticates a request *signed* by an active member device of a live
/// space (never by a session: opening a session and registering for
/// notifications each take a signature), and returns that device.
pub(crate) async fn signed_member(
    state: &AppState,
    headers: &HeaderMap,
    space: SpaceId,
    method: &str,
    uri: &Uri,
    body: &[u8],
) -> Result<DeviceId, ApiError> {
    let a = auth::from_headers(headers)?;
    let (slot, members) = state
        .space(space, true)
        .await?
        .ok_or_else(ApiError::no_space)?;
    if slot.view().deleted {
        return Err(ApiError::no_space());
    }
    let key = *members.active_key(&a.device).ok_or_else(not_member)?;
    auth::verify(state, &a, &key, space, method, signed_path(uri), body).await?;
    Ok(a.device)
}

/// Checks that a request's credential is an active member device's.
async fn authorize(
    state: &AppState,
    cred: auth::Credential,
    members: &Members,
    space: SpaceId,
    method: &str,
    uri: &Uri,
    body: &[u8],
) -> Result<(), ApiError> {
    match cred {
        auth::Credential::Signed(a) => {
            let key = *members.active_key(&a.device).ok_or_else(not_member)?;
            auth::verify(state, &a, &key, space, method, signed_path(uri), body).await?;
        }
        auth::Credential::Session(a) => {
            let device = auth::verify_session(state, &a, space, method, signed_path(uri), body)?;
            members.active_key(&device).ok_or_else(not_member)?;
        }
    }
    Ok(())
}

#[derive(Deserialize)]
pub(crate) struct SessionBody {
    ephemeral: String,
}

/// `POST /v1/spaces/{space}/sessions`: opens a request session for the
/// signing device (troth_core::session).
pub async fn open_session(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    let space = space_id(&path.map_err(path_err)?.0)?;
    let device = signed_member(&state, &headers, space, "POST", &uri, &body).await?;
    let req: SessionBody = json_body(&body)?;
    let theirs: [u8; 32] = super::b64("ephemeral", &req.ephemeral, 32)?
        .try_into()
        .map_err(|_| {
            ApiError::bad_request(
                "bad_ephemeral",
                "`ephemeral` is a 32-byte X25519 public key.",
            )
        })?;
    let (session, ours) = SessionKey::accept(&mut rand::thread_rng(), space, device, theirs)
        .map_err(|_| {
            ApiError::bad_request(
                "bad_ephemeral",
                "`ephemeral` is not an acceptable X25519 public key (low-order point).",
            )
        })?;
    let id = session.id();
    if !state.sessions().insert(session, state.now_ms()) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_sessions",
            "This relay holds as many sessions as it may just now. Sign each request instead, or try again later.",
        );
        e.retry_after = Some(60);
        return Err(e);
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "session": id.to_b64(),
            "ephemeral": to_b64(&ours),
            "expires_in": SESSION_TTL_MS / 1000,
        })),
    )
        .into_response())
}

/// `POST /v1/spaces`: creates the space named in a genesis event.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateBody = json_body(&body)?;
    let ev = event_from_b64(&req.genesis)?;
    let h = ev.header();
    let space = h.space;
    let Body::Control(Control::Genesis { cert, .. }) = ev.body() else {
        return Err(ApiError::bad_request(
            "not_genesis",
            "A space starts with a genesis event at sequence number 0.",
        ));
    };
    let key = *cert.device().verifying_key();
    let a = auth::from_headers(&headers)?;
    if a.device != h.author {
        return Err(ApiError::forbidden(
            "not_genesis_author",
            "Only the device that wrote the genesis event may create the space.",
        ));
    }
    let mut members = Members::new();
    members.apply_event(&ev).map_err(membership)?;
    ev.verify_signature(&key)
        .map_err(|_| bad_event_signature())?;
    auth::verify(&state, &a, &key, space, "POST", signed_path(&uri), &body).await?;
    let head = Head {
        seq: 0,
        hash: ev.hash(),
    };
    let record = SpaceRecord {
        head,
        members: members.encode(),
    };
    if !state
        .store()
        .create_space(space, ev.as_bytes(), &record)
        .await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "space_exists",
            "A space with this id already exists on this relay.",
        ));
    }
    state.durable().await?;
    tracing::debug!(space = %space, "space created");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "space": space.to_hex(), "head": head_json(head) })),
    )
        .into_response())
}

/// `POST /v1/spaces/{space}/events`: appends an event if it extends the head.
pub async fn append(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let space = space_id(&path.map_err(path_err)?.0)?;
    let (parts, body) = super::into_parts(req).await?;
    let uri = &parts.uri;
    let cred = auth::credential(&parts.headers)?;
    let (slot, members, read_head) = state
        .space_for_append(space, false)
        .await?
        .ok_or_else(ApiError::no_space)?;
    if slot.view().deleted {
        return Err(ApiError::no_space());
    }
    let active = |d: &DeviceId| -> Option<&DeviceEntry> {
        let m: &Members = &members;
        m.device(d).filter(|e| e.is_active())
    };
    let (signed, requester) = match cred {
        auth::Credential::Signed(a) => {
            let signer = active(&a.device).ok_or_else(not_member)?;
            auth::check_time(&state, &a)?;
            let device = a.device;
            (Some((a, signer)), device)
        }
        auth::Credential::Session(a) => {
            let device = auth::verify_session(&state, &a, space, "POST", signed_path(uri), &body)?;
            active(&device).ok_or_else(not_member)?;
            (None, device)
        }
    };
    let req: AppendBody = json_body(&body)?;
    let ev = event_from_b64(&req.event)?;
    check_event(&state, space, &ev)?;
    let author =
        active(&ev.header().author).ok_or_else(|| membership(MembershipError::UnknownAuthor))?;
    // The event's signature, and a signed request's, are checked in one
    // batch with those of concurrent appends (ZIP-215, which a batch
    // keeps exactly; crate::verify).
    let verifier = state.verifier();
    let event_check = verifier.check(author.prepared(), ev.signed_message(), ev.signature());
    let event_ok = match signed {
        Some((a, signer)) => {
            let request_msg = a.signed_message(Some(space), "POST", signed_path(uri), &body);
            let (request_ok, event_ok) = tokio::join!(
                verifier.check(signer.prepared(), request_msg, &a.signature),
                event_check
            );
            match request_ok {
                Some(true) => {}
                Some(false) => return Err(auth::bad_auth_error()),
                None => return Err(ApiError::internal()),
            }
            auth::admit(&state, &a).await?;
            event_ok
        }
        None => event_check.await,
    };
    match event_ok {
        Some(true) => {}
        Some(false) => return Err(bad_event_signature()),
        None => return Err(ApiError::internal()),
    }
    let known = read_head.map(|h| (h, members.clone()));
    append_event(&state, &slot, space, ev, known, requester).await
}

/// The head and member list as the store has them now (a shared store,
/// when this process's view may be behind another's appends).
async fn head_from_store(
    state: &AppState,
    space: SpaceId,
) -> Result<Option<(Head, Arc<Members>)>, ApiError> {
    let (_, m, fresh) = state
        .space_for_append(space, true)
        .await?
        .ok_or_else(ApiError::no_space)?;
    Ok(fresh.map(|fh| (fh, m)))
}

fn not_member() -> ApiError {
    ApiError::forbidden("not_member", "This device is not a member of this space.")
}

/// The checks of an event that need no key: its space and the space's size.
fn check_event(state: &AppState, space: SpaceId, ev: &Event) -> Result<(), ApiError> {
    let h = ev.header();
    if h.space != space {
        return Err(ApiError::bad_request(
            "wrong_space",
            "This event belongs to another space.",
        ));
    }
    if h.seq >= state.limits().max_events_per_space {
        return Err(ApiError::forbidden(
            "space_full",
            "This space holds as many events as this relay allows.",
        ));
    }
    Ok(())
}

async fn append_event(
    state: &AppState,
    slot: &Arc<Slot>,
    space: SpaceId,
    ev: Event,
    mut known: Option<(Head, Arc<Members>)>,
    requester: DeviceId,
) -> Result<Response, ApiError> {
    let h = ev.header();
    let _writer = slot.write.lock().await;
    let mut attempt = 0;
    let (new_head, current, next) = loop {
        attempt += 1;
        let (head, cached) = {
            let v = slot.view();
            if v.deleted {
                return Err(ApiError::no_space());
            }
            (v.head, v.members.clone())
        };
        // On a store other relay processes write to, the head and member
        // list this request checked against: read together (from the store,
        // or as this process last saw them). The compare-and-swap below
        // refuses the append if the head moved since, and any membership
        // change moves the head.
        let (head, cached) = match known.take() {
            Some((h, m)) => (h, Some(m)),
            None => (head, cached),
        };
        let current = match cached {
            Some(m) => m,
            None => {
                state
                    .space(space, true)
                    .await?
                    .ok_or_else(ApiError::no_space)?
                    .1
            }
        };
        if attempt > 1 {
            // Read afresh after another process moved the head: the
            // request's device and the event's author must still be members.
            current.active_key(&requester).ok_or_else(not_member)?;
            current
                .active_key(&h.author)
                .ok_or_else(|| membership(MembershipError::UnknownAuthor))?;
        }
        if h.seq != head.seq.saturating_add(1) || h.prev != head.hash {
            if state.store().shared() && attempt == 1 {
                // This process's view may be behind: answer with the head
                // as the store has it now (and append, if the event
                // extends that one).
                known = head_from_store(state, space).await?;
                continue;
            }
            return Err(ApiError::stale(head));
        }
        // A sealed event changes no membership: check it against the shared
        // list; only a control event needs a changed copy.
        let next = match ev.body() {
            Body::Sealed(_) => {
                current.check_sealed(h).map_err(membership)?;
                None
            }
            Body::Control(_) => {
                let mut next = (*current).clone();
                next.apply_event(&ev).map_err(membership)?;
                Some(next)
            }
        };
        let new_head = Head {
            seq: h.seq,
            hash: ev.hash(),
        };
        let members = next.as_ref().map(Members::encode);
        match state
            .store()
            .append_if_head(
                space,
                head,
                new_head.hash,
                ev.as_bytes(),
                members.as_deref(),
            )
            .await?
        {
            Append::Done => break (new_head, current, next),
            Append::Stale(now) if state.store().shared() => {
                // Another process moved the head since this one last read
                // it. If the event extends the head as it is now, this
                // process's view was merely behind: read the head and
                // members afresh and try once more.
                slot.view_mut().members = None;
                if attempt == 1 && now.seq.saturating_add(1) == h.seq && now.hash == h.prev {
                    known = head_from_store(state, space).await?;
                    continue;
                }
                return Err(ApiError::stale(now));
            }
            Append::Stale(now) => {
                state.forget_slot(space);
                return Err(ApiError::stale(now));
            }
            Append::NoSpace => {
                crate::fanout::close_subscribers(state, space, slot);
                return Err(ApiError::no_space());
            }
        }
    };
    if let Err(e) = state.durable().await {
        state.forget_slot(space);
        return Err(e);
    }
    let members_now = next.map_or(current, Arc::new);
    {
        let mut v = slot.view_mut();
        v.head = new_head;
        // A sealed event leaves the member list as it was: keep the shared copy.
        v.members = Some(members_now.clone());
    }
    state
        .metrics()
        .appends
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Committed (and, with standbys, on one): now other relay processes
    // may hear of it, and this one's live subscribers get it.
    state.announce(Notice::Appended {
        space,
        head: new_head,
    });
    crate::fanout::pump(state, space, slot, new_head, Some(&ev)).await;
    // The other partner's devices hear that something is new (queued for
    // the push task; never waits).
    if let Some(push) = state.push() {
        push.appended(space, h.author, members_now);
    }
    // Written out directly, as a page of events is: a number and hex need
    // no JSON escaping, and this answers every append.
    let body = format!(
        r#"{{"seq":{},"hash":"{}"}}"#,
        new_head.seq,
        new_head.hash.to_hex()
    );
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// `GET /v1/spaces/{space}/events?from=N&limit=M`: a page of events.
pub async fn read(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Page>, QueryRejection>,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let space = space_id(&path.map_err(path_err)?.0)?;
    let Query(page) = query.map_err(|_| {
        ApiError::bad_request("bad_query", "`from` and `limit` must be whole numbers.")
    })?;
    let from = page.from.unwrap_or(0);
    let limit = page.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("`limit` must be between 1 and {MAX_PAGE}."),
        ));
    }
    let (head, events) = if state.store().shared() {
        // The record and the page in one read; nothing is answered before
        // the request is authenticated against that record's member list.
        let cred = auth::credential(req.headers())?;
        let Some((rec, events)) = state.store().read_page(space, from, limit as usize).await?
        else {
            if let Some(slot) = state.cached_slot(space) {
                crate::fanout::close_subscribers(&state, space, &slot);
            }
            return Err(ApiError::no_space());
        };
        let ((_, members), head) = state.adopt(space, rec)?;
        authorize(&state, cred, &members, space, "GET", req.uri(), &[]).await?;
        (head, events)
    } else {
        let (slot, _) = member(&state, req.headers(), space, "GET", req.uri(), &[]).await?;
        let head = slot.view().head;
        let events = state
            .store()
            .read_range(space, from, head.seq, limit as usize)
            .await?;
        (head, events)
    };
    let last = from.saturating_add(events.len() as u64);
    let more = !events.is_empty() && last <= head.seq;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        page_json(&events, head, more),
    )
        .into_response())
}

/// A page of events as `GET …/events` answers it (docs/PROTOCOL.md):
/// `{"events":[base64…],"head":{"seq":…,"hash":hex},"more":bool}`. Written
/// out directly: base64 and hex need no JSON escaping, and this is the
/// relay's hottest answer.
pub fn page_json(events: &[Vec<u8>], head: Head, more: bool) -> String {
    let mut out = String::with_capacity(
        events
            .iter()
            .map(|e| e.len().div_ceil(3) * 4 + 3)
            .sum::<usize>()
            + 128,
    );
    out.push_str("{\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        base64::engine::general_purpose::STANDARD.encode_string(e, &mut out);
        out.push('"');
    }
    out.push_str("],\"head\":{\"seq\":");
    out.push_str(&head.seq.to_string());
    out.push_str(",\"hash\":\"");
    out.push_str(&head.hash.to_hex());
    out.push_str("\"},\"more\":");
    out.push_str(if more { "true" } else { "false" });
    out.push('}');
    out
}

/// `DELETE /v1/spaces/{space}`: forgets the space.
pub async fn delete(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let space = space_id(&path.map_err(path_err)?.0)?;
    let (slot, _) = member(&state, &headers, space, "DELETE", &uri, &[]).await?;
    let _writer = slot.write.lock().await;
    if slot.view().deleted {
        return Err(ApiError::no_space());
    }
    let existed = state.store().delete_space(space).await?;
    slot.view_mut().deleted = true;
    state.sessions().forget_space(space);
    state.forget_slot(space);
    // An empty frame tells live subscribers the space is gone.
    let _ = slot.live.send(Arc::from(""));
    state.durable().await?;
    state.announce(Notice::Deleted(space));
    if !existed {
        return Err(ApiError::no_space());
    }
    tracing::debug!(space = %space, "space deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
