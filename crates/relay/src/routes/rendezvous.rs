//! Rendezvous mailboxes for pairing: short-lived, single-use, addressed by a
//! number in 1..=99999, holding the PAKE messages of exactly two sides.
//!
//! Side A opens a mailbox and gets a token; side B claims it once and gets
//! its own token. Each side posts messages and reads the other side's. The
//! content is protected by the PAKE, not by the relay; tokens only keep
//! third parties from posting into or reading an exchange.
//!
//! Closing is per side. When one side closes (it finished, or it found the
//! code did not match), the other side can still read what it has not read
//! yet — that is how it learns the outcome — for [`CLOSED_GRACE_MS`] at
//! most; nothing more can be posted. When both sides have closed, or an
//! unclaimed mailbox is closed, it is deleted at once.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{b64, json_body, to_b64};
use crate::error::ApiError;
use crate::state::{AppState, ClientIp};
use crate::store::StoreError;

/// Mailbox numbers are drawn from 1..=MAX_MAILBOX.
pub const MAX_MAILBOX: u32 = 99_999;
/// A mailbox lives this long after it is opened.
pub const MAILBOX_TTL_MS: u64 = 10 * 60 * 1000;
/// Largest message.
pub const MAX_MESSAGE: usize = 8 * 1024;
/// Most messages in one mailbox (both sides together).
pub const MAX_MESSAGES: usize = 16;
/// Longest long poll.
pub const MAX_WAIT_SECS: u64 = 25;
/// How long a mailbox one side closed stays readable for the other side.
pub const CLOSED_GRACE_MS: u64 = 60 * 1000;

/// Which side of the exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    A = 1,
    B = 2,
}

/// A mailbox as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mailbox {
    expires_ms: u64,
    token_a: [u8; 32],
    token_b: Option<[u8; 32]>,
    /// The side that ended the exchange, if one did.
    closed_by: Option<Side>,
    messages: Vec<(Side, Vec<u8>)>,
}

impl Mailbox {
    fn encode(&self) -> Vec<u8> {
        let mut v = vec![2u8];
        v.extend_from_slice(&self.expires_ms.to_be_bytes());
        v.extend_from_slice(&self.token_a);
        match &self.token_b {
            None => v.push(0),
            Some(t) => {
                v.push(1);
                v.extend_from_slice(t);
            }
        }
        v.push(self.closed_by.map_or(0, |s| s as u8));
        v.push(self.messages.len() as u8);
        for (side, m) in &self.messages {
            v.push(*side as u8);
            v.extend_from_slice(&(m.len() as u32).to_be_bytes());
            v.extend_from_slice(m);
        }
        v
    }

    fn decode(b: &[u8]) -> Result<Self, StoreError> {
        let bad = || StoreError::Corrupt("mailbox");
        let mut r = b;
        let mut take = |n: usize| -> Result<&[u8], StoreError> {
            if r.len() < n {
                return Err(bad());
            }
            let (h, t) = r.split_at(n);
            r = t;
            Ok(h)
        };
        // Version 1 (before per-side closing) had no `closed_by` byte.
        let version = take(1)?[0];
        if version != 1 && version != 2 {
            return Err(bad());
        }
        let expires_ms = u64::from_be_bytes(take(8)?.try_into().map_err(|_| bad())?);
        let token_a: [u8; 32] = take(32)?.try_into().map_err(|_| bad())?;
        let token_b = match take(1)?[0] {
            0 => None,
            1 => Some(take(32)?.try_into().map_err(|_| bad())?),
            _ => return Err(bad()),
        };
        let closed_by = match if version == 1 { 0 } else { take(1)?[0] } {
            0 => None,
            1 => Some(Side::A),
            2 => Some(Side::B),
            _ => return Err(bad()),
        };
        let n = take(1)?[0] as usize;
        let mut messages = Vec::with_capacity(n.min(MAX_MESSAGES));
        for _ in 0..n {
            let side = match take(1)?[0] {
                1 => Side::A,
                2 => Side::B,
                _ => return Err(bad()),
            };
            let len = u32::from_be_bytes(take(4)?.try_into().map_err(|_| bad())?) as usize;
            messages.push((side, take(len)?.to_vec()));
        }
        if !take(0)?.is_empty() || !r.is_empty() {
            return Err(bad());
        }
        Ok(Mailbox {
            expires_ms,
            token_a,
            token_b,
            closed_by,
            messages,
        })
    }

    fn side(&self, token: &str) -> Option<Side> {
        let h = token_hash(token);
        if h == self.token_a {
            Some(Side::A)
        } else if Some(h) == self.token_b {
            Some(Side::B)
        } else {
            None
        }
    }
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn new_token() -> String {
    hex::encode(rand::thread_rng().r#gen::<[u8; 32]>())
}

fn no_mailbox() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_mailbox",
        "This pairing code is not in use. It may have expired; start pairing again.",
    )
}

fn expired() -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "expired",
        "This pairing code has expired. Start pairing again for a new code.",
    )
}

fn ended() -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "pairing_ended",
        "This pairing has ended. Start pairing again for a new code.",
    )
}

