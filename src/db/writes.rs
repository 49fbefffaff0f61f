//! The SQL that writes one batch, inside the caller's transaction.
//!
//! Metrics — nearly all rows — go in by a plain `INSERT … SELECT FROM UNNEST`
//! ([`MetricsWrite::Plain`]): without `ON CONFLICT`, PostgreSQL skips the speculative
//! insertion and the batch commits faster (BENCHMARKS.md). A redelivered message makes
//! that insert fail on the (robot_id, name, ts) unique key; the caller then rolls back
//! and writes the same batch again with [`MetricsWrite::SkipExisting`]
//! (`ON CONFLICT DO NOTHING`). Binary `COPY` is not used: sqlx 0.9.0 does not set
//! `TCP_NODELAY`, and the separate CopyData/CopyDone writes then wait out the peer's
//! delayed ACK (~40 ms per batch, measured). Every other table is written with one `UNNEST`
//! statement per batch (plus one statement per job event, which are rare) and is
//! idempotent on its own: logs are unique on (dedup_key, ts), jobs on
//! (robot_id, start_time). A redelivered message therefore adds no rows.
//! Robots are upserted once per robot per batch, in robot-id order (so concurrent
//! instances cannot deadlock), and `last_seen` never moves backwards.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;

use crate::pipeline::decode::{Decoded, JobAction, JobEvent, LogRow, MetricRow, Unusable};

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

/// A message that cannot be used, as stored in `ingest_errors`.
#[derive(Debug, Clone)]
pub struct ErrorRow<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub reason: &'a str,
    pub detail: &'a str,
    pub client_id: Option<&'a str>,
    pub received_at: DateTime<Utc>,
}

/// One message's contribution to a batch write.
pub enum Outcome<'a> {
    Rows {
        decoded: &'a Decoded,
        received_at: DateTime<Utc>,
    },
    Error(ErrorRow<'a>),
}

/// Rows committed, per table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub robots: u64,
    pub metrics: u64,
    pub logs: u64,
    pub jobs: u64,
    pub ingest_errors: u64,
}

#[derive(Default)]
struct RobotAgg {
    first_seen: Option<DateTime<Utc>>,
    last_seen: Option<DateTime<Utc>>,
    first_status: Option<(String, DateTime<Utc>)>,
    last_status: Option<(String, DateTime<Utc>)>,
    ip_address: Option<String>,
    camera_url: Option<String>,
}

/// PostgreSQL text and jsonb cannot hold NUL; JSON may carry it as `\u0000`.
fn clean(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "")
    } else {
        s.to_string()
    }
}

fn clean_json(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(clean(s)),
        Value::Array(a) => Value::Array(a.iter().map(clean_json).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (clean(k), clean_json(v))).collect())
        }
        other => other.clone(),
    }
}

