//! Robots' metric readings, fleetsink's own routes (tag `metrics`): time-bucketed
//! statistics, each metric's latest value, and the metric names known (for dashboards'
//! variable pickers).
//!
//! `GET /api/v1/robots/{robot_id}/metrics?name=&from=&to=&bucket=`: per bucket and
//! metric, min, avg, max, last and count (`db::reads::metrics::METRIC_BUCKETS_SQL`).
//! `name` may repeat and may end in `*` (`servos.*`); `bucket` is 1s to 1d (default
//! 1m); the range defaults to the last hour. The answer is capped at `MAX_POINTS`
//! buckets × names: beyond it, a 400 says how to narrow the query. `Accept: text/csv`
//! gives CSV.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::db::reads::metrics;
use crate::http::extract::{Json, Path, Query};
use crate::http::{ApiError, Detail, HttpState, check_robot_id, csv_field, json_sized, robot_key};

/// The most points (buckets × metric names) one answer holds.
pub const MAX_POINTS: i64 = 10_000;

struct Params {
    names: Vec<String>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: Duration,
}

fn bad(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, detail)
}

/// Query parameters as pairs: `name` may repeat, which a struct cannot take.
fn params(pairs: Vec<(String, String)>) -> Result<Params, ApiError> {
    let mut names = Vec::new();
    let (mut from, mut to, mut bucket) = (None, None, Duration::from_secs(60));
    for (k, v) in pairs {
        match k.as_str() {
            "name" => names.push(v),
            "from" | "to" => {
                let t = DateTime::parse_from_rfc3339(&v)
                    .map_err(|_| {
                        bad(format!(
                            "{k} must be an RFC 3339 time, e.g. 2026-11-22T09:00:00Z"
                        ))
                    })?
                    .with_timezone(&Utc);
                if k == "from" {
                    from = Some(t)
                } else {
                    to = Some(t)
                }
            }
            "bucket" => {
                bucket = humantime::parse_duration(&v)
                    .map_err(|_| bad("bucket must be a duration such as 1s, 5m, 1h or 1d"))?;
            }
            other => return Err(bad(format!("unknown parameter {other:?}"))),
        }
    }
    if names.is_empty() {
        return Err(bad(
            "give at least one name (name=battery.percentage, or name=servos.*)",
        ));
    }
    if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&bucket) {
        return Err(bad("bucket must be between 1s and 1d"));
    }
    let to = to.unwrap_or_else(Utc::now);
    let from = from.unwrap_or(to - chrono::Duration::hours(1));
    if from >= to {
        return Err(bad("from must be before to"));
    }
    Ok(Params {
        names,
        from,
        to,
        bucket,
    })
}

/// One bucket of one metric.
#[derive(Debug, Serialize, ToSchema)]
pub struct Point {
    pub name: String,
    pub unit: Option<String>,
    /// The bucket's start.
    #[schema(format = DateTime)]
    pub bucket: String,
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    /// The value of the newest reading in the bucket.
    pub last: f64,
    /// Readings in the bucket.
    pub count: i64,
}

/// Time-bucketed statistics of some of a robot's metrics.
#[derive(Debug, Serialize, ToSchema)]
pub struct Buckets {
    pub robot_id: String,
    #[schema(format = DateTime)]
    pub from: String,
    #[schema(format = DateTime)]
    pub to: String,
    pub bucket_seconds: i64,
    /// By name, then bucket; empty buckets are left out.
    pub points: Vec<Point>,
}

/// Per bucket and metric: min, avg, max, last and count over `[from, to)`. With
/// `Accept: text/csv`, CSV with the header `name,unit,bucket,min,avg,max,last,count`.
#[utoipa::path(get, path = "/api/v1/robots/{robot_id}/metrics", tag = "metrics",
    params(
        ("robot_id" = String, Path, description = "The robot's id"),
        ("name" = Vec<String>, Query, explode = true,
         description = "A metric name, or a prefix ending in * (servos.*); repeat for more"),
        ("from" = Option<String>, Query, format = DateTime, description = "RFC 3339; default: an hour before `to`"),
        ("to" = Option<String>, Query, format = DateTime, description = "RFC 3339; default: now"),
        ("bucket" = Option<String>, Query, description = "1s to 1d, e.g. 10s, 1m, 1h; default 1m"),
    ),
    responses(
        (status = 200, content(
            (Buckets = "application/json"),
            (String = "text/csv", example = "name,unit,bucket,min,avg,max,last,count"))),
        (status = 400, description = "a bad parameter, or more than 10,000 points", body = Detail),
        (status = 404, body = Detail)))]
