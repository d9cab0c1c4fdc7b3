//! The web client, embedded at build time (see `build.rs` and `docs/WEB.md`)
//! and served at `/` with a strict Content-Security-Policy: the page may load
//! and connect only to this relay, may instantiate wasm, and nothing else.
//! Assets are sent gzipped when the browser accepts it, with an `ETag` and
//! `Cache-Control: no-cache` (names are not content-hashed, so the browser
//! revalidates; an unchanged asset costs a 304).

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// The URL path (`/app.js`).
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// A strong validator (a prefix of the SHA-256 of `raw`, quoted).
    pub etag: &'static str,
    /// The bytes.
    pub raw: &'static [u8],
    /// The bytes, gzipped.
    pub gzip: &'static [u8],
}

/// Every embedded file of the web client.
pub static ASSETS: &[Asset] = include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Only this origin; wasm allowed; no inline script or style; no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
     style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; manifest-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Routes for `/` and every asset; merge it into the relay's router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut r = Router::new();
    for asset in ASSETS {
        r = r.route(asset.path, get(move |h: HeaderMap| serve(asset, h)));
        if asset.path == "/index.html" {
            r = r.route("/", get(move |h: HeaderMap| serve(asset, h)));
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

async fn serve(asset: &'static Asset, h: HeaderMap) -> Response {
    let mut headers = HeaderMap::new();
    let set = |headers: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        headers.insert(k, HeaderValue::from_static(v));
    };
    set(
        &mut headers,
        header::CONTENT_SECURITY_POLICY,
        CONTENT_SECURITY_POLICY,
    );
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
    fn the_client_is_embedded() {
        let paths: Vec<_> = ASSETS.iter().map(|a| a.path).collect();
        for p in ["/index.html", "/troth_wasm.js", "/troth_wasm_bg.wasm"] {
            assert!(paths.contains(&p), "{p} missing from {paths:?}");
        }
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
