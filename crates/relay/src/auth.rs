//! Request authentication: the four `troth-*` headers (or the first frame of
//! a live connection), checked for time window, signature and nonce reuse.

use axum::http::HeaderMap;
use ed25519_dalek::VerifyingKey;
use troth_core::SpaceId;
use troth_core::request::{
    HEADER_DEVICE, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIME, RequestAuth,
};

use crate::error::ApiError;
use crate::state::AppState;

/// Parses the four authentication headers.
pub(crate) fn from_headers(headers: &HeaderMap) -> Result<RequestAuth, ApiError> {
    let get = |name: &str| -> Result<&str, ApiError> {
        headers
            .get(name)
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "auth_missing",
                    "This request must be signed by a device of the space (troth-* headers).",
                )
            })?
            .to_str()
            .map_err(|_| bad_auth())
    };
    let (d, t, n, s) = (
        get(HEADER_DEVICE)?,
        get(HEADER_TIME)?,
        get(HEADER_NONCE)?,
        get(HEADER_SIGNATURE)?,
    );
    RequestAuth::from_headers(d, t, n, s).map_err(|_| bad_auth())
}

fn bad_auth() -> ApiError {
    ApiError::unauthorized(
        "auth_invalid",
        "The request's signature does not check out. Make sure the device key and the clock are right.",
    )
}

/// Checks a parsed request authentication against `key` (the signing
/// device's key): time window, signature, per-device rate, then nonce reuse.
pub(crate) fn verify(
    state: &AppState,
    auth: &RequestAuth,
    key: &VerifyingKey,
    space: SpaceId,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<(), ApiError> {
    check_time(state, auth)?;
    auth.verify(key, Some(space), method, path, body)
        .map_err(|_| bad_auth())?;
    admit(state, auth)
}

/// The time-window check alone.
pub(crate) fn check_time(state: &AppState, auth: &RequestAuth) -> Result<(), ApiError> {
    let window = state.limits().time_window_secs.saturating_mul(1000);
    if auth.time_ms.abs_diff(state.now_ms()) > window {
        return Err(ApiError::unauthorized(
            "auth_expired",
            "The request's time is too far from the relay's clock. Check the device's clock and try again.",
        ));
    }
    Ok(())
}

/// After the signature verified: the per-device rate, then nonce reuse.
pub(crate) fn admit(state: &AppState, auth: &RequestAuth) -> Result<(), ApiError> {
    state.check_device(&auth.device.0)?;
    if !state
        .store()
        .nonce_fresh(auth.time_ms, &auth.device.0, &auth.nonce)?
    {
        return Err(ApiError::unauthorized(
            "auth_replayed",
            "This request was already received once. Sign each request afresh.",
        ));
    }
    Ok(())
}

/// Errors of a batch check of a request and an event signature.
pub(crate) fn bad_auth_error() -> ApiError {
    bad_auth()
}
