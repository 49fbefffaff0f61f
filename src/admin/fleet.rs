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
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sqlx::Row;
use sqlx::postgres::PgRow;
use utoipa::{IntoParams, ToSchema};

use super::{AdminState, ApiError, Detail, check_robot_id, json_sized, limit, write_log};
use crate::model::{LogRow, message_fingerprint};

/// The robots columns, with thresholds resolved against `$1..$4` (the fleet defaults).
const ROBOT_COLUMNS: &str = "id, robot_id, name, description, location, status, \
    COALESCE(battery_threshold_low, $1) AS battery_threshold_low, \
    COALESCE(battery_threshold_critical, $2) AS battery_threshold_critical, \
    COALESCE(temp_threshold_warning, $3) AS temp_threshold_warning, \
    COALESCE(temp_threshold_critical, $4) AS temp_threshold_critical, \
    settings, first_seen, last_seen, created_at, updated_at, is_active";

fn ts(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(|t| t.to_rfc3339())
}

/// A robot as TonyPi's `Robot.to_dict()` gives it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Robot {
    pub id: i32,
    pub robot_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub location: Option<String>,
    /// `online`, `offline`, `inactive`, `unknown` or what an operator set.
    pub status: String,
    pub battery_threshold_low: f64,
    pub battery_threshold_critical: f64,
    pub temp_threshold_warning: f64,
    pub temp_threshold_critical: f64,
    /// Free-form settings (a JSON object).
    pub settings: Value,
    #[schema(format = DateTime)]
    pub first_seen: Option<String>,
    #[schema(format = DateTime)]
    pub last_seen: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
    pub is_active: bool,
}

/// A `robots` row selected with [`ROBOT_COLUMNS`], read by column position (a long
/// robot list spends its time per row: no name lookups).
fn robot_json(r: &PgRow) -> Robot {
    Robot {
        id: r.get(0),
        robot_id: r.get(1),
        name: r.get(2),
        description: r.get(3),
        location: r.get(4),
        status: r.get(5),
        battery_threshold_low: r.get(6),
        battery_threshold_critical: r.get(7),
        temp_threshold_warning: r.get(8),
        temp_threshold_critical: r.get(9),
        settings: r.get(10),
        first_seen: ts(r.get(11)),
        last_seen: ts(r.get(12)),
        created_at: ts(r.get(13)),
        updated_at: ts(r.get(14)),
        is_active: r.get(15),
    }
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

async fn fetch_robot(s: &AdminState, robot_id: &str) -> Result<Option<Robot>, ApiError> {
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

/// The active robots, by robot id.
#[utoipa::path(get, path = "/api/v1/robots-db/robots", tag = "robots-db",
    responses((status = 200, body = Vec<Robot>), (status = 401, body = Detail)))]
pub async fn list(State(s): State<AdminState>) -> Result<Response, ApiError> {
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
    let robots: Vec<Robot> = rows.iter().map(robot_json).collect();
    Ok(json_sized(&robots, robots.len() * 480))
}

/// One robot, active or not.
#[utoipa::path(get, path = "/api/v1/robots-db/robots/{robot_id}", tag = "robots-db",
    params(("robot_id" = String, Path, description = "The robot's id, e.g. tonypi_07")),
    responses((status = 200, body = Robot), (status = 404, body = Detail)))]
pub async fn get(
    State(s): State<AdminState>,
    Path(robot_id): Path<String>,
) -> Result<Json<Robot>, ApiError> {
    fetch_robot(&s, &robot_id)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

#[derive(Debug, Deserialize, ToSchema)]
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

/// Registers a robot (name defaults to its id; thresholds unset follow the fleet
/// default); logs `Robot created` (category `api`).
#[utoipa::path(post, path = "/api/v1/robots-db/robots", tag = "robots-db",
    request_body = RobotCreate,
    responses((status = 200, body = Robot), (status = 400, description = "the robot exists, or a bad robot id", body = Detail)))]
pub async fn create(
    State(s): State<AdminState>,
    Json(r): Json<RobotCreate>,
) -> Result<Json<Robot>, ApiError> {
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

#[derive(Debug, Deserialize, ToSchema)]
pub struct RobotUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub location: Option<String>,
    pub status: Option<String>,
    pub battery_threshold_low: Option<f64>,
    pub battery_threshold_critical: Option<f64>,
    pub temp_threshold_warning: Option<f64>,
    pub temp_threshold_critical: Option<f64>,
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Map<String, Value>>,
    pub is_active: Option<bool>,
}

/// Changes the fields given; logs `Robot updated` (category `api`).
#[utoipa::path(put, path = "/api/v1/robots-db/robots/{robot_id}", tag = "robots-db",
    params(("robot_id" = String, Path, description = "The robot's id, e.g. tonypi_07")), request_body = RobotUpdate,
    responses((status = 200, body = Robot), (status = 404, body = Detail)))]
pub async fn update(
    State(s): State<AdminState>,
    Path(robot_id): Path<String>,
    Json(u): Json<RobotUpdate>,
) -> Result<Json<Robot>, ApiError> {
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

/// A message, as TonyPi's delete answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Message {
    pub message: String,
}