/// Writes everything `outcomes` produced. The caller owns the transaction.
pub async fn write(
    conn: &mut PgConnection,
    outcomes: &[Outcome<'_>],
    error_payload_cap: usize,
    metrics_write: MetricsWrite,
) -> Result<Written, sqlx::Error> {
    let mut robots: BTreeMap<&str, RobotAgg> = BTreeMap::new();
    let mut metrics: Vec<&MetricRow> = Vec::new();
    let mut logs: Vec<LogRow> = Vec::new();
    let mut jobs: Vec<(&str, &JobEvent)> = Vec::new();
    let mut scans: Vec<(&str, &Value)> = Vec::new();
    let mut errors: Vec<&ErrorRow> = Vec::new();

    for o in outcomes {
        match o {
            Outcome::Error(e) => errors.push(e),
            Outcome::Rows {
                decoded: d,
                received_at,
            } => {
                let agg = robots.entry(d.robot_id.as_str()).or_default();
                agg.first_seen = Some(agg.first_seen.map_or(*received_at, |t| t.min(*received_at)));
                agg.last_seen = Some(agg.last_seen.map_or(*received_at, |t| t.max(*received_at)));
                if let Some(state) = &d.state {
                    if let Some(status) = &state.status {
                        let status = clean(status);
                        match &agg.last_status {
                            None => agg.first_status = Some((status.clone(), d.ts)),
                            // A change inside the batch: the SQL below only sees the
                            // first status, so the later transitions are logged here.
                            Some((prev, _)) if *prev != status => {
                                logs.push(status_change(&d.robot_id, prev, &status, d.ts))
                            }
                            Some(_) => {}
                        }
                        agg.last_status = Some((status, d.ts));
                    }
                    if let Some(ip) = &state.ip_address {
                        agg.ip_address = Some(clean(ip));
                    }
                    if let Some(url) = &state.camera_url {
                        agg.camera_url = Some(clean(url));
                    }
                }
                metrics.extend(&d.metrics);
                logs.extend(d.logs.iter().cloned());
                if let Some(job) = &d.job {
                    jobs.push((&d.robot_id, job));
                }
                if let Some(item) = &d.scan {
                    scans.push((&d.robot_id, item));
                }
            }
        }
    }

    let mut written = Written::default();
    if !robots.is_empty() {
        let (robots_n, status_logs) = upsert_robots(conn, &robots).await?;
        written.robots = robots_n;
        written.logs += status_logs;
    }
    if !metrics.is_empty() {
        written.metrics = insert_metrics(conn, &metrics, metrics_write).await?;
    }
    if !logs.is_empty() {
        written.logs += insert_logs(conn, &logs).await?;
    }
    for (robot_id, job) in jobs {
        written.jobs += apply_job(conn, robot_id, job).await?;
    }
    for (robot_id, item) in scans {
        sqlx::query(
            "UPDATE jobs SET last_item = $2, updated_at = now() WHERE robot_id = $1 AND status = 'active'",
        )
        .bind(robot_id)
        .bind(clean_json(item))
        .execute(&mut *conn)
        .await?;
    }
    if !errors.is_empty() {
        written.ingest_errors = insert_errors(conn, &errors, error_payload_cap).await?;
    }
    Ok(written)
}

fn status_change(robot_id: &str, from: &str, to: &str, ts: DateTime<Utc>) -> LogRow {
    LogRow {
        robot_id: Some(robot_id.to_string()),
        ts,
        level: status_level(to).into(),
        category: "status".into(),
        source: Some("fleetsink".into()),
        message: format!("status changed from {from} to {to}"),
        details: Some(serde_json::json!({ "from": from, "to": to })),
        dedup_key: status_change_key(robot_id, to),
    }
}

/// The dedup key of "robot reached status `to`" (with the change's time, the logs
/// unique key): the same whichever batch the change falls in, so a resent status
/// message never logs its change twice.
fn status_change_key(robot_id: &str, to: &str) -> i64 {
    crate::pipeline::message_fingerprint(&format!("{robot_id}/status"), to.as_bytes())
}

fn status_level(status: &str) -> &'static str {
    match status {
        "offline" | "emergency_stopped" | "error" => "WARNING",
        _ => "INFO",
    }
}

