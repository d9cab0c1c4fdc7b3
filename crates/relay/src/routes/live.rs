//! `GET /v1/spaces/{space}/live`: a WebSocket that pushes each newly
//! appended (durable) event of a space to its member devices.
//!
//! Browsers cannot set headers on a WebSocket, so the client's first frame
//! is a JSON text frame with the request authentication fields.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use troth_core::SpaceId;
use troth_core::members::Members;
use troth_core::request::RequestAuth;

use super::{signed_path, space_id};
use crate::auth;
use crate::error::{ApiError, head_json};
use crate::state::{AppState, Slot};

/// How long one push may wait for a client that does not read.
const SEND_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a client has to send its authentication frame.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer per connection: clients only send the auth frame and control
/// frames (axum's default costs ~133 KiB per idle connection; 4096 ~5.4 KiB).
const READ_BUFFER: usize = 1024;
/// Largest frame a client may send (only the authentication frame matters).
const MAX_CLIENT_MESSAGE: usize = 4096;

/// The first frame: the same fields as the `troth-*` headers.
#[derive(Deserialize)]
struct AuthFrame {
    device: String,
    time: Time,
    nonce: String,
    signature: String,
}

/// The time as a JSON number or as the header's decimal string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Time {
    Number(u64),
    Text(String),
}

fn path_err(_: PathRejection) -> ApiError {
    ApiError::bad_request("bad_path", "This address is not well-formed.")
}

/// Upgrades to a WebSocket once the space is known to exist.
pub async fn live(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let space = space_id(&path.map_err(path_err)?.0)?;
    let (slot, members) = state
        .space(space, false)
        .await?
        .ok_or_else(ApiError::no_space)?;
    if state.metrics().live.load(Ordering::Relaxed) >= state.limits().max_live_connections {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "busy",
            "This relay has as many live connections as it allows. Try again in a minute.",
        );
        e.retry_after = Some(60);
        return Err(e);
    }
    let path = signed_path(&uri).to_string();
    Ok(ws
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| run(state, space, slot, members, path, socket)))
}

struct LiveGuard(AppState);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.metrics().live.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn close_with(mut socket: WebSocket, code: u16, err: ApiError) {
    let _ = socket
        .send(Message::Text(Utf8Bytes::from(err.body().to_string())))
        .await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(err.code),
        })))
        .await;
}

async fn authenticate(
    state: &AppState,
    members: &Members,
    space: SpaceId,
    path: &str,
    frame: &str,
) -> Result<troth_core::keys::DeviceId, ApiError> {
    let f: AuthFrame = serde_json::from_str(frame).map_err(|_| {
        ApiError::unauthorized(
            "auth_missing",
            "Send the request authentication fields as the first frame.",
        )
    })?;
    let time = match f.time {
        Time::Number(n) => n.to_string(),
        Time::Text(t) => t,
    };
    let a = RequestAuth::from_headers(&f.device, &time, &f.nonce, &f.signature).map_err(|_| {
        ApiError::unauthorized(
            "auth_invalid",
            "The authentication frame is not well-formed.",
        )
    })?;
    let key = *members.active_key(&a.device).ok_or_else(|| {
        ApiError::forbidden("not_member", "This device is not a member of this space.")
    })?;
    auth::verify(state, &a, &key, space, "GET", path, &[]).await?;
    Ok(a.device)
}

async fn run(
    state: AppState,
    space: SpaceId,
    slot: Arc<Slot>,
    members: Arc<Members>,
    path: String,
    mut socket: WebSocket,
) {
    state.metrics().live.fetch_add(1, Ordering::Relaxed);
    let _guard = LiveGuard(state.clone());
    let first = match tokio::time::timeout(AUTH_TIMEOUT, socket.recv()).await {
        Ok(Some(Ok(Message::Text(t)))) => t,
        Ok(Some(Ok(_))) | Err(_) => {
            let e = ApiError::unauthorized(
                "auth_missing",
                "Send the request authentication fields as the first frame.",
            );
            return close_with(socket, 4401, e).await;
        }
        Ok(None) | Ok(Some(Err(_))) => return,
    };
    let authed = authenticate(&state, &members, space, &path, first.as_str()).await;
    // Only the authentication needed these; an idle connection keeps none of them.
    drop((members, path, first));
    let device = match authed {
        Ok(d) => d,
        Err(e) => {
            let code = match e.status {
                StatusCode::FORBIDDEN => 4403,
                StatusCode::TOO_MANY_REQUESTS => 4429,
                _ => 4401,
            };
            return close_with(socket, code, e).await;
        }
    };
    let (mut rx, head) = match crate::fanout::subscribe(&state, space, &slot).await {
        Ok(x) => x,
        Err(e) => {
            let code = if e.status == StatusCode::NOT_FOUND {
                4404
            } else {
                4500
            };
            return close_with(socket, code, e).await;
        }
    };
    let ready = json!({ "ready": true, "head": head_json(head) }).to_string();
    if socket
        .send(Message::Text(Utf8Bytes::from(ready)))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {} // pings are answered by the library; anything else is ignored
            },
            ev = rx.recv() => match ev {
                Ok(frame) if frame.is_empty() => {
                    return close_with(socket, 4404, ApiError::no_space()).await;
                }
                Ok(frame) => {
                    // A revocation is an append, which leaves the member list in the slot.
                    let revoked = slot.view().members.as_ref().is_some_and(|m| m.active_key(&device).is_none());
                    if revoked {
                        let e = ApiError::forbidden("not_member", "This device is no longer a member of this space.");
                        return close_with(socket, 4403, e).await;
                    }
                    // A client that stops reading is let go rather than held forever.
                    let send = socket.send(Message::Text(Utf8Bytes::from(&*frame)));
                    if !matches!(tokio::time::timeout(SEND_TIMEOUT, send).await, Ok(Ok(()))) {
                        return;
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    let e = ApiError::new(StatusCode::CONFLICT, "lagged", "This connection fell behind. Reconnect and fetch the missed events.");
                    return close_with(socket, 4409, e).await;
                }
                Err(RecvError::Closed) => return,
            },
        }
    }
}
