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

/// [`METRIC_BUCKETS_SQL`] over two kinds of sources: the robot's rows in the ranges
/// `$6`/`$7` (from, to pairs) and its per-minute rollups in the ranges `$8`/`$9`
/// (minutes the rollups cover completely, `db/writes/rollups.rs`). `picks` says, once
/// per metric set holding a wanted name, where the name is in the set (p, of k names).
/// A row counts as a partial of one message; a rollup row holds a robot's minute, per
/// set (at position i of its arrays, found without unnesting them) its count, newest
/// time and block of values at offset o: the minimum, maximum, sum and newest value of
/// the name at p are at o + p, o + k + p, o + 2k + p and o + 3k + p. The buckets
/// combine partials: minimum of minimums, sum over count, maximum of maximums, the
/// newest partial's newest value. Each range is its own index scan (`OFFSET 0` keeps
/// the planner from merging the ranges into one scan of all the robot's rows filtered
/// afterwards).
pub const METRIC_BUCKETS_ROLLED_SQL: &str = "\
    WITH picks AS ( \
        SELECT s.id AS set_id, w.id AS name_id, array_position(s.name_ids, w.id) AS p, \
               cardinality(s.name_ids) AS k \
        FROM metric_sets s JOIN unnest($5::int4[]) AS w(id) ON w.id = ANY (s.name_ids) \
        WHERE s.name_ids && $5::int4[]), \
    parts AS ( \
        SELECT c.name_id, m.ts AS at, 1::int8 AS n, m.ts AS last_ts, \
               m.vals[c.p] AS lo, m.vals[c.p] AS hi, m.vals[c.p] AS total, m.vals[c.p] AS newest \
        FROM unnest($6::timestamptz[], $7::timestamptz[]) AS g(lo, hi) \
        CROSS JOIN LATERAL ( \
            SELECT ts, set_id, vals FROM metrics \
            WHERE robot = $1 AND ts >= g.lo AND ts < g.hi \
              AND set_id IN (SELECT set_id FROM picks) OFFSET 0) AS m \
        JOIN picks c ON c.set_id = m.set_id \
        UNION ALL \
        SELECT c.name_id, r.minute, r.ns[x.i], r.last_ts[x.i], \
               r.vals[r.offs[x.i] + c.p], r.vals[r.offs[x.i] + c.k + c.p], \
               r.vals[r.offs[x.i] + 2 * c.k + c.p], r.vals[r.offs[x.i] + 3 * c.k + c.p] \
        FROM unnest($8::timestamptz[], $9::timestamptz[]) AS g(lo, hi) \
        CROSS JOIN LATERAL ( \
            SELECT minute, set_ids, ns, last_ts, offs, vals FROM metric_rollups \
            WHERE robot = $1 AND minute >= g.lo AND minute < g.hi OFFSET 0) AS r \
        JOIN picks c ON c.set_id = ANY (r.set_ids) \
        CROSS JOIN LATERAL (SELECT array_position(r.set_ids, c.set_id) AS i) AS x) \
    SELECT n.name, NULLIF(n.unit, '') AS unit, date_bin($4::interval, p.at, 'epoch') AS bucket, \
           min(p.lo) AS min, sum(p.total) / sum(p.n)::float8 AS avg, max(p.hi) AS max, \
           (array_agg(p.newest ORDER BY p.last_ts DESC))[1] AS last, sum(p.n)::int8 AS count \
    FROM parts p JOIN metric_names n ON n.id = p.name_id \
    GROUP BY n.name, n.unit, bucket ORDER BY n.name, bucket";

/// The minutes of `[from, to)` whose rollups are complete: every worker that inserted
/// rows in the minute sealed it (`metric_rollup_marks`).
const SEALED_MINUTES_SQL: &str = "\
    SELECT minute FROM metric_rollup_marks WHERE minute >= $1 AND minute < $2 \
    GROUP BY minute HAVING bool_and(sealed) ORDER BY minute";

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

/// Time-bucketed statistics of robot key `robot`'s metrics `names` over `[from, to)`.
/// With buckets of whole minutes, the whole minutes the rollups cover completely are
/// read from them ([`METRIC_BUCKETS_ROLLED_SQL`]: a day at 1-minute buckets reads
/// ~1,440 rollup rows per metric set instead of every message) and the rest — the
/// partial minutes at the ends, the current minute, any minute not sealed — from the
/// rows; otherwise everything from the rows ([`METRIC_BUCKETS_SQL`]).
pub async fn buckets(
    pool: &PgPool,
    robot: i32,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: Duration,
    names: &[i32],
) -> Result<Vec<BucketRow>, sqlx::Error> {
    let whole_minutes =
        bucket.subsec_nanos() == 0 && bucket.as_secs() >= 60 && bucket.as_secs().is_multiple_of(60);
    let (first, end) = (ceil_minute(from), floor_minute(to));
    let sealed: Vec<DateTime<Utc>> = if whole_minutes && first < end {
        sqlx::query_scalar(SEALED_MINUTES_SQL)
            .bind(first)
            .bind(end)
            .fetch_all(pool)
            .await?
    } else {
        Vec::new()
    };
    if sealed.is_empty() {
        return sqlx::query_as(METRIC_BUCKETS_SQL)
            .bind(robot)
            .bind(from)
            .bind(to)
            .bind(bucket)
            .bind(names)
            .fetch_all(pool)
            .await;
    }
    let s = split(from, to, &sealed);
    sqlx::query_as(METRIC_BUCKETS_ROLLED_SQL)
        .bind(robot)
        .bind(from)
        .bind(to)
        .bind(bucket)
        .bind(names)
        .bind(&s.rows_from)
        .bind(&s.rows_to)
        .bind(&s.rolled_from)
        .bind(&s.rolled_to)
        .fetch_all(pool)
        .await
}

