//! # troth-relay
//!
//! Troth's self-hostable relay. It owns: the HTTP/WebSocket API that devices
//! use to exchange a space's signed, encrypted events (create, append with
//! compare-and-swap on the head, read, live push, delete) and to find each
//! other for pairing (rendezvous mailboxes); request authentication (time
//! window, signature, nonce cache); limits; durable storage (sled by default)
//! with group commit; batched signature checks; metrics; content-free Web
//! Push to the other partner's devices (`push`); and serving the browser client built into
//! the binary (`web`).
//!
//! It never sees a secret key or plaintext: it checks event structure,
//! signatures and the public membership rules (`troth_core::members`), and
//! stores ciphertext. Clients treat it as an adversary. The API is in
//! `docs/RELAY.md`.
#![forbid(unsafe_code)]

pub mod auth;
pub mod clock;
pub mod commit;
pub mod config;
pub mod error;
mod fanout;
pub mod help;
pub mod push;
mod routes;
mod sessions;
pub mod state;
pub mod store;
pub mod verify;
pub mod web;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::for_status;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{Config, Limits};
pub use routes::spaces::page_json;
pub use state::{AppState, ClientIp};

/// The relay's router over `state`. Tests call it in-process; `main` serves it.
///
/// The web client's assets are merged in from [`web::router`]; any other
/// address answers 404 JSON through the fallback. To serve more, merge
/// another `Router` next to it (before the middleware, so limits cover it).
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(routes::ops::healthz))
        .route("/metrics", get(routes::ops::metrics))
        .route("/v1/spaces", post(routes::spaces::create))
        .route(
            "/v1/spaces/{space}",
            axum::routing::delete(routes::spaces::delete),
        )
        .route(
            "/v1/spaces/{space}/events",
            post(routes::spaces::append).get(routes::spaces::read),
        )
        .route(
            "/v1/spaces/{space}/sessions",
            post(routes::spaces::open_session),
        )
        .route("/v1/spaces/{space}/live", get(routes::live::live))
        .route(
            "/v1/spaces/{space}/push",
            post(routes::push::register).delete(routes::push::unregister),
        )
        .route("/v1/push/key", get(routes::push::key))
        .route("/v1/help", get(routes::ops::help))
        .route("/v1/rendezvous", post(routes::rendezvous::open))
        .route(
            "/v1/rendezvous/{n}",
            axum::routing::delete(routes::rendezvous::close),
        )
        .route("/v1/rendezvous/{n}/claim", post(routes::rendezvous::claim))
        .route(
            "/v1/rendezvous/{n}/messages",
            post(routes::rendezvous::post).get(routes::rendezvous::get),
        )
        .merge(web::router())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), cors))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Cross-origin calls from pages the relay did not serve (a copy of the web
/// client on another origin, e.g. `troth web serve`): answered only for the
/// origins the operator listed (`--web-origin`). A listed origin's
/// preflight gets 204 with what it asked for; an unlisted one's gets 403
/// `origin_not_allowed`, and its other requests get no CORS headers, so the
/// browser keeps their answers from the page. (Browsers do not apply CORS to
/// WebSockets; a live connection needs a member device's signature in its
/// first message whatever page opened it, and is not gated by origin: a
/// reverse proxy that rewrites `Host` would otherwise break it.) Requests
/// without `Origin` (the CLI, same-origin GETs) pass untouched.
async fn cors(State(state): State<AppState>, req: Request, next: Next) -> Response {
    use axum::http::{HeaderValue, Method};
    let Some(origin) = req.headers().get(header::ORIGIN).cloned() else {
        return next.run(req).await;
    };
    let origin_str = origin.to_str().unwrap_or("");
    let listed = state.web_origins().iter().any(|o| o == origin_str);
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        if !listed {
            return error::ApiError::forbidden(
                "origin_not_allowed",
                "This relay does not answer pages from that address. Its operator can allow it (--web-origin).",
            )
            .into_response();
        }
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, DELETE"),
        );
        if let Some(asked) = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .cloned()
        {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
        }
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        return r;
    }
    let mut r = next.run(req).await;
    if listed {
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    r
}

