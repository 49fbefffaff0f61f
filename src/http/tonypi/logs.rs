//! The TonyPi backend's `logs` router (`backend/routers/logs.py`), answered from
//! fleetsink's `logs` table: what robots publish on their log topics, lifecycle
//! changes, command answers, alerts and API actions, all in one day-partitioned table.
//!
//! Every read is bound to a `time_range` (1h, 6h, 24h, 7d or 30d; default 24h), so it
//! reads only the day partitions it covers. The exports stream rows from PostgreSQL as
//! they come, never the whole answer in memory, up to `http.logs_export_max_rows`;
//! an export cut there ends with a marker saying so (a last JSON element, a last CSV
//! row). One export runs at a time (it holds a pool connection while the client
//! downloads); another gets 503. Clearing empties whole day partitions with TRUNCATE
//! and deletes only the rows of the partial day.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::{Semaphore, mpsc};
use utoipa::{IntoParams, ToSchema};

use crate::db::reads::logs::{LogQuery, StoredLog};
use crate::db::{edits, reads};
use crate::http::extract::{Json, Query};
use crate::http::{ApiError, Detail, HttpState, check_robot_id, csv_field, limit_within};
use crate::model::LogRow;

/// TonyPi's `LOG_CATEGORIES`, then the categories fleetsink writes that TonyPi's list
/// lacks. Robots' own log lines are `robot_<source>` (`robot` without a source), as in
/// TonyPi; lifecycle changes are `robot`, command answers `command`, emergency-stop
/// answers and expiries `emergency`, QR scans `scan`, detections `vision`, alerts
/// `alert`, and the audit trail (who changed what, from where: `db::edits::audit`)
/// `audit`.
const CATEGORIES: [&str; 17] = [
    "mqtt",
    "api",
    "database",
    "system",
    "command",
    "robot",
    "alert",
    "report",
    "servo",
    "vision",
    "battery",
    "sensor",
    "job",
    "movement",
    "emergency",
    "scan",
    "audit",
];

/// TonyPi's `LOG_LEVELS`, in order of severity.
const LEVELS: [(&str, &str, u8); 4] = [
    ("INFO", "blue", 1),
    ("WARNING", "yellow", 2),
    ("ERROR", "red", 3),
    ("CRITICAL", "purple", 4),
];

/// The longest `search`, `level` or `category` taken (characters).
const MAX_TEXT: usize = 200;
/// The deepest `offset` of a page; beyond it, narrow the filters or export.
const MAX_OFFSET: i64 = 100_000;
/// Export bytes are handed to the client in chunks of about this size.
const CHUNK_BYTES: usize = 64 * 1024;
/// An export whose client reads nothing for this long is abandoned, so a stalled
/// download cannot hold a database connection forever.
const STALLED_CLIENT: StdDuration = StdDuration::from_secs(60);

/// The export limits: the row cap and the one-at-a-time permit.
#[derive(Clone)]
pub struct LogExport {
    max_rows: u64,
    running: Arc<Semaphore>,
}

impl LogExport {
    /// Exports of at most `max_rows` rows (`http.logs_export_max_rows`), one at a time.
    pub fn new(max_rows: u64) -> Self {
        Self {
            max_rows,
            running: Arc::new(Semaphore::new(1)),
        }
    }
}

/// A log row as TonyPi's `LogResponse` (and `SystemLog.to_dict()`) gives it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogResponse {
    pub id: i64,
    /// INFO, WARNING, ERROR or CRITICAL (robots may also send DEBUG).
    pub level: String,
    pub category: String,
    pub message: String,
    pub robot_id: Option<String>,
    /// An object, or null.
    pub details: Option<Value>,
    /// RFC 3339 with offset.
    #[schema(format = DateTime)]
    pub timestamp: String,
}

