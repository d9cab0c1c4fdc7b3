//! One error type for every route: a stable JSON shape, the right status,
//! and no internals (those are logged).

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::{Head, StoreError};

/// An API error: `{"error": code, "message": sentence}` plus, for some codes,
/// extra fields (`head` for `stale_head`).
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// A calm sentence for a person.
    pub message: Cow<'static, str>,
    /// The current head (`stale_head` only).
    pub head: Option<Head>,
    /// Seconds until a retry may succeed (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            head: None,
            retry_after: None,
        }
    }

    /// 400 with a code.
    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401 with a code.
    pub fn unauthorized(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 403 with a code.
    pub fn forbidden(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 404 `no_space`.
    pub fn no_space() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "no_space",
            "This relay has no such space. It may have been deleted.",
        )
    }

    /// 413 `too_large`.
    pub fn too_large(what: &str) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("The {what} is larger than this relay accepts."),
        )
    }

    /// 429 `rate_limited` with a Retry-After in seconds.
    pub fn rate_limited(retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many requests just now. Please wait a moment and try again.",
        );
        e.retry_after = Some(retry_after.max(1));
        e
    }

    /// 409 `stale_head` carrying the current head.
    pub fn stale(head: Head) -> Self {
        let mut e = Self::new(
            StatusCode::CONFLICT,
            "stale_head",
            "The log moved on since this event was written. Fetch the new events and try again.",
        );
        e.head = Some(head);
        e
    }

    /// 500 `internal`: the cause is logged, not returned.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "The relay could not complete this request. Nothing was changed; please try again later.",
        )
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut v = json!({ "error": self.code, "message": self.message });
        if let Some(h) = self.head {
            v["head"] = head_json(h);
        }
        v
    }
}

/// `{"seq": n, "hash": hex}`.
pub fn head_json(h: Head) -> serde_json::Value {
    json!({ "seq": h.seq, "hash": h.hash.to_hex() })
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "storage failure");
        ApiError::internal()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        r
    }
}

/// The code and message used when a layer (body limit, timeout, router)
/// answered with a bare status.
pub fn for_status(status: StatusCode) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large("request body"),
        StatusCode::NOT_FOUND => {
            ApiError::new(status, "not_found", "There is nothing at this address.")
        }
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            status,
            "method_not_allowed",
            "This address does not accept this method.",
        ),
        StatusCode::REQUEST_TIMEOUT => ApiError::new(
            status,
            "timeout",
            "The request took too long and was stopped. Please try again.",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            status,
            "unsupported_media_type",
            "Send the request body as JSON.",
        ),
        StatusCode::TOO_MANY_REQUESTS => ApiError::rate_limited(1),
        s if s.is_client_error() => ApiError::new(
            s,
            "bad_request",
            "The relay could not understand this request.",
        ),
        _ => ApiError::internal(),
    }
}
