//! The TonyPi backend's `alerts` router (`backend/routers/alerts.py`): the alerts list
//! and counts of its Alerts page, manual alerts, acknowledging, resolving, deleting, and
//! the thresholds (fleet-wide and per robot) that fleetsink's own evaluation uses from
//! the next reading on. The alerts fleetsink raises are the rows with source
//! `fleetsink`; TonyPi's fields throughout. Timestamps are RFC 3339 with offset.
//!
//! Roles: reads are the viewer's; creating, acknowledging and resolving alerts the
//! operator's; deleting alerts and changing thresholds the admin's.

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use crate::alerts::{Thresholds, Watched, builtin};
use crate::audit::Actor;
use crate::db::edits::alerts::{NewAlert, ThresholdChanges, is_order_violation};
use crate::db::reads::alerts::{AlertFilter, AlertRow, SOURCE, ThresholdRecord};
use crate::db::{edits, reads};
use crate::http::auth::Caller;
use crate::http::extract::{Json, Path, Query};
use crate::http::{ApiError, Detail, HttpState, check_robot_id};

/// The most alerts one list answers (TonyPi's `le=500`).
const MAX_LIMIT: i64 = 500;

fn ts(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(|t| t.to_rfc3339())
}

fn bad(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, detail)
}

/// TonyPi's `time_range` choices (its Alerts, Logs and Reports pages offer the same).
fn since(time_range: Option<&str>) -> Result<DateTime<Utc>, ApiError> {
    let back = match time_range.unwrap_or("24h") {
        "1h" => Duration::hours(1),
        "6h" => Duration::hours(6),
        "24h" => Duration::hours(24),
        "7d" => Duration::days(7),
        "30d" => Duration::days(30),
        _ => return Err(bad("time_range must be one of 1h, 6h, 24h, 7d, 30d")),
    };
    Ok(Utc::now() - back)
}

/// A text field: 1 to `max` characters (NUL never gets here: `http::extract`).
fn text<'a>(field: &str, value: &'a str, max: usize) -> Result<&'a str, ApiError> {
    if value.is_empty() || value.chars().count() > max {
        return Err(bad(format!("{field} must be 1-{max} characters")));
    }
    Ok(value)
}

fn severity(value: &str) -> Result<&str, ApiError> {
    match value {
        "critical" | "warning" | "info" => Ok(value),
        _ => Err(bad("severity must be critical, warning or info")),
    }
}

fn metric_type(value: &str) -> Result<Watched, ApiError> {
    Watched::of_name(value).ok_or_else(|| {
        bad("metric_type must be one of cpu, memory, temperature, battery, servo_temp, servo_voltage")
    })
}

fn alert_not_found(id: i64) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("Alert {id} not found"))
}

fn threshold_not_found(id: i32) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("Threshold {id} not found"))
}

/// A threshold row the database refused: warning past critical is the caller's 400.
pub(crate) fn threshold_error(e: sqlx::Error) -> ApiError {
    if is_order_violation(&e) {
        bad(
            "warning_threshold must be at or below critical_threshold (at or above it for \
             battery and servo_voltage, where low values are bad)",
        )
    } else {
        e.into()
    }
}

/// An alert, TonyPi's `AlertResponse`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertResponse {
    pub id: i64,
    pub robot_id: Option<String>,
    /// `cpu`, `memory`, `temperature`, `battery`, `servo_temp`, `servo_voltage` for the
    /// alerts fleetsink raises; anything for manual ones.
    pub alert_type: String,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    pub title: String,
    pub message: String,
    /// `fleetsink` for the alerts fleetsink raises.
    pub source: Option<String>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    pub acknowledged: bool,
    pub acknowledged_by: Option<String>,
    #[schema(format = DateTime)]
    pub acknowledged_at: Option<String>,
    pub resolved: bool,
    #[schema(format = DateTime)]
    pub resolved_at: Option<String>,
    /// A JSON object; for fleetsink's alerts `count`, `first_triggered`, `last_triggered`.
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

