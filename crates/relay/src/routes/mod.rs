//! The HTTP handlers, one module per part of the API (see docs/RELAY.md).

pub mod live;
pub mod ops;
pub mod push;
pub mod rendezvous;
pub mod spaces;

use axum::body::Bytes;
use axum::http::Uri;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::DeserializeOwned;
use troth_core::SpaceId;
use troth_core::encoding::DecodeError;
use troth_core::event::{Event, MAX_EVENT};

use crate::error::ApiError;

/// Parses a JSON request body into `T`.
pub(crate) fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "bad_json",
            format!(
                "The request body is not the JSON this address expects ({}).",
                e.classify_name()
            ),
        )
    })
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "wrong or missing fields",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

/// Decodes standard base64 (with padding), refusing more than `max` decoded bytes.
pub(crate) fn b64(field: &'static str, s: &str, max: usize) -> Result<Vec<u8>, ApiError> {
    if s.len() > max.div_ceil(3) * 4 {
        return Err(ApiError::too_large(field));
    }
    STANDARD.decode(s).map_err(|_| {
        ApiError::bad_request(
            "bad_base64",
            format!("The field `{field}` is not standard base64 with padding."),
        )
    })
}

/// Encodes standard base64.
pub(crate) fn to_b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes an event from base64, mapping failures to 400/413.
pub(crate) fn event_from_b64(s: &str) -> Result<Event, ApiError> {
    let bytes = b64("event", s, MAX_EVENT)?;
    Event::decode(&bytes).map_err(|e| match e {
        DecodeError::TooLong { .. } => ApiError::too_large("event"),
        _ => ApiError::bad_request(
            "bad_event",
            "The event is not well-formed. It may have been damaged on the way.",
        ),
    })
}

/// Parses a space id from the path (32 hex digits).
pub(crate) fn space_id(s: &str) -> Result<SpaceId, ApiError> {
    SpaceId::from_hex(s)
        .map_err(|_| ApiError::bad_request("bad_space_id", "A space id is 32 hexadecimal digits."))
}

/// A request's parts and its body. The middleware (`crate::admit`) has
/// already read the body within its limit, so this only takes it out; a
/// handler that takes the request whole borrows its headers and address
/// instead of cloning them (the `HeaderMap` and `Uri` extractors copy).
pub(crate) async fn into_parts(
    req: axum::extract::Request,
) -> Result<(axum::http::request::Parts, Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    // Answered as the middleware answers a body it could not read.
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|_| crate::error::for_status(axum::http::StatusCode::BAD_REQUEST))?;
    Ok((parts, body))
}

/// The path and query a client signed.
pub(crate) fn signed_path(uri: &Uri) -> &str {
    uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
}
