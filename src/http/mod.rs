//! The HTTP port, by audience: the operations routes (`ops.rs`: probes and the
//! Prometheus scrape), mosquitto-go-auth's backend (`goauth.rs`), the routes of the
//! TonyPi backend that fleetsink answers in its place (`tonypi/`, one file per TonyPi
//! router) and fleetsink's own API (`api/`). This file assembles them into the one
//! router and holds the shared state and the small checks handlers share; handlers
//! parse the request, call `db::reads` / `db::edits`, and shape the answer (no SQL).
//!
//! API errors are `{"detail": "..."}` with a fitting status (`error.rs`); handlers read
//! input only through `extract.rs` (malformed input and NUL refused there). `/api/` needs
//! a bearer credential — `http.admin_token` or a console session token — once either is
//! configured, and each route group a role (`auth.rs`: viewer, operator, admin).
//! Every route is registered together with its OpenAPI description (utoipa
//! `#[utoipa::path]` on the handler, typed request and response structs), so
//! `/api/v1/openapi.json` cannot miss one.

mod api;
pub mod auth;
mod commands;
mod error;
mod extract;
mod goauth;
mod ops;
pub mod snapshot;
mod tonypi;

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::SecretString;
use sqlx::PgPool;

use auth::BearerAuth;
pub use error::{ApiError, Detail};
use extract::Json;
pub use tonypi::logs::LogExport;

use crate::config::ThresholdsConfig;
use crate::db::reads;
use crate::health::Health;
use crate::pipeline::source::Downlink;