fn bad_token() -> ApiError {
    ApiError::forbidden("bad_token", "This token does not belong to this mailbox.")
}

fn path_err(_: PathRejection) -> ApiError {
    ApiError::bad_request("bad_mailbox", "A mailbox is a number from 1 to 99999.")
}

fn number(p: Result<Path<String>, PathRejection>) -> Result<u32, ApiError> {
    let s = p.map_err(path_err)?.0;
    s.parse::<u32>()
        .ok()
        .filter(|n| (1..=MAX_MAILBOX).contains(n) && !s.starts_with('0') && !s.starts_with('+'))
        .ok_or_else(path_err_value)
}

fn path_err_value() -> ApiError {
    ApiError::bad_request("bad_mailbox", "A mailbox is a number from 1 to 99999.")
}

/// How often a long poll looks at a shared store's mailbox anyway: another
/// relay process's write wakes it through a notice, and this is the safety
/// net if a notice is lost.
const SHARED_POLL: Duration = Duration::from_secs(2);

/// Loads a live mailbox; an expired one is deleted and reported as such.
async fn load(state: &AppState, n: u32) -> Result<(Vec<u8>, Mailbox), ApiError> {
    let raw = state.store().mailbox(n).await?.ok_or_else(no_mailbox)?;
    let mb = Mailbox::decode(&raw)?;
    if state.now_ms() >= mb.expires_ms {
        state.store().mailbox_swap(n, Some(&raw), None).await?;
        state.wake_mailbox(n, true);
        return Err(expired());
    }
    Ok((raw, mb))
}

/// `POST /v1/rendezvous`: opens a mailbox for side A.
pub async fn open(
    State(state): State<AppState>,
    Extension(ip): Extension<ClientIp>,
) -> Result<Response, ApiError> {
    state.check_rendezvous(ip.0)?;
    let now = state.now_ms();
    let token = new_token();
    let mb = Mailbox {
        expires_ms: now.saturating_add(MAILBOX_TTL_MS),
        token_a: token_hash(&token),
        token_b: None,
        closed_by: None,
        messages: Vec::new(),
    };
    let value = mb.encode();
    for _ in 0..64 {
        let n = rand::thread_rng().gen_range(1..=MAX_MAILBOX);
        let old = state.store().mailbox(n).await?;
        if let Some(old) = &old {
            match Mailbox::decode(old) {
                Ok(m) if now < m.expires_ms => continue,
                _ => {}
            }
        }
        if state
            .store()
            .mailbox_swap(n, old.as_deref(), Some(&value))
            .await?
        {
            state.wake_mailbox(n, true);
            return Ok((
                StatusCode::CREATED,
                Json(json!({ "mailbox": n, "token": token, "expires_in": MAILBOX_TTL_MS / 1000 })),
            )
                .into_response());
        }
    }
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "busy",
        "This relay has no free pairing codes just now. Try again in a minute.",
    );
    e.retry_after = Some(60);
    Err(e)
}

/// `POST /v1/rendezvous/{n}/claim`: side B takes the mailbox, once.
pub async fn claim(
    State(state): State<AppState>,
    Extension(ip): Extension<ClientIp>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    state.check_rendezvous(ip.0)?;
    let n = number(path)?;
    let (raw, mut mb) = load(&state, n).await?;
    let burned = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "already_claimed",
            "This pairing code was already used. Start pairing again for a new code.",
        )
    };
    if mb.token_b.is_some() || mb.closed_by.is_some() {
        return Err(burned());
    }
    let token = new_token();
    mb.token_b = Some(token_hash(&token));
    if !state
        .store()
        .mailbox_swap(n, Some(&raw), Some(&mb.encode()))
        .await?
    {
        return Err(burned());
    }
    state.wake_mailbox(n, false);
    Ok(Json(json!({ "token": token })).into_response())
}

#[derive(Deserialize)]
pub(crate) struct PostBody {
    token: String,
    body: String,
}

/// `POST /v1/rendezvous/{n}/messages`: posts one message for the other side.
pub async fn post(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let n = number(path)?;
    let req: PostBody = json_body(&body)?;
    let msg = b64("body", &req.body, MAX_MESSAGE)?;
    if msg.len() > MAX_MESSAGE {
        return Err(ApiError::too_large("message"));
    }
    for _ in 0..16 {
        let (raw, mut mb) = load(&state, n).await?;
        let side = mb.side(&req.token).ok_or_else(bad_token)?;
        if mb.closed_by.is_some() {
            return Err(ended());
        }
        if mb.messages.len() >= MAX_MESSAGES {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "mailbox_full",
                "This mailbox holds as many messages as it may. Start pairing again.",
            ));
        }
        let index = mb.messages.iter().filter(|(s, _)| *s == side).count();
        mb.messages.push((side, msg.clone()));
        if state
            .store()
            .mailbox_swap(n, Some(&raw), Some(&mb.encode()))
            .await?
        {
            state.wake_mailbox(n, false);
            return Ok((StatusCode::CREATED, Json(json!({ "index": index }))).into_response());
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "busy",
        "The mailbox changed while posting. Please try again.",
    ))
}

