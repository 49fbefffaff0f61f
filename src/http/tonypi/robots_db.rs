//! The TonyPi backend's `robots-db` router (`backend/routers/robots_db.py`), answered
//! from fleetsink's tables with the same paths, parameters, defaults, status codes and
//! field names, so the TonyPi web UI can point at fleetsink: robots (list, get, create,
//! update, soft delete), job history, job totals, fleet statistics and logs.
//!
//! The threshold fields are the robot's battery and temperature rows of
//! `alert_thresholds` (the store the alerts routes edit too): reported as the robot's
//! own row, else the fleet-wide row, else the built-in default (`[alerts.thresholds]`);
//! writing one writes the robot's own row. Timestamps are RFC 3339 with offset.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::audit::Actor;
use crate::db::edits::robots::{NewRobot, RobotChanges};
use crate::db::reads::jobs::JobRow;
use crate::db::reads::logs::LogFilter;
use crate::db::reads::robots::RobotRow;
use crate::db::{edits, reads};
use crate::http::extract::{Json, Path, Query};
use crate::http::{ApiError, Detail, HttpState, check_robot_id, json_sized, limit};

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

impl From<RobotRow> for Robot {
    fn from(r: RobotRow) -> Robot {
        Robot {
            id: r.id,
            robot_id: r.robot_id,
            name: r.name,
            description: r.description,
            location: r.location,
            status: r.status,
            battery_threshold_low: r.battery_threshold_low,
            battery_threshold_critical: r.battery_threshold_critical,
            temp_threshold_warning: r.temp_threshold_warning,
            temp_threshold_critical: r.temp_threshold_critical,
            settings: r.settings,
            first_seen: ts(r.first_seen),
            last_seen: ts(r.last_seen),
            created_at: ts(r.created_at),
            updated_at: ts(r.updated_at),
            is_active: r.is_active,
        }
    }
}

/// The robot as the routes answer it, or 404.
async fn fetch_robot(s: &HttpState, robot_id: &str) -> Result<Json<Robot>, ApiError> {
    reads::robots::get(&s.pool, &s.thresholds, robot_id)
        .await?
        .map(|r| Json(r.into()))
        .ok_or_else(not_found)
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Robot not found")
}

/// The active robots, by robot id.
#[utoipa::path(get, path = "/api/v1/robots-db/robots", tag = "robots-db",
    responses((status = 200, body = Vec<Robot>), (status = 401, body = Detail)))]
pub async fn list(State(s): State<HttpState>) -> Result<Response, ApiError> {
    let rows = reads::robots::active(&s.pool, &s.thresholds).await?;
    let robots: Vec<Robot> = rows.into_iter().map(Robot::from).collect();
    Ok(json_sized(&robots, robots.len() * 480))
}

/// One robot, active or not.
#[utoipa::path(get, path = "/api/v1/robots-db/robots/{robot_id}", tag = "robots-db",
    params(("robot_id" = String, Path, description = "The robot's id, e.g. tonypi_07")),
    responses((status = 200, body = Robot), (status = 404, body = Detail)))]
pub async fn get(
    State(s): State<HttpState>,
    Path(robot_id): Path<String>,
) -> Result<Json<Robot>, ApiError> {
    fetch_robot(&s, &robot_id).await
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
/// default); logs `Robot created` (category `audit`, with who and from where).
#[utoipa::path(post, path = "/api/v1/robots-db/robots", tag = "robots-db",
    request_body = RobotCreate,
    responses((status = 200, body = Robot), (status = 400, description = "the robot exists, a bad robot id, or a warning threshold past its critical one", body = Detail)))]
pub async fn create(
    State(s): State<HttpState>,
    actor: Actor,
    Json(r): Json<RobotCreate>,
) -> Result<Json<Robot>, ApiError> {
    check_robot_id(&r.robot_id)?;
    let new = NewRobot {
        robot_id: &r.robot_id,
        name: r.name.as_deref(),
        description: r.description.as_deref(),
        location: r.location.as_deref(),
        battery_threshold_low: r.battery_threshold_low,
        battery_threshold_critical: r.battery_threshold_critical,
        temp_threshold_warning: r.temp_threshold_warning,
        temp_threshold_critical: r.temp_threshold_critical,
    };
    if !edits::robots::create(&s.pool, &actor, &s.thresholds, &new)
        .await
        .map_err(super::alerts::threshold_error)?
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "Robot already exists",
        ));
    }
    fetch_robot(&s, &r.robot_id).await
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