impl From<StoredLog> for LogResponse {
    fn from(r: StoredLog) -> Self {
        Self {
            id: r.id,
            level: r.level,
            category: r.category,
            message: r.message,
            robot_id: r.robot_id,
            details: r.details,
            timestamp: r.ts.to_rfc3339(),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// INFO, WARNING, ERROR or CRITICAL (any case).
    pub level: Option<String>,
    /// Any case; see `/api/v1/logs/categories`.
    pub category: Option<String>,
    pub robot_id: Option<String>,
    /// A case-insensitive substring of the message.
    pub search: Option<String>,
    /// 1h, 6h, 24h (default), 7d or 30d.
    pub time_range: Option<String>,
    /// 1-1000, default 100.
    pub limit: Option<i64>,
    /// Rows to skip (0-100000), default 0.
    pub offset: Option<i64>,
}

/// `/logs/commands` and `/logs/errors`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecentQuery {
    pub robot_id: Option<String>,
    /// 1h, 6h, 24h (default), 7d or 30d.
    pub time_range: Option<String>,
    /// 1-200, default 50.
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// 1h, 6h, 24h (default), 7d or 30d.
    pub time_range: Option<String>,
    pub robot_id: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// 1h, 6h, 24h (default), 7d or 30d.
    pub time_range: Option<String>,
    /// INFO, WARNING, ERROR or CRITICAL (any case).
    pub level: Option<String>,
    pub category: Option<String>,
    pub robot_id: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ClearQuery {
    /// Delete logs older than this many days: 1-365, default 30.
    pub days: Option<i64>,
}

/// TonyPi's `LogCreate`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LogCreate {
    /// INFO, WARNING, ERROR or CRITICAL (any case; stored upper-cased).
    pub level: String,
    /// Stored lower-cased, e.g. `system`, `api`, `command`.
    pub category: String,
    pub message: String,
    #[serde(default)]
    pub robot_id: Option<String>,
    /// An object, or null.
    #[serde(default)]
    pub details: Option<Value>,
}

/// TonyPi's `LogStats`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogStats {
    pub total: i64,
    pub info: i64,
    pub warning: i64,
    pub error: i64,
    pub critical: i64,
    /// Rows per category: every category of `/logs/categories` (0 when none), and any
    /// other category present.
    pub by_category: Map<String, Value>,
}

/// `{"message": "Deleted N logs older than D days"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Cleared {
    pub message: String,
}

/// The filters and time window of a request, owned (an export's task outlives it).
#[derive(Debug, Default)]
struct Filters {
    levels: Vec<String>,
    category: Option<String>,
    robot_id: Option<String>,
    search: Option<String>,
    since: DateTime<Utc>,
}

impl Filters {
    fn parse(
        time_range: Option<&str>,
        level: Option<&str>,
        category: Option<&str>,
        robot_id: Option<&str>,
        search: Option<&str>,
    ) -> Result<Self, ApiError> {
        let robot_id = given(robot_id);
        if let Some(r) = robot_id {
            check_robot_id(r)?;
        }
        Ok(Self {
            levels: text("level", level)?
                .map(str::to_uppercase)
                .into_iter()
                .collect(),
            category: text("category", category)?.map(str::to_lowercase),
            robot_id: robot_id.map(str::to_string),
            search: text("search", search)?.map(str::to_string),
            since: Utc::now() - window(time_range)?,
        })
    }

    fn query(&self) -> LogQuery<'_> {
        LogQuery {
            levels: &self.levels,
            category: self.category.as_deref(),
            robot_id: self.robot_id.as_deref(),
            search: self.search.as_deref(),
            since: self.since,
        }
    }
}

/// A text parameter: `None` when absent or empty (TonyPi filters only on non-empty
/// values); 400 when it is too long (NUL never gets here: `http::extract`).
fn text<'a>(name: &str, value: Option<&'a str>) -> Result<Option<&'a str>, ApiError> {
    let Some(v) = given(value) else {
        return Ok(None);
    };
    if v.chars().count() > MAX_TEXT {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{name} must be at most {MAX_TEXT} characters"),
        ));
    }
    Ok(Some(v))
}

fn given(value: Option<&str>) -> Option<&str> {
    value.filter(|v| !v.is_empty())
}

/// TonyPi's `time_range` choices; absent means 24h.
fn window(given: Option<&str>) -> Result<Duration, ApiError> {
    match given.unwrap_or("24h") {
        "1h" => Ok(Duration::hours(1)),
        "6h" => Ok(Duration::hours(6)),
        "24h" => Ok(Duration::hours(24)),
        "7d" => Ok(Duration::days(7)),
        "30d" => Ok(Duration::days(30)),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "time_range must be 1h, 6h, 24h, 7d or 30d",
        )),
    }
}