/// A soft delete (`is_active = false`); logs `Robot deleted` (category `api`).
#[utoipa::path(delete, path = "/api/v1/robots-db/robots/{robot_id}", tag = "robots-db",
    params(("robot_id" = String, Path, description = "The robot's id, e.g. tonypi_07")),
    responses((status = 200, body = Message), (status = 404, body = Detail)))]
pub async fn delete(
    State(s): State<AdminState>,
    Path(robot_id): Path<String>,
) -> Result<Json<Message>, ApiError> {
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
    Ok(Json(Message {
        message: "Robot deleted successfully".into(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// 1-1000, default 50.
    pub limit: Option<i64>,
    pub robot_id: Option<String>,
}

/// A job as TonyPi's `Job.to_dict()` gives it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Job {
    pub id: i64,
    pub robot_id: String,
    pub task_name: Option<String>,
    #[schema(format = DateTime)]
    pub start_time: Option<String>,
    #[schema(format = DateTime)]
    pub end_time: Option<String>,
    pub items_total: Option<i64>,
    pub items_done: i64,
    pub percent_complete: f64,
    /// The last scanned item (a JSON object).
    pub last_item: Option<Value>,
    /// `active`, `completed`, `cancelled` or `failed`.
    pub status: String,
    pub phase: Option<String>,
    pub success: Option<bool>,
    pub cancel_reason: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
}

/// Jobs, newest first.
#[utoipa::path(get, path = "/api/v1/robots-db/jobs/history", tag = "robots-db", params(JobsQuery),
    responses((status = 200, body = Vec<Job>), (status = 400, body = Detail)))]
pub async fn job_history(
    State(s): State<AdminState>,
    Query(q): Query<JobsQuery>,
) -> Result<Json<Vec<Job>>, ApiError> {
    let limit = limit(q.limit, 50)?;
    if let Some(r) = &q.robot_id {
        check_robot_id(r)?;
    }
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
            .map(|r| Job {
                id: r.get("id"),
                robot_id: r.get("robot_id"),
                task_name: r.get("task_name"),
                start_time: ts(r.get("start_time")),
                end_time: ts(r.get("end_time")),
                items_total: r.get("items_total"),
                items_done: r.get::<Option<i64>, _>("items_done").unwrap_or(0),
                percent_complete: r.get::<Option<f64>, _>("percent_complete").unwrap_or(0.0),
                last_item: r.get("last_item"),
                status: r.get("status"),
                phase: r.get("phase"),
                success: r.get("success"),
                cancel_reason: r.get("cancel_reason"),
                created_at: ts(r.get("created_at")),
                updated_at: ts(r.get("updated_at")),
            })
            .collect(),
    ))
}

/// TonyPi's fleet statistics.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    pub total_robots: i64,
    pub online_robots: i64,
    pub offline_robots: i64,
    pub total_jobs: i64,
    pub active_jobs: i64,
    /// Completed since midnight UTC.
    pub completed_jobs_today: i64,
}

/// Fleet statistics: active robots, online robots, jobs.
#[utoipa::path(get, path = "/api/v1/robots-db/stats", tag = "robots-db",
    responses((status = 200, body = Stats)))]
pub async fn stats(State(s): State<AdminState>) -> Result<Json<Stats>, ApiError> {
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
    Ok(Json(Stats {
        total_robots: total,
        online_robots: online,
        offline_robots: total - online,
        total_jobs: r.get("total_jobs"),
        active_jobs: r.get("active_jobs"),
        completed_jobs_today: r.get("completed_jobs_today"),
    }))
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// 1-1000, default 100.
    pub limit: Option<i64>,
    /// DEBUG, INFO, WARNING, ERROR or CRITICAL (any case).
    pub level: Option<String>,
    /// e.g. `robot`, `alert`, `job`, `scan`, `command`, `emergency`, `api`.
    pub category: Option<String>,
    pub robot_id: Option<String>,
    /// Only rows at or after / before this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// The `X-Next-Cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A log row as TonyPi's `SystemLog.to_dict()` gives it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogEntry {
    pub id: i64,
    pub level: String,
    pub category: String,
    pub message: String,
    pub robot_id: Option<String>,
    pub details: Option<Value>,
    #[schema(format = DateTime)]
    pub timestamp: Option<String>,
}

/// Logs newest first, as TonyPi answers them (an array). fleetsink adds `from`/`to` and
/// keyset pagination: when more rows follow, the `X-Next-Cursor` header holds the
/// value to pass as `cursor`.
#[utoipa::path(get, path = "/api/v1/robots-db/logs", tag = "robots-db", params(LogsQuery),
    responses(
        (status = 200, body = Vec<LogEntry>,
         headers(("x-next-cursor" = String, description = "present when more rows follow: pass it as `cursor`"))),
        (status = 400, body = Detail)))]
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
    let page: Vec<LogEntry> = rows
        .iter()
        .take(limit as usize)
        .map(|r| LogEntry {
            id: r.get("id"),
            level: r.get("level"),
            category: r.get("category"),
            message: r.get("message"),
            robot_id: r.get("robot_id"),
            details: r.get("details"),
            timestamp: ts(r.get("ts")),
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