/// Changes the fields given; logs `Robot updated` (category `audit`).
#[utoipa::path(put, path = "/api/v1/robots-db/robots/{robot_id}", tag = "robots-db",
    params(("robot_id" = String, Path, description = "The robot's id, e.g. tonypi_07")), request_body = RobotUpdate,
    responses((status = 200, body = Robot),
        (status = 400, description = "a warning threshold past its critical one", body = Detail),
        (status = 404, body = Detail)))]
pub async fn update(
    State(s): State<HttpState>,
    actor: Actor,
    Path(robot_id): Path<String>,
    Json(u): Json<RobotUpdate>,
) -> Result<Json<Robot>, ApiError> {
    let changes = RobotChanges {
        name: u.name.as_deref(),
        description: u.description.as_deref(),
        location: u.location.as_deref(),
        status: u.status.as_deref(),
        battery_threshold_low: u.battery_threshold_low,
        battery_threshold_critical: u.battery_threshold_critical,
        temp_threshold_warning: u.temp_threshold_warning,
        temp_threshold_critical: u.temp_threshold_critical,
        settings: u.settings.clone().map(Value::Object),
        is_active: u.is_active,
    };
    if !edits::robots::update(&s.pool, &actor, &s.thresholds, &robot_id, &changes)
        .await
        .map_err(super::alerts::threshold_error)?
    {
        return Err(not_found());
    }
    fetch_robot(&s, &robot_id).await
}

/// A message, as TonyPi's delete answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Message {
    pub message: String,
}

/// A soft delete (`is_active = false`); logs `Robot deleted` (category `audit`).
#[utoipa::path(delete, path = "/api/v1/robots-db/robots/{robot_id}", tag = "robots-db",
    params(("robot_id" = String, Path, description = "The robot's id, e.g. tonypi_07")),
    responses((status = 200, body = Message), (status = 404, body = Detail)))]
pub async fn delete(
    State(s): State<HttpState>,
    actor: Actor,
    Path(robot_id): Path<String>,
) -> Result<Json<Message>, ApiError> {
    if !edits::robots::deactivate(&s.pool, &actor, &robot_id).await? {
        return Err(not_found());
    }
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
    State(s): State<HttpState>,
    Query(q): Query<JobsQuery>,
) -> Result<Json<Vec<Job>>, ApiError> {
    let limit = limit(q.limit, 50)?;
    if let Some(r) = &q.robot_id {
        check_robot_id(r)?;
    }
    let rows = reads::jobs::history(&s.pool, q.robot_id.as_deref(), limit).await?;
    Ok(Json(rows.into_iter().map(Job::from).collect()))
}

