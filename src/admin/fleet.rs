//! The TonyPi backend's `robots-db` router (`backend/routers/robots_db.py`), answered
//! from fleetsink's tables with the same paths, parameters, defaults, status codes and
//! field names, so the TonyPi web UI can point at fleetsink: robots (list, get, create,
//! update, soft delete), job history and fleet statistics.
//!
//! Thresholds are reported as the robot's own value or, when it has none, the
//! fleet-wide default (`[alerts.thresholds]`). Timestamps are RFC 3339 with offset.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{AdminState, ApiError, check_robot_id, limit, write_log};
use crate::model::{LogRow, message_fingerprint};

/// The robots columns, with thresholds resolved against `$1..$4` (the fleet defaults).
const ROBOT_COLUMNS: &str = "id, robot_id, name, description, location, status, \
    COALESCE(battery_threshold_low, $1) AS battery_threshold_low, \
    COALESCE(battery_threshold_critical, $2) AS battery_threshold_critical, \
    COALESCE(temp_threshold_warning, $3) AS temp_threshold_warning, \
    COALESCE(temp_threshold_critical, $4) AS temp_threshold_critical, \
    settings, first_seen, last_seen, created_at, updated_at, is_active";

fn ts(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| json!(t.to_rfc3339()))
}

fn robot_json(r: &PgRow) -> Value {
    json!({
        "id": r.get::<i32, _>("id"),
        "robot_id": r.get::<String, _>("robot_id"),
        "name": r.get::<Option<String>, _>("name"),
        "description": r.get::<Option<String>, _>("description"),
        "location": r.get::<Option<String>, _>("location"),
        "status": r.get::<String, _>("status"),
        "battery_threshold_low": r.get::<f64, _>("battery_threshold_low"),
        "battery_threshold_critical": r.get::<f64, _>("battery_threshold_critical"),
        "temp_threshold_warning": r.get::<f64, _>("temp_threshold_warning"),
        "temp_threshold_critical": r.get::<f64, _>("temp_threshold_critical"),
        "settings": r.get::<Value, _>("settings"),
        "first_seen": ts(r.get("first_seen")),
        "last_seen": ts(r.get("last_seen")),
        "created_at": ts(r.get("created_at")),
        "updated_at": ts(r.get("updated_at")),
        "is_active": r.get::<bool, _>("is_active"),
    })
}

fn defaults(s: &AdminState) -> [f64; 4] {
    let t = &s.thresholds;
    [
        t.battery_low,
        t.battery_critical,
        t.temperature_warning,
        t.temperature_critical,
    ]
}

async fn fetch_robot(s: &AdminState, robot_id: &str) -> Result<Option<Value>, ApiError> {
    let [a, b, c, d] = defaults(s);
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ROBOT_COLUMNS} FROM robots WHERE robot_id = $5"
    )))
    .bind(a)
    .bind(b)
    .bind(c)
    .bind(d)
    .bind(robot_id)
    .fetch_optional(&s.pool)
    .await?;
    Ok(row.as_ref().map(robot_json))
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Robot not found")
}

/// `GET /api/v1/robots-db/robots`: the active robots.
pub async fn list(State(s): State<AdminState>) -> Result<Json<Vec<Value>>, ApiError> {
    let [a, b, c, d] = defaults(&s);
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ROBOT_COLUMNS} FROM robots WHERE is_active ORDER BY robot_id"
    )))
    .bind(a)
    .bind(b)
    .bind(c)
    .bind(d)
    .fetch_all(&s.pool)
    .await?;
    Ok(Json(rows.iter().map(robot_json).collect()))
}

/// `GET /api/v1/robots-db/robots/{robot_id}`.
pub async fn get(
    State(s): State<AdminState>,
    Path(robot_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    fetch_robot(&s, &robot_id)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

#[derive(Debug, Deserialize)]
pub struct RobotCreate {
    pub robot_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub location: Option<String>,
    pub battery_threshold_low: Option<f64>,
    pub battery_threshold_critical: Option<f64>,
    pub temp_threshold_warning: Option<f64>,
    pub temp_threshold_critical: Option<f64>,
}

/// `POST /api/v1/robots-db/robots`: 400 when the robot exists.
pub async fn create(
    State(s): State<AdminState>,
    Json(r): Json<RobotCreate>,
) -> Result<Json<Value>, ApiError> {
    check_robot_id(&r.robot_id)?;
    let inserted = sqlx::query(
        "INSERT INTO robots (robot_id, name, description, location, battery_threshold_low, \
             battery_threshold_critical, temp_threshold_warning, temp_threshold_critical, status) \
         VALUES ($1, COALESCE($2, $1), $3, $4, $5, $6, $7, $8, 'offline') \
         ON CONFLICT (robot_id) DO NOTHING",
    )
    .bind(&r.robot_id)
    .bind(&r.name)
    .bind(&r.description)
    .bind(&r.location)
    .bind(r.battery_threshold_low)
    .bind(r.battery_threshold_critical)
    .bind(r.temp_threshold_warning)
    .bind(r.temp_threshold_critical)
    .execute(&s.pool)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Robot already exists",
        ));
    }
    api_log(
        &s,
        &r.robot_id,
        format!("Robot created: {}", r.robot_id),
        None,
    )
    .await?;
    fetch_robot(&s, &r.robot_id)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