pub async fn buckets(
    State(s): State<HttpState>,
    Path(robot_id): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_robot_id(&robot_id)?;
    let p = params(pairs)?;
    let robot = robot_key(&s, &robot_id).await?;
    // Exact names, and `prefix*` patterns (LIKE with the prefix's own % and _ escaped).
    let exact: Vec<&str> = p
        .names
        .iter()
        .filter(|n| !n.ends_with('*'))
        .map(String::as_str)
        .collect();
    let prefixes: Vec<String> = p
        .names
        .iter()
        .filter_map(|n| n.strip_suffix('*'))
        .map(|pre| {
            format!(
                "{}%",
                pre.replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_")
            )
        })
        .collect();
    let ids = metrics::name_ids(&s.pool, &exact, &prefixes).await?;
    let bucket_secs = p.bucket.as_secs().max(1) as i64;
    let buckets = ((p.to - p.from).num_seconds() + bucket_secs - 1) / bucket_secs;
    let points = buckets.saturating_mul(ids.len().max(1) as i64);
    if points > MAX_POINTS {
        return Err(bad(format!(
            "the answer would hold up to {points} points ({buckets} buckets x {} metrics), more than {MAX_POINTS}; use a larger bucket, a shorter from/to range or fewer names",
            ids.len()
        )));
    }
    let rows = metrics::buckets(&s.pool, robot, p.from, p.to, p.bucket, &ids).await?;
    let csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    if csv {
        let mut out = String::from("name,unit,bucket,min,avg,max,last,count\n");
        for r in &rows {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{}\n",
                csv_field(&r.name),
                csv_field(r.unit.as_deref().unwrap_or_default()),
                r.bucket.to_rfc3339(),
                r.min,
                r.avg,
                r.max,
                r.last,
                r.count,
            ));
        }
        return Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response());
    }
    let points: Vec<Point> = rows
        .into_iter()
        .map(|r| Point {
            name: r.name,
            unit: r.unit,
            bucket: r.bucket.to_rfc3339(),
            min: r.min,
            avg: r.avg,
            max: r.max,
            last: r.last,
            count: r.count,
        })
        .collect();
    let size = points.len() * 160;
    let answer = Buckets {
        robot_id,
        from: p.from.to_rfc3339(),
        to: p.to.to_rfc3339(),
        bucket_seconds: bucket_secs,
        points,
    };
    Ok(json_sized(&answer, size))
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
    State(s): State<HttpState>,
    Path(robot_id): Path<String>,
) -> Result<Json<RobotLatest>, ApiError> {
    let robot = robot_key(&s, &robot_id).await?;
    let values = metrics::latest(&s.pool, robot, None)
        .await?
        .into_iter()
        .map(|l| LatestValue {
            name: l.name,
            unit: l.unit,
            value: l.value,
            time: l.ts.to_rfc3339(),
        })
        .collect();
    Ok(Json(RobotLatest {
        robot_id,
        metrics: values,
    }))
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
    State(s): State<HttpState>,
    Query(q): Query<NamesQuery>,
) -> Result<Json<Vec<MetricName>>, ApiError> {
    let rows = match &q.robot_id {
        None => metrics::names(&s.pool).await?,
        Some(robot_id) => {
            check_robot_id(robot_id)?;
            metrics::names_of_robot(&s.pool, robot_id).await?
        }
    };
    Ok(Json(
        rows.into_iter()
            .map(|r| MetricName {
                name: r.name,
                unit: r.unit,
            })
            .collect(),
    ))
}