/// `?token=…&after=K&wait=S`.
#[derive(Deserialize)]
pub(crate) struct GetQuery {
    token: String,
    after: Option<usize>,
    wait: Option<u64>,
}

/// `GET /v1/rendezvous/{n}/messages`: the other side's messages from index
/// `after` on, waiting up to `wait` seconds for one to arrive.
pub async fn get(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<GetQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let n = number(path)?;
    let Query(q) = query.map_err(|_| {
        ApiError::bad_request(
            "bad_query",
            "Give `token`, and `after` and `wait` as whole numbers.",
        )
    })?;
    let after = q.after.unwrap_or(0);
    let wait = q.wait.unwrap_or(0);
    if wait > MAX_WAIT_SECS {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("`wait` is at most {MAX_WAIT_SECS} seconds."),
        ));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    // Only a caller holding a token of an open mailbox gets a waker entry.
    let (_, mb) = load(&state, n).await?;
    mb.side(&q.token).ok_or_else(bad_token)?;
    let waker = state.mailbox_waker(n);
    loop {
        let notified = waker.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (_, mb) = load(&state, n).await?;
        let side = mb.side(&q.token).ok_or_else(bad_token)?;
        if mb.closed_by == Some(side) {
            return Err(ended());
        }
        // The other side closed: what it left is all there will be.
        let closed = mb.closed_by.is_some();
        let theirs: Vec<String> = mb
            .messages
            .iter()
            .filter(|(s, _)| *s != side)
            .skip(after)
            .map(|(_, m)| to_b64(m))
            .collect();
        if !theirs.is_empty() || closed || tokio::time::Instant::now() >= deadline {
            let next = after + theirs.len();
            return Ok(
                Json(json!({ "messages": theirs, "next": next, "closed": closed })).into_response(),
            );
        }
        // On a shared store, also look again every SHARED_POLL in case
        // another process's notice was lost.
        let until = if state.store().shared() {
            deadline.min(tokio::time::Instant::now() + SHARED_POLL)
        } else {
            deadline
        };
        if tokio::time::timeout_at(until, notified).await.is_err() {
            continue; // one last look, then return
        }
    }
}

/// `?token=…`.
#[derive(Deserialize)]
pub(crate) struct TokenQuery {
    token: String,
}

/// `DELETE /v1/rendezvous/{n}?token=…`: this side ends the exchange. The
/// other side may still read what it has not read for [`CLOSED_GRACE_MS`];
/// the mailbox is deleted when both sides have closed (or it was never
/// claimed).
pub async fn close(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let n = number(path)?;
    let Query(q) =
        query.map_err(|_| ApiError::bad_request("bad_query", "Give the mailbox `token`."))?;
    for _ in 0..16 {
        let (raw, mut mb) = load(&state, n).await?;
        let side = mb.side(&q.token).ok_or_else(bad_token)?;
        let swapped = match mb.closed_by {
            Some(s) if s == side => return Ok(StatusCode::NO_CONTENT.into_response()),
            None if mb.token_b.is_some() => {
                mb.closed_by = Some(side);
                mb.expires_ms = mb
                    .expires_ms
                    .min(state.now_ms().saturating_add(CLOSED_GRACE_MS));
                let ok = state
                    .store()
                    .mailbox_swap(n, Some(&raw), Some(&mb.encode()))
                    .await?;
                if ok {
                    state.wake_mailbox(n, false);
                }
                ok
            }
            // Never claimed, or the other side closed already: gone.
            _ => {
                let ok = state.store().mailbox_swap(n, Some(&raw), None).await?;
                if ok {
                    state.wake_mailbox(n, true);
                }
                ok
            }
        };
        if swapped {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "busy",
        "The mailbox changed while closing. Please try again.",
    ))
}

/// Deletes expired mailboxes (and undecodable ones).
pub(crate) async fn sweep(state: &AppState, now: u64) -> Result<usize, StoreError> {
    let mut n = 0;
    for k in state.store().mailboxes().await? {
        if let Some(raw) = state.store().mailbox(k).await? {
            let dead = Mailbox::decode(&raw)
                .map(|m| now >= m.expires_ms)
                .unwrap_or(true);
            if dead && state.store().mailbox_swap(k, Some(&raw), None).await? {
                state.wake_mailbox(k, true);
                n += 1;
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailbox_round_trip_and_truncation() {
        let mb = Mailbox {
            expires_ms: 7,
            token_a: [1; 32],
            token_b: Some([2; 32]),
            closed_by: Some(Side::B),
            messages: vec![(Side::A, vec![1, 2, 3]), (Side::B, vec![])],
        };
        let b = mb.encode();
        assert_eq!(Mailbox::decode(&b).ok(), Some(mb.clone()));
        for i in 0..b.len() {
            assert!(Mailbox::decode(&b[..i]).is_err());
        }
        // A mailbox stored before per-side closing (version 1) still reads.
        let mut v1 = b.clone();
        v1[0] = 1;
        v1.remove(1 + 8 + 32 + 1 + 32);
        let old = Mailbox::decode(&v1).ok();
        assert_eq!(
            old,
            Some(Mailbox {
                closed_by: None,
                ..mb
            })
        );
    }
}
