//! Read routes over the data itself: TonyPi's `/api/v1/health`, the latest value of
//! each of a robot's metrics, the metric names seen (for dashboards' variable pickers),
//! and the messages that were rejected (`ingest_errors`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::{IntoParams, ToSchema};

use super::{AdminState, ApiError, Detail, check_robot_id, limit};

/// TonyPi's health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiHealth {
    /// `healthy` or `unhealthy`.
    pub status: &'static str,
    pub message: &'static str,
    #[schema(format = DateTime)]
    pub timestamp: String,
    pub services: Services,
}

/// Each service's state: `healthy` or `unhealthy`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Services {
    pub api: &'static str,
    pub database: &'static str,
    pub mqtt: &'static str,
}

/// TonyPi's health shape with each service's real state; 503 when one is down.
#[utoipa::path(get, path = "/api/v1/health", tag = "fleet",
    responses((status = 200, body = ApiHealth), (status = 503, description = "degraded", body = ApiHealth)))]
pub async fn health(State(s): State<AdminState>) -> (StatusCode, Json<ApiHealth>) {
    let r = s.health.readiness();
    let state = |up: bool| if up { "healthy" } else { "unhealthy" };
    let healthy = r.database_reachable && r.broker_connected;
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(ApiHealth {
            status: state(healthy),
            message: if healthy {
                "fleetsink is running"
            } else {
                "fleetsink is degraded"
            },
            timestamp: Utc::now().to_rfc3339(),
            services: Services {
                api: "healthy",
                database: state(r.database_reachable),
                mqtt: state(r.broker_connected),
            },
        }),
    )
}

/// One metric's latest value.
pub(super) struct Latest {
    pub name: String,
    pub unit: Option<String>,
    pub ts: DateTime<Utc>,
    pub value: f64,
}

/// The latest value of each metric of robot `robot` (its `robots.id`), optionally only
/// from rows at or after `since`: a primary-key read of `metric_latest`, the newest
/// row of each of the robot's metric sets, kept by the batch that writes `metrics`.
pub(super) async fn latest_values(
    s: &AdminState,
    robot: i32,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<Latest>, ApiError> {
    let rows = sqlx::query(
        "SELECT DISTINCT ON (n.name) n.name, NULLIF(n.unit, '') AS unit, l.ts, v.value \
         FROM metric_latest l \
         JOIN metric_sets s ON s.id = l.set_id \
         CROSS JOIN LATERAL unnest(s.name_ids, l.vals) AS v(name_id, value) \
         JOIN metric_names n ON n.id = v.name_id \
         WHERE l.robot = $1 AND ($2::timestamptz IS NULL OR l.ts >= $2) \
         ORDER BY n.name, l.ts DESC",
    )
    .bind(robot)
    .bind(since)
    .fetch_all(&s.pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| Latest {
            name: r.get("name"),
            unit: r.get("unit"),
            ts: r.get("ts"),
            value: r.get("value"),
        })
        .collect())
}

/// The robot's `robots.id`, or `None` for a robot never heard of (TonyPi's robot-data
/// routes answer that with an empty result, not a 404).
pub(super) async fn known_robot(s: &AdminState, robot_id: &str) -> Result<Option<i32>, ApiError> {
    check_robot_id(robot_id)?;
    Ok(
        sqlx::query_scalar("SELECT id FROM robots WHERE robot_id = $1")
            .bind(robot_id)
            .fetch_optional(&s.pool)
            .await?,
    )
}

/// The robot's `robots.id`, or 404.
pub(super) async fn robot_key(s: &AdminState, robot_id: &str) -> Result<i32, ApiError> {
    known_robot(s, robot_id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "Robot not found"))
}

/// A metric's latest value.
#[derive(Debug, Serialize, ToSchema)]
pub struct LatestValue {
    pub name: String,
    pub unit: Option<String>,
    pub value: f64,
    #[schema(format = DateTime)]
    pub time: String,
}

/// A robot's latest values.
#[derive(Debug, Serialize, ToSchema)]
pub struct RobotLatest {
    pub robot_id: String,
    /// By name.
    pub metrics: Vec<LatestValue>,
}

/// Every metric of the robot with its latest value and time.
#[utoipa::path(get, path = "/api/v1/robots/{robot_id}/latest", tag = "metrics",
    params(("robot_id" = String, Path, description = "The robot's id")),
    responses((status = 200, body = RobotLatest), (status = 404, body = Detail)))]