impl From<JobRow> for Job {
    fn from(j: JobRow) -> Job {
        Job {
            id: j.id,
            robot_id: j.robot_id,
            task_name: j.task_name,
            start_time: ts(j.start_time),
            end_time: ts(j.end_time),
            items_total: j.items_total,
            items_done: j.items_done.unwrap_or(0),
            percent_complete: j.percent_complete.unwrap_or(0.0),
            last_item: j.last_item,
            status: j.status,
            phase: j.phase,
            success: j.success,
            cancel_reason: j.cancel_reason,
            created_at: ts(j.created_at),
            updated_at: ts(j.updated_at),
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Totals over every job of every robot (TonyPi's dashboard cards).
#[derive(Debug, Serialize, ToSchema)]
pub struct OverallJobStats {
    pub total_robots_with_jobs: i64,
    pub total_jobs: i64,
    pub active_jobs: i64,
    pub completed_jobs: i64,
    /// Sum of `items_done` over all jobs.
    pub total_items_done: i64,
    /// Sum of `items_total` over all jobs.
    pub total_items_target: i64,
    /// Summed over the jobs that ended (end − start), to 2 decimals.
    pub total_duration_seconds: f64,
    /// Over the jobs that report a percentage, to 2 decimals; 0 without.
    pub average_completion_percent: f64,
}

/// Totals over all jobs of all robots: one aggregate over `jobs`.
#[utoipa::path(get, path = "/api/v1/robots-db/jobs/overall-stats", tag = "robots-db",
    responses((status = 200, body = OverallJobStats)))]
pub async fn overall_stats(State(s): State<HttpState>) -> Result<Json<OverallJobStats>, ApiError> {
    let t = reads::jobs::totals(&s.pool, None).await?;
    Ok(Json(OverallJobStats {
        total_robots_with_jobs: t.robots_with_jobs,
        total_jobs: t.total_jobs,
        active_jobs: t.active_jobs,
        completed_jobs: t.completed_jobs,
        total_items_done: t.items_done,
        total_items_target: t.items_target,
        total_duration_seconds: round2(t.total_duration_seconds),
        average_completion_percent: round2(t.average_completion_percent),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CumulativeQuery {
    /// One robot's jobs; all robots' without.
    pub robot_id: Option<String>,
}

/// Totals over all jobs, or one robot's, and that robot's active job.
#[derive(Debug, Serialize, ToSchema)]
pub struct CumulativeJobStats {
    pub robot_id: Option<String>,
    pub cumulative: Cumulative,
    /// The robot's active job (only with `robot_id`).
    pub current_job: Option<Job>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Cumulative {
    pub total_jobs: i64,
    pub completed_jobs: i64,
    pub cancelled_jobs: i64,
    pub failed_jobs: i64,
    pub active_jobs: i64,
    pub total_items_done: i64,
    pub total_items_target: i64,
    /// Summed over the jobs that ended (end − start), to 2 decimals.
    pub total_duration_seconds: f64,
    /// Averaged over the jobs that ended, to 2 decimals; 0 without.
    pub average_duration_seconds: f64,
}

/// Totals across all historical jobs (not just the current one), optionally of one
/// robot, with its active job: one aggregate over `jobs` (and one read of the active job).
#[utoipa::path(get, path = "/api/v1/robots-db/jobs/cumulative-stats", tag = "robots-db",
    params(CumulativeQuery),
    responses((status = 200, body = CumulativeJobStats), (status = 400, body = Detail)))]
pub async fn cumulative_stats(
    State(s): State<HttpState>,
    Query(q): Query<CumulativeQuery>,
) -> Result<Json<CumulativeJobStats>, ApiError> {
    if let Some(r) = &q.robot_id {
        check_robot_id(r)?;
    }
    let t = reads::jobs::totals(&s.pool, q.robot_id.as_deref()).await?;
    let current_job = match &q.robot_id {
        Some(r) => reads::jobs::active(&s.pool, r).await?.map(Job::from),
        None => None,
    };
    Ok(Json(CumulativeJobStats {
        robot_id: q.robot_id,
        cumulative: Cumulative {
            total_jobs: t.total_jobs,
            completed_jobs: t.completed_jobs,
            cancelled_jobs: t.cancelled_jobs,
            failed_jobs: t.failed_jobs,
            active_jobs: t.active_jobs,
            total_items_done: t.items_done,
            total_items_target: t.items_target,
            total_duration_seconds: round2(t.total_duration_seconds),
            average_duration_seconds: round2(t.average_duration_seconds),
        },
        current_job,
    }))
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
pub async fn stats(State(s): State<HttpState>) -> Result<Json<Stats>, ApiError> {
    let c = reads::robots::counts(&s.pool).await?;
    Ok(Json(Stats {
        total_robots: c.total_robots,
        online_robots: c.online_robots,
        offline_robots: c.total_robots - c.online_robots,
        total_jobs: c.total_jobs,
        active_jobs: c.active_jobs,
        completed_jobs_today: c.completed_jobs_today,
    }))
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
    State(s): State<HttpState>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
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
    let filter = LogFilter {
        level: q.level.as_deref(),
        category: q.category.as_deref(),
        robot_id: q.robot_id.as_deref(),
        from: q.from,
        to: q.to,
        after,
    };
    let rows = reads::logs::page(&s.pool, &filter, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    let next = more
        .then(|| rows.get(limit as usize - 1))
        .flatten()
        .map(|r| format!("{}_{}", r.ts.timestamp_micros(), r.id));
    let page: Vec<LogEntry> = rows
        .into_iter()
        .take(limit as usize)
        .map(|r| LogEntry {
            id: r.id,
            level: r.level,
            category: r.category,
            message: r.message,
            robot_id: r.robot_id,
            details: r.details,
            timestamp: Some(r.ts.to_rfc3339()),
        })
        .collect();
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