/// Admits a request that passed the rate limit: waits for one of the
/// relay's concurrency permits, then reads the whole body within the body
/// limit, then runs the route; the caller bounds all of it by the request
/// timeout. One middleware instead of four tower layers (timeout,
/// concurrency limit, body limit, body reading): the middleware's CPU per
/// request fell from 1.8–2.5 µs to 1.1 µs, and appends gained ~3%
/// (docs/BENCHMARKS.md).
///
/// The body is read before any route sees the request, so a route that
/// needs no body (opening a mailbox, closing one, a 404, a 405) still
/// leaves the connection clean. If a route answered with the body unread,
/// hyper would close the connection after the answer, and a client that
/// had already put it back in its pool would see its next request fail
/// ("peer disconnected").
async fn admit(state: &AppState, req: Request, next: Next) -> Response {
    use axum::body::{Body, HttpBody};
    let Ok(_permit) = state.concurrency().acquire().await else {
        return error::ApiError::internal().into_response();
    };
    let max = state.limits().max_body_bytes;
    let declared = req.body().size_hint().exact();
    if declared == Some(0) {
        return next.run(req).await;
    }
    if declared.is_some_and(|n| n > max as u64) {
        // Refused unread: the connection cannot carry another request.
        return closing(for_status(StatusCode::PAYLOAD_TOO_LARGE).into_response());
    }
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, max).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = source {
                if err.is::<http_body_util::LengthLimitError>() {
                    return closing(for_status(StatusCode::PAYLOAD_TOO_LARGE).into_response());
                }
                source = err.source();
            }
            for_status(StatusCode::BAD_REQUEST).into_response()
        }
    }
}

/// Marks `r` as the connection's last answer.
fn closing(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

async fn not_found() -> Response {
    for_status(StatusCode::NOT_FOUND).into_response()
}

/// The client address: the peer, or the last `X-Forwarded-For` hop when the
/// relay is configured to trust its reverse proxy.
fn client_ip(req: &Request, trust_forwarded_for: bool) -> IpAddr {
    if trust_forwarded_for {
        // The last hop is the one our proxy added; earlier ones are the client's say-so.
        let last = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .pop()
            .map(str::to_string);
        let fwd = last.and_then(|s| s.parse::<IpAddr>().ok());
        if let Some(ip) = fwd {
            return ip;
        }
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// The one middleware: per-address rate limit, then (within the request
/// timeout) a concurrency permit, the body within its limit and the route
/// ([`admit`]); one JSON shape for every error (also the router's 404 and
/// 405); and request metrics by route and status.
async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or("other", MatchedPath::as_str);
    let ip = client_ip(&req, state.limits().trust_forwarded_for);
    req.extensions_mut().insert(ClientIp(ip));
    let admitted = if route == "/healthz" {
        Ok(())
    } else {
        state.check_ip(ip)
    };
    let resp = match admitted {
        Ok(()) => {
            let timeout = Duration::from_secs(state.limits().request_timeout_secs);
            match tokio::time::timeout(timeout, admit(&state, req, next)).await {
                Ok(r) => r,
                Err(_) => closing(for_status(StatusCode::REQUEST_TIMEOUT).into_response()),
            }
        }
        Err(e) => {
            // Refused before its body was read: the connection cannot
            // carry another request, so say so rather than let the
            // client reuse it.
            let r = e.into_response();
            if may_have_body(&req) { closing(r) } else { r }
        }
    };
    let status = resp.status();
    let resp = if status.as_u16() >= 400 && !is_json(&resp) {
        let retry = resp.headers().get(header::RETRY_AFTER).cloned();
        let mut r = for_status(status).into_response();
        if let Some(v) = retry {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    } else {
        resp
    };
    if status.is_server_error() {
        tracing::warn!(route = %route, status = status.as_u16(), "request failed");
    }
    state.record_request(route, resp.status().as_u16());
    resp
}

fn may_have_body(req: &Request) -> bool {
    use axum::body::HttpBody;
    req.body().size_hint().exact() != Some(0)
}

fn is_json(r: &Response) -> bool {
    r.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Serves `app(state)` on `listener` until `shutdown` completes, then lets
/// in-flight requests finish and flushes the store.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let svc = app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, svc)
        .with_graceful_shutdown(shutdown)
        .await?;
    let store = state.store().clone();
    tokio::task::spawn_blocking(move || store.flush())
        .await
        .map_err(std::io::Error::other)?
        .map_err(std::io::Error::other)?;
    Ok(())
}