/// What every handler may use.
#[derive(Clone)]
pub struct HttpState {
    pub health: Arc<Health>,
    pub prometheus: PrometheusHandle,
    pub pool: PgPool,
    pub downlink: Downlink,
    pub admin_token: Option<SecretString>,
    /// The built-in thresholds (`[alerts.thresholds]`), where no `alert_thresholds` row applies.
    pub thresholds: ThresholdsConfig,
    /// MQTT user and ACL checks (the go-auth endpoints).
    pub auth: Arc<crate::auth::Authenticator>,
    /// Networks that may call the go-auth endpoints.
    pub auth_allow: Arc<Vec<ipnet::IpNet>>,
    /// The topic of each command kind (`commands.profile`, `commands.topics`).
    pub command_topics: Arc<crate::config::CommandTopics>,
    /// How long a robot has to confirm an emergency stop.
    pub confirm_within: std::time::Duration,
    /// Sign-in: the session token secret, the console users, the login throttle.
    pub console: auth::ConsoleState,
    /// When the daemon started serving (the system status's uptime).
    pub started: std::time::Instant,
    /// The log exports' row cap and one-at-a-time permit.
    pub log_export: LogExport,
    /// Told of every alert the API resolves or deletes (the sink's alert caches).
    pub alert_edits: Arc<crate::db::writes::AlertEdits>,
    /// The fleet pages' snapshots (`snapshot.rs`), dropped after API writes to the robots.
    pub pages: Arc<snapshot::FleetPages>,
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

/// The `/api/` routes that need a credential (by role), the public ones (sign-in, this
/// document) and the operations routes (`/healthz`, `/readyz`, `/metrics`, and go-auth's
/// `/mqtt/*`, which check the caller's network instead of a token), each registered
/// together with its OpenAPI description, and the document they make.
fn routes() -> (
    Router<HttpState>,
    Router<HttpState>,
    Router<HttpState>,
    utoipa::openapi::OpenApi,
) {
    use api::{ingest_errors, metrics};
    use tonypi::{alerts, health, logs, management, pi_perf, robot_data, robots_db, root, users};
    use utoipa::OpenApi;
    use utoipa_axum::{router::OpenApiRouter, routes};
    // Each route in the group of the least role that may call it (README, "Console
    // users and roles").
    let viewer = OpenApiRouter::new()
        .routes(routes!(users::me))
        .routes(routes!(robots_db::list))
        .routes(routes!(robots_db::get))
        .routes(routes!(management::system_status))
        .routes(routes!(management::robots))
        .routes(routes!(management::get_config))
        .routes(routes!(robots_db::job_history))
        .routes(routes!(robots_db::stats))
        .routes(routes!(robots_db::overall_stats))
        .routes(routes!(robots_db::cumulative_stats))
        .routes(routes!(pi_perf::perf))
        .routes(routes!(robots_db::logs))
        .routes(routes!(health::health))
        .routes(routes!(robot_data::sensors))
        .routes(routes!(robot_data::status))
        .routes(routes!(robot_data::latest))
        .routes(routes!(robot_data::servo_data))
        .routes(routes!(robot_data::job_summary))
        .routes(routes!(api::commands::list))
        .routes(routes!(metrics::latest))
        .routes(routes!(metrics::buckets))
        .routes(routes!(metrics::names))
        .routes(routes!(ingest_errors::ingest_errors))
        .routes(routes!(alerts::list))
        .routes(routes!(alerts::stats))
        .routes(routes!(alerts::thresholds))
        .routes(routes!(alerts::defaults))
        .routes(routes!(logs::list))
        .routes(routes!(logs::categories))
        .routes(routes!(logs::levels))
        .routes(routes!(logs::stats))
        .routes(routes!(logs::commands))
        .routes(routes!(logs::errors))
        .routes(routes!(logs::export_json))
        .routes(routes!(logs::export_csv))
        .route_layer(middleware::from_fn(auth::viewer));
    let operator = OpenApiRouter::new()
        .routes(routes!(management::send))
        .routes(routes!(management::emergency_stop))
        .routes(routes!(management::resume))
        .routes(routes!(management::emergency_stop_all))
        .routes(routes!(robot_data::pass_through))
        .routes(routes!(api::commands::device))
        .routes(routes!(alerts::create))
        .routes(routes!(alerts::acknowledge))
        .routes(routes!(alerts::resolve))
        .routes(routes!(alerts::acknowledge_all))
        .routes(routes!(logs::create))
        .route_layer(middleware::from_fn(auth::operator));
    let admin = OpenApiRouter::new()
        .routes(routes!(robots_db::create))
        .routes(routes!(robots_db::update, robots_db::delete))
        .routes(routes!(management::put_config))
        .routes(routes!(alerts::delete))
        .routes(routes!(alerts::upsert_threshold))
        .routes(routes!(alerts::update_threshold, alerts::delete_threshold))
        .routes(routes!(alerts::init_defaults))
        .routes(routes!(logs::clear))
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::get, users::update, users::delete))
        .routes(routes!(api::audit::list))
        .route_layer(middleware::from_fn(auth::admin));
    // Each group's document lists the errors its extractors and role layer can answer
    // (`extract::document`); go-auth's and the probes' routes list their own.
    let documented = |group: OpenApiRouter<HttpState>, guard| {
        let (router, mut doc) = group.split_for_parts();
        extract::document(&mut doc, guard);
        (router, doc)
    };
    let mut doc = ApiDoc::openapi();
    let mut api = Router::new();
    for (router, group_doc) in [
        documented(viewer, extract::Guard::Credential),
        documented(operator, extract::Guard::Role),
        documented(admin, extract::Guard::Role),
    ] {
        api = api.merge(router);
        doc.merge(group_doc);
    }
    // Sign-in and this document need no credential.
    let (public, public_doc) = documented(
        OpenApiRouter::new()
            .routes(routes!(users::login))
            .routes(routes!(openapi_json)),
        extract::Guard::Public,
    );
    doc.merge(public_doc);
    let (ops, ops_doc) = OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(goauth::user))
        .routes(routes!(goauth::superuser))
        .routes(routes!(goauth::acl))
        .routes(routes!(root::root))
        .routes(routes!(root::api_info))
        .split_for_parts();
    doc.merge(ops_doc);
    (api, public, ops, doc)
}

/// The OpenAPI document of the HTTP port.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().3
}

/// The HTTP port's router; `cors_origins` may call it from a browser, and no request
/// body may exceed `max_body_bytes`.
pub fn router(state: HttpState, cors_origins: &[String], max_body_bytes: usize) -> Router {
    let (api, public, ops, doc) = routes();
    let api = api
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            drop_snapshots_after_writes,
        ))
        .merge(public)
        .layer(axum::Extension(Arc::new(doc)))
        .layer(middleware::map_response(error::detail_for_rejections));
    // The operations routes stay outside the auth layer: probes, Prometheus and
    // go-auth call them without credentials. CORS wraps everything, the unknown-path
    // 404, a 401, 405, 413 and a panic's 500 included, so a browser sees the real
    // status instead of a network error.
    ops.merge(api)
        .fallback(error::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(max_body_bytes))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            error::panicked,
        ))
        .layer(cors(cors_origins))
        .with_state(state)
}

