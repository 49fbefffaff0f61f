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
//! 2-D array parameter must be rectangular. Binary `COPY` ([`MetricsWrite::Copy`]) is
//! kept only as the measured alternative: with sqlx 0.9.1 (`TCP_NODELAY` again) it was
//! still not faster than the insert (a round trip more, the same per-row partition and
//! unique-index work; BENCHMARKS.md, "Binary COPY against UNNEST"), so the sink uses
//! the insert.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use super::clean;
use super::dictionary::{Dictionary, Learned, NameKey};
use super::rollups::{self, InsertedRows, RollupCache, RollupNotes};
use crate::model::Decoded;

/// How metric rows are inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsWrite {
    /// Plain `INSERT … SELECT FROM UNNEST`: the fast path. Fails with a unique
    /// violation (SQLSTATE 23505, see [`is_unique_violation`]) when any row exists.
    Plain,
    /// `INSERT … ON CONFLICT DO NOTHING`: skips rows that already exist.
    SkipExisting,
    /// Binary `COPY`: like [`MetricsWrite::Plain`] (all rows or a unique violation),
    /// measured against it (BENCHMARKS.md, "binary COPY against UNNEST").
    Copy,
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

/// Where a batch's metric rows go besides `metrics`.
pub(super) struct Targets<'a> {
    pub dict: &'a Dictionary,
    pub learned: &'a mut Learned,
    /// The worker's rollups: the rows inserted are noted for them.
    pub rollups: &'a RollupCache,
    pub rollup_notes: &'a mut RollupNotes,
}

/// Inserts the metrics of `messages` (each with at least one metric), keeps
/// `metric_latest` and notes the rows that went in for the worker's rollups. `robots`
/// maps robot ids to `robots.id`. Returns the number of metric values written.
pub(super) async fn insert(
    conn: &mut PgConnection,
    messages: &[&Decoded],
    robots: &HashMap<String, i32>,
    t: Targets<'_>,
    mode: MetricsWrite,
) -> Result<u64, sqlx::Error> {
    let (dict, learned) = (t.dict, t.learned);
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
    let mut fresh_rows: Option<HashSet<usize>> = None;
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
        MetricsWrite::Copy => {
            let data = copy_binary(&robot, &ts, &set_ids, &offset, &len, &values);
            let mut copy = conn
                .copy_in_raw("COPY metrics (ts, robot, set_id, vals) FROM STDIN (FORMAT binary)")
                .await?;
            copy.send(data).await?;
            copy.finish().await?;
            values.len() as u64
        }
        MetricsWrite::SkipExisting => {
            // The rows that went in, for the rollups: a skipped (redelivered) row is
            // already folded into them.
            let inserted: Vec<(i32, DateTime<Utc>, i32)> = sqlx::query_as(concat!(
                insert_sql!(),
                " ON CONFLICT DO NOTHING RETURNING robot, ts, set_id"
            ))
            .bind(&robot)
            .bind(&ts)
            .bind(&set_ids)
            .bind(&offset)
            .bind(&len)
            .bind(&values)
            .fetch_all(&mut *conn)
            .await?;
            // By microsecond, as PostgreSQL keeps the times sqlx sends (truncated).
            // Each row returned is one row of the batch: of two equal keys in one batch
            // the first went in (the second conflicted with it).
            let mut inserted: HashSet<(i32, i64, i32)> = inserted
                .into_iter()
                .map(|(r, t, s)| (r, t.timestamp_micros(), s))
                .collect();
            let fresh: HashSet<usize> = (0..n)
                .filter(|&i| inserted.remove(&(robot[i], ts[i].timestamp_micros(), set_ids[i])))
                .collect();
            let written = fresh
                .iter()
                .map(|&i| u64::try_from(len[i]).unwrap_or(0))
                .sum();
            fresh_rows = Some(fresh);
            written
        }
    };
    let rows = InsertedRows {
        robot: &robot,
        ts: &ts,
        set_ids: &set_ids,
        offset: &offset,
        len: &len,
        values: &values,
        fresh: fresh_rows.as_ref(),
    };
    rollups::record(conn, t.rollups, rows, t.rollup_notes).await?;
    upsert_latest(conn, &robot, &ts, &set_ids, &offset, &len, &values).await?;
    Ok(written)
}

/// PostgreSQL's epoch (2000-01-01T00:00:00Z) in Unix microseconds.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The rows in `COPY … (FORMAT binary)` form, columns (ts, robot, set_id, vals):
/// the signature and header, per row its field count and each field's length and
/// bytes (big-endian; `vals` a one-dimensional float8 array), and the trailer.
fn copy_binary(
    robot: &[i32],
    ts: &[DateTime<Utc>],
    set_ids: &[i32],
    offset: &[i32],
    len: &[i32],
    values: &[f64],
) -> Vec<u8> {
    const FLOAT8_OID: u32 = 701;
    let mut b = Vec::with_capacity(19 + robot.len() * 54 + values.len() * 12 + 2);
    b.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    b.extend_from_slice(&0i32.to_be_bytes()); // flags
    b.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    for i in 0..robot.len() {
        let from = usize::try_from(offset[i]).unwrap_or(0);
        let n = usize::try_from(len[i]).unwrap_or(0);
        let vals = &values[from..from + n];
        b.extend_from_slice(&4i16.to_be_bytes());
        b.extend_from_slice(&8i32.to_be_bytes());
        b.extend_from_slice(&(ts[i].timestamp_micros() - PG_EPOCH_MICROS).to_be_bytes());
        b.extend_from_slice(&4i32.to_be_bytes());
        b.extend_from_slice(&robot[i].to_be_bytes());
        b.extend_from_slice(&4i32.to_be_bytes());
        b.extend_from_slice(&set_ids[i].to_be_bytes());
        let n32 = i32::try_from(n).unwrap_or(i32::MAX);
        if vals.is_empty() {
            b.extend_from_slice(&12i32.to_be_bytes());
            b.extend_from_slice(&0i32.to_be_bytes()); // no dimensions
            b.extend_from_slice(&0i32.to_be_bytes()); // no NULLs
            b.extend_from_slice(&FLOAT8_OID.to_be_bytes());
            continue;
        }
        b.extend_from_slice(&(20 + 12 * n32).to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes()); // one dimension
        b.extend_from_slice(&0i32.to_be_bytes()); // no NULLs
        b.extend_from_slice(&FLOAT8_OID.to_be_bytes());
        b.extend_from_slice(&n32.to_be_bytes()); // its length
        b.extend_from_slice(&1i32.to_be_bytes()); // its lower bound
        for v in vals {
            b.extend_from_slice(&8i32.to_be_bytes());
            b.extend_from_slice(&v.to_bits().to_be_bytes());
        }
    }
    b.extend_from_slice(&(-1i16).to_be_bytes());
    b
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
