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

use super::dictionary::{Dictionary, Learned, push_name_key};
use super::rollups::{self, InsertedRows, RollupCache, RollupNotes};
use crate::model::{Decoded, repeats_earlier};

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

/// The metric rows of a batch, before their ids are known: per message its robot,
/// time and the range of its names and values (names deduplicated: a payload like
/// `{"a":{"b":1},"a.b":2}` flattens to the same name twice; the first value wins). The
/// names are [`NameKey`](super::dictionary::NameKey)s, slices of one buffer: no string
/// per value.
struct Rows<'a> {
    robot_id: Vec<&'a str>,
    ts: Vec<DateTime<Utc>>,
    /// Each row's range in `spans` and `values`.
    range: Vec<std::ops::Range<usize>>,
    /// Each name key's bytes in `buf`.
    spans: Vec<std::ops::Range<usize>>,
    buf: String,
    values: Vec<f64>,
}

impl<'a> Rows<'a> {
    fn of(messages: &[&'a Decoded]) -> Self {
        let values_len: usize = messages.iter().map(|d| d.metrics.len()).sum();
        let mut rows = Rows {
            robot_id: Vec::with_capacity(messages.len()),
            ts: Vec::with_capacity(messages.len()),
            range: Vec::with_capacity(messages.len()),
            spans: Vec::with_capacity(values_len),
            buf: String::with_capacity(values_len * 24),
            values: Vec::with_capacity(values_len),
        };
        for d in messages {
            let first = rows.spans.len();
            for m in &d.metrics {
                let start = rows.buf.len();
                push_name_key(&mut rows.buf, &m.name, m.unit.as_deref().unwrap_or(""));
                rows.spans.push(start..rows.buf.len());
                rows.values.push(m.value);
            }
            rows.drop_repeated_names(first);
            rows.robot_id.push(&d.robot_id);
            rows.ts.push(d.ts);
            rows.range.push(first..rows.spans.len());
        }
        rows
    }

    /// Drops the names (and their values) of the message starting at span `first`
    /// that an earlier name of it repeats: the first one stays.
    fn drop_repeated_names(&mut self, first: usize) {
        let n = self.spans.len() - first;
        let repeated = repeats_earlier(n, |i| &self.buf[self.spans[first + i].clone()]);
        if !repeated.contains(&true) {
            return;
        }
        let mut kept = first;
        let unique = (0..n).filter(|&i| !repeated[i]);
        for i in unique {
            self.spans[kept] = self.spans[first + i].clone();
            self.values[kept] = self.values[first + i];
            kept += 1;
        }
        self.spans.truncate(kept);
        self.values.truncate(kept);
    }

    fn keys(&self) -> Vec<&str> {
        self.spans.iter().map(|s| &self.buf[s.clone()]).collect()
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
    let rows = Rows::of(messages);
    let name_ids = dict.name_ids(conn, &rows.keys(), learned).await?;
    let per_row_ids: Vec<&[i32]> = rows.range.iter().map(|r| &name_ids[r.clone()]).collect();
    let set_ids = dict.set_ids(conn, &per_row_ids, learned).await?;

    let n = rows.range.len();
    let mut robot = Vec::with_capacity(n);
    let mut offset = Vec::with_capacity(n);
    let mut len = Vec::with_capacity(n);
    for (robot_id, r) in rows.robot_id.iter().zip(&rows.range) {
        let id = robots.get(*robot_id).copied().ok_or_else(|| {
            sqlx::Error::Protocol(format!(
                "robot {robot_id:?} was not upserted with its batch"
            ))
        })?;
        robot.push(id);
        offset.push(i32::try_from(r.start).unwrap_or(i32::MAX));
        len.push(i32::try_from(r.len()).unwrap_or(i32::MAX));
    }
    let (ts, values) = (rows.ts, rows.values);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MetricRow, TsSource};

    fn message(robot: &str, metrics: &[(&str, Option<&str>, f64)]) -> Decoded {
        let mut d = Decoded::empty(robot.into(), DateTime::UNIX_EPOCH, TsSource::Payload);
        d.metrics = metrics
            .iter()
            .map(|&(name, unit, value)| MetricRow {
                name: name.into(),
                value,
                unit: unit.map(Into::into),
            })
            .collect();
        d
    }

    #[test]
    fn rows_key_names_with_units_without_nuls_and_keep_a_names_first_value() {
        let a = message(
            "r1",
            &[
                ("a.b", None, 1.0),
                ("temp", Some("°C"), 2.0),
                ("a.b", None, 3.0),
                ("n\0ul", Some("u\0"), 4.0),
            ],
        );
        let b = message("r2", &[("a.b", None, 5.0)]);
        let rows = Rows::of(&[&a, &b]);
        assert_eq!(rows.keys(), vec!["a.b\0", "temp\0°C", "nul\0u", "a.b\0"]);
        assert_eq!(rows.values, vec![1.0, 2.0, 4.0, 5.0]);
        assert_eq!(rows.range, vec![0..3, 3..4]);
        assert_eq!(rows.robot_id, vec!["r1", "r2"]);
    }

    #[test]
    fn a_message_of_many_values_keeps_each_names_first_value() {
        let names: Vec<String> = (0..5000).map(|i| format!("k{}", i % 2500)).collect();
        let metrics: Vec<(&str, Option<&str>, f64)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), None, i as f64))
            .collect();
        let a = message("r1", &metrics);
        let b = message("r2", &[("x", None, 1.0)]);
        let rows = Rows::of(&[&a, &b]);
        assert_eq!(rows.range, vec![0..2500, 2500..2501]);
        let want: Vec<f64> = (0..2500).map(f64::from).chain([1.0]).collect();
        assert_eq!(rows.values, want);
        assert_eq!(rows.keys()[2499], "k2499\0");
    }
}