/// Logs within `time_range`, newest first, filtered by level, category, robot and a
/// message search; the filters combine.
#[utoipa::path(get, path = "/api/v1/logs", tag = "logs", params(ListQuery),
    responses((status = 200, body = Vec<LogResponse>), (status = 400, body = Detail)))]
pub async fn list(
    State(s): State<HttpState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<LogResponse>>, ApiError> {
    let limit = limit_within(q.limit, 100, 1000)?;
    let offset = q.offset.unwrap_or(0);
    if !(0..=MAX_OFFSET).contains(&offset) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("offset must be between 0 and {MAX_OFFSET}"),
        ));
    }
    let f = Filters::parse(
        q.time_range.as_deref(),
        q.level.as_deref(),
        q.category.as_deref(),
        q.robot_id.as_deref(),
        q.search.as_deref(),
    )?;
    let rows = reads::logs::list(&s.pool, &f.query(), limit, offset).await?;
    Ok(Json(rows.into_iter().map(LogResponse::from).collect()))
}

/// Writes a log row (source `api`) and answers it as stored.
#[utoipa::path(post, path = "/api/v1/logs", tag = "logs", request_body = LogCreate,
    responses((status = 200, body = LogResponse), (status = 400, body = Detail)))]
pub async fn create(
    State(s): State<HttpState>,
    Json(req): Json<LogCreate>,
) -> Result<Json<LogResponse>, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let level = req.level.to_uppercase();
    if !LEVELS.iter().any(|(l, _, _)| *l == level) && level != "DEBUG" {
        return Err(bad(
            "level must be INFO, WARNING, ERROR or CRITICAL (or DEBUG)".into(),
        ));
    }
    let category = text("category", Some(&req.category))?
        .ok_or_else(|| bad("category must not be empty".into()))?
        .to_lowercase();
    if let Some(r) = &req.robot_id {
        check_robot_id(r)?;
    }
    let details = match req.details {
        None | Some(Value::Null) => None,
        Some(Value::Object(d)) => Some(Value::Object(d)),
        Some(_) => return Err(bad("details must be an object or null".into())),
    };
    let row = LogRow {
        robot_id: req.robot_id,
        ts: Utc::now(),
        level,
        category,
        source: Some("api".into()),
        message: req.message,
        details,
        // Unique with the time; two rows alike in the same microsecond still differ.
        dedup_key: fastrand::i64(..),
    };
    let (id, ts) = edits::logs::create(&s.pool, &row).await?;
    Ok(Json(LogResponse {
        id,
        level: row.level,
        category: row.category,
        message: row.message,
        robot_id: row.robot_id,
        details: row.details,
        timestamp: ts.to_rfc3339(),
    }))
}

/// TonyPi's categories, then those fleetsink writes itself (`emergency`, `scan`);
/// robots' own lines are `robot_<source>`.
#[utoipa::path(get, path = "/api/v1/logs/categories", tag = "logs",
    responses((status = 200, body = Vec<String>)))]
pub async fn categories() -> Json<[&'static str; 17]> {
    Json(CATEGORIES)
}

/// TonyPi's levels: `{"INFO": {"color": "blue", "priority": 1}, …}`.
#[utoipa::path(get, path = "/api/v1/logs/levels", tag = "logs",
    responses((status = 200, body = Object,
        example = json!({"INFO": {"color": "blue", "priority": 1}}))))]
pub async fn levels() -> Json<Value> {
    let mut out = Map::new();
    for (level, color, priority) in LEVELS {
        out.insert(level.into(), json!({"color": color, "priority": priority}));
    }
    Json(Value::Object(out))
}

/// How many logs of each level and category `time_range` holds (one robot's, or all).
#[utoipa::path(get, path = "/api/v1/logs/stats", tag = "logs", params(StatsQuery),
    responses((status = 200, body = LogStats), (status = 400, body = Detail)))]
