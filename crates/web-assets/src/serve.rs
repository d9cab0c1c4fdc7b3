//! Serves the bundle at `/` with a strict Content-Security-Policy: the page
//! may load and connect only to the origin it came from (or what the caller
//! allows), may instantiate wasm, and nothing else. Assets are sent gzipped
//! when the browser accepts it, with an `ETag` and `Cache-Control:
//! no-cache` (names are not content-hashed, so the browser revalidates; an
//! unchanged asset costs a 304).

use crate::{ASSETS, Asset};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Only this origin; wasm allowed; no inline script or style; no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; manifest-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Routes for `/` and every asset, with [`CONTENT_SECURITY_POLICY`] (the
/// page talks to the origin it came from), and `/troth-config.json` saying
/// nothing (`{}`: the relay is this origin); merge it into a router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    router_with(
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        b"{}".to_vec(),
    )
}

/// The same routes under another Content-Security-Policy, with `config`
/// (JSON, e.g. `{"relay": "https://relay.example.org"}`) at
/// `/troth-config.json`: the settings of this copy, read by the app at
/// start. Not part of the bundle (nor of its hash).
pub fn router_with<S: Clone + Send + Sync + 'static>(
    csp: HeaderValue,
    config: Vec<u8>,
) -> Router<S> {
    let mut r = Router::new().route(
        "/troth-config.json",
        get(move || {
            let body = config.clone();
            async move {
                (
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    body,
                )
            }
        }),
    );
    for asset in ASSETS {
        let paths: &[&str] = if asset.path == "/index.html" {
            &["/index.html", "/"]
        } else {
            &[asset.path]
        };
        for path in paths {
            let csp = csp.clone();
            r = r.route(path, get(move |h: HeaderMap| serve(asset, csp.clone(), h)));
        }
    }
    r
}

fn accepts_gzip(h: &HeaderMap) -> bool {
    h.get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.split(';');
            let name = parts.next().unwrap_or("").trim();
            let q_zero = parts.any(|p| p.trim().replace(' ', "") == "q=0");
            (name == "gzip" || name == "*") && !q_zero
        })
}

async fn serve(asset: &'static Asset, csp: HeaderValue, h: HeaderMap) -> Response {
    let mut headers = HeaderMap::new();
    let set = |headers: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        headers.insert(k, HeaderValue::from_static(v));
    };
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    set(&mut headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(&mut headers, header::REFERRER_POLICY, "no-referrer");
    set(&mut headers, header::X_FRAME_OPTIONS, "DENY");
    set(&mut headers, header::CACHE_CONTROL, "no-cache");
    set(&mut headers, header::VARY, "Accept-Encoding");
    set(&mut headers, header::ETAG, asset.etag);
    headers.insert(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("geolocation=(), camera=(), microphone=()"),
    );
    let fresh = h
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == asset.etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    set(&mut headers, header::CONTENT_TYPE, asset.content_type);
    let body = if accepts_gzip(&h) {
        set(&mut headers, header::CONTENT_ENCODING, "gzip");
        asset.gzip
    } else {
        asset.raw
    };
    (StatusCode::OK, headers, Body::from(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_wasm_and_nothing_inline() {
        assert!(CONTENT_SECURITY_POLICY.contains("'wasm-unsafe-eval'"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
    }

    #[test]
    fn gzip_negotiation() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip, deflate, br"),
        );
        assert!(accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("gzip;q=0, br"),
        );
        assert!(!accepts_gzip(&h));
    }
}
