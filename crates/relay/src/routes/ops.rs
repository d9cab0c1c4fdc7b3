//! `/healthz` and `/metrics`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

/// `GET /healthz`: 200 `{"status": "ok", "store": …}` while the relay
/// serves and its store answers; 503 `{"status": "unavailable", …}` when the
/// store (PostgreSQL) does not answer within 5 s (the cause is logged).
pub async fn healthz(State(state): State<AppState>) -> Response {
    let store = state.store();
    let kind = store.kind();
    match tokio::time::timeout(std::time::Duration::from_secs(5), store.health()).await {
        Ok(Ok(())) => Json(json!({ "status": "ok", "store": kind })).into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "health check: the store failed");
            unavailable(kind)
        }
        Err(_) => {
            tracing::error!("health check: the store did not answer in 5 s");
            unavailable(kind)
        }
    }
}

fn unavailable(kind: &str) -> Response {
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({
            "status": "unavailable",
            "store": kind,
            "error": "store_unavailable",
            "message": "The relay cannot reach its database just now.",
        })),
    )
        .into_response()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let m = state.metrics();
    let mut out = String::new();
    out.push_str("# HELP troth_relay_requests_total HTTP requests by route and status.\n");
    out.push_str("# TYPE troth_relay_requests_total counter\n");
    let mut rows: Vec<((String, u16), u64)> = m
        .requests
        .lock()
        .map(|g| {
            g.iter()
                .flat_map(|(route, m)| m.iter().map(|(s, n)| ((route.clone(), *s), *n)))
                .collect()
        })
        .unwrap_or_default();
    rows.sort();
    for ((route, status), n) in rows {
        let _ = writeln!(
            out,
            "troth_relay_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP troth_relay_appends_total Events appended (durable).\n# TYPE troth_relay_appends_total counter\ntroth_relay_appends_total {}",
        m.appends.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP troth_relay_live_connections Open live (WebSocket) connections.\n# TYPE troth_relay_live_connections gauge\ntroth_relay_live_connections {}",
        m.live.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP troth_relay_sessions Open request sessions.\n# TYPE troth_relay_sessions gauge\ntroth_relay_sessions {}",
        state.sessions().len()
    );
    let _ = writeln!(
        out,
        "# HELP troth_relay_storage_bytes Bytes the store uses on disk.\n# TYPE troth_relay_storage_bytes gauge\ntroth_relay_storage_bytes {}",
        state.store().size_on_disk().await.unwrap_or(0)
    );
    let f = state.flush_stats();
    let _ = writeln!(
        out,
        "# HELP troth_relay_flushes_total Group-commit flushes.\n# TYPE troth_relay_flushes_total counter\ntroth_relay_flushes_total {}\n# HELP troth_relay_flush_waiters_total Writes made durable by those flushes.\n# TYPE troth_relay_flush_waiters_total counter\ntroth_relay_flush_waiters_total {}\n# HELP troth_relay_flush_seconds_total Time spent flushing.\n# TYPE troth_relay_flush_seconds_total counter\ntroth_relay_flush_seconds_total {:.6}",
        f.flushes.load(Ordering::Relaxed),
        f.waiters.load(Ordering::Relaxed),
        f.micros.load(Ordering::Relaxed) as f64 / 1e6
    );
    let v = state.verifier().stats();
    let _ = writeln!(
        out,
        "# HELP troth_relay_verify_batches_total Batches of appends' signatures (event and request) checked together.\n# TYPE troth_relay_verify_batches_total counter\ntroth_relay_verify_batches_total {}\n# HELP troth_relay_verify_signatures_total Signatures checked in those batches.\n# TYPE troth_relay_verify_signatures_total counter\ntroth_relay_verify_signatures_total {}",
        v.batches.load(Ordering::Relaxed),
        v.signatures.load(Ordering::Relaxed)
    );
    let fo = state.fanout_stats();
    let _ = writeln!(
        out,
        "# HELP troth_relay_live_frames_total Events pushed to this process's live subscribers (once per event).\n# TYPE troth_relay_live_frames_total counter\ntroth_relay_live_frames_total {}\n\
         # HELP troth_relay_live_caught_up_total Of those, events read from the store (appended through another process, or missed notices).\n# TYPE troth_relay_live_caught_up_total counter\ntroth_relay_live_caught_up_total {}\n\
         # HELP troth_relay_live_head_checks_total Head checks of live spaces against the store (shared store).\n# TYPE troth_relay_live_head_checks_total counter\ntroth_relay_live_head_checks_total {}\n\
         # HELP troth_relay_notices_handled_total Notices of other relay processes handled.\n# TYPE troth_relay_notices_handled_total counter\ntroth_relay_notices_handled_total {}",
        fo.frames.load(Ordering::Relaxed),
        fo.caught_up.load(Ordering::Relaxed),
        fo.head_checks.load(Ordering::Relaxed),
        fo.notices.load(Ordering::Relaxed),
    );
    state.store().write_metrics(&mut out);
    if let Some(push) = state.push() {
        push.write_metrics(&mut out);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// `GET /v1/help`: the operator's help words and links per language, for the
/// web client's private moment (`{"help": [{"lang", "words", "links": [{"label", "url"}]}]}`;
/// an empty list when none are set). Every client asks once when it opens,
/// so the request says nothing about whether the moment was shown.
pub async fn help(State(state): State<AppState>) -> Response {
    Json(json!({ "help": state.help() })).into_response()
}
