//! `metrics`: one compact row per message with metrics — the robot's integer key, the
//! time, the id of the message's set of metric names, and the values in that order
//! (ARCHITECTURE.md, "Metric storage"; BENCHMARKS.md has the shapes measured).
//!
//! The fast path is a plain `INSERT … SELECT FROM UNNEST` ([`MetricsWrite::Plain`]):
//! without `ON CONFLICT`, PostgreSQL skips the speculative insertion. A redelivered
//! message makes that insert fail on the (robot, ts, set_id) unique key; the sink then
//! rolls back and writes the same batch again with [`MetricsWrite::SkipExisting`]
//! (`ON CONFLICT DO NOTHING`). The values of all rows travel as one flat array plus
//! each row's offset and length, since rows have different numbers of values and a
//! 2-D array parameter must be rectangular. Binary `COPY` is not used: sqlx 0.9.0 does
//! not set `TCP_NODELAY`, and the separate CopyData/CopyDone writes then wait out the
//! peer's delayed ACK (~40 ms per batch, measured).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::clean;
use super::dictionary::{Dictionary, Learned, NameKey};
use crate::model::Decoded;

/// How metric rows are inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsWrite {
    /// Plain `INSERT … SELECT FROM UNNEST`: the fast path. Fails with a unique
    /// violation (SQLSTATE 23505, see [`is_unique_violation`]) when any row exists.
    Plain,
    /// `INSERT … ON CONFLICT DO NOTHING`: skips rows that already exist.
    SkipExisting,
}

/// Whether `e` is the unique violation a [`MetricsWrite::Plain`] insert of an already
/// written row raises.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// The insert's `SELECT` (a literal, so both statements below are `&'static str`).
macro_rules! insert_sql {
    () => {
        "INSERT INTO metrics (ts, robot, set_id, vals) \
         SELECT t, r, s, ($6::float8[])[o + 1 : o + l] \
         FROM UNNEST($1::int4[], $2::timestamptz[], $3::int4[], $4::int4[], $5::int4[]) AS x(r, t, s, o, l)"
    };
}

/// One message's values, names deduplicated (a payload like `{"a":{"b":1},"a.b":2}`
/// flattens to the same name twice; the first value wins).
struct Row<'a> {
    robot_id: &'a str,
    ts: DateTime<Utc>,
    names: Vec<NameKey>,
    values: Vec<f64>,
}

fn row(d: &Decoded) -> Row<'_> {
    let mut names: Vec<NameKey> = Vec::with_capacity(d.metrics.len());
    let mut values = Vec::with_capacity(d.metrics.len());
    for m in &d.metrics {
        let key = (
            clean(&m.name),
            m.unit.as_deref().map(clean).unwrap_or_default(),
        );
        if !names.contains(&key) {
            names.push(key);
            values.push(m.value);
        }
    }
    Row {
        robot_id: &d.robot_id,
        ts: d.ts,
        names,
        values,
    }
}

