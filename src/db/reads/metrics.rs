//! Robots' metric readings as the API reads them: time-bucketed statistics, the latest
//! value of each metric (from `metric_latest`), and the metric names known. Storage is
//! one row per message (`metrics(ts, robot, set_id, vals)`, ARCHITECTURE.md, "Metric
//! storage"), so every query names its values through `metric_sets`/`metric_names`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgPool, Row};

/// Time-bucketed statistics of some of one robot's metrics over `[from, to)`:
/// `$1` robot key (`robots.id`), `$2` from, `$3` to, `$4` bucket width, `$5` the
/// metric name ids wanted. Only the day partitions of the range are read (pruning on
/// `ts`), and only the robot's rows of them (the `(robot, ts, set_id)` index); rows are
/// narrowed to the metric sets holding a wanted name, and only the wanted values are
/// taken out of each row (by their position in its set) instead of unnesting all of
/// them: half the time on a row of 20 values (BENCHMARKS.md).
pub const METRIC_BUCKETS_SQL: &str = "\
    SELECT n.name, NULLIF(n.unit, '') AS unit, date_bin($4::interval, m.ts, 'epoch') AS bucket, \
           min(v.value) AS min, avg(v.value) AS avg, max(v.value) AS max, \
           (array_agg(v.value ORDER BY m.ts DESC))[1] AS last, count(*) AS count \
    FROM metrics m \
    JOIN metric_sets s ON s.id = m.set_id \
    CROSS JOIN LATERAL ( \
        SELECT w.id AS name_id, m.vals[array_position(s.name_ids, w.id)] AS value \
        FROM unnest($5::int4[]) AS w(id) WHERE w.id = ANY (s.name_ids)) AS v \
    JOIN metric_names n ON n.id = v.name_id \
    WHERE m.robot = $1 AND m.ts >= $2 AND m.ts < $3 \
      AND m.set_id IN (SELECT id FROM metric_sets WHERE name_ids && $5::int4[]) \
    GROUP BY n.name, n.unit, bucket ORDER BY n.name, bucket";

/// One bucket of one metric.
#[derive(Debug)]
pub struct BucketRow {
    pub name: String,
    pub unit: Option<String>,
    /// The bucket's start.
    pub bucket: DateTime<Utc>,
    pub min: f64,
    pub avg: f64,
    pub max: f64,
    /// The newest reading's value.
    pub last: f64,
    pub count: i64,
}

/// By column position ([`METRIC_BUCKETS_SQL`]'s order): a day at 1-minute buckets is
/// 1,440 rows per name.
impl FromRow<'_, PgRow> for BucketRow {
    fn from_row(r: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(BucketRow {
            name: r.try_get(0)?,
            unit: r.try_get(1)?,
            bucket: r.try_get(2)?,
            min: r.try_get(3)?,
            avg: r.try_get(4)?,
            max: r.try_get(5)?,
            last: r.try_get(6)?,
            count: r.try_get(7)?,
        })
    }
}

/// [`METRIC_BUCKETS_SQL`] for robot key `robot` and the metric name ids `names`.
pub async fn buckets(
    pool: &PgPool,
    robot: i32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: Duration,
    names: &[i32],
) -> Result<Vec<BucketRow>, sqlx::Error> {
    sqlx::query_as(METRIC_BUCKETS_SQL)
        .bind(robot)
        .bind(from)
        .bind(to)
        .bind(bucket)
        .bind(names)
        .fetch_all(pool)
        .await
}

/// The ids of the metric names equal to one of `exact` or `LIKE` one of `patterns`.
pub async fn name_ids(
    pool: &PgPool,
    exact: &[&str],
    patterns: &[String],
) -> Result<Vec<i32>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM metric_names WHERE name = ANY ($1) OR name LIKE ANY ($2)")
        .bind(exact)
        .bind(patterns)
        .fetch_all(pool)
        .await
}

/// One metric's latest value.
#[derive(Debug, sqlx::FromRow)]
pub struct Latest {
    pub name: String,
    pub unit: Option<String>,
    pub ts: DateTime<Utc>,
    pub value: f64,
}

/// The latest value of each metric of robot `robot` (its `robots.id`), optionally only
/// from rows at or after `since`: a primary-key read of `metric_latest`, the newest
/// row of each of the robot's metric sets, kept by the batch that writes `metrics`.
pub async fn latest(
    pool: &PgPool,
    robot: i32,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<Latest>, sqlx::Error> {
    sqlx::query_as(
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
    .fetch_all(pool)
    .await
}

/// A metric name and its unit (`None` when it has none).
#[derive(Debug, sqlx::FromRow)]
pub struct NameUnit {
    pub name: String,
    pub unit: Option<String>,
}

/// Every metric name known, by name.
pub async fn names(pool: &PgPool) -> Result<Vec<NameUnit>, sqlx::Error> {
    sqlx::query_as("SELECT name, NULLIF(unit, '') AS unit FROM metric_names ORDER BY name, unit")
        .fetch_all(pool)
        .await
}

/// The metric names robot `robot_id` has sent, by name.
pub async fn names_of_robot(pool: &PgPool, robot_id: &str) -> Result<Vec<NameUnit>, sqlx::Error> {
    sqlx::query_as(
        "SELECT DISTINCT n.name, NULLIF(n.unit, '') AS unit \
         FROM (SELECT DISTINCT set_id FROM metrics m JOIN robots r ON r.id = m.robot \
               WHERE r.robot_id = $1) u \
         JOIN metric_sets s ON s.id = u.set_id \
         JOIN metric_names n ON n.id = ANY (s.name_ids) ORDER BY 1, 2",
    )
    .bind(robot_id)
    .fetch_all(pool)
    .await
}