impl From<AlertRow> for AlertResponse {
    fn from(a: AlertRow) -> Self {
        AlertResponse {
            id: a.id,
            robot_id: a.robot_id,
            alert_type: a.alert_type,
            severity: a.severity,
            title: a.title,
            message: a.message,
            source: a.source,
            value: a.value,
            threshold: a.threshold,
            acknowledged: a.acknowledged,
            acknowledged_by: a.acknowledged_by,
            acknowledged_at: ts(a.acknowledged_at),
            resolved: a.resolved,
            resolved_at: ts(a.resolved_at),
            details: a.details,
            created_at: a.created_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    pub robot_id: Option<String>,
    pub alert_type: Option<String>,
    /// `critical`, `warning` or `info`.
    pub severity: Option<String>,
    pub acknowledged: Option<bool>,
    pub resolved: Option<bool>,
    /// Created within: `1h`, `6h`, `24h` (default), `7d` or `30d`.
    pub time_range: Option<String>,
    /// 1-500, default 100.
    pub limit: Option<i64>,
}

/// Alerts created within `time_range` that match the filters, newest first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertsQuery),
    responses((status = 200, body = Vec<AlertResponse>), (status = 400, body = Detail),
        (status = 401, body = Detail)))]
pub async fn list(
    State(s): State<HttpState>,
    Query(q): Query<AlertsQuery>,
) -> Result<Json<Vec<AlertResponse>>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(bad(format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    if let Some(r) = &q.robot_id {
        check_robot_id(r)?;
    }
    let filter = AlertFilter {
        since: since(q.time_range.as_deref())?,
        robot_id: q.robot_id.as_deref(),
        alert_type: q
            .alert_type
            .as_deref()
            .map(|t| text("alert_type", t, 64))
            .transpose()?,
        severity: q.severity.as_deref().map(severity).transpose()?,
        acknowledged: q.acknowledged,
        resolved: q.resolved,
    };
    let rows = reads::alerts::list(&s.pool, &filter, limit).await?;
    Ok(Json(rows.into_iter().map(AlertResponse::from).collect()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    pub robot_id: Option<String>,
    /// Created within: `1h`, `6h`, `24h` (default), `7d` or `30d`.
    pub time_range: Option<String>,
}

/// TonyPi's `AlertStats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertStats {
    pub total: i64,
    pub critical: i64,
    pub warning: i64,
    pub info: i64,
    pub unacknowledged: i64,
    pub unresolved: i64,
}

/// Counts of the alerts created within `time_range` (of one robot, when given).
#[utoipa::path(get, path = "/api/v1/alerts/stats", tag = "alerts", params(StatsQuery),
    responses((status = 200, body = AlertStats), (status = 400, body = Detail),
        (status = 401, body = Detail)))]
pub async fn stats(
    State(s): State<HttpState>,
    Query(q): Query<StatsQuery>,
) -> Result<Json<AlertStats>, ApiError> {
    if let Some(r) = &q.robot_id {
        check_robot_id(r)?;
    }
    let c = reads::alerts::counts(
        &s.pool,
        since(q.time_range.as_deref())?,
        q.robot_id.as_deref(),
    )
    .await?;
    Ok(Json(AlertStats {
        total: c.total,
        critical: c.critical,
        warning: c.warning,
        info: c.info,
        unacknowledged: c.unacknowledged,
        unresolved: c.unresolved,
    }))
}

/// TonyPi's `AlertCreate`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AlertCreate {
    pub robot_id: Option<String>,
    /// 1-64 characters.
    pub alert_type: String,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    /// 1-200 characters.
    pub title: String,
    /// 1-4000 characters.
    pub message: String,
    /// 1-128 characters; `fleetsink` is reserved for the alerts fleetsink raises.
    pub source: Option<String>,
    pub value: Option<f64>,
    pub threshold: Option<f64>,
    #[schema(value_type = Option<Object>)]
    pub details: Option<Map<String, Value>>,
}

/// Creates a manual alert (unacknowledged, unresolved). Manual alerts are never
/// deduplicated: several of one kind may be open at once. Operator.
#[utoipa::path(post, path = "/api/v1/alerts", tag = "alerts", request_body = AlertCreate,
    responses((status = 200, body = AlertResponse), (status = 400, body = Detail),
        (status = 401, body = Detail), (status = 403, body = Detail)))]