pub async fn stats(
    State(s): State<HttpState>,
    Query(q): Query<StatsQuery>,
) -> Result<Json<LogStats>, ApiError> {
    let f = Filters::parse(
        q.time_range.as_deref(),
        None,
        None,
        q.robot_id.as_deref(),
        None,
    )?;
    let counts = reads::logs::counts(&s.pool, f.since, f.robot_id.as_deref()).await?;
    let mut stats = LogStats {
        total: 0,
        info: 0,
        warning: 0,
        error: 0,
        critical: 0,
        by_category: CATEGORIES
            .iter()
            .map(|c| (c.to_string(), json!(0)))
            .collect(),
    };
    for (category, level, n) in counts {
        stats.total += n;
        match level.as_str() {
            "INFO" => stats.info += n,
            "WARNING" => stats.warning += n,
            "ERROR" => stats.error += n,
            "CRITICAL" => stats.critical += n,
            _ => {}
        }
        let entry = stats.by_category.entry(category).or_insert(json!(0));
        *entry = json!(entry.as_i64().unwrap_or(0) + n);
    }
    Ok(Json(stats))
}

/// Command answers and command log rows (category `command`), newest first.
#[utoipa::path(get, path = "/api/v1/logs/commands", tag = "logs", params(RecentQuery),
    responses((status = 200, body = Vec<LogResponse>), (status = 400, body = Detail)))]
pub async fn commands(
    State(s): State<HttpState>,
    Query(q): Query<RecentQuery>,
) -> Result<Json<Vec<LogResponse>>, ApiError> {
    let mut f = recent(&q)?;
    f.category = Some("command".into());
    recent_rows(&s, &f, q.limit).await
}

/// ERROR and CRITICAL logs, newest first.
#[utoipa::path(get, path = "/api/v1/logs/errors", tag = "logs", params(RecentQuery),
    responses((status = 200, body = Vec<LogResponse>), (status = 400, body = Detail)))]
pub async fn errors(
    State(s): State<HttpState>,
    Query(q): Query<RecentQuery>,
) -> Result<Json<Vec<LogResponse>>, ApiError> {
    let mut f = recent(&q)?;
    f.levels = vec!["ERROR".into(), "CRITICAL".into()];
    recent_rows(&s, &f, q.limit).await
}

fn recent(q: &RecentQuery) -> Result<Filters, ApiError> {
    Filters::parse(
        q.time_range.as_deref(),
        None,
        None,
        q.robot_id.as_deref(),
        None,
    )
}

async fn recent_rows(
    s: &HttpState,
    f: &Filters,
    limit: Option<i64>,
) -> Result<Json<Vec<LogResponse>>, ApiError> {
    let limit = limit_within(limit, 50, 200)?;
    let rows = reads::logs::list(&s.pool, &f.query(), limit, 0).await?;
    Ok(Json(rows.into_iter().map(LogResponse::from).collect()))
}

/// Deletes the logs older than `days` days: whole days by emptying their partitions,
/// the partial day row by row.
#[utoipa::path(delete, path = "/api/v1/logs/clear", tag = "logs", params(ClearQuery),
    responses((status = 200, body = Cleared), (status = 400, body = Detail)))]
pub async fn clear(
    State(s): State<HttpState>,
    actor: crate::audit::Actor,
    Query(q): Query<ClearQuery>,
) -> Result<Json<Cleared>, ApiError> {
    let days = q.days.unwrap_or(30);
    if !(1..=365).contains(&days) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "days must be between 1 and 365",
        ));
    }
    let deleted =
        edits::logs::clear_before(&s.pool, &actor, Utc::now() - Duration::days(days)).await?;
    Ok(Json(Cleared {
        message: format!("Deleted {deleted} logs older than {days} days"),
    }))
}

/// The logs of `time_range` as a JSON array of TonyPi's log objects, streamed, newest
/// first. Cut at `http.logs_export_max_rows`: then the last element is
/// `{"truncated": true, "max_rows": N, "message": "..."}`.
#[utoipa::path(get, path = "/api/v1/logs/export/json", tag = "logs", params(ExportQuery),
    responses((status = 200, description = "attachment system_logs_YYYYmmdd_HHMMSS.json",
               body = Vec<LogResponse>),
        (status = 400, body = Detail),
        (status = 503, description = "another export is running", body = Detail)))]
