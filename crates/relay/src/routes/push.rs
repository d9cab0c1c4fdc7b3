//! Web Push registration (issue 16): the relay's VAPID public key, and a
//! device's signed request to be notified (or no longer).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::json;
use troth_core::SpaceId;
use troth_core::keys::DeviceId;

use super::{json_body, space_id};
use crate::error::ApiError;
use crate::push::{Push, Subscription, check_endpoint};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Keys {
    p256dh: String,
    auth: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Quiet {
    from: u16,
    to: u16,
}

/// `POST /v1/spaces/{space}/push`'s body: the browser's subscription
/// (`PushSubscription.toJSON()`'s `endpoint` and `keys`) and the quiet hours.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Register {
    endpoint: String,
    keys: Keys,
    #[serde(default)]
    quiet: Option<Quiet>,
}

fn push_off() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "push_off",
        "This relay does not send notifications. Its operator can turn them on ([push] enabled).",
    )
}

/// `GET /v1/push/key`: the relay's VAPID public key, for the browser's
/// `pushManager.subscribe({ applicationServerKey })`.
pub async fn key(State(state): State<AppState>) -> Result<Response, ApiError> {
    let push = state.push().ok_or_else(push_off)?;
    Ok(Json(json!({ "key": push.public_key() })).into_response())
}

/// A signed request of an active member device of `space` (no session:
/// registering is rare and must be signed). Returns the push sender and the device.
async fn signed_member<'a>(
    state: &'a AppState,
    path: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
    method: &str,
    uri: &Uri,
    body: &[u8],
) -> Result<(&'a Push, SpaceId, DeviceId), ApiError> {
    let push = state.push().ok_or_else(push_off)?;
    let space = space_id(
        &path
            .map_err(|_| ApiError::bad_request("bad_path", "This address is not well-formed."))?
            .0,
    )?;
    let device = super::spaces::signed_member(state, headers, space, method, uri, body).await?;
    push.check_registration(&device.0)?;
    Ok((push, space, device))
}

/// `POST /v1/spaces/{space}/push`: the signing device's push subscription
/// (replacing the one it had), checked against the endpoint rules.
pub async fn register(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (push, space, device) = signed_member(&state, path, &headers, "POST", &uri, &body).await?;
    let req: Register = json_body(&body)?;
    check_endpoint(push.settings(), &req.endpoint)?;
    let p256dh = URL_SAFE_NO_PAD
        .decode(req.keys.p256dh.trim_end_matches('='))
        .ok()
        .filter(|k| p256::PublicKey::from_sec1_bytes(k).is_ok() && k.len() == 65);
    let auth = URL_SAFE_NO_PAD
        .decode(req.keys.auth.trim_end_matches('='))
        .ok()
        .filter(|a| a.len() == 16);
    let (Some(p256dh), Some(auth)) = (p256dh, auth) else {
        return Err(ApiError::bad_request(
            "bad_push_keys",
            "`keys.p256dh` must be an uncompressed P-256 point and `keys.auth` 16 bytes, both base64url, as the browser gives them.",
        ));
    };
    let quiet = match req.quiet {
        None => None,
        Some(q) if q.from < 1440 && q.to < 1440 && q.from != q.to => Some((q.from, q.to)),
        Some(_) => {
            return Err(ApiError::bad_request(
                "bad_quiet_hours",
                "`quiet.from` and `quiet.to` are different minutes after midnight UTC (0 to 1439).",
            ));
        }
    };
    let sub = Subscription {
        endpoint: req.endpoint,
        p256dh: URL_SAFE_NO_PAD.encode(p256dh),
        auth: URL_SAFE_NO_PAD.encode(auth),
        quiet,
    };
    state
        .store()
        .push_put(space, &device.0, &sub.encode())
        .await?;
    state.durable().await?;
    push.forget(space, device);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /v1/spaces/{space}/push`: the signing device wants no more
/// notifications; its subscription is deleted.
pub async fn unregister(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
) -> Result<Response, ApiError> {
    let (push, space, device) = signed_member(&state, path, &headers, "DELETE", &uri, &[]).await?;
    state.store().push_delete(space, &device.0).await?;
    state.durable().await?;
    push.forget(space, device);
    Ok(StatusCode::NO_CONTENT.into_response())
}