pub async fn latest(
    State(s): State<AdminState>,
    Path(robot_id): Path<String>,
) -> Result<Json<RobotLatest>, ApiError> {
    let robot = robot_key(&s, &robot_id).await?;
    let metrics = latest_values(&s, robot, None)
        .await?
        .into_iter()
        .map(|l| LatestValue {
            name: l.name,
            unit: l.unit,
            value: l.value,
            time: l.ts.to_rfc3339(),
        })
        .collect();
    Ok(Json(RobotLatest { robot_id, metrics }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NamesQuery {
    /// Only the names this robot has sent.
    pub robot_id: Option<String>,
}

/// A metric name and its unit.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetricName {
    pub name: String,
    pub unit: Option<String>,
}

/// The metric names seen, with their unit (for dashboards' variable pickers).
#[utoipa::path(get, path = "/api/v1/metrics/names", tag = "metrics", params(NamesQuery),
    responses((status = 200, body = Vec<MetricName>), (status = 400, body = Detail)))]
pub async fn names(
    State(s): State<AdminState>,
    Query(q): Query<NamesQuery>,
) -> Result<Json<Vec<MetricName>>, ApiError> {
    let rows = match &q.robot_id {
        None => {
            sqlx::query(
                "SELECT name, NULLIF(unit, '') AS unit FROM metric_names ORDER BY name, unit",
            )
            .fetch_all(&s.pool)
            .await?
        }
        Some(robot_id) => {
            check_robot_id(robot_id)?;
            sqlx::query(
                "SELECT DISTINCT n.name, NULLIF(n.unit, '') AS unit \
                 FROM (SELECT DISTINCT set_id FROM metrics m JOIN robots r ON r.id = m.robot \
                       WHERE r.robot_id = $1) u \
                 JOIN metric_sets s ON s.id = u.set_id \
                 JOIN metric_names n ON n.id = ANY (s.name_ids) ORDER BY 1, 2",
            )
            .bind(robot_id)
            .fetch_all(&s.pool)
            .await?
        }
    };
    Ok(Json(
        rows.iter()
            .map(|r| MetricName {
                name: r.get("name"),
                unit: r.get("unit"),
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ErrorsQuery {
    /// 1-1000, default 100.
    pub limit: Option<i64>,
    /// `too_large`, `invalid_utf8`, `not_json`, `not_object`, `missing_robot_id`,
    /// `invalid_robot_id`, `invalid_value`, `no_route` or `rejected_by_database`.
    pub reason: Option<String>,
}

/// A rejected message.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestError {
    pub topic: String,
    pub reason: String,
    /// What was wrong, for a person.
    pub detail: String,
    pub client_id: Option<String>,
    #[schema(format = DateTime)]
    pub received_at: String,
    pub payload_size: i32,
    /// The payload's first 200 bytes, invalid UTF-8 replaced.
    pub payload_preview: String,
}

/// What was rejected and why, newest first.
#[utoipa::path(get, path = "/api/v1/ingest-errors", tag = "fleet", params(ErrorsQuery),
    responses((status = 200, body = Vec<IngestError>), (status = 400, body = Detail)))]
pub async fn ingest_errors(
    State(s): State<AdminState>,
    Query(q): Query<ErrorsQuery>,
) -> Result<Json<Vec<IngestError>>, ApiError> {
    let limit = limit(q.limit, 100)?;
    let rows = sqlx::query(
        "SELECT topic, reason, detail, client_id, received_at, payload_size, \
                substring(payload FROM 1 FOR 200) AS preview \
         FROM ingest_errors WHERE ($1::text IS NULL OR reason = $1) \
         ORDER BY received_at DESC LIMIT $2",
    )
    .bind(&q.reason)
    .bind(limit)
    .fetch_all(&s.pool)
    .await?;
    Ok(Json(
        rows.iter()
            .map(|r| {
                let preview: Vec<u8> = r.get("preview");
                IngestError {
                    topic: r.get("topic"),
                    reason: r.get("reason"),
                    detail: r.get("detail"),
                    client_id: r.get("client_id"),
                    received_at: r.get::<DateTime<Utc>, _>("received_at").to_rfc3339(),
                    payload_size: r.get("payload_size"),
                    payload_preview: String::from_utf8_lossy(&preview).into_owned(),
                }
            })
            .collect(),
    ))
}