pub async fn export_json(
    State(s): State<HttpState>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    export(s, q, Format::Json).await
}

/// The logs of `time_range` as CSV (`ID,Timestamp,Level,Category,Robot ID,Message,Details`),
/// streamed, newest first; 404 when there are none. Cut at
/// `http.logs_export_max_rows`: then the last row's ID is `TRUNCATED` and its message
/// says so.
#[utoipa::path(get, path = "/api/v1/logs/export/csv", tag = "logs", params(ExportQuery),
    responses((status = 200, description = "attachment system_logs_YYYYmmdd_HHMMSS.csv",
               content_type = "text/csv", body = String),
        (status = 400, body = Detail),
        (status = 404, description = "No logs found", body = Detail),
        (status = 503, description = "another export is running", body = Detail)))]
pub async fn export_csv(
    State(s): State<HttpState>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    export(s, q, Format::Csv).await
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Json,
    Csv,
}

async fn export(s: HttpState, q: ExportQuery, format: Format) -> Result<Response, ApiError> {
    let f = Filters::parse(
        q.time_range.as_deref(),
        q.level.as_deref(),
        q.category.as_deref(),
        q.robot_id.as_deref(),
        None,
    )?;
    let permit = s
        .log_export
        .running
        .clone()
        .try_acquire_owned()
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "another log export is running; try again when it has finished",
            )
        })?;
    let max_rows = s.log_export.max_rows;
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, sqlx::Error>>(4);
    let pool = s.pool.clone();
    tokio::spawn(async move {
        let _permit = permit;
        // One more than the cap, to know whether the cap cut the export.
        let limit = i64::try_from(max_rows).unwrap_or(i64::MAX - 1) + 1;
        let mut rows = reads::logs::export(&pool, &f.query(), limit);
        let mut out = Writer::new(format, max_rows);
        while let Some(row) = rows.next().await {
            let more = match row {
                Ok(row) => out.row(row),
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            if !more {
                break;
            }
            if out.buf.len() >= CHUNK_BYTES && !hand_over(&tx, out.take()).await {
                return;
            }
        }
        drop(rows);
        out.finish();
        if !out.buf.is_empty() {
            hand_over(&tx, out.take()).await;
        }
    });
    let first = match rx.recv().await {
        Some(Ok(bytes)) => bytes,
        Some(Err(e)) => return Err(e.into()),
        // Only a CSV export writes nothing for no rows.
        None => return Err(ApiError::new(StatusCode::NOT_FOUND, "No logs found")),
    };
    let rest = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let body = Body::from_stream(futures::stream::once(async { Ok(first) }).chain(rest));
    let (content_type, ext) = match format {
        Format::Json => ("application/json", "json"),
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
    };
    let disposition = format!(
        "attachment; filename=system_logs_{}.{ext}",
        Utc::now().format("%Y%m%d_%H%M%S")
    );
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// Hands a chunk to the response body; false when the client is gone or has read
/// nothing for [`STALLED_CLIENT`] (the export then stops).
async fn hand_over(tx: &mpsc::Sender<Result<Bytes, sqlx::Error>>, chunk: Bytes) -> bool {
    match tokio::time::timeout(STALLED_CLIENT, tx.send(Ok(chunk))).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::warn!("log export abandoned: the client read nothing for 60 s");
            false
        }
    }
}

/// Writes export rows into a buffer, in TonyPi's JSON or CSV form.
struct Writer {
    format: Format,
    max_rows: u64,
    rows: u64,
    buf: Vec<u8>,
}

impl Writer {
    fn new(format: Format, max_rows: u64) -> Self {
        let mut buf = Vec::with_capacity(CHUNK_BYTES + 4096);
        if format == Format::Json {
            buf.extend_from_slice(b"[");
        }
        Self {
            format,
            max_rows,
            rows: 0,
            buf,
        }
    }