pub async fn create(
    State(s): State<HttpState>,
    actor: Actor,
    Json(a): Json<AlertCreate>,
) -> Result<Json<AlertResponse>, ApiError> {
    if let Some(r) = &a.robot_id {
        check_robot_id(r)?;
    }
    let source = a
        .source
        .as_deref()
        .map(|src| text("source", src, 128))
        .transpose()?;
    if source == Some(SOURCE) {
        return Err(bad(format!(
            "source {SOURCE:?} is reserved for the alerts fleetsink raises"
        )));
    }
    let details = a.details.map(Value::Object);
    let new = NewAlert {
        robot_id: a.robot_id.as_deref(),
        alert_type: text("alert_type", &a.alert_type, 64)?,
        severity: severity(&a.severity)?,
        title: text("title", &a.title, 200)?,
        message: text("message", &a.message, 4000)?,
        source,
        value: a.value,
        threshold: a.threshold,
        details: details.as_ref(),
    };
    Ok(Json(
        edits::alerts::create(&s.pool, &actor, &new).await?.into(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AcknowledgeQuery {
    /// Who acknowledges (1-128 characters); default `system`. A signed-in console
    /// user is recorded by their username instead.
    pub acknowledged_by: Option<String>,
}

/// What acknowledging answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Acknowledged {
    pub message: String,
    pub acknowledged_by: String,
}

/// A message, as TonyPi answers a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct Message {
    pub message: String,
}

/// Who acknowledges: a signed-in console user is recorded by their username, whatever
/// the query says (TonyPi's UI always sends the placeholder `user`); otherwise (the
/// admin token, an open API) the query's name, default `system`.
fn acknowledged_by(caller: &Caller, given: Option<&str>) -> Result<String, ApiError> {
    match caller {
        Caller::User { username, .. } => Ok(username.clone()),
        _ => text("acknowledged_by", given.unwrap_or("system"), 128).map(str::to_string),
    }
}

/// Acknowledges an alert (again, if it was: the new name and time replace the old).
/// Operator.
#[utoipa::path(post, path = "/api/v1/alerts/{alert_id}/acknowledge", tag = "alerts",
    params(("alert_id" = i64, Path, description = "The alert's id"), AcknowledgeQuery),
    responses((status = 200, body = Acknowledged), (status = 400, body = Detail),
        (status = 401, body = Detail), (status = 403, body = Detail),
        (status = 404, body = Detail)))]
pub async fn acknowledge(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    actor: Actor,
    Path(id): Path<i64>,
    Query(q): Query<AcknowledgeQuery>,
) -> Result<Json<Acknowledged>, ApiError> {
    let by = acknowledged_by(&caller, q.acknowledged_by.as_deref())?;
    if !edits::alerts::acknowledge(&s.pool, &actor, id, &by).await? {
        return Err(alert_not_found(id));
    }
    Ok(Json(Acknowledged {
        message: format!("Alert {id} acknowledged"),
        acknowledged_by: by,
    }))
}

/// Marks an alert resolved. An alert fleetsink raised re-opens if its metric is still
/// past the threshold at the next reading (within `alerts.dedupe_window`). Operator.
#[utoipa::path(post, path = "/api/v1/alerts/{alert_id}/resolve", tag = "alerts",
    params(("alert_id" = i64, Path, description = "The alert's id")),
    responses((status = 200, body = Message), (status = 400, body = Detail),
        (status = 401, body = Detail), (status = 403, body = Detail),
        (status = 404, body = Detail)))]
