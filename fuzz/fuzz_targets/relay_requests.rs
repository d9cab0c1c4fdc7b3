//! The relay's request handling: arbitrary method, path, headers and body
//! sent through the real router (in-memory store) never panic and never get a
//! 5xx answer.
#![no_main]
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Method, Request};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;
use troth_relay::store::MemoryStore;
use troth_relay::{AppState, Limits, SystemClock};

fn setup() -> &'static (tokio::runtime::Runtime, axum::Router) {
    static S: OnceLock<(tokio::runtime::Runtime, axum::Router)> = OnceLock::new();
    S.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let router = rt.block_on(async {
            let state = AppState::new(
                Arc::new(MemoryStore::new()),
                Arc::new(SystemClock),
                Limits::generous(),
            )
            .expect("state");
            troth_relay::app(state)
        });
        (rt, router)
    })
}

fuzz_target!(|data: &[u8]| {
    let (rt, router) = setup();
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, "\n\n");
    let head = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default().as_bytes().to_vec();
    let mut lines = head.lines();
    let first = lines.next().unwrap_or_default();
    let (method, path) = first.split_once(' ').unwrap_or(("GET", first));
    let method = match method {
        "POST" => Method::POST,
        "DELETE" => Method::DELETE,
        "PUT" => Method::PUT,
        _ => Method::GET,
    };
    let uri = if path.starts_with('/') { path.to_owned() } else { format!("/v1/{path}") };
    let mut req = Request::builder().method(method).uri(uri);
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            req = req.header(k.trim(), v.trim());
        }
    }
    let Ok(req) = req.body(Body::from(body)) else { return };
    let resp = rt.block_on(router.clone().oneshot(req));
    let Ok(resp) = resp;
    assert!(resp.status().as_u16() < 500, "status {}", resp.status());
});