    /// Adds a row; false once the cap is passed (the marker is written instead).
    fn row(&mut self, row: StoredLog) -> bool {
        if self.rows == self.max_rows {
            self.truncated();
            return false;
        }
        self.rows += 1;
        match self.format {
            Format::Json => {
                if self.rows > 1 {
                    self.buf.push(b',');
                }
                self.buf.push(b'\n');
                // A struct of strings, numbers and JSON values always serializes.
                let _ = serde_json::to_writer(&mut self.buf, &LogResponse::from(row));
            }
            Format::Csv => {
                if self.rows == 1 {
                    self.buf.extend_from_slice(
                        b"ID,Timestamp,Level,Category,Robot ID,Message,Details\r\n",
                    );
                }
                let details = match &row.details {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::Object(o)) if o.is_empty() => String::new(),
                    Some(d) => d.to_string(),
                };
                let line = [
                    row.id.to_string(),
                    row.ts.to_rfc3339(),
                    csv_field(&row.level),
                    csv_field(&row.category),
                    csv_field(row.robot_id.as_deref().unwrap_or_default()),
                    csv_field(&row.message),
                    csv_field(&details),
                ]
                .join(",");
                self.buf.extend_from_slice(line.as_bytes());
                self.buf.extend_from_slice(b"\r\n");
            }
        }
        true
    }

    fn truncated(&mut self) {
        let message = format!(
            "export truncated at {} rows (http.logs_export_max_rows): narrow the time range or filters",
            self.max_rows
        );
        match self.format {
            Format::Json => {
                self.buf.extend_from_slice(b",\n");
                let marker =
                    json!({"truncated": true, "max_rows": self.max_rows, "message": message});
                self.buf.extend_from_slice(marker.to_string().as_bytes());
            }
            Format::Csv => {
                let line = format!("TRUNCATED,,,,,{},\r\n", csv_field(&message));
                self.buf.extend_from_slice(line.as_bytes());
            }
        }
    }

    fn finish(&mut self) {
        if self.format == Format::Json {
            self.buf.extend_from_slice(b"\n]\n");
        }
    }

    fn take(&mut self) -> Bytes {
        Bytes::from(std::mem::take(&mut self.buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, message: &str) -> StoredLog {
        StoredLog {
            id,
            level: "INFO".into(),
            category: "robot".into(),
            message: message.into(),
            robot_id: Some("tonypi_1".into()),
            details: Some(json!({"a": 1})),
            ts: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        }
    }

    #[test]
    fn json_export_is_an_array_and_says_when_cut() {
        let mut w = Writer::new(Format::Json, 2);
        assert!(w.row(row(1, "a")));
        assert!(w.row(row(2, "b")));
        assert!(!w.row(row(3, "c")));
        w.finish();
        let v: Value = serde_json::from_slice(&w.buf).unwrap();
        let a = v.as_array().unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a[0]["id"], 1);
        assert_eq!(a[2]["truncated"], true);
        let mut empty = Writer::new(Format::Json, 2);
        empty.finish();
        assert_eq!(
            serde_json::from_slice::<Value>(&empty.buf).unwrap(),
            json!([])
        );
    }

    #[test]
    fn csv_export_quotes_and_says_when_cut() {
        let mut w = Writer::new(Format::Csv, 1);
        assert!(w.row(row(7, "one, \"two\"")));
        assert!(!w.row(row(8, "x")));
        let text = String::from_utf8(w.take().to_vec()).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(
            lines[0],
            "ID,Timestamp,Level,Category,Robot ID,Message,Details"
        );
        assert_eq!(
            lines[1],
            "7,2027-01-15T08:00:00+00:00,INFO,robot,tonypi_1,\"one, \"\"two\"\"\",\"{\"\"a\"\":1}\""
        );
        assert!(lines[2].starts_with("TRUNCATED,,,,,export truncated at 1 rows"));
    }

    #[test]
    fn time_ranges_are_tonypis() {
        assert_eq!(window(None).unwrap(), Duration::hours(24));
        assert_eq!(window(Some("30d")).unwrap(), Duration::days(30));
        for bad in ["2h", "", "24", "é", "1é"] {
            assert!(window(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_parameters() {
        assert_eq!(text("search", Some("")).unwrap(), None);
        assert!(text("search", Some(&"é".repeat(201))).is_err());
        assert_eq!(
            text("search", Some(&"é".repeat(200)))
                .unwrap()
                .unwrap()
                .len(),
            400
        );
    }
}