/// Upserts robots and logs the change from the stored status to the batch's first
/// status. Returns (robots upserted, status logs written).
async fn upsert_robots(
    conn: &mut PgConnection,
    robots: &BTreeMap<&str, RobotAgg>,
) -> Result<(u64, u64), sqlx::Error> {
    let n = robots.len();
    let mut ids = Vec::with_capacity(n);
    let mut first_seen = Vec::with_capacity(n);
    let mut last_seen = Vec::with_capacity(n);
    let mut first_status: Vec<Option<String>> = Vec::with_capacity(n);
    let mut first_status_ts: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(n);
    let mut first_status_key: Vec<Option<i64>> = Vec::with_capacity(n);
    let mut last_status: Vec<Option<String>> = Vec::with_capacity(n);
    let mut last_status_ts: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(n);
    let mut ips: Vec<Option<String>> = Vec::with_capacity(n);
    let mut cams: Vec<Option<String>> = Vec::with_capacity(n);
    for (id, a) in robots {
        ids.push(id.to_string());
        first_seen.push(a.first_seen);
        last_seen.push(a.last_seen);
        first_status.push(a.first_status.as_ref().map(|(s, _)| s.clone()));
        first_status_ts.push(a.first_status.as_ref().map(|(_, t)| *t));
        first_status_key.push(
            a.first_status
                .as_ref()
                .map(|(s, _)| status_change_key(id, s)),
        );
        last_status.push(a.last_status.as_ref().map(|(s, _)| s.clone()));
        last_status_ts.push(a.last_status.as_ref().map(|(_, t)| *t));
        ips.push(a.ip_address.clone());
        cams.push(a.camera_url.clone());
    }
    let (upserted, logged): (i64, i64) = sqlx::query_as(
        r#"
        WITH input AS (
            SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::text[],
                                 $5::timestamptz[], $6::int8[], $7::text[], $8::timestamptz[],
                                 $9::text[], $10::text[])
              AS t(robot_id, first_seen, last_seen, first_status, first_status_ts, first_status_key,
                   last_status, last_status_ts, ip_address, camera_url)
        ),
        prev AS (
            SELECT r.robot_id, r.status, r.status_at FROM robots r JOIN input i ON i.robot_id = r.robot_id
        ),
        upserted AS (
            INSERT INTO robots AS r (robot_id, first_seen, last_seen, status, status_at, ip_address, camera_url)
            SELECT robot_id, first_seen, last_seen, COALESCE(last_status, 'unknown'), last_status_ts,
                   ip_address, camera_url
            FROM input
            ON CONFLICT (robot_id) DO UPDATE SET
                first_seen = LEAST(r.first_seen, EXCLUDED.first_seen),
                last_seen  = GREATEST(r.last_seen, EXCLUDED.last_seen),
                -- An older status (a resend) never overwrites a newer one.
                status     = CASE WHEN EXCLUDED.status_at >= r.status_at OR r.status_at IS NULL
                                  THEN COALESCE((SELECT i.last_status FROM input i WHERE i.robot_id = EXCLUDED.robot_id), r.status)
                                  ELSE r.status END,
                status_at  = GREATEST(r.status_at, EXCLUDED.status_at),
                ip_address = COALESCE(EXCLUDED.ip_address, r.ip_address),
                camera_url = COALESCE(EXCLUDED.camera_url, r.camera_url),
                updated_at = now()
            RETURNING 1
        ),
        status_logs AS (
            INSERT INTO logs (robot_id, ts, level, category, source, message, details, dedup_key)
            SELECT i.robot_id, i.first_status_ts,
                   CASE WHEN i.first_status IN ('offline', 'emergency_stopped', 'error') THEN 'WARNING' ELSE 'INFO' END,
                   'status', 'fleetsink',
                   format('status changed from %s to %s', COALESCE(p.status, 'unknown'), i.first_status),
                   jsonb_build_object('from', COALESCE(p.status, 'unknown'), 'to', i.first_status),
                   i.first_status_key
            FROM input i LEFT JOIN prev p ON p.robot_id = i.robot_id
            WHERE i.first_status IS NOT NULL AND i.first_status IS DISTINCT FROM p.status
              AND (p.status_at IS NULL OR i.first_status_ts > p.status_at)
            ON CONFLICT DO NOTHING
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM upserted), (SELECT count(*) FROM status_logs)
        "#,
    )
    .bind(&ids)
    .bind(&first_seen)
    .bind(&last_seen)
    .bind(&first_status)
    .bind(&first_status_ts)
    .bind(&first_status_key)
    .bind(&last_status)
    .bind(&last_status_ts)
    .bind(&ips)
    .bind(&cams)
    .fetch_one(&mut *conn)
    .await?;
    Ok((upserted as u64, logged as u64))
}

/// The metrics insert without a conflict clause (a literal, so both variants below are
/// `&'static str`).
macro_rules! insert_metrics_sql {
    () => {
        "INSERT INTO metrics (robot_id, ts, name, value, unit) \
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::float8[], $5::text[])"
    };
}