pub async fn resolve(
    State(s): State<HttpState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> Result<Json<Message>, ApiError> {
    if !edits::alerts::resolve(&s.pool, &actor, id).await? {
        return Err(alert_not_found(id));
    }
    s.alert_edits.changed();
    Ok(Json(Message {
        message: format!("Alert {id} resolved"),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AcknowledgeAllQuery {
    /// Only this robot's alerts.
    pub robot_id: Option<String>,
    /// Who acknowledges (1-128 characters); default `system`. A signed-in console
    /// user is recorded by their username instead.
    pub acknowledged_by: Option<String>,
}

/// Acknowledges every unacknowledged alert (of one robot, when given), whatever its
/// age: `Acknowledged N alerts`. Operator.
#[utoipa::path(post, path = "/api/v1/alerts/acknowledge-all", tag = "alerts",
    params(AcknowledgeAllQuery),
    responses((status = 200, body = Message), (status = 400, body = Detail),
        (status = 401, body = Detail), (status = 403, body = Detail)))]
pub async fn acknowledge_all(
    State(s): State<HttpState>,
    Extension(caller): Extension<Caller>,
    actor: Actor,
    Query(q): Query<AcknowledgeAllQuery>,
) -> Result<Json<Message>, ApiError> {
    if let Some(r) = &q.robot_id {
        check_robot_id(r)?;
    }
    let by = acknowledged_by(&caller, q.acknowledged_by.as_deref())?;
    let n = edits::alerts::acknowledge_all(&s.pool, &actor, q.robot_id.as_deref(), &by).await?;
    Ok(Json(Message {
        message: format!("Acknowledged {n} alerts"),
    }))
}

/// Deletes an alert. Admin: operators resolve alerts, the record stays.
#[utoipa::path(delete, path = "/api/v1/alerts/{alert_id}", tag = "alerts",
    params(("alert_id" = i64, Path, description = "The alert's id")),
    responses((status = 200, body = Message), (status = 400, body = Detail),
        (status = 401, body = Detail), (status = 403, body = Detail),
        (status = 404, body = Detail)))]
pub async fn delete(
    State(s): State<HttpState>,
    actor: Actor,
    Path(id): Path<i64>,
) -> Result<Json<Message>, ApiError> {
    if !edits::alerts::delete(&s.pool, &actor, id).await? {
        return Err(alert_not_found(id));
    }
    s.alert_edits.changed();
    Ok(Json(Message {
        message: format!("Alert {id} deleted"),
    }))
}

/// A threshold row, TonyPi's `ThresholdResponse`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ThresholdResponse {
    pub id: i32,
    /// `null`: fleet-wide.
    pub robot_id: Option<String>,
    /// `cpu`, `memory`, `temperature`, `battery`, `servo_temp` or `servo_voltage`.
    pub metric_type: String,
    pub warning_threshold: f64,
    pub critical_threshold: f64,
    /// `false`: no alerts for this metric at this scope.
    pub enabled: bool,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
}

impl From<ThresholdRecord> for ThresholdResponse {
    fn from(t: ThresholdRecord) -> Self {
        ThresholdResponse {
            id: t.id,
            robot_id: t.robot_id,
            metric_type: t.metric_type,
            warning_threshold: t.warning_threshold,
            critical_threshold: t.critical_threshold,
            enabled: t.enabled,
            created_at: ts(t.created_at),
            updated_at: ts(t.updated_at),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ThresholdsQuery {
    /// This robot's rows and the fleet-wide ones; all rows without it.
    pub robot_id: Option<String>,
}

/// Threshold rows, by id.
#[utoipa::path(get, path = "/api/v1/alerts/thresholds", tag = "alerts", params(ThresholdsQuery),
    responses((status = 200, body = Vec<ThresholdResponse>), (status = 400, body = Detail),
        (status = 401, body = Detail)))]
pub async fn thresholds(
    State(s): State<HttpState>,
    Query(q): Query<ThresholdsQuery>,
) -> Result<Json<Vec<ThresholdResponse>>, ApiError> {
    if let Some(r) = &q.robot_id {
        check_robot_id(r)?;
    }
    let rows = reads::alerts::thresholds(&s.pool, q.robot_id.as_deref()).await?;
    Ok(Json(
        rows.into_iter().map(ThresholdResponse::from).collect(),
    ))
}

/// TonyPi's `ThresholdCreate`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ThresholdCreate {
    /// `null` or absent: fleet-wide.
    pub robot_id: Option<String>,
    pub metric_type: String,
    pub warning_threshold: f64,
    pub critical_threshold: f64,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

/// Creates the row of (robot or fleet-wide, metric) or replaces its values. It applies
/// to the next reading. Admin.
#[utoipa::path(post, path = "/api/v1/alerts/thresholds", tag = "alerts",
    request_body = ThresholdCreate,
    responses((status = 200, body = ThresholdResponse), (status = 400, body = Detail),
        (status = 401, body = Detail), (status = 403, body = Detail)))]
pub async fn upsert_threshold(
    State(s): State<HttpState>,
    actor: Actor,
    Json(t): Json<ThresholdCreate>,
) -> Result<Json<ThresholdResponse>, ApiError> {
    if let Some(r) = &t.robot_id {
        check_robot_id(r)?;
    }
    let metric = metric_type(&t.metric_type)?;
    let values = Thresholds {
        warning: t.warning_threshold,
        critical: t.critical_threshold,
    };
    let row = edits::alerts::upsert_threshold(
        &s.pool,
        &actor,
        t.robot_id.as_deref(),
        metric,
        values,
        t.enabled,
    )
    .await
    .map_err(threshold_error)?;
    Ok(Json(row.into()))
}

