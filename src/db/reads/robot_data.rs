//! The readings TonyPi's `robot_data` routes show: one measurement's readings over a
//! time range (where TonyPi queries InfluxDB), and the current battery and location
//! of many robots at once.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// One reading of one metric.
#[derive(Debug, sqlx::FromRow)]
pub struct Reading {
    pub robot_id: String,
    pub name: String,
    pub unit: Option<String>,
    pub ts: DateTime<Utc>,
    pub value: f64,
}

/// Which readings [`readings`] returns.
#[derive(Debug)]
pub struct ReadingFilter<'a> {
    /// At or after.
    pub since: DateTime<Utc>,
    pub robot_id: Option<&'a str>,
    /// A `LIKE` pattern on the metric name, e.g. `battery.%`.
    pub name_like: &'a str,
    /// Only sensor readings: names without a dot, except `servo_count`.
    pub sensors_only: bool,
    pub limit: i64,
}

/// The newest `f.limit` readings matching `f`, oldest first (as TonyPi's InfluxDB
/// answers a range: the last item is the latest).
pub async fn readings(pool: &PgPool, f: &ReadingFilter<'_>) -> Result<Vec<Reading>, sqlx::Error> {
    sqlx::query_as(
        "SELECT * FROM ( \
             SELECT r.robot_id, n.name, NULLIF(n.unit, '') AS unit, m.ts, v.value \
             FROM metrics m JOIN robots r ON r.id = m.robot \
             JOIN metric_sets s ON s.id = m.set_id \
             CROSS JOIN LATERAL unnest(s.name_ids, m.vals) AS v(name_id, value) \
             JOIN metric_names n ON n.id = v.name_id \
             WHERE m.ts >= $1 AND ($2::text IS NULL OR r.robot_id = $2) \
               AND n.name LIKE $3 \
               AND ($4 OR (position('.' in n.name) = 0 AND n.name <> 'servo_count')) \
             ORDER BY m.ts DESC, r.robot_id, n.name LIMIT $5) newest \
         ORDER BY ts, robot_id, name",
    )
    .bind(f.since)
    .bind(f.robot_id)
    .bind(f.name_like)
    .bind(!f.sensors_only)
    .bind(f.limit)
    .fetch_all(pool)
    .await
}

/// A robot's current value of one metric.
#[derive(Debug, sqlx::FromRow)]
pub struct RobotValue {
    /// The robot's key (`robots.id`).
    pub robot: i32,
    pub name: String,
    pub value: f64,
}

/// The latest `battery.percentage` and `location.*` values at or after `since` of the
/// robots with these keys: one query whatever the fleet size. The wanted names' places
/// in each metric set are found first (the sets are a few dozen shapes), so only the
/// latest rows of sets that hold one are read, and only those values taken out of them,
/// instead of unnesting every latest row of every robot. The set ids are also given as
/// an array filter: joined only, the planner (which cannot estimate the CTE) hashed
/// every robot's latest rows (BENCHMARKS.md, "robot-data/status").
pub async fn battery_and_location(
    pool: &PgPool,
    robots: &[i32],
    since: DateTime<Utc>,
) -> Result<Vec<RobotValue>, sqlx::Error> {
    sqlx::query_as(
        "WITH wanted AS MATERIALIZED ( \
             SELECT s.id AS set_id, n.name, p.pos::int AS pos \
             FROM metric_sets s \
             CROSS JOIN LATERAL unnest(s.name_ids) WITH ORDINALITY AS p(name_id, pos) \
             JOIN metric_names n ON n.id = p.name_id \
             WHERE n.name = 'battery.percentage' OR n.name LIKE 'location.%') \
         SELECT DISTINCT ON (l.robot, w.name) l.robot, w.name, l.vals[w.pos] AS value \
         FROM metric_latest l \
         JOIN wanted w ON w.set_id = l.set_id \
         WHERE l.set_id = ANY (ARRAY(SELECT set_id FROM wanted)) \
           AND l.robot = ANY($1) AND l.ts >= $2 AND l.vals[w.pos] IS NOT NULL \
         ORDER BY l.robot, w.name, l.ts DESC",
    )
    .bind(robots)
    .bind(since)
    .fetch_all(pool)
    .await
}