async fn insert_metrics(
    conn: &mut PgConnection,
    rows: &[&MetricRow],
    mode: MetricsWrite,
) -> Result<u64, sqlx::Error> {
    let robot: Vec<String> = rows.iter().map(|m| clean(&m.robot_id)).collect();
    let ts: Vec<DateTime<Utc>> = rows.iter().map(|m| m.ts).collect();
    let name: Vec<String> = rows.iter().map(|m| clean(&m.name)).collect();
    let value: Vec<f64> = rows.iter().map(|m| m.value).collect();
    let unit: Vec<Option<String>> = rows.iter().map(|m| m.unit.as_deref().map(clean)).collect();
    let sql = match mode {
        MetricsWrite::Plain => insert_metrics_sql!(),
        MetricsWrite::SkipExisting => concat!(insert_metrics_sql!(), " ON CONFLICT DO NOTHING"),
    };
    Ok(sqlx::query(sql)
        .bind(&robot)
        .bind(&ts)
        .bind(&name)
        .bind(&value)
        .bind(&unit)
        .execute(&mut *conn)
        .await?
        .rows_affected())
}

async fn insert_logs(conn: &mut PgConnection, logs: &[LogRow]) -> Result<u64, sqlx::Error> {
    let robot: Vec<Option<&str>> = logs.iter().map(|l| l.robot_id.as_deref()).collect();
    let ts: Vec<DateTime<Utc>> = logs.iter().map(|l| l.ts).collect();
    let level: Vec<String> = logs.iter().map(|l| clean(&l.level)).collect();
    let category: Vec<String> = logs.iter().map(|l| clean(&l.category)).collect();
    let source: Vec<Option<String>> = logs
        .iter()
        .map(|l| l.source.as_deref().map(clean))
        .collect();
    let message: Vec<String> = logs.iter().map(|l| clean(&l.message)).collect();
    let details: Vec<Option<String>> = logs
        .iter()
        .map(|l| l.details.as_ref().map(|d| clean_json(d).to_string()))
        .collect();
    let key: Vec<i64> = logs.iter().map(|l| l.dedup_key).collect();
    Ok(sqlx::query(
        "INSERT INTO logs (robot_id, ts, level, category, source, message, details, dedup_key) \
         SELECT r, t, l, c, s, m, d::jsonb, k FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], \
                $4::text[], $5::text[], $6::text[], $7::text[], $8::int8[]) AS x(r, t, l, c, s, m, d, k) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&robot)
    .bind(&ts)
    .bind(&level)
    .bind(&category)
    .bind(&source)
    .bind(&message)
    .bind(&details)
    .bind(&key)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

async fn insert_errors(
    conn: &mut PgConnection,
    errors: &[&ErrorRow<'_>],
    cap: usize,
) -> Result<u64, sqlx::Error> {
    let topic: Vec<String> = errors.iter().map(|e| clean(e.topic)).collect();
    let payload: Vec<Vec<u8>> = errors
        .iter()
        .map(|e| e.payload[..e.payload.len().min(cap)].to_vec())
        .collect();
    let size: Vec<i32> = errors
        .iter()
        .map(|e| i32::try_from(e.payload.len()).unwrap_or(i32::MAX))
        .collect();
    let reason: Vec<&str> = errors.iter().map(|e| e.reason).collect();
    let detail: Vec<String> = errors.iter().map(|e| clean(e.detail)).collect();
    let client: Vec<Option<String>> = errors.iter().map(|e| e.client_id.map(clean)).collect();
    let at: Vec<DateTime<Utc>> = errors.iter().map(|e| e.received_at).collect();
    Ok(sqlx::query(
        "INSERT INTO ingest_errors (topic, payload, payload_size, reason, detail, client_id, received_at) \
         SELECT * FROM UNNEST($1::text[], $2::bytea[], $3::int4[], $4::text[], $5::text[], $6::text[], $7::timestamptz[])",
    )
    .bind(&topic)
    .bind(&payload)
    .bind(&size)
    .bind(&reason)
    .bind(&detail)
    .bind(&client)
    .bind(&at)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}

/// Applies one job event (SPEC §4.3). Returns rows inserted or updated.
async fn apply_job(
    conn: &mut PgConnection,
    robot_id: &str,
    job: &JobEvent,
) -> Result<u64, sqlx::Error> {
    let status = match job.action {
        JobAction::Start | JobAction::Progress => "active",
        JobAction::Complete => "completed",
        JobAction::Cancel => "cancelled",
        JobAction::Fail => "failed",
    };
    let start_time = job.start_time.unwrap_or(job.ts);
    let last_item = job.last_item.as_ref().map(clean_json);
    let mut n = 0;
    if job.action == JobAction::Start {
        // A new job closes the robot's active one; an older, redelivered start does not.
        n += sqlx::query(
            "UPDATE jobs SET status = 'completed', end_time = $2, updated_at = now() \
             WHERE robot_id = $1 AND status = 'active' AND start_time < $2",
        )
        .bind(robot_id)
        .bind(start_time)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    } else {
        n += sqlx::query(
            "UPDATE jobs SET \
                task_name = COALESCE($2, task_name), phase = COALESCE($3, phase), \
                items_done = COALESCE($4, items_done), items_total = COALESCE($5, items_total), \
                percent_complete = COALESCE($6, percent_complete), last_item = COALESCE($7, last_item), \
                elapsed_time = COALESCE($8, elapsed_time), estimated_duration = COALESCE($9, estimated_duration), \
                action_duration = COALESCE($10, action_duration), success = COALESCE($11, success), \
                cancel_reason = COALESCE($12, cancel_reason), status = $13, \
                end_time = CASE WHEN $13 = 'active' THEN NULL ELSE $14 END, updated_at = now() \
             WHERE robot_id = $1 AND status = 'active' \
               AND (start_time = $15 OR ($15 IS NULL AND start_time <= $14))",
        )
        .bind(robot_id)
        .bind(job.task_name.as_deref().map(clean))
        .bind(job.phase.as_deref().map(clean))
        .bind(job.items_done)
        .bind(job.items_total)
        .bind(job.percent)
        .bind(&last_item)
        .bind(job.elapsed)
        .bind(job.estimated)
        .bind(job.action_duration)
        .bind(job.success)
        .bind(job.reason.as_deref().map(clean))
        .bind(status)
        .bind(job.ts)
        .bind(job.start_time)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if n > 0 {
            return Ok(n);
        }
    }
    // Start, or an event for a job fleetsink never saw start (it joined mid-job):
    // record it, once — (robot_id, start_time) is unique — unless the robot already
    // has a later job, which makes this event a stale resend.
    n += sqlx::query(
        "INSERT INTO jobs (robot_id, task_name, status, phase, start_time, end_time, items_done, \
             items_total, percent_complete, last_item, success, cancel_reason, elapsed_time, \
             estimated_duration, action_duration) \
         SELECT $1, $2, $3, $4, $5, CASE WHEN $3 = 'active' THEN NULL ELSE $6 END, $7, $8, $9, $10, \
             $11, $12, $13, $14, $15 \
         WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE robot_id = $1 AND start_time > $5) \
         ON CONFLICT DO NOTHING",
    )
    .bind(robot_id)
    .bind(job.task_name.as_deref().map(clean))
    .bind(status)
    .bind(job.phase.as_deref().map(clean))
    .bind(start_time)
    .bind(job.ts)
    .bind(job.items_done)
    .bind(job.items_total)
    .bind(job.percent)
    .bind(&last_item)
    .bind(job.success)
    .bind(job.reason.as_deref().map(clean))
    .bind(job.elapsed)
    .bind(job.estimated)
    .bind(job.action_duration)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n)
}

/// The `ingest_errors` row for an unusable message.
pub fn error_row<'a>(
    topic: &'a str,
    payload: &'a [u8],
    unusable: &'a Unusable,
    client_id: Option<&'a str>,
    received_at: DateTime<Utc>,
) -> ErrorRow<'a> {
    ErrorRow {
        topic,
        payload,
        reason: unusable.reason.label(),
        detail: &unusable.detail,
        client_id,
        received_at,
    }
}