/// TonyPi's `ThresholdUpdate`: the fields given change.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ThresholdUpdate {
    pub warning_threshold: Option<f64>,
    pub critical_threshold: Option<f64>,
    pub enabled: Option<bool>,
}

/// Changes a threshold row. Admin.
#[utoipa::path(put, path = "/api/v1/alerts/thresholds/{threshold_id}", tag = "alerts",
    params(("threshold_id" = i32, Path, description = "The threshold row's id")),
    request_body = ThresholdUpdate,
    responses((status = 200, body = ThresholdResponse), (status = 400, body = Detail),
        (status = 401, body = Detail), (status = 403, body = Detail),
        (status = 404, body = Detail)))]
pub async fn update_threshold(
    State(s): State<HttpState>,
    actor: Actor,
    Path(id): Path<i32>,
    Json(u): Json<ThresholdUpdate>,
) -> Result<Json<ThresholdResponse>, ApiError> {
    let changes = ThresholdChanges {
        warning: u.warning_threshold,
        critical: u.critical_threshold,
        enabled: u.enabled,
    };
    edits::alerts::update_threshold(&s.pool, &actor, id, &changes)
        .await
        .map_err(threshold_error)?
        .map(|t| Json(t.into()))
        .ok_or_else(|| threshold_not_found(id))
}

/// Deletes a threshold row: its scope falls back to the fleet-wide row or the built-in
/// default. Admin.
#[utoipa::path(delete, path = "/api/v1/alerts/thresholds/{threshold_id}", tag = "alerts",
    params(("threshold_id" = i32, Path, description = "The threshold row's id")),
    responses((status = 200, body = Message), (status = 400, body = Detail),
        (status = 401, body = Detail), (status = 403, body = Detail),
        (status = 404, body = Detail)))]
pub async fn delete_threshold(
    State(s): State<HttpState>,
    actor: Actor,
    Path(id): Path<i32>,
) -> Result<Json<Message>, ApiError> {
    if !edits::alerts::delete_threshold(&s.pool, &actor, id).await? {
        return Err(threshold_not_found(id));
    }
    Ok(Json(Message {
        message: format!("Threshold {id} deleted"),
    }))
}

/// A metric's built-in pair.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pair {
    pub warning: f64,
    pub critical: f64,
}

/// The built-in thresholds (`[alerts.thresholds]`), TonyPi's `DEFAULT_THRESHOLDS` shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct Defaults {
    pub cpu: Pair,
    pub memory: Pair,
    pub temperature: Pair,
    pub battery: Pair,
    pub servo_temp: Pair,
    pub servo_voltage: Pair,
}

/// The built-in thresholds: what applies where no row does.
#[utoipa::path(get, path = "/api/v1/alerts/thresholds/defaults", tag = "alerts",
    responses((status = 200, body = Defaults), (status = 401, body = Detail)))]
pub async fn defaults(State(s): State<HttpState>) -> Json<Defaults> {
    let b = builtin(&s.thresholds);
    let pair = |w: Watched| Pair {
        warning: b[w as usize].warning,
        critical: b[w as usize].critical,
    };
    Json(Defaults {
        cpu: pair(Watched::Cpu),
        memory: pair(Watched::Memory),
        temperature: pair(Watched::Temperature),
        battery: pair(Watched::Battery),
        servo_temp: pair(Watched::ServoTemperature),
        servo_voltage: pair(Watched::ServoVoltage),
    })
}

/// Creates the fleet-wide rows missing, from the built-in thresholds:
/// `Initialized N default thresholds`. Admin.
#[utoipa::path(post, path = "/api/v1/alerts/thresholds/init-defaults", tag = "alerts",
    responses((status = 200, body = Message), (status = 401, body = Detail),
        (status = 403, body = Detail)))]
pub async fn init_defaults(
    State(s): State<HttpState>,
    actor: Actor,
) -> Result<Json<Message>, ApiError> {
    let b = builtin(&s.thresholds);
    let defaults: Vec<(Watched, Thresholds)> =
        Watched::ALL.iter().map(|&w| (w, b[w as usize])).collect();
    let n = edits::alerts::init_default_thresholds(&s.pool, &actor, &defaults)
        .await
        .map_err(threshold_error)?;
    Ok(Json(Message {
        message: format!("Initialized {n} default thresholds"),
    }))
}
