//! The admin HTTP port: health, readiness, Prometheus metrics, and under `/api/` the
//! downlink command routes (`commands.rs`) and the TonyPi-compatible fleet routes
//! (`fleet.rs`).
//!
//! API errors are `{"detail": "..."}` (the shape the TonyPi UI reads) with a fitting
//! status; database errors are logged and answered 500/503 without their text. With
//! `http.admin_token` set, `/api/` needs `Authorization: Bearer <token>` (compared in
//! constant time).

mod commands;
mod data;
mod fleet;
mod metrics;
mod robot_data;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sqlx::PgPool;

use crate::config::ThresholdsConfig;
use crate::db::is_transient;
use crate::health::Health;
use crate::pipeline::source::Downlink;

#[derive(Clone)]
pub struct AdminState {
    pub health: Arc<Health>,
    pub prometheus: PrometheusHandle,
    pub pool: PgPool,
    pub downlink: Downlink,
    pub admin_token: Option<SecretString>,
    /// Fleet-wide thresholds, reported for robots without their own.
    pub thresholds: ThresholdsConfig,
}

/// The admin router; `cors_origins` may call `/api/` from a browser, and no request body
/// may exceed `max_body_bytes`.
pub fn router(state: AdminState, cors_origins: &[String], max_body_bytes: usize) -> Router {
    let api = Router::new()
        .route("/api/v1/management/command", post(commands::send))
        .route(
            "/api/v1/management/robots/{robot_id}/emergency-stop",
            post(commands::emergency_stop),
        )
        .route(
            "/api/v1/management/robots/{robot_id}/resume",
            post(commands::resume),
        )
        .route(
            "/api/v1/management/emergency-stop/broadcast",
            post(commands::emergency_stop_all),
        )
        .route("/api/v1/robot-data/command", post(commands::pass_through))
        .route(
            "/api/v1/devices/{device_id}/commands",
            post(commands::device),
        )
        .route("/api/v1/robots/{robot_id}/commands", get(commands::list))
        .route(
            "/api/v1/robots-db/robots",
            get(fleet::list).post(fleet::create),
        )
        .route(
            "/api/v1/robots-db/robots/{robot_id}",
            get(fleet::get).put(fleet::update).delete(fleet::delete),
        )
        .route("/api/v1/robots-db/jobs/history", get(fleet::job_history))
        .route("/api/v1/robots-db/stats", get(fleet::stats))
        .route("/api/v1/robots-db/logs", get(fleet::logs))
        .route("/api/v1/health", get(data::health))
        .route("/api/v1/robot-data/sensors", get(robot_data::sensors))
        .route("/api/v1/robot-data/status", get(robot_data::status))
        .route(
            "/api/v1/robot-data/latest/{robot_id}",
            get(robot_data::latest),
        )
        .route(
            "/api/v1/robot-data/servos/{robot_id}",
            get(robot_data::servo_data),
        )
        .route(
            "/api/v1/robot-data/job-summary/{robot_id}",
            get(robot_data::job_summary),
        )
        .route("/api/v1/robots/{robot_id}/latest", get(data::latest))
        .route("/api/v1/robots/{robot_id}/metrics", get(metrics::buckets))
        .route("/api/v1/metrics/names", get(data::names))
        .route("/api/v1/ingest-errors", get(data::ingest_errors))
        .layer(middleware::map_response(detail_for_rejections))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(cors(cors_origins));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(state)
}

/// A handler that panicked (a bug, never expected) answers 500 `{"detail"}` and is
/// logged, instead of the client seeing its connection dropped.
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("admin API handler panicked; answered 500");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
}

fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<header::HeaderValue> = origins
        .iter()
        .filter_map(|o| header::HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::POST,
            axum::http::Method::PUT,
            axum::http::Method::DELETE,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
}

/// An API error: status and a message for the client, never database text.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        tracing::warn!(error = %e, "admin API database error");
        if is_transient(&e) {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database unavailable, retry later",
            )
        } else {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// A robot id from a path or body, checked before it reaches SQL (400 otherwise).
pub(crate) fn check_robot_id(robot_id: &str) -> Result<(), ApiError> {
    if crate::model::valid_robot_id(robot_id) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "robot_id must be 1-128 characters of A-Z a-z 0-9 _ . : -",
        ))
    }
}

/// A `limit` parameter: `default` when absent, else 1-1000 (400 otherwise).
pub(crate) fn limit(given: Option<i64>, default: i64) -> Result<i64, ApiError> {
    let limit = given.unwrap_or(default);
    if (1..=1000).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "limit must be between 1 and 1000",
        ))
    }
}

/// Writes one `logs` row for something done through the API.
pub(crate) async fn write_log(s: &AdminState, row: crate::model::LogRow) -> Result<(), ApiError> {
    let mut conn = s.pool.acquire().await?;
    crate::db::writes::insert_logs(&mut conn, &[row]).await?;
    Ok(())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "detail": self.detail }))).into_response()
    }
}

/// axum's extractors reject bad input (a malformed JSON body, a query parameter of the
/// wrong type) with a plain-text 4xx; the API's contract is `{"detail": "..."}`.
async fn detail_for_rejections(resp: Response) -> Response {
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !resp.status().is_client_error() || !plain {
        return resp;
    }
    let status = resp.status();
    let text = axum::body::to_bytes(resp.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    ApiError::new(status, text).into_response()
}

async fn require_token(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    let Some(token) = &s.admin_token else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), token.expose_secret().as_bytes()) {
        next.run(req).await
    } else {
        let mut resp = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer <http.admin_token>)",
        )
        .into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        resp
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(s): State<AdminState>) -> Response {
    let r = s.health.readiness();
    let code = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(r)).into_response()
}

async fn metrics(State(s): State<AdminState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.prometheus.render(),
    )
        .into_response()
}

async fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "not found").into_response()
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
