//! Request authentication: the four `troth-*` headers of a signed request
//! (or the first frame of a live connection), checked for time window,
//! signature and nonce reuse; or the four headers of a session request,
//! checked for time window, MAC and counter reuse.

use axum::http::HeaderMap;
use ed25519_dalek::VerifyingKey;
use troth_core::SpaceId;
use troth_core::keys::DeviceId;
use troth_core::request::{
    HEADER_DEVICE, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIME, RequestAuth,
};
use troth_core::session::{HEADER_COUNTER, HEADER_MAC, HEADER_SESSION, SessionAuth};

use crate::error::ApiError;
use crate::state::AppState;

/// How a request proves where it comes from.
pub(crate) enum Credential {
    /// A device signature over this request.
    Signed(RequestAuth),
    /// A MAC under an open session's key.
    Session(SessionAuth),
}

/// Parses a request's credential: session headers if `troth-session` is
/// there, the signed-request headers otherwise.
pub(crate) fn credential(headers: &HeaderMap) -> Result<Credential, ApiError> {
    if headers.contains_key(HEADER_SESSION) {
        let get = |name: &str| -> Result<&str, ApiError> {
            headers
                .get(name)
                .ok_or_else(bad_auth)?
                .to_str()
                .map_err(|_| bad_auth())
        };
        let a = SessionAuth::from_headers(
            get(HEADER_SESSION)?,
            get(HEADER_TIME)?,
            get(HEADER_COUNTER)?,
            get(HEADER_MAC)?,
        )
        .map_err(|_| bad_auth())?;
        return Ok(Credential::Session(a));
    }
    from_headers(headers).map(Credential::Signed)
}

/// Checks a session request: the session is open and for `space`, the
/// time is in the window, the MAC verifies, the device's rate allows it and
/// the counter is new. Returns the device that opened the session (whether it
/// is still an active member is the caller's to check).
pub(crate) fn verify_session(
    state: &AppState,
    auth: &SessionAuth,
    space: SpaceId,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<DeviceId, ApiError> {
    let session = state
        .sessions()
        .get(&auth.session)
        .filter(|s| s.key.space() == space)
        .ok_or_else(session_unknown)?;
    let now = state.now_ms();
    if now >= session.expires_ms {
        state.sessions().remove(&auth.session);
        return Err(session_unknown());
    }
    check_time_ms(state, auth.time_ms)?;
    if !session.key.verify(auth, method, path, body) {
        return Err(bad_auth());
    }
    let device = session.key.device();
    state.check_device(&device.0)?;
    let fresh = session
        .window
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .accept(auth.counter);
    if !fresh {
        return Err(replayed());
    }
    Ok(device)
}

fn session_unknown() -> ApiError {
    ApiError::unauthorized(
        "session_unknown",
        "This session is not open on the relay (it expired, or the relay restarted). Open a new one.",
    )
}

fn replayed() -> ApiError {
    ApiError::unauthorized(
        "auth_replayed",
        "This request was already received once. Sign each request afresh.",
    )
}

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
pub(crate) async fn verify(
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
    admit(state, auth).await
}

/// The time-window check alone.
pub(crate) fn check_time(state: &AppState, auth: &RequestAuth) -> Result<(), ApiError> {
    check_time_ms(state, auth.time_ms)
}

fn check_time_ms(state: &AppState, time_ms: u64) -> Result<(), ApiError> {
    let window = state.limits().time_window_secs.saturating_mul(1000);
    if time_ms.abs_diff(state.now_ms()) > window {
        return Err(ApiError::unauthorized(
            "auth_expired",
            "The request's time is too far from the relay's clock. Check the device's clock and try again.",
        ));
    }
    Ok(())
}

/// After the signature verified: the per-device rate, then nonce reuse.
pub(crate) async fn admit(state: &AppState, auth: &RequestAuth) -> Result<(), ApiError> {
    state.check_device(&auth.device.0)?;
    if !state
        .store()
        .nonce_fresh(auth.time_ms, &auth.device.0, &auth.nonce)
        .await?
    {
        return Err(replayed());
    }
    Ok(())
}

/// Errors of a batch check of a request and an event signature.
pub(crate) fn bad_auth_error() -> ApiError {
    bad_auth()
}