fn floor_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    let s = t.timestamp().div_euclid(60) * 60;
    DateTime::from_timestamp(s, 0).unwrap_or(t)
}

fn ceil_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    let f = floor_minute(t);
    if f == t {
        t
    } else {
        f + chrono::Duration::minutes(1)
    }
}

/// `[from, to)` cut into the ranges read from rows and the ranges read from rollups.
#[derive(Debug, Default, PartialEq)]
struct Split {
    rows_from: Vec<DateTime<Utc>>,
    rows_to: Vec<DateTime<Utc>>,
    rolled_from: Vec<DateTime<Utc>>,
    rolled_to: Vec<DateTime<Utc>>,
}

/// `sealed`: ascending minute starts, each minute inside `[from, to)`. Consecutive
/// minutes make one range; the gaps and ends are read from rows.
fn split(from: DateTime<Utc>, to: DateTime<Utc>, sealed: &[DateTime<Utc>]) -> Split {
    let minute = chrono::Duration::minutes(1);
    let mut s = Split::default();
    let mut at = from;
    for &m in sealed {
        if m < at || m + minute > to {
            continue;
        }
        if s.rolled_to.last() == Some(&m) {
            if let Some(end) = s.rolled_to.last_mut() {
                *end = m + minute;
            }
        } else {
            if at < m {
                s.rows_from.push(at);
                s.rows_to.push(m);
            }
            s.rolled_from.push(m);
            s.rolled_to.push(m + minute);
        }
        at = m + minute;
    }
    if at < to {
        s.rows_from.push(at);
        s.rows_to.push(to);
    }
    s
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

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn minutes_round_both_ways() {
        assert_eq!(
            floor_minute(t("2026-12-07T10:00:59.9Z")),
            t("2026-12-07T10:00:00Z")
        );
        assert_eq!(
            ceil_minute(t("2026-12-07T10:00:00.1Z")),
            t("2026-12-07T10:01:00Z")
        );
        assert_eq!(
            ceil_minute(t("2026-12-07T10:01:00Z")),
            t("2026-12-07T10:01:00Z")
        );
    }

    #[test]
    fn sealed_minutes_are_read_rolled_and_the_rest_from_rows() {
        let from = t("2026-12-07T10:00:30Z");
        let to = t("2026-12-07T10:06:10Z");
        let sealed = [
            t("2026-12-07T10:01:00Z"),
            t("2026-12-07T10:02:00Z"),
            t("2026-12-07T10:04:00Z"),
        ];
        let s = split(from, to, &sealed);
        assert_eq!(
            s.rolled_from,
            vec![t("2026-12-07T10:01:00Z"), t("2026-12-07T10:04:00Z")]
        );
        assert_eq!(
            s.rolled_to,
            vec![t("2026-12-07T10:03:00Z"), t("2026-12-07T10:05:00Z")]
        );
        // The partial first minute, the unsealed 10:03 and the rest from 10:05 on.
        assert_eq!(
            s.rows_from,
            vec![from, t("2026-12-07T10:03:00Z"), t("2026-12-07T10:05:00Z")]
        );
        assert_eq!(
            s.rows_to,
            vec![t("2026-12-07T10:01:00Z"), t("2026-12-07T10:04:00Z"), to]
        );
    }

    #[test]
    fn a_range_of_sealed_minutes_only_reads_no_rows() {
        let from = t("2026-12-07T10:00:00Z");
        let to = t("2026-12-07T10:02:00Z");
        let s = split(from, to, &[from, t("2026-12-07T10:01:00Z")]);
        assert!(s.rows_from.is_empty() && s.rows_to.is_empty());
        assert_eq!((s.rolled_from, s.rolled_to), (vec![from], vec![to]));
        // Minutes outside the range are ignored.
        let s = split(
            from,
            to,
            &[t("2026-12-07T09:59:00Z"), t("2026-12-07T10:02:00Z")],
        );
        assert_eq!((s.rows_from, s.rows_to), (vec![from], vec![to]));
    }
}
