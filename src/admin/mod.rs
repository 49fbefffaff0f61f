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
mod goauth;
mod metrics;
mod robot_data;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

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
    /// MQTT user and ACL checks (the go-auth endpoints).
    pub auth: Arc<crate::auth::Authenticator>,
    /// Networks that may call the go-auth endpoints.
    pub auth_allow: Arc<Vec<ipnet::IpNet>>,
    /// The topic of each command kind (`commands.profile`, `commands.topics`).
    pub command_topics: Arc<crate::config::CommandTopics>,
    /// How long a robot has to confirm an emergency stop.
    pub confirm_within: std::time::Duration,
}

/// The OpenAPI document's frame; the paths come from the handlers (`utoipa::path`)
/// as they are routed.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "fleetsink admin API",
        description = "Fleet queries (TonyPi-compatible robots-db and robot-data routes), \
                       metric queries, ingest errors and downlink commands. Errors are \
                       {\"detail\": \"...\"}. With http.admin_token set, /api/ needs \
                       Authorization: Bearer <token>."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

/// Declares the bearer token scheme the API uses when `http.admin_token` is set.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The body of every API error.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Detail {
    /// What went wrong and, where it helps, what to do.
    pub detail: String,
}

/// The `/api/` routes and the operations routes (`/healthz`, `/readyz`, `/metrics`, and
/// go-auth's `/mqtt/*`, which check the caller's network instead of a token),
/// each registered together with its OpenAPI description, and the document they make.
fn routes() -> (
    Router<AdminState>,
    Router<AdminState>,
    utoipa::openapi::OpenApi,
) {
    use utoipa::OpenApi;
    use utoipa_axum::{router::OpenApiRouter, routes};
    let (api, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(commands::send))
        .routes(routes!(commands::emergency_stop))
        .routes(routes!(commands::resume))
        .routes(routes!(commands::emergency_stop_all))
        .routes(routes!(commands::pass_through))
        .routes(routes!(commands::device))
        .routes(routes!(commands::list))
        .routes(routes!(fleet::list, fleet::create))
        .routes(routes!(fleet::get, fleet::update, fleet::delete))
        .routes(routes!(fleet::job_history))
        .routes(routes!(fleet::stats))
        .routes(routes!(fleet::logs))
        .routes(routes!(data::health))
        .routes(routes!(robot_data::sensors))
        .routes(routes!(robot_data::status))
        .routes(routes!(robot_data::latest))
        .routes(routes!(robot_data::servo_data))
        .routes(routes!(robot_data::job_summary))
        .routes(routes!(data::latest))
        .routes(routes!(metrics::buckets))
        .routes(routes!(data::names))
        .routes(routes!(data::ingest_errors))
        .routes(routes!(openapi_json))
        .split_for_parts();
    let (ops, ops_doc) = OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(goauth::user))
        .routes(routes!(goauth::superuser))
        .routes(routes!(goauth::acl))
        .split_for_parts();
    doc.merge(ops_doc);
    (api, ops, doc)
}

/// The OpenAPI document of the admin port.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().2
}

/// The admin router; `cors_origins` may call `/api/` from a browser, and no request body
/// may exceed `max_body_bytes`.
pub fn router(state: AdminState, cors_origins: &[String], max_body_bytes: usize) -> Router {
    let (api, ops, doc) = routes();
    let api = api
        .layer(axum::Extension(Arc::new(doc)))
        .layer(middleware::map_response(detail_for_rejections))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(cors(cors_origins));
    // The operations routes stay outside the token and CORS layers: probes, Prometheus
    // and go-auth call them without credentials.
    ops.merge(api)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(state)
}

/// This document (OpenAPI 3).
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "fleet",
    responses((status = 200, description = "the OpenAPI document", content_type = "application/json")))]
async fn openapi_json(
    axum::Extension(doc): axum::Extension<Arc<utoipa::openapi::OpenApi>>,
) -> Json<Arc<utoipa::openapi::OpenApi>> {
    Json(doc)
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

/// A JSON answer for a large body (thousands of rows): serialized once into a buffer
/// of about `size_hint` bytes rather than grown piecewise (what `Json` does).
pub(crate) fn json_sized<T: serde::Serialize>(value: &T, size_hint: usize) -> Response {
    let mut buf = Vec::with_capacity(size_hint);
    match serde_json::to_writer(&mut buf, value) {
        Ok(()) => ([(header::CONTENT_TYPE, "application/json")], buf).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "admin API answer not serializable");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
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
        (
            self.status,
            Json(Detail {
                detail: self.detail,
            }),
        )
            .into_response()
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

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, description = "{\"status\": \"ok\"}")))]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database is reachable and the broker side is up.
#[utoipa::path(get, path = "/readyz", tag = "operations", security(()),
    responses((status = 200, description = "ready, with each part's state"),
              (status = 503, description = "not ready, with each part's state")))]
async fn readyz(State(s): State<AdminState>) -> Response {
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
