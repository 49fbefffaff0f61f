//! Read routes over the data itself: TonyPi's `/api/v1/health`, the latest value of
//! each of a robot's metrics, the metric names seen (for dashboards' variable pickers),
//! and the messages that were rejected (`ingest_errors`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row;

use super::{AdminState, ApiError, check_robot_id, limit};

/// `GET /api/v1/health`: TonyPi's shape (status, message, timestamp, services), with
/// each service's real state; 503 when one is down.
pub async fn health(State(s): State<AdminState>) -> (StatusCode, Json<Value>) {
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
        Json(json!({
            "status": state(healthy),
            "message": if healthy { "fleetsink is running" } else { "fleetsink is degraded" },
            "timestamp": Utc::now().to_rfc3339(),
            "services": {
                "api": "healthy",
                "database": state(r.database_reachable),
                "mqtt": state(r.broker_connected),
            },
        })),
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

/// The robot's `robots.id`, or 404.
pub(super) async fn robot_key(s: &AdminState, robot_id: &str) -> Result<i32, ApiError> {
    check_robot_id(robot_id)?;
    sqlx::query_scalar("SELECT id FROM robots WHERE robot_id = $1")
        .bind(robot_id)
        .fetch_optional(&s.pool)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "Robot not found"))
}

/// `GET /api/v1/robots/{robot_id}/latest`: every metric of the robot with its latest
/// value and time.
pub async fn latest(
    State(s): State<AdminState>,
    Path(robot_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let robot = robot_key(&s, &robot_id).await?;
    let metrics: Vec<Value> = latest_values(&s, robot, None)
        .await?
        .into_iter()
        .map(|l| json!({"name": l.name, "unit": l.unit, "value": l.value, "time": l.ts.to_rfc3339()}))
        .collect();
    Ok(Json(json!({ "robot_id": robot_id, "metrics": metrics })))
}

#[derive(Debug, Deserialize)]
pub struct NamesQuery {
    pub robot_id: Option<String>,
}

/// `GET /api/v1/metrics/names?robot_id=`: the metric names seen (with their unit).
pub async fn names(
    State(s): State<AdminState>,
    Query(q): Query<NamesQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
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
            .map(|r| json!({"name": r.get::<String, _>("name"), "unit": r.get::<Option<String>, _>("unit")}))
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
pub struct ErrorsQuery {
    pub limit: Option<i64>,
    pub reason: Option<String>,
}

/// `GET /api/v1/ingest-errors?limit=&reason=`: what was rejected and why, newest first,
/// with a printable preview of the payload (its first 200 bytes, invalid UTF-8 replaced).
pub async fn ingest_errors(
    State(s): State<AdminState>,
    Query(q): Query<ErrorsQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
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
                json!({
                    "topic": r.get::<String, _>("topic"),
                    "reason": r.get::<String, _>("reason"),
                    "detail": r.get::<String, _>("detail"),
                    "client_id": r.get::<Option<String>, _>("client_id"),
                    "received_at": r.get::<DateTime<Utc>, _>("received_at").to_rfc3339(),
                    "payload_size": r.get::<i32, _>("payload_size"),
                    "payload_preview": String::from_utf8_lossy(&preview),
                })
            })
            .collect(),
    ))
}