/// Inserts the metrics of `messages` (each with at least one metric). `robots` maps
/// robot ids to `robots.id`. Returns the number of metric values written.
pub(super) async fn insert(
    conn: &mut PgConnection,
    messages: &[&Decoded],
    robots: &HashMap<String, i32>,
    dict: &Dictionary,
    learned: &mut Learned,
    mode: MetricsWrite,
) -> Result<u64, sqlx::Error> {
    let rows: Vec<Row> = messages.iter().map(|d| row(d)).collect();
    let keys: Vec<&NameKey> = rows.iter().flat_map(|r| r.names.iter()).collect();
    let name_ids = dict.name_ids(conn, &keys, learned).await?;
    let mut per_row_ids: Vec<&[i32]> = Vec::with_capacity(rows.len());
    let mut at = 0;
    for r in &rows {
        per_row_ids.push(&name_ids[at..at + r.names.len()]);
        at += r.names.len();
    }
    let set_ids = dict.set_ids(conn, &per_row_ids, learned).await?;

    let n = rows.len();
    let mut robot = Vec::with_capacity(n);
    let mut ts = Vec::with_capacity(n);
    let mut offset = Vec::with_capacity(n);
    let mut len = Vec::with_capacity(n);
    let mut values: Vec<f64> = Vec::with_capacity(keys.len());
    for r in &rows {
        let id = robots.get(r.robot_id).copied().ok_or_else(|| {
            sqlx::Error::Protocol(format!(
                "robot {:?} was not upserted with its batch",
                r.robot_id
            ))
        })?;
        robot.push(id);
        ts.push(r.ts);
        offset.push(i32::try_from(values.len()).unwrap_or(i32::MAX));
        len.push(i32::try_from(r.values.len()).unwrap_or(i32::MAX));
        values.extend_from_slice(&r.values);
    }
    let written = match mode {
        MetricsWrite::Plain => {
            sqlx::query(insert_sql!())
                .bind(&robot)
                .bind(&ts)
                .bind(&set_ids)
                .bind(&offset)
                .bind(&len)
                .bind(&values)
                .execute(&mut *conn)
                .await?;
            // Every row went in (or the statement failed): all values were written.
            values.len() as u64
        }
        MetricsWrite::SkipExisting => {
            let written: i64 = sqlx::query_scalar(concat!(
                "WITH ins AS (",
                insert_sql!(),
                " ON CONFLICT DO NOTHING RETURNING cardinality(vals) AS n) \
                 SELECT COALESCE(sum(n), 0)::int8 FROM ins"
            ))
            .bind(&robot)
            .bind(&ts)
            .bind(&set_ids)
            .bind(&offset)
            .bind(&len)
            .bind(&values)
            .fetch_one(&mut *conn)
            .await?;
            written.max(0) as u64
        }
    };
    upsert_latest(conn, &robot, &ts, &set_ids, &offset, &len, &values).await?;
    Ok(written)
}

/// Keeps `metric_latest` (the newest row of each robot's metric set) current: one row
/// per (robot, set) of the batch, its newest, replacing a stored row only when newer —
/// so a redelivered or late message never moves it back. Rows are sent in key order so
/// that two instances upserting the same robots lock them in one order (no deadlock).
async fn upsert_latest(
    conn: &mut PgConnection,
    robot: &[i32],
    ts: &[DateTime<Utc>],
    set_ids: &[i32],
    offset: &[i32],
    len: &[i32],
    values: &[f64],
) -> Result<(), sqlx::Error> {
    let mut newest: HashMap<(i32, i32), usize> = HashMap::new();
    for i in 0..robot.len() {
        newest
            .entry((robot[i], set_ids[i]))
            .and_modify(|j| {
                if ts[i] > ts[*j] {
                    *j = i;
                }
            })
            .or_insert(i);
    }
    let mut picked: Vec<((i32, i32), usize)> = newest.into_iter().collect();
    picked.sort_unstable();
    let n = picked.len();
    let (mut r, mut t, mut s) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut o, mut l, mut v) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::new());
    for ((robot_key, set), i) in picked {
        r.push(robot_key);
        s.push(set);
        t.push(ts[i]);
        let from = usize::try_from(offset[i]).unwrap_or(0);
        let count = usize::try_from(len[i]).unwrap_or(0);
        o.push(i32::try_from(v.len()).unwrap_or(i32::MAX));
        l.push(len[i]);
        v.extend_from_slice(&values[from..from + count]);
    }
    sqlx::query(
        "INSERT INTO metric_latest (robot, set_id, ts, vals) \
         SELECT r, s, t, ($6::float8[])[o + 1 : o + l] \
         FROM UNNEST($1::int4[], $2::timestamptz[], $3::int4[], $4::int4[], $5::int4[]) AS x(r, t, s, o, l) \
         ON CONFLICT (robot, set_id) DO UPDATE SET ts = EXCLUDED.ts, vals = EXCLUDED.vals \
         WHERE metric_latest.ts < EXCLUDED.ts",
    )
    .bind(&r)
    .bind(&t)
    .bind(&s)
    .bind(&o)
    .bind(&l)
    .bind(&v)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