#[derive(Debug, Deserialize)]
pub struct RobotUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub location: Option<String>,
    pub status: Option<String>,
    pub battery_threshold_low: Option<f64>,
    pub battery_threshold_critical: Option<f64>,
    pub temp_threshold_warning: Option<f64>,
    pub temp_threshold_critical: Option<f64>,
    pub settings: Option<Map<String, Value>>,
    pub is_active: Option<bool>,
}

/// `PUT /api/v1/robots-db/robots/{robot_id}`: the fields given change.
pub async fn update(
    State(s): State<AdminState>,
    Path(robot_id): Path<String>,
    Json(u): Json<RobotUpdate>,
) -> Result<Json<Value>, ApiError> {
    let changed = sqlx::query(
        "UPDATE robots SET name = COALESCE($2, name), description = COALESCE($3, description), \
             location = COALESCE($4, location), status = COALESCE($5, status), \
             battery_threshold_low = COALESCE($6, battery_threshold_low), \
             battery_threshold_critical = COALESCE($7, battery_threshold_critical), \
             temp_threshold_warning = COALESCE($8, temp_threshold_warning), \
             temp_threshold_critical = COALESCE($9, temp_threshold_critical), \
             settings = COALESCE($10, settings), is_active = COALESCE($11, is_active), \
             updated_at = now() \
         WHERE robot_id = $1",
    )
    .bind(&robot_id)
    .bind(&u.name)
    .bind(&u.description)
    .bind(&u.location)
    .bind(&u.status)
    .bind(u.battery_threshold_low)
    .bind(u.battery_threshold_critical)
    .bind(u.temp_threshold_warning)
    .bind(u.temp_threshold_critical)
    .bind(u.settings.clone().map(Value::Object))
    .bind(u.is_active)
    .execute(&s.pool)
    .await?
    .rows_affected();
    if changed == 0 {
        return Err(not_found());
    }
    let details = json!({
        "name": u.name, "description": u.description, "location": u.location,
        "status": u.status, "is_active": u.is_active,
    });
    api_log(
        &s,
        &robot_id,
        format!("Robot updated: {robot_id}"),
        Some(details),
    )
    .await?;
    fetch_robot(&s, &robot_id)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

/// `DELETE /api/v1/robots-db/robots/{robot_id}`: a soft delete (`is_active = false`).
pub async fn delete(
    State(s): State<AdminState>,
    Path(robot_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let changed =
        sqlx::query("UPDATE robots SET is_active = false, updated_at = now() WHERE robot_id = $1")
            .bind(&robot_id)
            .execute(&s.pool)
            .await?
            .rows_affected();
    if changed == 0 {
        return Err(not_found());
    }
    api_log(&s, &robot_id, format!("Robot deleted: {robot_id}"), None).await?;
    Ok(Json(json!({ "message": "Robot deleted successfully" })))
}

#[derive(Debug, Deserialize)]
pub struct JobsQuery {
    pub limit: Option<i64>,
    pub robot_id: Option<String>,
}

/// `GET /api/v1/robots-db/jobs/history?limit=50&robot_id=`: newest first.
pub async fn job_history(
    State(s): State<AdminState>,
    Query(q): Query<JobsQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let limit = limit(q.limit, 50)?;
    let rows = sqlx::query(
        "SELECT id, robot_id, task_name, status, phase, start_time, end_time, items_total, \
                items_done, percent_complete, last_item, success, cancel_reason, created_at, updated_at \
         FROM jobs WHERE ($1::text IS NULL OR robot_id = $1) \
         ORDER BY created_at DESC, id DESC LIMIT $2",
    )
    .bind(&q.robot_id)
    .bind(limit)
    .fetch_all(&s.pool)
    .await?;
    Ok(Json(
        rows.iter()
            .map(|r| {
                json!({
                    "id": r.get::<i64, _>("id"),
                    "robot_id": r.get::<String, _>("robot_id"),
                    "task_name": r.get::<Option<String>, _>("task_name"),
                    "start_time": ts(r.get("start_time")),
                    "end_time": ts(r.get("end_time")),
                    "items_total": r.get::<Option<i64>, _>("items_total"),
                    "items_done": r.get::<Option<i64>, _>("items_done").unwrap_or(0),
                    "percent_complete": r.get::<Option<f64>, _>("percent_complete").unwrap_or(0.0),
                    "last_item": r.get::<Option<Value>, _>("last_item"),
                    "status": r.get::<String, _>("status"),
                    "phase": r.get::<Option<String>, _>("phase"),
                    "success": r.get::<Option<bool>, _>("success"),
                    "cancel_reason": r.get::<Option<String>, _>("cancel_reason"),
                    "created_at": ts(r.get("created_at")),
                    "updated_at": ts(r.get("updated_at")),
                })
            })
            .collect(),
    ))
}

/// `GET /api/v1/robots-db/stats`.
pub async fn stats(State(s): State<AdminState>) -> Result<Json<Value>, ApiError> {
    let r = sqlx::query(
        "SELECT (SELECT count(*) FROM robots WHERE is_active) AS total_robots, \
                (SELECT count(*) FROM robots WHERE is_active AND status = 'online') AS online_robots, \
                (SELECT count(*) FROM jobs) AS total_jobs, \
                (SELECT count(*) FROM jobs WHERE status = 'active') AS active_jobs, \
                (SELECT count(*) FROM jobs WHERE status = 'completed' \
                    AND end_time >= date_trunc('day', now())) AS completed_jobs_today",
    )
    .fetch_one(&s.pool)
    .await?;
    let total: i64 = r.get("total_robots");
    let online: i64 = r.get("online_robots");
    Ok(Json(json!({
        "total_robots": total,
        "online_robots": online,
        "offline_robots": total - online,
        "total_jobs": r.get::<i64, _>("total_jobs"),
        "active_jobs": r.get::<i64, _>("active_jobs"),
        "completed_jobs_today": r.get::<i64, _>("completed_jobs_today"),
    })))
}

/// A `logs` row (category `api`) for a change made through the API, as TonyPi writes.
async fn api_log(
    s: &AdminState,
    robot_id: &str,
    message: String,
    details: Option<Value>,
) -> Result<(), ApiError> {
    let now = Utc::now();
    let row = LogRow {
        robot_id: Some(robot_id.to_string()),
        ts: now,
        level: "INFO".into(),
        category: "api".into(),
        source: Some("fleetsink".into()),
        dedup_key: message_fingerprint(&message, now.to_rfc3339().as_bytes()),
        message,
        details,
    };
    write_log(s, row).await
}

#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    pub limit: Option<i64>,
    pub level: Option<String>,
    pub category: Option<String>,
    pub robot_id: Option<String>,
    /// Only rows at or after / before this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// The `X-Next-Cursor` of the previous page.
    pub cursor: Option<String>,
}

/// `GET /api/v1/robots-db/logs?limit=100&level=&category=&robot_id=`, newest first, as
/// TonyPi answers it (an array). fleetsink adds `from`/`to` and keyset pagination: when
/// more rows follow, the `X-Next-Cursor` header holds the value to pass as `cursor`.
pub async fn logs(
    State(s): State<AdminState>,
    Query(q): Query<LogsQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let limit = limit(q.limit, 100)?;
    let after = match &q.cursor {
        None => None,
        Some(c) => Some(parse_cursor(c).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "cursor is not one this API returned (X-Next-Cursor)",
            )
        })?),
    };
    let rows = sqlx::query(
        "SELECT id, level, category, message, robot_id, details, ts FROM logs \
         WHERE ($1::text IS NULL OR level = upper($1)) \
           AND ($2::text IS NULL OR category = $2) \
           AND ($3::text IS NULL OR robot_id = $3) \
           AND ($4::timestamptz IS NULL OR ts >= $4) \
           AND ($5::timestamptz IS NULL OR ts < $5) \
           AND ($6::timestamptz IS NULL OR (ts, id) < ($6, $7)) \
         ORDER BY ts DESC, id DESC LIMIT $8",
    )
    .bind(&q.level)
    .bind(&q.category)
    .bind(&q.robot_id)
    .bind(q.from)
    .bind(q.to)
    .bind(after.map(|(t, _)| t))
    .bind(after.map(|(_, id)| id))
    .bind(limit + 1)
    .fetch_all(&s.pool)
    .await?;
    let more = rows.len() as i64 > limit;
    let page: Vec<Value> = rows
        .iter()
        .take(limit as usize)
        .map(|r| {
            json!({
                "id": r.get::<i64, _>("id"),
                "level": r.get::<String, _>("level"),
                "category": r.get::<String, _>("category"),
                "message": r.get::<String, _>("message"),
                "robot_id": r.get::<Option<String>, _>("robot_id"),
                "details": r.get::<Option<Value>, _>("details"),
                "timestamp": ts(r.get("ts")),
            })
        })
        .collect();
    let next = more
        .then(|| rows.get(limit as usize - 1))
        .flatten()
        .map(|r| {
            let t: DateTime<Utc> = r.get("ts");
            format!("{}_{}", t.timestamp_micros(), r.get::<i64, _>("id"))
        });
    let mut resp = Json(page).into_response();
    if let Some(next) = next
        && let Ok(v) = axum::http::HeaderValue::from_str(&next)
    {
        resp.headers_mut().insert("x-next-cursor", v);
    }
    Ok(resp)
}

/// A cursor is `<ts in µs>_<id>` of the last row of the previous page.
fn parse_cursor(c: &str) -> Option<(DateTime<Utc>, i64)> {
    let (micros, id) = c.split_once('_')?;
    Some((
        DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        id.parse().ok()?,
    ))
}