/// A change made through the API to the robots shows on the fleet pages at once: a
/// successful write under `robots-db` or `management` drops their snapshots
/// (`snapshot.rs`). Other writes (alerts, logs, users) do not change those pages.
async fn drop_snapshots_after_writes(
    axum::extract::State(s): axum::extract::State<HttpState>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    let drops = changes_fleet_pages(req.method(), req.uri().path());
    let res = next.run(req).await;
    if drops && res.status().is_success() {
        s.pages.invalidate();
    }
    res
}

/// Whether a request may change what the fleet pages show: a write to the robots.
fn changes_fleet_pages(method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    let robots = ["/api/v1/robots-db/", "/api/v1/management/"];
    let write = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    write && robots.iter().any(|prefix| path.starts_with(prefix))
}

/// A JSON body computed beforehand (a fleet page's snapshot, [`json_sized`]).
fn json_bytes(body: bytes::Bytes) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// This document (OpenAPI 3).
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "fleet", security(()),
    responses((status = 200, description = "the OpenAPI document", content_type = "application/json")))]
async fn openapi_json(
    axum::Extension(doc): axum::Extension<Arc<utoipa::openapi::OpenApi>>,
) -> Json<Arc<utoipa::openapi::OpenApi>> {
    Json(doc)
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

/// The robot's key (`robots.id`), or `None` for a robot never heard of (TonyPi's
/// robot-data routes answer that with an empty result, not a 404).
pub(crate) async fn known_robot(s: &HttpState, robot_id: &str) -> Result<Option<i32>, ApiError> {
    check_robot_id(robot_id)?;
    Ok(reads::robots::key(&s.pool, robot_id).await?)
}

/// The robot's key (`robots.id`), or 404.
pub(crate) async fn robot_key(s: &HttpState, robot_id: &str) -> Result<i32, ApiError> {
    known_robot(s, robot_id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "Robot not found"))
}

/// A `limit` parameter: `default` when absent, else 1-1000 (400 otherwise).
pub(crate) fn limit(given: Option<i64>, default: i64) -> Result<i64, ApiError> {
    limit_within(given, default, 1000)
}

/// A `limit` parameter: `default` when absent, else 1-`max` (400 otherwise).
pub(crate) fn limit_within(given: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    let limit = given.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit must be between 1 and {max}"),
        ))
    }
}

/// A CSV field, quoted when it holds a comma, quote or line break.
pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A large body (thousands of rows) as JSON: serialized once into a buffer of about
/// `size_hint` bytes rather than grown piecewise (what `Json` does).
pub(crate) fn to_json_sized<T: serde::Serialize>(
    value: &T,
    size_hint: usize,
) -> Result<bytes::Bytes, ApiError> {
    let mut buf = Vec::with_capacity(size_hint);
    serde_json::to_writer(&mut buf, value).map_err(|e| {
        tracing::error!(error = %e, "admin API answer not serializable");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    })?;
    Ok(bytes::Bytes::from(buf))
}

/// A JSON answer for a large body ([`to_json_sized`]).
pub(crate) fn json_sized<T: serde::Serialize>(value: &T, size_hint: usize) -> Response {
    match to_json_sized(value, size_hint) {
        Ok(body) => json_bytes(body),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn only_writes_to_the_robots_drop_the_fleet_pages() {
        let robot = "/api/v1/robots-db/robots/tonypi_07";
        assert!(changes_fleet_pages(&Method::PUT, robot));
        assert!(changes_fleet_pages(&Method::DELETE, robot));
        assert!(changes_fleet_pages(
            &Method::POST,
            "/api/v1/robots-db/robots"
        ));
        let stop = "/api/v1/management/robots/tonypi_07/emergency-stop";
        assert!(changes_fleet_pages(&Method::POST, stop));
        assert!(!changes_fleet_pages(&Method::GET, robot));
        assert!(!changes_fleet_pages(
            &Method::GET,
            "/api/v1/management/robots"
        ));
        assert!(!changes_fleet_pages(&Method::POST, "/api/v1/logs"));
        assert!(!changes_fleet_pages(
            &Method::POST,
            "/api/v1/alerts/7/acknowledge"
        ));
        assert!(!changes_fleet_pages(&Method::POST, "/api/v1/auth/login"));
    }
}
