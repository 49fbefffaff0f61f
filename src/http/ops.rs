//! The operations routes: liveness (`/healthz`), readiness (`/readyz`) and the
//! Prometheus scrape (`/metrics`, fleetsink's own telemetry, see `telemetry.rs`). They
//! take no token, so probes and Prometheus need no credentials.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::HttpState;
use crate::health::Readiness;
use crate::http::extract::Json;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "{\"status\": \"ok\"}")))]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the broker side is up, PostgreSQL answers and takes fleetsink's writes,
/// and no batch is held past its deadline. Not ready from the first failed commit
/// until a commit succeeds, whatever the probe says; `reason` says why (see
/// `health.rs` for the rule and the order of reasons).
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses((status = 200, description = "ready, with each part's state", body = Readiness),
              (status = 503, description = "not ready: `reason` is `draining`, `broker_disconnected`, `database_unreachable`, `commits_failing: <SQLSTATE>` or `pipeline_stalled`", body = Readiness)))]
pub async fn readyz(State(s): State<HttpState>) -> Response {
    let r = s.health.readiness();
    let code = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(r)).into_response()
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(s): State<HttpState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.prometheus.render(),
    )
        .into_response()
}
